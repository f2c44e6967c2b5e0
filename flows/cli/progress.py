"""The CLI's live progress bars: one rich bar per tasks.runtime.Progress, on a terminal only."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text
from rich.theme import Theme

from tasks.runtime import set_progress_sink


class RateColumn(ProgressColumn):
    """Items per second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?/s" if speed is None else f"{speed:,.1f}/s", style="progress.data.speed")


class BarSink:
    """tasks.runtime.ProgressSink on a rich Progress; rich's own lock makes updates from
    download threads safe, ours keeps the handle bookkeeping consistent."""

    def __init__(self, bar: RichProgress) -> None:
        self.bar = bar
        self._lock = threading.Lock()
        self._open: set[Any] = set()

    def open(self, description: str, total: int) -> Any:
        with self._lock:
            handle = self.bar.add_task(description, total=total)
            self._open.add(handle)
        return handle

    def update(self, handle: Any, done: int) -> None:
        with self._lock:
            if handle in self._open:  # a closed bar is gone from rich's table
                self.bar.update(handle, completed=done)

    def describe(self, handle: Any, description: str) -> None:
        with self._lock:
            if handle in self._open:
                self.bar.update(handle, description=description)

    def close(self, handle: Any) -> None:
        with self._lock:
            if handle not in self._open:
                return
            self._open.discard(handle)
        task = next((t for t in self.bar.tasks if t.id == handle), None)
        if task is not None:  # a finished loop leaves one line above the live bars
            seconds = task.finished_time or task.elapsed or 0.0
            self.bar.console.print(f"{task.description}: {task.completed:g} in {seconds:.1f} s")
        self.bar.remove_task(handle)


def new_bar(console: Console | None = None) -> RichProgress:
    return RichProgress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


@contextlib.contextmanager
def terminal_progress(enabled: bool | None = None) -> Iterator[BarSink | None]:
    """While active, every Progress in this process also drives a live bar. The bars share
    Prefect's console, so its log lines print above them (in its colours) instead of through
    them. Off when stdout is no terminal."""
    if not (sys.stdout.isatty() if enabled is None else enabled):
        yield None
        return
    handlers = prefect_console_handlers()
    console = handlers[0].console if handlers else Console(markup=False, highlight=False)
    others = [(h, h.console) for h in handlers[1:]]
    for handler, _ in others:
        handler.console = console
    console.push_theme(Theme())  # rich's default styles (the bar's); Prefect's theme has none
    bar = new_bar(console)
    sink = BarSink(bar)
    bar.start()
    set_progress_sink(sink)
    try:
        yield sink
    finally:
        set_progress_sink(None)
        bar.stop()
        console.pop_theme()
        for handler, own in others:
            handler.console = own


def prefect_console_handlers() -> list[Any]:
    """Prefect's console handlers (on the root logger by default), configuring Prefect's
    logging first if nothing has yet: handlers made later would escape the caller."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()
    known = list(logging.root.manager.loggerDict.values())
    loggers = [logging.getLogger(), *(x for x in known if isinstance(x, logging.Logger))]
    found: list[Any] = []
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and handler not in found:
                found.append(handler)
    return found
