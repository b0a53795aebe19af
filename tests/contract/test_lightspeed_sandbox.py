"""The Lightspeed eCom sandbox follows the vendor's contract, refusals included (each proven here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.lightspeed.client import published_limits
from connectors.lightspeed.sandbox import DEFAULT_KEY, DEFAULT_SECRET, LightspeedSandbox
from connectors.lightspeed.shoptime import from_shop_wall_clock, shop_time
from connectors.ratelimit import Window
from connectors.sandbox import FixtureError, SandboxServer
from mapping.model import parse_timestamp
from tests.kit import Sandboxes

AUTH = (DEFAULT_KEY, DEFAULT_SECRET)


def customers(n: int) -> list[dict[str, Any]]:
    """`n` customers updated one minute apart in January (shop time +01:00), customer 1 with a
    merchant's note and another app's metafield."""
    return [
        {
            "id": i,
            "email": f"klant{i}@example.nl",
            "firstname": f"Klant{i}",
            "lastname": "de Vries",
            "createdAt": "2025-06-01T08:00:00Z",
            "updatedAt": f"2026-01-10T{10 + i // 60:02d}:{i % 60:02d}:00+01:00",
            "memo": "Belt liever dan dat ze mailt." if i == 1 else "",
            "metafields": [{"key": "klantenkaart", "value": "KK-1001"}] if i == 1 else [],
        }
        for i in range(1, n + 1)
    ]


def orders(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": 100 + i,
            "priceIncl": 24.95,
            "email": f"klant{i}@example.nl",
            "customer": False if i == 3 else i,
            "createdAt": "2026-02-01T10:00:00+01:00",
            "updatedAt": f"2026-02-01T10:00:{i:02d}+01:00",
            "status": "cancelled" if i == 2 else "completed_shipped",
        }
        for i in range(1, n + 1)
    ]


@pytest.fixture
def shop(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"lightspeed": {"customers": customers(25), "orders": orders(5)}})


def call(
    shop: Sandboxes, method: str, path: str, auth: Any = AUTH, body: Any = None, **params: Any
) -> requests.Response:
    return requests.request(method, shop.url("lightspeed") + path, params=params, json=body, auth=auth, timeout=5)


def error(status: int, method: str, request: str, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "method": method, "request": request, "message": message}}


def test_missing_or_wrong_credentials_are_refused_in_the_lightspeed_shape(shop: Sandboxes) -> None:
    for auth in (None, (DEFAULT_KEY, "wrong"), ("wrong", DEFAULT_SECRET)):
        response = call(shop, "GET", "/nl/customers.json", auth=auth)
        assert response.status_code == 401
        assert response.json() == error(401, "GET", "/nl/customers.json", "Unauthorized")
    assert shop.stats("lightspeed")["errors"] == 3


def test_a_key_without_permission_for_an_area_is_refused_with_403(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    permissions = {"customers": "read", "settings": "none"}
    shop = start_sandboxes_fixture(
        {"lightspeed": {"customers": customers(2)}}, options={"lightspeed": {"permissions": permissions}}
    )
    assert call(shop, "GET", "/nl/customers/1/metafields.json").status_code == 200
    body = {"customerMetafield": {"key": "crmsync_segments", "value": "friends"}}
    refused = call(shop, "POST", "/nl/customers/1/metafields.json", body=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "Forbidden: this API key has no write permission for customers"
    shop_settings = call(shop, "GET", "/nl/shop.json")
    assert shop_settings.json()["error"]["message"] == "Forbidden: this API key has no read permission for settings"
    assert call(shop, "GET", "/nl/orders.json").status_code == 200


def test_limit_above_250_and_pages_below_1_are_refused(shop: Sandboxes) -> None:
    too_big = call(shop, "GET", "/nl/customers.json", limit=251)
    assert too_big.status_code == 400
    assert too_big.json() == error(400, "GET", "/nl/customers.json", "Invalid limit: must be between 1 and 250")
    assert call(shop, "GET", "/nl/orders.json", page=0).json()["error"]["message"] == "Invalid page: must be 1 or more"
    assert call(shop, "GET", "/nl/customers.json", limit="ten").status_code == 400
    assert call(shop, "GET", "/nl/customers.json", limit=250).status_code == 200


def test_unknown_language_unknown_id_and_unknown_route_answer_404(shop: Sandboxes) -> None:
    assert call(shop, "GET", "/xx/customers.json").json() == error(404, "GET", "/xx/customers.json", "Not found")
    assert call(shop, "GET", "/nl/customers/999.json").status_code == 404
    assert call(shop, "GET", "/nl/customers/999/metafields.json").status_code == 404
    assert call(shop, "GET", "/nl/orders/1.json").status_code == 404
    assert call(shop, "GET", "/nl/products/tags.json").json()["error"]["message"] == "Not found"
    assert call(shop, "GET", "/en/customers/1.json").status_code == 200  # another language of the shop


def test_pages_are_sorted_by_id_default_to_50_and_are_empty_past_the_end(shop: Sandboxes) -> None:
    pages = [call(shop, "GET", "/nl/customers.json", page=p, limit=10).json()["customers"] for p in (1, 2, 3, 4)]
    assert [[c["id"] for c in page] for page in pages] == [
        list(range(1, 11)),
        list(range(11, 21)),
        list(range(21, 26)),
        [],
    ]
    assert len(call(shop, "GET", "/nl/customers.json").json()["customers"]) == 25  # default limit 50
    assert call(shop, "GET", "/nl/customers/count.json").json() == {"count": 25}
    assert call(shop, "GET", "/nl/customers.json", since_id=20).json()["customers"][0]["id"] == 21


def test_updated_at_min_is_inclusive_and_read_in_the_shops_wall_clock_time(shop: Sandboxes) -> None:
    # Customer 7 was updated at 10:07 shop time (+01:00), that is 09:07 UTC.
    found = call(shop, "GET", "/nl/customers.json", updated_at_min="2026-01-10 10:07:00").json()["customers"]
    assert [c["id"] for c in found] == list(range(7, 26))
    window = {"updated_at_min": "2026-01-10 10:03:00", "updated_at_max": "2026-01-10 10:05:00"}
    assert [c["id"] for c in call(shop, "GET", "/nl/customers.json", **window).json()["customers"]] == [3, 4, 5]
    assert call(shop, "GET", "/nl/customers/count.json", updated_at_min="2026-01-10").json() == {"count": 25}
    refused = call(shop, "GET", "/nl/customers.json", updated_at_min="2026-01-10T09:07:00Z")
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "Invalid updated_at_min: use YYYY-MM-DD HH:MM:SS"


def test_shop_time_follows_amsterdam_summer_time() -> None:
    winter, summer = parse_timestamp("2026-01-10T09:07:00Z"), parse_timestamp("2026-07-10T09:07:00Z")
    assert (shop_time(winter), shop_time(summer)) == ("2026-01-10T10:07:00+01:00", "2026-07-10T11:07:00+02:00")
    assert from_shop_wall_clock("2026-07-10 11:07:00") == summer
    assert shop_time(parse_timestamp("2026-03-29T00:59:59Z")).endswith("+01:00")  # the last second of winter
    assert shop_time(parse_timestamp("2026-03-29T01:00:00Z")) == "2026-03-29T03:00:00+02:00"
    # the autumn hour that happens twice reads from its first occurrence: a little more, never less
    assert from_shop_wall_clock("2026-10-25 02:30:00") == parse_timestamp("2026-10-25T00:30:00Z")


def test_replies_are_wrapped_with_false_for_empty_values_and_link_stubs(shop: Sandboxes) -> None:
    customer = call(shop, "GET", "/nl/customers/2.json").json()
    assert set(customer) == {"customer"}
    body = customer["customer"]
    assert body["gender"] is False and body["language"] is False and body["birthDate"] is False
    assert body["updatedAt"] == "2026-01-10T10:02:00+01:00" and body["createdAt"] == "2025-06-01T10:00:00+02:00"
    assert body["metafields"]["resource"] == {
        "id": False,
        "url": "customers/2/metafields",
        "link": f"{shop.url('lightspeed')}/nl/customers/2/metafields.json",
    }
    listed = call(shop, "GET", "/nl/orders.json").json()["orders"]
    assert listed[0]["customer"]["resource"]["id"] == 1
    assert listed[2]["customer"] is False  # a guest order
    assert listed[0]["number"] == "ORD00101" and listed[0]["priceIncl"] == 24.95
    assert [o["id"] for o in call(shop, "GET", "/nl/orders.json", customer=2).json()["orders"]] == [102]
    assert call(shop, "GET", "/nl/shop.json").json()["shop"]["currency"]["shortcode"] == "EUR"


def test_a_metafield_post_adds_a_row_even_when_the_key_exists(shop: Sandboxes) -> None:
    before = shop.customer("lightspeed", "1")
    body = {"customerMetafield": {"key": "crmsync_segments", "value": "friends"}}
    first = call(shop, "POST", "/nl/customers/1/metafields.json", body=body)
    second = call(shop, "POST", "/nl/customers/1/metafields.json", body=body)
    assert first.status_code == second.status_code == 201
    assert first.json()["customerMetafield"]["id"] != second.json()["customerMetafield"]["id"]
    rows = call(shop, "GET", "/nl/customers/1/metafields.json").json()["customerMetafields"]
    assert [(r["key"], r["value"]) for r in rows] == [
        ("klantenkaart", "KK-1001"),
        ("crmsync_segments", "friends"),
        ("crmsync_segments", "friends"),
    ]
    assert call(shop, "GET", "/nl/customers/1/metafields/count.json").json() == {"count": 3}
    row_id = second.json()["customerMetafield"]["id"]
    put = call(shop, "PUT", f"/nl/customers/1/metafields/{row_id}.json", body={"customerMetafield": {"value": "x"}})
    assert put.json()["customerMetafield"]["value"] == "x"
    assert call(shop, "DELETE", f"/nl/customers/1/metafields/{row_id}.json").status_code == 204
    assert call(shop, "DELETE", f"/nl/customers/1/metafields/{row_id}.json").status_code == 404
    after = shop.customer("lightspeed", "1")
    # a metafield is its own resource: the customer record, its memo and its time stay as they were
    assert {k: v for k, v in after.items() if k != "metafields"} == {
        k: v for k, v in before.items() if k != "metafields"
    }
    assert after["metafields"][0] == before["metafields"][0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": "crmsync_segments", "value": "friends"}, "Invalid payload: expected a 'customerMetafield' object"),
        ({"customerMetafield": {"key": "a", "value": "b", "color": "red"}}, "Unknown field: color"),
        ({"customerMetafield": {"value": "b"}}, "Missing field: key"),
        ({"customerMetafield": {"key": "", "value": "b"}}, "Invalid key: text of 1 to 255 characters"),
        ({"customerMetafield": {"key": "a", "value": "x" * 256}}, "Invalid value: text of at most 255 characters"),
        ({"customerMetafield": {"key": "a", "value": 7}}, "Invalid value: text of at most 255 characters"),
    ],
)
def test_metafield_bodies_are_checked(shop: Sandboxes, body: dict[str, Any], message: str) -> None:
    response = call(shop, "POST", "/nl/customers/1/metafields.json", body=body)
    assert response.status_code == 400
    assert response.json() == error(400, "POST", "/nl/customers/1/metafields.json", message)
    assert len(shop.customer("lightspeed", "1")["metafields"]) == 1


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_all_three_windows_are_enforced_with_headers_and_429() -> None:
    clock = Clock()
    # 3 per 5 minutes, 5 per hour, 6 per day, with the time scaled 100x: 3 s, 36 s, 864 s.
    windows = [Window(3, 300), Window(5, 3600), Window(6, 86400)]
    app = LightspeedSandbox({"customers": customers(1)}, rate_limits=windows, time_scale=100, clock=clock)
    with SandboxServer(app) as server:

        def get() -> requests.Response:
            return requests.get(f"{server.url}/nl/customers/1.json", auth=AUTH, timeout=5)

        first = get()
        assert first.headers["X-RateLimit-Limit"] == "3/5/6"
        assert (first.headers["X-RateLimit-Remaining"], first.headers["X-RateLimit-Reset"]) == ("2/4/5", "3/36/864")
        assert [get().status_code for _ in range(3)] == [200, 200, 429]
        refused = get()
        assert refused.status_code == 429
        assert refused.json()["error"]["message"] == "Too many requests"
        assert refused.headers["X-RateLimit-Remaining"] == "0/2/3"
        clock.now = 2.5
        assert get().headers["X-RateLimit-Reset"] == "0.5/33.5/861.5"  # still refused: fixed windows
        clock.now = 3.0  # the 5-minute window starts afresh; the hour has 2 left
        assert [get().status_code for _ in range(3)] == [200, 200, 429]
        assert get().headers["X-RateLimit-Remaining"] == "1/0/1"
        clock.now = 36.0  # the hour starts afresh; the day has 1 left
        assert [get().status_code for _ in range(2)] == [200, 429]
        assert get().headers["X-RateLimit-Remaining"] == "2/4/0"
        clock.now = 864.0
        assert get().status_code == 200
    assert app.stats.throttled == 7


def test_twenty_requests_a_second_per_key_are_enforced_but_not_reported_in_the_headers() -> None:
    assert [(w.requests, w.per_seconds) for w in published_limits()] == [
        (300, 300),
        (3000, 3600),
        (12000, 86400),
        (20, 1),
    ]
    clock = Clock()
    app = LightspeedSandbox({"customers": customers(1)}, clock=clock)  # the published limits, unscaled
    with SandboxServer(app) as server:

        def get() -> requests.Response:
            return requests.get(f"{server.url}/nl/customers/1.json", auth=AUTH, timeout=5)

        assert [get().status_code for _ in range(20)] == [200] * 20
        refused = get()
        assert refused.status_code == 429
        assert refused.headers["X-RateLimit-Limit"] == "300/3000/12000"  # three windows, as Lightspeed reports
        assert refused.headers["X-RateLimit-Remaining"] == "280/2980/11980"
        clock.now = 1.0  # the next second
        assert get().status_code == 200


def test_windows_are_scaled_by_the_time_scale(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture({"lightspeed": {"customers": customers(1)}}, time_scale=1000)
    response = call(shop, "GET", "/nl/customers.json")
    assert response.headers["X-RateLimit-Limit"] == "300/3000/12000"
    assert response.headers["X-RateLimit-Remaining"] == "299/2999/11999"
    resets = [float(part) for part in response.headers["X-RateLimit-Reset"].split("/")]
    assert 0 < resets[0] <= 0.3 and 0 < resets[1] <= 3.6 and 0 < resets[2] <= 86.4
    assert shop.app("lightspeed").client_settings()["rate_limit"] == [
        {"requests": 300, "per_seconds": 0.3},
        {"requests": 3000, "per_seconds": 3.6},
        {"requests": 12000, "per_seconds": 86.4},
        {"requests": 20, "per_seconds": 0.001},  # 20 a second, not in the headers
    ]
    report = call(shop, "GET", "/nl/account/ratelimit.json").json()["accountRatelimit"]
    assert set(report) == {"limit5Min", "limitHour", "limitDay"}
    assert report["limitDay"]["limit"] == 12000 and report["limitDay"]["remaining"] == 11998


def test_the_vendor_throttle_fault_is_lightspeeds_own_429(shop: Sandboxes) -> None:
    shop.fault("lightspeed", match="GET /nl/customers", fault="vendor-throttle", retry_after=2)
    refused = call(shop, "GET", "/nl/customers.json")
    assert refused.status_code == 429 and "Retry-After" not in refused.headers
    assert refused.headers["X-RateLimit-Remaining"].split("/")[0] == "0"
    assert refused.headers["X-RateLimit-Reset"].split("/")[0] == "2"
    assert call(shop, "GET", "/nl/customers.json").status_code == 200
    assert shop.stats("lightspeed")["throttled"] == 1


def test_test_routes_show_and_edit_customers_as_a_merchant_would(shop: Sandboxes) -> None:
    stored = shop.customer("lightspeed", "1")
    assert stored["memo"] == "Belt liever dan dat ze mailt."
    assert [(m["key"], m["value"]) for m in stored["metafields"]] == [("klantenkaart", "KK-1001")]
    patched = shop.patch_customer(
        "lightspeed", "1", {"firstname": "Anna", "metafields": [{"key": "punten", "value": "120"}]}
    )
    assert patched["firstname"] == "Anna" and patched["memo"] == stored["memo"]
    assert [m["key"] for m in patched["metafields"]] == ["klantenkaart", "punten"]
    assert parse_timestamp(patched["updatedAt"]) > parse_timestamp(stored["updatedAt"])
    assert requests.get(f"{shop.url('lightspeed')}/_sandbox/customers/404", timeout=5).status_code == 404
    assert shop.stats("lightspeed")["requests"] == {}  # test routes are not counted


def test_fixture_with_wrong_structure_names_file_and_item(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    cases = [
        ({"customers": [{"id": "7"}]}, r"lightspeed/customers.json item 0: id must be a positive integer"),
        ({"customers": [{"id": 1}, {"id": 2, "metafields": [{"key": 1}]}]}, r"customers.json item 1: metafields"),
        ({"customers": [{"id": 1, "email": ["a@b.nl"]}]}, r"customers.json item 0: email must be text"),
        ({"customers": [{"id": 1, "updatedAt": "gisteren"}]}, r"item 0: updatedAt is not an ISO-8601 date"),
        ({"orders": [{"id": 1, "priceIncl": "29.95"}]}, r"lightspeed/orders.json item 0: priceIncl must be a number"),
        ({"orders": [{"id": 1, "priceIncl": 5, "customer": "7"}]}, r"orders.json item 0: customer must be"),
    ]
    for data, message in cases:
        with pytest.raises(FixtureError, match=message):
            start_sandboxes_fixture({"lightspeed": data})


def test_messy_but_well_typed_data_loads_as_it_is(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    messy = {
        "id": 5,
        "email": "  J.de Vries@Gmail.com",
        "phone": "+31 (0)6 1234 5678",
        "firstname": False,
        "favouriteColour": "groen",
        "metafields": {"resource": {"id": False, "url": "customers/5/metafields"}},  # a stub from an export
    }
    shop = start_sandboxes_fixture({"lightspeed": {"customers": [messy], "orders": [{"id": 9, "priceIncl": 1}]}})
    stored = shop.customer("lightspeed", "5")
    assert stored["email"] == "  J.de Vries@Gmail.com" and stored["phone"] == "+31 (0)6 1234 5678"
    assert stored["firstname"] is False and stored["favouriteColour"] == "groen" and stored["metafields"] == []
    assert call(shop, "GET", "/nl/orders/9.json").json()["order"]["customer"] is False


def test_a_scaled_reset_rounds_up_to_the_millisecond_and_is_never_zero() -> None:
    """A window ending within half a millisecond formatted as "0" read as "no wait" (a flaky
    `0 < reset` in the test above)."""
    from connectors.lightspeed.budget import format_triple

    assert format_triple([0.0001, 0.2991, 3.6], whole=False) == "0.001/0.3/3.6"
    assert format_triple([0.0001, 2.2], whole=True) == "1/3"
