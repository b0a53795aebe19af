"""Shopify bulk write-back against the emulator, over real HTTP: staged upload, bulk mutations,
polling, results by line number; and what the emulated Shopify refuses."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from connectors.errors import ApiError, PartialWrite
from connectors.http import Cancelled
from connectors.shopify.bulk import LINE_DOCUMENTS, RUN, STAGE, BulkReader, BulkWriter, line_files
from connectors.shopify.queries import BULK_CUSTOMERS_QUERY
from connectors.shopify.sandbox import admin_schema
from mapping.model import RemoteState, WriteBack
from tests.kit import Sandboxes, make_connector, wait_until

TIER = "crmsync.loyalty_tier"


def no_guard() -> None:
    """The writer lock cannot be lost here."""


def customers(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(1, n + 1):
        tags = ["vip"] if i % 3 == 0 else []
        if i % 4 == 0:
            tags.append("crmsync:old")
        metafields = (
            [{"namespace": "crmsync", "key": "loyalty_tier", "type": "single_line_text_field", "value": "bronze"}]
            if i % 5 == 0
            else []
        )
        out.append(
            {
                "id": f"gid://shopify/Customer/{i}",
                "firstName": "Klant",
                "lastName": str(i),
                "defaultEmailAddress": {"emailAddress": f"klant{i}@example.nl"},
                "tags": tags,
                "metafields": metafields,
                "updatedAt": "2026-01-01T00:00:00Z",
            }
        )
    return out


def changes_for(n: int) -> list[WriteBack]:
    """Every kind of change: tags added and removed, tiers set and cleared."""
    out = []
    for i in range(1, n + 1):
        gid = f"gid://shopify/Customer/{i}"
        add = (f"crmsync:seg-{i % 7}",) if i % 2 else ()
        remove = ("crmsync:old",) if i % 4 == 0 else ()
        fields: dict[str, str | None] = {}
        if i % 5 == 0:
            fields[TIER] = None
        elif i % 3 == 1:
            fields[TIER] = "gold" if i % 2 else "silver"
        if add or remove or fields:
            out.append(WriteBack("shopify", gid, add, remove, fields, RemoteState()))
    return out


def vendor_state(shop: Sandboxes, n: int) -> dict[str, Any]:
    state = {}
    for i in range(1, n + 1):
        stored = shop.customer("shopify", str(i))
        state[i] = (
            sorted(stored["tags"]),
            sorted((m["namespace"], m["key"], m["value"]) for m in stored["metafields"]),
        )
    return state


@pytest.fixture
def two_shops(start_sandboxes_fixture: Callable[..., Sandboxes]) -> tuple[Sandboxes, Sandboxes]:
    return (
        start_sandboxes_fixture({"shopify": {"customers": customers(80)}}),
        start_sandboxes_fixture({"shopify": {"customers": customers(80)}}),
    )


def graphql(shop: Sandboxes, query: str, variables: dict[str, Any], version: str = "2026-10") -> dict[str, Any]:
    response = requests.post(
        f"{shop.url('shopify')}/admin/api/{version}/graphql.json",
        json={"query": query, "variables": variables},
        headers={"X-Shopify-Access-Token": shop.app("shopify").access_token},
        timeout=10,
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def set_app(shop: Sandboxes, **settings: Any) -> None:
    requests.patch(f"{shop.url('shopify')}/_sandbox/app", json=settings, timeout=5).raise_for_status()


@pytest.mark.parametrize("document", [STAGE, RUN, *LINE_DOCUMENTS.values()])
def test_bulk_documents_are_valid_against_the_published_schema(document: str) -> None:
    from graphql import parse, validate

    assert validate(admin_schema(), parse(document)) == []


def test_bulk_and_paging_end_in_the_same_vendor_state(two_shops: tuple[Sandboxes, Sandboxes]) -> None:
    paged_shop, bulk_shop = two_shops
    changes = changes_for(80)
    paging = make_connector(paged_shop, "shopify")
    for start in range(0, len(changes), paging.write_batch):
        assert all(r.ok for r in paging.write(changes[start : start + paging.write_batch]))
    bulk = make_connector(bulk_shop, "shopify")
    before = vendor_state(bulk_shop, 80)
    results = bulk.write_bulk(changes, no_guard)
    assert sorted(r.record_id for r in results) == sorted(c.record_id for c in changes)
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    assert vendor_state(bulk_shop, 80) == vendor_state(paged_shop, 80)
    assert vendor_state(bulk_shop, 80) != before
    # Four files (add, remove, set, delete) in two waves (removals after additions): a staging call
    # and the runs per wave; no per-customer mutation.
    log = bulk_shop.request_log("shopify")
    mutations = [e for e in log if e["path"].endswith("graphql.json") and e["write"]]
    assert len(mutations) == (1 + 3) + (1 + 1)
    assert sum(1 for e in log if e["path"] == "/staged-uploads") == 4
    assert sum(1 for e in log if e["path"].startswith("/bulk-results/")) == 4
    paged_writes = [e for e in paged_shop.request_log("shopify") if e["write"]]
    assert len(paged_writes) == -(-len(changes) // 25)


def test_each_line_result_goes_to_its_own_customer(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(30)}})
    changes = [
        WriteBack("shopify", f"gid://shopify/Customer/{i}", ("crmsync:friends",), (), {}, RemoteState())
        for i in range(1, 31)
    ]
    changes.append(WriteBack("shopify", "gid://shopify/Customer/999", ("crmsync:friends",), (), {}, RemoteState()))
    changes.append(WriteBack("shopify", "gid://shopify/Customer/7", (), (), {TIER: "two\nlines"}, RemoteState()))
    results = {r.record_id: r for r in make_connector(shop, "shopify").write_bulk(changes, no_guard)}
    assert results["gid://shopify/Customer/999"].ok is False
    assert "not found" in results["gid://shopify/Customer/999"].message
    assert results["gid://shopify/Customer/7"].ok is False
    assert "single line" in results["gid://shopify/Customer/7"].message
    assert all(
        r.ok for rid, r in results.items() if rid not in ("gid://shopify/Customer/999", "gid://shopify/Customer/7")
    )
    # The results file comes back out of order; each customer still got its own line's answer.
    assert "crmsync:friends" in shop.customer("shopify", "30")["tags"]
    assert shop.customer("shopify", "7")["metafields"] == []


def test_the_storage_host_gets_no_admin_token_and_signed_urls_stay_out_of_logs(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(10)}})
    connector = make_connector(shop, "shopify")
    changes = [
        WriteBack("shopify", f"gid://shopify/Customer/{i}", ("crmsync:a",), (), {}, RemoteState()) for i in range(1, 11)
    ]
    with capture_logs() as events:
        assert all(r.ok for r in connector.write_bulk(changes, no_guard))
    app = shop.app("shopify")
    assert app.bulk.tokens_seen == 0
    text = repr(events)
    assert "signature" not in text and "policy" not in text and app.access_token not in text
    assert any(e["event"] == "bulk operation ended" for e in events)


def test_a_failed_operation_keeps_the_confirmed_lines_and_leaves_the_rest(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(12)}})
    set_app(shop, bulk_fail_after=5)
    changes = [
        WriteBack("shopify", f"gid://shopify/Customer/{i}", ("crmsync:a",), (), {}, RemoteState()) for i in range(1, 13)
    ]
    with pytest.raises(PartialWrite) as caught:
        make_connector(shop, "shopify").write_bulk(changes, no_guard)
    assert "failed (INTERNAL_SERVER_ERROR)" in caught.value.message
    assert sorted(r.record_id for r in caught.value.results) == [f"gid://shopify/Customer/{i}" for i in (1, 2, 3, 4, 5)]
    assert all(r.ok for r in caught.value.results)
    tagged = {i for i in range(1, 13) if "crmsync:a" in shop.customer("shopify", str(i))["tags"]}
    assert tagged == {1, 2, 3, 4, 5}


def test_tags_are_removed_only_after_they_were_added(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    """Shopify does not say two jobs changing one customer's tags at once are safe: one wave after the other."""
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(12)}})
    set_app(shop, bulk_lines_per_s=50)
    changes = [
        WriteBack("shopify", f"gid://shopify/Customer/{i}", ("crmsync:new",), ("crmsync:old",), {}, RemoteState())
        for i in range(1, 13)
    ]
    assert all(r.ok for r in make_connector(shop, "shopify", bulk_poll_max=0.1).write_bulk(changes, no_guard))
    added, removed = (shop.app("shopify").bulk.operations[n] for n in (1, 2))
    assert "tagsAdd" in added.query and "tagsRemove" in removed.query
    assert added.ended is not None and removed.started >= added.ended


def test_a_failed_tags_add_leaves_the_old_tags_on_and_only_those_customers_wait(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """The tagsAdd operation fails after 4 of 12 lines: the customers whose new tag is not on keep
    their old one (8 and 12: no second wave for them); those whose add landed lose it as planned (4)."""
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(12)}})
    set_app(shop, bulk_fail_after=4, bulk_fail_only=["tagsAdd"])
    changes = [
        WriteBack("shopify", f"gid://shopify/Customer/{i}", ("crmsync:new",), ("crmsync:old",), {}, RemoteState())
        for i in range(1, 13)
    ]
    with pytest.raises(PartialWrite) as caught:
        make_connector(shop, "shopify").write_bulk(changes, no_guard)
    assert "tagsAdd failed (INTERNAL_SERVER_ERROR)" in caught.value.message
    assert sorted(r.record_id for r in caught.value.results) == [f"gid://shopify/Customer/{i}" for i in (1, 2, 3, 4)]
    assert all(r.ok for r in caught.value.results)
    tags = {i: set(shop.customer("shopify", str(i))["tags"]) & {"crmsync:new", "crmsync:old"} for i in range(1, 13)}
    added = {i: {"crmsync:new"} for i in range(1, 5)}
    kept = {i: {"crmsync:old"} if i % 4 == 0 else set() for i in range(5, 13)}  # the fixture's old tags
    assert tags == added | kept
    [removed] = [op for op in shop.app("shopify").bulk.operations.values() if "tagsRemove" in op.query]
    assert len(removed.lines) == 4


def test_a_refused_tags_add_still_lets_the_old_tags_go(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    """A customer at Shopify's 250 tags refuses every add: held, the old segment tag would stay on
    cycle after cycle. It goes, the refusal is reported, and the next cycle's add has room."""
    full = customers(4)
    full[3]["tags"] = ["crmsync:old", *(f"merchant-{n}" for n in range(249))]
    shop = start_sandboxes_fixture({"shopify": {"customers": full}})
    change = WriteBack("shopify", "gid://shopify/Customer/4", ("crmsync:new",), ("crmsync:old",), {}, RemoteState())
    [result] = make_connector(shop, "shopify").write_bulk([change], no_guard)
    assert not result.ok and "at most 250 tags" in result.message
    tags = shop.customer("shopify", "4")["tags"]
    assert "crmsync:old" not in tags and "crmsync:new" not in tags and len(tags) == 249


def test_a_refused_tier_does_not_hold_the_tags_back(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    """The tier metafield says nothing of the tags: its refusal is reported, and the customer's
    segment tags still move (old off, new on), as a page-by-page write does."""
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(8)}})
    changes = [
        WriteBack(
            "shopify", f"gid://shopify/Customer/{i}", ("crmsync:new",), ("crmsync:old",), {TIER: tier}, RemoteState()
        )
        for i, tier in ((4, "gold\nx"), (8, "gold"))
    ]
    results = {r.record_id: r for r in make_connector(shop, "shopify").write_bulk(changes, no_guard)}
    refused, written = results["gid://shopify/Customer/4"], results["gid://shopify/Customer/8"]
    assert not refused.ok and refused.message and written.ok
    for i in (4, 8):
        assert {"crmsync:new", "crmsync:old"} & set(shop.customer("shopify", str(i))["tags"]) == {"crmsync:new"}


def test_writes_are_held_while_a_bulk_mutation_of_an_earlier_cycle_runs(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """A cycle stopped while its operation ran leaves it running at Shopify: the next cycle's plan
    was made from a shop it is still changing."""
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(10)}})
    set_app(shop, bulk_lines_per_s=20)  # ten lines: half a second
    connector = make_connector(shop, "shopify", bulk_poll_max=0.2)
    assert connector.writes_held() is None
    writer = BulkWriter("shopify", *connector._bulk_kit())
    [left] = line_files(
        [
            WriteBack("shopify", f"gid://shopify/Customer/{i}", ("crmsync:left",), (), {}, RemoteState())
            for i in range(1, 11)
        ],
        TIER,
    )
    [path] = writer.stage([left])
    orphan = writer.run_file(left, path)
    held = connector.writes_held()
    assert held is not None and orphan.id in held and "still running" in held
    assert make_connector(shop, "shopify", bulk_write_threshold=0).writes_held() is None  # bulk off: not asked
    assert wait_until(lambda: connector.writes_held() is None, timeout=20)
    # Another app's operations, or crmsync's finished ones, hold nothing.
    assert shop.app("shopify").bulk.operations[1].status == "COMPLETED"


def test_a_bulk_read_is_waited_for_days_and_a_bulk_write_for_a_day(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """Shopify lets a bulk query run 10 days and a mutation 24 hours (the bulk guides): a big
    store's export that takes two days is still read, and no wait outlives Shopify's own limit."""
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(3)}})
    set_app(shop, bulk_queries_held=True, bulk_lines_per_s=1e-9)  # neither ever ends
    connector = make_connector(shop, "shopify")
    send, storage, _ = connector._bulk_kit()
    now = [0.0]

    def sleep(seconds: float) -> None:  # the waits pass on a clock of the test's own
        now[0] += seconds

    reader = BulkReader("shopify", send, storage, sleep, poll_max_s=6 * 3600, clock=lambda: now[0])
    with pytest.raises(ApiError, match="still running"):
        reader.read("customers", BULK_CUSTOMERS_QUERY)
    assert 10 * 86400 < now[0] < 10 * 86400 + 8 * 3600  # past two days, gone soon after ten
    now[0] = 0.0
    writer = BulkWriter("shopify", send, storage, sleep, poll_max_s=6 * 3600, clock=lambda: now[0])
    with pytest.raises(ApiError, match="still running"):
        writer.write(changes_for(3), TIER, no_guard)
    assert 24 * 3600 < now[0] < 32 * 3600
    set_app(shop, bulk_queries_held=False)
    _, nodes = BulkReader("shopify", send, storage, sleep).read("customers", BULK_CUSTOMERS_QUERY)
    assert len(nodes) == 3  # released, a read runs to its end


def test_the_writer_lock_is_proved_before_each_operation_starts(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(6)}})
    changes = [
        WriteBack(
            "shopify", f"gid://shopify/Customer/{i}", ("crmsync:a",), ("crmsync:b",), {TIER: "gold"}, RemoteState()
        )
        for i in range(1, 7)
    ]
    calls: list[int] = []

    def lost_after_two() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("lock lost")

    with pytest.raises(RuntimeError, match="lock lost"):
        make_connector(shop, "shopify").write_bulk(changes, lost_after_two)
    assert len(shop.app("shopify").bulk.operations) == 2  # the third was never started


def test_an_old_api_version_writes_and_reads_page_by_page(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    """`bulkOperation(id:)`, `bulkOperations` and bulk runs of tagsAdd are from 2026-01."""
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(20)}})
    connector = make_connector(shop, "shopify", api_version="2025-10", bulk_read_threshold=1, bulk_write_threshold=1)
    assert connector.bulk_write_threshold == 0 and connector.writes_held() is None
    assert len(read_all(connector)) == 20
    assert shop.app("shopify").bulk.operations == {}


def test_a_stop_request_ends_the_wait_for_a_bulk_operation(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(3)}})
    set_app(shop, bulk_lines_per_s=0.001)  # never done within the test
    connector = make_connector(shop, "shopify", bulk_poll_max=0.2)
    changes = [WriteBack("shopify", "gid://shopify/Customer/1", ("crmsync:a",), (), {}, RemoteState())]
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            connector.write_bulk(changes, no_guard)
        except BaseException as exc:  # the test looks at what ended it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    while not shop.app("shopify").bulk.operations and time.monotonic() < deadline:
        thread.join(0.02)
    assert shop.app("shopify").bulk.operations, "the operation never started"
    connector.stop_event.set()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), Cancelled)


# ----- what the emulated Shopify refuses ---------------------------------------------------------------
def staged_target(shop: Sandboxes) -> tuple[str, dict[str, str]]:
    """A form target for one bulk variables file: its url and signed fields."""
    variables = {
        "input": [
            {
                "resource": "BULK_MUTATION_VARIABLES",
                "filename": "v.jsonl",
                "mimeType": "text/jsonl",
                "httpMethod": "POST",
            }
        ]
    }
    target = graphql(shop, STAGE, variables)["data"]["stagedUploadsCreate"]["stagedTargets"][0]
    return target["url"], {p["name"]: p["value"] for p in target["parameters"]}


def stage_file(shop: Sandboxes, content: bytes) -> str:
    url, fields = staged_target(shop)
    response = requests.post(url, data=fields, files={"file": ("v.jsonl", content)}, timeout=10)
    assert response.status_code == 201, response.text
    return fields["key"]


def run_bulk(
    shop: Sandboxes, path: str, mutation: str = LINE_DOCUMENTS["tagsAdd"], version: str = "2026-10"
) -> dict[str, Any]:
    data = graphql(shop, RUN, {"mutation": mutation, "path": path, "client": None}, version)["data"]
    payload: dict[str, Any] = data["bulkOperationRunMutation"]
    return payload


def test_the_bucket_refuses_a_form_without_its_signed_fields(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(2)}})
    url, fields = staged_target(shop)
    only_key = requests.post(url, data={"key": fields["key"]}, files={"file": ("v.jsonl", b"{}\n")}, timeout=10)
    assert only_key.status_code == 403
    forged = {**fields, "key": fields["key"] + "-other"}
    assert requests.post(url, data=forged, files={"file": ("v.jsonl", b"{}\n")}, timeout=10).status_code == 403
    assert requests.post(url, data=fields, timeout=10).status_code == 400  # no file


def test_bulk_mutation_refusals(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(2)}})
    good = b'{"id": "gid://shopify/Customer/1", "tags": ["crmsync:a"]}\n'
    assert run_bulk(shop, "tmp/1/bulk/nothing-here")["userErrors"][0]["code"] == "NO_SUCH_FILE"
    assert run_bulk(shop, stage_file(shop, b"not json\n"))["userErrors"][0]["code"] == "INVALID_STAGED_UPLOAD_FILE"
    bad_mutation = "mutation { tagsAdd(id: $id) { userErrors { message } } }"
    assert run_bulk(shop, stage_file(shop, good), bad_mutation)["userErrors"][0]["code"] == "INVALID_MUTATION"
    query = "query { shop { name } }"
    assert run_bulk(shop, stage_file(shop, good), query)["userErrors"][0]["code"] == "INVALID_MUTATION"


def test_five_bulk_mutations_at_a_time_from_2026_01_one_before(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(2)}})
    set_app(shop, bulk_lines_per_s=0.001)
    line = b'{"id": "gid://shopify/Customer/1", "tags": ["crmsync:a"]}\n'
    started = [run_bulk(shop, stage_file(shop, line)) for _ in range(5)]
    assert all(s["userErrors"] == [] and s["bulkOperation"]["status"] == "CREATED" for s in started)
    sixth = run_bulk(shop, stage_file(shop, line))
    assert sixth["bulkOperation"] is None and sixth["userErrors"][0]["code"] == "LIMIT_REACHED"
    assert run_bulk(shop, stage_file(shop, line), version="2025-10")["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"


def test_bulk_lines_are_not_charged_to_the_cost_bucket(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    shop = start_sandboxes_fixture(
        {"shopify": {"customers": customers(300)}}, options={"shopify": {"bucket_size": 200, "restore_rate": 1}}
    )
    changes = [
        WriteBack("shopify", f"gid://shopify/Customer/{i}", ("crmsync:a",), (), {}, RemoteState())
        for i in range(1, 301)
    ]
    assert all(r.ok for r in make_connector(shop, "shopify").write_bulk(changes, no_guard))
    charged = sum(e.get("cost") or 0 for e in shop.request_log("shopify"))
    # 300 tagsAdd one by one would be 3,000 points; the calls around the operation cost a few dozen.
    assert charged < 60
    assert all("crmsync:a" in shop.customer("shopify", str(i))["tags"] for i in (1, 150, 300))


# ----- bulk reads ----------------------------------------------------------------------------------------
def orders_for(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"gid://shopify/Order/{i}",
            "customer": {"id": f"gid://shopify/Customer/{1 + i % 40}"},
            "totalPriceSet": {"shopMoney": {"amount": "19.95", "currencyCode": "EUR"}},
            "createdAt": "2026-02-01T10:00:00Z",
        }
        for i in range(1, n + 1)
    ]


def read_all(connector: Any, checkpoint: dict[str, Any] | None = None, stream: str = "contacts") -> list[Any]:
    reader = connector.read_contacts if stream == "contacts" else connector.read_orders
    return [record for page in reader(checkpoint) for record in page.records]


def graphql_roots(shop: Sandboxes) -> list[str]:
    """The operation names crmsync sent to the Admin API, in order."""
    return [e["path"] for e in shop.request_log("shopify") if e["path"].endswith("graphql.json")]


@pytest.fixture
def big_shop(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"shopify": {"customers": customers(120), "orders": orders_for(90)}})


def test_a_full_read_of_a_big_store_is_one_bulk_query_with_the_same_records(big_shop: Sandboxes) -> None:
    paged = read_all(make_connector(big_shop, "shopify", page_size=25, bulk_read_threshold=0))
    big_shop.reset_stats()
    app = big_shop.app("shopify")
    bulk = read_all(make_connector(big_shop, "shopify", page_size=25, bulk_read_threshold=100))
    assert len(bulk) == 120
    assert {r.id: r.payload for r in bulk} == {r.id: r.payload for r in paged}
    [operation] = app.bulk.operations.values()
    assert operation.type == "QUERY" and operation.status == "COMPLETED"
    # A count, the run, its polls: no page of customers was asked for.
    assert all(b"customers(first" not in e.get("body", b"") for e in big_shop.request_log("shopify"))
    assert len(graphql_roots(big_shop)) <= 6
    assert sum(1 for e in big_shop.request_log("shopify") if e["path"].startswith("/bulk-results/")) == 1


def test_orders_are_read_in_bulk_too_unless_their_lines_are_asked_for(big_shop: Sandboxes) -> None:
    connector = make_connector(big_shop, "shopify", bulk_read_threshold=50)
    orders = read_all(connector, stream="orders")
    assert len(orders) == 90
    assert [op.type for op in big_shop.app("shopify").bulk.operations.values()] == ["QUERY"]
    with_lines = make_connector(big_shop, "shopify", bulk_read_threshold=50)
    with_lines.read_order_lines = True
    assert len(read_all(with_lines, stream="orders")) == 90
    assert len(big_shop.app("shopify").bulk.operations) == 1  # the lines were paged


def test_a_small_store_or_an_incremental_pass_is_paged(big_shop: Sandboxes) -> None:
    small = make_connector(big_shop, "shopify", bulk_read_threshold=500)
    assert len(read_all(small)) == 120
    assert big_shop.app("shopify").bulk.operations == {}
    pages = list(
        make_connector(big_shop, "shopify", bulk_read_threshold=10).read_contacts(
            {"cursor": "2025-12-31T00:00:00+00:00"}
        )
    )
    assert sum(len(p.records) for p in pages) == 120
    assert big_shop.app("shopify").bulk.operations == {}


def test_a_result_file_cut_on_the_way_is_read_again_never_taken_for_the_store(big_shop: Sandboxes) -> None:
    """A proxy or the storage may answer 200 with part of the file: taken whole, the pass would
    close without the rest of the store (and a first read would open the write gate on it).
    Shopify's objectCount says how many lines it wrote: a file holding fewer is asked for once
    more, then refused, and the pass stays open."""
    set_app(big_shop, bulk_cut_downloads=1)  # once: the second download is whole
    assert len(read_all(make_connector(big_shop, "shopify", page_size=25, bulk_read_threshold=100))) == 120
    downloads = [e for e in big_shop.request_log("shopify") if e["path"].startswith("/bulk-results/")]
    assert len(downloads) == 2
    set_app(big_shop, bulk_cut_downloads=2)
    pages = make_connector(big_shop, "shopify", page_size=25, bulk_read_threshold=100).read_contacts(None)
    with pytest.raises(ApiError, match="the result file held 60 of the 120 objects Shopify counted"):
        next(pages)


def test_a_bulk_read_stopped_half_way_runs_its_query_again(big_shop: Sandboxes) -> None:
    """The old file may be older than records stored since (incremental cycles in between): a
    resumed read asks Shopify again rather than store stale copies over them."""
    first = make_connector(big_shop, "shopify", page_size=25, bulk_read_threshold=100)
    pages = first.read_contacts(None)
    next(pages)
    checkpoint = next(pages).checkpoint  # after the second page: where the pass goes on
    assert str(checkpoint["pass"]["at"]).startswith("bulk:gid://shopify/BulkOperation/1:50")
    big_shop.patch_customer("shopify", "99", {"firstName": "Nieuw"})
    again = read_all(make_connector(big_shop, "shopify", page_size=25, bulk_read_threshold=100), checkpoint)
    assert len(again) == 120  # from the first line of a new operation's file
    assert len(big_shop.app("shopify").bulk.operations) == 2
    assert next(r.payload for r in again if r.id.endswith("/99"))["firstName"] == "Nieuw"


def test_odd_characters_survive_a_bulk_read_and_a_bulk_write(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    odd = customers(3)
    odd[0]["firstName"] = "Zoë\u2028Ångström\u0085"  # a line separator and NEL inside a name
    shop = start_sandboxes_fixture({"shopify": {"customers": odd}})
    paged = {r.id: r.payload for r in read_all(make_connector(shop, "shopify", bulk_read_threshold=0))}
    bulk = {r.id: r.payload for r in read_all(make_connector(shop, "shopify", bulk_read_threshold=1))}
    assert bulk == paged and bulk["gid://shopify/Customer/1"]["firstName"] == odd[0]["firstName"]
    tag = "crmsync:vrienden-één"
    changes = [WriteBack("shopify", f"gid://shopify/Customer/{i}", (tag,), (), {}, RemoteState()) for i in (1, 2, 3)]
    assert all(r.ok for r in make_connector(shop, "shopify").write_bulk(changes, no_guard))
    assert tag in shop.customer("shopify", "2")["tags"]


@pytest.mark.parametrize("damage", ["null", "drop", "garble"])
def test_a_result_line_that_confirms_nothing_is_written_again(
    start_sandboxes_fixture: Callable[..., Sandboxes], damage: str
) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(6)}})
    set_app(shop, bulk_damage={damage: [2]})
    changes = [
        WriteBack("shopify", f"gid://shopify/Customer/{i}", ("crmsync:a",), (), {}, RemoteState()) for i in range(1, 7)
    ]
    with pytest.raises(PartialWrite) as caught:
        make_connector(shop, "shopify").write_bulk(changes, no_guard)
    assert "1 record(s) written again" in caught.value.message
    assert sorted(r.record_id for r in caught.value.results) == [f"gid://shopify/Customer/{i}" for i in (1, 2, 4, 5, 6)]


def test_a_bulk_read_without_the_scope_fails_as_shopify_fails_it(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(20)}})
    connector = make_connector(shop, "shopify", bulk_read_threshold=10)
    set_app(shop, scopes=["read_orders"])
    with pytest.raises(Exception) as caught:
        read_all(connector)
    assert "ACCESS_DENIED" in str(caught.value) or "denied" in str(caught.value).lower()


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("query { shop { name } }", "start with a connection"),
        ("query { customers { edges { node { id } } } shop { name } }", "single top-level field"),
        ('mutation { tagsAdd(id: "x", tags: ["a"]) { userErrors { message } } }', "one query operation"),
        (
            "query { orders { edges { node { id lineItems { edges { node { id } } } } } } }",
            None,
        ),
    ],
)
def test_bulk_query_restrictions(
    start_sandboxes_fixture: Callable[..., Sandboxes], query: str, problem: str | None
) -> None:
    from connectors.shopify.bulk import RUN_QUERY

    shop = start_sandboxes_fixture({"shopify": {"customers": customers(2)}})
    payload = graphql(shop, RUN_QUERY, {"query": query})["data"]["bulkOperationRunQuery"]
    if problem is None:
        assert payload["userErrors"] == [] and payload["bulkOperation"]["status"] == "CREATED"
    else:
        assert payload["bulkOperation"] is None and payload["userErrors"][0]["code"] == "INVALID"
        assert problem in payload["userErrors"][0]["message"]


def test_a_bulk_query_writes_nested_nodes_as_lines_with_their_parent(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    from connectors.shopify.bulk import POLL, RUN_QUERY

    order = {
        "id": "gid://shopify/Order/1",
        "customer": {"id": "gid://shopify/Customer/1"},
        "totalPriceSet": {"shopMoney": {"amount": "5.00", "currencyCode": "EUR"}},
        "createdAt": "2026-02-01T10:00:00Z",
        "lineItems": {
            "nodes": [
                {"title": "Shoe", "quantity": 1, "product": {"productType": "Shoes"}},
                {"title": "Sock", "quantity": 2},
            ]
        },
    }
    shop = start_sandboxes_fixture({"shopify": {"customers": customers(1), "orders": [order]}})
    query = "query { orders { edges { node { id lineItems { edges { node { title } } } } } } }"
    payload = graphql(shop, RUN_QUERY, {"query": query})["data"]["bulkOperationRunQuery"]
    assert payload["userErrors"] == []
    operation = payload["bulkOperation"]["id"]

    def finished() -> dict[str, Any]:
        node: dict[str, Any] = graphql(shop, POLL, {"id": operation})["data"]["bulkOperation"]
        return node

    assert wait_until(lambda: finished()["status"] == "COMPLETED")
    assert requests.get(finished()["url"].split("?")[0], timeout=5).status_code == 403  # unsigned
    lines = [json.loads(line) for line in requests.get(finished()["url"], timeout=5).text.splitlines()]
    assert lines[0] == {"id": "gid://shopify/Order/1"}
    assert [line.get("__parentId") for line in lines[1:]] == ["gid://shopify/Order/1"] * 2
    assert {line["title"] for line in lines[1:]} == {"Shoe", "Sock"}


def test_files_stay_under_the_storage_limit_with_their_owners_in_line() -> None:
    changes = [
        WriteBack("shopify", f"gid://shopify/Customer/{i}", (f"crmsync:seg-{i}",), (), {}, RemoteState())
        for i in range(1, 41)
    ]
    files = line_files(changes, TIER, max_bytes=300)
    assert len(files) > 1 and all(f.mutation == "tagsAdd" for f in files)
    assert all(f.size <= 300 and f.size == len(f.content()) for f in files)
    owners = [o for f in files for o in f.owners]
    assert owners == [c.record_id for c in changes]
    for file in files:
        for owner, line in zip(file.owners, file.lines, strict=True):
            assert json.loads(line)["id"] == owner


def test_a_refusal_by_the_storage_host_is_not_a_credentials_error(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    from connectors.errors import ApiError, AuthError
    from connectors.shopify.bulk import BulkSession

    shop = start_sandboxes_fixture({"shopify": {"customers": customers(2)}})
    session = BulkSession("shopify", *make_connector(shop, "shopify")._bulk_kit())
    with pytest.raises(ApiError) as caught:
        session.download(f"{shop.url('shopify')}/bulk-results/1.jsonl?signature=forged")
    assert not isinstance(caught.value, AuthError)
    assert "storage host refused the request (HTTP 403)" in caught.value.message
    assert "forged" not in caught.value.message


def test_a_bulk_position_resumed_with_bulk_reads_off_starts_the_pass_again(big_shop: Sandboxes) -> None:
    pages = make_connector(big_shop, "shopify", page_size=25, bulk_read_threshold=100).read_contacts(None)
    checkpoint = next(pages).checkpoint
    assert str(checkpoint["pass"]["at"]).startswith("bulk:")
    for off in ({"bulk_read_threshold": 0}, {"api_version": "2025-10"}):
        again = read_all(make_connector(big_shop, "shopify", page_size=25, **off), checkpoint)
        assert len(again) == 120
    assert len(big_shop.app("shopify").bulk.operations) == 1  # paged, no second bulk query
