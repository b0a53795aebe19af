"""Opening the state the way every writing command must: under the single-writer lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sync.config import LoadedConfig
from sync.lock import StateLock
from sync.state import StateStore


def lock_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".lock")


@contextmanager
def open_state(loaded: LoadedConfig, command: str) -> Iterator[StateStore]:
    """The state store, held with the lock for the duration; raises LockHeld naming the holder."""
    lock = None
    path = loaded.sqlite_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = StateLock(lock_path(path))
        lock.acquire(command)
    try:
        store = StateStore(loaded.state_url())
        try:
            yield store
        finally:
            store.close()
    finally:
        if lock is not None:
            lock.release()
