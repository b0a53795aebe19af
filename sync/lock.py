"""One writer per state: an OS file lock beside the state file.

The kernel drops a flock when its holder dies, SIGKILL included, so a lock left by a killed
process is simply taken by the next one; the holder's details in the file are then overwritten.
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
    def __init__(self, path: Path, holder: dict[str, Any] | None) -> None:
        self.path = path
        self.holder = holder or {}
        who = (
            f"pid {self.holder.get('pid', '?')} on {self.holder.get('host', '?')} "
            f"({self.holder.get('command', '?')}, since {self.holder.get('since', '?')})"
            if self.holder
            else "another process"
        )
        super().__init__(f"the state is in use by {who}; lock file {path}")


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
