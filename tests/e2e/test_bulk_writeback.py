"""`crmsync sync` reading and writing Shopify through bulk operations (`bulk_read_threshold`,
`bulk_write_threshold`), against the emulator over real HTTP: the same profiles and the same vendor
state as page by page, nothing planned after, and an operation that fails half-way leaves its
unconfirmed records for the next cycle."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.errors import ApiError
from connectors.shopify.bulk import BulkWriter, line_files
from connectors.shopify.client import ShopifyConnector
from mapping.model import RemoteState, WriteBack
from sync.config import load_config
from sync.pipeline import Cycle, build_connectors
from sync.state import StateStore
from tests.kit import Sandboxes, json_out, run_crmsync, wait_until

TIER = "crmsync.loyalty_tier"


def sync(config: Path) -> dict[str, Any]:
    result = run_crmsync("sync", "-c", str(config), "--json")
    assert result.returncode in (0, 3), result.stderr[-3000:]  # 3: a system failed
    return json_out(result)


def shop_state(sandboxes: Sandboxes, ids: list[str]) -> dict[str, Any]:
    """Each customer's crmsync tags and tier, as the shop holds them."""
    state = {}
    for gid in ids:
        stored = sandboxes.customer("shopify", gid)
        tags = sorted(t for t in stored["tags"] if t.startswith("crmsync:"))
        tiers = sorted(m["value"] for m in stored["metafields"] if m["namespace"] == "crmsync")
        state[gid] = (tags, tiers)
    return state


BULK = "bulk_write_threshold = 1\nbulk_read_threshold = 1"
PAGED = "bulk_write_threshold = 0\nbulk_read_threshold = 0"


def two_shops(
    start: Callable[..., Sandboxes], data: dict[str, Any], folder: Path
) -> tuple[Sandboxes, Sandboxes, dict[str, Any], Path]:
    """Two shops of the same data: one synced page by page (its report returned), one set up to
    go in bulk (its config returned)."""
    paged, bulk = (start(data, time_scale=50) for _ in range(2))
    (folder / "paged").mkdir()
    (folder / "bulk").mkdir()
    paged_doc = sync(paged.config(folder / "paged", shopify=PAGED))
    return paged, bulk, paged_doc, bulk.config(folder / "bulk", shopify=BULK)


def test_bulk_sync_ends_where_paging_does_and_then_plans_nothing(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    ids = [c["id"] for c in small_data["shopify"]["customers"]]
    paged, bulk, paged_doc, bulk_config = two_shops(start_sandboxes_fixture, small_data, tmp_path)
    bulk_doc = sync(bulk_config)
    for doc in (paged_doc, bulk_doc):
        assert doc["systems"]["shopify"]["status"] == "ok", doc["systems"]["shopify"]
    planned = bulk_doc["systems"]["shopify"]["planned"]
    assert planned > 0 and bulk_doc["systems"]["shopify"]["written"] == planned
    assert shop_state(bulk, ids) == shop_state(paged, ids)
    assert any(tags for tags, _ in shop_state(bulk, ids).values())
    kinds = sorted(op.type for op in bulk.app("shopify").bulk.operations.values())
    assert kinds.count("QUERY") == 2, kinds  # customers and orders, read in bulk
    assert "MUTATION" in kinds
    assert bulk_doc["profiles"] == paged_doc["profiles"]
    assert bulk_doc["systems"]["shopify"]["read"] == paged_doc["systems"]["shopify"]["read"]
    operations = len(bulk.app("shopify").bulk.operations)
    again = sync(bulk_config)
    assert again["systems"]["shopify"]["planned"] == 0
    assert len(bulk.app("shopify").bulk.operations) == operations


def test_a_bulk_operation_that_fails_half_way_is_finished_by_the_next_cycle(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    ids = [c["id"] for c in small_data["shopify"]["customers"]]
    paged, bulk, _, config = two_shops(start_sandboxes_fixture, small_data, tmp_path)
    app_url = f"{bulk.url('shopify')}/_sandbox/app"
    requests.patch(app_url, json={"bulk_fail_after": 3}, timeout=5).raise_for_status()
    first = sync(config)
    shopify = first["systems"]["shopify"]
    assert shopify["status"] == "failed" and "bulk write-back incomplete" in shopify["error"]
    assert 0 < shopify["written"] < shopify["planned"]
    assert shop_state(bulk, ids) != shop_state(paged, ids)
    requests.patch(app_url, json={"bulk_fail_after": None}, timeout=5).raise_for_status()
    second = sync(config)
    assert second["systems"]["shopify"]["status"] == "ok"
    # Only what was not confirmed is planned again.
    assert second["systems"]["shopify"]["planned"] == shopify["planned"] - shopify["written"]
    assert shop_state(bulk, ids) == shop_state(paged, ids)
    assert sync(config)["systems"]["shopify"]["planned"] == 0


def test_a_bulk_mutation_of_an_earlier_cycle_that_ends_while_a_cycle_reads_holds_its_writes(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    """The check made before writing finds nothing running once that mutation has ended, but the
    records were read while it still changed them: this cycle must not write from that picture."""
    shop = start_sandboxes_fixture({"shopify": small_data["shopify"]}, time_scale=50)
    app_url = f"{shop.url('shopify')}/_sandbox/app"
    requests.patch(app_url, json={"bulk_lines_per_s": 1e-6}, timeout=5).raise_for_status()  # runs on
    loaded = load_config(shop.config(tmp_path, shopify=BULK))
    store = StateStore(loaded.state_url())
    cycle = Cycle(loaded, store, clock=lambda: datetime(2026, 11, 20, 10, tzinfo=UTC), stop_event=threading.Event())
    connector = build_connectors(loaded, threading.Event())["shopify"]
    gid = small_data["shopify"]["customers"][0]["id"]
    [left] = line_files([WriteBack("shopify", gid, ("crmsync:left",), (), {}, RemoteState())], TIER)
    writer = BulkWriter("shopify", *connector._bulk_kit())
    orphan = writer.run_file(left, writer.stage([left])[0])  # a stopped cycle's, still at work
    operations = shop.app("shopify").bulk.operations
    extract = cycle._extract

    def ends_while_read(*args: Any) -> None:
        requests.patch(app_url, json={"bulk_lines_per_s": 1e6}, timeout=5).raise_for_status()
        assert wait_until(lambda: connector.writes_held() is None, timeout=20)
        extract(*args)

    cycle._extract = ends_while_read  # type: ignore[method-assign]
    report = cycle.run("sync")
    shopify = report.systems["shopify"]
    assert shopify.status == "failed" and "running while this cycle read shopify" in str(shopify.error)
    assert orphan.id in str(shopify.error)
    assert shopify.planned > 0 and shopify.written == 0
    assert [op.type for op in operations.values()].count("MUTATION") == 1  # none started by this cycle
    # The next cycle reads a shop nothing else changes, and writes.
    cycle._extract = extract  # type: ignore[method-assign]
    again = cycle.run("sync").systems["shopify"]
    assert again.status == "ok" and again.written > 0
    connector.close()


def test_a_check_before_the_read_that_fails_leaves_the_decision_to_the_check_before_writing(
    start_sandboxes_fixture: Callable[..., Sandboxes],
    small_data: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A blip on the first check is no reason to hold the writes: the check before writing asks
    again (and there, an unknown answer holds them)."""
    shop = start_sandboxes_fixture({"shopify": small_data["shopify"]}, time_scale=50)
    loaded = load_config(shop.config(tmp_path, shopify=BULK))
    store = StateStore(loaded.state_url())
    cycle = Cycle(loaded, store, clock=lambda: datetime(2026, 11, 20, 10, tzinfo=UTC), stop_event=threading.Event())
    asked: list[str] = []
    real = ShopifyConnector.writes_held

    def blip_first(self: ShopifyConnector) -> str | None:
        asked.append(self.name)
        if len(asked) == 1:
            raise ApiError(self.name, "503 Service Unavailable")
        return real(self)

    monkeypatch.setattr(ShopifyConnector, "writes_held", blip_first)
    shopify = cycle.run("sync").systems["shopify"]
    assert len(asked) == 2  # before the read, and again before writing
    assert shopify.status == "ok" and shopify.written > 0
