"""curate_images: a <class>/<image> folder -> `curation` rows flagging off-topic and mislabeled
images. Nothing is moved or deleted; prepare_dataset leaves flagged images out on request."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from flows.gate.entry import gated_flow
from flows.params import CurateParams
from flows.params.checks import check_curate
from storage.layout import Layout, new_run_id
from storage.parquet import write_table
from tasks.curate.inputs import with_hashes
from tasks.curate.tasks import check_label_issues, check_on_topic
from tasks.runtime import artifact_key, in_prefect_run, logger

FLAGS = ("off_topic", "suspect_label")


class CurateResult(BaseModel):
    run_id: str
    curation_path: str
    images: int = Field(description="Images looked at")
    counts: dict[str, dict[str, int]] = Field(description="check -> verdict -> images")
    flagged: dict[str, int] = Field(description="label -> images flagged by any check")


@gated_flow(name="curate-images", description="Flag off-topic and mislabeled images.")
def curate_images(params: CurateParams) -> CurateResult:
    run_id = params.run_id or new_run_id()
    layout = Layout.at(params.data_dir)
    # The folder, the labels and every model and weights file are checked before any image
    # is hashed or scored (the command line ran the same checks before importing TensorFlow).
    checked = check_curate(params)
    root, classifier, features = checked.root, checked.classifier, checked.features
    expect = params.expectations()
    images = with_hashes(checked.images)
    logger().info("curating %d images in %s (run %s)", len(images), root, run_id)
    rows: list[dict] = []
    if classifier is not None:
        rows += check_on_topic(images, classifier, expect, params.top_k, params.batch_size, run_id)
    if features is not None:
        cache = layout.root / "cache" / "features"
        rows += check_label_issues(
            images, features, str(cache), params.folds, params.seed, params.batch_size, run_id
        )
    path = write_table("curation", rows, run_id=run_id, data_dir=layout.root)
    result = _result(run_id, path, images, rows)
    if in_prefect_run():
        # Artifact keys allow lowercase letters, digits and dashes only.
        key = artifact_key("curation", run_id)
        create_markdown_artifact(_markdown(result, rows), key=key, description="Curation")
    return result


def _result(run_id: str, path: Path, images: list, rows: list[dict]) -> CurateResult:
    counts: dict[str, Counter] = {}
    for row in rows:
        counts.setdefault(row["check"], Counter())[row["verdict"]] += 1
    flagged = Counter(
        label for label, sha in {(r["label"], r["sha256"]) for r in rows if r["verdict"] in FLAGS}
    )
    return CurateResult(
        run_id=run_id,
        curation_path=path.as_posix(),
        images=len(images),
        counts={check: dict(c) for check, c in counts.items()},
        flagged=dict(sorted(flagged.items())),
    )


def _markdown(result: CurateResult, rows: list[dict], shown: int = 20) -> str:
    lines = [f"# Curation {result.run_id}", "", "| check | verdict | images |", "|---|---|---|"]
    for check, verdicts in result.counts.items():
        lines += [f"| {check} | {v} | {n} |" for v, n in sorted(verdicts.items())]
    flagged = [r for r in rows if r["verdict"] in FLAGS][:shown]
    if flagged:
        lines += ["", "| image | label | verdict | evidence |", "|---|---|---|---|"]
        lines += [
            f"| {Path(r['path']).name} | {r['label']} | {r['verdict']} | {r['suggested_label']} "
            f"({r['probability']:.2f}) |"
            for r in flagged
        ]
    return "\n".join(lines)
