"""Request pacing: "at most N requests in any window of S seconds", for every configured window.

A classic token bucket with capacity N and refill N/S lets through up to 2N requests inside one
S-second window (a full bucket, then the refill), which is exactly how clients end up bouncing off
vendor limits. Keeping the timestamps of the last N requests per window (a sliding log) gives the
guarantee the vendors state. The same class paces crmsync (`acquire`, which waits) and enforces
limits in the sandboxes (`try_acquire`, which answers how long the caller would have to wait).

A client's request counts from the moment its answer is back (`reserve`, then `settle`): the vendor
counted it at some moment between sending and answering, so pacing from the answer keeps every window
at the vendor within its limit however late the request left or arrived (a busy interpreter, a slow
upload, a queue in front of the vendor), which a margin alone covers only up to its size.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    requests: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.requests < 1 or self.per_seconds <= 0:
            raise ValueError("a rate-limit window needs requests >= 1 and per_seconds > 0")


class Slot:
    """One request's place in the windows: the moment it counts from."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


class SlidingWindowLimiter:
    """Thread-safe. `margin` seconds are added to every window, for a vendor that counts a request
    later than it answers it; a slot `settle`d when the answer is back needs none otherwise."""

    def __init__(
        self,
        windows: Sequence[Window],
        *,
        margin: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.windows = tuple(windows)
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._logs = [deque[Slot](maxlen=w.requests) for w in self.windows]

    def _wait_needed(self, now: float) -> float:
        wait = 0.0
        for window, log in zip(self.windows, self._logs, strict=True):
            if len(log) == window.requests:
                wait = max(wait, log[0].at + window.per_seconds + self.margin - now)
        return wait

    def _record(self, now: float) -> Slot:
        slot = Slot(now)
        for log in self._logs:
            log.append(slot)
        return slot

    def try_acquire(self) -> float:
        """Take a slot now if one is free and return 0; otherwise return the seconds to wait."""
        with self._lock:
            now = self._clock()
            wait = self._wait_needed(now)
            if wait <= 0:
                self._record(now)
                return 0.0
            return wait

    def acquire(self) -> float:
        """Block until a slot is free, take it, and return how long we waited."""
        return self.reserve()[0]

    def reserve(self) -> tuple[float, Slot]:
        """Block until a slot is free and take it: how long we waited, and the slot to `settle`."""
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= 0:
                    return waited, self._record(now)
                self._sleep(wait)
                waited += wait

    def settle(self, slot: Slot) -> None:
        """The request that took `slot` is answered (or failed): it counts from now on."""
        with self._lock:
            slot.at = max(slot.at, self._clock())

    def remaining(self) -> int:
        """Requests that could go out right now without waiting (for headers like X-RateLimit-Remaining)."""
        with self._lock:
            now = self._clock()
            free = []
            for window, log in zip(self.windows, self._logs, strict=True):
                used = sum(1 for slot in log if slot.at + window.per_seconds > now)
                free.append(window.requests - used)
            return min(free) if free else 0
