"""Work budgets for parsers of untrusted text: a meter counts what they examine and stops them
at the URL's deadline (checked every CHECK_EVERY units, so the clock costs nothing per step)."""

from __future__ import annotations

import time

from storage.errors import PixelpipeError

CHECK_EVERY = 64 * 1024  # units of work (characters, elements) between two looks at the clock


class ParseTimeout(PixelpipeError, TimeoutError):
    """Parsing a page ran past its URL's deadline; the page becomes a `timeout` row."""


class Meter:
    """Units of work spent by the scanners of one page (characters examined, elements seen).

    Tests read `spent` to check that work grows linearly with the input; the scrape gives it
    `seconds` so that a page's parsing stops when its URL's deadline passes.
    """

    __slots__ = ("_at", "_next_check", "seconds", "spent")

    def __init__(self, seconds: float | None = None) -> None:
        self.spent = 0
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + seconds
        self._next_check = CHECK_EVERY

    def spend(self, units: int) -> None:
        self.spent += units
        if self.spent >= self._next_check:
            self._next_check = self.spent + CHECK_EVERY
            self.check()

    def check(self) -> None:
        """Raise ParseTimeout once the deadline has passed."""
        if self._at is not None and time.monotonic() >= self._at:
            raise ParseTimeout(f"parsing the page ran past the deadline ({self.seconds:.1f} s)")
