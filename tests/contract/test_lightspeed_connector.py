"""The Lightspeed eCom connector against its sandbox, over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from requests.structures import CaseInsensitiveDict

from connectors.base import Permission
from connectors.errors import ApiError, AuthError, PermissionDenied
from connectors.http import ApiResponse
from connectors.lightspeed.client import METAFIELDS, VERIFY_PER_DAY, LightspeedConnector
from connectors.lightspeed.reads import shop_moment, updated_at_min
from connectors.lightspeed.shoptime import shop_time
from connectors.ratelimit import Window
from connectors.sandbox import utcnow
from mapping.fieldmaps import map_contact, map_order
from mapping.model import Contact, Kind, Membership, Order, RemoteState, SourceRecord, WriteBack
from sync.planner import diff
from tests.contract.test_lightspeed_sandbox import customers, orders
from tests.kit import Sandboxes, make_connector, run_crmsync

SEGMENTS, TIER = "crmsync_segments", "crmsync_loyalty_tier"
LIST = "GET /<lang>/customers.json"
ROWS = "GET /<lang>/customers/<int:customer_id>/metafields.json"
CREATE = "POST /<lang>/customers/<int:customer_id>/metafields.json"
ONE_ROW = "/<lang>/customers/<int:customer_id>/metafields/<int:metafield_id>.json"


@pytest.fixture
def shop(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"lightspeed": {"customers": customers(30), "orders": orders(5)}})


def change(record_id: str, segments: str, tier: str) -> WriteBack:
    fields = {SEGMENTS: segments, TIER: tier}
    return WriteBack("lightspeed", record_id, (), (), fields, RemoteState(frozenset(), fields))


def looked_at(shop: Sandboxes) -> list[str]:
    """The customers whose metafields were read and served, one entry per look: from the
    sandbox's request log, without the throttled (429) answers a busy host may draw and the
    client retries (the stats count those too)."""
    wanted = re.compile(r"/[a-z]{2}/customers/(\d+)/metafields\.json")
    return [
        found.group(1)
        for entry in shop.request_log("lightspeed")
        if entry["method"] == "GET"
        and entry["status"] == 200
        and not entry.get("throttled")
        and (found := wanted.fullmatch(entry["path"]))
    ]


def rows(shop: Sandboxes, customer_id: str) -> list[tuple[str, str]]:
    return [(m["key"], m["value"]) for m in shop.customer("lightspeed", customer_id)["metafields"]]


def payload_of(connector: LightspeedConnector, customer_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        r.payload for page in connector.read_contacts(None) for r in page.records if r.id == customer_id
    ]
    assert len(found) == 1
    return found[0]


def verified(connector: LightspeedConnector, customer_id: str) -> RemoteState:
    """What crmsync's metafields hold on one customer, asked as the pipeline's sweep asks."""
    return connector.verify_owned([customer_id])[customer_id]


# ----- reads -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("count", "sizes"), [(30, [10, 10, 10, 0]), (31, [10, 10, 10, 1])])
def test_reads_every_page_including_an_exact_multiple(
    start_sandboxes_fixture: Callable[..., Sandboxes], count: int, sizes: list[int]
) -> None:
    shop = start_sandboxes_fixture({"lightspeed": {"customers": customers(count)}})
    connector = make_connector(shop, "lightspeed", page_size=10)
    pages = list(connector.read_contacts(None))
    ids = [r.id for page in pages for r in page.records]
    assert [len(page.records) for page in pages] == sizes
    assert ids == [str(i) for i in range(1, count + 1)]
    # mid-read the checkpoint names the next page (the kit's pass position); the last one only the cursor
    assert [page.checkpoint.get("pass", {}).get("at") for page in pages] == [2, 3, 4, None]
    assert pages[-1].checkpoint == {"cursor": f"2026-01-10T10:{count:02d}:00+01:00"}  # in the shop's own offset
    requests_seen = shop.stats("lightspeed")["requests"]
    # no totals in Lightspeed's replies: the empty or short page ends the read, once it has been
    # asked for a second time (a reply that lost an item on the way must not end it early)
    assert requests_seen[LIST] == 4 + 1
    assert ROWS not in requests_seen  # the list pages only (issue 13)


def test_a_read_resumes_at_the_page_its_checkpoint_names(shop: Sandboxes) -> None:
    connector = make_connector(shop, "lightspeed", page_size=10)
    first = next(iter(connector.read_contacts(None)))
    resumed = list(connector.read_contacts(first.checkpoint))
    assert [r.id for page in resumed for r in page.records] == [str(i) for i in range(11, 31)]
    assert resumed[-1].checkpoint == {"cursor": "2026-01-10T10:30:00+01:00"}


@pytest.mark.parametrize("zone", ["shop", "utc"])
def test_an_incremental_read_loses_nothing_in_whichever_zone_the_filter_is_read(shop: Sandboxes, zone: str) -> None:
    """The zone Lightspeed reads `updated_at_min` in is not documented. Sent in the shop's wall
    clock and read as UTC, the bound came an hour late (two in summer) and every change of that
    hour was lost; the client sends the earlier of the two readings, which under the shop's
    reading reads the hour before the cursor again (customer 3, older, is not)."""
    requests.patch(f"{shop.url('lightspeed')}/_sandbox/app", json={"filter_zone": zone}, timeout=5).raise_for_status()
    app = shop.app("lightspeed")
    with app.lock:
        app.customers[3]["updatedAt"] = "2026-01-10T08:00:00+01:00"
    connector = make_connector(shop, "lightspeed", page_size=10, lookback=0)
    checkpoint = [page.checkpoint for page in connector.read_contacts(None)][-1]
    assert checkpoint == {"cursor": "2026-01-10T10:30:00+01:00"}
    shop.patch_customer("lightspeed", "7", {"firstname": "Gewijzigd"})
    changed = [r for page in connector.read_contacts(checkpoint) for r in page.records]
    # updated_at_min is inclusive: the customer at the cursor comes again, and 7
    expected = ["7", "30"] if zone == "utc" else [str(i) for i in range(1, 31) if i != 3]
    assert [r.id for r in changed] == expected
    assert next(r for r in changed if r.id == "7").payload["firstname"] == "Gewijzigd"
    sent = [parse_qs(e["query"]) for e in shop.request_log("lightspeed") if "updated_at_min" in e.get("query", "")]
    assert sent[-1]["updated_at_min"] == ["2026-01-10 09:30:00"]  # 10:30 at +01:00, in UTC: the earlier


def test_a_customer_changed_during_a_read_is_not_lost(shop: Sandboxes) -> None:
    connector = make_connector(shop, "lightspeed", page_size=10, lookback=0)
    reading = iter(connector.read_contacts(None))
    next(reading)
    # While pages 2 and 3 are read, customer 2 (on page 1, already read) is edited, and later on
    # customer 25 (on page 3, still to come).
    app = shop.app("lightspeed")
    with app.lock:
        app.customers[2]["updatedAt"] = shop_time(utcnow())
        app.customers[25]["updatedAt"] = shop_time(utcnow() + timedelta(minutes=5))
    checkpoint = [page.checkpoint for page in reading][-1]
    # The cursor stops at the moment the read began, not at customer 25's time: 2 is found next time.
    again = [r.id for page in connector.read_contacts(checkpoint) for r in page.records]
    assert again == ["2", "25"]
    # That moment is written in the shop's own offset, the zone its updated_at_min filter is read in.
    assert checkpoint["cursor"][-6:] == app.customers[25]["updatedAt"][-6:]


def test_false_for_empty_is_read_as_empty(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    blank = {"id": 40, "email": False, "firstname": False, "lastname": "Jansen", "phone": False}
    guest = {"id": 90, "priceIncl": 12.5, "customer": False, "email": "gast@example.nl", "createdAt": "2026-02-01"}
    shop = start_sandboxes_fixture({"lightspeed": {"customers": [blank], "orders": [guest]}})
    connector = make_connector(shop, "lightspeed")
    record = next(r for page in connector.read_contacts(None) for r in page.records)
    contact = map_contact(record, connector.contact_fieldmap, connector.owned_state(record.payload))
    assert isinstance(contact, Contact)
    assert (contact.email, contact.given_name, contact.phone, contact.family_name) == (None, None, None, "Jansen")
    assert connector.owned_state(record.payload) == RemoteState.unknown()  # the list shows no metafields
    assert verified(connector, "40") == RemoteState(frozenset(), {SEGMENTS: "", TIER: ""})  # none of ours
    order_record = next(r for page in connector.read_orders(None) for r in page.records)
    order = map_order(order_record, connector.order_fields, connector.order_counts(order_record.payload))
    assert isinstance(order, Order)
    assert (order.customer_id, order.email, str(order.amount), order.currency) == (
        None,
        "gast@example.nl",
        "12.5",
        "EUR",
    )


@pytest.mark.parametrize("zone", ["shop", "utc"])
def test_orders_read_incrementally_in_the_shops_currency_and_what_counts(shop: Sandboxes, zone: str) -> None:
    requests.patch(f"{shop.url('lightspeed')}/_sandbox/app", json={"filter_zone": zone}, timeout=5).raise_for_status()
    connector = make_connector(shop, "lightspeed", lookback=0)
    records = [r for page in connector.read_orders(None) for r in page.records]
    assert {r.kind for r in records} == {Kind.ORDER} and [r.id for r in records] == ["101", "102", "103", "104", "105"]
    assert {r.payload["currency"] for r in records} == {"EUR"}  # from GET shop.json: orders carry none
    assert [connector.order_counts(r.payload) for r in records] == [True, False, True, True, True]
    mapped = map_order(records[0], connector.order_fields, True)
    assert isinstance(mapped, Order) and (mapped.customer_id, str(mapped.amount)) == ("1", "24.95")
    checkpoint = {"cursor": "2026-02-01T10:00:05+01:00"}
    app = shop.app("lightspeed")
    with app.lock:
        app.orders[103]["paymentStatus"] = "cancelled"
        app.orders[103]["updatedAt"] = "2026-02-01T12:00:00+01:00"
    changed = {r.id: r for page in connector.read_orders(checkpoint) for r in page.records}
    # read as UTC, the bound is the cursor itself; in shop time, an hour before it: every order again
    assert sorted(changed) == (["103", "105"] if zone == "utc" else ["101", "102", "103", "104", "105"])
    assert connector.order_counts(changed["103"].payload) is False
    assert shop.stats("lightspeed")["requests"]["GET /<lang>/shop.json"] == 1  # once per connector


PAYMENTS = ["not_paid", "partially_paid", "paid", "cancelled", None]


@pytest.mark.parametrize(
    ("setting", "counted"),
    [
        # The default: what crmsync counted before the setting (all but a cancelled payment).
        ({}, {"not_paid", "partially_paid", "paid", None}),
        # Only money received. An order without a payment status still counts (as before).
        ({"counted_payment_statuses": ["paid", "partially_paid"]}, {"partially_paid", "paid", None}),
    ],
    ids=["default", "paid only"],
)
def test_which_payment_statuses_count_is_the_setting(
    start_sandboxes_fixture: Callable[..., Sandboxes], setting: dict[str, Any], counted: set[str | None]
) -> None:
    placed = orders(len(PAYMENTS) + 1)
    for order, payment in zip(placed, PAYMENTS, strict=False):
        order.update(status="processing_awaiting_payment", paymentStatus=payment)
    placed[-1].update(status="cancelled", paymentStatus="paid")  # a cancelled order never counts
    shop = start_sandboxes_fixture({"lightspeed": {"customers": customers(5), "orders": placed}})
    connector = make_connector(shop, "lightspeed", **setting)
    records = [r for page in connector.read_orders(None) for r in page.records]
    assert len(records) == len(placed)
    assert [r.payload.get("paymentStatus") for r in records] == [*PAYMENTS, "paid"]
    assert {r.payload.get("paymentStatus") for r in records[:-1] if connector.order_counts(r.payload)} == counted
    assert connector.order_counts(records[-1].payload) is False


def test_a_read_of_n_customers_asks_for_no_metafields_and_knows_nothing_of_crmsyncs(shop: Sandboxes) -> None:
    # Issue 13: one metafield request per customer made a first read of 20,000 customers cost days of
    # the 12,000 requests a day. With write-back on or off, a read costs the list pages only.
    shop.patch_customer("lightspeed", "2", {"metafields": [{"key": TIER, "value": "gold"}]})
    for writeback in (True, False):
        shop.reset_stats()
        connector = make_connector(shop, "lightspeed", writeback=writeback, page_size=10)
        records = [r for page in connector.read_contacts(None) for r in page.records]
        assert len(records) == 30
        assert shop.stats("lightspeed")["requests"] == {LIST: 4 + 1}  # 3 pages, the empty one twice
        # What the list shows says nothing of crmsync's metafields, not even "none": unknown.
        assert all(connector.owned_state(r.payload) == RemoteState.unknown() for r in records)
    # A payload that does hold the rows (a fixture's, verify_owned's) shows them as before.
    rows_given = {METAFIELDS: [{"id": 1, "key": TIER, "value": "gold"}, {"id": 2, "key": "klantenkaart", "value": "x"}]}
    assert connector.owned_state(rows_given) == RemoteState(frozenset(), {SEGMENTS: "", TIER: "gold"})


def test_a_write_to_a_customer_never_written_looks_up_and_writes_only_what_differs(shop: Sandboxes) -> None:
    # 2 holds nothing of ours, 9 exactly the verdict (written by a run whose ledger was lost), 10 the
    # right segments and a stale tier.
    shop.patch_customer(
        "lightspeed", "9", {"metafields": [{"key": SEGMENTS, "value": "friends"}, {"key": TIER, "value": "gold"}]}
    )
    shop.patch_customer(
        "lightspeed", "10", {"metafields": [{"key": SEGMENTS, "value": "friends"}, {"key": TIER, "value": "silver"}]}
    )
    shop.reset_stats()
    connector = make_connector(shop, "lightspeed")
    desired = RemoteState(frozenset(), {SEGMENTS: "friends", TIER: "gold"})
    payloads = {r.id: r.payload for page in connector.read_contacts(None) for r in page.records}
    planned = [diff("lightspeed", rid, desired, connector.owned_state(payloads[rid])) for rid in ("2", "9", "10")]
    # Nothing known (no ledger entry in this test): every field is planned, the connector looks.
    assert [p.set_fields if p else None for p in planned] == [desired.fields] * 3
    results = connector.write([p for p in planned if p])
    assert [(r.record_id, r.ok, r.confirmed) for r in results] == [
        ("2", True, True),
        ("9", True, True),
        ("10", True, True),
    ]
    assert [rows(shop, rid) for rid in ("2", "9", "10")] == [[(TIER, "gold"), (SEGMENTS, "friends")]] + [
        [(SEGMENTS, "friends"), (TIER, "gold")]
    ] * 2
    requests_seen = shop.stats("lightspeed")["requests"]
    assert requests_seen[ROWS] == 3  # one look-up per customer written, none during the read
    assert requests_seen[CREATE] == 2  # customer 2's two keys; 9 cost no write at all
    assert requests_seen[f"PUT {ONE_ROW}"] == 1  # 10's tier, in place
    assert shop.stats("lightspeed")["writes"] == 3


def test_verify_owned_returns_what_the_rows_hold_and_sees_a_hand_edit(shop: Sandboxes) -> None:
    connector = make_connector(shop, "lightspeed")
    assert connector.write([change("3", "supporters,tier-silver", "silver")])[0].ok
    shop.reset_stats()
    states = connector.verify_owned(["1", "3", "999"])  # 999 is no customer (any more): left out
    assert states == {
        "1": RemoteState(frozenset(), {SEGMENTS: "", TIER: ""}),  # another app's row only
        "3": RemoteState(frozenset(), {SEGMENTS: "supporters,tier-silver", TIER: "silver"}),
    }
    assert all(state.known for state in states.values())
    assert shop.stats("lightspeed")["requests"] == {ROWS: 3}  # one request per customer
    # Someone edits crmsync's tier row by hand (and adds a second segments row).
    tier_row = next(m for m in shop.customer("lightspeed", "3")["metafields"] if m["key"] == TIER)
    shop.patch_customer(
        "lightspeed",
        "3",
        {"metafields": [{"id": tier_row["id"], "key": TIER, "value": "platinum"}, {"key": SEGMENTS, "value": "vip"}]},
    )
    seen = verified(connector, "3")
    assert seen.fields == {SEGMENTS: "supporters,tier-silver | vip", TIER: "platinum"}  # duplicates joined
    desired = RemoteState(frozenset(), {SEGMENTS: "supporters,tier-silver", TIER: "silver"})
    planned = diff("lightspeed", "3", desired, seen)
    assert planned is not None and planned.set_fields == desired.fields
    shop.reset_stats()
    assert connector.write([planned])[0].ok
    assert rows(shop, "3") == [(TIER, "silver"), (SEGMENTS, "supporters,tier-silver")]
    requests_seen = shop.stats("lightspeed")["requests"]
    assert ROWS not in requests_seen  # the verification's rows served as the look-up
    assert requests_seen == {f"PUT {ONE_ROW}": 1, f"DELETE {ONE_ROW}": 1}
    assert verified(connector, "3") == desired


def test_the_verification_budget_is_a_setting(shop: Sandboxes) -> None:
    assert make_connector(shop, "lightspeed").verify_budget() == VERIFY_PER_DAY == 2400
    assert make_connector(shop, "lightspeed", verify_per_day=0).verify_budget() == 0  # off
    assert not LightspeedConnector.reads_owned_state


# ----- write-back ---------------------------------------------------------------------------------------
def test_write_back_lands_and_leaves_everything_else_byte_for_byte(shop: Sandboxes) -> None:
    connector = make_connector(shop, "lightspeed")
    before = shop.customer("lightspeed", "1")
    desired = connector.desired_state(Membership(frozenset({"friends", "lifecycle-active", "tier-gold"}), "gold"))
    assert desired == RemoteState(frozenset(), {SEGMENTS: "friends,lifecycle-active,tier-gold", TIER: "gold"})
    # The read does not show crmsync's metafields; the sweep's verification does (see the pipeline).
    assert connector.owned_state(payload_of(connector, "1")) == RemoteState.unknown()
    planned = diff("lightspeed", "1", desired, verified(connector, "1"))
    assert planned is not None
    assert [(r.record_id, r.ok) for r in connector.write([planned])] == [("1", True)]
    after = shop.customer("lightspeed", "1")
    assert rows(shop, "1") == [
        ("klantenkaart", "KK-1001"),
        (TIER, "gold"),
        (SEGMENTS, "friends,lifecycle-active,tier-gold"),
    ]
    assert json.dumps(after["metafields"][0]) == json.dumps(before["metafields"][0])  # another app's row
    rest = {k: v for k, v in after.items() if k != "metafields"}
    assert json.dumps(rest) == json.dumps({k: v for k, v in before.items() if k != "metafields"})  # memo too
    assert shop.stats("lightspeed")["writes"] == 2  # one POST per key
    assert shop.stats("lightspeed")["requests"][ROWS] == 1  # the verification's rows served as the look-up

    # A second sync: the customer verified again shows crmsync's values, so the planner plans nothing.
    fresh = make_connector(shop, "lightspeed")
    assert verified(fresh, "1") == desired
    assert diff("lightspeed", "1", desired, verified(fresh, "1")) is None


def test_the_same_write_twice_or_after_a_crash_leaves_one_row_per_key(shop: Sandboxes) -> None:
    wanted = change("3", "supporters,tier-silver", "silver")
    assert make_connector(shop, "lightspeed").write([wanted])[0].ok
    # The process died before its ledger recorded the write: the next one writes the same again.
    again = make_connector(shop, "lightspeed")
    assert again.write([wanted])[0].ok
    assert again.write([wanted])[0].ok
    assert rows(shop, "3") == [(TIER, "silver"), (SEGMENTS, "supporters,tier-silver")]
    assert shop.stats("lightspeed")["requests"][CREATE] == 2  # the repeats looked, found, wrote nothing
    assert again.client.stats.mutating == 0
    assert again.write([change("3", "friends,tier-gold", "gold")])[0].ok
    assert rows(shop, "3") == [(TIER, "gold"), (SEGMENTS, "friends,tier-gold")]
    assert shop.stats("lightspeed")["requests"][f"PUT {ONE_ROW}"] == 2  # changed in place, not added


@pytest.mark.parametrize(("fault", "posts"), [("reset", 2), ("500", 3)])
def test_a_post_whose_reply_is_lost_is_looked_up_not_repeated(shop: Sandboxes, fault: str, posts: int) -> None:
    # reset: the row was created and the reply cut off; 500: refused before anything was created.
    shop.fault("lightspeed", match="POST /nl/customers/4/metafields", fault=fault, times=1)
    connector = make_connector(shop, "lightspeed")
    results = connector.write([change("4", "passers-by,tier-bronze", "bronze")])
    assert [(r.record_id, r.ok) for r in results] == [("4", True)]
    assert rows(shop, "4") == [(TIER, "bronze"), (SEGMENTS, "passers-by,tier-bronze")]
    assert shop.stats("lightspeed")["requests"][CREATE] == posts
    assert shop.stats("lightspeed")["requests"][ROWS] == 2  # the first look-up, and the one after the loss


def test_extra_rows_of_our_keys_are_removed_and_an_empty_value_removes_ours(shop: Sandboxes) -> None:
    shop.patch_customer(
        "lightspeed",
        "5",
        {"metafields": [{"key": SEGMENTS, "value": "friends"}, {"key": SEGMENTS, "value": "old"}]},
    )
    connector = make_connector(shop, "lightspeed")
    assert connector.write([change("5", "friends", "")])[0].ok
    assert rows(shop, "5") == [(SEGMENTS, "friends")]
    assert verified(connector, "5") == RemoteState(frozenset(), {SEGMENTS: "friends", TIER: ""})
    assert connector.write([change("1", "", "")])[0].ok  # nothing of ours there: nothing to do
    assert rows(shop, "1") == [("klantenkaart", "KK-1001")]
    assert shop.stats("lightspeed")["requests"][f"DELETE {ONE_ROW}"] == 1


def test_a_refused_record_does_not_sink_the_batch(shop: Sandboxes) -> None:
    connector = make_connector(shop, "lightspeed")
    results = connector.write(
        [change("999", "friends", "gold"), change("6", "x" * 300, "gold"), change("7", "friends", "gold")]
    )
    by_id = {r.record_id: r for r in results}
    assert not by_id["999"].ok and by_id["999"].message.startswith("not found")
    assert not by_id["6"].ok and "Invalid value" in by_id["6"].message
    assert by_id["7"].ok and rows(shop, "7") == [(TIER, "gold"), (SEGMENTS, "friends")]


def test_a_row_removed_after_the_read_is_written_again(shop: Sandboxes) -> None:
    connector = make_connector(shop, "lightspeed")
    assert connector.write([change("8", "friends", "gold")])[0].ok
    verified(connector, "8")  # the verification remembers our row ids ...
    app = shop.app("lightspeed")
    with app.lock:
        app.metafields[8].clear()  # ... and then someone deletes the rows
    assert connector.write([change("8", "supporters", "silver")])[0].ok
    assert rows(shop, "8") == [(TIER, "silver"), (SEGMENTS, "supporters")]


def test_wrong_credentials_are_an_auth_error_and_a_key_without_write_permission_fails_on_writing(
    shop: Sandboxes, start_sandboxes_fixture: Callable[..., Sandboxes]
) -> None:
    for wrong in ({"api_secret": "wrong"}, {"api_key": "wrong"}):
        with pytest.raises(
            AuthError, match=r"lightspeed: GET /nl/customers/count\.json: credentials refused \(HTTP 401\)"
        ) as refused:
            make_connector(shop, "lightspeed", **wrong).check()
        assert not isinstance(refused.value, PermissionDenied)
    assert shop.stats("lightspeed")["errors"] == 2  # not retried, nothing else asked
    read_only = start_sandboxes_fixture(
        {"lightspeed": {"customers": customers(1)}}, options={"lightspeed": {"permissions": {"customers": "read"}}}
    )
    connector = make_connector(read_only, "lightspeed")
    assert connector.check().missing == []  # a read-only key passes: writing is not provable ...
    with pytest.raises(PermissionDenied, match="no write permission for customers"):
        connector.write([change("1", "friends", "gold")])  # ... and shows on the first write (403)
    assert rows(read_only, "1") == [("klantenkaart", "KK-1001")]  # the merchant's own, untouched


def test_check_proves_both_read_rights_and_warns_that_writing_is_not_provable(shop: Sandboxes) -> None:
    before = [shop.customer("lightspeed", str(i)) for i in range(1, 31)]
    connector = make_connector(shop, "lightspeed")
    report = connector.check()
    assert report.permissions == [Permission("read_customers", True), Permission("read_orders", True)]
    assert report.missing == []
    assert report.capabilities.to_json() == {
        "read_contacts": True,
        "read_orders": True,
        "incremental": True,
        "write_tags": False,
        "write_fields": False,  # not proven: it would take a write
    }
    [warning] = report.warnings
    assert "write rights not proven" in warning and f"{SEGMENTS} and {TIER}" in warning
    assert "Customers: Read/Write" in warning
    calls = [(e["method"], e["path"], e["status"]) for e in shop.request_log("lightspeed")]
    assert calls == [("GET", "/nl/customers/count.json", 200), ("GET", "/nl/orders/count.json", 200)]
    assert shop.stats("lightspeed")["writes"] == 0
    assert [shop.customer("lightspeed", str(i)) for i in range(1, 31)] == before
    # without write-back there is nothing to warn about
    assert make_connector(shop, "lightspeed", writeback=False).check().warnings == []


def test_check_names_an_area_the_key_may_not_read(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture(
        {"lightspeed": {"customers": customers(2)}}, options={"lightspeed": {"permissions": {"orders": "none"}}}
    )
    report = make_connector(shop, "lightspeed").check()  # a 403 is a missing right, not wrong credentials
    assert [(p.name, p.ok) for p in report.permissions] == [("read_customers", True), ("read_orders", False)]
    [missing] = report.missing
    assert missing.fix is not None and "Orders: Read" in missing.fix and "API keys" in missing.fix
    assert (report.capabilities.read_contacts, report.capabilities.read_orders) == (True, False)


def test_a_key_that_may_not_read_the_shop_settings_still_reads_orders(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    shop = start_sandboxes_fixture(
        {"lightspeed": {"orders": orders(2)}}, options={"lightspeed": {"permissions": {"settings": "none"}}}
    )
    connector = make_connector(shop, "lightspeed")
    connector.check()
    records = [r for page in connector.read_orders(None) for r in page.records]
    assert len(records) == 2 and "currency" not in records[0].payload  # counted in the base currency


def test_an_error_member_in_a_2xx_reply_is_a_failure(shop: Sandboxes) -> None:
    connector = make_connector(shop, "lightspeed")
    body = {"error": {"code": 400, "method": "PUT", "request": "/nl/customers/1.json", "message": "Invalid email"}}
    reply = ApiResponse(200, CaseInsensitiveDict(), body, json.dumps(body), "PUT", "/nl/customers/1.json", 0.01)
    assert (connector.classify(reply).kind, connector.classify(reply).message) == ("rejected", "Invalid email")


def test_ids_from_other_systems_become_lightspeed_ids(shop: Sandboxes) -> None:
    connector = make_connector(shop, "lightspeed")
    assert [connector.canonical_id(raw) for raw in (" 2000004 ", "0", "abc", "")] == ["2000004", None, None, None]


# ----- rate limits ---------------------------------------------------------------------------------------
def many(count: int) -> dict[str, list[dict[str, Any]]]:
    start = datetime(2026, 1, 10, tzinfo=UTC)
    people = [
        {"id": i, "email": f"klant{i}@example.nl", "updatedAt": (start + timedelta(seconds=i)).isoformat()}
        for i in range(1, count + 1)
    ]
    bought = [
        {"id": 10_000 + i, "priceIncl": 10.0, "customer": i, "createdAt": (start + timedelta(seconds=i)).isoformat()}
        for i in range(1, count + 1)
    ]
    return {"customers": people, "orders": bought}


def test_a_read_and_a_verification_of_thousands_of_records_stay_inside_the_time_scaled_windows(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    # 300x: 300 requests a second, 3000 per 12 s, 12000 per 288 s. 1500 customers cost 8 requests
    # (6 full pages, an empty one asked for twice), 1500 orders 8 and the shop 1; verifying the
    # metafields of all 1500 customers 1500 more.
    shop = start_sandboxes_fixture({"lightspeed": many(1500)}, time_scale=300)
    connector = make_connector(shop, "lightspeed")  # rate_limit as the sandbox's client_settings()
    assert connector.settings.rate_limit[1].per_seconds == 12.0
    contacts = [r.id for page in connector.read_contacts(None) for r in page.records]
    order_ids = {r.id for page in connector.read_orders(None) for r in page.records}
    assert len(set(contacts)) == 1500 and len(order_ids) == 1500
    assert shop.stats("lightspeed")["reads"] == 8 + 8 + 1
    assert len(connector.verify_owned(contacts)) == 1500
    stats = shop.stats("lightspeed")
    assert stats["reads"] == 8 + 8 + 1 + 1500 and stats["errors"] == 0
    assert stats["throttled"] <= 3


def test_the_headers_hold_requests_back_when_a_window_is_used_up(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    # crmsync is told nothing about the limits: what the replies say is enough to stay inside them.
    windows = [Window(20, 300), Window(1000, 3600), Window(10000, 86400)]
    shop = start_sandboxes_fixture(
        {"lightspeed": many(60)}, time_scale=300, options={"lightspeed": {"rate_limits": windows}}
    )
    connector = make_connector(shop, "lightspeed", rate_limit=[], page_size=10)
    ids = [r.id for page in connector.read_contacts(None) for r in page.records]
    assert len(set(ids)) == 60
    assert len(connector.verify_owned(ids)) == 60
    assert shop.stats("lightspeed")["reads"] == 68  # 8 pages (the empty last one twice), 60 verifications
    assert shop.stats("lightspeed")["throttled"] <= 1
    log = shop.request_log("lightspeed")
    assert log[-1]["t"] - log[0]["t"] >= 2.0  # 68 requests at 20 a second: three windows at least


def test_lightspeeds_429_is_waited_out_as_its_reset_header_says(shop: Sandboxes) -> None:
    shop.fault("lightspeed", match="GET /nl/customers/count.json", fault="vendor-throttle", retry_after=0.4)
    connector = make_connector(shop, "lightspeed")
    connector.check()
    log = shop.request_log("lightspeed")
    assert [entry["status"] for entry in log] == [429, 200, 200]  # customers twice, then orders
    assert log[1]["t"] - log[0]["t"] >= 0.4
    assert connector.client.stats.throttled == 1


def test_a_used_up_daily_budget_ends_the_read_at_once_with_a_clear_error(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    windows = [Window(300, 300), Window(3000, 3600), Window(3, 86400)]
    shop = start_sandboxes_fixture({"lightspeed": many(5)}, options={"lightspeed": {"rate_limits": windows}})
    connector = make_connector(shop, "lightspeed", page_size=2)
    with pytest.raises(ApiError, match=r"the daily request budget is used up; it resets in \d+ s"):
        list(connector.read_contacts(None))
    assert shop.stats("lightspeed")["reads"] == 3  # the third reply said 0 left: no fourth request
    assert shop.stats("lightspeed")["throttled"] == 0


def test_records_keep_their_vendor_shape(shop: Sandboxes) -> None:
    connector = make_connector(shop, "lightspeed")
    record: SourceRecord = next(r for page in connector.read_contacts(None) for r in page.records)
    assert record.payload["metafields"]["resource"]["url"] == "customers/1/metafields"  # the stub, as sent
    assert METAFIELDS not in record.payload  # the rows are not asked for alongside
    assert record.updated_at == datetime(2026, 1, 10, 9, 1, tzinfo=UTC)


# ----- in a full cycle ------------------------------------------------------------------------------------
def test_a_person_in_lightspeed_and_another_shop_carries_the_same_segments_everywhere(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    elsewhere = {c["defaultEmailAddress"]["emailAddress"].lower(): c["id"] for c in small_data["shopify"]["customers"]}
    woo = {c["email"].lower(): str(c["id"]) for c in small_data["woocommerce"]["customers"]}
    checked = 0
    for customer in small_data["lightspeed"]["customers"]:
        ours = dict(rows(sandboxes, str(customer["id"])))
        segments = set(ours[SEGMENTS].split(","))
        assert ours.get(TIER) == next(s for s in segments if s.startswith("tier-"))[len("tier-") :]
        email = customer["email"].lower()
        if email in elsewhere:
            tags = sandboxes.customer("shopify", elsewhere[email])["tags"]
            assert segments == {t[len("crmsync:") :] for t in tags if t.startswith("crmsync:")}
            checked += 1
        if email in woo:
            meta = {m["key"]: m["value"] for m in sandboxes.customer("woocommerce", woo[email])["meta_data"]}
            assert segments == set(meta[SEGMENTS].split(","))
            checked += 1
    assert checked >= 2, "the fixture must hold people who shop in Lightspeed and elsewhere"
    second = run_crmsync("sync", "-c", str(config), "--json")
    assert json.loads(second.stdout)["systems"]["lightspeed"]["write_calls"] == 0
    for customer in small_data["lightspeed"]["customers"]:
        stored = rows(sandboxes, str(customer["id"]))
        assert len({key for key, _ in stored}) == len(stored)  # one row per key
        assert (TIER, "platinum") not in stored  # the stale row of an earlier run was corrected in place


def test_a_cycle_verifies_a_budgeted_share_and_repairs_a_hand_edit_the_read_cannot_see(
    shop: Sandboxes, tmp_path: Path
) -> None:
    config = shop.config(tmp_path)  # verify_per_day at its default: 2400 a day, 100 an hour
    first = run_crmsync("sync", "-c", str(config), "--json", env={"CRMSYNC_NOW": "2026-03-02T09:00:00+00:00"})
    assert first.returncode == 0, first.stderr
    # No ledger yet, and the read shows no metafields: the sweep (an hour's worth at most: 100)
    # looked at all 30 customers once, and the writes used those rows instead of looking again.
    looks = looked_at(shop)
    assert len(looks) == len(set(looks)) == 30
    written = {key: value for key, value in rows(shop, "1") if key == SEGMENTS}
    assert written and json.loads(first.stdout)["systems"]["lightspeed"]["write_calls"] > 0
    # Someone edits crmsync's row by hand, in a way that does not move the customer's updatedAt
    # (whether Lightspeed moves it is not known): only a look at the rows can see it.
    app = shop.app("lightspeed")
    with app.lock:
        next(row for row in app.metafields[1] if row["key"] == SEGMENTS)["value"] = "handmatig"
    shop.reset_stats()
    again = run_crmsync("sync", "-c", str(config), "--json", env={"CRMSYNC_NOW": "2026-03-02T10:00:00+00:00"})
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["systems"]["lightspeed"]["write_calls"] == 1  # customer 1, repaired
    assert {key: value for key, value in rows(shop, "1") if key == SEGMENTS} == written
    looks = looked_at(shop)
    assert len(looks) == len(set(looks)) == 30  # the hour's share (100) wrapped round the 30 customers once
    served = [e for e in shop.request_log("lightspeed") if e["status"] == 200 and not e.get("throttled")]
    assert [e["method"] for e in served if e["write"]] == ["PUT"]  # customer 1's row, in place: nothing created


@pytest.mark.parametrize(
    ("cursor", "bound"),
    [
        ("2026-01-10T10:30:00+01:00", "2026-01-10 09:30:00"),  # east of UTC (EU1): the UTC reading is earlier
        ("2026-07-10T10:30:00-05:00", "2026-07-10 10:30:00"),  # west of UTC (US1): the shop's is earlier
        ("2026-01-10T10:30:00Z", "2026-01-10 10:30:00"),
    ],
)
def test_the_bound_is_the_earlier_of_its_shop_time_and_utc_readings(cursor: str, bound: str) -> None:
    since = shop_moment(cursor)
    assert updated_at_min(since, cursor) == bound
