"""The predict_batch flow: classify many images in shards and store the answers as Parquet."""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from datetime import UTC, datetime

from prefect.artifacts import create_table_artifact
from pydantic import BaseModel

from flows.gate.entry import gated_flow
from flows.gate.runners import task_runner_for, unwalked
from flows.params import PredictParams
from storage.layout import Layout, new_run_id
from storage.parquet import part_name, replace_parts
from tasks.predict.engines.cache import get_predictor
from tasks.predict.inputs import collect_images
from tasks.predict.labels import check_targets, target_indices
from tasks.predict.spec import resolve_model
from tasks.predict.tasks import FAILED_ROWS, TOP_ROWS, Decoding, ShardSummary, predict_shard
from tasks.runtime import Progress, logger


class PredictResult(BaseModel):
    run_id: str
    model: str  # the `model` column: name plus weights identity
    preprocessing: str = ""  # the `preprocessing` column: resize mode, filter, value scaling
    predictions_path: str  # the run's partition folder (its files are predictions_files)
    predictions_files: list[str]
    images: int
    ok: int
    corrupt: int
    missing: int
    target_hits: int
    targets: list[str]
    counts: dict[str, int]  # top-1 label -> images
    shards: int
    seconds: float
    images_per_second: float
    top: list[dict]  # rank-1 rows, targets first (also the Prefect table artifact)
    failed: list[dict] = []  # the first images not ok (image, status, error)
    engine: dict | None = None  # backend=openvino: IR path, reused or converted, int8 accuracy


def decoding_for(params: PredictParams, labels) -> Decoding:
    """Targets resolved to class indices; an unknown target is a ConfigError only when the user
    named it (the default "banana" simply never matches a model without that class)."""
    if "targets" in params.model_fields_set:
        target_idx = check_targets(labels, params.targets)
    else:
        target_idx = sorted({i for v in target_indices(labels, params.targets).values() for i in v})
    # A target "somewhere among all classes" is always true: cap the rank below the count.
    within = min(params.target_rank or params.top_k, max(len(labels) - 1, 1))
    return Decoding(params.top_k, tuple(target_idx), within, params.threshold)


def targets_of(params: PredictParams, labels) -> list[str]:
    """The targets worth naming: those given, else the defaults this model has classes for
    (a forest/mountain model never looks for the default "banana")."""
    if "targets" in params.model_fields_set:
        return list(params.targets)
    return [t for t, found in target_indices(labels, params.targets).items() if found]


def model_key(identity: str) -> str:
    """A file-name-safe key per model, so one run id can hold several models' predictions
    (the pipeline predicts with the trained model and with ResNet50 under one run id)."""
    name = re.sub(r"[^A-Za-z0-9]+", "", identity.split("@")[0])[:24] or "model"
    return f"{name}-{hashlib.sha256(identity.encode()).hexdigest()[:6]}"


def _top(summaries: list[ShardSummary]) -> list[dict]:
    rows = sorted(
        (row for s in summaries for row in s.top),
        key=lambda r: (r["is_target"], r["probability"]),
        reverse=True,
    )[:TOP_ROWS]
    return [{**r, "probability": round(r["probability"], 4)} for r in rows]


@gated_flow(name="predict-batch")
def predict_batch(params: PredictParams) -> PredictResult:
    """Classify images (folders, files, a scrape run or a dataset split) into `predictions`."""
    started = time.perf_counter()
    log = logger()
    run_id = params.run_id or new_run_id()
    layout = Layout.at(params.data_dir)
    data_dir = str(layout.root)
    # Every check that needs the disk (weights, model file, inputs, targets) before any work.
    spec = resolve_model(
        params.model, params.weights, data_dir=data_dir, mixed_precision=params.mixed_precision,
        resize_mode=params.resize_mode, interpolation=params.interpolation,
        crop_fraction=params.crop_fraction,
    )  # fmt: skip
    images = collect_images(
        params.inputs,
        scrape_run=params.scrape_run,
        dataset_dir=params.dataset_dir,
        split=params.split,
        data_dir=data_dir,
    )
    decoding = decoding_for(params, spec.labels)
    engine = None
    if params.backend == "openvino":  # convert once (cached beside the model), int8 checked
        # deferred: OpenVINO is an optional extra (pip install -e ".[openvino]")
        from tasks.predict.engines.openvino import check_convertible
        from tasks.predict.engines.openvino_ir import prepare_openvino

        check_convertible(spec, params.precision, params.mixed_precision)
        spec, engine = prepare_openvino(
            spec, params.precision, images=images, calibration_size=params.calibration_size,
            max_accuracy_drop=params.max_accuracy_drop, threshold=params.threshold,
            batch_size=params.batch_size,
        )  # fmt: skip
    get_predictor(spec)  # load once here: a broken model file fails before the shards
    run_date = datetime.now(UTC).date()
    key = model_key(spec.identity)
    shards = [images[i : i + params.shard_size] for i in range(0, len(images), params.shard_size)]
    log.info(
        "predicting %d images with %s (%s) in %d shard(s)",
        len(images), spec.identity, spec.preprocessing.describe(), len(shards),
    )  # fmt: skip
    # threads: one shard at a time (the model already uses every core); processes or dask:
    # shards in parallel, each worker process loading the model once (get_predictor's cache).
    # One progress artifact for the run, advanced as each shard ends (the shards' own bars are
    # live on a terminal).
    progress = Progress(len(images), f"predicting {len(images)} images", bar=False)
    with task_runner_for(params.runner, params.dask_address, threads=1) as runner:
        futures = [
            runner.submit(
                predict_shard,
                {
                    "paths": unwalked(shard, params.runner), "spec": spec, "run_id": run_id,
                    "part": part_name(key, n), "run_date": run_date, "data_dir": data_dir,
                    "batch_size": params.batch_size, "decoding": decoding,
                },
            )
            for n, shard in enumerate(shards, start=1)
        ]  # fmt: skip
        summaries: list[ShardSummary] = []
        for future, shard in zip(futures, shards, strict=True):
            summaries.append(future.result())
            progress.advance(len(shard))
    # Re-running a run id with the same model replaces its predictions (fewer shards
    # included): the new parts are written, so now the old ones can go.
    replace_parts(
        "predictions", run_id=run_id, written=[s.path for s in summaries], group=key,
        data_dir=data_dir,
    )  # fmt: skip
    top = _top(summaries)
    create_table_artifact(
        table=top,
        key=re.sub(r"[^a-z0-9-]+", "-", f"predictions-{run_id}-{key}".lower()),
        description=f"Top predictions of run {run_id} with {spec.identity} (targets first)",
    )
    seconds = time.perf_counter() - started
    counts: Counter[str] = Counter()
    for s in summaries:
        counts.update(s.counts)
    result = PredictResult(
        run_id=run_id,
        model=spec.identity,
        preprocessing=spec.preprocessing.describe(),
        predictions_path=str(layout.table_dir("predictions") / f"run_date={run_date}"),
        predictions_files=[s.path for s in summaries],
        images=sum(s.images for s in summaries),
        ok=sum(s.ok for s in summaries),
        corrupt=sum(s.corrupt for s in summaries),
        missing=sum(s.missing for s in summaries),
        target_hits=sum(s.target_hits for s in summaries),
        targets=targets_of(params, spec.labels),
        counts=dict(counts.most_common()),
        shards=len(shards),
        seconds=round(seconds, 3),
        images_per_second=round(len(images) / seconds, 2),
        top=top,
        failed=[row for s in summaries for row in s.failed][:FAILED_ROWS],
        engine=engine.model_dump() if engine else None,
    )
    log.info(
        "%d images: %d ok, %d corrupt, %d missing; %d target hits (%s); %.1f img/s",
        result.images,
        result.ok,
        result.corrupt,
        result.missing,
        result.target_hits,
        ", ".join(result.targets) or "none given",
        result.images_per_second,
    )
    return result
