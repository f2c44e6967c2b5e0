"""Every flow enters through the gate: the served policy, the run id claim, error mapping."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from prefect import Flow

import flows
from deployments.serve import FLOWS
from flows.gate.claims import RunClaim, RunInUseError
from flows.gate.entry import is_gated
from flows.gate.policy import PolicyError
from flows.params import (
    CurateParams,
    PipelineParams,
    PredictParams,
    PrepareParams,
    ReportParams,
    ScrapeParams,
    TrainParams,
)
from flows.params.registry import PromoteParams
from storage.errors import ConfigError

SERVED_ID = "00000000-0000-0000-0000-000000000001"
# The least each served flow's model needs; a new served flow must add its model here.
MINIMAL = {
    ScrapeParams: {"pages": ["http://gallery.invalid/"], "label": "x"},
    CurateParams: {},
    PrepareParams: {},
    TrainParams: {},
    PromoteParams: {},
    PredictParams: {},
    ReportParams: {},
    PipelineParams: {"dataset_dir": "ds"},
}


def params_for(flow: Flow, **given):
    model = flow.fn.__annotations__["params"]
    assert model in MINIMAL, f"add {model.__name__} to MINIMAL"
    return model(**{**MINIMAL[model], **given})


def flow_objects() -> dict[str, Flow]:
    """Every Flow object defined in a module directly under flows/ (served or not)."""
    found = {}
    for info in pkgutil.iter_modules(flows.__path__):
        module = importlib.import_module(f"flows.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, Flow) and value.fn.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_flow_in_flows_is_made_by_the_gate():
    found = flow_objects()
    assert {f"flows.{name}.{name}" for name in FLOWS} <= set(found)
    assert "flows.promote_model.rollback_champion" in found
    assert [name for name, f in found.items() if not is_gated(f)] == []


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_each_served_flow_refuses_a_path_outside_the_roots_before_any_work(
    name, tmp_path, monkeypatch
):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    monkeypatch.setenv("PIXELPIPE_DATA_DIR", str(data))
    monkeypatch.delenv("PIXELPIPE_ALLOWED_ROOTS", raising=False)
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", SERVED_ID)  # "from a deployment"
    flow = FLOWS[name][0]
    params = params_for(flow, data_dir=str(outside), run_id="r1")
    with pytest.raises(PolicyError, match=f"data_dir {str(outside)!r} is outside"):
        flow.fn(params)
    assert not outside.exists() and list(data.iterdir()) == []  # nothing was done


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_each_served_flow_refuses_a_run_id_another_run_holds(name, data_dir):
    flow = FLOWS[name][0]
    params = params_for(flow, data_dir=str(data_dir), run_id="busy")
    with RunClaim(data_dir, flow.name, "busy"), pytest.raises(RunInUseError, match="is in use"):
        flow.fn(params)


def test_a_dict_is_validated_into_the_model_and_errors_are_one_line(data_dir):
    flow = FLOWS["scrape_images"][0]
    with pytest.raises(ConfigError) as caught:
        flow.fn({"pages": [], "label": "x", "max_bytes": 1, "unknown": 1})
    message = str(caught.value)
    assert message.startswith("ScrapeParams: ") and "\n" not in message
    assert "max_bytes:" in message and "unknown:" in message


def test_a_resumed_training_claims_the_run_it_continues():
    assert TrainParams(resume_run="r7").claimed_run() == "r7"
    assert TrainParams(run_id="r8").claimed_run() == "r8"
    assert TrainParams().claimed_run() is None  # a new id: nothing to hold
