"""Upgrading a state written by an earlier crmsync, in place: `crmsync migrate`, and the same at the
start of every writing command (sync/runtime.py `open_state`, under the writer lock).

The upgrade keeps everything a state has learnt: profile ids, segment history, held tiers, the
ledger of what each system accepted, checkpoints, runs. Before it touches a SQLite state it writes
a checked copy beside it, `<state>.pre-migrate-<from>-<UTC time>.db` (never overwriting one), which
is also how to go back: the revisions have no downgrade. All revisions of one upgrade run in one
transaction, so a failure leaves the state as it was.

The caller holds the writer lock: nothing here takes it (`sync.runtime.migrate_locked` does both).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, create_engine

from sync.backup import backup_sqlite
from sync.state.schema import SCHEMA_VERSION, StateVersionError, is_older, stored_version

log = structlog.get_logger("crmsync.migrate")


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return Path(url[len("sqlite:///") :])


def _reader(url: str) -> Engine:
    """An engine that only reads: a SQLite file is opened read-only (and never created)."""
    path = _sqlite_file(url)
    if path is None:
        return create_engine(url)
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30))


def current_version(url: str) -> str | None:
    """The state's schema revision, or None when there is no state there yet. Reads only."""
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        return None
    engine = _reader(url)
    try:
        with engine.connect() as conn:
            return stored_version(conn)
    finally:
        engine.dispose()


def pending_migration(url: str) -> tuple[str, str] | None:
    """(current, head) when the state at `url` needs upgrading; None when it is up to date or there
    is no state yet. A state newer than this crmsync raises StateVersionError."""
    found = current_version(url)
    if found is None or found == SCHEMA_VERSION:
        return None
    if not is_older(found):
        raise StateVersionError(
            f"the state was written by a newer crmsync (schema {found}; this one reads {SCHEMA_VERSION})"
        )
    return found, SCHEMA_VERSION


def backup_before_migrate(path: Path) -> Path:
    """A checked copy of the SQLite state beside it, named after the schema it holds and the UTC
    time: `<state>.pre-migrate-<from>-<YYYYmmddTHHMMSSZ>.db` (a number added rather than
    overwriting a copy of the same second)."""
    version = current_version(f"sqlite:///{path}") or "none"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{path.name}.pre-migrate-{version}-{stamp}"
    target = path.with_name(f"{base}.db")
    number = 1
    while target.exists() or target.with_name(target.name + ".partial").exists():
        number += 1
        target = path.with_name(f"{base}-{number}.db")
    backup_sqlite(path, target)
    return target


def migrate_state(url: str, *, sqlite_path: Path | None) -> dict[str, Any]:
    """Upgrade the state at `url` to this crmsync's schema, after a backup when it is a SQLite file
    (`sqlite_path`). Returns `{"ok": true, "from": "1", "to": "6", "backup": "/path" or null,
    "applied": ["2", ...]}`; `applied` is empty when there was nothing to do (then no backup is
    written), `from` is null when there is no state yet (nothing is created)."""
    from sync.state.migrations import LEGACY, migration_engine, upgrade

    found = pending_migration(url)
    if found is None:
        return {"ok": True, "from": current_version(url), "to": SCHEMA_VERSION, "backup": None, "applied": []}
    before, target = found
    backup = backup_before_migrate(sqlite_path) if sqlite_path is not None else None
    engine = migration_engine(url)
    try:
        with engine.begin() as conn:
            # Read again inside the transaction: the version this upgrade starts from.
            before = stored_version(conn) or before
            has_alembic = conn.dialect.has_table(conn, "alembic_version")
            legacy = None if has_alembic else before
            if legacy is not None and legacy not in LEGACY:
                raise StateVersionError(f"schema {legacy} is not one this crmsync knows how to upgrade")
            applied = upgrade(conn, legacy, target)
    finally:
        engine.dispose()
    result = {"ok": True, "from": before, "to": target, "backup": str(backup) if backup else None, "applied": applied}
    log.info("state migrated", **{"from": before, "to": target, "backup": result["backup"], "applied": applied})
    return result
