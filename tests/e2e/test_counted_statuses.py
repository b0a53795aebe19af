"""Which unpaid orders count toward a customer's value is each shop's setting, named in the
vendor's own status values: the default counts what crmsync counted before it existed, a changed
setting re-evaluates the stored orders at the next cycle without reading them again, and a status
the vendor does not document is a config error."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kit import Sandboxes, run_crmsync, run_crmsync_here


@dataclass(frozen=True)
class Shop:
    setting: str  # the line that leaves the unpaid status out
    unpaid: dict[str, Any]  # fields that make a copy of a paid order an unpaid one
    paid: dict[str, Any]  # what the payment arriving changes at the vendor
    misspelt: str  # a status spelt as another vendor (or the shop's admin screen) spells it


SHOPS = {
    # A bank transfer (BACS) not yet received: WooCommerce puts the order on hold.
    "woocommerce": Shop(
        'counted_statuses = ["completed", "processing"]',
        {
            "id": 9401,
            "status": "on-hold",
            "payment_method": "bacs",
        },
        {"status": "processing"},
        '"on_hold"',
    ),
    # A manual payment (bank deposit) not yet received: PENDING.
    "shopify": Shop(
        'counted_financial_statuses = ["PAID", "PARTIALLY_REFUNDED"]',
        {
            "id": "gid://shopify/Order/5999401",
            "name": "#9401",
            "displayFinancialStatus": "PENDING",
        },
        {"displayFinancialStatus": "PAID"},
        '"paid"',
    ),
    "lightspeed": Shop(
        'counted_payment_statuses = ["paid", "partially_paid"]',
        {
            "id": 3199401,
            "number": "ORD99401",
            "status": "processing_awaiting_payment",
            "paymentStatus": "not_paid",
        },
        {"paymentStatus": "paid"},
        '"PAID"',
    ),
}


def stored_counts(folder: Path, system: str) -> dict[str, bool]:
    with closing(sqlite3.connect(folder / "crmsync.db")) as db:
        rows = db.execute("SELECT order_id, counts FROM orders WHERE system = ?", (system,)).fetchall()
    return {str(order_id): bool(counts) for order_id, counts in rows}


def sync(config: Path) -> str:
    result = run_crmsync("sync", "-c", str(config), "--json", "--dry-run", "--log-json")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def start_with_an_unpaid_order(
    start: Callable[..., Sandboxes], small_data: dict[str, Any], vendor: str
) -> tuple[Sandboxes, str]:
    data = {key: list(rows) for key, rows in small_data[vendor].items()}
    # A copy of the shop's first order, so placed and last changed when it was: long before the
    # cursor, which an incremental read starts near (the newest order is read again at the bound).
    unpaid = {**data["orders"][0], **SHOPS[vendor].unpaid}
    data["orders"].append(unpaid)
    return start({vendor: data}), str(unpaid["id"])


def key_of(counts: dict[str, bool], order_id: str) -> str:
    """The stored id of an order (Shopify's is its gid's number or the gid itself)."""
    return next(key for key in counts if key == order_id or order_id.endswith(f"/{key}"))


@pytest.mark.parametrize("vendor", sorted(SHOPS))
def test_the_unpaid_order_counts_by_default_and_stops_counting_with_the_setting_without_a_read(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path, vendor: str
) -> None:
    shop = SHOPS[vendor]
    sandboxes, order_id = start_with_an_unpaid_order(start_sandboxes_fixture, small_data, vendor)

    sync(sandboxes.config(tmp_path))
    before = stored_counts(tmp_path, vendor)
    unpaid = key_of(before, order_id)
    assert before[unpaid] is True  # the default counts it, as crmsync did before the setting
    paid_before = {key for key, counts in before.items() if counts and key != unpaid}
    assert paid_before  # the shop's other (paid) orders count too

    # The payment arrives at the vendor, but silently: the order's modification time stays days
    # old, so only a read of it would see it paid. The setting alone must turn it off.
    app = sandboxes.app(vendor)
    with app.lock:
        stored = next(o for o in app.orders.values() if str(o["id"]) == order_id)
        stored.update(shop.paid)

    logged = sync(sandboxes.config(tmp_path, **{vendor: shop.setting}))
    after = stored_counts(tmp_path, vendor)
    assert after[unpaid] is False  # re-read, it would count: paid at the vendor now
    assert "mapping stored records again" in logged and '"why": "configuration"' in logged
    # Only the unpaid order changed; every paid order still counts.
    assert {key for key, counts in after.items() if counts} == paid_before

    # Back to the default: counted again, still without a read.
    sync(sandboxes.config(tmp_path))
    assert stored_counts(tmp_path, vendor) == before


@pytest.mark.parametrize("vendor", sorted(SHOPS))
def test_a_status_the_vendor_does_not_document_is_a_config_error(
    start_sandboxes_fixture: Callable[..., Sandboxes], tmp_path: Path, vendor: str
) -> None:
    sandboxes = start_sandboxes_fixture({vendor: {"customers": [], "orders": []}})
    setting = SHOPS[vendor].setting
    key = setting.split("=", 1)[0].strip()
    misspelt = setting.replace("]", f", {SHOPS[vendor].misspelt}]")
    result = run_crmsync_here("check", "-c", str(sandboxes.config(tmp_path, **{vendor: misspelt})))
    assert result.returncode == 2
    line = next(line for line in result.stderr.splitlines() if f"systems.{vendor}.{key}" in line)
    assert line.startswith("config error: ") and SHOPS[vendor].misspelt.replace('"', "'") in line
    # It names what the vendor allows, so the fix is in the message.
    expected = {"woocommerce": "on-hold", "shopify": "PENDING", "lightspeed": "not_paid"}[vendor]
    assert "allowed" in line and expected in line
