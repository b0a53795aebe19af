"""The incremental cursor's edges, for every connector, through real cycles against its sandbox:
a record updated at exactly the stored cursor, a record committed late with an older timestamp
inside the look-back window, and a record changed while a sync is reading are all picked up, and
nothing is stored or counted twice.

The sandbox's test route edits a customer as a person would (content and modification time); the
modification time is then set to the instant the case needs, in the vendor's own format.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.registry import TYPES, connector_class, vendor
from connectors.woocommerce.sandbox import _local
from mapping.model import parse_timestamp
from sync.demo import demo_data
from tests.chaos.lab import Lab, customer_ids
from tests.kit import wait_until

NOW = datetime.now(UTC).replace(microsecond=0)


def _seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def given_names(state_file: Path) -> dict[str, str | None]:
    with closing(sqlite3.connect(state_file)) as db:
        return {rid: json.loads(details).get("given_name") for rid, details in db.execute(
            "SELECT record_id, details FROM contacts"
        )}  # fmt: skip


def stored_counts(state_file: Path) -> tuple[int, int, int]:
    with closing(sqlite3.connect(state_file)) as db:
        contacts = db.execute("SELECT count(*), count(DISTINCT record_id) FROM contacts").fetchone()
        members = db.execute("SELECT count(*) FROM profile_members").fetchone()[0]
    return int(contacts[0]), int(contacts[1]), int(members)


def cursor(lab: Lab, system_type: str) -> datetime | None:
    with closing(sqlite3.connect(lab.state_file)) as db:
        row = db.execute(
            "SELECT value FROM checkpoints WHERE system = ? AND stream = 'contacts'", (system_type,)
        ).fetchone()
    value = json.loads(row[0]).get("cursor") if row else None
    return parse_timestamp(value) if value else None


@pytest.mark.parametrize("system_type", TYPES)
def test_the_cursor_boundary_loses_nothing_and_doubles_nothing(system_type: str, tmp_path: Path) -> None:
    data = demo_data(30, seed=3, types=(system_type,))
    ids = customer_ids(data[system_type], system_type)
    assert len(ids) >= 4, "the case needs four customers"
    lookback = connector_class(system_type).settings_class.model_fields["lookback"].default
    with Lab.start(data, tmp_path, overrides={system_type: "page_size = 3"}) as lab:
        lab.cycle(NOW)
        app = lab.sandboxes.app(system_type)
        at = cursor(lab, system_type) or NOW  # full scans keep no cursor
        boundary, late, during = ids[0], ids[1], ids[2]

        def edit(rid: str, name: str, moment: datetime | None) -> None:
            lab.sandboxes.patch_customer(system_type, rid, vendor(system_type).emulated.rename(name))
            if moment is not None:
                with app.lock:
                    app.stamp_customer(rid, moment)

        # exactly at the cursor, and committed late with a timestamp inside the look-back window
        edit(boundary, "Grens", at)
        edit(late, "Laat", at - timedelta(seconds=lookback / 2))
        lab.cycle(NOW)
        names = given_names(lab.state_file)
        assert names[boundary] == "Grens"
        assert names[late] == "Laat"

        # changed while a sync reads: picked up by that cycle or, at the latest, the next one
        lab.fault(system_type, match="reads", fault="slow", seconds=0.05, times=1000)
        running = threading.Thread(target=lab.cycle, args=(NOW,))
        running.start()
        assert wait_until(lambda: bool(lab.sandboxes.request_log(system_type)), timeout=30)
        edit(during, "Tijdens", None)
        running.join(timeout=120)
        lab.clear_faults()
        lab.cycle(NOW)
        assert given_names(lab.state_file)[during] == "Tijdens"

        rows, distinct, members = stored_counts(lab.state_file)
        assert rows == distinct == members == len(ids)  # every customer once, in one profile each


def test_woocommerce_orders_at_and_behind_the_keyset_cursor_are_read_once(tmp_path: Path) -> None:
    """WooCommerce orders page by modification time (keyset): the second-resolution boundary and
    a late commit behind the cursor are the classic places to lose an order."""
    data = demo_data(30, seed=3, types=("woocommerce",))
    orders = [str(o["id"]) for o in data["woocommerce"]["orders"]]
    with Lab.start(data, tmp_path, overrides={"woocommerce": "page_size = 3"}) as lab:
        lab.cycle(NOW)
        app = lab.sandboxes.app("woocommerce")
        with closing(sqlite3.connect(lab.state_file)) as db:
            value = db.execute("SELECT value FROM checkpoints WHERE stream = 'orders'").fetchone()[0]
        at = parse_timestamp(json.loads(value)["cursor"])
        with app.lock:
            for rid, moment, total in ((orders[0], at, "1234.00"), (orders[1], at - timedelta(seconds=300), "4321.00")):
                order = app.orders[int(rid)]
                order["total"] = total
                order["refunds"] = []  # its amount is then the total (a refunded demo order lists one)
                order["date_modified_gmt"] = _seconds(moment)
                order["date_modified"] = _local(order["date_modified_gmt"])
        lab.cycle(NOW)
        with closing(sqlite3.connect(lab.state_file)) as db:
            amounts = dict(db.execute("SELECT order_id, amount FROM orders").fetchall())
            distinct = db.execute("SELECT count(DISTINCT order_id) FROM orders").fetchone()[0]
        assert (amounts[orders[0]], amounts[orders[1]]) == ("1234.00", "4321.00")
        assert len(amounts) == distinct == len(orders)
