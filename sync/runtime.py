"""Opening the state the way every writing command must: under the single-writer lock, upgrading a
state written by an earlier crmsync first (after a backup), since only the lock holder may.

The lock is a file lock beside a SQLite state (sync/lock.py) and an advisory lock per deployment
on PostgreSQL (sync/pglock.py); both raise the same `LockHeld` naming the holder, so a one-off
writer exits 5 alike. The daemon on PostgreSQL passes `standby=`: instead of LockHeld it waits
until the deployment's lock is free (or until it is stopped: `StandbyStopped`).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from sync.config import LoadedConfig
from sync.lock import StateLock
from sync.pglock import AdvisoryLock, LockProof, server_schema
from sync.state import StateStore
from sync.state.sql import schema_of

log = structlog.get_logger("crmsync.runtime")

WriterLock = StateLock | AdvisoryLock


class StandbyStopped(Exception):
    """A standby was stopped (SIGTERM/SIGINT) before the active process's lock came free."""


@dataclass
class Writer:
    """The state and the lock it is held under (None: a state nothing else can open, in memory)."""

    store: StateStore
    lock: WriterLock | None

    def guard(self) -> Callable[[], None]:
        """Called before each write batch in this process: raises LockLost once the lock is gone."""
        return self.lock.guard if self.lock is not None else _no_guard

    def proof(self) -> LockProof | None:
        """What a cycle's own process checks before each write batch (None: nothing can be lost)."""
        return self.lock.proof() if self.lock is not None else None

    def still_held(self) -> bool:
        return self.lock.still_held() if self.lock is not None else True


def _no_guard() -> None:
    """Nothing to prove."""


def lock_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".lock")


def is_postgres(loaded: LoadedConfig) -> bool:
    return loaded.state_url().startswith("postgresql")


def state_schema(loaded: LoadedConfig) -> str | None:
    """PostgreSQL: the schema that holds the deployment, which its lock, its backups and the
    backup before an upgrade are of: `[state] schema` (the setting is `schema_` in the model,
    `schema` being a pydantic name), else the one the URL's `search_path` option names, else the
    one the server puts a connection's tables in (`current_schema()`: not `public` where each role
    has a schema of its own). None on SQLite."""
    if not is_postgres(loaded):
        return None
    for name in ("schema_", "schema"):
        value = getattr(loaded.config.state, name, None)
        if isinstance(value, str) and value:
            return value
    return schema_of(loaded.state_url()) or server_schema(loaded.state_url())


def advisory_lock(loaded: LoadedConfig) -> AdvisoryLock:
    return AdvisoryLock(loaded.state_url(), state_schema(loaded), failover_s=loaded.config.state.failover)


@contextmanager
def _locked(loaded: LoadedConfig, command: str, standby: threading.Event | None = None) -> Iterator[WriterLock | None]:
    lock: WriterLock | None = None
    path = loaded.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = StateLock(lock_path(path))
        lock.acquire(command)
    elif is_postgres(loaded):
        lock = advisory_lock(loaded)
        if standby is None:
            lock.try_acquire(command)
        elif not lock.wait_acquire(command, standby):
            raise StandbyStopped
        log.info("writer lock taken", lock=lock.where, backend_pid=lock.holder_backend_pid)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def _migrate(loaded: LoadedConfig) -> dict[str, Any]:
    """Upgrade (the caller holds the lock): after a checked copy beside a SQLite state, or on
    PostgreSQL a `pg_dump` of the deployment's schema into the config's folder when pg_dump is
    installed (without it: a warning, and the upgrade goes on, in one transaction all the same)."""
    from sync.migrate import migrate_state, pending_migration

    path = loaded.sqlite_path()
    if path is not None or not is_postgres(loaded):
        return migrate_state(loaded.state_url(), sqlite_path=path)
    found = pending_migration(loaded.state_url())
    backup = None
    if found is not None:
        backup = _pg_backup(loaded, found[0])
    document = migrate_state(loaded.state_url(), sqlite_path=None)
    return {**document, "backup": str(backup) if backup is not None and document["applied"] else document["backup"]}


def _pg_backup(loaded: LoadedConfig, version: str) -> Path | None:
    from sync.backup import BackupError, backup_postgres
    from sync.pglock import database_of

    schema = state_schema(loaded)
    if shutil.which("pg_dump") is None:
        log.warning(
            "migrating the state without a backup: pg_dump is not installed here",
            schema=schema,
            advice="install PostgreSQL's client tools, or back the database up before upgrading crmsync",
        )
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = loaded.folder / (loaded.config.state.backup_dir or ".")
    target = folder / f"{database_of(loaded.state_url())}-{schema}.pre-migrate-{version}-{stamp}.dump"
    # No upgrade without its backup. Exit 2 whatever stopped it: a setting or the server to see
    # to, not a crash, and a daemon restarted by systemd would only fail the same way again.
    stopped = "the backup before upgrading the state could not be made, so the state was not upgraded"
    if not os.access(folder, os.W_OK):
        raise BackupError(
            f"{stopped}: {folder} is not a folder crmsync may write to (set [state] backup_dir to one; "
            "under the shipped systemd unit, /var/lib/crmsync)",
            2,
        )
    try:
        backup_postgres(loaded.state_url(), target, schema or "public")
    except BackupError as exc:
        raise BackupError(f"{stopped}: {exc}", 2) from None
    return target


def migrate_if_needed(loaded: LoadedConfig) -> dict[str, Any] | None:
    """Upgrade an older state in place (the caller holds the lock); the migration document, or None
    when there was nothing to do."""
    from sync.migrate import pending_migration

    if pending_migration(loaded.state_url()) is None:
        return None
    return _migrate(loaded)


def migrate_locked(loaded: LoadedConfig, command: str = "migrate") -> dict[str, Any]:
    """`crmsync migrate`: take the writer lock (LockHeld names its holder), upgrade, release."""
    with _locked(loaded, command):
        return _migrate(loaded)


@contextmanager
def open_writer(loaded: LoadedConfig, command: str, *, standby: threading.Event | None = None) -> Iterator[Writer]:
    """The state store and its lock, held for the duration; raises LockHeld naming the holder, or
    with `standby` (the daemon, PostgreSQL) waits for the lock until that event is set
    (StandbyStopped). An older state is upgraded first, while the lock is held."""
    from sync.clock import now
    from sync.state.erasure_replay import reconcile

    with _locked(loaded, command, standby) as lock:
        migrate_if_needed(loaded)
        store = StateStore(loaded.state_url())
        try:
            # Before anything reads the state for a cycle: a person forgotten after the backup this
            # state was restored from is erased again (sync/state/erasure_replay.py).
            reconcile(store.erasures, now())
            yield Writer(store, lock)
        finally:
            store.close()


@contextmanager
def open_state(loaded: LoadedConfig, command: str) -> Iterator[StateStore]:
    """The state store, held with the lock for the duration; raises LockHeld naming the holder.
    An older state is upgraded first, while the lock is held (logged as "state migrated")."""
    with open_writer(loaded, command) as writer:
        yield writer.store


def lock_holder(loaded: LoadedConfig) -> dict[str, Any] | None:
    """Who holds the writer lock now (for `status`): the lock file's holder, or on PostgreSQL the
    session holding the deployment's advisory lock; None when it is free."""
    from sync.lock import current_holder
    from sync.pglock import current_holder as current_pg_holder

    path = loaded.sqlite_path()
    if path is not None:
        return current_holder(lock_path(path))
    if is_postgres(loaded):
        return current_pg_holder(loaded.state_url(), state_schema(loaded), failover_s=loaded.config.state.failover)
    return None
