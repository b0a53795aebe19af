"""What the connectors count for the daemon's metrics (connectors/telemetry.py), where it happens:
rate-limit waits in the HTTP client (a long one said at info, with its end, before it starts) and
tokens fetched by an expiring-token authenticator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from connectors.auth import ExpiringTokenAuth, Token, TokenSource, TokenVault
from connectors.http import ApiClient, Cancelled
from connectors.ratelimit import Window
from connectors.telemetry import TELEMETRY
from tests.contract.test_woocommerce_sandbox import customers
from tests.kit import Sandboxes, make_connector, wait_until

CUSTOMERS = "GET /wp-json/wc/v3/customers"


@pytest.fixture
def woo(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"woocommerce": {"customers": customers(5)}})


def waits(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "waiting for rate limit"]


def test_a_long_rate_limit_wait_is_said_at_info_with_its_end_before_it_starts(woo: Sandboxes) -> None:
    woo.fault("woocommerce", match=CUSTOMERS, fault="429", retry_after=6, times=1)
    connector = make_connector(woo, "woocommerce")
    client: ApiClient = connector.client
    TELEMETRY.snapshot_and_reset()
    with structlog.testing.capture_logs() as logs:
        # Once the wait is announced, a stop request cuts it short: had the line come after the
        # sleep, the request would take its six seconds.
        def stop_when_said() -> None:
            if wait_until(lambda: bool(waits(logs)), timeout=15):
                client.stop_event.set()

        watcher = threading.Thread(target=stop_when_said)
        watcher.start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            client.request("GET", "/wp-json/wc/v3/customers", params={"per_page": 1})
        took = time.monotonic() - started
        watcher.join()
    [said] = waits(logs)
    assert said["log_level"] == "info" and said["system"] == "woocommerce" and said["seconds"] == 6.0
    until = datetime.fromisoformat(said["until"])
    assert until.microsecond == 0 and until.tzinfo is not None
    assert abs((until - datetime.now(UTC)).total_seconds() - 6) < 3
    assert took < 4
    counted = TELEMETRY.snapshot_and_reset()["woocommerce"]["rate_limit_wait_s"]
    assert 0 <= counted < 4  # what was waited, not what was announced


def test_short_waits_stay_at_debug_and_are_counted(woo: Sandboxes) -> None:
    client = ApiClient("paced", woo.url("woocommerce"), windows=[Window(1, 0.4)])
    TELEMETRY.snapshot_and_reset()
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(3):
                client.request("GET", "/_sandbox/stats")
    finally:
        client.close()
    said = waits(logs)
    assert len(said) >= 2 and {entry["log_level"] for entry in said} == {"debug"}
    assert all(entry["why"] == "configured rate_limit" for entry in said)
    counted = TELEMETRY.snapshot_and_reset()
    assert 0.6 <= counted["paced"]["rate_limit_wait_s"] < 3
    assert TELEMETRY.snapshot_and_reset() == {}  # taken and reset


class Numbered(TokenSource):
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.issued = 0

    def identity(self) -> str:
        return "numbered"

    def fetch(self, previous: Token | None) -> Token:
        self.issued += 1
        return Token(f"numbered-token-{self.issued:04d}", self.clock() + timedelta(hours=1))


def test_every_token_fetched_is_counted_and_a_reused_one_is_not() -> None:
    moment = [datetime(2026, 5, 1, 12, tzinfo=UTC)]
    source = Numbered(lambda: moment[0])
    auth = ExpiringTokenAuth(
        "crm", source, lambda request, token: None, margin=300, vault=TokenVault(), clock=lambda: moment[0]
    )
    TELEMETRY.snapshot_and_reset()
    auth.token()
    auth.token()  # still fresh: no fetch
    moment[0] += timedelta(minutes=56)  # within the renewal margin
    auth.token()
    assert source.issued == 2
    assert TELEMETRY.snapshot_and_reset() == {"crm": {"rate_limit_wait_s": 0.0, "token_renewals": 2}}
