"""The CLI's live progress bars: one rich bar per tasks.runtime.Progress, on a terminal only."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from logging import ERROR, WARNING
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

from flows.cli.prefect_compat import all_loggers, prefect_console_handlers
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


class AboveTheBar(logging.Handler):
    """Stands in for one of Prefect's console handlers while the bar is live: that handler's
    level, filters and format (read at each record, so filters added meanwhile apply), printed
    through the bar's console, so a log line lands above the bar instead of through it."""

    def __init__(self, inner: logging.Handler, console: Console) -> None:
        super().__init__()
        self.inner, self.console = inner, console

    def handle(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.inner.level or not self.inner.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = record.levelno
            style = "red" if level >= ERROR else "yellow" if level >= WARNING else ""
            self.console.print(Text(self.inner.format(record), style=style), soft_wrap=True)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def terminal_progress(enabled: bool | None = None) -> Iterator[BarSink | None]:
    """While active, every Progress in this process also drives a live bar, and Prefect's
    console handlers print above it. Off when stdout is no terminal."""
    if not (sys.stdout.isatty() if enabled is None else enabled):
        yield None
        return
    console = Console(stderr=True, highlight=False)  # where Prefect's console handler writes
    swapped = _swap_handlers(prefect_console_handlers(), console)
    bar = new_bar(console)
    sink = BarSink(bar)
    bar.start()
    set_progress_sink(sink)
    try:
        yield sink
    finally:
        set_progress_sink(None)
        bar.stop()
        for logger, stand_in, handler in swapped:
            logger.removeHandler(stand_in)
            logger.addHandler(handler)


def _swap_handlers(
    handlers: list[Any], console: Console
) -> list[tuple[logging.Logger, AboveTheBar, Any]]:
    """Replace each of `handlers` by an AboveTheBar on every logger that has it."""
    stand_ins = {id(h): AboveTheBar(h, console) for h in handlers}
    swapped = []
    for logger in all_loggers():
        for handler in [h for h in logger.handlers if id(h) in stand_ins]:
            logger.removeHandler(handler)
            logger.addHandler(stand_ins[id(handler)])
            swapped.append((logger, stand_ins[id(handler)], handler))
    return swapped
