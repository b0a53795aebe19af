"""States written by earlier crmsync versions (tests/fixtures/states, made by make_states.py from
the code at 6045d9c, schema 1, and 5569be6, schema 5) against today's sandboxes serving the vendor
data as those versions left it.

`sync` takes the writer lock, so it upgrades the state itself (after a backup beside it) and then
syncs: it must keep what the state knew (profile ids, segment history, tiers, the ledger, runs,
checkpoints) and write nothing, since every vendor already holds what crmsync would write. The
read-only commands (`status`, `explain`, `report`) take no lock: they leave an old state exactly as
it was and say to run `crmsync migrate`.

Schema 1 knew only the quadrant and tier segments; the lifecycle segments came with the segments
engine (a72f6a2). Today's crmsync rightly adds a lifecycle tag to every customer of such a state,
and one test shows that this is the only thing it would write; the zero-write run pins the segments
that old version wrote (`skip_segments` = the lifecycle family), as its operator's config would
have to, to see the upgrade alone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.lock import StateLock
from sync.runtime import lock_path
from sync.sandboxes import load_fixture_dir
from tests.kit import Sandboxes, json_out, run_crmsync

STATES = Path(__file__).resolve().parents[1] / "fixtures" / "states"
LIFECYCLE = [f"lifecycle-{stage}" for stage in ("prospect", "new", "active", "at-risk", "lapsed")]


def made(name: str) -> dict[str, Any]:
    return json.loads((STATES / name / "made.json").read_text())  # type: ignore[no-any-return]


def later(name: str) -> str:
    """A day and an hour after the old sync: past the daily reconciliation, so every stream is read
    in full again, and late enough that a state built afresh would stamp different times."""
    return (datetime.fromisoformat(made(name)["now"]) + timedelta(hours=25)).isoformat()


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read-only; never on a committed fixture (a reader of a WAL file leaves -shm beside it)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return list(db.execute(sql).fetchall())


def tables(path: Path) -> set[str]:
    return {name for (name,) in rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def tiers(path: Path) -> dict[str, tuple[Any, ...]]:
    """Profile id -> (tier, qualified at, since run). A profile that qualified at the run that last
    recorded the tiers stores "" and `meta.tiers_at` says when (sync/state/history.py)."""
    last = dict(rows(path, "SELECT key, value FROM meta")).get("tiers_at")
    return {pid: (tier, at or last, since) for pid, tier, at, since in rows(path, "SELECT * FROM profile_tiers")}


def snapshot(path: Path) -> dict[str, Any]:
    found = tables(path)
    return {
        "members": dict(rows(path, "SELECT system || ':' || record_id, profile_id FROM profile_members")),
        "history": set(rows(path, "SELECT * FROM segment_history")) if "segment_history" in found else set(),
        "tiers": tiers(path) if "profile_tiers" in found else {},
        "pushed": set(rows(path, "SELECT * FROM pushed")),
        "raw_records": rows(path, "SELECT count(*) FROM raw_records")[0][0],
        "runs": [seq for (seq,) in rows(path, "SELECT seq FROM runs ORDER BY seq")],
        "cursors": {
            (system, stream): json.loads(value)["cursor"]
            for system, stream, value in rows(path, "SELECT system, stream, value FROM checkpoints")
            if json.loads(value).get("cursor")
        },
    }


def start(name: str, start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture(load_fixture_dir(STATES / name / "vendors"), time_scale=50)


def pinned(name: str) -> dict[str, str]:
    """Config lines per system: the segments the old version wrote (see the module docstring)."""
    if name != "schema1":
        return {}
    return {system: f"skip_segments = {json.dumps(LIFECYCLE)}" for system in made(name)["systems"]}


@pytest.mark.parametrize("name", ["schema1", "schema5"])
def test_an_old_state_is_upgraded_at_start_and_syncs_writing_nothing(
    tmp_path: Path, start_sandboxes_fixture: Callable[..., Sandboxes], name: str
) -> None:
    version = name.removeprefix("schema")
    state = tmp_path / "crmsync.db"
    shutil.copy(STATES / name / "crmsync.db", state)
    before = snapshot(state)
    assert before["members"] and before["pushed"] and before["cursors"]
    sandboxes = start(name, start_sandboxes_fixture)
    config = sandboxes.config(tmp_path, **pinned(name))

    result = run_crmsync("sync", "-c", str(config), "--json", "--log-json", env={"CRMSYNC_NOW": later(name)})

    assert result.returncode == 0, result.stderr
    document = json_out(result)
    assert set(document["systems"]) == set(made(name)["systems"]) and document["held"] is None
    for system, outcome in document["systems"].items():
        assert outcome["status"] == "ok", (system, outcome)
        assert outcome["read"]["contacts"] > 0, (system, outcome)  # read in full again, and compared
        assert (outcome["planned"], outcome["written"], outcome["write_calls"]) == (0, 0, 0), (system, outcome)
        assert sandboxes.stats(system)["writes"] == 0, system  # the vendor saw no write either

    # Upgraded after a backup beside it, and said so.
    backups = list(tmp_path.glob(f"crmsync.db.pre-migrate-{version}-*.db"))
    assert len(backups) == 1
    assert rows(backups[0], "SELECT value FROM meta WHERE key = 'schema_version'") == [(version,)]
    assert "alembic_version" not in tables(backups[0])
    assert rows(backups[0], "SELECT count(*) FROM raw_records") == [(before["raw_records"],)]
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    migrated = [entry for entry in logged if entry.get("event") == "state migrated"]
    assert len(migrated) == 1 and migrated[0]["from"] == version and migrated[0]["backup"] == str(backups[0])
    assert rows(state, "SELECT version_num FROM alembic_version") == rows(
        state, "SELECT value FROM meta WHERE key = 'schema_version'"
    )

    after = snapshot(state)
    # The same people keep their profile ids.
    assert after["members"] == before["members"]
    # History and tiers kept as they were: a state built afresh would date them at this run.
    assert before["history"] <= after["history"]
    for profile, (tier, _qualified, since) in before["tiers"].items():
        assert after["tiers"][profile][0] == tier and after["tiers"][profile][2] == since, profile
    # The ledger is untouched (nothing was written), and the runs go on from the old ones.
    assert after["runs"] == [*before["runs"], before["runs"][-1] + 1]
    new_run = after["runs"][-1]
    pushes = {(system, rid, held, at): seq for system, rid, held, seq, at in before["pushed"]}
    assert {(system, rid, held, at) for system, rid, held, _, at in after["pushed"]} == pushes.keys()
    # Only a push's run moves: to this run, where it was the newer word on a record the remap
    # stamped with this run (a remap is no read: sync/state/extracts.py `remap`).
    for system, rid, held, seq, at in after["pushed"]:
        assert seq in (pushes[(system, rid, held, at)], new_run)
    if not before["history"]:
        # Schema 1 had no history: the upgrade opened each profile's segments at the last old run
        # (when they were last computed), and this run added only the lifecycle segments, which
        # that version did not have; the run numbers go on.
        last_old = (before["runs"][-1], made(name)["now"])
        opened = {(entry[1].startswith("lifecycle-"), *entry[2:4]) for entry in after["history"]}
        assert opened == {(False, *last_old), (True, new_run, later(name))}
        profiles = set(before["members"].values())
        assert {entry[0] for entry in after["history"]} == profiles
        # Each still qualifies for the tier it was written with: held since the last old run.
        assert set(after["tiers"]) == profiles
        assert {t[1:] for t in after["tiers"].values()} == {(later(name), before["runs"][-1])}
    # Cursors kept, and only ever moved forward.
    for key, cursor in before["cursors"].items():
        assert datetime.fromisoformat(after["cursors"][key]) >= datetime.fromisoformat(cursor), key
    # What the upgrade could not compute, the cycle's remap did (schema 1 had no email_key).
    assert rows(state, "SELECT count(*) FROM contacts WHERE email IS NOT NULL AND email_key IS NULL") == [(0,)]
    assert rows(state, "SELECT count(*) FROM meta WHERE key = 'mapping_version'") == [(1,)]

    # The commands that read the upgraded state: status is clean, explain finds the old profile.
    status = run_crmsync("status", "-c", str(config), "--json", env={"CRMSYNC_NOW": later(name)})
    assert status.returncode == 0, status.stderr
    assert set(json_out(status)["systems"]) == set(made(name)["systems"])
    key = min(before["members"])
    explained = run_crmsync("explain", key, "-c", str(config), "--json", env={"CRMSYNC_NOW": later(name)})
    assert explained.returncode == 0, explained.stderr
    assert json_out(explained)["profile_id"] == before["members"][key]


def test_what_schema_1_lacks_is_only_the_lifecycle_segments(
    tmp_path: Path, start_sandboxes_fixture: Callable[..., Sandboxes]
) -> None:
    """Without the pin, today's crmsync would add one lifecycle segment to every customer of a
    schema-1 state and change nothing else: what the old version wrote is recognised as its own."""
    shutil.copy(STATES / "schema1" / "crmsync.db", tmp_path / "crmsync.db")
    sandboxes = start("schema1", start_sandboxes_fixture)
    config = sandboxes.config(tmp_path)
    result = run_crmsync("plan", "-c", str(config), "--json", env={"CRMSYNC_NOW": later("schema1")})
    assert result.returncode == 0, result.stderr
    changes = json_out(result)["changes"]
    customers = {
        system: json.loads((STATES / "schema1" / "vendors" / system / "customers.json").read_text())
        for system in made("schema1")["systems"]
    }
    assert sorted(c["system"] for c in changes) == sorted(s for s, items in customers.items() for _ in items)
    for change in changes:
        if change["system"] == "shopify":
            assert change["remove_tags"] == [] and change["set_fields"] == {}, change
            assert len(change["add_tags"]) == 1 and change["add_tags"][0].removeprefix("crmsync:") in LIFECYCLE
        else:
            assert change["add_tags"] == change["remove_tags"] == [] and list(change["set_fields"]) == [
                "crmsync_segments"
            ]
            segments = change["set_fields"]["crmsync_segments"].split(",")
            assert len([s for s in segments if s in LIFECYCLE]) == 1, change
            held = sandboxes.customer("woocommerce", change["id"])
            written = {m["key"]: m["value"] for m in held["meta_data"]}["crmsync_segments"]
            assert [s for s in segments if s not in LIFECYCLE] == written.split(","), change
    assert sum(sandboxes.stats(system)["writes"] for system in customers) == 0


def test_an_old_state_is_only_upgraded_by_the_lock_holder(
    tmp_path: Path, start_sandboxes_fixture: Callable[..., Sandboxes]
) -> None:
    """The read-only commands (no lock) refuse an old state and leave it exactly as it was; a
    writing command that cannot get the lock exits 5 and leaves it too."""
    state = tmp_path / "crmsync.db"
    shutil.copy(STATES / "schema1" / "crmsync.db", state)
    config = start("schema1", start_sandboxes_fixture).config(tmp_path)
    digest = hashlib.sha256(state.read_bytes()).hexdigest()
    for command in (["status"], ["explain", "shopify:gid://shopify/Customer/7000000"], ["report", "--json"]):
        result = run_crmsync(*command, "-c", str(config))
        # Today the CLI reports this through its crash path (exit 70, one line, a crash log).
        assert result.returncode != 0, command
        assert "run `crmsync migrate`" in result.stderr and "schema 1" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr, command
        assert hashlib.sha256(state.read_bytes()).hexdigest() == digest, command
    lock = StateLock(lock_path(state))
    lock.acquire("a test holding the writer lock")
    try:
        held = run_crmsync("sync", "-c", str(config))
    finally:
        lock.release()
    assert held.returncode == 5, held.stderr
    assert hashlib.sha256(state.read_bytes()).hexdigest() == digest
    assert not list(tmp_path.glob("*pre-migrate*"))
    assert "alembic_version" not in tables(state)
