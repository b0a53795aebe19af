"""The Lightspeed emulator's request windows: fixed windows, reported in `X-RateLimit-*` triples.

Three fixed request windows (300 per 5 minutes, 3000 per hour, 12000 per day per key) are reported
on every reply as `X-RateLimit-*` triples and answered with 429 when one is used up; a fourth, 20
requests per second per key (announced by Lightspeed staff in 2021), is enforced the same way but
not reported in the headers (whether Lightspeed reports it anywhere is not known).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

from connectors.lightspeed.budget import LIMIT, REMAINING, RESET, format_triple
from connectors.ratelimit import SlidingWindowLimiter, Window

# 5 minutes, hour, day (the windows the headers report, in that order), then the 20 per second.
PUBLISHED_LIMITS = (Window(300, 300.0), Window(3000, 3600.0), Window(12000, 86400.0), Window(20, 1.0))
HEADER_WINDOWS = 3

# (limit, remaining, seconds until reset) of one window.
WindowStatus = tuple[int, int, float]


class FixedWindowLimiter(SlidingWindowLimiter):
    """Lightspeed counts requests per window that resets on its boundary (every 5 minutes, every
    hour, every day), so a client may use a whole window just before a boundary and a whole one
    just after. The sliding log of the parent would be stricter than the vendor."""

    def __init__(self, windows: Sequence[Window], *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(windows, clock=clock)
        self._now = clock
        self._guard = threading.Lock()
        self._slot = [-1] * len(self.windows)
        self._used = [0] * len(self.windows)

    def _roll(self, now: float) -> None:
        for index, window in enumerate(self.windows):
            slot = math.floor(now / window.per_seconds)
            if slot != self._slot[index]:
                self._slot[index], self._used[index] = slot, 0

    def _resets_in(self, index: int, now: float) -> float:
        return (self._slot[index] + 1) * self.windows[index].per_seconds - now

    def try_acquire(self) -> float:
        with self._guard:
            now = self._now()
            self._roll(now)
            full = [i for i, window in enumerate(self.windows) if self._used[i] >= window.requests]
            if full:
                return max(self._resets_in(i, now) for i in full)
            for index in range(len(self.windows)):
                self._used[index] += 1
            return 0.0

    def acquire(self) -> float:
        waited = 0.0
        while (wait := self.try_acquire()) > 0:
            time.sleep(wait)
            waited += wait
        return waited

    def status(self) -> list[WindowStatus]:
        """(limit, remaining, seconds until reset) per window."""
        with self._guard:
            now = self._now()
            self._roll(now)
            return [
                (window.requests, window.requests - self._used[i], self._resets_in(i, now))
                for i, window in enumerate(self.windows)
            ]

    def remaining(self) -> int:
        return min((left for _, left, _ in self.status()), default=0)


def window_headers(windows: Sequence[WindowStatus], *, whole: bool) -> dict[str, str]:
    """The `X-RateLimit-*` triples of the windows Lightspeed reports; `whole=False` (a time-scaled
    emulator) keeps the resets' fractions."""
    windows = windows[:HEADER_WINDOWS]  # the per-second window is not in the triples
    return {
        LIMIT: format_triple([w[0] for w in windows]),
        REMAINING: format_triple([w[1] for w in windows]),
        RESET: format_triple([w[2] for w in windows], whole=whole),
    }


def forced_empty(windows: Sequence[WindowStatus], reset: float) -> list[WindowStatus]:
    """The windows as a forced throttle reports them: the 5-minute one empty, resetting in `reset`
    seconds, the others as they stand (a lone 5-minute window when the emulator keeps none)."""
    forced = [
        (limit, 0 if i == 0 else left, reset if i == 0 else after) for i, (limit, left, after) in enumerate(windows)
    ]
    return forced or [(300, 0, reset)]
