"""`crmsync backup FILE`: a consistent copy of the state while a daemon may be writing to it.

SQLite in WAL mode keeps recent commits in the `-wal` file, so copying the database file alone
(or copying it mid-checkpoint) can give a torn or stale copy. SQLite's online backup API copies
page by page from one read transaction, so the copy is the state as of one commit, and it needs
no writer lock: a running daemon goes on. The copy is checked with `PRAGMA integrity_check`
before it is reported. Restoring is moving the copy into place while crmsync is stopped.

On PostgreSQL the server's own tool does the same job: `pg_dump` reads from one snapshot
(docs/operations.md says how to restore).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
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


def backup_postgres(url: str, target: Path, schema: str = "public") -> dict[str, Any]:
    """`pg_dump` of the deployment's schema in its custom format (restore with `pg_restore`),
    checked by listing its table of contents. The password travels in the environment, never on a
    command line another user could read."""
    from sqlalchemy.engine import make_url

    tool = shutil.which("pg_dump")
    if tool is None:
        raise BackupError(
            "pg_dump is not installed here: install PostgreSQL's client tools, or use the server's own "
            "backup (pg_basebackup, or your provider's snapshots)",
            2,
        )
    if target.exists():
        raise BackupError(f"{target} exists: a backup never overwrites a file", 2)
    parsed = make_url(url)
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    connection = [
        f"--host={parsed.host or '127.0.0.1'}",
        f"--port={parsed.port or 5432}",
        f"--username={parsed.username or 'postgres'}",
        f"--dbname={parsed.database or 'postgres'}",
        "--no-password",
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        dumped = subprocess.run(
            [tool, *connection, "--format=custom", f"--schema={schema}", f"--file={partial}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if dumped.returncode != 0:
            raise BackupError(f"pg_dump failed: {dumped.stderr.strip() or dumped.returncode}", 70)
        restore = shutil.which("pg_restore")
        if restore is not None:
            listed = subprocess.run([restore, "--list", str(partial)], capture_output=True, text=True, check=False)
            if listed.returncode != 0:
                raise BackupError(f"the dump cannot be read back: {listed.stderr.strip()}", 70)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return {
        "ok": True,
        "backup": str(target),
        "bytes": target.stat().st_size,
        "format": "pg_dump custom",
        "schema": schema,
    }
