"""The erasure journal (sync/state/erasure_journal.py: a file beside a SQLite state,
erasure_journal_table.py: a table beside a PostgreSQL one) and its replay
(sync/state/erasure_replay.py), on both backends: a state restored from a backup made before an
erasure (`backup_sqlite` and a copy; `pg_dump` and `pg_restore --clean`) ends as the erasure left it,
a replay done twice does nothing more, a target given up stays given up, and a state with erasures
and no journal gets one. SQLite: a line a crash cut short is skipped without losing the lines after
it. PostgreSQL: the entry is in the erasure's own transaction, and a schema that is another
deployment's state is never taken for a journal."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from sync.backup import backup_postgres, backup_sqlite
from sync.state import StateStore
from sync.state.erasure_journal import FileJournal, JournalContents, journal_path
from sync.state.erasure_journal_table import TableJournal, journal_schema
from sync.state.erasure_replay import reconcile
from sync.state.sql import with_schema
from tests.postgres import PostgresServer
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


def _backup(url: str, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    if url.startswith("sqlite"):
        backup_sqlite(Path(url[len("sqlite:///") :]), copy)
    else:
        backup_postgres(url, copy, "public")  # the test's database keeps the state in `public`
    return copy


def _restore(url: str, copy: Path, request: pytest.FixtureRequest, clean: bool = True) -> None:
    """As docs/operations.md says: the SQLite file and its -wal/-shm replaced by the copy; on
    PostgreSQL `pg_restore --clean --if-exists` into the deployment's own database (or, not
    `clean`, the deployment's schema dropped by hand, then `pg_restore` without `--clean`)."""
    if url.startswith("sqlite"):
        state = Path(url[len("sqlite:///") :])
        for suffix in ("", "-wal", "-shm"):
            state.with_name(state.name + suffix).unlink(missing_ok=True)
        shutil.copyfile(copy, state)
        return
    server: PostgresServer = request.getfixturevalue("server")
    database = str(make_url(url).database)
    if not clean:
        server.psql("DROP SCHEMA public CASCADE", database=database)
    restored = server.restore(copy, database, clean=clean)
    assert restored.returncode == 0, restored.stderr


def _journal(store: StateStore) -> JournalContents:
    journal = store.erasures.journal
    assert journal is not None
    with store.db.reading() as conn:
        return journal.read(conn)


def _erased_then_restored(
    state_url: str, tmp_path: Path, request: pytest.FixtureRequest, abandon: str | None = None, clean: bool = True
) -> dict[str, list[object]]:
    store = StateStore(state_url)
    _populate(store)
    store.close()
    copy = _backup(state_url, tmp_path)
    store = StateStore(state_url)
    erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED, "crm": TAGGED})
    assert erased.journal is not None and erased.journal_problem is None
    if abandon is not None:
        store.erasures.abandon(erased.erasure_id, abandon, NOW)
    after = _rows(store)
    store.close()
    _restore(state_url, copy, request, clean)
    return {name: after[name] for name in PERSON_TABLES}


def test_a_restored_state_ends_as_the_erasure_left_it_and_a_second_replay_does_nothing(
    state_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    erased = _erased_then_restored(state_url, tmp_path, request)
    store = StateStore(state_url)
    try:
        assert store.profiles_for(email_key="anna@x.nl") != []  # the copy holds her again
        done = reconcile(store.erasures, NOW)
        assert (done.replayed, done.profiles, done.contacts, done.orders) == (1, 1, 2, 2)
        rows = _rows(store)
        assert {name: rows[name] for name in PERSON_TABLES} == erased
        assert store.consistency_problems() == []
        assert store.erasures.forgotten().blocks("shop", "contact", "1")
        again = reconcile(store.erasures, NOW)
        assert (again.replayed, again.journaled, again.problem) == (0, 0, None)
        assert _rows(store) == rows
        assert len(_journal(store).entries) == 1
    finally:
        store.close()


def test_a_restore_without_clean_into_a_dropped_schema_leaves_the_journal_too(
    postgres_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    erased = _erased_then_restored(postgres_url, tmp_path, request, clean=False)
    store = StateStore(postgres_url)
    try:
        assert store.profiles_for(email_key="anna@x.nl") != []
        assert reconcile(store.erasures, NOW).replayed == 1
        assert {name: _rows(store)[name] for name in PERSON_TABLES} == erased
    finally:
        store.close()


def test_a_target_given_up_before_the_restore_stays_given_up(
    state_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    erased = _erased_then_restored(state_url, tmp_path, request, abandon="crm")
    store = StateStore(state_url)
    try:
        reconcile(store.erasures, NOW)
        assert [t.record_id for t in store.erasures.targets("shop")] == ["1"]
        assert store.erasures.targets("crm") == []
        assert _rows(store)["erasure_targets"] == erased["erasure_targets"]
        assert len(_journal(store).abandoned) == 1
    finally:
        store.close()


def test_a_state_with_erasures_and_no_journal_gets_one(state_url: str, request: pytest.FixtureRequest) -> None:
    store = StateStore(state_url)
    try:
        _populate(store)
        erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED})
        hashes = {str(row[0]) for row in _rows(store)["forgotten"]}
        journal = store.erasures.journal
        if isinstance(journal, FileJournal):
            journal.path.unlink()  # as a crmsync before the journal left it
        else:
            server: PostgresServer = request.getfixturevalue("server")
            server.psql("DROP SCHEMA public_erasures CASCADE", database=str(make_url(state_url).database))
        assert _journal(store).entries == []
        assert reconcile(store.erasures, NOW).journaled == 1
        [entry] = _journal(store).entries
        assert entry.erasure_id == erased.erasure_id and set(entry.hashes) == hashes
        assert reconcile(store.erasures, NOW).journaled == 0
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
    contents = FileJournal(journal).read()
    assert [entry.erasure_id for entry in contents.entries] == [erased.erasure_id]
    assert contents.unreadable == 1


def test_a_deployments_journal_is_a_table_in_a_sibling_schema_a_dump_of_the_deployment_leaves_out(
    postgres_url: str,
) -> None:
    store = StateStore(with_schema(postgres_url, "shop"))
    try:
        journal = store.erasures.journal
        assert isinstance(journal, TableJournal) and journal.where == "shop_erasures.erasure_journal"
        _populate(store)
        erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED})
        assert (erased.journal, erased.journal_problem) == ("shop_erasures.erasure_journal", None)
        with store.db.reading() as conn:
            rows = conn.execute(text("SELECT erasure_id FROM shop_erasures.erasure_journal")).all()
            # The state's own schema holds no journal: a dump of it restores no older one.
            assert conn.execute(text("SELECT to_regclass('shop.erasure_journal')")).scalar() is None
        assert [row[0] for row in rows] == [erased.erasure_id]
    finally:
        store.close()


def test_an_erasure_whose_transaction_fails_leaves_no_journal_entry(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction for both: the SQLite file's "journal first, then commit" would leave an
    entry for an erasure that never happened (the replay then completes it); here neither stays."""
    store = StateStore(postgres_url)
    try:
        _populate(store)
        assert reconcile(store.erasures, NOW).problem is None  # the journal's table is there, empty
        appended = TableJournal.append

        def append_then_fail(self: TableJournal, conn: object, entries: object) -> None:
            appended(self, conn, entries)  # type: ignore[arg-type]
            raise RuntimeError("the commit never happened")

        monkeypatch.setattr(TableJournal, "append", append_then_fail)
        with pytest.raises(RuntimeError):
            store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED})
        monkeypatch.undo()
        assert _journal(store).entries == []
        assert store.profiles_for(email_key="anna@x.nl") != []  # not erased either
    finally:
        store.close()


def test_a_schema_holding_another_deployments_state_is_no_journal(postgres_url: str) -> None:
    """A deployment named `shop_erasures` beside one named `shop`: its state is never taken for
    (or written as) shop's journal; shop's writing commands say so instead."""
    other = StateStore(with_schema(postgres_url, "shop_erasures"))
    other.close()
    store = StateStore(with_schema(postgres_url, "shop"))
    try:
        _populate(store)
        done = reconcile(store.erasures, NOW)
        assert done.problem is not None and "another crmsync deployment's state" in done.problem
        erased = store.erasures.erase(["p_anna"], NOW, {"shop": TAGGED})
        assert erased.journal_problem == done.problem
        assert store.profiles_for(email_key="anna@x.nl") == []  # erased all the same
    finally:
        store.close()


def test_a_long_schema_name_gets_a_journal_schema_of_its_own_within_postgresqls_63_bytes() -> None:
    assert journal_schema("shop") == "shop_erasures" and journal_schema("public") == "public_erasures"
    long_a, long_b = "a" * 60 + "_one", "a" * 60 + "_two"
    assert len(journal_schema(long_a)) <= 63 and len(journal_schema(long_b)) <= 63
    assert journal_schema(long_a) != journal_schema(long_b)
    assert journal_schema(long_a).endswith("_erasures")


def test_a_role_without_the_privileges_is_told_the_sql_that_gives_them(
    server: PostgresServer, db: str, postgres_url: str
) -> None:
    """Each missing privilege, named with the SQL a database owner runs: no CREATE on the database
    (the schema is missing), none on a schema someone else made, a table it may read but not write
    (each privilege asked on its own: PostgreSQL answers a list with "any of them")."""
    role = f"j_{db}"[:63]  # roles are the server's, shared by every test's database
    server.psql(f"CREATE ROLE {role} LOGIN")
    server.psql(f"CREATE SCHEMA {role} AUTHORIZATION {role}", database=db)
    store = StateStore(str(make_url(postgres_url).set(username=role).render_as_string(hide_password=False)))
    try:
        problem = reconcile(store.erasures, NOW).problem
        assert problem is not None and f"`CREATE SCHEMA {role}_erasures AUTHORIZATION {role}`" in problem
        server.psql(f"CREATE SCHEMA {role}_erasures", database=db)  # a DBA's, with no grant yet
        problem = reconcile(store.erasures, NOW).problem
        assert problem is not None and f"`GRANT USAGE, CREATE ON SCHEMA {role}_erasures TO {role}`" in problem
        server.psql(f"CREATE TABLE {role}_erasures.erasure_journal (seq bigint, erasure_id text, line text)", db)
        server.psql(f"GRANT USAGE ON SCHEMA {role}_erasures TO {role}", database=db)
        server.psql(f"GRANT SELECT ON {role}_erasures.erasure_journal TO {role}", database=db)
        problem = reconcile(store.erasures, NOW).problem
        assert problem is not None and "may not read and write it" in problem and "GRANT SELECT, INSERT" in problem
        server.psql(f"GRANT INSERT ON {role}_erasures.erasure_journal TO {role}", database=db)
        assert reconcile(store.erasures, NOW).problem is None
    finally:
        store.close()
