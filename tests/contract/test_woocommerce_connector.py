"""The WooCommerce connector against its sandbox, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from connectors.errors import AuthError
from mapping.model import RemoteState, WriteBack
from tests.contract.test_woocommerce_sandbox import customers
from tests.kit import Sandboxes, make_connector


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


@pytest.fixture
def woo(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"woocommerce": {"customers": customers(30), "orders": orders(25)}})


def test_customer_scan_reads_exactly_the_pages_there_are(woo: Sandboxes) -> None:
    connector = make_connector(woo, "woocommerce", page_size=10)
    pages = list(connector.read_contacts(None))
    assert [len(p.records) for p in pages] == [10, 10, 10]
    assert [p.checkpoint for p in pages] == [{"page": 2}, {"page": 3}, {}]  # a finished scan starts over
    assert woo.stats("woocommerce")["requests"]["GET /wp-json/wc/v3/customers"] == 3  # no 4th, empty request
    resumed = list(connector.read_contacts({"page": 3}))
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
