"""The WooCommerce connector against its sandbox, over real HTTP."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from connectors.base import Permission
from connectors.errors import ApiError, AuthError, PermissionDenied
from connectors.http import ApiResponse
from connectors.paging import PageNumberPaginator, PagingLoop, Reply
from connectors.woocommerce.client import OrderPages, OrdersReply, WooCommerceConnector, total_pages
from mapping.model import Kind, RemoteState, WriteBack
from sync.extract import streams_of
from tests.contract.test_woocommerce_sandbox import customers
from tests.kit import Sandboxes, json_out, make_connector, run_crmsync

PROBE = "/wp-json/wc/v3/crmsync-permission-probe"
KEYS_FIX = "WooCommerce > Settings > Advanced > REST API > edit the key > Permissions: Read/Write"


def orders(n: int, second: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": 500 + i,
            "status": "cancelled" if i == 3 else "completed",
            "total": "25.00",
            "customer_id": 1 + i % 5,
            "date_created_gmt": "2026-03-01T00:00:00",
            "date_modified_gmt": f"2026-03-01T00:{(i + second) // 60:02d}:{(i + second) % 60:02d}",
        }
        for i in range(1, n + 1)
    ]


def orders_in_one_second(start: Callable[..., Sandboxes], n: int) -> tuple[Sandboxes, WooCommerceConnector]:
    """A shop whose `n` orders were all modified in one second (a bulk status change), and a
    connector paging them 10 at a time."""
    same_second = [{**o, "date_modified_gmt": "2026-03-01T00:00:30"} for o in orders(n)]
    woo = start({"woocommerce": {"customers": customers(1), "orders": same_second}})
    return woo, make_connector(woo, "woocommerce", page_size=10)


@pytest.fixture
def woo(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"woocommerce": {"customers": customers(30), "orders": orders(25)}})


def test_customer_scan_reads_exactly_the_pages_there_are(woo: Sandboxes) -> None:
    connector = make_connector(woo, "woocommerce", page_size=10)
    pages = list(connector.read_contacts(None))
    assert [len(p.records) for p in pages] == [10, 10, 10]
    # mid-scan the checkpoint holds the next page (and no cursor: a scan has none); a finished scan starts over
    assert [p.checkpoint.get("pass", {}).get("at") for p in pages] == [2, 3, None]
    assert [sorted(p.checkpoint) for p in pages] == [["pass"], ["pass"], []]
    assert pages[-1].checkpoint == {}
    assert woo.stats("woocommerce")["requests"]["GET /wp-json/wc/v3/customers"] == 3  # no 4th, empty request
    resumed = list(connector.read_contacts(pages[1].checkpoint))
    assert [r.id for p in resumed for r in p.records] == [str(i) for i in range(21, 31)]


def test_orders_read_by_keyset_without_gaps_or_duplicates(woo: Sandboxes) -> None:
    connector = make_connector(woo, "woocommerce", page_size=10)
    pages = list(connector.read_orders(None))
    ids = [r.id for p in pages for r in p.records]
    assert sorted(ids, key=int) == [str(500 + i) for i in range(1, 26)]
    assert len(ids) == len(set(ids))
    assert pages[-1].checkpoint == {"cursor": "2026-03-01T00:00:25+00:00"}
    # keyset paging: 501-510, then from 510's second on 510-519, then 519-525 (short: asked once
    # more, then done)
    assert woo.stats("woocommerce")["requests"]["GET /wp-json/wc/v3/orders"] == 3 + 1


def test_incremental_orders_return_the_changed_one(woo: Sandboxes) -> None:
    connector = make_connector(woo, "woocommerce", page_size=10, lookback=0)
    checkpoint = [p.checkpoint for p in connector.read_orders(None)][-1]
    app = woo.app("woocommerce")
    with app.lock:
        app.orders[507]["status"] = "refunded"
        app.orders[507]["date_modified_gmt"] = "2026-03-01T01:00:00"
    changed = [r for p in connector.read_orders(checkpoint) for r in p.records]
    # the boundary second is read again; the changed order comes with it, nothing else
    assert [r.id for r in changed] == ["525", "507"]
    assert connector.order_counts(changed[-1].payload) is False
    # bounds go without a zone, in GMT (dates_are_gmt): WordPress would read a zoned one in the
    # site's wall-clock time, an hour or two late for a Dutch shop (see the sandbox's test)
    asked = [parse_qs(e["query"]) for e in woo.request_log("woocommerce") if "modified_after" in e.get("query", "")]
    assert asked and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", q["modified_after"][0]) for q in asked)
    assert all(q["dates_are_gmt"] == ["true"] for q in asked)


def test_an_interrupted_orders_read_resumes_at_the_boundary_second_it_had_reached(woo: Sandboxes) -> None:
    connector = make_connector(woo, "woocommerce", page_size=10)
    first = next(iter(connector.read_orders(None)))
    assert [r.id for r in first.records] == [str(500 + i) for i in range(1, 11)]
    # mid-pass: no cursor yet (a first read), the next request from 510's second on
    assert "cursor" not in first.checkpoint
    assert list(first.checkpoint["pass"]["at"]) == ["2026-03-01T00:00:09", 1]
    resumed = list(connector.read_orders(first.checkpoint))
    ids = [r.id for p in resumed for r in p.records]
    assert ids == [str(500 + i) for i in range(10, 26)]  # 510 read again (its second), then on to 525
    assert resumed[-1].checkpoint == {"cursor": "2026-03-01T00:00:25+00:00"}


def test_orders_modified_within_one_second_are_paged_by_number(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    woo, connector = orders_in_one_second(start_sandboxes_fixture, 25)
    pages = list(connector.read_orders(None))
    ids = [r.id for p in pages for r in p.records]
    assert sorted(ids, key=int) == [str(500 + i) for i in range(1, 26)] and len(ids) == len(set(ids))
    assert pages[-1].checkpoint == {"cursor": "2026-03-01T00:00:30+00:00"}
    # page 1 unfiltered; from one second earlier page 1 (all repeats); that second alone, pages 1-3
    # (the short one asked once more); past it (empty: asked once more)
    assert woo.stats("woocommerce")["requests"]["GET /wp-json/wc/v3/orders"] == 1 + 1 + (3 + 1) + (1 + 1)


def test_an_order_edited_while_its_second_is_paged_hides_no_other(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """An edit moves an order to the end of the list: page numbers of the open-ended query would
    then shift by one and skip the order at the page boundary (511 below)."""
    woo, connector = orders_in_one_second(start_sandboxes_fixture, 25)
    app = woo.app("woocommerce")
    read: dict[str, str] = {}
    for number, page in enumerate(connector.read_orders(None)):
        read.update((r.id, r.payload["date_modified_gmt"]) for r in page.records)
        if number in (1, 2):  # mid-read, an order already read is edited
            with app.lock:
                app.orders[502 + number]["date_modified_gmt"] = "2026-03-01T01:00:00"
    assert sorted(read, key=int) == [str(500 + i) for i in range(1, 26)]
    assert read["503"] == read["504"] == "2026-03-01T01:00:00"  # and each edited one as it is now
    asked = [e["query"] for e in woo.request_log("woocommerce") if e["path"] == "/wp-json/wc/v3/orders"]
    ties = [q for q in asked if "modified_before" in q]
    assert ties and all("modified_before=2026-03-01T00%3A00%3A31" in q and "orderby=id" in q for q in ties)


def test_a_second_whose_orders_keep_changing_while_read_is_an_error_not_a_gap(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    woo, connector = orders_in_one_second(start_sandboxes_fixture, 80)
    app = woo.app("woocommerce")
    checkpoints = []
    with pytest.raises(ApiError, match="kept changing while they were read"):
        for page in connector.read_orders(None):
            checkpoints.append(page.checkpoint)
            with app.lock:  # after every page an order of that second is edited
                edited = max(i for i, o in app.orders.items() if o["date_modified_gmt"].endswith("00:30"))
                app.orders[edited]["date_modified_gmt"] = "2026-03-01T01:00:00"
    # the tie is read again ten times, then given up; the read resumes inside it next time
    restarts = [c["pass"]["at"] for c in checkpoints if len(c["pass"]["at"]) == 4 and c["pass"]["at"][1] == 1]
    assert len(restarts) == 1 + 10
    assert checkpoints[-1]["pass"]["at"][0] == "2026-03-01T00:00:29"
    # once the orders stand still, the read resumes there and misses none, the edited ones included
    resumed = [r.id for p in connector.read_orders(json.loads(json.dumps(checkpoints[-1]))) for r in p.records]
    assert sorted(set(resumed), key=int) == [str(500 + i) for i in range(1, 81)]


def test_a_read_stopped_inside_a_second_by_an_earlier_crmsync_resumes_there(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """Before, a tie was paged by number of the open-ended query: a checkpoint may hold page 2 of
    it. That second is read whole again; kept as it was, page 2 would not come after the tie's
    first page, and every next read would stop at the loop guard."""
    _, connector = orders_in_one_second(start_sandboxes_fixture, 35)
    earlier = {
        "pass": {
            "since": None,
            "started": "2026-03-02T00:00:00+00:00",
            "newest": "2026-03-01T00:00:30+00:00",
            "at": ["2026-03-01T00:00:29", 2],
            "pages": 2,
        }
    }
    pages = list(connector.read_orders(earlier))
    assert {r.id for p in pages for r in p.records} == {str(500 + i) for i in range(1, 36)}
    assert pages[-1].checkpoint == {"cursor": "2026-03-01T00:00:30+00:00"}


def full_page(second: str) -> OrdersReply:
    return OrdersReply(
        [{"id": i, "date_modified_gmt": second} for i in range(10)], modified_after="2026-03-01T00:00:29"
    )


def test_a_list_without_page_totals_ends_on_a_short_page_only() -> None:
    """A reply without X-WP-TotalPages (a proxy that drops it) says nothing of where the tie ends."""
    without = ApiResponse(200, {}, [], "[]", "GET", "/wp-json/wc/v3/orders", 0.0)
    assert total_pages(without) is None
    pages = OrderPages("woocommerce", 10, ("2026-03-01T00:00:29", 1, 0, 0))
    assert pages.advance(replace(full_page("2026-03-01T00:00:30"), total_pages=None, total=0))
    assert pages.position == ("2026-03-01T00:00:29", 2, 0, 0)
    short = OrdersReply([{"id": 99, "date_modified_gmt": "2026-03-01T00:00:30"}], total_pages=None, total=0)
    assert pages.advance(short) and pages.position == ("2026-03-01T00:00:30", 1)
    # The customer scan, too: a full page without totals is not the last one.
    scan = PageNumberPaginator("woocommerce", 10, 1)
    assert scan.advance(Reply(list(range(10)), total_pages=None)) and scan.position == 2


def test_a_store_that_ignores_modified_after_is_refused_not_read_forever() -> None:
    """Orders older than the bound asked for: the filter was ignored. A tie of each next second
    would read the whole store again and again; the loop guard refuses it instead."""
    pages = OrderPages("woocommerce", 10, ("2026-03-01T00:00:29", 1))
    with pytest.raises(PagingLoop):
        pages.advance(full_page("2026-03-01T00:00:05"))


def test_a_page_that_comes_back_short_is_read_again(woo: Sandboxes) -> None:
    connector = make_connector(woo, "woocommerce", page_size=10)
    woo.fault("woocommerce", match="GET /wp-json/wc/v3/customers", fault="skip-item", times=1)
    ids = [r.id for p in connector.read_contacts(None) for r in p.records]
    assert sorted(ids, key=int) == [str(i) for i in range(1, 31)]
    assert woo.stats("woocommerce")["requests"]["GET /wp-json/wc/v3/customers"] == 4  # page 1 twice


def test_meta_write_back_with_per_record_results(woo: Sandboxes) -> None:
    connector = make_connector(woo, "woocommerce")
    fields = {"crmsync_segments": "friends,tier-gold", "crmsync_loyalty_tier": "gold"}
    changes = [
        WriteBack("woocommerce", rid, (), (), fields, RemoteState(frozenset(), fields)) for rid in ("1", "999", "2")
    ]
    results = {r.record_id: r for r in connector.write(changes)}
    assert results["1"].ok and results["2"].ok
    assert not results["999"].ok and "Invalid resource ID" in results["999"].message
    stored = {m["key"]: m["value"] for m in woo.customer("woocommerce", "1")["meta_data"]}
    assert stored == {"newsletter_optin": "yes", **fields}
    assert woo.stats("woocommerce")["writes"] == 1
    payload = woo.customer("woocommerce", "2")
    assert connector.owned_state(payload) == RemoteState(frozenset(), fields)


def test_keys_in_the_query_string_work_when_asked_for(woo: Sandboxes) -> None:
    connector = make_connector(woo, "woocommerce", auth="query")
    connector.check()
    with pytest.raises(AuthError):
        make_connector(woo, "woocommerce", consumer_secret="cs_wrong").check()


# ----- check ---------------------------------------------------------------------------------------------
def key_permissions(woo: Sandboxes, value: str) -> None:
    url = woo.url("woocommerce") + "/_sandbox/app"
    requests.patch(url, json={"key_permissions": value}, timeout=5).raise_for_status()


def test_check_proves_read_and_write_rights_and_changes_nothing(woo: Sandboxes) -> None:
    before = [woo.customer("woocommerce", str(i)) for i in range(1, 31)]
    connector = make_connector(woo, "woocommerce")
    report = connector.check()
    assert report.permissions == [
        Permission("read_customers", True),
        Permission("read_orders", True),
        Permission("write", True),
    ]
    assert report.missing == [] and report.warnings == []
    assert report.capabilities.to_json() == {
        "read_contacts": True,
        "read_orders": True,
        "incremental": True,
        "write_tags": False,
        "write_fields": True,
    }
    # write rights proven by a POST that no endpoint received: WordPress's 404, nothing written
    calls = [(e["method"], e["path"], e["status"]) for e in woo.request_log("woocommerce")]
    assert calls == [
        ("GET", "/wp-json/wc/v3/customers", 200),
        ("GET", "/wp-json/wc/v3/orders", 200),
        ("POST", PROBE, 404),
    ]
    assert woo.stats("woocommerce")["writes"] == 0 and connector.client.stats.mutating == 0
    assert [woo.customer("woocommerce", str(i)) for i in range(1, 31)] == before


def test_check_with_a_read_only_key_reports_the_missing_write_permission_and_how_to_fix_it(
    woo: Sandboxes, tmp_path: Path
) -> None:
    key_permissions(woo, "read")
    report = make_connector(woo, "woocommerce").check()  # the probe's 401 is no credentials error
    assert [(p.name, p.ok) for p in report.permissions] == [
        ("read_customers", True),
        ("read_orders", True),
        ("write", False),
    ]
    [missing] = report.missing
    assert missing.name == "write" and missing.fix is not None and KEYS_FIX in missing.fix
    assert "read-only" in missing.fix
    caps = report.capabilities
    assert (caps.read_contacts, caps.read_orders, caps.write_fields) == (True, True, False)
    # without write-back nothing needs writing: no probe, nothing missing
    quiet = make_connector(woo, "woocommerce", writeback=False).check()
    assert [p.name for p in quiet.permissions] == ["read_customers", "read_orders"] and quiet.missing == []
    assert not quiet.capabilities.write_fields
    # and through the command line: credentials fine, a needed right missing, exit 3
    result = run_crmsync("check", "-c", str(woo.config(tmp_path)), "--json")
    assert result.returncode == 3, result.stderr
    system = json_out(result)["systems"]["woocommerce"]
    assert (system["reachable"], system["auth"]) == (True, "ok")
    assert system["capabilities"]["write_fields"] is False and system["capabilities"]["read_contacts"] is True
    assert {"name": "write", "ok": False, "fix": missing.fix, "needed": True} in system["permissions"]
    assert system["error"].startswith("write missing: the API key is read-only")
    assert woo.stats("woocommerce")["writes"] == 0


def test_check_with_a_write_only_key_reports_it_cannot_read(woo: Sandboxes) -> None:
    key_permissions(woo, "write")
    report = make_connector(woo, "woocommerce").check()
    assert [(p.name, p.ok) for p in report.permissions] == [
        ("read_customers", False),
        ("read_orders", False),
        ("write", True),
    ]
    assert all(p.fix and KEYS_FIX in p.fix for p in report.missing)
    assert not (report.capabilities.read_contacts or report.capabilities.read_orders)


def test_check_with_wrong_credentials_is_an_auth_error_not_a_missing_right(woo: Sandboxes) -> None:
    for wrong in ({"consumer_secret": "cs_wrong"}, {"consumer_key": "ck_wrong"}):
        with pytest.raises(AuthError, match=r"credentials refused \(HTTP 401\)") as refused:
            make_connector(woo, "woocommerce", **wrong).check()
        assert not isinstance(refused.value, PermissionDenied)
    calls = [(e["method"], e["path"]) for e in woo.request_log("woocommerce")]
    assert calls == [("GET", "/wp-json/wc/v3/customers")] * 2  # never retried, never probed


def test_a_key_woocommerce_does_not_know_is_named_as_the_thing_to_fix(woo: Sandboxes) -> None:
    """Over HTTPS WooCommerce answers an unknown (or revoked) consumer key as it answers a visitor
    without one, 401 "Sorry, you cannot list resources.": the error must say which setting is
    wrong, not read like a missing capability of the key's user."""
    with pytest.raises(AuthError) as refused:
        make_connector(woo, "woocommerce", consumer_key="ck_wrong").check()
    message = str(refused.value)
    assert not isinstance(refused.value, PermissionDenied)
    assert "credentials refused (HTTP 401)" in message and "no valid API key" in message
    assert "consumer_key" in message and 'auth = "query"' in message and "ck_wrong" not in message
    # with the keys in the query string the Authorization header is not the suspect
    with pytest.raises(AuthError) as by_query:
        make_connector(woo, "woocommerce", consumer_key="ck_wrong", auth="query").check()
    assert "consumer_key" in str(by_query.value) and 'auth = "query"' not in str(by_query.value)


def test_a_host_that_strips_the_authorization_header_is_told_to_use_query_keys(woo: Sandboxes, tmp_path: Path) -> None:
    app_settings = woo.url("woocommerce") + "/_sandbox/app"
    requests.patch(app_settings, json={"strips_authorization": True}, timeout=5).raise_for_status()
    result = run_crmsync("check", "-c", str(woo.config(tmp_path)), "--json")
    assert result.returncode == 3, result.stderr
    system = json_out(result)["systems"]["woocommerce"]
    assert (system["reachable"], system["auth"]) == (True, "refused")
    assert 'set auth = "query"' in system["error"]
    # the fix it names works
    assert make_connector(woo, "woocommerce", auth="query").check().missing == []


def test_an_order_moved_to_the_trash_after_it_was_read_stops_counting(woo: Sandboxes) -> None:
    """`status=any`, the orders list's default, leaves trashed orders out (the v3 controller turns
    it into WP_Query's "any", which skips the trash), so the trash is read on its own: an order
    counted once and trashed later must reach crmsync as trashed, or it counts for ever."""
    connector = make_connector(woo, "woocommerce", page_size=10)
    checkpoints: dict[str, Any] = {}
    latest: dict[str, dict[str, Any]] = {}

    def read_every_stream() -> None:
        for name, kind in streams_of(connector):
            if kind is not Kind.ORDER:
                continue
            for page in connector.reader(name)(checkpoints.get(name)):
                latest.update({r.id: r.payload for r in page.records})
                checkpoints[name] = page.checkpoint

    read_every_stream()
    assert connector.order_counts(latest["501"])
    order = {k: v for k, v in orders(1)[0].items() if not k.startswith("date_modified")}
    woo.app("woocommerce").put_order({**order, "status": "trash"})  # WooCommerce > Orders > Move to Trash
    read_every_stream()
    assert latest["501"]["status"] == "trash"
    assert not connector.order_counts(latest["501"])


@pytest.mark.parametrize("status", ["pending", "failed"])
def test_an_unfinished_status_in_counted_statuses_is_a_config_error_not_a_silent_no_op(
    woo: Sandboxes, status: str
) -> None:
    """A pending-payment or failed order is an unfinished purchase (the abandoned-checkout base):
    mapped, it never counts, whatever `counted_statuses` says. Listing one would change nothing,
    silently, so the setting refuses it and says why."""
    from pydantic import ValidationError

    from connectors.woocommerce.settings import WooCommerceSettings
    from sync.mapper import make_mapper

    counted = make_connector(woo, "woocommerce")
    record = next(r for page in counted.read_orders(None) for r in page.records)
    unfinished = replace(record, payload={**record.payload, "status": status})
    mapped = make_mapper(counted, Kind.ORDER, {"woocommerce": counted})(unfinished)
    assert getattr(mapped, "counts", None) is False  # what listing it could never change
    settings = counted.settings.model_dump()
    with pytest.raises(ValidationError) as refused:
        WooCommerceSettings.model_validate({**settings, "counted_statuses": ["completed", status]})
    message = str(refused.value)
    assert repr(status) in message and "abandoned checkout" in message and "never counts" in message
