"""`crmsync backup FILE`: a consistent copy of the state while a daemon may be writing to it.

SQLite in WAL mode keeps recent commits in the `-wal` file, so copying the database file alone
(or copying it mid-checkpoint) can give a torn or stale copy. SQLite's online backup API copies
page by page from one read transaction, so the copy is the state as of one commit, and it needs
no writer lock: a running daemon goes on. The copy is checked with `PRAGMA integrity_check`
before it is reported. Restoring is moving the copy into place while crmsync is stopped.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any


class BackupError(Exception):
    """What stops a backup, with the exit code to leave with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def backup_sqlite(source: Path, target: Path) -> dict[str, Any]:
    if not source.exists():
        raise BackupError(f"no state at {source} yet: nothing to back up", 4)
    if target.exists():
        raise BackupError(f"{target} exists: a backup never overwrites a file", 2)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        # Read-only URI: the backup can never change the state it copies.
        reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        with closing(reader) as db, closing(sqlite3.connect(partial)) as copy:
            db.backup(copy, pages=1024)
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        if verdict != "ok":
            raise BackupError(f"the copy failed its integrity check: {verdict}", 70)
        partial.replace(target)  # only a checked copy gets the name asked for
    finally:
        partial.unlink(missing_ok=True)
    return {"ok": True, "backup": str(target), "bytes": target.stat().st_size, "integrity": "ok"}
