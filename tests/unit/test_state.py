from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mapping.model import Contact, Kind, Rejection, RemoteState, SourceRecord, WriteBack, WriteResult
from sync.lock import LockHeld, StateLock, current_holder
from sync.state import StateStore

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def _mapper(record: SourceRecord) -> Contact | Rejection:
    if not record.payload.get("email"):
        return Rejection("no_email", "test mapper wants an email")
    return Contact(record.system, record.id, record.updated_at, email=record.payload["email"])


def _records(*pairs: tuple[str, str | None]) -> list[SourceRecord]:
    return [SourceRecord("shop", Kind.CONTACT, rid, NOW, {"email": email}) for rid, email in pairs]


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    """A new state on each backend (the `backend` fixture: SQLite and PostgreSQL)."""
    opened = StateStore(state_url)
    yield opened
    opened.close()


def test_unchanged_records_cost_nothing_and_the_checkpoint_commits_with_them(store: StateStore) -> None:
    first = store.store_page(
        "shop",
        Kind.CONTACT,
        _records(("1", "a@x.nl"), ("2", "b@x.nl")),
        _mapper,
        1,
        ("contacts", {"cursor": "2026-11-25T00:00:00+00:00"}),
    )
    assert (first.received, first.changed) == (2, 2)
    again = store.store_page("shop", Kind.CONTACT, _records(("1", "a@x.nl"), ("2", "b@y.nl")), _mapper, 2)
    assert (again.received, again.changed) == (2, 1)
    assert store.checkpoint("shop", "contacts") == {"cursor": "2026-11-25T00:00:00+00:00"}
    emails = {c.id: (c.email, seq) for c, seq in store.iter_contacts()}
    assert emails == {"1": ("a@x.nl", 1), "2": ("b@y.nl", 2)}


def test_duplicates_within_a_page_store_once(store: StateStore) -> None:
    stored = store.store_page("shop", Kind.CONTACT, _records(("1", "a@x.nl"), ("1", "a@x.nl")), _mapper, 1)
    assert stored.changed == 1
    assert len(list(store.iter_contacts())) == 1


def test_quarantine_follows_the_record(store: StateStore) -> None:
    store.store_page("shop", Kind.CONTACT, _records(("1", None)), _mapper, 1)
    assert store.quarantine_counts() == {"shop": 1}
    assert list(store.iter_contacts()) == []
    store.store_page("shop", Kind.CONTACT, _records(("1", "fixed@x.nl")), _mapper, 2)
    assert store.quarantine_counts() == {}
    assert [c.email for c, _ in store.iter_contacts()] == ["fixed@x.nl"]
    store.store_page("shop", Kind.CONTACT, _records(("1", "")), _mapper, 3)
    assert store.quarantine_counts() == {"shop": 1} and list(store.iter_contacts()) == []


def test_ledger_and_pending(store: StateStore) -> None:
    store.store_page("shop", Kind.CONTACT, _records(("1", "a@x.nl"), ("2", "b@x.nl")), _mapper, 1)
    target = RemoteState(frozenset({"crmsync:friends"}))
    changes = [WriteBack("shop", rid, ("crmsync:friends",), (), {}, target) for rid in ("1", "2")]
    store.record_results("shop", changes, [WriteResult("1", True), WriteResult("2", False, "bad value")], 1, NOW)
    store.record_results("shop", changes[1:], [WriteResult("2", False, "still bad")], 2, NOW)
    known = store.known_states("shop")
    assert known["1"].current == target
    assert known["2"].current == RemoteState()
    assert store.current_states("shop") == {"1": target, "2": RemoteState()}  # what the plan reads
    [row] = store.pending_records()
    assert (row["record_id"], row["attempts"], row["message"]) == ("2", 2, "still bad")


def test_the_plans_current_states_are_the_newer_of_the_last_read_and_the_last_push(store: StateStore) -> None:
    """`current_states` (the plan's one pass) agrees with `KnownState.current` in every case."""
    store.store_page("shop", Kind.CONTACT, _records(*((str(i), f"{i}@x.nl") for i in range(1, 6))), _mapper, 1)
    pushed, read = RemoteState(frozenset({"crmsync:friends"})), RemoteState(frozenset({"crmsync:fans"}))
    changes = [WriteBack("shop", rid, ("crmsync:friends",), (), {}, pushed) for rid in ("1", "2", "3")]
    store.record_results("shop", changes, [WriteResult(c.record_id, True) for c in changes], 2, NOW)
    store.set_owned("shop", {"2": read, "3": RemoteState.unknown()}, 3)  # read after the push
    store.set_owned("shop", {"5": read}, 3)  # never pushed
    expected = {"1": pushed, "2": read, "3": pushed, "4": RemoteState(), "5": read}  # 4: neither
    assert store.current_states("shop") == expected
    assert {rid: known.current for rid, known in store.known_states("shop").items()} == expected
    store.record_results("shop", changes[1:], [WriteResult("2", True)], 3, NOW)
    assert store.pending_records() == []


def test_lock_is_exclusive_and_names_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "state.db.lock"
    first = StateLock(path)
    first.acquire("sync")
    holder = current_holder(path)
    assert holder is not None and holder["command"] == "sync"
    with pytest.raises(LockHeld) as held:
        StateLock(path).acquire("run")
    assert "sync" in str(held.value) and "pid" in str(held.value)
    first.release()
    assert current_holder(path) is None
    second = StateLock(path)
    second.acquire("run")
    second.release()


def test_the_consistency_check_finds_rows_that_name_missing_records(store: StateStore) -> None:
    from mapping.model import Membership
    from sync.state import VerdictChunk

    store.store_page("shop", Kind.CONTACT, _records(("1", "a@x.nl"), ("2", "a@x.nl"), ("3", "c@x.nl")), _mapper, 1)
    verdicts = [VerdictChunk.of([("p1", Membership(frozenset({"friends"}), None), "{}")])]
    links = [("shop:1", "shop:2", "email", "a@x.nl")]
    store.save_profiles({"p1": ["shop:1", "shop:2"]}, verdicts, {}, 1, links)
    target = RemoteState(frozenset({"crmsync:friends"}))
    changes = [WriteBack("shop", rid, ("crmsync:friends",), (), {}, target) for rid in ("1", "3")]
    store.record_results("shop", changes, [WriteResult("1", True), WriteResult("3", False, "no")], 1, NOW)
    assert store.consistency_problems() == []
    with store.db.writing() as conn:  # what no cycle does: a record's raw row gone under its other rows
        conn.exec_driver_sql("DELETE FROM raw_records WHERE record_id IN ('2', '3')")
    problems = store.consistency_problems()
    assert "2 contact without its raw record: shop:2, shop:3" in problems, problems
    assert any(p.startswith("1 profile member that is no stored record: shop:2") for p in problems), problems
    assert any(p.startswith("1 identity link to a record that is not stored: shop:2") for p in problems), problems
    assert any(p.startswith("1 pending row for a record that is not stored: shop:3") for p in problems), problems
    assert len(problems) == 4, problems
