"""What every parameter and settings model shares, declared below flows/ and tasks/ so that a
stage's own settings model (tasks/<stage>/settings.py) and the flows' parameter models
(flows/params/) stand on the same base: unknown fields are errors, optional fields render as
plain inputs in Prefect's Run form, and path parameters carry a type (LocalPath, WeightsPath,
ModelRef) by which a served run's policy (flows/gate/policy.py) finds every path value, in any
model and at any depth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class PathParam:
    """Marks a parameter whose value names a file or folder on this host.

    kind "path": always a path. "weights": a path unless it names the Keras cache
    ('imagenet') or random weights. "model": what a model reference opens (a
    file, a train run's folder, a champion's model; a backbone name opens no path).
    """

    kind: Literal["path", "weights", "model"] = "path"


LocalPath = Annotated[str, PathParam()]
WeightsPath = Annotated[str, PathParam("weights")]
ModelRef = Annotated[str, PathParam("model")]


def optional_as_plain_input(schema: dict[str, Any], model: type | None = None) -> None:
    """An optional field (`X | None = None`) in the JSON schema as Prefect's Run form renders
    it: a plain X input that may be left empty (the field is not required; empty is None).
    Pydantic writes `anyOf [X, {"type": "null"}]` with `default: null`, which the form shows as
    a str/None switch set to `Property is type "None"`. The null branch and the null default go;
    the title, description and constraints stay. Prefect's schema check then refuses an explicit
    null from the API: omit the field instead."""
    for prop in schema.get("properties", {}).values():
        branches = prop.get("anyOf")
        if not branches or {"type": "null"} not in branches:
            continue
        kept = [b for b in branches if b != {"type": "null"}]
        del prop["anyOf"]
        if len(kept) == 1:
            prop.update({k: v for k, v in kept[0].items() if k not in prop})
        else:
            prop["anyOf"] = kept
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class Settings(BaseModel):
    """Base of every settings and parameter model: unknown fields are errors, not silently
    ignored; optional fields render as plain inputs in the Prefect UI."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=optional_as_plain_input)
