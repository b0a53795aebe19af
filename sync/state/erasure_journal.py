"""The erasure journal: every `crmsync forget`, kept outside the state, so that restoring a backup
made before an erasure cannot bring the person back (sync/state/erasure_replay.py replays what the
restored state lacks). One interface (`ErasureJournal`), two stores; the replay is the same for both:

- SQLite (`FileJournal`, here): the file `<state file>.erasures.jsonl` (`crmsync.db.erasures.jsonl`),
  not a name SQLite gives its own files (`-journal`, `-wal`, `-shm`), and not one the documented
  restore (`mv crmsync.db{,-wal,-shm}`) moves. Appended and fsynced before the erasure's state
  transaction commits: a file cannot be in that transaction, so a crash between the two leaves a
  journal ahead of the state, which the replay completes. Like a backup it is readable by its
  owner alone, whatever the umask.
- PostgreSQL (`TableJournal`, sync/state/erasure_journal_table.py): a table in a sibling schema of
  the deployment's, which crmsync's dump leaves out and `pg_restore` leaves alone, written in the
  erasure's own transaction.

Each entry is one JSON object (a line of the file, a row of the table):

    {"v": 1, "erasure": "<uuid>", "at": "<ISO-8601>", "profiles": 1, "salt": "<hex>",
     "hashes": ["<sha256 hex>", ...],
     "targets": [{"system": "shop", "id": "<vendor record id>", "known": {<RemoteState JSON>}}]}

and, for `forget --abandon`, `{"v": 1, "abandoned": "<uuid>", "system": "shop" | null, "at": ...}`.

It names no one beyond what the state keeps: the salted hashes `forgotten` holds, and the vendor
record ids `erasure_targets` holds until a vendor confirmed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from sqlalchemy import Connection

log = structlog.get_logger("crmsync.erasure_journal")

SUFFIX = ".erasures.jsonl"
VERSION = 1


def journal_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + SUFFIX)


@dataclass(frozen=True)
class JournalTarget:
    system: str
    record_id: str
    known: str  # RemoteState as compact JSON text, as `erasure_targets.known` holds it


@dataclass(frozen=True)
class JournalEntry:
    erasure_id: str
    requested_at: str
    profiles: int
    salt: str
    hashes: tuple[str, ...]
    targets: tuple[JournalTarget, ...]

    def to_line(self) -> str:
        return json.dumps(
            {
                "v": VERSION,
                "erasure": self.erasure_id,
                "at": self.requested_at,
                "profiles": self.profiles,
                "salt": self.salt,
                "hashes": sorted(self.hashes),
                "targets": [
                    {"system": t.system, "id": t.record_id, "known": json.loads(t.known)} for t in self.targets
                ],
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Abandoned:
    erasure_id: str
    system: str | None  # None: at every system
    at: str


@dataclass
class JournalContents:
    entries: list[JournalEntry]
    abandoned: list[Abandoned]
    unreadable: int = 0  # lines that are no entry (a write a crash cut short)

    def abandoned_at(self, erasure_id: str) -> set[str | None]:
        return {a.system for a in self.abandoned if a.erasure_id == erasure_id}


class ErasureJournal(Protocol):
    """Where the journal is kept. Every method runs inside the caller's state transaction `conn`
    (a store that cannot join it, the file, is on disk before it returns: before the commit)."""

    @property
    def where(self) -> str:
        """The journal as messages and `status` name it: a file's path, a table's schema.table."""
        ...

    def ready(self, conn: Connection, make: bool = True) -> str | None:
        """None when the journal can be read and written (made first where missing, with `make`),
        else why not, saying what to do: crmsync then keeps no journal, and says so."""
        ...

    def read(self, conn: Connection) -> JournalContents:
        """Every entry, in the order written (none where there is no journal yet)."""
        ...

    def append(self, conn: Connection, entries: Iterable[JournalEntry | Abandoned]) -> None:
        """Entries kept no later than `conn`'s commit."""
        ...

    def set_aside(self) -> str:
        """How an operator moves this journal out of the way (a state that truly is another's)."""
        ...


class FileJournal:
    """The journal of a SQLite state: a file beside it (the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def where(self) -> str:
        return str(self.path)

    def ready(self, conn: Connection, make: bool = True) -> str | None:
        return None  # made by the first append; a folder crmsync may not write to fails the state too

    def set_aside(self) -> str:
        return f"move the journal aside (`mv {self.path} {self.path}.aside`)"

    def append(self, conn: Connection, entries: Iterable[JournalEntry | Abandoned]) -> None:
        """Lines appended and on disk (fsync, and the folder's entry where the file is new) before
        this returns: the caller commits its state transaction only after."""
        lines = [line_of(entry) for entry in entries]
        if not lines:
            return
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask may have taken bits off, or an older file have more
            text = "\n".join(lines) + "\n"
            if not new and not _ends_with_newline(self.path):
                text = "\n" + text  # a line a crash cut short stays a line of its own
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            _fsync_folder(self.path.parent)

    def read(self, conn: Connection | None = None) -> JournalContents:
        if not self.path.exists():
            return JournalContents([], [])
        with self.path.open(encoding="utf-8", errors="replace") as file:
            return contents_of(file, self.where)


def line_of(entry: JournalEntry | Abandoned) -> str:
    """An entry as the journal keeps it: one line of compact JSON."""
    return entry.to_line() if isinstance(entry, JournalEntry) else _abandoned_line(entry)


def contents_of(lines: Iterable[str], where: str) -> JournalContents:
    """The entries of a journal's lines; a line that is no entry (a write a crash cut short) is
    counted and skipped, not the lines after it."""
    contents = JournalContents([], [])
    for line in lines:
        if not line.strip():
            continue
        try:
            item = _parse(json.loads(line))
        except (ValueError, KeyError, TypeError):
            contents.unreadable += 1
            continue
        if isinstance(item, JournalEntry):
            contents.entries.append(item)
        else:
            contents.abandoned.append(item)
    if contents.unreadable:
        # Only a write cut short by a crash makes one; its erasure never committed then.
        log.warning("erasure journal lines unreadable, skipped", journal=where, lines=contents.unreadable)
    return contents


def _parse(doc: Any) -> JournalEntry | Abandoned:
    if "abandoned" in doc:
        system = doc.get("system")
        return Abandoned(str(doc["abandoned"]), str(system) if system is not None else None, str(doc["at"]))
    targets = tuple(
        JournalTarget(str(t["system"]), str(t["id"]), json.dumps(t["known"], separators=(",", ":")))
        for t in doc["targets"]
    )
    return JournalEntry(
        str(doc["erasure"]),
        str(doc["at"]),
        int(doc["profiles"]),
        str(doc["salt"]),
        tuple(str(h) for h in doc["hashes"]),
        targets,
    )


def _abandoned_line(entry: Abandoned) -> str:
    return json.dumps(
        {"v": VERSION, "abandoned": entry.erasure_id, "system": entry.system, "at": entry.at}, separators=(",", ":")
    )


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        if file.tell() == 0:
            return True
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
