"""The Shopify connector against its sandbox, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from graphql import parse, validate
from graphql.validation import NoDeprecatedCustomRule

from connectors.errors import AuthError
from connectors.http import ApiResponse
from connectors.shopify.client import (
    CHECK_QUERY,
    CUSTOMERS_QUERY,
    ORDERS_QUERY,
    ShopifyConnector,
    ShopifySettings,
    _write_document,
)
from connectors.shopify.pacing import CostPacer
from connectors.shopify.queries import CHECKOUTS_QUERY, ORDERS_WITH_LINES_PAGE, ORDERS_WITH_LINES_QUERY, ZONE_QUERY
from connectors.shopify.sandbox import admin_schema
from mapping.fieldmaps import map_order
from mapping.model import Kind, Order, RemoteState, WriteBack
from tests.kit import Sandboxes, make_connector


def customers(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"gid://shopify/Customer/{i}",
            "firstName": "Klant",
            "lastName": str(i),
            "defaultEmailAddress": {"emailAddress": f"klant{i}@example.nl"},
            "tags": ["vip", "crmsync:old"] if i == 1 else [],
            "updatedAt": f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00Z",
        }
        for i in range(1, n + 1)
    ]


@pytest.fixture
def shop(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    orders = [
        {
            "id": f"gid://shopify/Order/{i}",
            "customer": {"id": f"gid://shopify/Customer/{i}"},
            "totalPriceSet": {"shopMoney": {"amount": "19.95", "currencyCode": "EUR"}},
            "createdAt": "2026-02-01T10:00:00Z",
            "cancelledAt": "2026-02-01T11:00:00Z" if i == 2 else None,
        }
        for i in range(1, 6)
    ]
    return start_sandboxes_fixture({"shopify": {"customers": customers(30), "orders": orders}})


@pytest.mark.parametrize(
    "document", [CUSTOMERS_QUERY, ORDERS_QUERY, ORDERS_WITH_LINES_QUERY, CHECKOUTS_QUERY, CHECK_QUERY, ZONE_QUERY]
)
def test_documents_are_valid_against_the_published_schema_and_use_no_deprecated_fields(document: str) -> None:
    assert validate(admin_schema(), parse(document), rules=[NoDeprecatedCustomRule]) == []
    from graphql import specified_rules

    assert validate(admin_schema(), parse(document), rules=specified_rules) == []


def test_orders_with_their_lines_fit_one_query_at_the_page_size_crmsync_asks() -> None:
    """A connection inside a connection multiplies Shopify's calculated cost: 30 orders with 10
    lines each stay under the 1000-point limit, the plain page of 100 would not."""
    from connectors.shopify.sandbox_cost import MAX_QUERY_COST, query_cost

    def cost(size: int) -> int:
        return query_cost(admin_schema(), parse(ORDERS_WITH_LINES_QUERY), {"first": size}, None)

    assert cost(ORDERS_WITH_LINES_PAGE) <= MAX_QUERY_COST < cost(100)


@pytest.mark.parametrize(
    ("root", "document"), [("customers", CUSTOMERS_QUERY), ("orders", ORDERS_QUERY), ("checkouts", CHECKOUTS_QUERY)]
)
def test_the_largest_page_crmsync_asks_is_the_largest_under_the_query_cost_limit(root: str, document: str) -> None:
    from connectors.shopify.queries import largest_page
    from connectors.shopify.sandbox_cost import MAX_QUERY_COST, query_cost

    def cost(size: int) -> int:
        return query_cost(admin_schema(), parse(document), {"first": size}, None)

    assert cost(largest_page(root)) <= MAX_QUERY_COST < cost(largest_page(root) + 1)


def test_the_largest_page_size_setting_reads_customers_and_orders(shop: Sandboxes) -> None:
    """`page_size = 250` (the setting's maximum) is more than one query of customers (5 points a
    node) or orders (8) may ask for: each read's page is cut to stay under 1000 points, where
    Shopify would refuse it with MAX_COST_EXCEEDED."""
    connector = make_connector(shop, "shopify", page_size=250)
    customers_read = [r for page in connector.read_contacts(None) for r in page.records]
    orders_read = [r for page in connector.read_orders(None) for r in page.records]
    assert (len(customers_read), len(orders_read)) == (30, 5)


def test_write_document_is_valid() -> None:
    change = WriteBack(
        "shop",
        "gid://shopify/Customer/1",
        ("crmsync:a",),
        ("crmsync:b",),
        {"crmsync.loyalty_tier": "gold"},
        RemoteState(),
    )
    gone = WriteBack("shop", "gid://shopify/Customer/2", (), (), {"crmsync.loyalty_tier": None}, RemoteState())
    plan = _write_document([change, gone], "crmsync.loyalty_tier")
    assert plan.mutations == 4
    assert validate(admin_schema(), parse(plan.document)) == []


@pytest.mark.parametrize(("count", "pages"), [(30, 3), (31, 4)])
def test_reads_every_page_including_an_exact_multiple(
    start_sandboxes_fixture: Callable[..., Sandboxes], count: int, pages: int
) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(count)}})
    connector = make_connector(shop, "shopify", page_size=10)
    read = list(connector.read_contacts(None))
    ids = [r.id for page in read for r in page.records]
    assert len(read) == pages
    assert len(ids) == len(set(ids)) == count
    assert read[-1].checkpoint == {"cursor": f"2026-01-01T00:{count:02d}:00+00:00"}
    # a short last page is asked for once more before it ends the read; a full one is not; a full
    # pass first counts the customers (whether a bulk read is worth it)
    short = 1 if count % 10 else 0
    assert shop.stats("shopify")["requests"]["POST /admin/api/<version>/graphql.json"] == 1 + pages + short


@pytest.mark.parametrize("zone", ["Europe/Amsterdam", "America/New_York"])
def test_an_incremental_read_of_customers_loses_nothing_though_the_filter_matches_whole_days(
    shop: Sandboxes, zone: str
) -> None:
    """Customers' `updated_at` filter is "the date and time, matching a whole day" (documented;
    orders' is a moment), in whichever zone the shop's day is. Asked `>=` the cursor's UTC moment,
    a shop west of UTC started the day hours late: customers changed at 02:00 and 03:00 UTC on
    10 January (9 January in New York) were not read. The client asks from the day before."""
    requests.patch(f"{shop.url('shopify')}/_sandbox/app", json={"shop_timezone": zone}, timeout=5).raise_for_status()
    app = shop.app("shopify")
    with app.lock:
        for number in range(1, 31):
            app.stamp_customer(f"gid://shopify/Customer/{number}", datetime(2026, 1, 5, 12, tzinfo=UTC))
        app.stamp_customer("gid://shopify/Customer/30", datetime(2026, 1, 10, 2, tzinfo=UTC))
    connector = make_connector(shop, "shopify", page_size=10, lookback=0)
    checkpoint = [page.checkpoint for page in connector.read_contacts(None)][-1]
    assert checkpoint == {"cursor": "2026-01-10T02:00:00+00:00"}
    shop.patch_customer("shopify", "gid://shopify/Customer/7", {"firstName": "Gewijzigd"})
    with app.lock:
        app.stamp_customer("gid://shopify/Customer/7", datetime(2026, 1, 10, 3, tzinfo=UTC))
    changed = [r for page in connector.read_contacts(checkpoint) for r in page.records]
    # the customer at the cursor is read again, then the changed one; those of 5 January are not
    assert [r.id for r in changed] == ["gid://shopify/Customer/30", "gid://shopify/Customer/7"]
    assert changed[-1].payload["firstName"] == "Gewijzigd"


def test_orders_and_what_counts(shop: Sandboxes) -> None:
    connector = make_connector(shop, "shopify")
    records = [r for page in connector.read_orders(None) for r in page.records]
    assert {r.kind for r in records} == {Kind.ORDER} and len(records) == 5
    counted = {r.id: connector.order_counts(r.payload) for r in records}
    assert counted["gid://shopify/Order/2"] is False and counted["gid://shopify/Order/1"] is True


FINANCIAL = ["PENDING", "AUTHORIZED", "PARTIALLY_PAID", "PAID", "PARTIALLY_REFUNDED", "REFUNDED", "VOIDED", None]


@pytest.mark.parametrize(
    ("setting", "counted"),
    [
        # The default: what crmsync counted before the setting (all but REFUNDED, VOIDED, EXPIRED).
        ({}, {"PENDING", "AUTHORIZED", "PARTIALLY_PAID", "PAID", "PARTIALLY_REFUNDED", None}),
        # A merchant whose customers pay by bank deposit: only money received counts. An order
        # without a financial status (the field is nullable, its meaning then undocumented) still does.
        ({"counted_financial_statuses": ["PARTIALLY_REFUNDED", "PAID"]}, {"PAID", "PARTIALLY_REFUNDED", None}),
    ],
    ids=["default", "paid only"],
)
def test_which_financial_statuses_count_is_the_setting(
    start_sandboxes_fixture: Callable[..., Sandboxes], setting: dict[str, Any], counted: set[str | None]
) -> None:
    orders = [
        {
            "id": f"gid://shopify/Order/{i}",
            "customer": {"id": "gid://shopify/Customer/1"},
            "totalPriceSet": {"shopMoney": {"amount": "19.95", "currencyCode": "EUR"}},
            "createdAt": "2026-02-01T10:00:00Z",
            "displayFinancialStatus": status,
        }
        for i, status in enumerate(FINANCIAL, start=1)
    ]
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(1), "orders": orders}})
    connector = make_connector(shop, "shopify", **setting)
    records = [r for page in connector.read_orders(None) for r in page.records]
    assert len(records) == len(FINANCIAL)
    assert {r.payload.get("displayFinancialStatus") for r in records if connector.order_counts(r.payload)} == counted


@pytest.mark.parametrize("current", [None, "300.00"], ids=["current total after refunds", "after returns only"])
def test_a_partly_refunded_order_counts_what_was_not_refunded(
    start_sandboxes_fixture: Callable[..., Sandboxes], current: str | None
) -> None:
    """Shopify keeps an order's `totalPriceSet` when part of it is refunded. Its current total is
    the total "after returns" (Admin 2026-10 schema); the REST docs say it "reflects order edits,
    returns, and refunds". Either way a 300.00 order with 270.00 refunded counts 30.00: refunded
    with no item returned, the current total stays 300 and only totalRefundedSet shows it; left out
    of the fixture, the sandbox derives the current total as the total less what was refunded."""
    money = lambda amount: {"shopMoney": {"amount": amount, "currencyCode": "EUR"}}  # noqa: E731
    order = {
        "id": "gid://shopify/Order/1",
        "customer": {"id": "gid://shopify/Customer/1"},
        "totalPriceSet": money("300.00"),
        "totalRefundedSet": money("270.00"),
        "displayFinancialStatus": "PARTIALLY_REFUNDED",
        "createdAt": "2026-02-01T10:00:00Z",
        **({"currentTotalPriceSet": money(current)} if current is not None else {}),
    }
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(1), "orders": [order]}})
    connector = make_connector(shop, "shopify")
    (record,) = [r for page in connector.read_orders(None) for r in page.records]
    mapped = map_order(record, connector.order_fields, connector.order_counts(record.payload))
    assert isinstance(mapped, Order) and (mapped.amount, mapped.counts) == (Decimal("30.00"), True)


def test_write_back_adds_and_removes_only_crmsync_tags_and_sets_the_tier(shop: Sandboxes) -> None:
    connector = make_connector(shop, "shopify")
    gid = "gid://shopify/Customer/1"
    target = RemoteState(frozenset({"crmsync:friends"}), {"crmsync.loyalty_tier": "gold"})
    change = WriteBack("shopify", gid, ("crmsync:friends",), ("crmsync:old",), {"crmsync.loyalty_tier": "gold"}, target)
    results = connector.write([change])
    assert [(r.record_id, r.ok) for r in results] == [(gid, True)]
    stored = shop.customer("shopify", gid)
    assert stored["tags"] == ["vip", "crmsync:friends"]
    assert {(m["namespace"], m["key"], m["value"]) for m in stored["metafields"]} == {
        ("crmsync", "loyalty_tier", "gold")
    }
    assert shop.stats("shopify")["writes"] == 1  # tags and metafield in one document
    payload = next(r.payload for p in connector.read_contacts(None) for r in p.records if r.id == gid)
    assert connector.owned_state(payload) == target
    cleared = WriteBack("shopify", gid, (), (), {"crmsync.loyalty_tier": None}, RemoteState())
    assert connector.write([cleared])[0].ok
    assert shop.customer("shopify", gid)["metafields"] == []


def test_a_tag_holding_a_comma_is_never_crmsyncs_so_never_removed(shop: Sandboxes) -> None:
    """Shopify splits tags at commas when it stores them, but `tagsRemove` with "crmsync:old, vip"
    would take the merchant's "vip" too: such a tag is not crmsync's, whatever its prefix."""
    connector = make_connector(shop, "shopify")
    payload = next(r.payload for p in connector.read_contacts(None) for r in p.records)
    payload = {**payload, "tags": ["crmsync:friends", "crmsync:old, vip", "vip"]}
    assert connector.owned_state(payload).tags == frozenset({"crmsync:friends"})
    assert not connector.owns_tag("crmsync:a,b") and connector.owns_tag("CRMSYNC:friends")


def test_one_refused_metafield_does_not_block_its_batch(shop: Sandboxes) -> None:
    connector = make_connector(shop, "shopify")
    changes = [
        WriteBack("shopify", f"gid://shopify/Customer/{i}", (), (), {"crmsync.loyalty_tier": value}, RemoteState())
        for i, value in ((3, "gold"), (4, "two\nlines"), (5, "silver"))
    ]
    results = {r.record_id: r for r in connector.write(changes)}
    assert results["gid://shopify/Customer/4"].ok is False
    assert "single line" in results["gid://shopify/Customer/4"].message
    assert results["gid://shopify/Customer/3"].ok and results["gid://shopify/Customer/5"].ok
    assert shop.customer("shopify", "3")["metafields"][0]["value"] == "gold"
    assert shop.customer("shopify", "5")["metafields"][0]["value"] == "silver"
    assert shop.customer("shopify", "4")["metafields"] == []


def test_paces_by_query_cost_instead_of_bouncing(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture(
        {"shopify": {"customers": customers(60)}}, options={"shopify": {"bucket_size": 130, "restore_rate": 100}}
    )
    connector = make_connector(shop, "shopify", page_size=10)  # 2 + 10 x 5 = 52 points a page
    ids = [r.id for page in connector.read_contacts(None) for r in page.records]
    assert len(set(ids)) == 60
    assert shop.stats("shopify")["throttled"] == 0  # waited for the bucket, never bounced off it
    log = shop.request_log("shopify")
    # 6 pages of 52 points from a bucket of 130 that refills 100 points a second: >= 1.82 s of waiting
    assert log[-1]["t"] - log[0]["t"] >= 1.75


def test_wrong_token_is_an_auth_error_and_not_retried(shop: Sandboxes) -> None:
    # An app made in the Shopify admin before 2026: a fixed token, no client credentials.
    connector = make_connector(shop, "shopify", access_token="shpat_wrong", client_id=None, client_secret=None)
    with pytest.raises(AuthError, match=r"shopify: POST /admin/api/2026-10/graphql\.json: credentials refused"):
        connector.check()
    assert shop.stats("shopify")["errors"] == 1


def test_a_read_resumed_mid_pass_goes_on_from_the_next_page(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(25)}})
    connector = make_connector(shop, "shopify", page_size=10, lookback=0)
    first = next(iter(connector.read_contacts(None)))
    assert [r.id for r in first.records] == [f"gid://shopify/Customer/{i}" for i in range(1, 11)]
    assert first.checkpoint["pass"]["at"]  # the page's endCursor: where the pass goes on
    rest = list(connector.read_contacts(first.checkpoint))
    assert [r.id for page in rest for r in page.records] == [f"gid://shopify/Customer/{i}" for i in range(11, 26)]
    assert rest[-1].checkpoint == {"cursor": "2026-01-01T00:25:00+00:00"}


def offline_connector() -> ShopifyConnector:
    settings = ShopifySettings(type="shopify", base_url="http://127.0.0.1:9", access_token="shpat_x")
    return ShopifyConnector("shop", settings)


def reply(body: Any, status: int = 200) -> ApiResponse:
    return ApiResponse(status, {}, body, "", "POST", "/admin/api/2026-10/graphql.json", 0.0)


def error(code: str | None, message: str = "went wrong", **extensions: Any) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code, **extensions}} if code else {"message": message}


COST = {"requestedQueryCost": 202, "throttleStatus": {"currentlyAvailable": 2.0, "restoreRate": 100.0}}


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"data": {"shop": {}}}, 200, "ok"),
        ({"errors": [error("THROTTLED")], "extensions": {"cost": COST}}, 200, "throttled"),
        ({"errors": [error("ACCESS_DENIED"), error("THROTTLED")], "extensions": {"cost": COST}}, 200, "throttled"),
        ({"errors": [error("ACCESS_DENIED")], "data": None}, 200, "denied"),
        ({"errors": [error("INTERNAL_SERVER_ERROR")]}, 200, "retry"),
        ({"errors": [error("MAX_COST_EXCEEDED")]}, 200, "fatal"),
        ({"errors": [error(None)]}, 200, "fatal"),
        ({"errors": "something"}, 200, "fatal"),
        ({"errors": "[API] Invalid API key or access token"}, 401, "auth"),
        ({"errors": "Throttled"}, 429, "throttled"),
    ],
)
def test_errors_inside_a_200_are_read_by_their_code(body: Any, status: int, kind: str) -> None:
    verdict = offline_connector().classify(reply(body, status))
    assert verdict.kind == kind
    if kind == "throttled" and status == 200:
        assert verdict.retry_after == pytest.approx(2.0)  # (202 - 2) points at 100 a second


def test_a_field_the_api_version_lacks_is_named_as_a_drift() -> None:
    body = {"errors": [error("undefinedField", "Field 'firstName' doesn't exist", typeName="Customer", fieldName="x")]}
    verdict = offline_connector().classify(reply(body))
    assert verdict.kind == "fatal"
    assert verdict.message.startswith("Shopify Admin GraphQL API 2026-10 has no field Customer.x (renamed or removed")


def test_the_pacer_waits_for_the_bucket_to_cover_the_cost() -> None:
    pacer = CostPacer()
    assert pacer.cost_of("customers") == 0.0 and pacer.before("POST", "/", 0.0) == 0.0  # nothing known yet
    bucket = {"maximumAvailable": 130.0, "currentlyAvailable": 30.0, "restoreRate": 10.0}
    cost = {"requestedQueryCost": 52, "throttleStatus": bucket}
    pacer.observe(reply({"data": {}, "extensions": {"cost": cost}}))
    assert pacer.costs == {"customers": 52.0}
    assert pacer.cost_of("orders") == 52.0  # not sent before: as dear as the dearest seen
    assert pacer.cost_of("write", 250.0) == 250.0  # the caller's estimate wins
    assert 1.5 < pacer.before("POST", "/", 52.0) <= 2.2  # 22 points short at 10 a second
    assert pacer.before("POST", "/", 10.0) == 0.0
    pacer.observe(reply({"errors": "[API] Invalid API key or access token"}, 401))  # no cost report: nothing learnt
    assert pacer.costs == {"customers": 52.0}


@pytest.mark.parametrize(
    ("shop_zone", "segments_zone", "warned"),
    [
        ("Europe/Amsterdam", None, True),  # segments count UTC days: the shop's 1 January is not theirs
        ("Europe/Amsterdam", "Europe/Amsterdam", False),
        ("America/New_York", "Europe/Amsterdam", True),
        ("UTC", None, False),
    ],
)
def test_check_names_the_shops_own_time_zone_and_warns_when_segments_count_days_in_another(
    shop: Sandboxes, shop_zone: str, segments_zone: str | None, warned: bool
) -> None:
    from sync.checking import check_system

    requests.patch(
        f"{shop.url('shopify')}/_sandbox/app", json={"shop_timezone": shop_zone}, timeout=5
    ).raise_for_status()
    result = check_system("shopify", make_connector(shop, "shopify"), segments_zone)
    assert result["timezone"] == shop_zone and result["error"] is None
    zone_notes = [w for w in result["warnings"] if "[segments] timezone" in w]
    assert bool(zone_notes) is warned
    if warned:
        assert f'timezone = "{shop_zone}"' in zone_notes[0] and (segments_zone or "UTC") in zone_notes[0]
