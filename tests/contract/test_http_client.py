"""The HTTP core against a real sandbox: retries, typed errors and pacing, measured."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pydantic import SecretStr

from connectors.auth import HeaderAuth
from connectors.errors import ApiError, AuthError, RetriesExhausted
from connectors.http import ApiClient, Cancelled, RetryPolicy
from sync.checking import check_system
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


class _Origin(http.server.BaseHTTPRequestHandler):
    """A vendor that redirects, and answers in a charset of its own; `seen` keeps every request."""

    seen: list[tuple[str, str, dict[str, str]]]
    elsewhere = ""  # the other server's origin

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, dict(self.headers)))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        moves = {
            "/moved": "/target?from=moved",
            "/loop": "/loop",
            "/away": f"{self.elsewhere}/steal",
            "/write": "/target",
        }
        if self.path in moves:
            self.send_response(307 if self.path == "/write" else 301)
            self.send_header("Location", moves[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, kind = {
            "/latin": ("café".encode("latin-1"), "text/plain; charset=ISO-8859-1"),
            "/bad-utf8": (b'{"name": "caf\xe9"}', "application/json"),
        }.get(self.path.split("?")[0], (b'{"ok": true}', "application/json"))
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def origins() -> Iterator[tuple[str, list[tuple[str, str, dict[str, str]]], list[tuple[str, str, dict[str, str]]]]]:
    """Two servers on loopback: the vendor's origin and another one; what each was asked."""
    servers, logs = [], []
    for _ in range(2):
        seen: list[tuple[str, str, dict[str, str]]] = []
        handler = type("Handler", (_Origin,), {"seen": seen})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        logs.append(seen)
    vendor, other = (f"http://127.0.0.1:{server.server_address[1]}" for server in servers)
    servers[0].RequestHandlerClass.elsewhere = other  # type: ignore[attr-defined]
    try:
        yield vendor, logs[0], logs[1]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_a_read_follows_a_redirect_within_its_origin_only_and_a_write_none(origins: tuple) -> None:
    vendor, asked, other_asked = origins
    key = "k-3f9a1c7e5d"
    client = ApiClient("vendor", vendor, auth=HeaderAuth({"X-Api-Key": SecretStr(key)}))
    assert client.request("GET", "/moved").body == {"ok": True}
    assert [(method, path) for method, path, _ in asked] == [("GET", "/moved"), ("GET", "/target?from=moved")]
    assert asked[-1][2]["X-Api-Key"] == key  # signed for its own origin
    # To another origin: not followed, so the key never reaches it; the redirect is an error.
    with pytest.raises(ApiError, match=r"GET /away: HTTP 301"):
        client.request("GET", "/away")
    assert other_asked == []
    # A write is never sent again, not even within the origin.
    asked.clear()
    with pytest.raises(ApiError, match=r"POST /write: HTTP 307"):
        client.request("POST", "/write", json_body={"tags": ["x"]})
    assert [(method, path) for method, path, _ in asked] == [("POST", "/write")]
    # A redirect loop ends: the sixth answer is taken as it is.
    asked.clear()
    with pytest.raises(ApiError, match=r"GET /loop: HTTP 301"):
        client.request("GET", "/loop")
    assert len(asked) == 6


def test_a_reply_is_read_in_the_charset_it_names_else_as_utf8(origins: tuple) -> None:
    vendor, _, _ = origins
    client = ApiClient("vendor", vendor)
    assert client.request("GET", "/latin", expect_json=False).text == "café"
    # JSON without a charset is UTF-8; a byte that is not becomes U+FFFD, as the text reads it.
    assert client.request("GET", "/bad-utf8").body == {"name": "caf\ufffd"}


def test_a_refused_connection_is_a_transient_error_naming_the_reason() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ApiClient("vendor", f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=1))
    with pytest.raises(RetriesExhausted, match=r"GET /x: connection failed \(\[Errno 111\] Connection refused\)"):
        client.request("GET", "/x")


def test_check_tells_a_system_that_answered_badly_from_one_that_did_not_answer(woo: Sandboxes) -> None:
    """`reachable` in `check`: a host that answered with 5xx until the retries ran out is there (the
    fix is on its side, or later); one nothing listens on is not (the fix is the address or the
    network)."""
    woo.fault("woocommerce", match=CUSTOMERS, fault="503", retry_after=0, times=10)
    quick = {"retry": {"attempts": 2, "backoff_initial": 0.01}}
    failing = check_system("woocommerce", make_connector(woo, "woocommerce", **quick))
    assert (failing["reachable"], failing["auth"]) == (True, "unknown") and "HTTP 503" in failing["error"]
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = check_system("woocommerce", make_connector(woo, "woocommerce", base_url=f"http://127.0.0.1:{port}", **quick))
    assert (gone["reachable"], gone["auth"]) == (False, "unknown") and "Connection refused" in gone["error"]
