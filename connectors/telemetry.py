"""What the connectors count for the daemon's metrics, where it happens: seconds spent waiting for a
rate limit (the configured windows, a vendor's pacer, a 429 or throttle reply's Retry-After) in
connectors/http.py, tokens fetched from a token endpoint in connectors/auth.py, and records a read
listed but found deleted when it fetched them (left out of it; efficy's client.py).

One accumulator per process (`TELEMETRY`); a cycle takes `snapshot_and_reset()` at its end, so a
cycle process (sync/scheduler.py) hands back exactly what its cycle did.
"""

from __future__ import annotations

import threading
from collections import defaultdict


class Telemetry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waited: defaultdict[str, float] = defaultdict(float)
        self._renewals: defaultdict[str, int] = defaultdict(int)
        self._gone: defaultdict[str, int] = defaultdict(int)

    def rate_limit_wait(self, system: str, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._waited[system] += seconds

    def token_fetched(self, system: str) -> None:
        with self._lock:
            self._renewals[system] += 1

    def records_gone(self, system: str, count: int = 1) -> None:
        """Records a read listed and found deleted when it came to fetch them (left out of it)."""
        with self._lock:
            self._gone[system] += count

    def snapshot_and_reset(self) -> dict[str, dict[str, float]]:
        """Per system: `rate_limit_wait_s` and `token_renewals` since the last call, and
        `records_gone` where a read left any out."""
        with self._lock:
            names = set(self._waited) | set(self._renewals) | set(self._gone)
            out: dict[str, dict[str, float]] = {
                name: {"rate_limit_wait_s": self._waited.get(name, 0.0), "token_renewals": self._renewals.get(name, 0)}
                for name in sorted(names)
            }
            for name, gone in self._gone.items():
                out[name]["records_gone"] = gone
            self._waited.clear()
            self._renewals.clear()
            self._gone.clear()
        return out


TELEMETRY = Telemetry()
