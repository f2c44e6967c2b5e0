"""The one place pixelpipe reaches past Prefect's public API, each use naming what is missing
upstream; tests/flows/cli/test_prefect_compat.py fails loudly when one of them changes."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def process_api_url(url: str) -> Iterator[None]:
    """Point every thread of this process (and the children it starts) at the Prefect API at
    `url` for a while.

    Missing upstream: a public way to change the process-wide settings after `import prefect`.
    `prefect.settings.temporary_settings` changes the calling context only; threads that do
    not copy it (our download pools, Prefect's log and event workers) read the global settings
    context Prefect built from the environment at import, and without this refresh they would
    start a temporary server of their own. On the way out the global context is put back as it
    was (not rebuilt from the environment), so settings a caller made some other way (a test
    harness, a profile) survive."""
    import prefect.context
    from prefect.context import refresh_global_settings_context

    saved = prefect.context.GLOBAL_SETTINGS_CONTEXT
    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    refresh_global_settings_context()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old
        prefect.context.GLOBAL_SETTINGS_CONTEXT = saved


def all_loggers() -> list[logging.Logger]:
    """The root logger and every logger made so far."""
    known = list(logging.root.manager.loggerDict.values())
    return [logging.getLogger(), *(x for x in known if isinstance(x, logging.Logger))]


def prefect_console_handlers() -> list[Any]:
    """Prefect's console handlers (on the root logger by default).

    Missing upstream: a public way to find the handlers Prefect's logging configuration
    installed; `PrefectConsoleHandler` is public, but only its class tells them apart."""
    # Importing Prefect's public top level configures its logging if nothing has yet (handlers
    # made later would escape the caller).
    from prefect import flow  # noqa: F401
    from prefect.logging.handlers import PrefectConsoleHandler

    found: list[Any] = []
    for logger in all_loggers():
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and handler not in found:
                found.append(handler)
    return found
