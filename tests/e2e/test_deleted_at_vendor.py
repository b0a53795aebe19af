"""A customer deleted at the vendor (a shop's GDPR redaction, a merchant's clean-up) leaves the
state once complete full reads no longer return it, two of them at least and for at least
`[drift_guard] absent_for` (a day): its records, links, ledger and
retry rows go, its profile loses it at the next compute, and nothing is written anywhere for it.
One absence proves nothing (a page that skipped a record); a read that leaves out many at once
changes nothing and says what to check. Real HTTP against the sandboxes, real SQLite; cycles run
in this process (tests/chaos/lab.py)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from sync.metrics import Metrics, cycle_summary
from sync.state import StateStore
from tests.chaos.lab import Lab, customer_ids, soundness

NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)
SOON = NOW + timedelta(hours=1)  # within [drift_guard] absent_for (a day) of the first absence
LATER = NOW + timedelta(days=1)  # past it
# One person, in both shops (small_data: the first customer of each).
WOO, SHOPIFY = "woocommerce:1000", "shopify:gid://shopify/Customer/7000000"
CUSTOMER = "1000"  # WooCommerce's id of it


def rows(lab: Lab, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(lab.state_file)) as db:
        return list(db.execute(sql, params).fetchall())


def stored(lab: Lab, system: str, record_id: str) -> dict[str, int]:
    """How many rows of each table name the record (contacts, raw, quarantine, members, links,
    ledger, retries)."""
    key = f"{system}:{record_id}"
    counted = {
        table: rows(lab, f"SELECT count(*) FROM {table} WHERE system = ? AND record_id = ?", system, record_id)[0][0]
        for table in ("contacts", "raw_records", "quarantine", "profile_members", "pushed", "pending")
    }
    counted["identity_links"] = rows(lab, "SELECT count(*) FROM identity_links WHERE a = ? OR b = ?", key, key)[0][0]
    return counted


def members_beside(lab: Lab, system: str, record_id: str) -> list[str]:
    """The members of the profile holding this record."""
    found = rows(
        lab,
        "SELECT m.system || ':' || m.record_id FROM profile_members m WHERE m.profile_id = "
        "(SELECT profile_id FROM profile_members WHERE system = ? AND record_id = ?) ORDER BY 1",
        system,
        record_id,
    )
    return [str(key) for (key,) in found]


def absent(lab: Lab, system: str) -> list[str]:
    found = rows(lab, "SELECT value FROM checkpoints WHERE system = ? AND stream = 'contacts@absent'", system)
    return sorted(json.loads(found[0][0])["since"]) if found else []


def shopify_record_id() -> str:
    return SHOPIFY.split(":", 1)[1]


def test_a_customer_deleted_at_the_vendor_leaves_the_state_after_two_full_reads(
    small_data: dict[str, Any], tmp_path: Path
) -> None:
    with Lab.start(small_data, tmp_path, types=["woocommerce", "shopify"]) as lab:
        assert lab.cycle(NOW).systems["woocommerce"].status == "ok"
        assert members_beside(lab, "woocommerce", CUSTOMER) == [SHOPIFY, WOO]
        lab.sandboxes.delete_customer("woocommerce", CUSTOMER)
        # WooCommerce's customers list has no cursor: every cycle reads it in full.
        with structlog.testing.capture_logs() as first_logs:
            first = lab.cycle(NOW, "sync")
        assert first.systems["woocommerce"].status == "ok" and first.systems["woocommerce"].deleted == 0
        # absent once: kept, with everything it had
        assert absent(lab, "woocommerce") == [CUSTOMER]
        assert stored(lab, "woocommerce", CUSTOMER)["contacts"] == 1
        assert members_beside(lab, "shopify", shopify_record_id()) == [SHOPIFY, WOO]
        assert not [e for e in first_logs if e["event"] == "contacts deleted at the vendor"]
        # absent from a second full read an hour later: not for long enough (a vendor's fault can
        # last two cycles where every cycle reads the whole list)
        soon = lab.cycle(SOON, "sync")
        assert soon.systems["woocommerce"].deleted == 0 and absent(lab, "woocommerce") == [CUSTOMER]
        assert stored(lab, "woocommerce", CUSTOMER)["contacts"] == 1

        lab.sandboxes.reset_stats()
        with structlog.testing.capture_logs() as second_logs:
            second = lab.cycle(LATER, "sync")
        outcome = second.systems["woocommerce"]
        assert outcome.status == "ok" and outcome.deleted == 1
        assert second.to_json()["systems"]["woocommerce"]["deleted"] == 1
        # every row naming it is gone, and nothing was written to the shop for it
        assert stored(lab, "woocommerce", CUSTOMER) == dict.fromkeys(
            ("contacts", "raw_records", "quarantine", "profile_members", "pushed", "pending", "identity_links"), 0
        )
        assert absent(lab, "woocommerce") == []
        # its profile holds only the other shop's record of the same person now
        assert members_beside(lab, "shopify", shopify_record_id()) == [SHOPIFY]
        assert WOO not in lab.final_state()["crmsync"]["segments"]
        # not forgotten: the vendor may restore it
        assert rows(lab, "SELECT count(*) FROM forgotten") == [(0,)]
        events = [e for e in second_logs if e["event"] == "contacts deleted at the vendor"]
        assert [(e["system"], e["records"]) for e in events] == [("woocommerce", 1)]
        assert soundness(lab) == "ok"
        # the compute that followed the removal made what a backfill's full resolution makes
        view = lab.final_state()["crmsync"]
        lab.cycle(LATER, "backfill", full=["woocommerce", "shopify"])
        assert lab.final_state()["crmsync"] == view
        # counted for the daemon's metrics
        store = StateStore(lab.state_url)
        try:
            summary = cycle_summary(second, store, duration=0.0, telemetry={})
        finally:
            store.close()
        assert summary["systems"]["woocommerce"]["contacts_deleted"] == 1
        metrics = Metrics(["woocommerce", "shopify"])
        metrics.observe(summary, {}, 0.0)
        page = metrics.render().decode()
        assert 'crmsync_contacts_deleted_total{system="woocommerce"} 1.0' in page
        assert 'crmsync_contacts_deleted_total{system="shopify"} 0.0' in page


def test_a_page_that_skipped_a_record_once_removes_nobody(small_data: dict[str, Any], tmp_path: Path) -> None:
    """The sandbox's `skip-item` leaves the first customer of a page out of one read: absent once,
    then read again, it leaves the list; a later single absence is a first one again. Left out for
    absent_for, it is still at the vendor when asked by id, and stays."""
    with Lab.start(small_data, tmp_path, types=["woocommerce"]) as lab:
        lab.cycle(NOW)
        contacts = rows(lab, "SELECT count(*) FROM contacts WHERE system = 'woocommerce'")[0][0]

        def skipped_read(now: datetime) -> None:
            # every answer to the page, its re-reads too (a short page is asked for again)
            lab.fault("woocommerce", match="GET /wp-json/wc/v3/customers", fault="skip-item", times=5)
            assert lab.cycle(now).systems["woocommerce"].status == "ok"
            lab.clear_faults()

        skipped_read(NOW)
        assert absent(lab, "woocommerce") == [CUSTOMER]
        lab.cycle(NOW)  # returned again
        assert absent(lab, "woocommerce") == []
        skipped_read(NOW)  # absent once more: not twice in a row
        assert absent(lab, "woocommerce") == [CUSTOMER]
        skipped_read(SOON)  # twice in a row, but a fault that lasted an hour: kept
        assert absent(lab, "woocommerce") == [CUSTOMER]
        assert rows(lab, "SELECT count(*) FROM contacts WHERE system = 'woocommerce'")[0][0] == contacts
        # absent long enough, but asked by id the shop still has it (the look-up's own list page
        # skipped it too): kept, no deletion
        skipped_read(LATER)
        assert stored(lab, "woocommerce", CUSTOMER)["contacts"] == 1
        assert absent(lab, "woocommerce") == [CUSTOMER]
        assert soundness(lab) == "ok"


GUARD = "\n[drift_guard]\nmin_records = 2\nabsent_share = 0.1\n"


def test_a_mass_absence_removes_nothing_and_says_what_to_check(small_data: dict[str, Any], tmp_path: Path) -> None:
    with Lab.start(small_data, tmp_path, types=["woocommerce"], extra=GUARD) as lab:
        lab.cycle(NOW)
        ids = [str(c["id"]) for c in small_data["woocommerce"]["customers"]]
        before = rows(lab, "SELECT count(*) FROM contacts WHERE system = 'woocommerce'")[0][0]
        gone = ids[:3]  # 3 of 8: over 10%
        for customer_id in gone:
            lab.sandboxes.delete_customer("woocommerce", customer_id)
        for _ in range(3):
            with structlog.testing.capture_logs() as logs:
                report = lab.cycle(NOW)
            outcome = report.systems["woocommerce"]
            assert outcome.status == "ok" and outcome.deleted == 0
            assert absent(lab, "woocommerce") == []
            assert rows(lab, "SELECT count(*) FROM contacts WHERE system = 'woocommerce'")[0][0] == before
            (warning,) = [e for e in logs if e["event"] == "contacts absent from a full read: nothing removed"]
            assert warning["log_level"] == "warning"
            assert (warning["system"], warning["stream"], warning["absent"], warning["stored"]) == (
                "woocommerce",
                "contacts",
                3,
                before,
            )
            (said,) = outcome.warnings
            assert "absent_share" in said and "rights" in said and "filter" in said
            assert report.to_json()["systems"]["woocommerce"]["warnings"] == [said]
            assert outcome.absent_held == {"contacts": {"absent": 3, "stored": before}}
        # accepted: absent_share raised for one run records them, the next run removes them
        assert lab.config is not None
        config = lab.config.read_text()
        lab.config.write_text(config.replace("absent_share = 0.1", "absent_share = 1"))
        lab.cycle(NOW)
        assert absent(lab, "woocommerce") == sorted(gone)
        lab.config.write_text(config)
        assert lab.cycle(LATER).systems["woocommerce"].deleted == 3
        assert rows(lab, "SELECT count(*) FROM contacts WHERE system = 'woocommerce'")[0][0] == before - 3


def test_a_resumed_backfill_judges_nothing(small_data: dict[str, Any], tmp_path: Path) -> None:
    """A backfill that stopped half-way and is resumed read only the rest: a customer deleted at the
    vendor is not taken for absent twice by it; the next complete full read is the second."""
    overrides = {"woocommerce": "page_size = 2"}
    with Lab.start(small_data, tmp_path, types=["woocommerce"], overrides=overrides) as lab:
        lab.cycle(NOW)
        lab.sandboxes.delete_customer("woocommerce", CUSTOMER)
        lab.cycle(NOW)
        assert absent(lab, "woocommerce") == [CUSTOMER]
        # a backfill that fails on its second page of customers ...
        lab.fault("woocommerce", match="GET /wp-json/wc/v3/customers", fault="500", times=20, after=1)
        assert lab.cycle(NOW, "backfill", full=["woocommerce"]).systems["woocommerce"].status == "failed"
        lab.clear_faults()
        # ... is resumed from there: it returned neither the deleted customer nor its neighbours
        resumed = lab.cycle(NOW, "backfill", full=["woocommerce"])
        assert resumed.systems["woocommerce"].status == "ok" and resumed.systems["woocommerce"].deleted == 0
        assert stored(lab, "woocommerce", CUSTOMER)["contacts"] == 1
        assert absent(lab, "woocommerce") == [CUSTOMER]
        assert lab.cycle(LATER).systems["woocommerce"].deleted == 1
        assert stored(lab, "woocommerce", CUSTOMER)["contacts"] == 0


@pytest.mark.parametrize("system_type", ["shopify"])
def test_an_incremental_read_that_returns_a_record_takes_it_off_the_list(
    small_data: dict[str, Any], tmp_path: Path, system_type: str
) -> None:
    """Shopify reads contacts from a cursor between its full reads: one whose record changed (and
    so was returned) is not deleted, though it was absent from the last full read."""
    with Lab.start(small_data, tmp_path, types=[system_type]) as lab:
        lab.cycle(NOW)
        lab.fault(system_type, match="reads", fault="skip-item", times=10)
        assert lab.cycle(NOW, "backfill", full=[system_type]).systems[system_type].status == "ok"
        lab.clear_faults()
        (missing,) = absent(lab, system_type)
        lab.sandboxes.patch_customer(system_type, missing, {"note": "called"})
        lab.cycle(NOW)  # incremental: from the cursor
        assert absent(lab, system_type) == []
        assert stored(lab, system_type, missing)["contacts"] == 1


def test_on_postgresql_a_customer_deleted_at_the_vendor_leaves_the_state_after_two_full_reads(
    small_data: dict[str, Any], tmp_path: Path, postgres_url: str
) -> None:
    """The same on a PostgreSQL state (the stored ids stream through a server-side cursor)."""
    with Lab.start(small_data, tmp_path, types=["woocommerce"], state=postgres_url) as lab:
        lab.cycle(NOW)
        lab.sandboxes.delete_customer("woocommerce", CUSTOMER)
        assert lab.cycle(NOW).systems["woocommerce"].deleted == 0
        assert WOO in lab.final_state()["crmsync"]["contacts"]
        assert lab.cycle(LATER).systems["woocommerce"].deleted == 1
        view = lab.final_state()["crmsync"]
        assert WOO not in view["contacts"] and WOO not in view["segments"]
        assert soundness(lab) == "ok"


def test_a_full_read_returning_none_of_the_stored_contacts_removes_nothing(
    small_data: dict[str, Any], tmp_path: Path
) -> None:
    """A small shop (fewer stored contacts than `min_records`) whose customers list suddenly
    returns none of them (the configured `role` changed, the API user's rights, another
    administration): a misread picture, not every customer deleted. Held like a mass absence."""
    overrides = {"woocommerce": 'role = "customer"'}
    with Lab.start(small_data, tmp_path, types=["woocommerce"], overrides=overrides) as lab:
        lab.cycle(NOW)
        before = rows(lab, "SELECT count(*) FROM contacts WHERE system = 'woocommerce'")[0][0]
        assert 0 < before < 50
        assert lab.config is not None
        config = lab.config.read_text()
        lab.config.write_text(config.replace('role = "customer"', 'role = "subscriber"'))
        for _ in range(3):
            outcome = lab.cycle(NOW).systems["woocommerce"]
            assert outcome.status == "ok" and outcome.deleted == 0
            assert outcome.absent_held == {"contacts": {"absent": before, "stored": before}}
            assert absent(lab, "woocommerce") == []
        assert rows(lab, "SELECT count(*) FROM contacts WHERE system = 'woocommerce'")[0][0] == before
        lab.config.write_text(config)
        assert lab.cycle(NOW).systems["woocommerce"].absent_held == {}


def test_a_small_shops_list_cut_short_removes_nothing(small_data: dict[str, Any], tmp_path: Path) -> None:
    """The first page of customers loses an item on every answer (its re-reads too): short, it ends
    the read without an error. Six of the eight stored contacts are left out, fewer than
    `min_records` but most of the shop: held, not recorded absent, and certainly not removed at the
    second such read."""
    with Lab.start(small_data, tmp_path, types=["woocommerce"], overrides={"woocommerce": "page_size = 3"}) as lab:
        lab.cycle(NOW)
        before = rows(lab, "SELECT count(*) FROM contacts WHERE system = 'woocommerce'")[0][0]
        for _ in range(2):
            lab.fault("woocommerce", match="GET /wp-json/wc/v3/customers", fault="skip-item", times=5)
            outcome = lab.cycle(NOW).systems["woocommerce"]
            lab.clear_faults()
            assert outcome.status == "ok" and outcome.read_contacts == 2 and outcome.deleted == 0
            assert outcome.absent_held == {"contacts": {"absent": before - 2, "stored": before}}
            assert absent(lab, "woocommerce") == []
        assert rows(lab, "SELECT count(*) FROM contacts WHERE system = 'woocommerce'")[0][0] == before


def test_a_customer_out_of_the_list_but_still_at_the_vendor_is_kept(small_data: dict[str, Any], tmp_path: Path) -> None:
    """A WooCommerce customer made a subscriber leaves the `role=customer` list, not the shop: asked
    by id before it goes, the shop still has it, so it stays (with a warning), and is asked again
    only once another `absent_for` has passed. Deleted later, it goes then."""
    with Lab.start(small_data, tmp_path, types=["woocommerce", "shopify"]) as lab:
        lab.cycle(NOW)
        lab.sandboxes.patch_customer("woocommerce", CUSTOMER, {"role": "subscriber"})
        lab.cycle(NOW)
        assert absent(lab, "woocommerce") == [CUSTOMER]
        report = lab.cycle(LATER)
        outcome = report.systems["woocommerce"]
        assert outcome.status == "ok" and outcome.deleted == 0
        assert stored(lab, "woocommerce", CUSTOMER)["contacts"] == 1
        assert members_beside(lab, "shopify", shopify_record_id()) == [SHOPIFY, WOO]
        warnings = report.to_json()["systems"]["woocommerce"]["warnings"]
        assert any("still at the vendor" in w and CUSTOMER in w for w in warnings), warnings
        # the next full reads within absent_for do not ask again
        lab.sandboxes.reset_stats()
        report = lab.cycle(LATER + timedelta(hours=1))
        asked = [e for e in lab.sandboxes.request_log("woocommerce") if "include" in str(e.get("query", ""))]
        assert report.systems["woocommerce"].deleted == 0 and asked == []
        assert absent(lab, "woocommerce") == [CUSTOMER]
        # deleted now: the first full read absent_for after the last answer removes it
        lab.sandboxes.delete_customer("woocommerce", CUSTOMER)
        assert lab.cycle(LATER + timedelta(hours=2)).systems["woocommerce"].deleted == 0
        assert lab.cycle(LATER + timedelta(days=1)).systems["woocommerce"].deleted == 1
        assert stored(lab, "woocommerce", CUSTOMER)["contacts"] == 0
        assert members_beside(lab, "shopify", shopify_record_id()) == [SHOPIFY]
        assert soundness(lab) == "ok"


def test_an_answer_that_cannot_be_told_removes_nobody(small_data: dict[str, Any], tmp_path: Path) -> None:
    """The look-up by id refused (the key lost a right): the absent person stays, the cycle says
    why, and the next full read asks again and removes it."""
    with Lab.start(small_data, tmp_path, types=["superoffice", "shopify"]) as lab:
        lab.cycle(NOW)
        person = customer_ids(small_data["superoffice"], "superoffice")[0]
        path = next(e["path"] for e in lab.sandboxes.request_log("superoffice") if "/api/v1/" in e["path"])
        person_path = f"{path.split('/api/v1/')[0]}/api/v1/Person/{person}"
        lab.sandboxes.delete_customer("superoffice", person)
        lab.cycle(NOW, "backfill", full=["superoffice"])  # SuperOffice reads by change: a full read
        assert absent(lab, "superoffice") == [person]
        lab.fault("superoffice", match=f"GET {person_path}", fault="auth", times=20)
        report = lab.cycle(LATER, "backfill", full=["superoffice"])
        outcome = report.systems["superoffice"]
        assert outcome.status == "ok" and outcome.deleted == 0
        assert any("could not be confirmed deleted" in w for w in outcome.warnings), outcome.warnings
        assert stored(lab, "superoffice", person)["contacts"] == 1 and absent(lab, "superoffice") == [person]
        lab.clear_faults()
        assert (
            lab.cycle(LATER + timedelta(hours=1), "backfill", full=["superoffice"]).systems["superoffice"].deleted == 1
        )
        assert stored(lab, "superoffice", person)["contacts"] == 0
        assert soundness(lab) == "ok"


def test_no_more_than_gone_per_read_are_asked_in_one_read(
    small_data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The longest absent first (then by id); the rest wait for the next full read, their absence
    kept."""
    from connectors.woocommerce.client import WooCommerceConnector

    monkeypatch.setattr(WooCommerceConnector, "gone_per_read", 1)
    with Lab.start(small_data, tmp_path, types=["woocommerce", "shopify"]) as lab:
        lab.cycle(NOW)
        first, second = customer_ids(small_data["woocommerce"], "woocommerce")[:2]
        lab.sandboxes.delete_customer("woocommerce", first)
        lab.sandboxes.delete_customer("woocommerce", second)
        lab.cycle(NOW)
        assert absent(lab, "woocommerce") == sorted([first, second])
        assert lab.cycle(LATER).systems["woocommerce"].deleted == 1
        assert stored(lab, "woocommerce", first)["contacts"] == 0  # absent as long: the first id first
        assert absent(lab, "woocommerce") == [second]
        assert lab.cycle(LATER + timedelta(hours=1)).systems["woocommerce"].deleted == 1
        assert absent(lab, "woocommerce") == [] and stored(lab, "woocommerce", second)["contacts"] == 0


def test_a_stored_record_the_vendor_cannot_be_asked_of_blocks_no_deletion(
    small_data: dict[str, Any], tmp_path: Path
) -> None:
    """A record held without an id (`missing_id`: stored as "") is no id the vendor can be asked
    of. Gone from the list, its absence decides, as it did before the look-up; asked along with
    the others, it made every look-up fail, so no deleted customer ever left the state."""
    with Lab.start(small_data, tmp_path, types=["woocommerce", "shopify"]) as lab:
        lab.cycle(NOW)
        with closing(sqlite3.connect(lab.state_file)) as db, db:
            db.execute(
                "INSERT INTO raw_records (system, kind, record_id, content_hash, payload, changed_seq) "
                "VALUES ('woocommerce', 'contact', '', 'x', '{\"id\": null}', 1)"
            )
        lab.sandboxes.delete_customer("woocommerce", CUSTOMER)
        lab.cycle(NOW)
        assert absent(lab, "woocommerce") == ["", CUSTOMER]
        report = lab.cycle(LATER)
        outcome = report.systems["woocommerce"]
        assert outcome.status == "ok" and outcome.deleted == 2, outcome.warnings
        assert not [w for w in outcome.warnings if "could not be confirmed" in w]
        assert stored(lab, "woocommerce", CUSTOMER)["contacts"] == 0
        assert rows(lab, "SELECT count(*) FROM raw_records WHERE system = 'woocommerce' AND record_id = ''") == [(0,)]
        assert absent(lab, "woocommerce") == []
