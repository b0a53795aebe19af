"""Lightspeed's three request windows as its `X-RateLimit-*` headers state them.

Every reply carries the three windows as slash-separated triples, 5 minutes / hour / day:
`X-RateLimit-Limit: 300/3000/12000`, `X-RateLimit-Remaining: 297/2997/11997`,
`X-RateLimit-Reset: 277/3277/21277` (seconds until each window starts afresh). The windows are
fixed, not sliding: each resets on its boundary (GET /account/ratelimit.json reports the
`resetTime` of each).

crmsync's sliding-window limiter paces one process; `HeaderBudget` adds what only the vendor knows:
how much of each window earlier cycles, other processes or other apps on the same key have used.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

LIMIT = "X-RateLimit-Limit"
REMAINING = "X-RateLimit-Remaining"
RESET = "X-RateLimit-Reset"
WINDOW_NAMES = ("5-minute", "hourly", "daily")


def window_name(index: int) -> str:
    return WINDOW_NAMES[index] if index < len(WINDOW_NAMES) else f"window {index + 1}"


def parse_triple(text: str | None) -> list[float] | None:
    """`"300/3000/12000"` -> [300.0, 3000.0, 12000.0]; None when absent or garbled."""
    if not text:
        return None
    try:
        values = [float(part) for part in text.split("/")]
    except ValueError:
        return None
    return values if all(math.isfinite(v) and v >= 0 for v in values) else None


def format_triple(values: Sequence[float], *, whole: bool = True) -> str:
    """Whole numbers as Lightspeed writes them; with `whole=False` (a time-scaled emulator, whose
    windows last fractions of a second) resets keep their milliseconds."""
    if whole:
        return "/".join(str(math.ceil(v)) for v in values)
    return "/".join(f"{v:.3f}".rstrip("0").rstrip(".") for v in values)


@dataclass
class _Window:
    limit: int
    remaining: int
    resets_at: float


@dataclass(frozen=True)
class Exhausted:
    """A window with nothing left: how long until it resets, and which one it is (0 = 5 minutes)."""

    seconds: float
    index: int

    @property
    def window(self) -> str:
        return window_name(self.index)


def exhausted_in(headers: Mapping[str, str]) -> Exhausted | None:
    """From a refusal's headers: the longest wait among the windows with nothing left."""
    remaining, reset = parse_triple(headers.get(REMAINING)), parse_triple(headers.get(RESET))
    if remaining is None or reset is None or len(remaining) != len(reset):
        return None
    empty = [(seconds, index) for index, (left, seconds) in enumerate(zip(remaining, reset, strict=True)) if left < 1]
    if not empty:
        return None
    seconds, index = max(empty)
    return Exhausted(seconds, index)


class HeaderBudget:
    """The windows as last reported, counted down locally between replies. Thread-safe."""

    def __init__(self, *, margin: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: list[_Window] = []

    def observe(self, headers: Mapping[str, str]) -> None:
        limit, remaining, reset = (parse_triple(headers.get(name)) for name in (LIMIT, REMAINING, RESET))
        if limit is None or remaining is None or reset is None or not len(limit) == len(remaining) == len(reset):
            return
        now = self._clock()
        with self._lock:
            self._windows = [
                _Window(int(total), int(left), now + seconds)
                for total, left, seconds in zip(limit, remaining, reset, strict=True)
            ]

    def spend(self) -> None:
        """One request is about to go out."""
        with self._lock:
            for window in self._windows:
                window.remaining -= 1

    def wait(self) -> Exhausted | None:
        """How long to hold the next request so no window is overdrawn; None when none is empty."""
        now = self._clock()
        with self._lock:
            empty = [
                (window.resets_at - now + self.margin, index)
                for index, window in enumerate(self._windows)
                if window.remaining < 1 and window.resets_at > now
            ]
            for window in self._windows:
                if window.resets_at <= now:
                    window.remaining = window.limit  # the window started afresh
        if not empty:
            return None
        seconds, index = max(empty)
        return Exhausted(seconds, index)
