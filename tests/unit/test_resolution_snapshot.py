"""The resolution snapshot (sync/resolution_snapshot.py): a cycle whose inputs did not change reuses
the last compute's resolution, and what it reuses is exactly what resolving in full gives. Random
change sets (new, edited, merged, split and quarantined contacts, new, edited and cancelled orders,
guests' orders, and rounds with nothing changed) each compare the two on a real SQLite state."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import Connector
from mapping.model import Contact, Kind, Order, Rejection, SourceRecord
from sync import resolution_snapshot
from sync.config import LoadedConfig, load_config
from sync.pipeline import Cycle, build_connectors
from sync.reports import CycleReport, SystemOutcome
from sync.resolve import Resolved
from sync.state import StateStore
from sync.state.profile_writer import members_digest
from sync.stored_plan import plan_from_stored

NOW = datetime(2026, 11, 25, tzinfo=UTC)
SHOP = """
[systems.{name}]
type = "woocommerce"
base_url = "http://127.0.0.1:9"
consumer_key = "ck_test"
consumer_secret = "cs_test"
retry = {{ attempts = 1 }}
"""
CONFIG = (
    """
[state]
url = "sqlite:///crmsync.db"
[segments]
base_currency = "EUR"
rates = { USD = 0.5 }
"""
    + SHOP.format(name="shop")
    + SHOP.format(name="web")
)
EMAILS = ["anna@example.nl", "bram@example.nl", "cor@example.nl", "info@example.nl", "dirk@example.nl"]


def _contact(record: SourceRecord) -> Contact | Rejection:
    email, link = record.payload["email"], record.payload.get("link")
    if email is None:
        return Rejection("no_email", "the test mapper wants an email")  # its mapped row is deleted
    links = (link,) if link else ()
    return Contact(record.system, record.id, NOW, email=email, email_role=email.startswith("info@"), links=links)


def _order(record: SourceRecord) -> Order | Rejection:
    customer, email, amount, currency, counts, days = record.payload["order"]
    if amount is None:
        return Rejection("no_amount", "the test mapper wants an amount")  # its mapped row is deleted
    created = NOW - timedelta(days=days)
    return Order(record.system, record.id, customer, email, Decimal(amount), currency, created, counts)


@dataclass
class Merchant:
    loaded: LoadedConfig
    store: StateStore
    cycle: Cycle
    connectors: dict[str, Connector]

    def run_seq(self) -> int:
        return self.store.begin_run("test", NOW).seq

    def contact(self, system: str, rid: str, email: str | None, link: str | None = None) -> None:
        record = SourceRecord(system, Kind.CONTACT, rid, NOW, {"email": email, "link": link})
        self.store.store_page(system, Kind.CONTACT, [record], _contact, self.run_seq())

    def order(self, system: str, oid: str, order: tuple[Any, ...]) -> None:
        record = SourceRecord(system, Kind.ORDER, oid, NOW, {"order": list(order)})
        self.store.store_page(system, Kind.ORDER, [record], _order, self.run_seq())

    def resolve(self, reuse: bool) -> Resolved:
        self.cycle.resolver.reuse_snapshot = reuse
        try:
            return self.cycle._resolve()
        finally:
            self.cycle.resolver.reuse_snapshot = True

    def compute(self) -> None:
        """A cycle's compute (profiles, history) as `Cycle.run` does it after extract."""
        run = self.store.begin_run("test", NOW)
        report = CycleReport(run.run_id, False, NOW)
        report.systems = {name: SystemOutcome(c.type) for name, c in self.connectors.items()}
        self.cycle._compute(self.connectors, report, run)


def merchant(folder: Path, config: str = CONFIG) -> Merchant:
    (folder / "crmsync.toml").write_text(config)
    loaded = load_config(folder / "crmsync.toml")
    store = StateStore(loaded.state_url())
    return Merchant(loaded, store, Cycle(loaded, store, clock=lambda: NOW), build_connectors(loaded, threading.Event()))


def assert_same(reused: Resolved, full: Resolved) -> None:
    assert list(reused.members.items()) == list(full.members.items())
    assert (reused.profiles, reused.systems) == (full.profiles, full.systems)
    assert (reused.aliases, reused.links, reused.components) == (full.aliases, full.links, full.components)
    if reused.previous is None:  # a reuse hands save_profiles none: the stored one is the snapshot's
        assert full.previous == {key: pid for pid, keys in reused.members.items() for key in keys}
    else:
        assert reused.previous == full.previous
    for name in ("profile", "system", "cents", "created", "counts"):
        mine, theirs = getattr(reused.orders, name), getattr(full.orders, name)
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), name
    if reused.guests is not None:  # the guest map, as kept for the next cycle
        assert reused.guests == full.guests
    if reused.contact_rows is not None:  # each contact row's profile and system, as kept for the next cycle
        assert full.contact_rows is not None
        for mine, theirs in zip(reused.contact_rows, full.contact_rows, strict=True):
            assert np.array_equal(mine, theirs)


def seed_contacts(shop: Any) -> None:
    """Five contacts: one person in both systems, two joined by a link, a role address."""
    shop.contact("shop", "1", "anna@example.nl")
    shop.contact("web", "1", "anna@example.nl")  # the same person in the other system
    shop.contact("shop", "2", "bram@example.nl", link="web:2")
    shop.contact("web", "2", "b.bram@example.nl")  # joined by the link
    shop.contact("shop", "3", "info@example.nl")  # a role address joins nobody


def populated(folder: Path, config: str = CONFIG) -> Merchant:
    shop = merchant(folder, config)
    seed_contacts(shop)
    shop.order("shop", "o1", ("1", None, "10.00", "EUR", True, 3))
    shop.order("web", "o2", (None, "anna@example.nl", "20.00", "EUR", True, 40))  # a guest's order
    shop.order("shop", "o3", ("2", None, "40.00", "USD", True, 500))  # another currency
    shop.order("web", "o4", ("2", None, "5.00", "EUR", False, 1))  # cancelled
    shop.compute()
    return shop


def test_an_unchanged_cycle_reuses_the_resolution_and_it_is_the_full_one(tmp_path: Path, state_url: str) -> None:
    """On each backend (the `state_url` fixture: SQLite and PostgreSQL)."""
    shop = populated(tmp_path, CONFIG.replace('"sqlite:///crmsync.db"', f'"{state_url}"'))
    reused = shop.resolve(reuse=True)
    assert shop.cycle.resolver.reused and reused.previous is None
    full = shop.resolve(reuse=False)
    assert not shop.cycle.resolver.reused
    assert_same(reused, full)
    assert len(reused.profiles) == 3 and reused.orders.size == 4
    assert full.members_digest is None  # resolved, not yet kept
    shop.cycle.resolver.keep(full)  # digested once, for the snapshot and then for save_profiles
    assert full.members_digest == members_digest(full.members) == shop.store.get_meta("members_digest")
    assert shop.resolve(reuse=True).members_digest == full.members_digest and shop.cycle.resolver.reused


def test_a_changed_contact_resolves_only_its_components_on_each_backend(tmp_path: Path, state_url: str) -> None:
    """SQLite reads only the touched contacts (its row numbers last); PostgreSQL reads every
    contact and resolves again only the touched components. Both give the full resolution."""
    shop = populated(tmp_path, CONFIG.replace('"sqlite:///crmsync.db"', f'"{state_url}"'))
    shop.contact("web", "1", "bram@example.nl")  # Anna's second record joins Bram's two
    shop.contact("web", "5", "eva@example.nl")  # someone new
    resolver = shop.cycle.resolver
    again = shop.resolve(reuse=True)
    assert resolver.identities_by_difference and not resolver.reused
    assert resolver.contacts_by_difference == state_url.startswith("sqlite")
    full = shop.resolve(reuse=False)
    assert_same(again, full)
    assert again.members[again.previous["shop:2"]] == ["shop:2", "web:1", "web:2"]
    assert again.members[again.previous["shop:1"]] == ["shop:1"]  # Anna keeps her id


def test_a_record_linking_to_one_not_yet_stored_joins_it_when_it_arrives(tmp_path: Path) -> None:
    """shop:4 names web:4, which is not stored: it stays alone. When web:4 arrives, shop:4 has not
    changed, and only its link says they are one."""
    shop = populated(tmp_path)
    shop.contact("shop", "4", "dirk@example.nl", link="web:4")
    shop.compute()
    shop.contact("web", "4", "d.dirk@example.nl")
    again = shop.resolve(reuse=True)
    assert shop.cycle.resolver.contacts_by_difference
    assert_same(again, shop.resolve(reuse=False))
    assert again.members[again.previous["shop:4"]] == ["shop:4", "web:4"]
    shop.compute()
    shop.contact("web", "4", None)  # quarantined: the highest contact row is deleted
    again = shop.resolve(reuse=True)
    assert shop.cycle.resolver.contacts_by_difference
    assert_same(again, shop.resolve(reuse=False))  # the contact rows end where a full read's do


def test_a_cycle_resolves_a_contact_whose_given_name_is_a_dot(tmp_path: Path) -> None:
    """A shop that demands a first name gets "." from some customers, and the name parser keeps it.
    Such a contact sharing a mobile number with a named one stopped every cycle in identity
    resolution (IndexError); the number now joins them, as it would with no name at all."""
    from mapping.normalize.names import parse_name

    shop = merchant(tmp_path)

    def mapper(record: SourceRecord) -> Contact:
        given = parse_name(record.payload["first"], None, "Jansen")
        assert given is not None and given.given == record.payload["first"]  # "." is kept as given
        email = record.payload["email"]
        return Contact(
            record.system,
            record.id,
            NOW,
            email=email,
            phone="+31612345678",
            phone_kind="mobile",
            given_name=given.given,
        )

    for system, first, email in (("shop", ".", "a@example.nl"), ("web", "Jan", "b@example.nl")):
        record = SourceRecord(system, Kind.CONTACT, "1", NOW, {"first": first, "email": email})
        shop.store.store_page(system, Kind.CONTACT, [record], mapper, shop.run_seq())
    assert list(shop.resolve(reuse=False).members.values()) == [["shop:1", "web:1"]]


def test_a_cycle_keeps_a_familys_number_from_joining_its_members_through_a_nameless_record(tmp_path: Path) -> None:
    """Jan and Piet share their family's mobile with a shop record that has no given name: the
    number joins none of them (the nameless record sorted first and joined both into one profile),
    in a full resolution and in one by difference after an unrelated contact arrives."""
    shop = merchant(tmp_path)

    def mapper(record: SourceRecord) -> Contact:
        first = record.payload["first"]
        return Contact(
            record.system,
            record.id,
            NOW,
            email=record.payload["email"],
            phone="+31612345678",
            phone_kind="mobile",
            given_name=first,
        )

    for system, rid, first in (("shop", "1", None), ("web", "1", "Jan"), ("web", "2", "Piet")):
        record = SourceRecord(system, Kind.CONTACT, rid, NOW, {"first": first, "email": f"{system}{rid}@example.nl"})
        shop.store.store_page(system, Kind.CONTACT, [record], mapper, shop.run_seq())
    full = shop.resolve(reuse=False)
    assert sorted(full.members.values()) == [["shop:1"], ["web:1"], ["web:2"]]
    shop.compute()
    shop.contact("web", "3", "cor@example.nl")
    again = shop.resolve(reuse=True)
    assert shop.cycle.resolver.identities_by_difference
    assert_same(again, shop.resolve(reuse=False))
    assert sorted(again.members.values()) == [["shop:1"], ["web:1"], ["web:2"], ["web:3"]]


def test_a_vacuumed_state_resolves_in_full_once(tmp_path: Path) -> None:
    """`VACUUM` may renumber rowids (SQLite's documentation; 3.40 kept them in our trials), and the
    kept contact rows and the orders read by difference are keyed by them: after one, neither the
    snapshot nor a resolution by difference is used, until a full one has kept a new snapshot."""
    shop = populated(tmp_path)
    with shop.store.engine.connect() as conn:
        conn.exec_driver_sql("VACUUM")
    assert_same(shop.resolve(reuse=True), shop.resolve(reuse=False))
    assert not shop.cycle.resolver.reused
    shop.contact("web", "3", "cor@example.nl")
    shop.resolve(reuse=True)
    resolver = shop.cycle.resolver
    assert not (resolver.reused or resolver.identities_by_difference or resolver.orders_by_difference)
    shop.compute()
    shop.contact("web", "4", "dirk@example.nl")
    again = shop.resolve(reuse=True)
    assert resolver.identities_by_difference and resolver.contacts_by_difference
    assert_same(again, shop.resolve(reuse=False))


def test_a_state_restored_from_a_dump_resolves_in_full_once(tmp_path: Path) -> None:
    """A dump read back (`sqlite3 .dump`, here `iterdump`) numbers the rows afresh, closing the gap
    a deleted contact left, and may carry the same schema cookie: the kept row witnesses find the
    rows above the gap moved, and the cycle resolves in full instead of keying rows by numbers that
    now name other contacts and orders."""
    shop = populated(tmp_path)
    shop.contact("shop", "2", None)  # quarantined: its contact row goes, a gap below the others
    shop.order("web", "o2", (None, "anna@example.nl", None, "EUR", True, 40))  # and an order's
    shop.compute()
    shop.store.close()
    state = tmp_path / "crmsync.db"
    with closing(sqlite3.connect(state)) as old:
        script = "\n".join(old.iterdump())
    for path in tmp_path.glob("crmsync.db*"):
        path.unlink()
    with closing(sqlite3.connect(state)) as new:
        new.executescript(script)
    shop = merchant(tmp_path)
    shop.contact("web", "5", "eva@example.nl")
    again = shop.resolve(reuse=True)
    resolver = shop.cycle.resolver
    assert not (resolver.reused or resolver.identities_by_difference or resolver.orders_by_difference)
    assert_same(again, shop.resolve(reuse=False))
    shop.compute()
    shop.contact("web", "6", "frits@example.nl")
    again = shop.resolve(reuse=True)
    assert resolver.identities_by_difference and resolver.contacts_by_difference and resolver.orders_by_difference
    assert_same(again, shop.resolve(reuse=False))
    shop.store.close()


def test_rows_written_again_at_the_top_leave_the_spread_witnesses_to_vouch(tmp_path: Path) -> None:
    """A busy shop edits its newest customers: with the eight highest contact rows all written
    again since the snapshot, the witnesses spread below them still vouch, and the cycle stays by
    difference. A table of eight rows or fewer is witnessed whole: all of them written again leaves
    no row kept by number, and nothing to vouch for."""
    shop = populated(tmp_path)
    for n in range(10, 20):
        shop.contact("web", str(n), f"klant{n}@example.nl")
    shop.compute()
    for n in range(12, 20):  # the eight highest rows
        shop.contact("web", str(n), f"klant{n}@voorbeeld.nl")
    again = shop.resolve(reuse=True)
    assert shop.cycle.resolver.identities_by_difference and shop.cycle.resolver.orders_by_difference
    assert_same(again, shop.resolve(reuse=False))
    shop.compute()
    for oid, days in (("o1", 4), ("o2", 41), ("o3", 501), ("o4", 2)):  # every order written again
        shop.order("shop" if oid in ("o1", "o3") else "web", oid, ("1", None, "11.00", "EUR", True, days))
    again = shop.resolve(reuse=True)
    assert shop.cycle.resolver.orders_by_difference
    assert_same(again, shop.resolve(reuse=False))


def test_a_stored_profile_no_member_holds_still_takes_its_id(tmp_path: Path) -> None:
    """Resolving again reads only the touched profiles' ages, and counts on the stored profiles
    being the snapshot's. A profile row beside them (written by hand, say) holds the id a new
    record's profile would take first: the count tells, and the new profile takes another."""
    from mapping.identity import new_profile_id

    shop = populated(tmp_path)
    first_choice = new_profile_id("shop:7", set())
    with shop.store.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO profiles (profile_id, created_seq, segments, tier, traits, fingerprint, updated_seq) "
            "VALUES (?, 1, '[]', NULL, '{}', 0, 1)",
            (first_choice,),
        )
    shop.contact("shop", "7", "eva@example.nl")
    again = shop.resolve(reuse=True)
    assert shop.cycle.resolver.contacts_by_difference
    assert_same(again, shop.resolve(reuse=False))
    assert first_choice not in again.members and ["shop:7"] in again.members.values()


def test_a_system_that_loses_its_last_contact_leaves_the_systems(tmp_path: Path) -> None:
    """`old` is not configured any more, but its one contact is still stored: it is a system of
    the resolution. When that contact goes, the kept contact rows no longer name a system of this
    cycle's."""
    shop = populated(tmp_path)
    shop.contact("old", "1", "gert@example.nl")
    shop.compute()
    shop.contact("old", "1", None)  # quarantined: its row is deleted
    again = shop.resolve(reuse=True)
    assert shop.cycle.resolver.contacts_by_difference
    assert_same(again, shop.resolve(reuse=False))
    assert "old" not in again.systems


def test_only_a_cycle_that_saves_profiles_keeps_a_snapshot(tmp_path: Path) -> None:
    """`report --campaign` resolves without the writer lock: it may read a snapshot, never write one."""
    shop = populated(tmp_path)
    kept = snapshot_rows(shop.store)
    shop.order("shop", "o9", ("1", None, "3.00", "EUR", True, 2))
    resolved = shop.resolve(reuse=True)
    assert not shop.cycle.resolver.reused and resolved.inputs is not None
    assert snapshot_rows(shop.store) == kept
    shop.compute()
    assert snapshot_rows(shop.store) != kept


def test_a_plan_from_stored_records_resolves_without_keeping_a_snapshot(tmp_path: Path) -> None:
    """`plan` beside a running daemon opens the state read-only: a change stored since the last
    compute makes it resolve in full, and it must not try to keep that resolution."""
    shop = populated(tmp_path)
    shop.order("shop", "o9", ("1", None, "3.00", "EUR", True, 2))
    kept = snapshot_rows(shop.store)
    report = plan_from_stored(shop.loaded, threading.Event())
    assert report.profiles == 3
    assert snapshot_rows(shop.store) == kept


def snapshot_rows(store: StateStore) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT name, inputs, data FROM resolution_snapshot ORDER BY name").all())


def test_a_quarantined_contact_is_a_change_though_no_row_is_written(tmp_path: Path) -> None:
    """Its mapped row is deleted and nothing in `contacts` gets a newer run number: the row count
    is what tells."""
    shop = populated(tmp_path)
    shop.contact("web", "2", None)
    resolved = shop.resolve(reuse=True)
    assert not shop.cycle.resolver.reused
    assert "web:2" not in {key for keys in resolved.members.values() for key in keys}


def test_settings_that_resolution_reads_are_inputs(tmp_path: Path) -> None:
    populated(tmp_path)
    for changed in (
        CONFIG.replace("USD = 0.5", "USD = 0.6"),
        CONFIG.replace("[segments]", "[identity]\nmax_records_per_profile = 3\n[segments]"),
    ):
        shop = merchant(tmp_path, changed)
        shop.resolve(reuse=True)
        assert not shop.cycle.resolver.reused


def test_a_crash_between_the_snapshot_and_the_profiles_resolves_in_full(tmp_path: Path) -> None:
    """The cycle kept its snapshot and died before it saved the profiles: the stored members are
    still the last cycle's, and only a full resolution says which of them to write."""
    shop = populated(tmp_path)
    shop.contact("web", "1", "dirk@example.nl")  # Anna's second record is someone else's now
    shop.cycle.resolver.keep(shop.resolve(reuse=True))  # the crash comes before `save_profiles`
    assert not shop.cycle.resolver.reused
    reused = shop.resolve(reuse=True)
    assert not shop.cycle.resolver.reused
    full = shop.resolve(reuse=False)
    assert_same(reused, full)
    assert full.previous["web:1"] == full.previous["shop:1"]  # as stored: still one profile
    assert full.members[full.previous["shop:1"]] == ["shop:1"]  # and now two


def test_forget_drops_the_snapshot_that_names_the_person(tmp_path: Path) -> None:
    shop = populated(tmp_path)
    anna = shop.store.profiles_for(record=("shop", "1"))
    shop.store.erasures.erase(anna, NOW)
    with shop.store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM resolution_snapshot").scalar() == 0
    assert shop.store.get_meta("members_digest") is None  # the stored members are no longer the digest's
    resolved = shop.resolve(reuse=True)
    assert not shop.cycle.resolver.reused
    assert "shop:1" not in {key for keys in resolved.members.values() for key in keys}


# ----- random change sets --------------------------------------------------------------------------
SYSTEMS = st.sampled_from(["shop", "web"])
IDS = st.sampled_from(["1", "2", "3", "4", "5"])
CONTACT_CHANGE = st.tuples(
    st.just("contact"),
    SYSTEMS,
    IDS,
    st.one_of(st.none(), st.sampled_from(EMAILS)),  # None: quarantined
    st.one_of(st.none(), st.builds(lambda s, i: f"{s}:{i}", SYSTEMS, IDS)),
)


def order_changes(amounts: list[str | None], currencies: list[str], max_days: int) -> st.SearchStrategy[Any]:
    """New or edited orders: a customer's or a guest's, an amount (None: quarantined), a currency,
    counted or cancelled, and how many days old."""
    return st.tuples(
        st.just("order"),
        SYSTEMS,
        st.sampled_from([f"o{n}" for n in range(1, 9)]),
        st.tuples(
            st.one_of(st.none(), IDS),  # None: a guest's order
            st.one_of(st.none(), st.sampled_from(EMAILS)),
            st.sampled_from(amounts),
            st.sampled_from(currencies),
            st.booleans(),
            st.integers(0, max_days),
        ),
    )


ORDER_CHANGE = order_changes(["1.00", "12.50", "99.99", None], ["EUR", "USD", ""], 800)
ROUNDS = st.lists(st.lists(st.one_of(CONTACT_CHANGE, ORDER_CHANGE), max_size=4), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=ROUNDS)
def test_random_change_sets_reuse_only_what_a_full_resolution_gives(tmp_path_factory: Any, rounds: Any) -> None:
    """Each round's changes, then the cycle's resolution (a reuse, or orders read by difference)
    against one made in full from every stored row."""
    shop = populated(tmp_path_factory.mktemp("state"))
    for changes in rounds:
        counts_before = order_count(shop.store)
        for change in changes:
            if change[0] == "contact":
                shop.contact(*change[1:])
            else:
                shop.order(*change[1:])
        reused = shop.resolve(reuse=True)
        resolver = shop.cycle.resolver
        was_reused, by_difference = resolver.reused, resolver.orders_by_difference
        identities_again = resolver.identities_by_difference
        assert resolver.contacts_by_difference == identities_again  # SQLite: no untouched contact read
        assert_same(reused, shop.resolve(reuse=False))
        assert not resolver.orders_by_difference  # a full resolution reads every order
        assert not resolver.identities_by_difference  # nor resolves only where things changed
        if not changes:
            assert was_reused  # nothing changed since the last compute: nothing to resolve again
        elif not was_reused:
            assert identities_again  # new, edited or deleted contacts: only their components again
            # Only an order deleted since (quarantined) makes the cycle read every order again.
            deleted = any(c[0] == "order" and c[3][2] is None for c in changes)
            assert by_difference or deleted
            if not deleted:
                assert order_count(shop.store) >= counts_before
        shop.compute()
        # What the compute stored (by difference, after changes) is the resolution it made.
        assert stored_members(shop.store) == {key: pid for pid, keys in reused.members.items() for key in keys}
        assert stored_links(shop.store) == set(reused.links)
    shop.store.close()


def stored_members(store: StateStore) -> dict[str, str]:
    with store.engine.connect() as conn:
        sql = "SELECT system || ':' || record_id, profile_id FROM profile_members"
        return {str(key): str(pid) for key, pid in conn.exec_driver_sql(sql).all()}


def stored_links(store: StateStore) -> set[tuple[str, ...]]:
    with store.engine.connect() as conn:
        return {tuple(row) for row in conn.exec_driver_sql("SELECT a, b, kind, value FROM identity_links").all()}


def order_count(store: StateStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT COUNT(*) FROM orders").scalar_one())


def test_backfill_resolves_in_full_and_sync_reuses(tmp_path: Path) -> None:
    """Both cycles find the systems unreachable (nothing read, nothing changed) and compute from
    the stored records."""
    shop = populated(tmp_path)
    shop.cycle.run("sync")  # maps the stored records again first (the mapping version is new here)
    assert not shop.cycle.resolver.reused
    shop.cycle.run("sync")
    assert shop.cycle.resolver.reused
    shop.cycle.run("backfill", full=["shop", "web"])
    assert not shop.cycle.resolver.reused


def test_the_code_that_resolved_is_an_input(tmp_path: Path, monkeypatch: Any) -> None:
    """A release that changes resolution never reuses an older one's snapshot, FORMAT raised or not."""
    shop = populated(tmp_path)
    monkeypatch.setattr(resolution_snapshot, "CRMSYNC_VERSION", "99.0.0")
    shop.resolve(reuse=True)
    assert not shop.cycle.resolver.reused
    monkeypatch.undo()
    monkeypatch.setattr(resolution_snapshot, "MAPPING_VERSION", "99")
    shop.resolve(reuse=True)
    assert not shop.cycle.resolver.reused


def test_record_ids_with_separators_cannot_make_two_assignments_read_alike() -> None:
    assert members_digest({"p_1": ["shop:a\tb"]}) != members_digest({"p_1": ["shop:a", "b"]})
    assert members_digest({"p_1": ["shop:a\nb"]}) != members_digest({"p_1": ["shop:a"], "b": []})
    assert members_digest({"p_1": ["shop:1"]}) == members_digest({"p_1": ["shop:1"]})
    # The bytes it hashes (a stored digest must keep matching after a release): per profile each
    # text with its length first, then a newline; a profile with no record, one, and two.
    members = {"p_a": [], "p_b": ["shop:1"], "p_c": ["shop:2", "web:é"]}
    text = "3:p_a\n3:p_b6:shop:1\n3:p_c6:shop:25:web:é\n"
    assert members_digest(members) == hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    many = {f"p_{i}": [f"shop:{i}"] * (i % 3) for i in range(70_000)}  # over one hashing batch
    lines = "".join(f"{len(p)}:{p}" + "".join(f"{len(k)}:{k}" for k in keys) + "\n" for p, keys in many.items())
    assert members_digest(many) == hashlib.blake2b(lines.encode(), digest_size=16).hexdigest()


def test_a_digest_made_by_difference_names_the_change() -> None:
    from sync.state.profile_writer import members_digest_after

    start = members_digest({"p_1": ["shop:1"], "p_2": ["web:1"]})
    merged_ = members_digest_after(start, [("p_1", ["shop:1"]), ("p_2", ["web:1"])], [("p_1", ["shop:1", "web:1"])])
    assert merged_ == members_digest_after(
        start, [("p_1", ["shop:1"]), ("p_2", ["web:1"])], [("p_1", ["shop:1", "web:1"])]
    )
    assert merged_ not in (start, members_digest_after(start, [("p_2", ["web:1"])], [("p_1", ["shop:1", "web:1"])]))
    assert merged_ != members_digest_after(
        start, [("p_1", ["shop:1"]), ("p_2", ["web:1"])], [("p_2", ["shop:1", "web:1"])]
    )
    assert merged_ != members_digest_after(members_digest({}), [("p_1", ["shop:1"])], [("p_1", ["shop:1", "web:1"])])


def test_orders_read_by_difference_follow_a_contact_row_given_to_another(tmp_path: Path) -> None:
    """SQLite gives a deleted row's number to the next insert: an order that named the deleted
    contact must not attach to the contact that now holds its row number."""
    shop = populated(tmp_path)
    shop.contact("shop", "4", "dirk@example.nl")  # the highest row number
    shop.order("shop", "o5", ("4", None, "7.00", "EUR", True, 2))
    shop.compute()
    shop.contact("shop", "4", None)  # quarantined: its row is deleted
    shop.contact("web", "4", "cor@example.nl")  # inserted: SQLite numbers it as the deleted one was
    with shop.store.engine.connect() as conn:
        numbers = dict(conn.exec_driver_sql("SELECT system || ':' || record_id, rowid FROM contacts").all())
    assert numbers["web:4"] == 6  # the deleted shop:4's number (five contacts were stored before it)
    by_difference = shop.resolve(reuse=True)
    assert shop.cycle.resolver.orders_by_difference
    full = shop.resolve(reuse=False)
    assert_same(by_difference, full)
    cor = by_difference.profiles.index(next(pid for pid, keys in full.members.items() if "web:4" in keys))
    assert cor not in by_difference.orders.profile.tolist()  # o5 is nobody's now: its customer is gone
    assert by_difference.orders.size == 5


def test_orders_read_by_difference_after_new_and_edited_orders_and_contacts(tmp_path: Path) -> None:
    shop = populated(tmp_path)
    shop.order("web", "o6", (None, "bram@example.nl", "3.00", "USD", True, 5))  # a new guest order
    shop.order("shop", "o1", ("1", None, "11.00", "EUR", True, 3))  # edited
    shop.order("shop", "o7", ("5", None, "8.00", "EUR", True, 9))  # names a contact not yet stored
    shop.contact("shop", "5", "eva@example.nl")  # ... now stored
    shop.contact("web", "1", "dirk@example.nl")  # edited: Anna's second record is someone else's
    by_difference = shop.resolve(reuse=True)
    assert shop.cycle.resolver.orders_by_difference and not shop.cycle.resolver.reused
    assert_same(by_difference, shop.resolve(reuse=False))
    assert by_difference.orders.size == 6
    shop.compute()
    shop.order("shop", "o3", ("2", None, None, "USD", True, 500))  # quarantined: an order deleted
    shop.order("shop", "o8", ("2", None, "1.00", "EUR", True, 1))  # and a new one: the count is the same
    counted = shop.resolve(reuse=True)
    assert not shop.cycle.resolver.orders_by_difference  # deleted since: every order read again
    assert_same(counted, shop.resolve(reuse=False))


def test_an_order_stored_before_its_customer_attaches_when_the_customer_arrives(tmp_path: Path) -> None:
    """o9 names shop:6, not stored: it is nobody's. When shop:6 arrives (o9 unchanged), o9 is read
    again, found through the customer index, and attaches to shop:6's profile."""
    shop = populated(tmp_path)
    shop.order("shop", "o9", ("6", None, "9.00", "EUR", True, 4))
    shop.compute()
    shop.contact("shop", "6", "fenna@example.nl")
    again = shop.resolve(reuse=True)
    assert shop.cycle.resolver.contacts_by_difference and shop.cycle.resolver.orders_by_difference
    assert_same(again, shop.resolve(reuse=False))
    fenna = again.profiles.index(next(pid for pid, keys in again.members.items() if keys == ["shop:6"]))
    assert again.orders.profile.tolist().count(fenna) == 1


def test_guests_addresses_are_looked_up_again_only_where_a_change_may_move_them(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The guest map kept beside the contact rows vouches for every address whose holders did
    not change: a new contact elsewhere looks up nothing; one taking a guest's address, or an edit
    in the profile an address belongs to, looks up that address again."""
    from sync.state.compute import ComputeSnapshot

    asked: list[list[str]] = []
    look_up = ComputeSnapshot.personal_email_rows

    def counted(self: ComputeSnapshot, emails: Any) -> Any:
        asked.append(list(emails))
        return look_up(self, emails)

    monkeypatch.setattr(ComputeSnapshot, "personal_email_rows", counted)
    shop = populated(tmp_path)
    shop.order("web", "o5", (None, "cor@example.nl", "6.00", "EUR", True, 2))  # nobody holds cor@ yet
    shop.compute()
    checks = [
        (("shop", "5", "eva@example.nl"), []),  # someone new, no guest's address
        (("shop", "4", "cor@example.nl"), ["cor@example.nl"]),  # takes the guest's address
        (("web", "6", "eva@example.nl", "shop:1"), ["anna@example.nl"]),  # links into Anna's profile
    ]
    for change, looked_up in checks:
        shop.contact(*change)
        asked.clear()
        again = shop.resolve(reuse=True)
        assert shop.cycle.resolver.contacts_by_difference
        assert [email for call in asked for email in call] == looked_up
        assert_same(again, shop.resolve(reuse=False))
        shop.compute()
    cor = again.profiles.index(next(pid for pid, keys in again.members.items() if "shop:4" in keys))
    assert cor in again.orders.profile.tolist()  # o5 is cor's now
    # An address on four records of one system is shared (the limit is three): nobody's guest.
    shop.order("web", "o6", (None, "familie@example.nl", "7.00", "EUR", True, 2))
    for rid in ("7", "8", "9", "10"):
        shop.contact("shop", rid, "familie@example.nl")
    shop.compute()
    shop.contact("shop", "10", "tess@example.nl")  # three are left: they join, and o6 is theirs
    asked.clear()
    again = shop.resolve(reuse=True)
    assert "familie@example.nl" in [email for call in asked for email in call]
    assert_same(again, shop.resolve(reuse=False))
    family = again.profiles.index(next(pid for pid, keys in again.members.items() if "shop:7" in keys))
    assert again.orders.profile.tolist().count(family) == 1
    # Shared again, then every holder moves away: the address is nobody's, not still shared.
    shop.contact("shop", "10", "familie@example.nl")
    shop.compute()
    for rid in ("7", "8", "9", "10"):
        shop.contact("shop", rid, f"lid{rid}@example.nl")
    again = shop.resolve(reuse=True)
    assert_same(again, shop.resolve(reuse=False))
    assert again.guests is not None and again.guests["familie@example.nl"] == -1


def test_order_columns_are_stored_narrow_and_read_back_exactly() -> None:
    """Each integer column in the narrowest type that holds it: values past int16 and int32 (a
    fortune in cents, a time before 1902) must come back as they were."""
    from mapping.traits import OrderColumns
    from sync.order_sources import OrderSources

    cents = np.array([1, -5, 2**40, 0], dtype=np.int64)
    created = np.array([-(2**33), 1_700_000_000, 0, 5], dtype=np.int64)
    orders = OrderColumns(
        np.array([0, 1, -1, 70_000], dtype=np.int64),
        np.array([0, 1, 1, 0], dtype=np.int64),
        cents,
        created,
        np.array([True, False, True, False]),
    )
    sources = OrderSources(
        np.array([3, 9, 4, 2**31 + 7], dtype=np.int64),
        np.array([-1, 2, 40_000, 3], dtype=np.int64),
        orders.system,
        cents,
        created,
        np.array([True, True, False, False]),
        np.array([True, False, True, True]),
        plain=2,
        emails=["anna@example.nl", None],
    )
    members = {"p_1": ["shop:1"]}
    parts = dict(resolution_snapshot.encode(members, ["p_1"], ["shop", "web"], orders, [], "d", [0], sources))
    header = parts.pop("header")
    about = parts.pop("sources.000000")
    assert {name.partition(".")[0]: len(data) for name, data in parts.items()} == {
        "profile": 4 * 4,  # int32: 70,000 is past int16
        "system": 4 * 2,
        "cents": 4 * 8,
        "created": 4 * 8,
        "counts": 4,
        "order": 4 * 8,  # 2**31 + 7 is past int32
        "contact": 4 * 4,
        "raw_counts": 4,
        "known": 4,
    }
    in_order = sorted(parts.items())
    decoded = resolution_snapshot.decode(header, in_order)
    assert decoded is not None
    for name in ("profile", "system", "cents", "created", "counts"):
        mine, theirs = getattr(decoded.orders, name), getattr(orders, name)
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), name
    read = resolution_snapshot.decode_sources(about, in_order)
    assert read is not None and read[1] == ["shop", "web"]
    for name in ("order", "contact", "system", "cents", "created", "raw_counts", "known"):
        mine, theirs = read[0].column(name), sources.column(name)
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), name
    assert (read[0].plain, read[0].emails) == (2, ["anna@example.nl", None])
    assert resolution_snapshot.decode(header, in_order[:-1]) is None  # a part missing


def test_what_every_compute_reads_first_and_the_rows_written_since_come_from_an_index(tmp_path: Path) -> None:
    """The marks every compute reads (count, highest and sum of changed_seq) and the rows a cycle by
    difference reads: from `ix_<table>_changed`, not a scan of every contact and order (at a
    large merchant 1,000,000 and 5,000,000 rows, every cycle). Asked of SQLite's query planner."""
    from sync.state.compute import IDENTITY_COLUMNS, MARKS_SQL, ORDER_RANGE, ORDERS_WRITTEN_SINCE
    from sync.state.order_text import aggregate_sql

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with store.compute_snapshot() as snapshot:  # the queries `order_arrays` runs on SQLite
        orders_since = aggregate_sql(snapshot.order_arrays_sql("EUR", ORDERS_WRITTEN_SINCE))
        every_order = aggregate_sql(snapshot.order_arrays_sql("EUR", ORDER_RANGE))
    store.close()
    with closing(sqlite3.connect(tmp_path / "state.db")) as db:

        def plan(sql: str) -> str:
            return " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", (1,) * sql.count("?")))

        for table in ("contacts", "orders"):
            assert f"USING COVERING INDEX ix_{table}_changed" in plan(MARKS_SQL.format(table=table))
        assert "ix_contacts_changed (changed_seq>?)" in plan(
            f"SELECT rowid, {IDENTITY_COLUMNS} FROM contacts WHERE changed_seq > ?"
        )
        assert "SEARCH o USING INDEX ix_orders_changed (changed_seq>?)" in plan(orders_since)
        # A range of row numbers at a time, in their order: no sort of every order.
        assert "SEARCH o USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in plan(every_order)
        assert "TEMP B-TREE" not in plan(every_order)
