"""A person forgotten stays forgotten when the state is restored from a backup made before the
erasure (docs/operations.md "Backup and restore"): the erasure journal beside the SQLite state
(sync/state/erasure_journal.py) is replayed by the next writing command. Also: a crash between
the journal line and the erasure's commit is completed, a journal from another state (another
salt) holds every cycle, and a state from before the journal gets one."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_forget import crmsync_marks, most_spread_profile, records_of, state_text
from tests.kit import CRMSYNC, Sandboxes, json_out, run_crmsync

JOURNAL = "crmsync.db.erasures.jsonl"


def restore(copy: Path, state: Path) -> None:
    """As docs/operations.md says: the state and its -wal/-shm files moved aside, the copy put in
    its place (`install -m 0640`)."""
    aside = state.parent / "broken"
    aside.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        moved = state.with_name(state.name + suffix)
        if moved.exists():
            moved.rename(aside / moved.name)
    shutil.copyfile(copy, state)
    state.chmod(0o640)


def synced_person(sandboxes: Sandboxes, tmp_path: Path) -> tuple[Path, Path, list[tuple[str, str]], str]:
    config = sandboxes.config(tmp_path)
    state = tmp_path / "crmsync.db"
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    profile = most_spread_profile(state, "shopify")
    records, email = records_of(config, profile)
    assert any(list(crmsync_marks(sandboxes.customer(s, r))) for s, r in records)  # tags to erase
    return config, state, records, email


def marks_of(sandboxes: Sandboxes, records: list[tuple[str, str]]) -> dict[str, list[str]]:
    return {f"{s}:{r}": found for s, r in records if (found := list(crmsync_marks(sandboxes.customer(s, r))))}


def journal_lines(state: Path) -> list[dict[str, Any]]:
    text = state.with_name(JOURNAL).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("command", [("sync", "--json"), ("run", "--cycles", "1")], ids=["sync", "daemon"])
def test_a_restored_backup_does_not_bring_a_forgotten_person_back(
    sandboxes: Sandboxes, tmp_path: Path, command: tuple[str, ...]
) -> None:
    config, state, records, email = synced_person(sandboxes, tmp_path)
    copy = tmp_path / "backups" / "crmsync-before.db"
    assert run_crmsync("backup", str(copy), "-c", str(config)).returncode == 0
    umask = os.umask(0)  # the journal is its owner's alone whatever the umask
    try:
        forgotten = run_crmsync("forget", email, "-c", str(config), "--json")
    finally:
        os.umask(umask)
    assert forgotten.returncode == 0, forgotten.stderr[-3000:]
    erasure = json_out(forgotten)["erasure"]
    assert marks_of(sandboxes, records) == {}

    restore(copy, state)
    assert email.lower() in state_text(state)  # the copy holds the person again
    journal = state.with_name(JOURNAL)
    restored = journal.exists()  # the documented restore leaves it where it is
    before_sync = json_out(run_crmsync("status", "-c", str(config), "--json")).get("erasure_journal")

    again = run_crmsync(*command, "-c", str(config), timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    # The person is not back: not in the state, and no crmsync tag or field on their records.
    assert run_crmsync("explain", email, "-c", str(config)).returncode == 4
    assert email.lower() not in state_text(state)
    assert marks_of(sandboxes, records) == {}
    assert restored and before_sync is not None and before_sync["to_replay"] == 1  # `status` said so
    assert "erasures replayed after a restore" in again.stderr
    assert email.lower() not in again.stderr.lower()
    with closing(sqlite3.connect(state)) as db:
        assert db.execute("SELECT count(*) FROM erasures WHERE erasure_id = ?", (erasure,)).fetchone() == (1,)
    status = json_out(run_crmsync("status", "-c", str(config), "--json"))
    assert status["erasure_journal"]["to_replay"] == 0
    assert status["erasure_journal"]["replayed"]["erasures"] == 1
    assert "erasures replayed after a restore: 1" in run_crmsync("status", "-c", str(config)).stdout

    # The journal: its owner's alone, one line, the salted hashes and targets, not the person.
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    [line] = journal_lines(state)
    assert line["erasure"] == erasure and line["hashes"] and line["targets"]
    assert email.lower() not in journal.read_text().lower()

    # And the next cycle neither: nothing of theirs read back, no tag written.
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    assert run_crmsync("explain", email, "-c", str(config)).returncode == 4
    assert marks_of(sandboxes, records) == {}
    assert len(journal_lines(state)) == 1  # a replay writes no second line


# `crmsync forget`, killed right after its journal line is on disk, before its state transaction commits.
_KILLED_BEFORE_COMMIT = """
import os, sys
from sync.state import erasure_journal
appended = erasure_journal.FileJournal.append
def append_then_die(self, conn, entries):
    appended(self, conn, entries)
    os._exit(9)
erasure_journal.FileJournal.append = append_then_die
from sync.cli import main
sys.argv = ["crmsync", *sys.argv[1:]]
main()
"""


def test_an_erasure_whose_commit_never_happened_is_completed_by_the_next_command(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    config, state, records, email = synced_person(sandboxes, tmp_path)
    python = Path(CRMSYNC).with_name("python")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    killed = subprocess.run(
        [str(python), "-c", _KILLED_BEFORE_COMMIT, "forget", email, "-c", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert killed.returncode == 9, killed.stderr[-3000:]
    [line] = journal_lines(state)
    with closing(sqlite3.connect(state)) as db:
        assert db.execute("SELECT count(*) FROM erasures").fetchone() == (0,)  # never committed
    assert email.lower() in state_text(state)

    again = run_crmsync("sync", "-c", str(config), "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert run_crmsync("explain", email, "-c", str(config)).returncode == 4
    assert email.lower() not in state_text(state)
    assert marks_of(sandboxes, records) == {}  # the vendors' part, which the crash never reached
    with closing(sqlite3.connect(state)) as db:
        done = db.execute("SELECT completed_at FROM erasures WHERE erasure_id = ?", (line["erasure"],)).fetchall()
    assert len(done) == 1 and done[0][0] is not None


def test_a_journal_of_another_salt_holds_every_cycle(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config, state, records, email = synced_person(sandboxes, tmp_path)
    copy = tmp_path / "crmsync-before.db"
    assert run_crmsync("backup", str(copy), "-c", str(config)).returncode == 0
    assert run_crmsync("forget", email, "-c", str(config)).returncode == 0
    restore(copy, state)
    with closing(sqlite3.connect(state)) as db, db:
        db.execute("INSERT INTO meta (key, value) VALUES ('forget_salt', ?)", ("0" * 64,))
    sandboxes.reset_stats()
    held = run_crmsync("sync", "-c", str(config), "--json")
    assert held.returncode == 2, held.stderr[-3000:]
    assert json_out(held)["error"]["exit_code"] == 2
    assert "erasure journal" in held.stderr and "another salt" in held.stderr
    assert marks_of(sandboxes, records) == {}  # no cycle ran: nothing tagged again
    daemon = run_crmsync("run", "--cycles", "1", "-c", str(config), timeout=60)
    assert daemon.returncode == 2 and "another salt" in daemon.stderr
    assert marks_of(sandboxes, records) == {}
    assert run_crmsync("forget", email, "-c", str(config)).returncode == 2  # forget holds too


def test_a_state_with_erasures_and_no_journal_gets_one(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config, state, _, email = synced_person(sandboxes, tmp_path)
    forgotten = run_crmsync("forget", email, "-c", str(config), "--json")
    assert forgotten.returncode == 0
    journal = state.with_name(JOURNAL)
    journal.unlink()  # as a crmsync from before the journal left it
    with closing(sqlite3.connect(state)) as db:
        hashes = {h for (h,) in db.execute("SELECT key_hash FROM forgotten")}
        salt = db.execute("SELECT value FROM meta WHERE key = 'forget_salt'").fetchone()[0]
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    [line] = journal_lines(state)
    assert line["erasure"] == json_out(forgotten)["erasure"]
    assert set(line["hashes"]) == hashes and line["salt"] == salt
