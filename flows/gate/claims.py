"""A run id is exclusive while a run uses it: a claim file per (stage, run id) under the data root.

A second run of a stage under a run id that a running run holds would replace the first
run's finished parts with its own (measured: 3 rows of 19 left), so it is refused before any
work, with one line naming the holder. A claim is `<data root>/.claims/<stage>/<run id>@<token>
.claim`, touched every `lease_s / 3` by its holder; a claim untouched for `lease_s` belongs to
a run that died (SIGKILL, a lost machine) and is removed by the next claimer, by its exact
name, as the scrape's host leases do (tasks/scrape/politeness.py). The check and the write
happen under a flock on `.claims/.lock`, which the kernel releases when its holder dies, so
two runs starting at once cannot both win and a killed claimer never wedges the folder.

Per (stage, run id): the pipeline's subflows share its run id and each claims its own stage.
Runs without a run id (schedules, UI triggers) make a new one and never collide.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from prefect.runtime import flow_run

from storage.errors import PixelpipeError
from storage.files import write_text
from storage.layout import safe_name
from tasks.runtime import logger

LEASE_S = 60.0  # how long a killed run's claim keeps its run id from being used again
CLAIMS_DIR = ".claims"
_SUFFIX = ".claim"


class RunInUseError(PixelpipeError, RuntimeError):
    """Another run that is still running holds this stage's run id."""


class RunClaim:
    """Hold (stage, run id) under `root` for a `with` block; RunInUseError when held."""

    def __init__(self, root: Path, stage: str, run_id: str, lease_s: float = LEASE_S) -> None:
        self.folder = root / CLAIMS_DIR / safe_name(stage, "stage")
        self.stage, self.run_id, self.lease_s = stage, safe_name(run_id, "run id"), lease_s
        self.path = self.folder / f"{self.run_id}@{secrets.token_hex(8)}{_SUFFIX}"
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    def __enter__(self) -> RunClaim:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with _locked(self.folder.parent / ".lock"):
                holder = self._live_holder()
                if holder is not None:
                    raise RunInUseError(self._refusal(holder))
                write_text(self.path, json.dumps(_about(self.stage, self.run_id, self.lease_s)))
        except OSError as e:  # a read-only or full data root: say where, in one line
            raise PixelpipeError(
                f"cannot claim run id {self.run_id!r} in {self.folder}: {e}"
            ) from e
        self._beats = threading.Thread(target=self._beat_loop, daemon=True, name="run-claim")
        self._beats.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beats is not None:
            self._beats.join()
        self.path.unlink(missing_ok=True)  # ours, by its exact name

    def beat(self) -> bool:
        """Touch the claim (the heartbeat others read); False when it was taken as stale."""
        try:
            os.utime(self.path)
        except FileNotFoundError:
            return False
        return True

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            if not self.beat():
                logger().warning(
                    "run %s lost its %s claim (its heartbeat stalled past %g s): another run"
                    " may now use the run id", self.run_id, self.stage, self.lease_s,
                )  # fmt: skip
                return

    def _live_holder(self) -> Path | None:
        """A fresh claim of this run id, after removing the stale ones by their exact names."""
        now = time.time()
        for path in sorted(self.folder.glob(f"{self.run_id}@*{_SUFFIX}")):
            run_id, _, token = path.name.removesuffix(_SUFFIX).rpartition("@")
            exact = self.folder / f"{run_id}@{token}{_SUFFIX}"
            if run_id != self.run_id or path != exact or not token.isalnum():
                continue
            try:
                age = now - exact.stat().st_mtime
            except FileNotFoundError:  # its run finished meanwhile
                continue
            if age <= _lease_of(exact, self.lease_s):
                return exact
            logger().warning("removing the stale claim %s (untouched for %.0f s)", exact, age)
            exact.unlink(missing_ok=True)
        return None

    def _refusal(self, holder: Path) -> str:
        try:
            about = json.loads(holder.read_text())
        except (OSError, ValueError):
            about = {}
        who = ", ".join(
            f"{k} {about[k]}" for k in ("pid", "host", "flow_run", "since") if about.get(k)
        )
        return (
            f"run id {self.run_id!r} is in use: another {self.stage} run under it is still"
            f" running ({who or holder}); wait for it to finish, or choose another run id"
            f" (a killed run's claim {holder.name} expires {self.lease_s:g} s after its last beat)"
        )


def _lease_of(claim: Path, default: float) -> float:
    """The holder's own lease: its heartbeat's pace, whatever the claimer's is."""
    try:
        return float(json.loads(claim.read_text())["lease_s"])
    except (OSError, ValueError, KeyError, TypeError):  # half-written or foreign: the default
        return default


def _about(stage: str, run_id: str, lease_s: float) -> dict[str, object]:
    """Who holds the claim, for the refusal message of the run that comes second."""
    return {
        "stage": stage,
        "run_id": run_id,
        "lease_s": lease_s,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "flow_run": _flow_run_id(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _flow_run_id() -> str | None:
    return flow_run.id


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock for the few milliseconds of a check-and-claim."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
