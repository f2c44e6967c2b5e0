"""The train_classifier flow: a prepared dataset folder -> best.keras, histories, model card."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flows.gate.entry import gated_flow
from flows.gate.policy import enforce_policy
from flows.params import TrainParams
from storage.errors import ConfigError
from storage.layout import Layout, new_run_id, resolve_data_dir
from storage.model_card import ModelCard, card_file
from tasks.prepare.stamp import read_stamp
from tasks.runtime import logger
from tasks.train.settings import TrainSettings, check_image_size
from tasks.train.spec import TrainSpec, resolve_weights, scan_dataset

# Fields that fix what a run trains on and how its model is shaped: a resume may not change them.
_FIXED_ON_RESUME = ("dataset_dir", "model", "image_size", "alpha", "weights", "validation_split")


class TrainResult(BaseModel):
    run_id: str
    model: str
    model_path: str
    model_card_path: str
    history_path: str
    batch_history_path: str
    best_epoch: int | None
    best_val_accuracy: float | None
    best_val_loss: float | None
    epochs_run: int
    evaluated_val_accuracy: float | None
    evaluated_val_loss: float | None
    class_names: list[str]
    dataset_dir: str
    exports: dict[str, str] = {}  # format -> exported file (export=["openvino"]: the IR)


def resolve_resume(params: TrainParams) -> tuple[TrainParams, str]:
    """(effective params, run id). `resume_run` starts from the stored run's parameters and
    applies only the fields given now (e.g. more epochs). Re-running with the `run_id` of a
    run that already trained (a retried pipeline) continues it too. Either way the fields
    that shape the model and its data must match the stored run."""
    data_dir = resolve_data_dir(params.data_dir)
    run_id = params.resume_run or params.run_id or new_run_id()
    card_path = card_file(Layout.at(data_dir).model_dir(run_id))
    if not card_path.is_file():
        if params.resume_run:
            raise ConfigError(f"cannot resume run {run_id!r}: {card_path} does not exist")
        return params, run_id
    stored = ModelCard.read(card_path).params or {}
    given = params.model_dump(include=params.model_fields_set - {"resume_run", "run_id"})
    changed = [k for k in _FIXED_ON_RESUME if k in given and given[k] != stored.get(k)]
    if changed:
        raise ConfigError(
            f"run {run_id} was trained with other {', '.join(changed)} "
            f"({', '.join(f'{k}={stored.get(k)!r}' for k in changed)}): leave them out to "
            "continue it, or choose another run_id"
        )
    if not params.resume_run:
        logger().info("run %s has trained before: continuing it", run_id)
    merged = TrainParams.model_validate({**stored, **given, "run_id": None, "resume_run": run_id})
    return merged, run_id


def plan(params: TrainParams, run_id: str) -> tuple[Any, Any]:
    """Check everything that needs the disk and build the TrainSpec, before any training:
    the dataset layout and the backbone weights (WeightsNotFoundError names the file)."""
    if not params.dataset_dir:
        raise ConfigError("dataset_dir is required: a prepared folder with train/<class>/")
    info = scan_dataset(params.dataset_dir, params.validation_split)
    size = (params.image_size,) * 2 if params.image_size else info.image_size
    check_image_size(params.model, size)  # the dataset's own size when image_size is unset
    weights = resolve_weights(params.model, params.weights, params.alpha, size[0])
    settings = params.model_dump(include=set(TrainSettings.model_fields))
    spec = TrainSpec.model_validate(
        settings
        | {
            "run_id": run_id,
            "data_dir": str(resolve_data_dir(params.data_dir)),
            "dataset_dir": info.root,
            "class_names": info.class_names,
            "image_size": size,
            "weights": weights,
            "validation_split": 0.0 if info.has_val else params.validation_split,
        }
    )
    return spec, info


def training_resize_mode(dataset_dir: str) -> str:
    """How the training images were shaped from their sources: prepare's resize mode (its
    crop keeps the whole short side), then image_dataset_from_directory's bilinear stretch."""
    render = (read_stamp(Path(dataset_dir)) or {}).get("render") or {}
    mode = render.get("resize_mode")
    return mode if mode in ("crop", "pad") else "stretch"


def model_card(spec, info, params: TrainParams, summary: dict | None, created_at: str) -> ModelCard:
    """The model card: what predict and report need, and what reproduces the run."""
    # deferred: TensorFlow loads when training starts, not with the flow (CLI start-up, serve)
    from tasks.train.fit import versions

    summary = summary or {}
    return ModelCard(
        **{
            "run_id": spec.run_id,
            "model": spec.model,
            "class_names": spec.class_names,
            "image_size": list(spec.image_size),
            "label_mode": spec.label_mode,
            "num_classes": len(spec.class_names),
            "best_epoch": summary.get("best_epoch"),
            "best_val_accuracy": summary.get("best_val_accuracy"),
            "best_val_loss": summary.get("best_val_loss"),
            "dataset_dir": info.root,
            "dataset_manifest_sha256": info.manifest_sha256,
            "params": params.model_dump(mode="json"),
            "versions": versions(),
            "created_at": created_at,
            "updated_at": datetime.now(UTC).isoformat(),
            "status": "trained" if summary else "training",
            "input": "RGB, raw 0-255 floats, resized to image_size; the model rescales itself",
            "interpolation": "bilinear",
            "resize_mode": training_resize_mode(info.root),
            "output": (
                f"sigmoid: probability of {spec.class_names[-1]!r}"
                if spec.label_mode == "binary"
                else "softmax over class_names"
            ),
            "weights": spec.weights,
            "model_path": str(spec.best_path),
            "epochs_run": summary.get("epochs_run"),
            "evaluated_val_accuracy": summary.get("evaluated_val_accuracy"),
            "evaluated_val_loss": summary.get("evaluated_val_loss"),
            "history_path": summary.get("history_path"),
            "batch_history_path": summary.get("batch_history_path"),
            "train_counts": info.train_counts,
            "val_counts": info.val_counts or None,
            "validation": "val/" if info.has_val else f"{spec.validation_split:.0%} of train/",
        }
    )


def announce(spec, info) -> None:
    held_out = f"{sum(info.val_counts.values())} in val/" if info.has_val else "held out"
    if not info.has_val:
        held_out = f"{spec.validation_split:.0%} {held_out}"
    logger().info(
        "training %s on %s: %s, %d train images (%s), %s px, run %s",
        spec.model, info.root, ", ".join(info.class_names), sum(info.train_counts.values()),
        held_out, "x".join(map(str, spec.image_size)), spec.run_id,
    )  # fmt: skip


def evaluate_best(spec, best_val_accuracy: float | None) -> dict[str, float | None]:
    """Evaluate best.keras on val; it must reproduce its epoch's val_accuracy."""
    # deferred: TensorFlow loads when training starts, not with the flow (CLI start-up, serve)
    from tasks.train.fit import evaluate_model_task

    if not Path(spec.best_path).is_file():
        return {"evaluated_val_accuracy": None, "evaluated_val_loss": None}
    got = evaluate_model_task(spec, str(spec.best_path))
    if best_val_accuracy is not None and abs(got["val_accuracy"] - best_val_accuracy) > 1e-6:
        logger().warning(
            "best.keras evaluates to val_accuracy %.6f, but its epoch logged %.6f",
            got["val_accuracy"], best_val_accuracy,
        )  # fmt: skip
    return {"evaluated_val_accuracy": got["val_accuracy"], "evaluated_val_loss": got["val_loss"]}


@gated_flow(name="train-classifier", log_prints=True)
def train_classifier(params: TrainParams) -> TrainResult:
    """Train a classifier on a prepared dataset; keep the best epoch; resumable."""
    # deferred: TensorFlow loads when training starts, not with the flow (CLI start-up, serve)
    from tasks.train.fit import train_model_task

    params, run_id = resolve_resume(params)
    enforce_policy(params)  # again: a resumed run's stored dataset_dir and weights
    spec, info = plan(params, run_id)
    card_path = card_file(spec.model_dir)
    stored = ModelCard.read(card_path) if card_path.is_file() else None
    created = (stored and stored.created_at) or datetime.now(UTC).isoformat()
    if stored and stored.dataset_manifest_sha256 not in (None, info.manifest_sha256):
        logger().warning("the dataset's files changed since this run started: %s", info.root)
    model_card(spec, info, params, None, created).write(spec.model_dir)
    announce(spec, info)
    summary = train_model_task(spec)
    summary |= evaluate_best(spec, summary["best_val_accuracy"])
    exports = {}
    if params.export and Path(spec.best_path).is_file():  # e.g. OpenVINO IR for fast inference
        # deferred: OpenVINO is an optional extra (pip install -e ".[openvino]")
        from tasks.predict.engines.openvino_ir import export_openvino

        exports["openvino"] = export_openvino(str(spec.best_path))
    card = model_card(spec, info, params, summary, created)
    card.exports = exports or None
    card.write(spec.model_dir)
    logger().info(
        "best epoch %s: val_accuracy %s -> %s", summary["best_epoch"],
        summary["best_val_accuracy"], spec.best_path,
    )  # fmt: skip
    return TrainResult(
        run_id=run_id,
        model=spec.model,
        model_path=str(spec.best_path),
        model_card_path=str(card_path),
        class_names=spec.class_names,
        dataset_dir=info.root,
        exports={k: v["path"] for k, v in exports.items()},
        **{k: summary[k] for k in TrainResult.model_fields if k in summary},
    )
