import importlib.util
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flows.params import PipelineParams

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


def load_serve():
    spec = importlib.util.spec_from_file_location("serve_entry", DEPLOYMENTS / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_defaults_the_schedule_is_registered_but_inactive():
    serve = load_serve()
    deployments = {d.flow_name: d for d in serve.build_deployments()}
    assert set(deployments) == {name.replace("_", "-") for name in serve.FLOWS}
    pipeline = deployments["image-pipeline"]
    (schedule,) = pipeline.schedules
    assert schedule.schedule.cron == "0 3 * * *" and schedule.active is False
    assert pipeline.entrypoint == "flows.image_pipeline.image_pipeline"
    limited = {name for name, d in deployments.items() if d.concurrency_limit}
    assert limited == {"image-pipeline", "train-classifier"}
    assert all(d.name == "local" and "pixelpipe" in d.tags for d in deployments.values())


def test_defaults_file_activates_the_schedule_and_is_validated(tmp_path):
    serve = load_serve()
    good = tmp_path / "good.yaml"
    good.write_text("sources: [mountain=https://example.com/a]\ntrain: {epochs: 3}\n")
    defaults = serve.pipeline_defaults_from(good)
    assert defaults == {"sources": ["mountain=https://example.com/a"], "train": {"epochs": 3}}
    (pipeline, *_) = serve.build_deployments(defaults, cron="15 2 * * 1")
    assert pipeline.parameters == {"params": defaults}
    assert pipeline.schedules[0].active and pipeline.schedules[0].schedule.cron == "15 2 * * 1"
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [mountain=https://example.com/a]\ntrain: {epochs: 0}\n")
    with pytest.raises(ValidationError, match="epochs"):
        serve.pipeline_defaults_from(bad)


def test_prefect_yaml_declares_the_same_flows_and_valid_pipeline_defaults():
    config = yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())
    serve = load_serve()
    entrypoints = [d["entrypoint"] for d in config["deployments"]]
    assert entrypoints == [f"flows/{name}.py:{name}" for name in serve.FLOWS]
    for entrypoint in entrypoints:
        assert (DEPLOYMENTS.parent / entrypoint.split(":")[0]).is_file()
    pipeline = config["deployments"][0]
    PipelineParams.model_validate(pipeline["parameters"]["params"])
    assert pipeline["concurrency_limit"]["limit"] == 1
    assert all(d["work_pool"]["name"] == "pixelpipe-process" for d in config["deployments"])
