"""The Run form of every served deployment: Prefect's UI renders each field of the parameter
schema by its `type`; an `anyOf` with a `{"type": "null"}` branch shows as a str/None switch set
to `Property is type "None"`. Every field must be a plain, titled input the form renders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from deployments import serve

RENDERED = {"string", "integer", "number", "boolean", "array", "object"}


def fields(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, schema) of every property, at the top and in every definition."""
    for name, prop in schema.get("properties", {}).items():
        yield name, prop
    for model, definition in schema.get("definitions", {}).items():
        for name, prop in definition.get("properties", {}).items():
            yield f"{model}.{name}", prop


@pytest.mark.parametrize("flow_name", list(serve.FLOWS))
def test_every_field_is_a_plain_input_the_run_form_renders(flow_name):
    flow = serve.FLOWS[flow_name][0]
    schema = flow.parameters.model_dump()
    seen = 0
    for where, prop in fields(schema):
        seen += 1
        # A sub-model ($ref) is titled by its definition.
        assert prop.get("title") or "$ref" in prop, f"{flow_name}: {where} has no title"
        branches = prop.get("anyOf", [prop])
        assert {"type": "null"} not in branches, f"{flow_name}: {where} is anyOf [..., null]"
        for branch in branches:
            kind = branch.get("type")
            assert kind in RENDERED or "$ref" in branch or "allOf" in branch, (
                f"{flow_name}: {where} has no type the form renders: {branch}"
            )
        assert "default" not in prop or prop["default"] is not None, f"{where}: default null"
    assert seen > 5


def test_an_optional_field_is_left_out_and_its_default_applies():
    """What the form sends for an empty optional field passes Prefect's schema check and
    validates to None; an explicit null is refused by the schema (the API omits it instead)."""
    flow = serve.FLOWS["scrape_images"][0]
    schema = flow.parameters.model_dump()
    given = {"params": {"pages": ["https://example.com/a.html"], "label": "a"}}
    jsonschema.validate(given, schema)
    assert flow.validate_parameters(given)["params"].max_images is None
    with pytest.raises(jsonschema.ValidationError, match="None is not of type 'integer'"):
        jsonschema.validate({"params": {**given["params"], "max_images": None}}, schema)
