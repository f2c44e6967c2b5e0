"""What a CLI command sets up around a flow: the Prefect API, the terminal bar, quiet errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

from flows.cli.progress import prefect_console_handlers, terminal_progress
from flows.cli.server import prefect_api
from storage.errors import PixelpipeError


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


@contextlib.contextmanager
def quiet_pixelpipe_errors(verbose: bool = False) -> Iterator[None]:
    """Filter PixelpipeErrors off Prefect's console handlers unless `verbose`."""
    if verbose:
        yield
        return
    handlers, quiet = prefect_console_handlers(), PixelpipeErrorFilter()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


@contextlib.contextmanager
def flow_session(echo: Callable[[str], None] = print, verbose: bool = False) -> Iterator[None]:
    """Around a flow called from the CLI: choose the Prefect API (server.prefect_api), show a
    live bar when stdout is a terminal, and print a PixelpipeError once (the caller does)."""
    with prefect_api(echo), quiet_pixelpipe_errors(verbose), terminal_progress():
        yield
