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

import contextlib
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
    partial = private_file(target.with_name(target.name + ".partial"))
    try:
        # Read-only URI: the backup can never change the state it copies. All pages in one step,
        # from one read transaction: copied a slice at a time, SQLite starts over after every
        # commit of the writer beside it, and under a busy daemon the copy never ended.
        reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        with closing(reader) as db, closing(sqlite3.connect(partial)) as copy:
            db.backup(copy)
            verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        if verdict != "ok":
            raise BackupError(f"the copy failed its integrity check: {verdict}", 70)
        partial.replace(target)  # only a checked copy gets the name asked for
    finally:
        _discard(partial)
    return {"ok": True, "backup": str(target), "bytes": target.stat().st_size, "integrity": "ok"}


def private_file(path: Path) -> Path:
    """`path`, created empty and readable by its owner alone: a backup holds every customer's
    personal data, whatever the umask of the shell that ran `crmsync backup`."""
    try:
        path.unlink(missing_ok=True)  # one a stopped backup left
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as exc:
        raise BackupError(f"cannot write {path}: {exc.strerror}", 2) from None
    return path


def _discard(partial: Path) -> None:
    """The unfinished copy gone, if it can be: failing to remove it must not hide why it failed."""
    with contextlib.suppress(OSError):
        partial.unlink(missing_ok=True)


def backup_postgres(url: str, target: Path, schema: str = "public") -> dict[str, Any]:
    """`pg_dump` of the deployment's schema in its custom format (restore with `pg_restore`),
    checked by listing its table of contents. The password travels in the environment, never on a
    command line another user could read."""
    from psycopg.conninfo import make_conninfo

    from sync.pglock import libpq_params

    tool = shutil.which("pg_dump")
    if tool is None:
        raise BackupError(
            "pg_dump is not installed here: install PostgreSQL's client tools, or use the server's own "
            "backup (pg_basebackup, or your provider's snapshots)",
            2,
        )
    if target.exists():
        raise BackupError(f"{target} exists: a backup never overwrites a file", 2)
    # Every setting of the URL (its query's `host=/run/postgresql`, `sslmode` ...) as crmsync's own
    # connections use them, in a connection string; the password in the environment only.
    params = libpq_params(url)
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    connection = [f"--dbname={make_conninfo(**{k: str(v) for k, v in params.items()})}", "--no-password"]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = private_file(target.with_name(target.name + ".partial"))
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
        _discard(partial)
    return {
        "ok": True,
        "backup": str(target),
        "bytes": target.stat().st_size,
        "format": "pg_dump custom",
        "schema": schema,
    }
