"""The erasure journal (sync/state/erasure_journal.py) and its replay (sync/state/erasure_replay.py),
on real SQLite files: a state restored from a copy made before an erasure ends as the erasure left
it, a replay done twice does nothing more, a target given up stays given up, and a line a crash cut
short is skipped without losing the lines after it."""

from __future__ import annotations

import shutil
from pathlib import Path

from sync.backup import backup_sqlite
from sync.state import StateStore
from sync.state.erasure_journal import ErasureJournal, journal_path
from sync.state.erasure_replay import reconcile
from tests.unit.test_erasure import NOW, TAGGED, _populate, _rows

# What an erasure leaves and the replay must leave alike (not runs, meta or the replay's own note).
PERSON_TABLES = (
    "contacts",
    "orders",
    "raw_records",
    "quarantine",
    "profiles",
    "profile_members",
    "profile_aliases",
    "identity_links",
    "segment_history",
    "pushed",
    "forgotten",
    "erasure_targets",
)


def _restore(copy: Path, state: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        state.with_name(state.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(copy, state)


def _erased_then_restored(tmp_path: Path, abandon: str | None = None) -> tuple[Path, dict[str, list[object]]]:
    state = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{state}")
    _populate(store)
    store.close()
    backup_sqlite(state, tmp_path / "copy.db")
    store = StateStore(f"sqlite:///{state}")
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED, "crm": TAGGED})
    if abandon is not None:
        store.erasures.abandon(erased.erasure_id, abandon, NOW)
    after = _rows(store)
    store.close()
    _restore(tmp_path / "copy.db", state)
    return state, {name: after[name] for name in PERSON_TABLES}


def test_a_restored_state_ends_as_the_erasure_left_it_and_a_second_replay_does_nothing(tmp_path: Path) -> None:
    state, erased = _erased_then_restored(tmp_path)
    store = StateStore(f"sqlite:///{state}")
    try:
        assert store.profiles_for(email_key="anna@x.nl") != []  # the copy holds her again
        done = reconcile(store.erasures, NOW)
        assert (done.replayed, done.profiles, done.contacts, done.orders) == (1, 1, 2, 2)
        rows = _rows(store)
        assert {name: rows[name] for name in PERSON_TABLES} == erased
        assert store.consistency_problems() == []
        assert store.erasures.forgotten().blocks("shop", "contact", "1")
        assert reconcile(store.erasures, NOW).replayed == 0
        assert _rows(store) == rows
    finally:
        store.close()
    assert len(ErasureJournal(journal_path(state)).read().entries) == 1


def test_a_target_given_up_before_the_restore_stays_given_up(tmp_path: Path) -> None:
    state, erased = _erased_then_restored(tmp_path, abandon="crm")
    store = StateStore(f"sqlite:///{state}")
    try:
        reconcile(store.erasures, NOW)
        assert [t.record_id for t in store.erasures.targets("shop")] == ["1"]
        assert store.erasures.targets("crm") == []
        assert _rows(store)["erasure_targets"] == erased["erasure_targets"]
    finally:
        store.close()


def test_a_line_a_crash_cut_short_is_skipped_and_the_next_erasure_gets_a_line_of_its_own(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    journal = journal_path(state)
    journal.write_text('{"v":1,"erasure":"cut-sh')  # no newline: a write a crash stopped
    store = StateStore(f"sqlite:///{state}")
    try:
        _populate(store)
        erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED})
    finally:
        store.close()
    contents = ErasureJournal(journal).read()
    assert [entry.erasure_id for entry in contents.entries] == [erased.erasure_id]
    assert contents.unreadable == 1
