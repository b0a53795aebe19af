"""The HTTP core against a real sandbox: retries, typed errors and pacing, measured."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from connectors.errors import AuthError, RetriesExhausted
from connectors.http import ApiClient, Cancelled
from tests.contract.test_woocommerce_sandbox import customers
from tests.kit import Sandboxes, make_connector

CUSTOMERS = "GET /wp-json/wc/v3/customers"


@pytest.fixture
def woo(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"woocommerce": {"customers": customers(200)}})


def _times(woo: Sandboxes) -> list[float]:
    return [entry["t"] for entry in woo.request_log("woocommerce")]


@pytest.mark.parametrize(
    "fault",
    [
        {"fault": "429"},
        {"fault": "500"},
        {"fault": "502"},
        {"fault": "503", "retry_after": 0},
        {"fault": "reset"},
        {"fault": "truncate"},
        {"fault": "bad-json"},
        {"fault": "vendor-throttle", "retry_after": 0},
    ],
)
def test_transient_failures_are_retried_until_the_read_succeeds(woo: Sandboxes, fault: dict[str, object]) -> None:
    woo.fault("woocommerce", match=CUSTOMERS, times=2, **fault)
    connector = make_connector(woo, "woocommerce", page_size=100)
    ids = [r.id for page in connector.read_contacts(None) for r in page.records]
    assert len(set(ids)) == 200
    assert connector.client.stats.retries == 2
    assert woo.stats("woocommerce")["requests"][CUSTOMERS] == 4  # two failures, then both pages


def test_retry_after_is_honoured(woo: Sandboxes) -> None:
    woo.fault("woocommerce", match=CUSTOMERS, fault="429", retry_after=1, times=1)
    connector = make_connector(woo, "woocommerce", page_size=100)
    connector.check()
    first, second = _times(woo)[:2]
    assert second - first >= 1.0


def test_retry_after_is_capped(woo: Sandboxes) -> None:
    woo.fault("woocommerce", match=CUSTOMERS, fault="503", retry_after=3600, times=1)
    connector = make_connector(woo, "woocommerce", retry={"max_retry_after": 0.2, "backoff_initial": 0.05})
    started = time.monotonic()
    connector.check()
    assert time.monotonic() - started < 5


def test_read_timeout_is_retried(woo: Sandboxes) -> None:
    woo.fault("woocommerce", match=CUSTOMERS, fault="timeout", seconds=1.5, times=1)
    connector = make_connector(woo, "woocommerce", read_timeout=0.3)
    connector.check()
    assert connector.client.stats.retries == 1


def test_credentials_refused_is_final_and_names_the_system(woo: Sandboxes) -> None:
    woo.fault("woocommerce", match=CUSTOMERS, fault="auth", times=1)
    connector = make_connector(woo, "woocommerce")
    with pytest.raises(AuthError, match=r"^woocommerce: GET /wp-json/wc/v3/customers: credentials refused"):
        connector.check()
    assert woo.stats("woocommerce")["requests"][CUSTOMERS] == 1  # never retried


def test_retries_run_out(woo: Sandboxes) -> None:
    woo.fault("woocommerce", match=CUSTOMERS, fault="503", retry_after=0, times=10)
    connector = make_connector(woo, "woocommerce", retry={"attempts": 3, "backoff_initial": 0.01})
    with pytest.raises(RetriesExhausted, match=r"^woocommerce: gave up after 3 attempts"):
        connector.check()
    assert woo.stats("woocommerce")["requests"][CUSTOMERS] == 3


def test_limiter_paces_below_the_limit(woo: Sandboxes) -> None:
    """rate_limit 5/s: no one-second window at the sandbox ever sees more than 5 requests, and a
    200-record read in pages of 10 (20 requests) takes the three-plus seconds that rate implies."""
    connector = make_connector(woo, "woocommerce", page_size=10, rate_limit=[{"requests": 5, "per_seconds": 1}])
    started = time.monotonic()
    ids = [r.id for page in connector.read_contacts(None) for r in page.records]
    elapsed = time.monotonic() - started
    assert len(set(ids)) == 200
    times = _times(woo)
    assert len(times) == 20
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 1.0, f"requests {i}..{i + 5} fit in one second"
    assert 3.0 <= elapsed < 4.5  # 4 bursts of 5: three full windows of waiting, and not much more


def test_a_stop_request_cuts_a_wait_short(woo: Sandboxes) -> None:
    stop = threading.Event()
    client = ApiClient("woocommerce", woo.url("woocommerce"), stop_event=stop)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        client.sleep(30)
    assert time.monotonic() - started < 2
