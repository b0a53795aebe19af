"""The state migrations without vendors: the revision chain ends at today's tables, a state from
each schema number before Alembic (in every shape that number was released in) upgrades in place
keeping its rows, an upgrade that fails leaves the state as it was, a new state is made at head,
and nothing here writes to a state it only looks at."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from sync.migrate import backup_before_migrate, migrate_state, pending_migration
from sync.state import SCHEMA_VERSION, StateStore, StateVersionError, metadata
from sync.state.migrations import LEGACY, head, migration_engine, revisions_between, upgrade
from sync.state.migrations.steps import segment_tables
from sync.state.sql import schema_of


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return list(db.execute(sql).fetchall())


def table_names(path: Path) -> set[str]:
    return {name for (name,) in rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def schema_differences(path: Path) -> list[Any]:
    engine = create_engine(url_of(path))
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def legacy_state(path: Path, version: str, shape: Callable[[Any], None] | None = None) -> None:
    """A state as crmsync at schema `version` wrote it before Alembic: the revisions up to that
    number from nothing, then no alembic_version table (old crmsync had none), in WAL mode (every
    crmsync has kept its SQLite state in WAL mode)."""
    engine = migration_engine(url_of(path))
    try:
        with engine.begin() as conn:
            upgrade(conn, None, version)
            conn.execute(text("DROP TABLE alembic_version"))
            if shape is not None:
                shape(conn)
    finally:
        engine.dispose()
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")


def fill_schema1(conn: Any) -> None:
    """Rows of every kind a schema-1 crmsync kept, with the order dates it wrote and odd ones."""
    owned = json.dumps({"tags": ["crmsync:friends", "vip"], "fields": {"crmsync.loyalty_tier": "gold"}})
    conn.execute(
        text(
            "INSERT INTO contacts (system, record_id, email, phone, first_name, last_name, updated_at, owned, "
            "changed_seq) VALUES ('shop', 'gid://shopify/Customer/7', 'Anna@Example.nl', '0612345678', 'Anna', "
            "'Jansen', '2026-11-01T10:00:00+00:00', :owned, 1), ('web', '42', 'anna@example.nl', NULL, 'Anna', "
            "NULL, NULL, :empty, 2)"
        ),
        {"owned": owned, "empty": json.dumps({"tags": [], "fields": {}})},
    )
    for number, created in enumerate(ORDER_DATES):
        conn.execute(
            text(
                "INSERT INTO orders (system, order_id, customer_id, email, amount, currency, created_at, counts, "
                "changed_seq) VALUES ('shop', :id, 'gid://shopify/Customer/7', NULL, '10.00', 'EUR', :at, 1, 1)"
            ),
            {"id": f"o{number}", "at": created},
        )
    conn.execute(
        text(
            "INSERT INTO profiles (profile_id, created_seq, segments, tier, traits, updated_seq) VALUES "
            "('p_000000000001', 1, '[\"friends\", \"tier-gold\"]', 'gold', '{}', 2)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO profile_members (system, record_id, profile_id) VALUES "
            "('shop', 'gid://shopify/Customer/7', 'p_000000000001'), ('web', '42', 'p_000000000001')"
        )
    )
    conn.execute(text("INSERT INTO profile_aliases (alias, profile_id, seq) VALUES ('p_old', 'p_000000000001', 2)"))
    conn.execute(
        text(
            "INSERT INTO pushed (system, record_id, state, pushed_seq, pushed_at) VALUES "
            "('shop', 'gid://shopify/Customer/7', :owned, 1, '2026-11-01T10:00:00+00:00')"
        ),
        {"owned": owned},
    )
    conn.execute(
        text(
            "INSERT INTO checkpoints (system, stream, value, seq) VALUES "
            "('shop', 'contacts', '{\"cursor\": \"2026-11-01T10:00:00+00:00\"}', 2)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO runs (seq, run_id, command, started_at, finished_at, status, summary) VALUES "
            "(1, 'r1', 'sync', '2026-11-01T10:00:00+00:00', '2026-11-01T10:00:01+00:00', 'ok', '{}'), "
            "(2, 'r2', 'sync', '2026-11-02T10:00:00+00:00', '2026-11-02T10:00:01+00:00', 'ok', '{}')"
        )
    )
    conn.execute(text("INSERT INTO meta (key, value) VALUES ('mapping_version', '1')"))


ORDER_DATES = [
    "2025-04-28T06:51:00+00:00",
    "2025-04-28T08:51:00+02:00",  # the same moment in another offset
    "2026-10-24T15:07:15.123456+02:00",  # fractions are cut, as int(timestamp()) does
    "2025-01-01T00:00:00Z",
    "not a date",  # nothing reads it: 0 until the next cycle maps the raw record again
]


def expected_epoch(value: str) -> int:
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def test_the_revisions_are_the_schema_numbers_and_end_at_todays_tables(tmp_path: Path) -> None:
    assert head() == SCHEMA_VERSION
    assert revisions_between(None, head()) == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"]
    assert set(LEGACY) == {"1", "2", "3", "4", "5"}
    path = tmp_path / "chain.db"
    engine = migration_engine(url_of(path))
    with engine.begin() as conn:
        applied = upgrade(conn, None)
    engine.dispose()
    assert applied == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"]
    assert schema_differences(path) == []  # columns, types, nullability, indexes: as create_all makes them
    assert rows(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]


def test_a_schema_1_state_upgrades_in_place_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.db"
    legacy_state(path, "1", fill_schema1)
    assert "identity_links" not in table_names(path)  # as 6045d9c made it
    kept = {
        table: rows(path, f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("profiles", "profile_members", "profile_aliases", "pushed", "checkpoints", "runs")
    }
    assert pending_migration(url_of(path)) == ("1", SCHEMA_VERSION)

    result = migrate_state(url_of(path), sqlite_path=path)

    assert result["ok"] is True and result["from"] == "1" and result["to"] == SCHEMA_VERSION
    assert result["applied"] == ["2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"]
    backup = Path(result["backup"])
    assert backup.parent == tmp_path and backup.name.startswith("crmsync.db.pre-migrate-1-")
    assert rows(backup, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    assert "alembic_version" not in table_names(backup)  # the copy is the state as it was
    assert pending_migration(url_of(path)) is None
    assert schema_differences(path) == []
    assert rows(path, "SELECT version_num FROM alembic_version") == [(SCHEMA_VERSION,)]
    for table, before in kept.items():
        if table == "profiles":  # one column more, the rest as it was
            after = rows(
                path, "SELECT profile_id, created_seq, segments, tier, traits, updated_seq, fingerprint FROM profiles"
            )
            assert [row[:-1] for row in after] == [row for row in before] and [row[-1] for row in after] == [0]
        else:
            assert rows(path, f"SELECT * FROM {table} ORDER BY 1, 2") == before, table
    contacts = rows(
        path,
        "SELECT system, record_id, email, phone, owned, changed_seq, links, email_key, email_role, details, "
        "given_name FROM contacts ORDER BY system",
    )
    assert [c[:6] for c in contacts] == [
        ("shop", "gid://shopify/Customer/7", "Anna@Example.nl", "0612345678", contacts[0][4], 1),
        ("web", "42", "anna@example.nl", None, contacts[1][4], 2),
    ]
    assert json.loads(contacts[0][4])["tags"] == ["crmsync:friends", "vip"]  # what the vendor held, kept
    # What only the mapping can fill waits for the next cycle's remap, which the missing
    # mapping_version triggers (sync/extract.py).
    assert [c[6:] for c in contacts] == [("[]", None, 0, "{}", None)] * 2
    assert rows(path, "SELECT value FROM meta WHERE key = 'mapping_version'") == []
    epochs = dict(rows(path, "SELECT created_at, created_epoch FROM orders"))
    assert epochs == {value: expected_epoch(value) for value in ORDER_DATES}
    assert epochs["2025-04-28T06:51:00+00:00"] == epochs["2025-04-28T08:51:00+02:00"] == 1745823060
    assert {"identity_links", "segment_history", "segment_runs", "profile_tiers"} <= table_names(path)
    # The segment tables start from what the profiles say: in these segments and this tier at
    # their last run (r2), so the tier's grace period runs from then.
    assert rows(path, "SELECT * FROM segment_history ORDER BY segment") == [
        ("p_000000000001", "friends", 2, "2026-11-02T10:00:00+00:00", None, None),
        ("p_000000000001", "tier-gold", 2, "2026-11-02T10:00:00+00:00", None, None),
    ]
    assert rows(path, "SELECT * FROM profile_tiers") == [("p_000000000001", "gold", "2026-11-02T10:00:00+00:00", 2)]
    assert rows(path, "SELECT count(*) FROM segment_runs") == [(0,)]


def add_identity_links(conn: Any) -> None:
    """4587162 added identity_links and kept the number 1."""
    conn.execute(
        text(
            "CREATE TABLE identity_links (a VARCHAR(320) NOT NULL, b VARCHAR(320) NOT NULL, "
            "kind VARCHAR(32) NOT NULL, value VARCHAR(320) NOT NULL, PRIMARY KEY (a, b))"
        )
    )
    conn.execute(text("INSERT INTO identity_links VALUES ('shop:1', 'web:2', 'email', 'a@b.nl')"))


def add_segment_tables(conn: Any) -> None:
    """a72f6a2 (schema 2 on the segments branch) had the segment tables, with history in them."""
    for table in segment_tables():
        table.create(conn)
    conn.execute(
        text(
            "INSERT INTO segment_history VALUES ('p_1', 'friends', 1, '2026-11-01T10:00:00+00:00', NULL, NULL), "
            "('p_1', 'passers-by', 1, '2026-10-01T10:00:00+00:00', 1, '2026-11-01T10:00:00+00:00')"
        )
    )
    conn.execute(text("INSERT INTO profile_tiers VALUES ('p_1', 'gold', '2026-09-01T10:00:00+00:00', 1)"))


def drop_segment_tables(conn: Any) -> None:
    """95dfcaa released schema 3 without the segment tables (merged in later, still at 3)."""
    for name in ("segment_history", "segment_runs", "profile_tiers"):
        conn.execute(text(f"DROP TABLE {name}"))


@pytest.mark.parametrize(
    ("version", "shape", "kept"),
    [
        ("1", add_identity_links, "SELECT * FROM identity_links"),
        ("2", None, None),
        ("2", add_segment_tables, "SELECT * FROM segment_history UNION ALL SELECT *, 0, 0 FROM profile_tiers"),
        ("3", drop_segment_tables, None),
        ("3", None, None),
        ("4", None, None),
        ("5", None, None),
    ],
    ids=["1-with-identity-links", "2-b6bb074", "2-a72f6a2", "3-95dfcaa", "3-3457282", "4", "5"],
)
def test_every_released_shape_of_every_number_upgrades(
    tmp_path: Path, version: str, shape: Callable[[Any], None] | None, kept: str | None
) -> None:
    path = tmp_path / "crmsync.db"
    legacy_state(path, version, shape)
    before = rows(path, kept) if kept else []
    result = migrate_state(url_of(path), sqlite_path=path)
    assert result["from"] == version and result["applied"] == revisions_between(version, SCHEMA_VERSION)
    assert schema_differences(path) == []
    if kept:
        assert rows(path, kept) == before and before


def test_a_failed_upgrade_leaves_the_state_as_it_was(tmp_path: Path) -> None:
    """All revisions of one upgrade are one transaction, DDL included (pysqlite would commit each
    CREATE and ALTER by itself): a state whose revision 3 cannot finish is still a schema-2 state."""
    path = tmp_path / "crmsync.db"

    def clashing_index(conn: Any) -> None:  # revision 3 creates an index of this name
        conn.execute(text("CREATE INDEX ix_contacts_email_key ON contacts (email)"))
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('mapping_version', '2')"))

    legacy_state(path, "2", clashing_index)
    before = digest(path)
    with pytest.raises(Exception, match="ix_contacts_email_key"):
        migrate_state(url_of(path), sqlite_path=path)
    assert digest(path) == before
    assert "alembic_version" not in table_names(path) and "segment_history" not in table_names(path)
    assert "first_name" in {row[1] for row in rows(path, "PRAGMA table_info(contacts)")}
    assert rows(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]
    assert len(list(tmp_path.glob("crmsync.db.pre-migrate-2-*.db"))) == 1  # the backup was written first


def test_an_older_state_is_refused_by_the_store_without_a_byte_changing(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.db"
    legacy_state(path, "2")
    before = digest(path)
    with pytest.raises(StateVersionError, match=r"schema 2.*run `crmsync migrate`"):
        StateStore(url_of(path))
    assert digest(path) == before
    assert "alembic_version" not in table_names(path) and "segment_history" not in table_names(path)


def test_a_newer_state_is_refused_and_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.db"
    newer = str(int(SCHEMA_VERSION) + 1)
    StateStore(url_of(path)).close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE alembic_version SET version_num = ?", (newer,))
    with pytest.raises(StateVersionError, match="newer crmsync"):
        StateStore(url_of(path))
    with pytest.raises(StateVersionError, match="newer crmsync"):
        migrate_state(url_of(path), sqlite_path=path)
    assert rows(path, "SELECT version_num FROM alembic_version") == [(newer,)]


def test_a_new_state_is_made_at_head_and_migrating_it_does_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.db"
    assert pending_migration(url_of(path)) is None and not path.exists()  # looking creates nothing
    StateStore(url_of(path)).close()
    assert rows(path, "SELECT version_num FROM alembic_version") == [(SCHEMA_VERSION,)]
    assert rows(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]
    assert schema_differences(path) == []
    before = digest(path)
    result = migrate_state(url_of(path), sqlite_path=path)
    assert result == {"ok": True, "from": SCHEMA_VERSION, "to": SCHEMA_VERSION, "backup": None, "applied": []}
    assert digest(path) == before and not list(tmp_path.glob("*pre-migrate*"))
    StateStore(url_of(path)).close()  # opens again without complaint
    nothing = tmp_path / "none" / "crmsync.db"
    assert migrate_state(url_of(nothing), sqlite_path=nothing)["from"] is None and not nothing.parent.exists()


def test_a_creation_that_stopped_half_way_is_finished_and_a_foreign_database_refused(tmp_path: Path) -> None:
    half = tmp_path / "half.db"
    with closing(sqlite3.connect(half)) as db, db:  # SQLite's driver commits each CREATE TABLE alone
        db.execute("CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("CREATE TABLE runs (seq INTEGER PRIMARY KEY, run_id VARCHAR(36))")
    StateStore(url_of(half)).close()
    assert rows(half, "SELECT version_num FROM alembic_version") == [(SCHEMA_VERSION,)]
    foreign = tmp_path / "foreign.db"
    with closing(sqlite3.connect(foreign)) as db, db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    with pytest.raises(StateVersionError, match="not a crmsync state"):
        StateStore(url_of(foreign))
    assert table_names(foreign) == {"invoices"}


def test_backups_before_a_migration_never_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.db"
    legacy_state(path, "4")
    first, second = backup_before_migrate(path), backup_before_migrate(path)
    assert first != second and first.exists() and second.exists()
    assert first.name.startswith("crmsync.db.pre-migrate-4-") and second.name.startswith("crmsync.db.pre-migrate-4-")
    assert rows(second, "PRAGMA integrity_check") == [("ok",)]


def test_states_created_side_by_side_in_one_process_all_reach_head(tmp_path: Path) -> None:
    """Alembic keeps its command context in module globals; the chaos lab opens states on threads."""
    from concurrent.futures import ThreadPoolExecutor

    def open_one(number: int) -> str | None:
        store = StateStore(f"sqlite:///{tmp_path / f'state-{number}.db'}")
        try:
            return store.get_meta("schema_version")
        finally:
            store.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(open_one, range(16)))
    assert versions == [SCHEMA_VERSION] * 16


def differences_at(url: str) -> list[Any]:
    """Today's tables (sync/state/schema.py) against the database at `url`, on either backend."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), metadata))
    finally:
        engine.dispose()


def exits_index_is_partial(url: str) -> bool:
    """Whether `ix_segment_history_exited` holds exits only (schema 13), on either backend."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                found = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_segment_history_exited'"
                found += " AND schemaname = current_schema()"
                return "WHERE (exited_seq IS NOT NULL)" in str(conn.execute(text(found)).scalar())
            listed = conn.execute(text("PRAGMA index_list(segment_history)")).all()
            return any(row[1] == "ix_segment_history_exited" and row[4] == 1 for row in listed)
    finally:
        engine.dispose()


def version_at(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT version_num FROM alembic_version")).all())
    finally:
        engine.dispose()


def test_the_revisions_and_a_new_state_give_todays_tables_on_each_backend(new_state_url: Callable[[], str]) -> None:
    """On SQLite and on PostgreSQL (there in a schema of its own, Alembic's version table with it):
    the revision chain from nothing and a state made by the store hold exactly today's tables, and
    migrating the new state does nothing."""
    chain = new_state_url()
    engine = migration_engine(chain)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"CREATE SCHEMA {schema_of(chain)}"))
            assert upgrade(conn, None) == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13"]
    finally:
        engine.dispose()
    assert differences_at(chain) == []
    assert exits_index_is_partial(chain)  # what Alembic's comparison does not look at
    assert version_at(chain) == [(SCHEMA_VERSION,)]
    made = new_state_url()
    StateStore(made).close()
    assert differences_at(made) == []
    assert version_at(made) == [(SCHEMA_VERSION,)]
    assert migrate_state(made, sqlite_path=None)["applied"] == []


@pytest.mark.parametrize("version", ["2", "4", "5"])
def test_an_older_state_upgrades_to_todays_tables_on_each_backend(
    new_state_url: Callable[[], str], version: str
) -> None:
    """A state written before Alembic upgrades in place on both backends (PostgreSQL: no backup
    file; the revisions run in one transaction there too)."""
    url = new_state_url()
    engine = migration_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"CREATE SCHEMA {schema_of(url)}"))
            upgrade(conn, None, version)
            conn.execute(text("DROP TABLE alembic_version"))
    finally:
        engine.dispose()
    assert pending_migration(url) == (version, SCHEMA_VERSION)
    with pytest.raises(StateVersionError, match="crmsync migrate"):
        StateStore(url)
    result = migrate_state(url, sqlite_path=None)
    assert result["from"] == version and result["applied"] == revisions_between(version, SCHEMA_VERSION)
    assert differences_at(url) == [] and version_at(url) == [(SCHEMA_VERSION,)]
    assert exits_index_is_partial(url)
    StateStore(url).close()
