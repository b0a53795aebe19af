"""A cycle by difference against a full recompute, end to end: two states fed the same records,
one computing as `sync` does (the resolution snapshot reused, identities resolved and contacts and
orders read by difference), the other as `backfill` does (everything read and resolved again), must
store byte-identical profiles, segments, history and held tiers and plan the same writes, round
after round, while the clock moves past lifecycle windows, tier grace and rule boundaries.

The change sets: new, edited, merged (an email or a link that joins two people), split (an email
changed away), deleted-by-vendor records (a contact or order whose mapped row goes: quarantined,
which deletes it, as a record the vendor no longer gives is; and a contact the extract found
deleted at the vendor, every row of it gone), guests' orders, cancelled orders and
orders in a currency without a rate, and rounds where nothing changes but time."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connectors.base import Connector
from mapping.model import Contact, Kind, Order, Rejection, RemoteState, SourceRecord
from sync.config import load_config
from sync.pipeline import Cycle, build_connectors
from sync.reports import CycleReport, SystemOutcome
from sync.state import StateStore

# The shops, contacts and changes of the resolution's own random change sets.
from tests.unit.test_resolution_snapshot import CONTACT_CHANGE, IDS, SHOP, SYSTEMS, order_changes, seed_contacts

START = datetime(2026, 1, 5, tzinfo=UTC)
# Short windows and low thresholds, so that a few days of clock cross them.
CONFIG = (
    """
[segments]
base_currency = "EUR"
rates = { USD = 0.5 }
tier_grace_days = 20
[segments.quadrant]
loyal_min_orders = 2
loyal_recency_days = 40
high_value_min_revenue = 60
[segments.lifecycle]
new_days = 10
active_days = 30
at_risk_days = 60
[[segments.tiers]]
name = "bronze"
min_spend_12m = 0
[[segments.tiers]]
name = "silver"
min_spend_12m = 25
[[segments.tiers]]
name = "gold"
min_spend_12m = 100
[[segments.rules]]
name = "drifting"
when = "spend_12m >= 20 and last_order < now - days(15)"
"""
    + SHOP.format(name="shop")
    + SHOP.format(name="web")
)
# The same with the merchant's calendar: windows, grace and the rule turn at Amsterdam's midnight.
ZONED = CONFIG.replace("[segments]\n", '[segments]\ntimezone = "Europe/Amsterdam"\n', 1)
# 23:30 in Amsterdam on the Thursday before the clocks go forward (29 March 2026).
ZONED_START = datetime(2026, 3, 26, 22, 30, tzinfo=UTC)
TABLES = {
    "profiles": "profile_id",
    "profile_members": "system, record_id",
    "identity_links": "a, b, kind, value",
    "profile_aliases": "alias",
    "segment_history": "profile_id, segment, entered_seq",
    "segment_runs": "seq, segment",
    "profile_tiers": "profile_id",
}


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Merchant:
    """One state and the cycle over it; `full` computes as a backfill does."""

    store: StateStore
    cycle: Cycle
    connectors: dict[str, Connector]
    clock: Clock
    full: bool
    read_by_difference: list[bool] = field(default_factory=list)  # per cycle: reused or by difference

    def run_seq(self) -> int:
        return self.store.begin_run("test", self.clock()).seq

    def _contact(self, record: SourceRecord) -> Contact | Rejection:
        email, link = record.payload["email"], record.payload.get("link")
        if email is None:
            return Rejection("no_email", "the test mapper wants an email")  # its mapped row is deleted
        return Contact(
            record.system,
            record.id,
            self.clock(),
            email=email,
            email_role=email.startswith("info@"),
            links=(link,) if link else (),
        )

    def _order(self, record: SourceRecord) -> Order | Rejection:
        customer, email, amount, currency, counts, days = record.payload["order"]
        if amount is None:
            return Rejection("no_amount", "the test mapper wants an amount")  # its mapped row is deleted
        created = self.clock() - timedelta(days=days)
        return Order(record.system, record.id, customer, email, Decimal(amount), currency, created, counts)

    def contact(self, system: str, rid: str, email: str | None, link: str | None = None) -> None:
        record = SourceRecord(system, Kind.CONTACT, rid, self.clock(), {"email": email, "link": link})
        self.store.store_page(system, Kind.CONTACT, [record], self._contact, self.run_seq())

    def order(self, system: str, oid: str, order: tuple[Any, ...]) -> None:
        record = SourceRecord(system, Kind.ORDER, oid, self.clock(), {"order": list(order)})
        self.store.store_page(system, Kind.ORDER, [record], self._order, self.run_seq())

    def deleted(self, system: str, rid: str) -> None:
        """The vendor deleted the contact: it leaves the state as the extract removes one absent
        from two full reads (its profile left to the compute)."""
        self.store.drop_deleted_contacts(system, [rid], ("contacts@absent", None), self.run_seq())

    def cycle_writes(self) -> tuple[dict[str, dict[str, RemoteState]], list[dict[str, Any]]]:
        """A cycle's compute and plan, as `Cycle.run` makes them after the extract: the desired
        state of every record and the writes planned."""
        run = self.store.begin_run("test", self.clock())
        report = CycleReport(run.run_id, False, self.clock())
        report.systems = {name: SystemOutcome(c.type) for name, c in self.connectors.items()}
        self.cycle.resolver.reuse_snapshot = not self.full
        # `sync` writes the segment history on a thread while it plans (`Cycle._compute_and_plan`);
        # the backfill here writes it first, so every comparison also holds the two ways alike.
        behind = not self.full
        desired = self.cycle._compute(self.connectors, report, run, behind=behind)
        assert (self.cycle.compute.history_behind is not None) == behind
        resolver = self.cycle.resolver
        self.read_by_difference.append(resolver.reused or resolver.identities_by_difference)
        # Where row numbers last (SQLite), resolving by difference reads only the touched contacts.
        assert resolver.contacts_by_difference == (resolver.identities_by_difference and not self.store.db.is_postgres)
        self.cycle._plan(self.connectors, report, desired)
        self.cycle.compute.history_written()
        return {name: dict(records) for name, records in desired.items()}, [c.to_json() for c in report.changes]

    def tables(self) -> dict[str, list[tuple[Any, ...]]]:
        with self.store.engine.connect() as conn:
            return {
                name: [tuple(row) for row in conn.exec_driver_sql(f"SELECT * FROM {name} ORDER BY {order}").all()]
                for name, order in TABLES.items()
            }


def merchant(folder: Path, clock: Clock, *, full: bool, url: str | None = None, config: str = CONFIG) -> Merchant:
    state = f"[state]\nurl = {json.dumps(url or 'sqlite:///crmsync.db')}\n"
    (folder / "crmsync.toml").write_text(state + config)
    loaded = load_config(folder / "crmsync.toml")
    store = StateStore(loaded.state_url())
    return Merchant(store, Cycle(loaded, store, clock=clock), build_connectors(loaded, threading.Event()), clock, full)


def seed(shop: Merchant) -> None:
    seed_contacts(shop)
    # Orders dated so that the clock moving a few days crosses the short windows above.
    shop.order("shop", "o1", ("1", None, "30.00", "EUR", True, 3))
    shop.order("web", "o2", (None, "anna@example.nl", "20.00", "EUR", True, 12))  # a guest's order
    shop.order("shop", "o3", ("2", None, "80.00", "USD", True, 25))  # another currency
    shop.order("web", "o4", ("2", None, "5.00", "EUR", False, 1))  # cancelled


# ----- random change sets --------------------------------------------------------------------------
# Amounts around the thresholds above; GBP has no rate (left out of every trait).
ORDER_CHANGE = order_changes(["4.00", "12.50", "60.00", None], ["EUR", "USD", "GBP"], 90)
# Days the clock moves before a round's cycle: none, a day, or across a window, grace or recency.
DAYS = st.sampled_from([0, 0, 1, 5, 9, 11, 16, 21, 31, 45, 61, 400])
# A contact deleted at the vendor (sync/extract.py `judge_absence`): every row of it goes.
DELETED = st.tuples(st.just("deleted"), SYSTEMS, IDS)
# A contact deleted at the vendor and back (restored) in the same round, to the same profile; and
# one deleted beside a contact quarantined (both found by the random change sets).
BACK = [(0, [("deleted", "shop", "1"), ("contact", "shop", "1", "bram@example.nl", None)])]
BESIDE = [(0, [("contact", "shop", "1", None, None)]), (0, [("deleted", "web", "2")])]
ROUND = st.tuples(DAYS, st.lists(st.one_of(CONTACT_CHANGE, ORDER_CHANGE, DELETED), max_size=4))
ROUNDS = st.lists(ROUND, min_size=1, max_size=6)


# Hours the clock moves with a zone: an hour or two over local midnight (22:00 or 23:00 UTC, the
# night the clocks change among them), a day give or take an hour, or across a window.
HOURS = st.sampled_from([0, 1, 2, 23, 24, 25, 24 * 11 + 1, 24 * 16 - 1, 24 * 31 + 1])
ZONED_ROUNDS = st.lists(st.tuples(HOURS, ROUND.map(lambda r: r[1])), min_size=1, max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=ROUNDS)
@example(rounds=BACK)
@example(rounds=BESIDE)
def test_a_cycle_by_difference_stores_and_plans_what_a_full_recompute_does(
    tmp_path_factory: Any, new_state_url: Callable[[], str], rounds: Any
) -> None:
    """On each backend: SQLite reads only the touched contacts, PostgreSQL every contact; both
    resolve only the touched components."""
    both_ways_alike(tmp_path_factory, new_state_url, [(timedelta(days=d), c) for d, c in rounds], Clock())


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=ZONED_ROUNDS)
@example(rounds=BACK)
@example(rounds=BESIDE)
def test_with_a_time_zone_a_cycle_by_difference_stores_and_plans_what_a_full_recompute_does(
    tmp_path_factory: Any, new_state_url: Callable[[], str], rounds: Any
) -> None:
    """`[segments] timezone` set, the clock moving by hours around Amsterdam's midnight through
    the week the clocks go forward: both ways still store and plan byte for byte alike."""
    steps = [(timedelta(hours=h), c) for h, c in rounds]
    both_ways_alike(tmp_path_factory, new_state_url, steps, Clock(ZONED_START), ZONED)


def both_ways_alike(
    tmp_path_factory: Any,
    new_state_url: Callable[[], str],
    rounds: list[tuple[timedelta, Any]],
    clock: Clock,
    config: str = CONFIG,
) -> None:
    by_difference = merchant(tmp_path_factory.mktemp("sync"), clock, full=False, url=new_state_url(), config=config)
    recomputed = merchant(tmp_path_factory.mktemp("backfill"), clock, full=True, url=new_state_url(), config=config)
    shops = (by_difference, recomputed)
    try:
        for shop in shops:
            seed(shop)
        assert by_difference.cycle_writes() == recomputed.cycle_writes()
        for step, changes in rounds:
            clock.now += step
            for shop in shops:
                for change in changes:
                    if change[0] == "contact":
                        shop.contact(*change[1:])
                    elif change[0] == "deleted":
                        shop.deleted(*change[1:])
                    else:
                        shop.order(*change[1:])
            writes = by_difference.cycle_writes()
            assert writes == recomputed.cycle_writes()
            assert by_difference.tables() == recomputed.tables()
        assert not any(recomputed.read_by_difference)
        # Not a vacuous comparison: after the first, every cycle of `sync` reused the resolution
        # or resolved by difference; but one after a contact deleted at the vendor, which resolves
        # identities in full (the stored members are no longer the snapshot's).
        deleted = [any(change[0] == "deleted" for change in changes) for _, changes in rounds]
        assert all(by or gone for by, gone in zip(by_difference.read_by_difference[1:], deleted, strict=True))
    finally:
        for shop in shops:
            shop.store.close()


def test_time_alone_moves_segments_and_tiers_alike(tmp_path: Path) -> None:
    """Nothing changes but the clock: the cycle by difference reuses the resolution, and still
    moves lifecycle, tier (after its grace) and the rule exactly as a full recompute does."""
    clock = Clock()
    for name in ("sync", "full"):
        (tmp_path / name).mkdir()
    shops = [merchant(tmp_path / name, clock, full=name == "full") for name in ("sync", "full")]
    plans: list[list[dict[str, Any]]] = []
    try:
        for shop in shops:
            seed(shop)
        for days in (0, 8, 14, 30, 60):
            clock.now += timedelta(days=days)
            writes = [shop.cycle_writes() for shop in shops]
            assert writes[0] == writes[1]
            assert shops[0].tables() == shops[1].tables()
            plans.append(writes[0][1])
        assert shops[0].cycle.resolver.reused  # nothing but time changed: the resolution is reused
        # WooCommerce takes the segments as a field: time alone moved what is planned.
        segments = [frozenset((c["id"], c["set_fields"]["crmsync_segments"]) for c in plan) for plan in plans]
        assert len(set(segments)) > 2
    finally:
        for shop in shops:
            shop.store.close()


def test_with_a_time_zone_time_alone_turns_a_window_at_local_midnight(tmp_path: Path) -> None:
    """Not a vacuous comparison: the zone reaches the cycle. Customer 2's last order was at 23:30
    in Amsterdam on 1 March; the 30 days of `active` end at local midnight on 1 April (22:00 UTC),
    not 24-hour periods later (22:30 UTC on 1 April) as without the setting, and the cycle by
    difference turns it there as the full recompute does."""
    clock = Clock(ZONED_START)
    shops = {}
    for name, config, full in (("sync", ZONED, False), ("full", ZONED, True), ("utc", CONFIG, False)):
        (tmp_path / name).mkdir()
        shops[name] = merchant(tmp_path / name, clock, full=full, config=config)
    try:
        for shop in shops.values():
            seed(shop)
        stages = []
        for step in (timedelta(0), timedelta(days=5, hours=-1), timedelta(hours=1)):
            clock.now += step
            writes = {name: shop.cycle_writes() for name, shop in shops.items()}
            assert writes["sync"] == writes["full"]
            assert shops["sync"].tables() == shops["full"].tables()
            stages.append(
                tuple(
                    next(t for t in writes[n][0]["shop"]["2"].fields["crmsync_segments"].split(",") if "lifecycle" in t)
                    for n in ("sync", "utc")
                )
            )
        assert stages == [
            ("lifecycle-active", "lifecycle-active"),
            ("lifecycle-active", "lifecycle-active"),  # 23:30 on 31 March in Amsterdam: day 30
            ("lifecycle-at-risk", "lifecycle-active"),  # 00:30 on 1 April: day 31 there, 30 in UTC
        ]
    finally:
        for shop in shops.values():
            shop.store.close()


def test_a_history_that_fails_behind_the_plan_fails_the_cycle_and_the_next_one_writes_it(tmp_path: Path) -> None:
    """The segment history is written on a thread while the cycle plans: when writing it fails, the
    cycle fails with that error once the plan is made (before any vendor is written), no thread is
    left writing, and the next cycle records the history from the profiles the failed one saved."""
    shop = merchant(tmp_path, Clock(), full=False)
    try:
        seed(shop)
        path = tmp_path / "crmsync.db"
        with closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON segment_history BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
        run = shop.store.begin_run("test", shop.clock())
        report = CycleReport(run.run_id, False, shop.clock())
        report.systems = {name: SystemOutcome(c.type) for name, c in shop.connectors.items()}
        with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
            shop.cycle._compute_and_plan(shop.connectors, report, run, True)
        assert report.changes  # planned: the failure surfaced after the plan, not instead of it
        assert not [t for t in threading.enumerate() if t.name == "crmsync-history"]
        assert shop.cycle.compute.history_behind is None
        tables = shop.tables()
        assert tables["profiles"] and not tables["segment_history"]
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("DROP TRIGGER refuse")
        shop.cycle_writes()
        entered = {(pid, segment) for pid, segment, *_ in shop.tables()["segment_history"]}
        with closing(sqlite3.connect(path)) as db:
            stored = db.execute("SELECT profile_id, segments FROM profiles").fetchall()
        members = {(pid, name) for pid, segments in stored for name in json.loads(segments)}
        assert members and entered == members
    finally:
        shop.store.close()


def test_a_plan_that_fails_keeps_its_error_when_the_history_behind_it_fails_too(tmp_path: Path) -> None:
    """Both fail: the cycle raises the plan's error (what stopped it), and the history's is logged,
    not put in its place."""
    from structlog.testing import capture_logs

    shop = merchant(tmp_path, Clock(), full=False)
    try:
        seed(shop)
        with closing(sqlite3.connect(tmp_path / "crmsync.db")) as db, db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON segment_history BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
            db.execute("ALTER TABLE pushed RENAME TO pushed_away")  # the plan reads it
        run = shop.store.begin_run("test", shop.clock())
        report = CycleReport(run.run_id, False, shop.clock())
        report.systems = {name: SystemOutcome(c.type) for name, c in shop.connectors.items()}
        with capture_logs() as logs, pytest.raises(sqlite3.OperationalError, match="no such table: pushed"):
            shop.cycle._compute_and_plan(shop.connectors, report, run, True)
        [logged] = [entry for entry in logs if entry["event"] == "segment history not written"]
        assert "disk on fire" in logged["error"]
        assert not [t for t in threading.enumerate() if t.name == "crmsync-history"]
    finally:
        shop.store.close()


def test_a_cycle_computes_and_plans_with_quick_switches_one_collection_and_no_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the cycle's main thread computes, the order readers and the save's writes thread get
    the interpreter lock back quickly (the assessment runs under the quick interval, which is put
    back after); the collector, paused over the compute and the plan, collects once after both,
    not once after each; and no commit of the compute checkpoints (tests/unit/test_wal_checkpoints.py)."""
    import gc
    import sys

    import sync.compute
    import sync.memory
    from sync.state.on_thread import QUICK_SWITCH_S
    from sync.state.sql import AUTOCHECKPOINT_PAGES

    shop = merchant(tmp_path, Clock(), full=False)
    try:
        seed(shop)
        seen: list[float] = []
        original = sync.compute.assess_profiles

        def assess(*args: Any, **kwargs: Any) -> Any:
            seen.append(sys.getswitchinterval())
            autocheckpoint.append(pages())
            return original(*args, **kwargs)

        def pages() -> int:
            with shop.store.engine.connect() as conn:
                return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())

        autocheckpoint: list[int] = []

        monkeypatch.setattr(sync.compute, "assess_profiles", assess)
        monkeypatch.setattr(sync.memory, "WORTH_COLLECTING", 0)  # a small cycle collects too
        full: list[int] = []

        def count(phase: str, info: dict[str, int]) -> None:
            if phase == "start" and info["generation"] == 2:
                full.append(1)

        run = shop.store.begin_run("test", shop.clock())
        report = CycleReport(run.run_id, False, shop.clock())
        report.systems = {name: SystemOutcome(c.type) for name, c in shop.connectors.items()}
        # The collector's on/off state is the process's, and a pause only collects where it found the
        # collector on: one suite run saw it off here (full == 0), left so by something else in this
        # test process. This test is about the cycle, so it starts from the state a cycle meets.
        collector_was_on = gc.isenabled()
        gc.enable()
        gc.callbacks.append(count)
        try:
            shop.cycle._compute_and_plan(shop.connectors, report, run, True)
        finally:
            gc.callbacks.remove(count)
            if not collector_was_on:
                gc.disable()
        assert seen == [QUICK_SWITCH_S]
        assert sys.getswitchinterval() != QUICK_SWITCH_S
        assert autocheckpoint == [0] and pages() == AUTOCHECKPOINT_PAGES
        assert report.changes and len(full) == 1
    finally:
        shop.store.close()


def test_the_ledger_the_plan_compares_with_is_read_on_a_thread_once_the_profiles_are_assessed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records' known states (`current_states`, SQLite sorting every record's) are read beside
    the compute, on a thread started once the profiles are assessed (not before: the order columns
    are let go then), one read per system the plan writes to, and the plan uses them: none is read
    again on the main thread. The plan is the one a plan reading them itself makes; no thread is
    left behind."""
    shop = merchant(tmp_path, Clock(), full=False)
    try:
        seed(shop)
        events: list[tuple[str, str]] = []
        assess, current_states = shop.cycle.compute.assess, shop.store.current_states

        def assessed(*args: Any, **kwargs: Any) -> Any:
            found = assess(*args, **kwargs)
            events.append(("assessed", threading.current_thread().name))
            return found

        def read(system: str) -> dict[str, RemoteState]:
            events.append((f"ledger {system}", threading.current_thread().name))
            return current_states(system)

        monkeypatch.setattr(shop.cycle.compute, "assess", assessed)
        monkeypatch.setattr(shop.store, "current_states", read)
        run = shop.store.begin_run("test", shop.clock())
        report = CycleReport(run.run_id, False, shop.clock())
        report.systems = {name: SystemOutcome(c.type) for name, c in shop.connectors.items()}
        shop.cycle._compute_and_plan(shop.connectors, report, run, True)
        writing = sorted(name for name, c in shop.connectors.items() if c.writes_back)
        assert writing and events[0] == ("assessed", "MainThread")
        assert sorted(events[1:]) == [(f"ledger {name}", "crmsync-ledger") for name in writing]
        assert not [t for t in threading.enumerate() if t.name == "crmsync-ledger"]

        # The same desired state planned against states read at plan time gives the same changes.
        again = CycleReport(run.run_id, False, shop.clock())
        again.systems = {name: SystemOutcome(c.type) for name, c in shop.connectors.items()}
        desired = shop.cycle._compute(shop.connectors, again, run, history=False)
        shop.cycle._plan(shop.connectors, again, desired)
        assert again.changes == report.changes
        assert events[-len(writing) :] == [(f"ledger {name}", "MainThread") for name in writing]
    finally:
        shop.store.close()


def test_a_ledger_read_ahead_that_fails_ends_the_cycle_with_its_error_and_no_thread_left(tmp_path: Path) -> None:
    """The plan raises what the read beside the compute raised, before anything is written."""
    shop = merchant(tmp_path, Clock(), full=False)
    try:
        seed(shop)
        with closing(sqlite3.connect(tmp_path / "crmsync.db")) as db, db:
            db.execute("ALTER TABLE pushed RENAME TO pushed_away")  # the ledger read joins it
        run = shop.store.begin_run("test", shop.clock())
        report = CycleReport(run.run_id, False, shop.clock())
        report.systems = {name: SystemOutcome(c.type) for name, c in shop.connectors.items()}
        with pytest.raises(sqlite3.OperationalError, match="no such table: pushed"):
            shop.cycle._compute_and_plan(shop.connectors, report, run, True)
        assert not report.changes
        assert not [t for t in threading.enumerate() if t.name in ("crmsync-ledger", "crmsync-history")]
    finally:
        shop.store.close()
