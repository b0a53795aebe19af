"""The alert evaluation (sync/alerts.py `evaluate`), without HTTP: each kind starts once, stays
quiet while its condition lasts, clears once, and can start again; what a cycle cannot judge
changes nothing. And the delivery (`Notifier`) against a loopback receiver: retried, redacted,
never holding up its caller."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog

from connectors.redaction import register_secret
from sync.alerts import Alert, Evaluation, Notifier, evaluate, load_memory
from sync.config import AlertSettings, load_config
from sync.reports import CycleReport, SystemOutcome
from sync.service import alerts_after_one_off
from sync.state import StateStore
from tests.kit import secret, wait_until

ALL = AlertSettings(failing_cycles=3, rejected_share=0.05, read_swing=0.5, writes_held=True)


def system(status: str = "ok", **fields: Any) -> dict[str, Any]:
    return {
        "status": status,
        "error": fields.pop("error", None if status == "ok" else "shop: connection failed"),
        "planned": 0,
        "rejected": 0,
        "read": {},
        "full": [],
        **fields,
    }


def cycle(n: int = 0, held: dict[str, Any] | None = None, interrupted: bool = False, **systems: Any) -> dict[str, Any]:
    return {
        "finished_at": f"2026-05-01T12:{n:02d}:07.123456+00:00",
        "held": held,
        "interrupted": interrupted,
        "systems": systems or {"shop": system()},
    }


def run(summaries: list[dict[str, Any]], settings: AlertSettings = ALL) -> list[Evaluation]:
    """Evaluate one cycle after another, the memory passing through JSON as the daemon keeps it."""
    memory: dict[str, Any] | None = None
    out = []
    for summary in summaries:
        evaluation = evaluate(memory, summary, settings)
        memory = load_memory(json.dumps(evaluation.memory))
        out.append(evaluation)
    return out


def kinds(alerts: list[Alert]) -> list[tuple[str, str | None]]:
    return [(a.kind, a.system) for a in alerts]


# ----- failing_cycles ----------------------------------------------------------------------------------
def test_failing_cycles_fires_on_the_nth_failure_in_a_row_once_and_clears_once() -> None:
    failed = {"shop": system("failed"), "erp": system()}
    steps = run([cycle(i, **failed) for i in range(5)] + [cycle(5, shop=system(), erp=system())])
    fired = [kinds(e.fired) for e in steps]
    assert fired == [[], [], [("failing_cycles", "shop")], [], [], []]
    assert [kinds(e.resolved) for e in steps][-1] == [("failing_cycles", "shop")]
    assert all(not e.resolved for e in steps[:-1])
    alert = steps[2].fired[0]
    assert alert.message == "shop failed 3 cycles in a row: shop: connection failed"
    assert alert.details["failures_in_a_row"] == 3 and alert.at == "2026-05-01T12:02:07+00:00"
    assert steps[4].failures == {"shop": 5, "erp": 0}
    assert steps[5].failures == {"shop": 0, "erp": 0}
    cleared = steps[5].resolved[0]
    assert cleared.resolved and cleared.to_json()["status"] == "resolved" and "succeeded again" in cleared.message


def test_failing_cycles_starts_again_after_it_cleared_and_an_interruption_neither_breaks_nor_extends_a_run() -> None:
    settings = AlertSettings(failing_cycles=2)
    summaries = [
        cycle(0, shop=system("failed")),
        cycle(1, shop=system("interrupted", error="stopped while reading")),  # not a success: run goes on
        cycle(2, shop=system("failed")),  # second failure in a row
        cycle(3, shop=system()),
        cycle(4, shop=system("failed")),
        cycle(5, shop=system("failed")),
    ]
    steps = run(summaries, settings)
    assert [len(e.fired) for e in steps] == [0, 0, 1, 0, 0, 1]
    assert [len(e.resolved) for e in steps] == [0, 0, 0, 1, 0, 0]
    assert steps[1].failures == {"shop": 1}


# ----- rejected_share ---------------------------------------------------------------------------------
def test_rejected_share_is_judged_only_in_cycles_that_wrote() -> None:
    held = {"reason": "no complete picture yet", "waiting_for": ["erp"]}
    settings = AlertSettings(rejected_share=0.05)
    steps = run(
        [
            cycle(0, shop=system(planned=100, rejected=5)),  # exactly the share: not over it
            cycle(1, shop=system(planned=100, rejected=6)),  # over: fires
            cycle(2, shop=system(planned=1, rejected=1)),  # still over: quiet
            cycle(3, held=held, shop=system(planned=40, rejected=0)),  # held: nothing written, not judged
            cycle(4, shop=system("failed", planned=10, rejected=0)),  # failed: not judged
            cycle(5, shop=system(planned=0, rejected=0)),  # nothing to write: not judged
            cycle(6, shop=system(planned=50, rejected=1)),  # 2 %: clears
        ],
        settings,
    )
    assert [kinds(e.fired) for e in steps] == [[], [("rejected_share", "shop")], [], [], [], [], []]
    assert [len(e.resolved) for e in steps] == [0, 0, 0, 0, 0, 0, 1]
    fired = steps[1].fired[0]
    assert fired.details == {"planned": 100, "rejected": 6, "share": 0.06, "threshold": 0.05}
    assert "6 of 100" in fired.message


# ----- read_swing ---------------------------------------------------------------------------------------
def full(count: int) -> dict[str, Any]:
    return system(read={"contacts": count, "orders": 3}, full=["contacts"])


def test_read_swing_compares_a_full_read_with_the_median_of_the_recent_full_reads() -> None:
    settings = AlertSettings(read_swing=0.3)
    summaries = [
        cycle(0, web=full(100)),
        cycle(1, web=full(104)),
        cycle(2, web=full(40)),  # only two full reads known before it: not judged yet
        cycle(3, web=system(read={"contacts": 2, "orders": 1})),  # incremental: never judged
        cycle(4, web=full(50)),  # median of [100, 104, 40] = 100: 50 % fewer, fires
        cycle(5, web=full(51)),  # median of [100, 104, 40, 50] = 75: 32 % fewer, still firing
        cycle(6, web=system("failed", read={"contacts": 1}, full=["contacts"])),  # failed: not judged, not kept
        cycle(7, web=full(60)),  # median of [100, 104, 40, 50, 51] = 51: 18 %, clears
    ]
    steps = run(summaries, settings)
    assert [kinds(e.fired) for e in steps] == [[], [], [], [], [("read_swing", "web")], [], [], []]
    assert [len(e.resolved) for e in steps] == [0, 0, 0, 0, 0, 0, 0, 1]
    alert = steps[4].fired[0]
    assert alert.details["stream"] == "contacts" and alert.details["median"] == 100
    assert alert.details["recent"] == [100, 104, 40] and alert.details["swing"] == 0.5
    assert "50 records, 50% fewer than the median 100" in alert.message
    # the memory keeps the last five full reads, no more
    assert steps[-1].memory["full_reads"]["web/contacts"] == [104, 40, 50, 51, 60]
    assert steps[-1].resolved[0].key == "read_swing:web:contacts"


def test_read_swing_upwards_and_an_empty_history_median() -> None:
    settings = AlertSettings(read_swing=0.5)
    steps = run([cycle(i, web=full(n)) for i, n in enumerate([0, 0, 0, 30, 10, 10, 10, 16])], settings)
    # a median of 0 says nothing about a swing; 16 against a median of 10 is 60 % more
    assert [kinds(e.fired) for e in steps] == [[], [], [], [], [], [], [], [("read_swing", "web")]]
    assert "60% more" in steps[-1].fired[0].message


def test_read_swing_fires_when_a_full_read_left_out_too_many_stored_contacts_to_judge() -> None:
    """The extract held back a mass absence (`absent_share`): the alert says so from the first
    full read, with no history to compare with, and clears at the next full read that does not."""
    settings = AlertSettings(read_swing=0.5)
    held = {"contacts": {"absent": 40, "stored": 100}}
    steps = run([cycle(0, web=full(60) | {"absent_held": held}), cycle(1, web=full(100))], settings)
    assert [kinds(e.fired) for e in steps] == [[("read_swing", "web")], []]
    alert = steps[0].fired[0]
    assert "left out 40 of the 100 stored records" in alert.message and "absent_share" in alert.message
    assert "rights" in alert.message and alert.details["absent"] == 40
    assert [len(e.resolved) for e in steps] == [0, 1]


def test_read_swing_of_a_held_absence_keeps_the_swing_against_the_earlier_reads() -> None:
    """A full read that both swung against the recent full reads and left out too many stored
    contacts is one alert: the absence's message, and the swing's figures beside its own."""
    settings = AlertSettings(read_swing=0.3)
    held = {"contacts": {"absent": 60, "stored": 100}}
    summaries = [cycle(i, web=full(100)) for i in range(3)] + [cycle(3, web=full(40) | {"absent_held": held})]
    steps = run(summaries, settings)
    assert [kinds(e.fired) for e in steps] == [[], [], [], [("read_swing", "web")]]
    alert = steps[3].fired[0]
    assert "left out 60 of the 100 stored records" in alert.message
    assert alert.details["median"] == 100 and alert.details["swing"] == 0.6 and alert.details["count"] == 40
    assert alert.details["absent"] == 60 and alert.details["stored"] == 100


# ----- writes_held ---------------------------------------------------------------------------------------
def test_writes_held_fires_once_while_held_and_not_on_an_interrupted_cycle() -> None:
    held = {"reason": "no complete picture yet: erp could not be read", "waiting_for": ["erp"]}
    settings = AlertSettings(writes_held=True)
    steps = run(
        [cycle(0, held=held), cycle(1, held=held), cycle(2, interrupted=True), cycle(3), cycle(4, held=held)],
        settings,
    )
    assert [kinds(e.fired) for e in steps] == [[("writes_held", None)], [], [], [], [("writes_held", None)]]
    assert [len(e.resolved) for e in steps] == [0, 0, 0, 1, 0]
    assert steps[0].fired[0].details == {"waiting_for": ["erp"]}
    assert steps[0].fired[0].message.startswith("writes held: no complete picture yet")


# ----- settings ----------------------------------------------------------------------------------------
def test_nothing_fires_without_thresholds_and_an_alert_switched_off_goes_quietly() -> None:
    failing = cycle(0, held={"reason": "r", "waiting_for": ["shop"]}, shop=system("failed", planned=9, rejected=9))
    assert not any(e.fired for e in run([failing] * 4, AlertSettings()))
    first = evaluate(None, failing, AlertSettings(failing_cycles=1, writes_held=True))
    assert kinds(first.fired) == [("failing_cycles", "shop"), ("writes_held", None)]
    later = evaluate(first.memory, cycle(1, shop=system()), AlertSettings(failing_cycles=1))
    assert kinds(later.resolved) == [("failing_cycles", "shop")]  # writes_held is off now: no word
    assert later.memory["active"] == {}


def test_a_secret_in_an_error_is_masked_in_the_alert() -> None:
    token = secret("shpat_alert_unit_secret_1234")
    register_secret(token)
    evaluation = evaluate(
        None, cycle(0, shop=system("failed", error=f"refused {token}")), AlertSettings(failing_cycles=1)
    )
    assert token not in json.dumps(evaluation.fired[0].to_json())
    assert token not in json.dumps(evaluation.memory)


def test_unreadable_memory_starts_fresh() -> None:
    assert load_memory(None) == load_memory("not json") == load_memory("[1]") == load_memory("")
    assert load_memory(None)["active"] == {}


# ----- delivery ------------------------------------------------------------------------------------------
class Receiver:
    """A loopback webhook: answers the first `failures` POSTs with 503, then 200 (or hangs on
    `hold` until it is released)."""

    def __init__(self, failures: int = 0, hold: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []  # every attempt's body, answered or not
        self.attempts = 0
        self.failures = failures
        self.release = threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append(body)
                receiver.attempts += 1
                receiver.release.wait(10)
                failing = receiver.attempts <= receiver.failures
                if not failing:
                    receiver.bodies.append({"path": self.path, **body})
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def test_the_webhook_is_retried_redacted_and_logged(receiver_factory: Any) -> None:
    hook_token = secret("hooktoken-unit-0123456789abcdef")
    vendor_secret = secret("shpss_unit_vendor_secret_abcdef")
    register_secret(vendor_secret)
    receiver = receiver_factory(failures=2)
    settings = AlertSettings(webhook_url=f"{receiver.url}/hook/{hook_token}", webhook_timeout="2s")
    notifier = Notifier(settings, "shop-prod")
    alert = Alert("failing_cycles", "shop", f"shop failed: {vendor_secret}", "2026-05-01T12:00:00+00:00", {"n": 3})
    with structlog.testing.capture_logs() as logs:
        notifier.notify([alert], [])
        assert wait_until(lambda: len(receiver.bodies) == 1, timeout=15)
        notifier.close()
    body = receiver.bodies[0]
    assert receiver.attempts == 3  # two 503s, then delivered
    assert body["path"] == f"/hook/{hook_token}"
    assert {k: body[k] for k in ("kind", "system", "at", "deployment", "details", "status")} == {
        "kind": "failing_cycles",
        "system": "shop",
        "at": "2026-05-01T12:00:00+00:00",
        "deployment": "shop-prod",
        "details": {"n": 3},
        "status": "firing",
    }
    assert vendor_secret not in json.dumps(body) and body["message"] == "shop failed: ***"
    errors = [e for e in logs if e["event"] == "alert"]
    assert errors == [
        {"event": "alert", "log_level": "error", "kind": "failing_cycles", "system": "shop", "message": alert.message}
    ]
    assert notifier.delivered == 1


def test_every_attempt_at_one_notice_carries_its_id_and_every_other_notice_another(receiver_factory: Any) -> None:
    """A receiver that answered after crmsync gave up on the attempt gets the notice again: the id
    (the same on every attempt, and from a restarted daemon) lets it drop the repeat."""
    receiver = receiver_factory(failures=2)
    settings = AlertSettings(webhook_url=f"{receiver.url}/hook/x", webhook_timeout="2s")
    held = Alert("writes_held", None, "writes held", "2026-05-01T12:00:00+00:00", {})
    failing = Alert("failing_cycles", "shop", "shop failed", "2026-05-01T12:00:00+00:00", {"n": 3})
    cleared = Alert("writes_held", None, "writes held", "2026-05-01T12:05:00+00:00", {}, resolved=True)
    notifier = Notifier(settings, "shop-prod")
    notifier.notify([held, failing], [cleared])
    assert wait_until(lambda: len(receiver.bodies) == 3, timeout=15)
    notifier.close()
    first = receiver.received[0]["id"]
    assert [body["id"] for body in receiver.received[:3]] == [first] * 3  # two 503s, then delivered
    assert [body["kind"] for body in receiver.received[:3]] == ["writes_held"] * 3
    ids = [body["id"] for body in receiver.bodies]
    assert len(set(ids)) == 3 and ids[0] == first and all(len(i) == 32 for i in ids)
    # Another deployment's notice of the same alert is another notice; a restart's is the same one.
    assert held.delivery_id("shop-test") != first == held.delivery_id("shop-prod")
    restarted = Alert.from_json(held.to_json())
    assert restarted.delivery_id("shop-prod") == first


def test_a_hanging_webhook_never_holds_up_the_caller(receiver_factory: Any) -> None:
    receiver = receiver_factory(hold=True)
    notifier = Notifier(AlertSettings(webhook_url=f"{receiver.url}/hook/x", webhook_timeout="1s"), "d")
    alert = Alert("writes_held", None, "writes held: r", "2026-05-01T12:00:00+00:00", {})
    started = time.monotonic()
    notifier.notify([alert], [alert])
    assert time.monotonic() - started < 0.5
    with structlog.testing.capture_logs() as logs:
        assert wait_until(lambda: receiver.attempts >= 1, timeout=5)
        notifier.close(timeout=0.5)
    # close() gives up within its bound (0.5 s + the last attempt's own timeout) and says so
    assert time.monotonic() - started < 8
    assert notifier.delivered == 0
    assert any(e["event"].startswith("alert webhook") for e in logs), logs


# ----- a one-off cycle (a cron'd `sync` instead of the daemon) -------------------------------------------
def test_one_off_cycles_share_the_alert_memory_in_the_state(tmp_path: Path) -> None:
    key, password = secret("ck_one_off_key_0123456789"), secret("cs_one_off_secret_0123456789")
    config = tmp_path / "crmsync.toml"
    config.write_text(
        '[state]\nurl = "sqlite:///crmsync.db"\n[alerts]\nfailing_cycles = 2\n'
        '[systems.web]\ntype = "woocommerce"\nbase_url = "https://winkel.example.nl"\n'
        f'consumer_key = "{key}"\nconsumer_secret = "{password}"\n'
    )
    loaded = load_config(config)

    def report(status: str, dry_run: bool = False) -> CycleReport:
        made = CycleReport("run", dry_run, datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 1, 0, 1, tzinfo=UTC))
        made.systems = {"web": SystemOutcome("woocommerce", status=status, error=None if status == "ok" else "down")}
        return made

    store = StateStore(loaded.state_url())
    try:
        with structlog.testing.capture_logs() as logs:
            for status, dry in [
                ("failed", False),
                ("failed", True),
                ("failed", False),
                ("failed", False),
                ("ok", False),
            ]:
                alerts_after_one_off(loaded, store, report(status, dry), duration=1.0)
        memory = load_memory(store.get_meta("alerts"))
    finally:
        store.close()
    said = [(e["event"], e["kind"], e["system"]) for e in logs if e["event"].startswith("alert")]
    # the dry run judged nothing: the second real failure is the second in a row
    assert said == [("alert", "failing_cycles", "web"), ("alert resolved", "failing_cycles", "web")]
    assert memory["failures"] == {"web": 0} and memory["active"] == {}
