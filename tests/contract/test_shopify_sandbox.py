"""The Shopify sandbox follows the vendor's contract, refusals included (each proven here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.shopify.sandbox import DEFAULT_TOKEN
from tests.kit import Sandboxes, requests_ended, send_half_a_body, wait_until

GRAPHQL = "/admin/api/2026-10/graphql.json"


def customers(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"gid://shopify/Customer/{i}",
            "firstName": f"Klant{i}",
            "lastName": "de Vries",
            "defaultEmailAddress": {"emailAddress": f"klant{i}@example.nl"},
            "tags": ["vip"] if i % 2 else [],
            "updatedAt": f"2026-{1 + (i - 1) // 28:02d}-{1 + (i - 1) % 28:02d}T10:00:00Z",
        }
        for i in range(1, n + 1)
    ]


@pytest.fixture
def shop(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    orders = [
        {
            "id": "gid://shopify/Order/1",
            "customer": {"id": "gid://shopify/Customer/1"},
            "totalPriceSet": {"shopMoney": {"amount": "25.00", "currencyCode": "EUR"}},
            "createdAt": "2026-02-01T10:00:00Z",
        }
    ]
    return start_sandboxes_fixture({"shopify": {"customers": customers(12), "orders": orders}})


def gql(shop: Sandboxes, query: str, variables: dict[str, Any] | None = None, token: str | None = DEFAULT_TOKEN) -> Any:
    headers = {"X-Shopify-Access-Token": token} if token is not None else {}
    return requests.post(
        shop.url("shopify") + GRAPHQL, json={"query": query, "variables": variables or {}}, headers=headers, timeout=5
    )


def test_missing_or_wrong_token_is_refused(shop: Sandboxes) -> None:
    for token in (None, "shpat_wrong"):
        response = gql(shop, "{ shop { name } }", token=token)
        assert response.status_code == 401
        assert response.json() == {
            "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
        }


def test_unknown_field_is_refused_in_shopify_words(shop: Sandboxes) -> None:
    body = gql(shop, "{ customers(first: 1) { nodes { id favouriteColour } } }").json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["message"] == "Field 'favouriteColour' doesn't exist on type 'Customer'"
    assert error["extensions"] == {"code": "undefinedField", "typeName": "Customer", "fieldName": "favouriteColour"}


def test_page_size_above_250_is_refused(shop: Sandboxes) -> None:
    body = gql(shop, "{ customers(first: 251) { nodes { id } } }").json()
    assert body["data"] is None
    assert "maximum page size is 250" in body["errors"][0]["message"]


def test_garbage_cursor_is_refused(shop: Sandboxes) -> None:
    body = gql(shop, '{ customers(first: 2, after: "not-a-cursor") { nodes { id } } }').json()
    assert body["errors"][0]["message"] == "Invalid cursor for current pagination."


def test_cursor_paging_sorted_by_updated_at_with_a_filter(shop: Sandboxes) -> None:
    query = """query($after: String) { customers(first: 5, after: $after, sortKey: UPDATED_AT,
               query: "updated_at:>='2026-01-03T00:00:00Z'") {
               pageInfo { hasNextPage endCursor } nodes { id updatedAt } } }"""
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        data = gql(shop, query, {"after": after}).json()["data"]["customers"]
        seen.extend(node["id"] for node in data["nodes"])
        pages += 1
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert seen == [f"gid://shopify/Customer/{i}" for i in range(3, 13)]
    assert pages == 2  # 10 matches, exactly two full pages: the second says there is no next


def test_calculated_cost_is_reported_and_unused_slots_refunded(shop: Sandboxes) -> None:
    body = gql(shop, "{ customers(first: 100) { nodes { id defaultEmailAddress { emailAddress } } } }").json()
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 2 + 100 * 2
    assert cost["actualQueryCost"] == 2 + 12 * 2  # only 12 customers exist
    assert set(cost["throttleStatus"]) == {"maximumAvailable", "currentlyAvailable", "restoreRate"}


def test_query_over_the_single_query_cap_is_refused(shop: Sandboxes) -> None:
    body = gql(
        shop,
        "{ customers(first: 250) { nodes { id defaultAddress { city } defaultEmailAddress "
        '{ emailAddress } lastOrder { id } metafield(key: "x") { value } } } }',
    ).json()
    assert body["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


def test_bucket_empties_and_answers_throttled(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture(
        {"shopify": {"customers": customers(100)}}, options={"shopify": {"bucket_size": 300, "restore_rate": 1}}
    )
    query = "{ customers(first: 100) { nodes { id defaultEmailAddress { emailAddress } } } }"  # costs 202
    assert "data" in gql(shop, query).json()
    throttled = gql(shop, query)
    assert throttled.status_code == 200
    body = throttled.json()
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    assert shop.stats("shopify")["throttled"] == 1


def test_tags_add_merges_case_insensitively_and_remove_takes_only_named(shop: Sandboxes) -> None:
    gid = "gid://shopify/Customer/1"
    mutation = """mutation($id: ID!) { a: tagsAdd(id: $id, tags: ["VIP", "crmsync:friends"]) { userErrors { message } }
                  r: tagsRemove(id: $id, tags: ["crmsync:nothing-here"]) { userErrors { message } } }"""
    body = gql(shop, mutation, {"id": gid}).json()
    assert body["data"]["a"]["userErrors"] == [] and body["data"]["r"]["userErrors"] == []
    assert shop.customer("shopify", gid)["tags"] == ["vip", "crmsync:friends"]
    body = gql(shop, 'mutation { tagsAdd(id: "gid://shopify/Customer/999", tags: ["x"]) { userErrors { message } } }')
    assert body.json()["data"]["tagsAdd"]["userErrors"][0]["message"] == "Resource not found"


def test_metafields_set_is_atomic_and_validates(shop: Sandboxes) -> None:
    mutation = """mutation($mf: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $mf) {
                  metafields { key value } userErrors { field message code elementIndex } } }"""
    good = {
        "ownerId": "gid://shopify/Customer/2",
        "namespace": "crmsync",
        "key": "loyalty_tier",
        "type": "single_line_text_field",
        "value": "gold",
    }
    blank = dict(good, ownerId="gid://shopify/Customer/3", value="")
    result = gql(shop, mutation, {"mf": [good, blank]}).json()["data"]["metafieldsSet"]
    assert result["userErrors"] == [
        {"field": ["metafields", "1", "value"], "message": "Value can't be blank.", "code": "BLANK", "elementIndex": 1}
    ]
    assert shop.customer("shopify", "2")["metafields"] == []  # nothing written: atomic
    too_many = [dict(good, key=f"k{i:02d}") for i in range(26)]
    body = gql(shop, mutation, {"mf": too_many}).json()
    assert body["errors"][0]["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    ok = gql(shop, mutation, {"mf": [good]}).json()["data"]["metafieldsSet"]
    assert ok["userErrors"] == [] and ok["metafields"] == [{"key": "loyalty_tier", "value": "gold"}]


def test_test_routes(shop: Sandboxes) -> None:
    assert shop.customer("shopify", "gid://shopify/Customer/3")["numberOfOrders"] == "0"
    assert shop.customer("shopify", "1")["amountSpent"] == {"amount": "25.00", "currencyCode": "EUR"}
    assert requests.get(shop.url("shopify") + "/_sandbox/customers/424242", timeout=5).status_code == 404
    patched = shop.patch_customer(
        "shopify",
        "3",
        {
            "tags": ["handmatig"],
            "metafields": [{"namespace": "custom", "key": "note", "type": "single_line_text_field", "value": "hi"}],
        },
    )
    assert patched["tags"] == ["handmatig"] and patched["updatedAt"] > "2026-01-03T10:00:00Z"
    assert patched["metafields"] == [
        {"namespace": "custom", "key": "note", "type": "single_line_text_field", "value": "hi"}
    ]
    shop.reset_stats()
    gql(shop, "{ shop { name } }")
    gql(shop, 'mutation { tagsRemove(id: "gid://shopify/Customer/3", tags: ["x"]) { userErrors { message } } }')
    stats = shop.stats("shopify")
    assert (stats["reads"], stats["writes"], stats["requests"]) == (1, 1, {"POST /admin/api/<version>/graphql.json": 2})


def test_fixture_with_wrong_structure_names_file_and_item(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    from connectors.sandbox import FixtureError

    with pytest.raises(FixtureError, match=r"shopify/customers.json item 1: id must look like"):
        start_sandboxes_fixture({"shopify": {"customers": [customers(1)[0], {"id": 7}]}})
    with pytest.raises(FixtureError, match=r"shopify/orders.json item 0: totalPriceSet"):
        start_sandboxes_fixture({"shopify": {"orders": [{"id": "gid://shopify/Order/1", "totalPriceSet": "12"}]}})


def test_a_client_gone_mid_body_ends_its_request_in_the_log(shop: Sandboxes) -> None:
    """Shopify's sandbox parses the GraphQL body to tell a mutation from a query, before any
    handler and again when it logs the answer: a client gone mid-body still ends its request."""
    headers = {"X-Shopify-Access-Token": DEFAULT_TOKEN, "Content-Type": "application/json"}
    send_half_a_body(shop.url("shopify"), GRAPHQL, headers, b'{"query": "mutation { tagsAdd(id: ')
    app = shop.app("shopify")
    assert wait_until(lambda: bool(app.stats.log) and requests_ended(app), timeout=10)
    assert app.stats.log[-1]["status"] == 400
