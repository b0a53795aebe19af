"""A mapping changed by an upgrade (or a configuration) meets the stored records with the drift
guard, as a read does: new code that would quarantine nearly every stored record of a system
(Silvasoft's invoice statuses are not published; crmsync 10 holds a status it does not know)
leaves them as they were mapped before, reads nothing of that system and says why, instead of
taking its revenue out of every profile while the writes go on."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.kit import Sandboxes, json_out, run_crmsync

NOW = {"CRMSYNC_NOW": "2026-12-07T12:00:00Z"}


def invoices(count: int) -> list[dict[str, Any]]:
    return [
        {
            "InvoiceNumber": 20_260_000 + i,
            "InvoiceDate": "01-12-2026",
            "CustomerNumber": 1001,
            "CustomerName": "A",
            "CustomerEmail": "a@example.nl",
            "TotalAmountExclTax": 10.0,
            "TotalTax": 2.1,
            "TotalAmountInclTax": 12.1,
            "Currency": "EUR",
            "InvoiceStatus": "Paid",
            "InvoiceReference": "x",
        }
        for i in range(count)
    ]


def counted(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM orders WHERE system = 'silvasoft' AND counts").fetchone()[0])


def test_a_new_mapping_that_would_quarantine_the_stored_records_leaves_them_and_says_why(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    sandboxes = start_sandboxes_fixture(
        {"silvasoft": {"customers": small_data["silvasoft"]["customers"], "orders": invoices(60)}}
    )
    config = sandboxes.config(tmp_path)
    db = tmp_path / "crmsync.db"
    assert run_crmsync("sync", "-c", str(config), "--json", env=NOW).returncode == 0
    assert counted(db) == 60
    # The state of an older crmsync at a tenant whose invoices say "Betaald": it counted them.
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT record_id, payload FROM raw_records WHERE system = 'silvasoft' AND kind = 'order'")
        for record_id, payload in rows.fetchall():
            changed = {**json.loads(payload), "InvoiceStatus": "Betaald"}
            conn.execute(
                "UPDATE raw_records SET payload = ? WHERE system = 'silvasoft' AND kind = 'order' AND record_id = ?",
                (json.dumps(changed), record_id),
            )
        conn.execute("UPDATE meta SET value = '9' WHERE key = 'mapping_version'")
        conn.commit()
    app = sandboxes.app("silvasoft")
    with app.lock:
        for invoice in app.invoices.values():
            invoice["InvoiceStatus"] = "Betaald"
    sandboxes.reset_stats()

    upgraded = run_crmsync("sync", "-c", str(config), "--json", env=NOW)
    assert upgraded.returncode == 3, upgraded.stderr[-2000:]
    outcome = json_out(upgraded)["systems"]["silvasoft"]
    assert outcome["status"] == "failed"
    assert "unknown_invoice_status" in outcome["error"] and "stay as mapped before" in outcome["error"]
    assert counted(db) == 60  # the revenue is still there: nothing was mapped the new way
    with closing(sqlite3.connect(db)) as conn:
        held = conn.execute("SELECT count(*) FROM quarantine WHERE system = 'silvasoft'").fetchone()[0]
        mapped_by = json.loads(conn.execute("SELECT value FROM meta WHERE key = 'mapped_by'").fetchone()[0])
    assert held == 0 and "silvasoft" not in mapped_by  # tried again at the next cycle
    assert sandboxes.stats("silvasoft")["requests"] == {}  # not read with a mapping that misreads it

    again = run_crmsync("sync", "-c", str(config), "--json", env=NOW)
    assert again.returncode == 3 and json_out(again)["systems"]["silvasoft"]["status"] == "failed"
    assert counted(db) == 60
