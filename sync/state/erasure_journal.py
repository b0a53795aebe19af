"""The erasure journal: every `crmsync forget` of a SQLite state, kept in a file beside the state
and outside it, so that restoring a backup made before an erasure cannot bring the person back
(sync/state/erasure_replay.py replays what the restored state lacks).

The file is `<state file>.erasures.jsonl` (`crmsync.db.erasures.jsonl`): not a name SQLite gives
its own files (`-journal`, `-wal`, `-shm`), and not one the documented restore (`mv
crmsync.db{,-wal,-shm}`) moves. One JSON object a line, appended and fsynced before the erasure's
state transaction commits:

    {"v": 1, "erasure": "<uuid>", "at": "<ISO-8601>", "profiles": 1, "salt": "<hex>",
     "hashes": ["<sha256 hex>", ...],
     "targets": [{"system": "shop", "id": "<vendor record id>", "known": {<RemoteState JSON>}}]}

and, for `forget --abandon`, `{"v": 1, "abandoned": "<uuid>", "system": "shop" | null, "at": ...}`.

It names no one beyond what the state keeps: the salted hashes `forgotten` holds, and the vendor
record ids `erasure_targets` holds until a vendor confirmed. Like a backup it is readable by its
owner alone, whatever the umask.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

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


class ErasureJournal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def append(self, entries: Iterable[JournalEntry | Abandoned]) -> None:
        """Lines appended and on disk (fsync, and the folder's entry where the file is new) before
        this returns: the caller commits its state transaction only after."""
        lines = [e.to_line() if isinstance(e, JournalEntry) else _abandoned_line(e) for e in entries]
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

    def read(self) -> JournalContents:
        contents = JournalContents([], [])
        if not self.path.exists():
            return contents
        with self.path.open(encoding="utf-8", errors="replace") as file:
            for line in file:
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
            log.warning("erasure journal lines unreadable, skipped", journal=str(self.path), lines=contents.unreadable)
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
