"""The `pixelpipe` command line. The flows return results; this package turns them into text.

- `commands.py`  one subcommand per flow, plus `serve`; -v/-q; `main()`
- `options.py`   the Typer app and the generator: a parameter model -> one option per field,
                 grouped by stage in the help
- `tables.py`    `tables`, `show` (table, CSV, JSON) and `runs`
- `registry.py`  `promote`, `models`, `rollback`
- `checks.py`    checks that need no model or server, run before TensorFlow or Prefect start;
                 `latest` resolved to a run id
- `output.py`    what each command prints from its flow's result
- `session.py`   around a flow call: the Prefect API, the terminal bar, one-line errors
- `server.py`    `pixelpipe server start|status|stop`: a local Prefect server commands find
- `progress.py`  the terminal progress bars
- `prefect_compat.py`  the one use of Prefect beyond its public API (each names what is missing)
- `demo.py`      `pixelpipe demo`: the whole pipeline offline on generated pictures
"""


def main() -> None:
    """The `pixelpipe` console script."""
    # deferred: CLI start-up (importing a submodule of flows.cli need not build the whole app)
    from flows.cli.commands import main as run

    run()
