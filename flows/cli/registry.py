"""The registry's commands: `pixelpipe promote`, `pixelpipe models`, `pixelpipe rollback`
(registered on the app by flows/cli/commands.py)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import typer

from flows.params.registry import ModelsParams, PromoteParams, RollbackParams
from storage.champions import champion_datasets, read_champion

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    ("", 1), ("run_id", 22), ("dataset", 12), ("model", 10), ("decision", 12),
    ("eval", 11), ("accuracy", 8), ("champion_run", 22), ("champ.acc", 9), ("decided_at", 19),
)  # fmt: skip


def _pct(value: Any) -> str:
    missing = value is None or value != value  # None, or NaN (a null float column)
    return "–" if missing else f"{100 * float(value):.1f}%"


def models_table(frame: pd.DataFrame, champions: dict[str, str]) -> list[str]:
    """The decision history as text lines, oldest first; `*` marks each dataset's champion
    (on the decision that made it champion most recently)."""
    frame = frame.sort_values("decided_at", kind="stable")
    crowned = frame[frame["decision"].isin(["first", "promoted", "forced", "rolled_back"])]
    marked = {
        crowned[(crowned["dataset"] == d) & (crowned["run_id"] == run)].index.max()
        for d, run in champions.items()
    }
    lines = ["  ".join(f"{name:<{width}}" for name, width in COLUMNS).rstrip()]
    for index, row in frame.iterrows():
        split = row["eval_split"]
        split = f"{split}/{row['eval_images']}" if isinstance(split, str) else "–"
        cells = [
            "*" if index in marked else "", row["run_id"], row["dataset"], row["model"],
            row["decision"], split, _pct(row["eval_accuracy"]),
            row["champion_run"] if isinstance(row["champion_run"], str) else "–",
            _pct(row["champion_accuracy"]), f"{row['decided_at']:%Y-%m-%d %H:%M:%S}",
        ]  # fmt: skip
        lines.append("  ".join(f"{c:<{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True)))
        lines.append(f"{'':<3}{row['reason']}")
    return [line.rstrip() for line in lines]


def register(
    params_command: Callable[..., Callable],
    flow_session: Callable[[], AbstractContextManager],
    checked: Callable[[str, Any], Any],
) -> None:
    """Add the registry's commands to the `pixelpipe` app through flows.cli's factory; their
    flows run in the same session as every other command's (the running server, one-line
    errors)."""

    @params_command(
        "promote", PromoteParams, "Challenge a dataset's champion with a trained model."
    )
    def promote(params: PromoteParams) -> None:
        params = checked("promote", params)  # a run without a model: no TensorFlow, no server
        # deferred: CLI start-up (the flow loads Prefect, pandas and TensorFlow)
        from flows.promote_model import promote_model

        with flow_session():
            r = promote_model(params=params)
        typer.echo(f"{r.run_id}: {r.decision} — {r.reason}")
        typer.echo(f"champion of {r.dataset}: {r.champion_run} ({r.champion_model_path})")

    @params_command("models", ModelsParams, "List trained models and decisions; * = champion.")
    def models(params: ModelsParams) -> None:
        # deferred: CLI start-up (pandas and pyarrow would slow every command)
        from storage.parquet import read_table

        frame = read_table("models", data_dir=params.data_dir)
        if params.dataset:
            frame = frame[frame["dataset"] == params.dataset]
        if frame.empty:
            typer.echo(
                "no models in the registry yet"
                + (f" for {params.dataset}" if params.dataset else "")
            )
            return
        champions = {}
        for dataset in champion_datasets(params.data_dir):
            if (champion := read_champion(dataset, params.data_dir)) is not None:
                champions[dataset] = champion.run_id
        typer.echo("\n".join(models_table(frame.reset_index(drop=True), champions)))

    @params_command("rollback", RollbackParams, "Bring a dataset's previous champion back.")
    def rollback(params: RollbackParams) -> None:
        params = checked("rollback", params)
        # deferred: CLI start-up (the flow loads Prefect, pandas and TensorFlow)
        from flows.promote_model import rollback_champion

        with flow_session():
            r = rollback_champion(params=params)
        typer.echo(f"champion of {r.dataset}: {r.champion_run} (was {r.previous_champion})")
