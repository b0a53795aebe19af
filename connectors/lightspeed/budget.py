"""Lightspeed's three request windows as its `X-RateLimit-*` headers state them.

Every reply carries the three windows as slash-separated triples, 5 minutes / hour / day:
`X-RateLimit-Limit: 300/3000/12000`, `X-RateLimit-Remaining: 297/2997/11997`,
`X-RateLimit-Reset: 277/3277/21277` (seconds until each window starts afresh). The windows are
fixed, not sliding: each resets on its boundary (GET /account/ratelimit.json reports the
`resetTime` of each).

crmsync's sliding-window limiter paces one process; `HeaderBudget` adds what only the vendor knows:
how much of each window earlier cycles, other processes or other apps on the same key have used.
Besides the configured sliding-window pacing, crmsync holds back when a window is used up and waits
for the window the headers name; an hour or day used up for longer than `retry.max_retry_after`
ends the cycle with an error instead. Lightspeed also allows at most 20 requests a second per key
(announced by Lightspeed staff, Nov 2021); that window is in the default pacing, and the headers do
not report it.

`HeaderBudget` is a pacer of the connector's ApiClient: `before` every request (it waits, or
refuses), `observe` every reply. Reading a refusal (`throttle_verdict`) learns nothing: it only
says what the reply means.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from connectors.errors import ApiError
from connectors.http import ApiResponse, Verdict

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
    # Rounded up as the whole seconds are, and never 0: a window ending within the next half
    # millisecond still resets in the future (formatted to 0 it read as "no wait" now and then).
    return "/".join(f"{max(math.ceil(v * 1000), 1) / 1000:.3f}".rstrip("0").rstrip(".") for v in values)


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

    def used_up(self, patience: float) -> bool:
        """Waiting for the 5-minute window is pacing. When the hour or the day is used up and
        resets later than `patience` (`retry.max_retry_after`), the cycle ends with a clear error
        instead of hanging; the next cycle resumes from the checkpoint."""
        return self.index > 0 and self.seconds > patience

    def refusal(self) -> str:
        return f"the {self.window} request budget is used up; it resets in {self.seconds:.0f} s"


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


def throttle_verdict(response: ApiResponse, message: str, *, margin: float, patience: float) -> Verdict | None:
    """What a 429 means from its `X-RateLimit-*` headers: wait until the window it names resets,
    or give up when that is an hour or the day resetting later than `patience`. None when the
    headers name no empty window (then Retry-After, as for any 429)."""
    empty = exhausted_in(response.headers)
    if empty is None:
        return None
    if empty.used_up(patience):
        return Verdict("fatal", empty.refusal())
    return Verdict("throttled", message, empty.seconds + margin)


class HeaderBudget:
    """The windows as last reported, counted down locally between replies. Thread-safe.

    `patience` is the longest wait for an hour or a day (`retry.max_retry_after`); `margin` is
    added to every wait for a window to reset (`pace_margin`)."""

    def __init__(
        self,
        system: str,
        *,
        margin: float = 0.0,
        patience: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.system = system
        self.margin = margin
        self.patience = patience
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: list[_Window] = []

    # ----- the Pacer hooks ApiClient calls ----------------------------------------------------------
    def before(self, method: str, path: str, cost: float = 1.0) -> float:
        """Seconds to hold the next request so no window is overdrawn; raises ApiError when an
        hour or the day is used up for longer than is worth waiting."""
        held = self.wait()
        if held is not None and held.seconds > 0 and held.used_up(self.patience):
            raise ApiError(self.system, held.refusal())
        self.spend()
        return held.seconds if held is not None and held.seconds > 0 else 0.0

    def observe(self, response: ApiResponse) -> None:
        self.read(response.headers)

    # ----- the windows --------------------------------------------------------------------------------
    def read(self, headers: Mapping[str, str]) -> None:
        """The windows as a reply's headers state them (a reply without them changes nothing)."""
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
