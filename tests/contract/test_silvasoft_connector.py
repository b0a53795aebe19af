"""The Silvasoft connector against its sandbox, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.base import Permission
from connectors.errors import ApiError, AuthError, RetriesExhausted
from connectors.silvasoft.client import READ_ONLY, SilvasoftSettings
from mapping.fieldmaps import map_contact
from mapping.model import Contact, Kind, Membership, Order, Rejection
from sync.pipeline import make_mapper
from sync.planner import diff
from sync.state import StateStore
from tests.contract.test_silvasoft_sandbox import UNLIMITED, invoices, relations
from tests.kit import Sandboxes, json_out, make_connector, run_crmsync

RELATIONS = "GET /rest/listrelations/"
NEWEST = "2026-03-29T00:00:00+00:00"  # the date of the last of invoices(30)
INVOICES = "GET /rest/listsalesinvoices/"


@pytest.fixture
def silva(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture(
        {"silvasoft": {"customers": relations(30), "orders": invoices(30)}}, options=UNLIMITED
    )


def read_ids(pages: Any) -> list[str]:
    return [record.id for page in pages for record in page.records]


def without_start(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint without the moment its pass started (the wall clock of the test run)."""
    if "pass" not in checkpoint:
        return checkpoint
    return {**checkpoint, "pass": {k: v for k, v in checkpoint["pass"].items() if k != "started"}}


def scan_at(offset: int, pages: int) -> dict[str, Any]:
    """Mid-scan of the relations: no cursor and no window (a full scan), the next offset."""
    return {"pass": {"since": None, "newest": None, "at": offset, "pages": pages}}


# ----- paging ---------------------------------------------------------------------------------------
def test_relations_scan_ends_on_a_short_page(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    silva = start_sandboxes_fixture({"silvasoft": {"customers": relations(25)}}, options=UNLIMITED)
    connector = make_connector(silva, "silvasoft", page_size=10)
    pages = list(connector.read_contacts(None))
    assert [len(p.records) for p in pages] == [10, 10, 5]
    checkpoints = [without_start(p.checkpoint) for p in pages]
    assert checkpoints == [scan_at(10, 1), scan_at(20, 2), {}]  # a finished scan starts over
    assert silva.stats("silvasoft")["requests"][RELATIONS] == 3 + 1  # the short page is asked for twice
    assert read_ids(pages) == [str(n) for n in range(1001, 1026)]  # in creation order, not by GUID
    by_guid = read_ids(
        make_connector(silva, "silvasoft", page_size=10, relation_sorting="RelationGUID").read_contacts(None)
    )
    guids = {str(r["CustomerNumber"]): r["RelationGUID"] for r in relations(25)}
    assert by_guid == sorted(guids, key=guids.__getitem__) != read_ids(pages)


def test_an_exactly_full_last_page_costs_one_more_empty_request(silva: Sandboxes) -> None:
    connector = make_connector(silva, "silvasoft", page_size=10)
    pages = list(connector.read_contacts(None))
    assert [len(p.records) for p in pages] == [10, 10, 10, 0]
    assert pages[-1].checkpoint == {}
    assert silva.stats("silvasoft")["requests"][RELATIONS] == 4 + 1  # the empty one twice
    assert without_start(pages[1].checkpoint) == scan_at(20, 2)
    resumed = list(connector.read_contacts(pages[1].checkpoint))  # after a crash mid-scan
    assert read_ids(resumed) == [str(n) for n in range(1021, 1031)]


def test_invoices_page_newest_first_and_end_with_a_date_cursor(silva: Sandboxes) -> None:
    connector = make_connector(silva, "silvasoft", page_size=10)
    pages = list(connector.read_orders(None))
    assert [len(p.records) for p in pages] == [10, 10, 10, 0]
    assert silva.stats("silvasoft")["requests"][INVOICES] == 4 + 1  # the empty last page twice
    assert read_ids(pages) == [str(n) for n in range(2_026_030, 2_026_000, -1)]
    # 30 invoices three days apart from 01-01-2026: the newest is dated 29-03-2026
    # mid-pass: no cursor yet (none was stored), no DateFrom, the newest invoice date seen, the offset
    assert without_start(pages[0].checkpoint) == {"pass": {"since": None, "newest": NEWEST, "at": 10, "pages": 1}}
    assert pages[-1].checkpoint == {"cursor": NEWEST}


def test_a_resumed_invoice_read_pages_the_same_window(silva: Sandboxes) -> None:
    connector = make_connector(silva, "silvasoft", page_size=10)
    # the pass read from 28-02-2026 (DateFrom 27-02-2026), not from the cursor minus the look-back
    window = {"since": "2026-02-28T00:00:00+00:00", "started": "2026-04-01T00:00:00+00:00", "newest": NEWEST}
    checkpoint = {"cursor": NEWEST, "pass": {**window, "at": 2, "pages": 1}}
    pages = list(connector.read_orders(checkpoint))
    # dated 27-02-2026 or later: invoices 2026020 ... 2026030, less the two read before the crash
    assert read_ids(pages) == [str(n) for n in range(2_026_028, 2_026_019, -1)]
    assert pages[-1].checkpoint == {"cursor": NEWEST}


# ----- incremental reads ---------------------------------------------------------------------------
def test_an_unchanged_relation_costs_nothing_downstream_and_a_changed_one_is_seen(
    silva: Sandboxes, tmp_path: Path
) -> None:
    connector = make_connector(silva, "silvasoft", page_size=10)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    mapper = make_mapper(connector, Kind.CONTACT, {"silvasoft": connector})

    def scan(seq: int) -> tuple[int, int]:
        stored = [
            store.store_page("silvasoft", Kind.CONTACT, p.records, mapper, seq) for p in connector.read_contacts(None)
        ]
        return sum(s.received for s in stored), sum(s.changed for s in stored)

    assert scan(1) == (30, 30)
    assert scan(2) == (30, 0)  # Silvasoft has no modified filter: a full scan, and nothing to do
    silva.patch_customer("silvasoft", "1007", {"Email": "nieuw.adres@example.nl"})
    assert scan(3) == (30, 1)
    changed = {c.id: c for c, seq in store.iter_contacts() if seq == 3}
    assert list(changed) == ["1007"] and changed["1007"].email == "nieuw.adres@example.nl"


def test_an_invoice_entered_late_with_an_earlier_date_or_credited_since_is_read_at_the_next_cycle(
    silva: Sandboxes,
) -> None:
    """`listsalesinvoices` filters by invoice date only. The newest invoice read is dated 29-03; a
    bookkeeper then enters invoice 2026031 dated 20-03 and credits 2026027 (dated 20-03 too). With
    a look-back of a day both were missed until the full read; the default two weeks reads them."""
    connector = make_connector(silva, "silvasoft", page_size=10)
    checkpoint = list(connector.read_orders(None))[-1].checkpoint
    assert checkpoint == {"cursor": "2026-03-29T00:00:00+00:00"}
    app = silva.app("silvasoft")
    with app.lock:
        app.invoices[2_026_031] = {**invoices(1)[0], "InvoiceNumber": 2_026_031, "InvoiceDate": "20-03-2026"}
        app.invoices[2_026_027] = {**app.invoices[2_026_027], "InvoiceStatus": "Credited"}
    silva.reset_stats()
    pages = list(connector.read_orders(checkpoint))
    read = {record.id: record.payload for page in pages for record in page.records}
    # DateFrom 14-03-2026: two weeks and a day before the newest date; nothing dated before it.
    assert sorted(read) == [str(n) for n in range(2_026_025, 2_026_032)]
    assert read["2026027"]["InvoiceStatus"] == "Credited" and read["2026031"]["InvoiceDate"] == "20-03-2026"
    assert pages[-1].checkpoint == {"cursor": "2026-03-29T00:00:00+00:00"}
    assert silva.request_log("silvasoft")[0]["path"] == "/rest/listsalesinvoices/"


def test_invoices_map_to_orders_and_credited_ones_do_not_count(silva: Sandboxes) -> None:
    connector = make_connector(silva, "silvasoft")
    records = {r.id: r for p in connector.read_orders(None) for r in p.records}
    mapper = make_mapper(connector, Kind.ORDER, {"silvasoft": connector})
    order = mapper(records["2026001"])
    assert isinstance(order, Order)
    assert (order.customer_id, order.currency, str(order.amount)) == ("1001", "EUR", "121.0")
    assert order.created_at == datetime(2026, 1, 1, tzinfo=UTC) and order.counts
    credited = mapper(records["2026002"])
    assert isinstance(credited, Order) and credited.counts is False


@pytest.mark.parametrize("status", ["Gecrediteerd", "PartiallyCredited", None])
def test_an_invoice_of_a_status_crmsync_does_not_know_is_held_not_counted(silva: Sandboxes, status: str | None) -> None:
    """Silvasoft's invoice statuses are not published: counted, a credit note in words crmsync has
    not met would add to the customer's revenue. It is quarantined, saying which status it was."""
    connector = make_connector(silva, "silvasoft")
    app = silva.app("silvasoft")
    with app.lock:
        app.invoices[2_026_001] = {**app.invoices[2_026_001], "InvoiceStatus": status}
    records = {r.id: r for p in connector.read_orders(None) for r in p.records}
    held = make_mapper(connector, Kind.ORDER, {"silvasoft": connector})(records["2026001"])
    assert isinstance(held, Rejection) and held.reason == "unknown_invoice_status"
    assert repr(status) in held.message and held.customer_id == "1001"


def test_relations_map_to_contacts_and_a_stored_shop_number_links_them(silva: Sandboxes) -> None:
    connector = make_connector(silva, "silvasoft", links={"webshop": "CustomerNumber"})
    record = next(iter(next(connector.read_contacts(None)).records))
    contact = map_contact(record, connector.contact_fieldmap, connector.owned_state(record.payload), lambda s, raw: raw)
    assert isinstance(contact, Contact)
    assert (contact.id, contact.email, contact.given_name, contact.infix, contact.family_name) == (
        "1001",
        "klant0@example.nl",
        "Klant0",
        "de",
        "Vries",
    )
    assert contact.links == ("webshop:1001",)
    assert connector.canonical_id(" 1001 ") == "1001" and connector.canonical_id("0") is None


def test_a_relation_without_customer_number_is_quarantined_not_dropped(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    orphan = {**relations(1)[0], "CustomerNumber": 0, "IsCustomer": True}
    silva = start_sandboxes_fixture({"silvasoft": {"customers": [orphan]}}, options=UNLIMITED)
    connector = make_connector(silva, "silvasoft")
    [record] = [record for page in connector.read_contacts(None) for record in page.records]
    mapped = make_mapper(connector, Kind.CONTACT, {"silvasoft": connector})(record)
    assert isinstance(mapped, Rejection) and mapped.reason == "missing_id"


# ----- write-back: none documented ---------------------------------------------------------------
def test_nothing_is_ever_planned_for_silvasoft(silva: Sandboxes) -> None:
    connector = make_connector(silva, "silvasoft")
    caps = connector.capabilities
    assert (caps.read_contacts, caps.read_orders, caps.write_tags, caps.write_fields) == (True, True, False, False)
    payload = silva.customer("silvasoft", "1001")
    verdict = Membership(frozenset({"friends", "tier-gold", "lifecycle-active"}), "gold")
    assert diff("silvasoft", "1001", connector.desired_state(verdict), connector.owned_state(payload)) is None
    with pytest.raises(NotImplementedError):
        connector.write([])


def test_check_reports_read_only_and_sync_plans_nothing_and_touches_nothing(
    start_sandboxes_fixture: Callable[..., Sandboxes], tmp_path: Path
) -> None:
    silva = start_sandboxes_fixture({"silvasoft": {"customers": relations(30), "orders": invoices(30)}}, time_scale=50)
    before = {n: silva.customer("silvasoft", str(n)) for n in range(1001, 1031)}
    config = silva.config(tmp_path)
    check = run_crmsync("check", "-c", str(config), "--json")
    assert check.returncode == 0, check.stderr
    assert json_out(check)["systems"]["silvasoft"] == {
        "type": "silvasoft",
        "reachable": True,
        "auth": "ok",
        "capabilities": {
            "read_contacts": True,
            "read_orders": True,
            "incremental": True,
            "write_tags": False,
            "write_fields": False,
        },
        "permissions": [
            {"name": "read_relations", "ok": True, "fix": None, "needed": True},
            {"name": "read_sales_invoices", "ok": True, "fix": None, "needed": True},
        ],
        "warnings": [READ_ONLY],
        "timezone": None,  # Silvasoft's API names no time zone
        "error": None,
    }
    assert silva.stats("silvasoft")["requests"] == {RELATIONS: 1, INVOICES: 1}
    sync = run_crmsync("sync", "-c", str(config), "--json")
    assert sync.returncode == 0, sync.stderr
    outcome = json_out(sync)["systems"]["silvasoft"]
    assert outcome["status"] == "ok" and outcome["read"] == {"contacts": 30, "orders": 30}
    assert (outcome["planned"], outcome["written"], outcome["write_calls"]) == (0, 0, 0)
    stats = silva.stats("silvasoft")
    assert stats["writes"] == 0 and stats["throttled"] == 0
    assert {n: silva.customer("silvasoft", str(n)) for n in range(1001, 1031)} == before  # byte for byte
    refused = run_crmsync("check", "-c", str(silva.config(tmp_path, silvasoft='api_key = "wrong"')), "--json")
    assert refused.returncode == 3 and json_out(refused)["systems"]["silvasoft"]["auth"] == "refused"


def test_a_backfill_of_thousands_through_the_command_line_surfaces_no_error(
    start_sandboxes_fixture: Callable[..., Sandboxes], tmp_path: Path
) -> None:
    # 3000 relations and 300 invoices in pages of 20: 167 requests against 2/s and 50/min (x50).
    data = {"customers": relations(3000), "orders": invoices(300, every_days=1)}
    silva = start_sandboxes_fixture({"silvasoft": data}, time_scale=50)
    app = silva.app("silvasoft")
    with app.lock:
        before = json.dumps(app.relations, sort_keys=True)
    result = run_crmsync("backfill", "-c", str(silva.config(tmp_path, silvasoft="page_size = 20")), "--json")
    assert result.returncode == 0, result.stderr
    outcome = json_out(result)["systems"]["silvasoft"]
    assert (outcome["status"], outcome["error"]) == ("ok", None)
    assert outcome["read"] == {"contacts": 3000, "orders": 300} and outcome["planned"] == 0
    stats = silva.stats("silvasoft")
    # every scan's short (or empty) last page is asked for twice
    assert stats["requests"] == {RELATIONS: 152, INVOICES: 17} and stats["throttled"] <= 2
    with app.lock:
        assert json.dumps(app.relations, sort_keys=True) == before  # nothing touched


# ----- what replies mean -----------------------------------------------------------------------------
def test_ratelimit_401_is_a_throttle_retried_after_the_configured_wait(silva: Sandboxes) -> None:
    connector = make_connector(silva, "silvasoft", ratelimit_wait=0.3)
    silva.fault("silvasoft", match="reads", fault="vendor-throttle", times=2)
    assert len(read_ids(connector.read_contacts(None))) == 30
    log = silva.request_log("silvasoft")
    assert [e["status"] for e in log] == [401, 401, 200, 200]  # the short page is asked for twice
    assert log[1]["t"] - log[0]["t"] >= 0.3 and log[2]["t"] - log[1]["t"] >= 0.3  # no Retry-After: our own wait
    assert silva.stats("silvasoft")["throttled"] == 2 and connector.client.stats.throttled == 2


def test_an_hourly_quota_used_up_ends_the_read_saying_what_it_is_and_what_to_do(silva: Sandboxes) -> None:
    """Silvasoft documents its 401 "Ratelimit exceeded" as the requests of the past hour used up:
    when the waits do not help, the error says so, not just "throttled"."""
    connector = make_connector(silva, "silvasoft", ratelimit_wait=0.05, retry={"attempts": 2})
    silva.fault("silvasoft", match="reads", fault="vendor-throttle", times=5)
    with pytest.raises(RetriesExhausted) as exhausted:
        list(connector.read_contacts(None))
    message = str(exhausted.value)
    assert "gave up after 2 attempts" in message and "in an hour" in message and "API plan" in message
    assert silva.stats("silvasoft")["requests"][RELATIONS] == 2


def test_check_proves_both_reads_and_says_plainly_that_nothing_is_written(silva: Sandboxes) -> None:
    before = {n: silva.customer("silvasoft", str(n)) for n in range(1001, 1031)}
    report = make_connector(silva, "silvasoft").check()
    assert report.permissions == [Permission("read_relations", True), Permission("read_sales_invoices", True)]
    assert report.missing == []
    assert report.capabilities.to_json() == {
        "read_contacts": True,
        "read_orders": True,
        "incremental": True,
        "write_tags": False,
        "write_fields": False,
    }
    [warning] = report.warnings
    assert "crmsync writes nothing to Silvasoft" in warning and "no tag, category or custom field" in warning
    calls = [(e["method"], e["path"], e["status"]) for e in silva.request_log("silvasoft")]
    assert calls == [("GET", "/rest/listrelations/", 200), ("GET", "/rest/listsalesinvoices/", 200)]
    assert silva.stats("silvasoft")["writes"] == 0
    assert {n: silva.customer("silvasoft", str(n)) for n in range(1001, 1031)} == before


def test_credentials_401_is_an_auth_error_and_never_retried(silva: Sandboxes) -> None:
    wrong = make_connector(silva, "silvasoft", api_key="wrong-key")
    with pytest.raises(AuthError, match=r"silvasoft: GET /rest/listrelations/: credentials refused.*UNAUTHORIZED"):
        wrong.check()
    assert INVOICES not in silva.stats("silvasoft")["requests"]  # the check stops at the refusal
    silva.fault("silvasoft", match="reads", fault="auth", times=1)
    with pytest.raises(AuthError):
        list(make_connector(silva, "silvasoft").read_contacts(None))
    assert silva.stats("silvasoft")["requests"][RELATIONS] == 2  # one each, no retries


def test_a_refused_request_is_final_and_says_why(silva: Sandboxes) -> None:
    connector = make_connector(silva, "silvasoft")
    with pytest.raises(ApiError, match="INVALID_PARAMETER: Limit must be between 1 and 200"):
        connector.get("listrelations", {"Limit": 500})
    assert silva.stats("silvasoft")["requests"][RELATIONS] == 1
    with pytest.raises(ValidationError, match="less than or equal to 200"):
        SilvasoftSettings(
            type="silvasoft", base_url="https://rest-api.silvasoft.nl", api_key="k", username="a@b.nl", page_size=201
        )


def test_technical_errors_and_dropped_connections_are_retried(silva: Sandboxes) -> None:
    silva.fault("silvasoft", match="reads", fault="500", times=1)
    silva.fault("silvasoft", match="reads", fault="reset", times=1)
    connector = make_connector(silva, "silvasoft")
    assert len(read_ids(connector.read_orders(None))) == 30
    assert silva.stats("silvasoft")["requests"][INVOICES] == 3 + 1  # the short page is asked for twice


def test_the_documented_limits_are_the_default_pacing() -> None:
    settings = SilvasoftSettings(
        type="silvasoft", base_url="https://rest-api.silvasoft.nl", api_key="k", username="a@b.nl"
    )
    assert [(w.requests, w.per_seconds) for w in settings.windows()] == [(2, 1.0), (50, 60.0)]
    assert settings.ratelimit_wait == 60.0


# ----- the vendor's rate limit -------------------------------------------------------------------------
def test_a_few_thousand_relations_read_within_both_windows_without_a_surfaced_error(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    # Time scale 50: 2 requests per 20 ms and 50 per 1.2 s. Pages of 20 make 152 requests, which
    # cross the minute window three times; the connector, configured like client_settings(), paces
    # below both windows instead of bouncing off them.
    silva = start_sandboxes_fixture({"silvasoft": {"customers": relations(3000)}}, time_scale=50)
    connector = make_connector(silva, "silvasoft", page_size=20)
    ids = read_ids(connector.read_contacts(None))
    assert len(ids) == len(set(ids)) == 3000
    stats = silva.stats("silvasoft")
    assert stats["requests"][RELATIONS] == 152  # 151 pages, the empty last one asked for twice
    assert stats["throttled"] <= 2 and stats["errors"] == 0
    times = [e["t"] for e in silva.request_log("silvasoft") if e["status"] == 200]
    assert times[-1] - times[0] >= 3 * 1.2  # three full long windows: the limit really was in force
