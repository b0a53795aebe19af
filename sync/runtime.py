"""Opening the state the way every writing command must: under the single-writer lock, upgrading a
state written by an earlier crmsync first (after a backup), since only the lock holder may."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sync.config import LoadedConfig
from sync.lock import StateLock
from sync.state import StateStore


def lock_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".lock")


@contextmanager
def _locked(loaded: LoadedConfig, command: str) -> Iterator[None]:
    lock = None
    path = loaded.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = StateLock(lock_path(path))
        lock.acquire(command)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def migrate_if_needed(loaded: LoadedConfig) -> dict[str, Any] | None:
    """Upgrade an older SQLite state in place (the caller holds the lock); the migration document,
    or None when there was nothing to do. A state elsewhere (PostgreSQL) is left to `crmsync
    migrate`: its lock is not this file lock, so `StateStore` refuses it with that advice."""
    from sync.migrate import migrate_state, pending_migration

    path = loaded.sqlite_path()
    if path is None or pending_migration(loaded.state_url()) is None:
        return None
    return migrate_state(loaded.state_url(), sqlite_path=path)


def migrate_locked(loaded: LoadedConfig, command: str = "migrate") -> dict[str, Any]:
    """`crmsync migrate`: take the writer lock (LockHeld names its holder), upgrade, release."""
    from sync.migrate import migrate_state

    with _locked(loaded, command):
        return migrate_state(loaded.state_url(), sqlite_path=loaded.sqlite_path())


@contextmanager
def open_state(loaded: LoadedConfig, command: str) -> Iterator[StateStore]:
    """The state store, held with the lock for the duration; raises LockHeld naming the holder.
    An older state is upgraded first, while the lock is held (logged as "state migrated")."""
    with _locked(loaded, command):
        migrate_if_needed(loaded)
        store = StateStore(loaded.state_url())
        try:
            yield store
        finally:
            store.close()
