"""One writer per state: an OS file lock beside a SQLite state file (on PostgreSQL, an advisory lock:
sync/pglock.py, with the same `LockHeld` and the same methods).

The kernel drops a flock when its holder dies, SIGKILL included, so a lock left by a killed
process is simply taken by the next one; the holder's details in the file are then overwritten.
A flock cannot be taken away from a living holder, so `still_held` is always true and `guard` does
nothing; an advisory lock's session can be lost, and then `guard` raises `LockLost`.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any


class LockHeld(Exception):
    """Another process holds the state's lock. `path` is the lock file, or for PostgreSQL a
    description of the advisory lock (a str)."""

    def __init__(self, path: Path | str, holder: dict[str, Any] | None) -> None:
        self.path = path
        self.holder = holder or {}
        who = (
            f"pid {self.holder.get('pid', '?')} on {self.holder.get('host', '?')} "
            f"({self.holder.get('command', '?')}, since {self.holder.get('since', '?')})"
            if self.holder
            else "another process"
        )
        where = f"lock file {path}" if isinstance(path, Path) else str(path)
        super().__init__(f"the state is in use by {who}; {where}")


class LockLost(Exception):
    """The writer lock is no longer held by this process (its PostgreSQL session ended or was
    terminated): nothing more may be written."""

    def __init__(self, where: str) -> None:
        super().__init__(f"lock lost: stopping writes ({where})")


class StateLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self, command: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115  (held open for the lifetime of the lock)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise LockHeld(self.path, read_holder(self.path)) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "command": command,
                    "since": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
        )
        handle.flush()
        self._handle = handle

    def still_held(self) -> bool:
        return self._handle is not None

    def guard(self) -> None:
        """Before a write batch: a flock cannot be lost while its holder lives."""

    def proof(self) -> None:
        """Nothing for a cycle's process to check: see `guard`."""
        return None

    def release(self) -> None:
        if self._handle is not None:
            try:
                self._handle.seek(0)
                self._handle.truncate()
            finally:
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
                self._handle.close()
                self._handle = None


def read_holder(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
        data = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def current_holder(path: Path) -> dict[str, Any] | None:
    """Who holds the lock right now, or None (a leftover file of a dead holder counts as free)."""
    if not path.exists():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return read_holder(path) or {}
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None
