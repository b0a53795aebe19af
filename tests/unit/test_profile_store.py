"""Saving profiles writes only what changed, and the segment history it feeds stays exactly what a
full comparison would record, across dry runs and interrupted runs too."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mapping.model import Membership
from sync.state import StateStore, VerdictChunk, profile_members, profiles, segment_history
from sync.state.history import tier_changes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LINKS = "SELECT a, b, kind, value FROM identity_links"
SEGMENTS = ["friends", "acquaintances", "lifecycle-active", "lifecycle-lapsed", "vip"]


def open_history(store: StateStore) -> set[tuple[str, str]]:
    with store.engine.connect() as conn:
        return {
            (pid, seg)
            for pid, seg in conn.execute(
                select(segment_history.c.profile_id, segment_history.c.segment).where(
                    segment_history.c.exited_seq.is_(None)
                )
            )
        }


def history_rows(store: StateStore) -> list[tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(select(segment_history)))


def rows(store: StateStore, table: Any) -> dict[str, tuple[Any, ...]]:
    with store.engine.connect() as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(select(table))}


def run(
    store: StateStore,
    seq: int,
    verdicts: dict[str, frozenset[str]],
    *,
    dry: bool = False,
    crash_before_history: bool = False,
    trusting: bool = True,
) -> None:
    """What a cycle does with its verdicts: save the profiles, then (unless dry) the history.
    `trusting=False` never passes the changes on, so the history is found by full comparison."""
    members = {pid: [f"shop:{pid}"] for pid in verdicts}
    previous, _ = store.previous_assignment()
    changes = store.save_profiles(
        members,
        [VerdictChunk.of([(pid, Membership(segs, None), {"n": len(segs)}) for pid, segs in sorted(verdicts.items())])],
        {},
        seq,
        previous=previous,
    )
    if dry or crash_before_history:
        return
    at = T0 + timedelta(days=seq)
    store.record_segments(seq, at, verdicts, [], {}, (len(verdicts), 0), changes if trusting else None)


def test_an_unchanged_profile_is_not_rewritten_and_a_changed_one_is(state_url: str) -> None:
    store = StateStore(state_url)
    first = {f"p{i:03d}": frozenset({"friends"}) for i in range(50)}
    run(store, 1, first)
    second = {**first, "p007": frozenset({"vip"}), "p100": frozenset({"friends"})}
    del second["p010"]
    run(store, 2, second)
    saved = rows(store, profiles)
    assert saved["p001"][-1] == 1  # updated_seq: untouched since run 1
    assert saved["p007"][-1] == 2 and saved["p007"][1] == '["vip"]'
    assert saved["p100"][0] == 2  # created in run 2
    assert "p010" not in saved
    with store.engine.connect() as conn:
        keys = {(s, r) for s, r, _ in conn.execute(select(profile_members))}
    assert keys == {("shop", pid) for pid in second}
    assert open_history(store) == {(pid, seg) for pid, segs in second.items() for seg in segs}


def test_verdicts_out_of_order_are_refused(state_url: str) -> None:
    store = StateStore(state_url)
    verdicts = [
        VerdictChunk.of([("p2", Membership(frozenset(), None), "{}"), ("p1", Membership(frozenset(), None), "{}")])
    ]
    with pytest.raises(ValueError, match="ascending"):
        store.save_profiles({"p1": ["shop:1"], "p2": ["shop:2"]}, verdicts, {}, 1)


run_plan = st.lists(
    st.tuples(
        st.dictionaries(
            st.sampled_from([f"p{i}" for i in range(12)]),
            st.frozensets(st.sampled_from(SEGMENTS), max_size=3),
            max_size=12,
        ),
        st.sampled_from(["normal", "normal", "dry", "crash"]),
    ),
    min_size=1,
    max_size=8,
)


# Each example opens two new states (on PostgreSQL, two new schemas of the test's database).
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run_plan)
def test_history_from_saved_changes_equals_full_comparison(
    new_state_url: Callable[[], str], plan: list[tuple[dict[str, frozenset[str]], str]]
) -> None:
    fast = StateStore(new_state_url())
    full = StateStore(new_state_url())
    for seq, (verdicts, kind) in enumerate(plan, start=1):
        for store, trusting in ((fast, True), (full, False)):
            run(store, seq, verdicts, dry=kind == "dry", crash_before_history=kind == "crash", trusting=trusting)
    assert history_rows(fast) == history_rows(full)
    last_recorded = [v for v, kind in plan if kind == "normal"]
    expected = {(p, s) for p, segs in last_recorded[-1].items() for s in segs} if last_recorded else set()
    assert open_history(fast) == expected
    fast.close()
    full.close()


def test_traits_are_built_only_for_new_and_changed_profiles(state_url: str) -> None:
    store = StateStore(state_url)
    asked: list[list[int]] = []

    def chunk(prints: list[int]) -> VerdictChunk:
        ids = [f"p{i}" for i in range(len(prints))]

        def traits(positions: Sequence[int]) -> list[str]:
            asked.append(list(positions))
            return [f'{{"v": {prints[i]}}}' for i in positions]

        return VerdictChunk(ids, [Membership(frozenset({"friends"}), None)] * len(ids), prints, traits)

    store.save_profiles({}, [chunk([1, 2, 3, 4])], {}, 1)
    store.save_profiles({}, [chunk([1, 2, 30, 4])], {}, 2)
    assert asked == [[0, 1, 2, 3], [2]]
    assert rows(store, profiles)["p2"][3] == '{"v": 30}'


@pytest.mark.parametrize("read_once", [False, True], ids=["read-again", "read-once"])
def test_a_tier_still_held_is_not_rewritten_though_its_qualification_time_moves(
    state_url: str, read_once: bool
) -> None:
    """Every profile that qualifies at a run qualified at its `now`: one row of `meta` says when,
    so an unchanged run writes no tier row, and what is read back is as before. The same when the
    write is given the changes found from the tiers a run read (a cycle reads them once)."""
    store = StateStore(state_url)
    plain = store.record_segments

    def record_segments(seq: int, at: datetime, members: Any, snapshot: Any, held: Any, totals: Any) -> None:
        tiers = tier_changes(held, store.stored_tiers().rows, seq, at) if read_once else held
        plain(seq, at, members, snapshot, tiers, totals)

    store.record_segments = record_segments  # type: ignore[method-assign]
    start, earlier = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 10, 20, tzinfo=UTC)
    snapshot = [("friends", 0, 0)]
    held = {"p_1": ("gold", start), "p_2": ("silver", earlier)}  # p_2 is in its grace period
    store.record_segments(1, start, {}, snapshot, held, (2, 0))
    assert store.held_tiers() == held

    def rows() -> list[tuple[Any, ...]]:
        with store.engine.connect() as conn:
            return list(conn.exec_driver_sql("SELECT * FROM profile_tiers ORDER BY profile_id").all())

    stored = rows()
    later = start + timedelta(hours=1)
    store.record_segments(2, later, {}, snapshot, {"p_1": ("gold", later), "p_2": ("silver", earlier)}, (2, 0))
    assert rows() == stored == [("p_1", "gold", "", 1), ("p_2", "silver", earlier.isoformat(), 1)]
    assert store.held_tiers() == {"p_1": ("gold", later), "p_2": ("silver", earlier)}
    store.record_segments(3, later + timedelta(hours=1), {}, snapshot, {"p_1": ("gold", later)}, (1, 0))
    assert store.held_tiers() == {"p_1": ("gold", later)}  # no longer the run's own moment: kept as a time
    store.close()


def test_the_exits_index_holds_exits_only_and_serves_who_left_since(tmp_path: Path) -> None:
    """A first run opens an entry per profile and segment; none has exited, so none belongs in
    `ix_segment_history_exited` (schema 13: partial), which the report's "who left since run N"
    reads. Asked of SQLite: the index is partial, the exits query searches it, and the answers
    are right."""
    path = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{path}")
    run(store, 1, {"p1": frozenset({"friends", "vip"}), "p2": frozenset({"friends"})})
    run(store, 2, {"p1": frozenset({"acquaintances", "vip"}), "p2": frozenset({"friends"})})
    assert store.history.transitions(1) == [("p1", "friends", "acquaintances", 2)]
    store.close()
    with closing(sqlite3.connect(path)) as db:
        partial = {name: flag for _, name, _, _, flag in db.execute("PRAGMA index_list(segment_history)")}
        assert partial["ix_segment_history_exited"] == 1
        plan = " ".join(
            str(row[-1])
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT profile_id, segment, exited_seq FROM segment_history WHERE exited_seq > ?",
                (1,),
            )
        )
        assert "USING INDEX ix_segment_history_exited (exited_seq>?)" in plan


def test_members_and_links_written_beside_the_verdicts_are_all_there_past_many_batches(state_url: str) -> None:
    """The members and links go in on a thread, a batch at a time, taking turns with the verdicts'
    writes on one connection (sync/state/profile_writer.py): past several batches of each (20,000
    rows), every row is stored once, and a second save that moves some records writes just those."""
    store = StateStore(state_url)
    count = 45_000
    members = {f"p{i:06d}": [f"shop:{i}", f"woo:{i}"] if i % 3 == 0 else [f"shop:{i}"] for i in range(count)}
    links = [(f"shop:{i}", f"woo:{i}", "email", f"{i}@example.org") for i in range(0, count, 3)]

    def chunks(ids: list[str]) -> list[VerdictChunk]:
        return [
            VerdictChunk.of([(pid, Membership(frozenset({"friends"}), None), "{}") for pid in ids[at : at + 20_000]])
            for at in range(0, len(ids), 20_000)
        ]

    store.save_profiles(members, chunks(sorted(members)), {}, 1, links)
    with store.engine.connect() as conn:
        stored = sorted(tuple(row) for row in conn.execute(select(profile_members)))
        stored_links = sorted(
            tuple(row) for row in conn.exec_driver_sql("SELECT a, b, kind, value FROM identity_links")
        )
    expected = sorted((*key.split(":"), pid) for pid, keys in members.items() for key in keys)
    assert stored == expected and len(stored) == 60_000
    assert stored_links == sorted(links)
    assert len(rows(store, profiles)) == count

    previous, _ = store.previous_assignment()
    moved = {**members, "p000001": ["shop:1", "shop:2"]}  # shop:2 joins p000001
    del moved["p000002"]
    store.save_profiles(moved, chunks(sorted(moved)), {}, 2, links[1:], previous=previous)
    with store.engine.connect() as conn:
        assert (
            conn.exec_driver_sql("SELECT profile_id FROM profile_members WHERE record_id = '2'").scalar() == "p000001"
        )
        assert conn.exec_driver_sql("SELECT count(*) FROM profile_members").scalar() == 60_000
        assert conn.exec_driver_sql("SELECT count(*) FROM identity_links").scalar() == len(links) - 1
    assert "p000002" not in rows(store, profiles)
    store.close()


def test_a_failure_while_writing_the_members_beside_the_verdicts_stores_nothing(
    state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread writing members and links shares the save's transaction: when it fails after
    its first batch, the save raises its error and neither its rows nor the verdicts' stay."""
    from sync.state import profile_writer

    store = StateStore(state_url)
    members = {f"p{i:06d}": [f"shop:{i}"] for i in range(30_000)}
    apply = profile_writer.ResolutionWrites.apply

    def failing(self: Any, conn: Any, turn: Any) -> None:
        with turn():
            profile_writer.upsert_many(conn, profile_members, self.members_moved[:20_000])
        raise RuntimeError("disk gone")

    monkeypatch.setattr(profile_writer.ResolutionWrites, "apply", failing)
    verdicts = [VerdictChunk.of([(pid, Membership(frozenset({"friends"}), None), "{}") for pid in sorted(members)])]
    with pytest.raises(RuntimeError, match="disk gone"):
        store.save_profiles(members, verdicts, {}, 1)
    with store.engine.connect() as conn:
        assert conn.execute(select(profile_members)).first() is None
        assert conn.execute(select(profiles)).first() is None
        assert conn.exec_driver_sql("SELECT count(*) FROM meta WHERE key = 'members_digest'").scalar() == 0
    monkeypatch.setattr(profile_writer.ResolutionWrites, "apply", apply)
    store.save_profiles(members, verdicts, {}, 1)  # and the same save then succeeds
    assert len(rows(store, profiles)) == 30_000
    store.close()


def test_the_writes_thread_s_own_error_is_the_one_raised_and_nothing_stays(state_url: str) -> None:
    """Two links for one pair of records: the links' key refuses the second, on the thread that
    writes them. On PostgreSQL that aborts the transaction, and the saving thread's next statement
    fails with "current transaction is aborted": the thread's error must be the one raised, on
    both backends, and nothing of the save stays."""
    store = StateStore(state_url)
    members = {f"p{i:06d}": [f"shop:{i}"] for i in range(30_000)}
    links = [("shop:1", "woo:1", "email", "a@example.org"), ("shop:1", "woo:1", "phone", "+31612345678")]
    ids = sorted(members)
    verdicts = [
        VerdictChunk.of([(pid, Membership(frozenset({"friends"}), None), "{}") for pid in ids[at : at + 20_000]])
        for at in range(0, len(ids), 20_000)
    ]
    with pytest.raises(Exception) as raised:
        store.save_profiles(members, verdicts, {}, 1, links)
    text = str(raised.value).lower()
    assert "unique" in text or "duplicate key" in text, raised.value
    with store.engine.connect() as conn:
        assert conn.execute(select(profiles)).first() is None
        assert conn.execute(select(profile_members)).first() is None
    store.close()


def test_a_saver_that_fails_stops_the_writes_thread_and_raises_its_own_error(
    state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verdicts out of order: the save raises that, the members thread stops at its next turn
    instead of writing all its batches, and nothing stays."""
    from sync.state import profile_writer

    store = StateStore(state_url)
    members = {f"p{i:06d}": [f"shop:{i}"] for i in range(100_000)}
    turns_taken: list[int] = []
    apply = profile_writer.ResolutionWrites.apply

    def counting(self: Any, conn: Any, turn: Any) -> None:
        def counted() -> Any:
            turns_taken.append(1)
            return turn()

        apply(self, conn, counted)

    monkeypatch.setattr(profile_writer.ResolutionWrites, "apply", counting)
    backwards = [(pid, Membership(frozenset({"friends"}), None), "{}") for pid in sorted(members, reverse=True)[:100]]
    with pytest.raises(ValueError, match="ascending"):
        store.save_profiles(members, [VerdictChunk.of(backwards)], {}, 1)
    # the deletes, then five batches of 20,000 members: it stopped before the end (its cancelled
    # turn is counted too)
    assert len(turns_taken) < 6
    with store.engine.connect() as conn:
        assert conn.execute(select(profiles)).first() is None
        assert conn.execute(select(profile_members)).first() is None
    store.close()
