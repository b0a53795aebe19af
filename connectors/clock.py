"""The one place crmsync reads the clock (re-exported by `sync/clock.py`).

`$CRMSYNC_NOW` (ISO-8601) replaces it when set: every computation that reads "now" sees that
instant. `$CRMSYNC_NOW_SPEED` (a positive number) lets the clock run from there, that many times
faster than real time, so a daemon can be watched over simulated weeks: `now` is
`$CRMSYNC_NOW` (or the real time at start) plus the real time elapsed since this process started
reading the clock, times the speed. A process started to run one cycle adopts its parent's
starting point (`origin`, `adopt_origin`), so the daemon's simulated time runs on across cycles.

It lives in `connectors/` because token expiry (connectors/auth.py) and the emulators' "now"
(connectors/sandbox/) follow it too: a daemon whose clock runs a day a minute renews a token with
a 24-hour lifetime every simulated day, against an emulator that lets it expire on the same clock.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

from mapping.model import parse_timestamp


class ClockError(ValueError):
    pass


_lock = threading.Lock()
_origin: tuple[float, datetime] | None = None  # (monotonic, real time) of the first reading


def _started() -> tuple[float, datetime]:
    global _origin
    with _lock:
        if _origin is None:
            _origin = (time.monotonic(), datetime.now(UTC))
        return _origin


def origin() -> tuple[float, datetime]:
    """This process's starting point: (monotonic seconds, real time). The monotonic clock is the
    system's, so the numbers mean the same in a child process."""
    return _started()


def adopt_origin(start: tuple[float, datetime]) -> None:
    global _origin
    with _lock:
        _origin = start


def now() -> datetime:
    override = os.environ.get("CRMSYNC_NOW")
    speed = os.environ.get("CRMSYNC_NOW_SPEED")
    base: datetime | None = None
    if override:
        try:
            base = parse_timestamp(override)
        except ValueError:
            raise ClockError(f"CRMSYNC_NOW={override!r} is not an ISO-8601 timestamp") from None
    if not speed:
        return base or datetime.now(UTC)
    try:
        factor = float(speed)
    except ValueError:
        factor = 0.0
    if not factor > 0 or factor == float("inf"):
        raise ClockError(f"CRMSYNC_NOW_SPEED={speed!r} is not a positive number")
    monotonic, real = _started()
    return (base or real) + timedelta(seconds=(time.monotonic() - monotonic) * factor)


class Clock:
    """A clock of its own: `$CRMSYNC_NOW`-style start and speed with its own origin (taken when it
    is made), for an emulator that must run on a test's simulated time whatever this process's
    environment says. `Clock()` with neither reads the real time."""

    def __init__(self, start: datetime | None = None, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ClockError("a clock's speed must be positive")
        self.real = start is None and speed == 1.0
        self.start = start or datetime.now(UTC)
        self.speed = speed
        self.monotonic = time.monotonic()

    def __call__(self) -> datetime:
        if self.real:
            return datetime.now(UTC)
        return self.start + timedelta(seconds=(time.monotonic() - self.monotonic) * self.speed)
