from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from mapping.model import Contact, Kind, Membership, Rejection, RemoteState, SourceRecord, WriteBack, WriteResult
from sync.lock import LockHeld, StateLock, current_holder
from sync.state import StateStore, VerdictChunk, extracts
from sync.state.extracts import storage_id
from sync.state.schema import raw_records

NOW = datetime(2026, 11, 25, tzinfo=UTC)
LATER = datetime(2026, 11, 26, tzinfo=UTC)


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


def test_a_record_changed_only_in_crmsync_own_tags_keeps_its_updated_at(store: StateStore) -> None:
    """A vendor stamps a record as updated when crmsync writes its tags there. Survivorship's "most
    recent" reads the stored updated_at: a record read again with only crmsync's own tags changed
    keeps it (else every write made its record its profile's newest, and the next cycle took that
    record's address); a change to what crmsync reads of the person moves it."""

    def mapper(record: SourceRecord) -> Contact:
        owned = RemoteState(frozenset(record.payload.get("tags", ())), {})
        return Contact(record.system, record.id, record.updated_at, email=record.payload["email"], owned=owned)

    def stored() -> Contact:
        [(contact, _)] = list(store.iter_contacts())
        return contact

    def read(at: datetime, payload: dict[str, object], seq: int) -> None:
        store.store_page("shop", Kind.CONTACT, [SourceRecord("shop", Kind.CONTACT, "1", at, payload)], mapper, seq)

    read(NOW, {"email": "a@x.nl"}, 1)
    read(LATER, {"email": "a@x.nl", "tags": ["crmsync:friends"]}, 2)
    assert stored().updated_at == NOW and stored().owned.tags == {"crmsync:friends"}
    read(LATER, {"email": "b@x.nl", "tags": ["crmsync:friends"]}, 3)
    assert stored().updated_at == LATER and stored().email == "b@x.nl"


def test_a_remap_keeps_the_time_a_contact_kept_through_crmsync_own_write(store: StateStore) -> None:
    """A remap maps the stored payloads again: no news of the person. A record whose stored time
    was kept through crmsync's own write (its raw row holds the vendor's later stamp) keeps it, even
    when the new mapping fills more columns."""

    def mapper(record: SourceRecord, city: bool = False) -> Contact:
        owned = RemoteState(frozenset(record.payload.get("tags", ())), {})
        return Contact(
            record.system,
            record.id,
            record.updated_at,
            email=record.payload["email"],
            owned=owned,
            city=record.payload.get("city") if city else None,
        )

    def stored() -> Contact:
        [(contact, _)] = list(store.iter_contacts())
        return contact

    page = [SourceRecord("shop", Kind.CONTACT, "1", NOW, {"email": "a@x.nl", "city": "Groningen"})]
    store.store_page("shop", Kind.CONTACT, page, mapper, 1)
    tagged = {"email": "a@x.nl", "city": "Groningen", "tags": ["crmsync:friends"]}
    store.store_page("shop", Kind.CONTACT, [SourceRecord("shop", Kind.CONTACT, "1", LATER, tagged)], mapper, 2)
    assert stored().updated_at == NOW
    store.extracts.remap("shop", Kind.CONTACT, lambda record: mapper(record, city=True), 3)
    assert stored().city == "Groningen" and stored().updated_at == NOW


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


def test_a_record_whose_id_is_too_long_to_key_it_is_quarantined_and_the_page_stored(store: StateStore) -> None:
    """An id beyond the 255 characters the state keys records by: the record is kept (its payload,
    under a stable stand-in key) and quarantined, on every backend, and stays so when the stored
    records are mapped again; the rest of its page is stored. Before, PostgreSQL refused the page
    and the system read nothing past it, every cycle."""
    long_id = "7" * 300
    page = _records(("1", "a@x.nl"), (long_id, "b@x.nl"), ("3", "c@x.nl"))
    first = store.store_page("shop", Kind.CONTACT, page, _mapper, 1)
    assert (first.changed, first.quarantined) == (3, 1)
    assert sorted(c.id for c, _ in store.iter_contacts()) == ["1", "3"]
    with store.db.reading() as conn:
        held = conn.exec_driver_sql("SELECT record_id, reason, message FROM quarantine").all()
        raw = conn.execute(select(raw_records.c.payload).where(raw_records.c.record_id == held[0][0])).all()
    assert [(rid, reason) for rid, reason, _ in held] == [(storage_id(long_id), "id_too_long")]
    assert "300 characters" in held[0][2] and len(held[0][0]) <= 255 and held[0][0].startswith("7" * 200)
    assert "b@x.nl" in raw[0][0]
    again = store.store_page("shop", Kind.CONTACT, page, _mapper, 2)
    assert again.changed == 0  # the stand-in is stable: the record is found stored and unchanged
    assert store.remap("shop", Kind.CONTACT, _mapper, 3) == 3
    assert store.quarantine_counts() == {"shop": 1}
    assert sorted(c.id for c, _ in store.iter_contacts()) == ["1", "3"]  # never a contact under a cut id


def test_a_remap_moves_a_record_a_sqlite_state_kept_under_an_over_long_id_to_the_quarantine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite stored any id before (PostgreSQL refused it): the remap after the upgrade leaves no
    contact under such an id for the planner to write to."""
    long_id = "7" * 300
    opened = StateStore(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with monkeypatch.context() as old:  # as crmsync stored it before ids were checked
            old.setattr(extracts, "storage_id", lambda record_id: record_id)
            old.setattr(extracts, "unkeyable", lambda record_id: None)
            opened.store_page("shop", Kind.CONTACT, _records(("1", "a@x.nl"), (long_id, "b@x.nl")), _mapper, 1)
            # ... profiled, linked and tagged, as any record
            verdicts = [VerdictChunk.of([("p1", Membership(frozenset({"friends"}), None), "{}")])]
            links = [(f"shop:{long_id}", "shop:1", "email", "a@x.nl")]
            opened.save_profiles({"p1": ["shop:1", f"shop:{long_id}"]}, verdicts, {}, 1, links)
            tag = RemoteState(frozenset({"crmsync:friends"}))
            change = WriteBack("shop", long_id, ("crmsync:friends",), (), {}, tag)
            opened.record_results("shop", [change], [WriteResult(long_id, True)], 1, NOW)
        assert sorted(c.id for c, _ in opened.iter_contacts()) == ["1", long_id]
        assert opened.remap("shop", Kind.CONTACT, _mapper, 2) == 2
        assert [c.id for c, _ in opened.iter_contacts()] == ["1"]
        with opened.db.reading() as conn:
            keys = conn.exec_driver_sql("SELECT record_id FROM raw_records UNION ALL SELECT record_id FROM quarantine")
            assert sorted(rid for (rid,) in keys) == ["1", storage_id(long_id), storage_id(long_id)]
        assert opened.consistency_problems() == []  # no member, link or ledger row names it any more
    finally:
        opened.close()


def test_an_erasure_made_before_over_long_ids_were_keyed_by_a_stand_in_still_keeps_them_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It hashed the whole id; extract now keys such a record by its stand-in, and checks both."""
    long_id = "7" * 300
    opened = StateStore(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with monkeypatch.context() as old:
            old.setattr(extracts, "storage_id", lambda record_id: record_id)
            old.setattr(extracts, "unkeyable", lambda record_id: None)
            opened.store_page("shop", Kind.CONTACT, _records((long_id, "b@x.nl")), _mapper, 1)
            verdicts = [VerdictChunk.of([("p1", Membership(frozenset(), None), "{}")])]
            opened.save_profiles({"p1": [f"shop:{long_id}"]}, verdicts, {}, 1, [])
            opened.erasures.erase(["p1"], NOW)
        assert opened.store_page("shop", Kind.CONTACT, _records((long_id, "b@x.nl")), _mapper, 2).changed == 0
        assert opened.store_page("shop", Kind.CONTACT, _records(("8" * 300, "c@x.nl")), _mapper, 2).changed == 1
    finally:
        opened.close()


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
    # Accepted without a conclusive answer (a lost reply): still pending, its attempts counted on
    # from the first, not started again at each cycle.
    lost = "the reply was lost; sent again next cycle"
    store.record_results("shop", changes[1:], [WriteResult("2", True, lost, confirmed=False)], 3, LATER)
    [row] = store.pending_records()
    assert (row["attempts"], row["first_at"], row["last_at"]) == (3, NOW.isoformat(), LATER.isoformat())
    assert store.current_states("shop")["2"] == RemoteState()  # not entered as pushed
    store.record_results("shop", changes[1:], [WriteResult("2", True)], 4, LATER)
    assert store.pending_records() == []


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


def test_mapping_again_keeps_a_push_the_newer_word_over_the_read_before_it(store: StateStore) -> None:
    """A remap stamps every contact with its run, as a read would, though nothing was read: a
    push made after the last read must stay the newer word on its record (else, with the desired
    state back at what was read, the plan would see no change while the vendor holds the push)."""
    store.store_page("shop", Kind.CONTACT, _records(("1", "a@x.nl"), ("2", "b@x.nl")), _mapper, 1)
    pushed = RemoteState(frozenset({"crmsync:friends"}))
    change = WriteBack("shop", "1", ("crmsync:friends",), (), {}, pushed)
    store.record_results("shop", [change], [WriteResult("1", True)], 2, NOW)
    store.set_owned("shop", {"2": RemoteState(frozenset({"crmsync:fans"}))}, 3)  # read, never pushed
    assert store.current_states("shop") == {"1": pushed, "2": RemoteState(frozenset({"crmsync:fans"}))}
    store.remap("shop", Kind.CONTACT, _mapper, 4)
    assert store.current_states("shop")["1"] == pushed
    # A read after a push stays the newer word too.
    store.record_results("shop", [change], [WriteResult("1", True)], 5, NOW)
    store.store_page("shop", Kind.CONTACT, _records(("1", "a+new@x.nl")), _mapper, 6)
    store.remap("shop", Kind.CONTACT, _mapper, 7)
    assert store.current_states("shop")["1"] == RemoteState()
