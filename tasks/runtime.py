"""Logging and progress that work inside a Prefect run and outside one (tests, `.fn()`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

T = TypeVar("T")
# Each artifact update is an API call (tens of ms on a busy machine): a loop that advances per
# batch would spend seconds on them. The first and the final update always go out.
MIN_UPDATE_S = 1.0


def in_prefect_run() -> bool:
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def logger(name: str = "pixelpipe") -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run (so lines show in the UI), else a standard logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


class Progress:
    """Progress of a long loop: a Prefect progress artifact in a run, log lines outside one."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.done, self.description = max(total, 1), 0, description
        self._artifact = None
        self._sent = 0.0  # time.monotonic() of the last artifact update
        if in_prefect_run():
            self._artifact = create_progress_artifact(progress=0.0, description=description)

    def advance(self, n: int = 1) -> None:
        self.done += n
        percent = min(100.0, 100.0 * self.done / self.total)
        if self._artifact is not None:
            now = time.monotonic()
            if percent >= 100.0 or now - self._sent >= MIN_UPDATE_S:
                update_progress_artifact(self._artifact, progress=percent)
                self._sent = now
        else:
            logger().debug("%s: %.0f%%", self.description, percent)

    def track(self, items: Iterable[T], weight: int = 1) -> Iterator[T]:
        for item in items:
            yield item
            self.advance(weight)
