"""What a CLI command sets up around a flow: the Prefect API, the terminal bar, quiet errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from flows.cli.prefect_compat import prefect_console_handlers
from flows.cli.progress import terminal_progress
from flows.cli.server import prefect_api
from storage.errors import PixelpipeError
from tasks.runtime import PROGRESS_EXTRA


def _error_names(kind: type[BaseException] = PixelpipeError) -> set[str]:
    names = {kind.__name__}
    for sub in kind.__subclasses__():
        names |= _error_names(sub)
    return names


class PixelpipeErrorFilter(logging.Filter):
    """Keeps Prefect's traceback of a PixelpipeError, and its one-line "Finished in state
    Failed(... ConfigError: ...)", off the console: the CLI prints the error once itself. The
    flow run's logs (the API handler) still get both."""

    def __init__(self) -> None:
        super().__init__()
        self.names = _error_names()

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, PixelpipeError):
            return False
        message = record.getMessage()
        if message.startswith("Finished in state Failed"):
            return not any(f"{name}: " in message for name in self.names)
        if message.startswith("Encountered exception during execution: "):
            return not any(f" {n}(" in message or f": {n}(" in message for n in self.names)
        return True


class ConsoleLevelFilter(logging.Filter):
    """What a command shows on the console by default: warnings and errors, the plain progress
    lines (when no bar is drawn), and the first flow run's "Beginning flow run" and "View at"
    lines (its name and its link in the UI); not each task's "Finished in state Completed()".
    `quiet` keeps errors only. The API handler is not filtered: the run's logs keep it all."""

    def __init__(self, quiet: bool = False) -> None:
        super().__init__()
        self.quiet = quiet
        self.first_run: object = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= (logging.ERROR if self.quiet else logging.WARNING):
            return True
        if self.quiet:
            return False
        if getattr(record, PROGRESS_EXTRA, False):
            return True
        run = getattr(record, "flow_run_id", None)
        if self.first_run is None and record.getMessage().startswith("Beginning flow run"):
            self.first_run = run
        message = record.getMessage()
        return run == self.first_run and message.startswith(("Beginning flow run", "View at"))


@contextlib.contextmanager
def console_filters(verbose: bool = False, quiet: bool = False) -> Iterator[None]:
    """Prefect's console handlers: PixelpipeErrors off (the CLI prints them once) and the
    per-task lines off, unless `verbose`; only errors when `quiet`."""
    if verbose:
        yield
        return
    handlers = prefect_console_handlers()
    filters = [PixelpipeErrorFilter(), ConsoleLevelFilter(quiet)]
    for handler in handlers:
        for f in filters:
            handler.addFilter(f)
    try:
        yield
    finally:
        for handler in handlers:
            for f in filters:
                handler.removeFilter(f)


def quiet_after_session(quiet: bool = False) -> None:
    """What Prefect logs after the command (at exit) obeys the same console rules (-q: errors
    only), and its services' drain notices ("EventsWorker - Still processing items: 8 items
    remaining...", a warning a busy machine shows while the last events are sent) stay off
    the console: nothing is lost and nothing is for the user to do."""
    for handler in prefect_console_handlers():
        handler.addFilter(ConsoleLevelFilter(quiet))
        handler.addFilter(_not_a_drain_notice)


def _not_a_drain_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Still processing items")


@contextlib.contextmanager
def flow_session(
    echo: Callable[[str], None] = print, verbose: bool = False, quiet: bool = False
) -> Iterator[None]:
    """Around a flow called from the CLI: choose the Prefect API (server.prefect_api), show a
    live bar when stdout is a terminal (not when `quiet`), keep the console to what matters
    (console_filters), and print a PixelpipeError once (the caller does)."""
    bars = False if quiet else None  # None: on a terminal
    with (
        console_filters(verbose, quiet),
        prefect_api(echo),
        terminal_progress(bars),
        no_heartbeats(),
    ):
        yield


def no_heartbeats() -> contextlib.AbstractContextManager[None]:
    """Ad-hoc runs send no flow-run heartbeats. Prefect 3.9 sends one every 180 s by default to
    spot crashed runs, and at the end of every flow run waits for its heartbeat thread's one-
    second sleep: a second per flow run (eight in `pixelpipe run`), while the command that
    started the run is there to see it crash. Served runs (`pixelpipe serve`, a worker) keep
    Prefect's default."""
    # deferred: CLI start-up (Prefect)
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
