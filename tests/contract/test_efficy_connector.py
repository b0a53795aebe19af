"""The efficy connector against its sandbox, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from connectors.efficy.client import EfficyConnector
from connectors.errors import ApiError, AuthError
from connectors.http import ApiResponse
from connectors.ratelimit import Window
from connectors.telemetry import TELEMETRY
from mapping.fieldmaps import map_contact
from mapping.model import Contact, Membership, RemoteState, WriteBack
from sync.planner import diff
from tests.contract.test_efficy_sandbox import contacts, opportunities
from tests.kit import Sandboxes, json_out, make_connector, run_crmsync

SEGMENTS, TIER = "CONT$CRMSYNC.SEGMENTS", "CONT$CRMSYNC.LOYALTY_TIER"
ENDPOINT = "POST /crm/json"


@pytest.fixture
def efficy(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    people = contacts(30)
    people[1]["categories"]["CONT$CRMSYNC"] = {"SEGMENTS": "friends", "LOYALTY_TIER": "gold"}  # an earlier run
    return start_sandboxes_fixture({"efficy": {"customers": people, "orders": opportunities(6)}})


def requests_seen(sandboxes: Sandboxes) -> int:
    return int(sandboxes.stats("efficy")["requests"].get(ENDPOINT, 0))


def change(record_id: str, fields: dict[str, str | None]) -> WriteBack:
    return WriteBack("efficy", record_id, (), (), fields, RemoteState(frozenset(), fields))


@pytest.mark.parametrize(("count", "sizes"), [(30, [10, 10, 10, 0]), (25, [10, 10, 5])])
def test_reads_every_page_including_an_exact_multiple(
    start_sandboxes_fixture: Callable[..., Sandboxes], count: int, sizes: list[int]
) -> None:
    people = contacts(count)
    for person in people[5:17]:
        person["D_CHANGE"] = "2026-01-01T00:00:05"  # a run of ties that crosses a page boundary
    efficy = start_sandboxes_fixture({"efficy": {"customers": people}})
    connector = make_connector(efficy, "efficy", page_size=10)
    pages = list(connector.read_contacts(None))
    ids = [r.id for page in pages for r in page.records]
    assert sorted(ids, key=int) == [str(i) for i in range(1, count + 1)] and len(ids) == len(set(ids))
    # 30 rows: 10, 10, 10 and an empty page that says "done"; 25 rows: the short third page says it
    assert [len(p.records) for p in pages] == sizes
    assert pages[-1].checkpoint == {"cursor": f"2026-01-01T00:00:{count:02d}+00:00"}
    # each page of rows is one query request plus one request consulting crmsync's category; the
    # short (or empty) last page is asked for once more before it ends the read
    assert requests_seen(efficy) == len(sizes) + 3 + 1
    assert efficy.stats("efficy")["writes"] == 0


def test_a_read_resumed_mid_pass_starts_after_the_last_row_stored(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    efficy = start_sandboxes_fixture({"efficy": {"customers": contacts(25)}})
    connector = make_connector(efficy, "efficy", page_size=10, writeback=False)
    first = next(iter(connector.read_contacts(None)))
    # mid-pass: no cursor yet, the keyset position after the last row of the page (D_CHANGE, key)
    assert list(first.checkpoint["pass"]["at"]) == ["2026-01-01T00:00:10", 10]
    assert "cursor" not in first.checkpoint
    resumed = list(connector.read_contacts(json.loads(json.dumps(first.checkpoint))))
    assert [r.id for p in resumed for r in p.records] == [str(i) for i in range(11, 26)]
    assert resumed[-1].checkpoint == {"cursor": "2026-01-01T00:00:25+00:00"}


def test_pages_hold_page_size_rows_because_recordcount_goes_in_lowercase(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """The JSON RPC is case sensitive: sent as `recordCount` the page size would be ignored and the
    whole query would come back in the first page (efficy-u-rpc-api commit bcaa824)."""
    efficy = start_sandboxes_fixture({"efficy": {"customers": contacts(12)}})
    connector = make_connector(efficy, "efficy", page_size=5, writeback=False)
    pages = list(connector.read_contacts(None))
    assert [len(p.records) for p in pages] == [5, 5, 2]
    assert [r.id for p in pages for r in p.records] == [str(i) for i in range(1, 13)]
    assert requests_seen(efficy) == 3 + 1  # the short last page is asked for twice


def test_incremental_read_returns_the_changed_record_and_not_the_others(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy", page_size=10, lookback=0)
    checkpoint = [page.checkpoint for page in connector.read_contacts(None)][-1]
    efficy.patch_customer("efficy", "7", {"FIRSTNAME": "Gewijzigd"})
    changed = [r for page in connector.read_contacts(checkpoint) for r in page.records]
    # the cursor is inclusive: the record at the cursor comes again, then the changed one
    assert [r.id for r in changed] == ["30", "7"]
    assert changed[-1].payload["FIRSTNAME"] == "Gewijzigd"
    assert changed[-1].updated_at is not None and changed[-1].updated_at.year >= 2026


def test_rows_sharing_a_second_page_on_when_efficy_sends_milliseconds(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """Whether D_CHANGE carries milliseconds is not documented. Where it does, the keyset position
    is the row's own text: cut to the second, it named a time before every row of that second, so
    25 rows of one second came back page after page until the paginator stopped the read."""
    people = contacts(25)
    for number, person in enumerate(people):
        person["D_CHANGE"] = f"2026-01-01T12:00:00.{number * 7 + 3:03d}"
    efficy = start_sandboxes_fixture({"efficy": {"customers": people}})
    requests.patch(f"{efficy.url('efficy')}/_sandbox/app", json={"change_millis": True}, timeout=5).raise_for_status()
    connector = make_connector(efficy, "efficy", page_size=10, lookback=0)
    pages = list(connector.read_contacts(None))
    ids = [r.id for page in pages for r in page.records]
    assert ids == [str(i) for i in range(1, 26)]
    assert pages[-1].checkpoint == {"cursor": "2026-01-01T12:00:00.171000+00:00"}
    efficy.patch_customer("efficy", "7", {"FIRSTNAME": "Gewijzigd"})
    assert "." in efficy.customer("efficy", "7")["D_CHANGE"]  # an edit stamped in milliseconds too
    changed = [r.id for page in connector.read_contacts(pages[-1].checkpoint) for r in page.records]
    # a pass starts at the cursor's whole second (a fraction efficy never sent is not sent to it):
    # that second's rows again, then the edit
    assert changed == [*(str(i) for i in range(1, 26) if i != 7), "7"]


def test_owned_fields_come_with_the_contact_and_an_inactive_category_is_empty(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy")
    payloads = {r.id: r.payload for page in connector.read_contacts(None) for r in page.records}
    assert payloads["2"]["categories"] == {"CONT$CRMSYNC": {"SEGMENTS": "friends", "LOYALTY_TIER": "gold"}}
    assert connector.owned_state(payloads["2"]) == RemoteState(frozenset(), {SEGMENTS: "friends", TIER: "gold"})
    assert connector.owned_state(payloads["1"]) == RemoteState(frozenset(), {SEGMENTS: "", TIER: ""})
    assert "CONT$MARKETING" not in payloads["1"]["categories"]  # only what crmsync owns is fetched


def deleted_before_the_consult(efficy: Sandboxes, connector: EfficyConnector, *keys: int) -> None:
    """Someone deletes these contacts in efficy after the query has listed them and before
    crmsync consults them (the connector's own requests, over HTTP, are left as they are)."""
    sent = connector.rpc

    def rpc(contexts: list[dict[str, Any]], *, mutating: bool) -> list[Any]:
        if any(c.get("@name") == "consult" for c in contexts):
            app = efficy.app("efficy")
            with app.lock:
                for key in keys:
                    app.contacts.pop(key, None)
        return sent(contexts, mutating=mutating)

    connector.rpc = rpc  # type: ignore[method-assign]


@pytest.mark.parametrize("context_errors", [True, False])
def test_a_contact_deleted_between_query_and_consult_is_left_out(efficy: Sandboxes, context_errors: bool) -> None:
    """efficy refuses the consult of a deleted record in words that are not public (the sandbox's
    own: an EEfficyException); whether that contact is gone is asked of efficy instead, by its key
    (consultmanyex), and only a contact efficy no longer has is left out. With the app's
    `context_errors` off, the exception node names no contact: every contact of the request is
    looked up, and the others consulted again."""
    url = f"{efficy.url('efficy')}/_sandbox/app"
    requests.patch(url, json={"context_errors": context_errors}, timeout=5).raise_for_status()
    connector = make_connector(efficy, "efficy", page_size=10)
    deleted_before_the_consult(efficy, connector, 5)
    TELEMETRY.snapshot_and_reset()
    with capture_logs() as logs:
        ids = [r.id for page in connector.read_contacts(None) for r in page.records]
    assert sorted(ids, key=int) == [str(i) for i in range(1, 31) if i != 5]
    gone = [e for e in logs if e["event"] == "contact deleted since the query; left out of the read"]
    assert [(e["system"], e["record_id"]) for e in gone] == [("efficy", "5")]
    assert connector.records_gone == 1
    assert TELEMETRY.snapshot_and_reset()["efficy"]["records_gone"] == 1  # crmsync_records_gone_total
    assert efficy.stats("efficy")["writes"] == 0


def test_a_refused_consult_of_a_contact_efficy_still_has_stops_the_read(efficy: Sandboxes) -> None:
    """When in doubt, stop: a consult refused (here in the exception node alone, which names no
    contact) for contacts that all still exist is no deletion, whatever its words."""
    url = f"{efficy.url('efficy')}/_sandbox/app"
    requests.patch(url, json={"context_errors": False}, timeout=5).raise_for_status()
    connector = make_connector(efficy, "efficy", segments_field="CONT$LOYALTY.SEGMENT")
    with pytest.raises(ApiError, match=r"ER_CATEGORY_UNKNOWN: Unknown category 'CONT\$LOYALTY'"):
        list(connector.read_contacts(None))
    assert connector.records_gone == 0


def test_opportunities_and_what_counts(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy")
    records = {r.id: r for page in connector.read_orders(None) for r in page.records}
    assert sorted(records) == [str(500 + i) for i in range(1, 7)]
    assert connector.order_counts(records["502"].payload) is False  # lost
    assert connector.order_counts(records["501"].payload) is True
    assert make_connector(efficy, "efficy", counted_statuses=["lost"]).order_counts(records["502"].payload)
    assert list(make_connector(efficy, "efficy", orders_query=None).read_orders(None)) == []


def test_write_back_lands_and_a_second_sync_writes_nothing(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy")
    before = {i: efficy.customer("efficy", i) for i in ("1", "2")}
    desired = connector.desired_state(Membership(frozenset({"supporters", "tier-silver"}), "silver"))
    assert desired.fields == {SEGMENTS: "supporters,tier-silver", TIER: "silver"}
    payloads = {r.id: r.payload for page in connector.read_contacts(None) for r in page.records}
    changes = [diff("efficy", rid, desired, connector.owned_state(payloads[rid])) for rid in ("1", "2")]
    assert all(c is not None for c in changes)
    results = connector.write([c for c in changes if c is not None])
    assert [(r.record_id, r.ok) for r in results] == [("1", True), ("2", True)]
    assert efficy.stats("efficy")["writes"] == 1  # both contacts in one request
    for rid in ("1", "2"):
        after = efficy.customer("efficy", rid)
        assert after["categories"]["CONT$CRMSYNC"] == {"SEGMENTS": "supporters,tier-silver", "LOYALTY_TIER": "silver"}
        # everything crmsync does not own is byte-for-byte what it was
        assert after["categories"]["CONT$MARKETING"] == before[rid]["categories"]["CONT$MARKETING"]
        assert {k: v for k, v in after.items() if k not in ("categories", "D_CHANGE")} == {
            k: v for k, v in before[rid].items() if k not in ("categories", "D_CHANGE")
        }
    # the write moved D_CHANGE, so the next incremental read sees both again, and plans nothing
    reread = {r.id: r.payload for page in connector.read_contacts(None) for r in page.records}
    assert [diff("efficy", rid, desired, connector.owned_state(reread[rid])) for rid in ("1", "2")] == [None, None]


def test_leaving_every_segment_writes_empty_text(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy")
    results = connector.write([change("2", {SEGMENTS: "", TIER: None})])
    assert results[0].ok
    assert efficy.customer("efficy", "2")["categories"]["CONT$CRMSYNC"] == {"SEGMENTS": "", "LOYALTY_TIER": ""}


def test_a_refused_contact_is_rejected_alone_and_the_rest_of_the_request_lands(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy")
    app = efficy.app("efficy")
    with app.lock:
        app.locks[4] = "JDE"  # someone has contact 4 open in edit mode
    fields: dict[str, str | None] = {SEGMENTS: "friends", TIER: "gold"}
    results = {r.record_id: r for r in connector.write([change(rid, fields) for rid in ("3", "4", "999", "5")])}
    assert results["3"].ok and results["5"].ok
    locked = "EEfficyException: The record is being edited by JDE (SANDBOX-RECORD-LOCKED)"
    assert not results["4"].ok and results["4"].message == locked
    assert not results["999"].ok and results["999"].message.startswith("EEfficyException: Record 999")
    assert efficy.customer("efficy", "5")["categories"]["CONT$CRMSYNC"]["LOYALTY_TIER"] == "gold"
    assert "CONT$CRMSYNC" not in efficy.customer("efficy", "4")["categories"]
    stats = efficy.stats("efficy")
    assert (stats["writes"], stats["errors"]) == (1, 1)  # one request; its #error replies count


def test_a_refusal_said_only_by_the_exception_node_is_found_by_writing_each_contact_alone(efficy: Sandboxes) -> None:
    """efficy's employee's clients read a failed edit only from the `exception` node that ends the
    reply, which does not name the contact: the batch is sent again one contact per request, so
    the refused one is rejected alone and the others land (one landed already: the same values
    again change nothing)."""
    url = f"{efficy.url('efficy')}/_sandbox/app"
    requests.patch(url, json={"context_errors": False}, timeout=5).raise_for_status()
    connector = make_connector(efficy, "efficy")
    app = efficy.app("efficy")
    with app.lock:
        app.locks[4] = "JDE"  # someone has contact 4 open in edit mode
    fields: dict[str, str | None] = {SEGMENTS: "friends", TIER: "gold"}
    results = {r.record_id: r for r in connector.write([change(rid, fields) for rid in ("3", "4", "5")])}
    assert results["3"].ok and results["5"].ok
    locked = "EEfficyException: The record is being edited by JDE (SANDBOX-RECORD-LOCKED)"
    assert not results["4"].ok and locked in results["4"].message
    landed = {"SEGMENTS": "friends", "LOYALTY_TIER": "gold"}
    assert all(efficy.customer("efficy", rid)["categories"]["CONT$CRMSYNC"] == landed for rid in ("3", "5"))
    assert "CONT$CRMSYNC" not in efficy.customer("efficy", "4")["categories"]
    assert efficy.stats("efficy")["writes"] == 4  # the batch, then each of its contacts alone


def test_a_batch_refused_alike_refuses_the_next_batches_without_sending_each_alone(efficy: Sandboxes) -> None:
    """Sent alone, each contact of a batch is refused with the same words (here a category the key
    may not use): a later batch refused in those words has each contact refused at once, not sent
    one contact per request again. Each is a refusal of its own, written again next cycle; the
    system's write-back goes on (two contacts one user holds open are two refusals, not a failure
    of every write)."""
    url = f"{efficy.url('efficy')}/_sandbox/app"
    settings = {"context_errors": False, "unavailable_categories": ["CONT$CRMSYNC"]}
    requests.patch(url, json=settings, timeout=5).raise_for_status()
    connector = make_connector(efficy, "efficy")
    fields: dict[str, str | None] = {SEGMENTS: "friends", TIER: "gold"}
    first = connector.write([change(rid, fields) for rid in ("3", "4", "5")])
    assert [r.ok for r in first] == [False, False, False] and len({r.message for r in first}) == 1
    assert efficy.stats("efficy")["writes"] == 4  # the batch, then each contact alone, once
    later = connector.write([change(rid, fields) for rid in ("6", "7", "8")])
    assert [(r.record_id, r.ok, r.message) for r in later] == [(rid, False, first[0].message) for rid in "678"]
    assert efficy.stats("efficy")["writes"] == 5  # that batch alone
    assert all("CONT$CRMSYNC" not in efficy.customer("efficy", str(rid))["categories"] for rid in range(3, 9))


def test_two_contacts_one_user_holds_open_are_two_refusals(efficy: Sandboxes) -> None:
    url = f"{efficy.url('efficy')}/_sandbox/app"
    requests.patch(url, json={"context_errors": False}, timeout=5).raise_for_status()
    connector = make_connector(efficy, "efficy")
    app = efficy.app("efficy")
    with app.lock:
        app.locks[3] = app.locks[4] = "JDE"
    fields: dict[str, str | None] = {SEGMENTS: "friends", TIER: "gold"}
    results = connector.write([change(rid, fields) for rid in ("3", "4")])
    assert [(r.record_id, r.ok) for r in results] == [("3", False), ("4", False)]
    assert all("edited by JDE" in r.message for r in results)


def test_a_main_table_field_can_hold_the_tier(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    people = contacts(3)
    for person in people:
        person["CRMSYNC_TIER"] = None  # an extra field the admin added to the contact table
    efficy = start_sandboxes_fixture({"efficy": {"customers": people}})
    connector = make_connector(efficy, "efficy", tier_field="crmsync_tier")
    assert connector.tier_field == "CRMSYNC_TIER"
    assert connector.write([change("2", {SEGMENTS: "friends,tier-gold", "CRMSYNC_TIER": "gold"})])[0].ok
    stored = efficy.customer("efficy", "2")
    assert stored["CRMSYNC_TIER"] == "gold" and stored["categories"]["CONT$CRMSYNC"]["SEGMENTS"] == "friends,tier-gold"
    payload = next(r.payload for page in connector.read_contacts(None) for r in page.records if r.id == "2")
    assert connector.owned_state(payload).fields == {SEGMENTS: "friends,tier-gold", "CRMSYNC_TIER": "gold"}


def test_a_throttle_inside_a_200_is_retried(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy")
    efficy.fault("efficy", match="reads", fault="vendor-throttle", retry_after=0.05, times=2)
    ids = [r.id for page in connector.read_contacts(None) for r in page.records]
    assert len(ids) == 30
    assert connector.client.stats.throttled == 2 and connector.client.stats.retries == 2
    assert efficy.stats("efficy")["throttled"] == 2


def test_a_wrong_key_is_an_auth_error_and_not_retried(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy", api_key="0000")
    with pytest.raises(AuthError, match=r"efficy: POST /crm/json: credentials refused \(HTTP 200\): ER_LOGON"):
        connector.check()
    assert requests_seen(efficy) == 1
    with pytest.raises(AuthError, match=r"HTTP 401"):
        make_connector(efficy, "efficy", api_key="").check()
    assert efficy.stats("efficy")["errors"] == 2


def test_check_proves_the_key_and_the_queries_in_one_call_and_the_fields_in_a_second(efficy: Sandboxes) -> None:
    assert make_connector(efficy, "efficy").check().missing == []
    assert requests_seen(efficy) == 2
    unknown = make_connector(efficy, "efficy", contacts_query=77).check()
    assert [p.name for p in unknown.missing] == ["query 77 (contacts)"]
    assert "ER_QUERY_NOT_FOUND: Query 77 does not exist" in (unknown.missing[0].fix or "")
    assert requests_seen(efficy) == 3  # without the contacts query there is no contact to consult
    with pytest.raises(ApiError, match=r"query 77: ER_QUERY_NOT_FOUND"):
        list(make_connector(efficy, "efficy", contacts_query=77).read_contacts(None))
    assert requests_seen(efficy) == 4  # a refused query is final: not retried


def test_a_misconfigured_category_stops_the_read_with_its_reason(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy", segments_field="CONT$LOYALTY.SEGMENT")
    with pytest.raises(ApiError, match=r"consult contact 1: ER_CATEGORY_UNKNOWN: Unknown category 'CONT\$LOYALTY'"):
        list(connector.read_contacts(None))


def test_field_names_must_be_efficy_fields() -> None:
    from pydantic import ValidationError

    from connectors.efficy.client import EfficySettings

    base = {"type": "efficy", "base_url": "https://x.efficy.cloud", "api_key": "k", "contacts_query": 1}
    with pytest.raises(ValidationError, match=r"CONT\$CATEGORY\.FIELD"):
        EfficySettings(**base, segments_field="COMP$ADDRESS.SEGMENTS")
    assert EfficySettings(**base, tier_field="cont$crmsync.tier").tier_field == "CONT$CRMSYNC.TIER"
    # efficy's own contact columns (what crmsync reads, the person's details, keys and dates): a
    # typo there would overwrite them on every contact
    for own in ("EMAIL1", "name", "Memo", "K_CONTACT", "D_CHANGE", "PHONE1"):
        with pytest.raises(ValidationError, match="efficy's own contact table"):
            EfficySettings(**base, segments_field=own)
    assert EfficySettings(**base, tier_field="crmsync_tier").tier_field == "CRMSYNC_TIER"
    assert EfficySettings(**base, tier_field="CONT$CRMSYNC.NAME").tier_field == "CONT$CRMSYNC.NAME"  # a category's


def test_the_webshop_number_links_the_contact_and_keys_are_canonical(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy", links={"shop": "WEBSHOP_NR"})
    assert [connector.canonical_id(raw) for raw in ("40001", " 40001.0 ", "abc", "0")] == ["40001", "40001", None, None]
    efficy.patch_customer("efficy", "3", {"WEBSHOP_NR": "7000012"})
    record = next(r for page in connector.read_contacts(None) for r in page.records if r.id == "3")
    mapped = map_contact(
        record, connector.contact_fieldmap, connector.owned_state(record.payload), lambda s, raw: f"{s}-{raw}"
    )
    assert isinstance(mapped, Contact)
    assert mapped.links == ("shop:shop-7000012",)
    assert (mapped.email, mapped.phone, mapped.infix, mapped.family_name) == (
        "klant3@example.nl",
        "+31610000003",
        "de",
        "Vries",
    )


def test_a_backfill_of_thousands_stays_inside_the_time_scaled_limit(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    people = contacts(3000)
    for person in people:
        second = person["K_CONTACT"]
        person["D_CHANGE"] = f"2026-01-01T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
    efficy = start_sandboxes_fixture(
        {"efficy": {"customers": people}},
        time_scale=50,
        options={"efficy": {"rate_limits": [Window(5, 10.0), Window(40, 100.0)]}},  # 5 per 0.2 s, 40 per 2 s
    )
    connector = make_connector(efficy, "efficy", page_size=100)  # rate_limit as client_settings() says
    assert isinstance(connector, EfficyConnector)
    ids = {r.id for page in connector.read_contacts(None) for r in page.records}
    assert len(ids) == 3000
    stats = efficy.stats("efficy")
    assert stats["requests"][ENDPOINT] == 62  # 31 queries (the last one empty, asked twice) and 30 consults
    assert stats["errors"] == 0 and stats["throttled"] <= 2
    times = [entry["t"] for entry in efficy.request_log("efficy")]
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 0.19, "six requests inside one scaled 0.2 s window"
    for i in range(len(times) - 40):
        assert times[i + 40] - times[i] >= 1.95, "41 requests inside one scaled 2 s window"


def test_ids_in_writes_that_are_not_contact_keys_are_rejected_without_a_call(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy")
    results = connector.write([change("gid://shopify/Customer/1", {SEGMENTS: "x"})])
    assert [(r.ok, r.message) for r in results] == [(False, "not an efficy contact key")]
    assert requests_seen(efficy) == 0


def test_people_in_efficy_and_a_shop_carry_the_same_segments(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """A full `crmsync sync` over every sandbox: a person kept in efficy and in Shopify gets one
    verdict, written as Shopify tags and as efficy's category fields; a second sync writes nothing."""
    config = sandboxes.config(tmp_path)
    first = run_crmsync("sync", "-c", str(config), "--json")
    assert first.returncode == 0, first.stderr
    assert json_out(first)["systems"]["efficy"]["written"] > 0
    shop_by_email = {
        c["defaultEmailAddress"]["emailAddress"].lower(): c["id"] for c in small_data["shopify"]["customers"]
    }
    pairs = [
        (shop_by_email[c["EMAIL1"].lower()], str(c["K_CONTACT"]))
        for c in small_data["efficy"]["customers"]
        if c["EMAIL1"].lower() in shop_by_email
    ]
    assert pairs, "the demo data must hold people kept in efficy and in the Shopify store"
    for shop_id, contact_id in pairs:
        shop_tags = sandboxes.customer("shopify", shop_id)["tags"]
        tags = {t[len("crmsync:") :] for t in shop_tags if t.startswith("crmsync:")}
        owned = sandboxes.customer("efficy", contact_id)["categories"]["CONT$CRMSYNC"]
        assert owned["SEGMENTS"].split(",") == sorted(tags)
        assert f"tier-{owned['LOYALTY_TIER']}" in tags
    sandboxes.reset_stats()
    again = run_crmsync("sync", "-c", str(config), "--json")
    assert json_out(again)["systems"]["efficy"]["write_calls"] == 0
    assert sandboxes.stats("efficy")["writes"] == 0


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, [{"@name": "api", "@func": [{"@name": "currentusername", "#result": "X"}]}], "ok"),
        (200, {"#error": {"errorcode": "ER_TOO_MANY_REQUESTS", "detail": "retry after 2 seconds"}}, "throttled"),
        (200, [{"@name": "exception", "#error": {"errorcode": "X", "errorstring": "Invalid User"}}], "auth"),
        (200, {"#error": "RetrieveUsersList: Please Logon to Database"}, "auth"),
        (200, {"error": True, "code": "CORE-1", "message": "The session is not valid anymore"}, "auth"),
        (200, {"#error": True, "#message": "Transaction deadlock, rerun"}, "retry"),
        (200, {"#error": {"errorcode": "ER_TOO_MANY_CONTEXTS", "errorstring": "at most 100"}}, "fatal"),
        # a refused context is that record's business, not the request's
        (200, [{"@name": "edit", "#error": {"errorcode": "ER_RECORD_LOCKED"}}], "ok"),
        (401, {"#error": {"errorcode": "ER_LOGON", "errorstring": "no credentials"}}, "auth"),
        (503, None, "retry"),
    ],
)
def test_what_efficy_replies_mean(efficy: Sandboxes, status: int, body: object, kind: str) -> None:
    connector = make_connector(efficy, "efficy")
    verdict = connector.classify(ApiResponse(status, {}, body, "", "POST", "/crm/json", 0.01))
    assert verdict.kind == kind
    if kind == "throttled":
        assert verdict.retry_after == 2.0 and verdict.message.startswith("ER_TOO_MANY_REQUESTS")
    if status == 401:
        assert verdict.message == "ER_LOGON: no credentials"


def test_a_base_url_ending_in_crm_works_too(efficy: Sandboxes) -> None:
    connector = make_connector(efficy, "efficy", base_url=efficy.url("efficy") + "/crm")
    assert connector.check().missing == []
    assert requests_seen(efficy) == 2
