"""Pacing by Shopify's calculated query cost.

The Admin GraphQL API limits by points, not requests: a leaky bucket (2000 points on the Standard
plan, restored at 100 a second) that every reply reports in `extensions.cost.throttleStatus`,
with the cost the query asked for in `requestedQueryCost`. A query the bucket cannot cover is
refused (`THROTTLED`, HTTP 200), so crmsync waits before sending until the bucket can take it
instead of bouncing off it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from connectors.http import ApiResponse


class CostPacer:
    """A `Pacer` for the ApiClient: `observe` keeps the bucket Shopify last reported (and what each
    operation was charged), `before` says how long to wait until it can cover a request's cost."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.available: float | None = None
        self.maximum = 0.0
        self.rate = 0.0
        self.at = 0.0
        self.costs: dict[str, float] = {}
        # The operation this thread is sending, so the reply's cost report is kept under its name.
        self._sending = threading.local()

    def cost_of(self, operation: str, estimate: float | None = None) -> float:
        """The cost to send `operation` with (this thread sends it next): the caller's estimate
        when it has one (mutations: 10 points each), else what the operation was charged last
        time, else 0 (nothing known yet: no wait)."""
        self._sending.operation = operation
        if estimate is not None:
            return estimate
        with self.lock:
            # An operation not sent before (the first page of orders after the customers) is taken
            # to cost as much as the dearest one seen: a guess too low is a throttled, wasted call.
            dearest = max(self.costs.values(), default=0.0)
            return self.costs.get(operation, dearest)

    def before(self, method: str, path: str, cost: float) -> float:
        """Seconds to wait before sending a request of `cost` (0 when the bucket can take it)."""
        with self.lock:
            if self.available is None or self.rate <= 0:
                return 0.0
            now_available = min(self.maximum, self.available + (time.monotonic() - self.at) * self.rate)
            return max(0.0, (cost - now_available) / self.rate)

    def observe(self, response: ApiResponse) -> None:
        cost = _cost_report(response.body)
        if cost is None:
            return
        status = _status(cost)
        operation = getattr(self._sending, "operation", None)
        with self.lock:
            if operation is not None and isinstance(cost.get("requestedQueryCost"), int | float):
                self.costs[operation] = float(cost["requestedQueryCost"])
            if all(isinstance(status.get(k), int | float) for k in ("currentlyAvailable", "restoreRate")):
                self.available = float(status["currentlyAvailable"])
                self.maximum = float(status.get("maximumAvailable") or self.available)
                self.rate = float(status["restoreRate"])
                self.at = time.monotonic()


def throttle_wait(body: Any) -> float | None:
    """How long until the bucket covers the refused query: (requested - available) / restore rate."""
    cost = _cost_report(body)
    if cost is None:
        return None
    status = _status(cost)
    try:
        requested = float(cost["requestedQueryCost"])
        available = float(status["currentlyAvailable"])
        rate = float(status["restoreRate"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.05, (requested - available) / rate) if rate > 0 else None


def _cost_report(body: Any) -> dict[str, Any] | None:
    extensions = body.get("extensions") if isinstance(body, dict) else None
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    return cost if isinstance(cost, dict) else None


def _status(cost: dict[str, Any]) -> dict[str, Any]:
    status = cost.get("throttleStatus")
    return status if isinstance(status, dict) else {}
