"""The WooCommerce sandbox follows the REST v3 contract, refusals included (each proven here)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.woocommerce.sandbox import DEFAULT_KEY, DEFAULT_SECRET
from tests.kit import Sandboxes, requests_ended, send_half_a_body, wait_until

API = "/wp-json/wc/v3"
AUTH = (DEFAULT_KEY, DEFAULT_SECRET)


def customers(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "email": f"klant{i}@example.nl",
            "first_name": f"Klant{i}",
            "last_name": "Jansen",
            "date_created_gmt": f"2025-06-{1 + i % 28:02d}T08:00:00",
            "meta_data": [{"key": "newsletter_optin", "value": "yes"}],
        }
        for i in range(1, n + 1)
    ]


def orders(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": 100 + i,
            "status": "completed",
            "total": "10.00",
            "customer_id": 1,
            "date_created_gmt": "2026-01-01T00:00:00",
            "date_modified_gmt": f"2026-01-01T00:00:{i:02d}",
        }
        for i in range(1, n + 1)
    ]


@pytest.fixture
def woo(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"woocommerce": {"customers": customers(25), "orders": orders(12)}})


def get(woo: Sandboxes, path: str, auth: Any = AUTH, **params: Any) -> requests.Response:
    return requests.get(woo.url("woocommerce") + API + path, params=params, auth=auth, timeout=5)


def post(woo: Sandboxes, path: str, body: Any) -> requests.Response:
    return requests.post(woo.url("woocommerce") + API + path, json=body, auth=AUTH, timeout=5)


def test_per_page_above_100_is_refused_in_the_wordpress_shape(woo: Sandboxes) -> None:
    response = get(woo, "/customers", per_page=101)
    assert response.status_code == 400
    assert response.json() == {
        "code": "rest_invalid_param",
        "message": "Invalid parameter(s): per_page",
        "data": {"status": 400, "params": {"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"}},
    }
    assert get(woo, "/customers", page=0).status_code == 400
    assert get(woo, "/orders", orderby="price").json()["code"] == "rest_invalid_param"


def test_an_empty_or_fractional_page_parameter_is_no_integer(woo: Sandboxes) -> None:
    for params in ({"per_page": ""}, {"page": ""}, {"page": "1.5"}):
        refused = get(woo, "/customers", **params)
        name = next(iter(params))
        assert (refused.status_code, refused.json()["data"]["params"]) == (
            400,
            {name: f"{name} is not of type integer."},
        )


def test_credentials_are_checked(woo: Sandboxes) -> None:
    missing = get(woo, "/customers", auth=None)
    assert (missing.status_code, missing.json()["code"]) == (401, "woocommerce_rest_cannot_view")
    # an unknown key sets no error over HTTPS (WC_REST_Authentication::perform_basic_authentication):
    # the request is anonymous, as if no key had been sent
    wrong_key = get(woo, "/customers", auth=("ck_wrong", DEFAULT_SECRET))
    assert (wrong_key.status_code, wrong_key.json()["code"]) == (401, "woocommerce_rest_cannot_view")
    wrong_secret = get(woo, "/customers", auth=(DEFAULT_KEY, "cs_wrong"))
    assert (wrong_secret.status_code, wrong_secret.json()["message"]) == (401, "Consumer secret is invalid.")
    # the documented fallback for hosts that strip the Authorization header
    by_query = get(woo, "/customers", auth=None, consumer_key=DEFAULT_KEY, consumer_secret=DEFAULT_SECRET)
    assert by_query.status_code == 200


def test_paging_headers_and_a_page_past_the_end(woo: Sandboxes) -> None:
    first = get(woo, "/customers", per_page=10, orderby="id", order="asc")
    assert first.headers["X-WP-Total"] == "25" and first.headers["X-WP-TotalPages"] == "3"
    assert 'rel="next"' in first.headers["Link"] and 'rel="prev"' not in first.headers["Link"]
    assert [c["id"] for c in first.json()] == list(range(1, 11))
    last = get(woo, "/customers", per_page=10, page=3, orderby="id", order="asc")
    assert [c["id"] for c in last.json()] == list(range(21, 26))
    past = get(woo, "/customers", per_page=10, page=4)
    assert (past.status_code, past.json()) == (200, [])  # WooCommerce answers an empty page, not an error


def test_modified_after_is_exclusive_and_sorted_with_id_tiebreak(woo: Sandboxes) -> None:
    params = {"modified_after": "2026-01-01T00:00:05", "dates_are_gmt": "true", "orderby": "modified", "order": "asc"}
    found = get(woo, "/orders", **params).json()
    assert [o["id"] for o in found] == [106, 107, 108, 109, 110, 111, 112]  # 105 itself is excluded
    # without dates_are_gmt the time is the shop's local time (one hour ahead here)
    local = get(woo, "/orders", modified_after="2026-01-01T01:00:05", orderby="modified", order="asc").json()
    assert [o["id"] for o in local][:1] == [106]
    # a bound naming its zone is first turned into the site's wall-clock time (Amsterdam: 01:00:05),
    # then compared with the GMT column all the same (WP_Date_Query::build_mysql_datetime)
    zoned = get(woo, "/orders", **{**params, "modified_after": "2026-01-01T00:00:05Z"}).json()
    assert zoned == []
    utc = requests.patch(f"{woo.url('woocommerce')}/_sandbox/app", json={"site_timezone": "UTC"}, timeout=5)
    assert utc.status_code == 200
    assert [o["id"] for o in get(woo, "/orders", **{**params, "modified_after": "2026-01-01T00:00:05Z"}).json()][
        :1
    ] == [106]


def test_batch_limit_and_per_item_errors(woo: Sandboxes) -> None:
    too_big = post(woo, "/customers/batch", {"update": [{"id": i} for i in range(101)]})
    assert too_big.status_code == 413
    assert too_big.json()["code"] == "woocommerce_rest_request_entity_too_large"
    mixed = post(
        woo,
        "/customers/batch",
        {"update": [{"id": 1, "meta_data": [{"key": "crmsync_segments", "value": "friends"}]}, {"id": 999}]},
    ).json()["update"]
    assert mixed[0]["id"] == 1 and "error" not in mixed[0]
    assert mixed[1] == {
        "id": 999,
        "error": {"code": "woocommerce_rest_invalid_id", "message": "Invalid resource ID.", "data": {"status": 400}},
    }


def test_meta_updates_touch_only_the_named_keys(woo: Sandboxes) -> None:
    before = woo.customer("woocommerce", "2")
    post(
        woo,
        "/customers/batch",
        {"update": [{"id": 2, "meta_data": [{"key": "crmsync_loyalty_tier", "value": "gold"}]}]},
    )
    post(
        woo,
        "/customers/batch",
        {"update": [{"id": 2, "meta_data": [{"key": "crmsync_loyalty_tier", "value": "silver"}]}]},
    )
    after = woo.customer("woocommerce", "2")
    meta = {m["key"]: m["value"] for m in after["meta_data"]}
    assert meta == {"newsletter_optin": "yes", "crmsync_loyalty_tier": "silver"}
    assert len(after["meta_data"]) == 2  # an upsert by key, not a second row
    assert after["meta_data"][0] == before["meta_data"][0]
    assert after["date_modified_gmt"] >= before["date_modified_gmt"]
    assert (
        requests.put(woo.url("woocommerce") + API + "/customers/424242", json={}, auth=AUTH, timeout=5).json()["code"]
        == "woocommerce_rest_invalid_id"
    )


def app_settings(woo: Sandboxes, method: str = "GET", **changes: Any) -> requests.Response:
    return requests.request(method, woo.url("woocommerce") + "/_sandbox/app", json=changes or None, timeout=5)


def test_key_permissions_are_checked_before_routing_as_woocommerce_does(woo: Sandboxes) -> None:
    assert app_settings(woo).json()["key_permissions"] == "read_write"
    assert app_settings(woo, "PATCH", key_permissions="read").json()["key_permissions"] == "read"
    assert app_settings(woo, "PATCH", key_permissions="admin").status_code == 400
    assert app_settings(woo).json()["key_permissions"] == "read"
    before = woo.customer("woocommerce", "2")
    write = {"update": [{"id": 2, "meta_data": [{"key": "crmsync_loyalty_tier", "value": "gold"}]}]}
    refused = {
        "code": "woocommerce_rest_authentication_error",
        "message": "The API key provided does not have write permissions.",
        "data": {"status": 401},
    }
    # a read-only key reads, and its write is refused with WooCommerce's 401, whether the route exists or not
    assert get(woo, "/customers").status_code == 200
    batch = post(woo, "/customers/batch", write)
    assert (batch.status_code, batch.json()) == (401, refused)
    probe = post(woo, "/crmsync-permission-probe", {})
    assert (probe.status_code, probe.json()) == (401, refused)
    options = requests.options(woo.url("woocommerce") + API + "/customers", auth=AUTH, timeout=5)
    assert options.status_code != 401  # OPTIONS is never checked
    assert woo.customer("woocommerce", "2") == before
    # a key with write rights passes the check: an unknown route is WordPress's 404, nothing dispatched
    assert app_settings(woo, "PATCH", key_permissions="read_write").status_code == 200
    writes_before = woo.stats("woocommerce")["writes"]
    probe = post(woo, "/crmsync-permission-probe", {})
    assert (probe.status_code, probe.json()) == (
        404,
        {
            "code": "rest_no_route",
            "message": "No route was found matching the URL and request method.",
            "data": {"status": 404},
        },
    )
    assert woo.stats("woocommerce")["writes"] == writes_before  # it reached no endpoint
    assert woo.customer("woocommerce", "2") == before
    # a write-only key cannot read
    app_settings(woo, "PATCH", key_permissions="write")
    listing = get(woo, "/customers")
    assert (listing.status_code, listing.json()["message"]) == (
        401,
        "The API key provided does not have read permissions.",
    )
    assert post(woo, "/crmsync-permission-probe", {}).status_code == 404
    # the key is checked first: wrong credentials on an unknown route are still a credentials error
    wrong = requests.post(woo.url("woocommerce") + API + "/nowhere", json={}, auth=(DEFAULT_KEY, "cs_x"), timeout=5)
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Consumer secret is invalid.")
    # no credentials at all: no key check, so routing answers (WordPress's own 404)
    anonymous = requests.post(woo.url("woocommerce") + API + "/nowhere", json={}, timeout=5)
    assert (anonymous.status_code, anonymous.json()["code"]) == (404, "rest_no_route")


def test_the_key_permission_can_be_set_when_the_sandbox_starts(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    woo = start_sandboxes_fixture(
        {"woocommerce": {"customers": customers(1)}}, options={"woocommerce": {"key_permissions": "read"}}
    )
    assert app_settings(woo).json()["key_permissions"] == "read"
    assert post(woo, "/customers/1", {"first_name": "X"}).status_code == 401
    assert woo.customer("woocommerce", "1")["first_name"] == "Klant1"


def test_fixture_with_wrong_structure_names_file_and_item(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    from connectors.sandbox import FixtureError

    with pytest.raises(FixtureError, match=r"woocommerce/customers.json item 0: id must be a positive integer"):
        start_sandboxes_fixture({"woocommerce": {"customers": [{"id": "7"}]}})
    with pytest.raises(FixtureError, match=r"woocommerce/orders.json item 0: total"):
        start_sandboxes_fixture({"woocommerce": {"orders": [{"id": 1, "total": None}]}})


def test_messy_but_well_typed_data_loads_as_it_is(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    messy = {"id": 5, "email": "  J.de Vries@Gmail.com", "billing": {"phone": "+31 (0)6 1234 5678"}, "extra": [1]}
    woo = start_sandboxes_fixture({"woocommerce": {"customers": [messy]}})
    stored = woo.customer("woocommerce", "5")
    assert stored["email"] == "  J.de Vries@Gmail.com" and stored["billing"]["phone"] == "+31 (0)6 1234 5678"
    assert stored["extra"] == [1]


def test_a_client_gone_mid_body_ends_its_request_in_the_log(woo: Sandboxes) -> None:
    """A crmsync killed while it sends a batch leaves a request whose body never arrives: the
    sandbox changes nothing and closes the request's log entry, so the crash tests, which wait
    until no request is in flight, do not wait for it forever."""
    token = base64.b64encode(f"{DEFAULT_KEY}:{DEFAULT_SECRET}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    send_half_a_body(woo.url("woocommerce"), f"{API}/customers/batch", headers, b'{"update": [{"id": 1')
    app = woo.app("woocommerce")
    assert wait_until(lambda: bool(app.stats.log) and requests_ended(app), timeout=10)
    assert app.stats.log[-1]["status"] == 400
    assert get(woo, "/customers/1").json()["first_name"] == "Klant1"  # nothing was written


def test_every_order_lists_its_refunds(woo: Sandboxes) -> None:
    """WooCommerce's order controllers always add `refunds` (each total negative): an order with
    none lists an empty one, as the connector's `refunded` field reads it."""
    listed = get(woo, "/orders", per_page=20).json()
    assert listed and all(order["refunds"] == [] for order in listed)
    one = get(woo, f"/orders/{listed[0]['id']}").json()
    assert one["refunds"] == []
