"""What an order is worth after the shop changed it: the stored order follows the vendor."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.kit import Sandboxes, run_crmsync


def stored_order(config: Path, system: str, order_id: int) -> tuple[str, bool]:
    with closing(sqlite3.connect(config.parent / "crmsync.db")) as db:
        amount, counts = db.execute(
            "SELECT amount, counts FROM orders WHERE system = ? AND order_id = ?", (system, str(order_id))
        ).fetchone()
    return amount, bool(counts)


def test_a_woocommerce_order_moved_to_the_trash_stops_counting(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """WooCommerce's order list leaves the trash out unless asked for it: without reading it, an
    order counted once and trashed later kept its revenue for ever."""
    config = sandboxes.config(tmp_path)
    woo = sandboxes.app("woocommerce")
    customer = small_data["woocommerce"]["customers"][0]
    created = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    order = {"id": 9301, "status": "completed", "total": "300.00", "customer_id": customer["id"]}
    woo.put_order({**order, "date_created_gmt": created})
    assert run_crmsync("sync", "-c", str(config), "--json").returncode == 0
    assert stored_order(config, "woocommerce", 9301) == ("300.00", True)

    woo.put_order({**order, "date_created_gmt": created, "status": "trash"})  # Orders > Move to Trash
    assert run_crmsync("sync", "-c", str(config), "--json").returncode == 0
    assert stored_order(config, "woocommerce", 9301) == ("300.00", False)
