"""What every stage shares at run time: logging and progress that work inside a Prefect run and
outside one (tests, `.fn()`), and the Keras dtype policy a model is built under."""

from __future__ import annotations

import contextvars
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

T = TypeVar("T")
# Each artifact update is an API call and an event the server records (tens of ms of its CPU on
# a busy machine), sent by a background thread (ArtifactUpdates) at most this often per
# artifact; the final one always goes out.
MIN_UPDATE_S = 2.0
FINAL_WAIT_S = 10.0  # how long a finished loop waits for its last update to be sent
# Without a terminal sink (CI, serve, a pipe) progress is a plain log line at most this often.
LOG_EVERY_S = 5.0
# Set on those plain progress lines (a LogRecord attribute), so a console that hides INFO
# lines can still show them.
PROGRESS_EXTRA = "pixelpipe_progress"


class ProgressSink(Protocol):
    """Where progress goes besides the artifacts: the CLI's terminal bar (flows/cli/progress.py).
    Called from any thread (scrape downloads, task runner threads), so it must be thread-safe."""

    def open(self, description: str, total: int) -> Any: ...
    def update(self, handle: Any, done: int) -> None: ...
    def close(self, handle: Any) -> None: ...

    # Optional: `describe(handle, description)` shows a new description (live metrics).


# (pid, sink): process-wide, set by the CLI in its own process only. The pid keeps a sink out of
# forked pool workers, which have no terminal; spawned and Dask workers never see it at all.
_sink: tuple[int, ProgressSink] | None = None


def set_progress_sink(sink: ProgressSink | None) -> None:
    global _sink
    _sink = None if sink is None else (os.getpid(), sink)


def progress_sink() -> ProgressSink | None:
    return _sink[1] if _sink is not None and _sink[0] == os.getpid() else None


def in_prefect_run() -> bool:
    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def logger(name: str = "pixelpipe") -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run (so lines show in the UI), else a standard logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)


class ArtifactUpdates:
    """Progress artifact updates sent by one background thread per process, so a loop never
    waits on the API: only each artifact's latest value is sent, under the context of the
    thread that asked (its run and API), and a loop waits only for its final value."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pending: dict[UUID, tuple[contextvars.Context, float]] = {}
        self._finished: set[UUID] = set()  # final values sent, until their loop has seen it
        self._thread: threading.Thread | None = None

    def send(self, artifact: UUID, context: contextvars.Context, progress: float) -> None:
        with self._changed:
            self._pending[artifact] = (context, progress)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="progress")
                self._thread.start()
            self._changed.notify_all()

    def finish(
        self, artifact: UUID, context: contextvars.Context, timeout: float = FINAL_WAIT_S
    ) -> bool:
        """Send 100% and wait until it went out (False after `timeout`)."""
        self.send(artifact, context, 100.0)
        with self._changed:
            sent = self._changed.wait_for(lambda: artifact in self._finished, timeout)
            self._finished.discard(artifact)
            return sent

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending)
                artifact = next(iter(self._pending))
                context, progress = self._pending.pop(artifact)
            try:
                context.run(update_progress_artifact, artifact, progress=progress)
            except Exception:  # the UI misses one value; the work goes on
                logging.getLogger(__name__).debug("progress update failed", exc_info=True)
            if progress >= 100.0:  # a loop's last value: its owner may be waiting for it
                with self._changed:
                    self._finished.add(artifact)
                    self._changed.notify_all()


_updates = ArtifactUpdates()  # forked children start with no thread: send() starts one


class Progress:
    """Progress of a long loop: a Prefect progress artifact in a run (unless `artifact` is
    False), plus the terminal bar when the CLI installed one (unless `bar` is False), else a
    log line every few seconds.

    A sharded stage shows one artifact for the run, not one per shard: its flow owns a
    `Progress(..., bar=False)` advanced as each shard ends, and each shard's own loop a
    `Progress(..., artifact=False)` whose live bar the terminal shows."""

    def __init__(
        self, total: int, description: str, artifact: bool = True, bar: bool = True
    ) -> None:
        self.total, self.done, self.description = max(total, 1), 0, description
        self._artifact: UUID | None = None
        self._context = contextvars.copy_context()  # the run the artifact's updates belong to
        self._sent = 0.0  # time.monotonic() of the last artifact update
        self._owner = threading.get_ident()
        self._logged = time.monotonic()  # of the last plain progress line
        if artifact and in_prefect_run():
            self._artifact = create_progress_artifact(progress=0.0, description=description)
        terminal = progress_sink()
        self._log = terminal is None  # with a terminal, a loop without a bar shows nothing there
        self._sink = terminal if bar and total > 0 else None  # an empty loop shows no bar
        self._handle = None if self._sink is None else self._sink.open(description, self.total)
        self._closed = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        percent = min(100.0, 100.0 * self.done / self.total)
        # The artifact is updated from the creating thread only: that thread has the run's
        # context; a download thread would find no run (nor, maybe, the right API).
        if self._artifact is not None and threading.get_ident() == self._owner:
            now = time.monotonic()
            if percent >= 100.0:
                _updates.finish(self._artifact, self._context)
                self._artifact = None  # done: later calls change nothing
            elif now - self._sent >= MIN_UPDATE_S:
                _updates.send(self._artifact, self._context, percent)
                self._sent = now
        if self._sink is not None:
            if not self._closed:
                self._sink.update(self._handle, self.done)
                self._closed = self.done >= self.total
                if self._closed:
                    self._sink.close(self._handle)
        elif self._log and time.monotonic() - self._logged >= LOG_EVERY_S:
            self._logged = time.monotonic()
            logger().info(
                "%s: %d/%d (%.0f%%)", self.description, self.done, self.total, percent,
                extra={PROGRESS_EXTRA: True},
            )  # fmt: skip

    def describe(self, description: str) -> None:
        """A new description, e.g. the live loss and accuracy Keras shows beside its bar: on
        the terminal bar when its sink can show it, and in the plain progress lines."""
        self.description = description
        describe = getattr(self._sink, "describe", None)
        if describe is not None and not self._closed:
            describe(self._handle, description)

    def finish(self) -> None:
        """The loop ended before `total` (the total was an upper bound): show it done."""
        self.total = max(self.done, 1)
        self.advance(0)


@contextmanager
def dtype_policy(name: str | None) -> Iterator[None]:
    """Build (and train) layers under a Keras dtype policy such as "mixed_bfloat16", then put
    the global one back; None leaves it as it is."""
    import keras  # deferred: TensorFlow, which logging and progress never need

    before = keras.config.dtype_policy()
    if name:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def evenly_spaced(items: Sequence[T], n: int) -> list[T]:
    """Up to n items spread evenly over the sequence, first and last included: a deterministic
    sample that, over a sorted list, represents every part of it (not just the first n)."""
    if len(items) <= n:
        return list(items)
    step = (len(items) - 1) / max(n - 1, 1)
    return [items[round(i * step)] for i in range(n)]


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from its parts: lowercase letters, digits and dashes only."""
    key = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower())
    return re.sub(r"-{2,}", "-", key).strip("-")
