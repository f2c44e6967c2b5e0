"""promote_model: score tonight's model against its dataset's champion on the frozen
evaluation set and decide, atomically, which one serves the dataset; and rollback_champion."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from pydantic import BaseModel

from flows.gate.entry import gated_flow
from flows.params.registry import PromoteParams, RollbackParams
from storage.champions import Champion, read_champion
from storage.errors import ConfigError, PixelpipeError
from storage.layout import Layout
from tasks.registry.candidate import Candidate, candidate
from tasks.registry.decide import Rule, Verdict, decide
from tasks.registry.evaluate import EvalSet, Scores, eval_set, evaluate_model
from tasks.registry.record import crown, model_row, publish, write_row
from tasks.runtime import logger


class PromoteResult(BaseModel):
    run_id: str  # the model decided about
    dataset: str
    decision: str
    reason: str
    champion_run: str  # the dataset's champion after the decision
    champion_model_path: str
    previous_champion: str | None
    eval_split: str | None = None
    eval_images: int | None = None
    accuracy: float | None = None
    champion_accuracy: float | None = None  # the compared champion, on the same images
    models_path: str  # the `models` file written
    champion_path: str  # models/champions/<dataset>.json
    event_id: str | None = None


def lock_name(dataset: str) -> str:
    return f"pixelpipe-promote-{dataset}"


@contextmanager
def dataset_lock(dataset: str, timeout_s: float) -> Iterator[None]:
    """Hold the dataset's Prefect global concurrency limit (one slot, created on first use):
    two promotions of one dataset decide one after the other, each against the champion the
    other left, so no update is lost."""
    name = lock_name(dataset)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another promotion created it meanwhile
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
    try:
        with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
            yield
    except TimeoutError as e:
        raise PixelpipeError(
            f"another promotion of {dataset!r} held {name} for over {timeout_s:g} s"
        ) from e


def _score_champion(
    champion: Champion | None, model: Candidate, evalset: EvalSet, batch_size: int
) -> tuple[Scores | None, str | None]:
    """The champion on the same images, or why it could not be scored."""
    if champion is None or champion.run_id == model.run_id:
        return None, None
    if champion.class_names != list(model.card.class_names):
        return None, None
    try:
        return evaluate_model(champion.model_path, evalset, batch_size), None
    except (PixelpipeError, OSError) as e:
        logger().warning("champion %s cannot be evaluated: %s", champion.run_id, e)
        return None, str(e)


@gated_flow(name="promote-model", validate_parameters=True)
def promote_model(params: PromoteParams) -> PromoteResult:
    """Challenger vs champion on the dataset's test split; promote or keep, and record it."""
    data_dir = str(Layout.at(params.data_dir).root)
    model = candidate(params.run_id, data_dir)
    evalset = eval_set(model.card.dataset_dir)
    scores = evaluate_model(model.model_path, evalset, params.batch_size)
    with dataset_lock(model.dataset, params.lock_timeout_s):
        before = read_champion(model.dataset, data_dir)  # re-read inside the lock
        theirs, error = _score_champion(before, model, evalset, params.batch_size)
        verdict = decide(
            scores, theirs, Rule(params.min_improvement, params.max_class_drop),
            has_champion=before is not None,
            compatible=before is None or before.class_names == list(model.card.class_names),
            same_model=before is not None and before.run_id == model.run_id,
            force_reason=params.reason if params.force else None,
            champion_error=error,
        )  # fmt: skip
        now = datetime.now(UTC)
        row = model_row(
            model, verdict, now, evalset=evalset, scores=scores,
            champion_run=before.run_id if before else None, champion=theirs,
        )  # fmt: skip
        models_path = write_row(row, data_dir)  # the history first, then the pointer
        if verdict.changes_champion:
            crown(model, verdict, now, before, data_dir, eval_accuracy=scores.accuracy)
    return _finish(row, verdict, model, before, str(models_path), data_dir)


def _finish(
    row: dict, verdict: Verdict, model: Candidate, before: Champion | None,
    models_path: str, data_dir: str,
) -> PromoteResult:  # fmt: skip
    after = read_champion(model.dataset, data_dir)
    if after is None:  # a kept or incompatible model with no champion cannot happen: first
        raise ConfigError(f"dataset {model.dataset!r} has no champion after the decision")
    previous = before.run_id if before and before.run_id != after.run_id else None
    event_id = publish(row, after.run_id, previous)
    logger().info("%s: %s (%s); champion %s", model.run_id, verdict.decision, verdict.reason,
                  after.run_id)  # fmt: skip
    return PromoteResult(
        run_id=model.run_id, dataset=model.dataset, decision=verdict.decision,
        reason=verdict.reason, champion_run=after.run_id,
        champion_model_path=after.model_path, previous_champion=previous,
        eval_split=row["eval_split"], eval_images=row["eval_images"],
        accuracy=row["eval_accuracy"], champion_accuracy=row["champion_accuracy"],
        models_path=models_path,
        champion_path=str(Layout.at(data_dir).champion_file(model.dataset)),
        event_id=event_id,
    )  # fmt: skip


@gated_flow(name="rollback-champion", validate_parameters=True)
def rollback_champion(params: RollbackParams) -> PromoteResult:
    """Bring the dataset's previous champion back, recorded as `rolled_back`."""
    data_dir = str(Layout.at(params.data_dir).root)
    with dataset_lock(params.dataset, params.lock_timeout_s):
        before = read_champion(params.dataset, data_dir)
        if before is None or not before.previous:
            raise ConfigError(
                f"dataset {params.dataset!r} has no previous champion to roll back to"
            )
        model = candidate(before.previous[-1], data_dir)
        why = f"rolled back from {before.run_id}" + (f": {params.reason}" if params.reason else "")
        verdict = Verdict("rolled_back", why)
        now = datetime.now(UTC)
        row = model_row(model, verdict, now, champion_run=before.run_id)
        models_path = write_row(row, data_dir)
        crown(model, verdict, now, before, data_dir, previous=list(before.previous[:-1]))
    return _finish(row, verdict, model, before, str(models_path), data_dir)
