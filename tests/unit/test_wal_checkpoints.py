"""The compute's commits leave the write-ahead log alone (sync/state/sql.py,
`Database.wal_checkpoints_deferred`), and a cycle copies it into the database file afterwards,
beside its vendor writes (sync/pipeline.py, `checkpoint_beside`). Measured on a real SQLite file:
what reaches the database file, and when."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sync.pipeline import checkpoint_beside
from sync.state import StateStore
from sync.state.sql import AUTOCHECKPOINT_PAGES, SQLITE_PAGE_SIZE, Database

ROW = SQLITE_PAGE_SIZE * 15 // 16  # a row fills most of a page of a new state
PAGES = 3 * AUTOCHECKPOINT_PAGES // 2  # rows of a page each: half as much again as a commit checkpoints past


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    path = tmp_path / "wal.db"
    database = Database(f"sqlite:///{path}")
    with database.writing() as conn:
        conn.exec_driver_sql("CREATE TABLE pages (n INTEGER PRIMARY KEY, body BLOB)")
    yield database, path
    database.close()


def _write(database: Database, first: int) -> None:
    with database.writing() as conn:
        rows = [(n, bytes(ROW)) for n in range(first, first + PAGES)]
        conn.connection.driver_connection.executemany("INSERT INTO pages VALUES (?, ?)", rows)  # type: ignore[union-attr]


def _autocheckpoint(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def test_commits_inside_leave_the_log_to_a_checkpoint_and_commits_outside_checkpoint_as_ever(
    db: tuple[Database, Path],
) -> None:
    database, path = db
    before = path.stat().st_size
    _write(database, 0)
    grown = path.stat().st_size
    assert grown > before + PAGES * ROW * 0.9  # SQLite's own checkpoint at commit copied it
    with database.wal_checkpoints_deferred():
        assert _autocheckpoint(database) == 0
        _write(database, PAGES)
        assert path.stat().st_size == grown  # in the log only
        with closing(sqlite3.connect(path)) as other:  # and readable there, by anyone
            assert other.execute("SELECT COUNT(*) FROM pages").fetchone() == (2 * PAGES,)
    assert _autocheckpoint(database) == AUTOCHECKPOINT_PAGES  # the same pooled connection, put back
    assert path.stat().st_size == grown
    database.wal_checkpoint()
    assert path.stat().st_size > grown + PAGES * ROW * 0.9
    _write(database, 2 * PAGES)
    assert path.stat().st_size > grown + 2 * PAGES * ROW * 0.9  # checkpointing at commit again


def test_overlapping_callers_keep_the_deferral_until_the_last_one_leaves(db: tuple[Database, Path]) -> None:
    database, _ = db
    with database.wal_checkpoints_deferred():
        with database.wal_checkpoints_deferred():
            assert _autocheckpoint(database) == 0
        assert _autocheckpoint(database) == 0
    assert _autocheckpoint(database) == AUTOCHECKPOINT_PAGES


def test_a_cycle_checkpoints_beside_its_vendor_writes_and_a_failed_checkpoint_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "crmsync.db"
    store = StateStore(f"sqlite:///{path}")
    try:
        with store.db.writing() as conn:
            conn.exec_driver_sql("CREATE TABLE pages (n INTEGER PRIMARY KEY, body BLOB)")
        with store.wal_checkpoints_deferred():
            _write(store.db, 0)
        size = path.stat().st_size
        with checkpoint_beside(store):
            pass  # the vendor writes
        assert path.stat().st_size > size + PAGES * ROW * 0.9

        def fail() -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(store, "wal_checkpoint", fail)
        with capture_logs() as logs, checkpoint_beside(store):
            pass
        [logged] = [entry for entry in logs if entry["event"] == "checkpoint not made"]
        assert "disk I/O error" in logged["error"]
    finally:
        store.close()
