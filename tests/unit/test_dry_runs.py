"""Dry runs are recorded as dry runs: `status` and health never take one for the last cycle or the
last success, also for rows written before dry runs were marked (told by their run)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sync import health
from sync.pipeline import recorded_command
from sync.state import StateStore

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _cycle(store: StateStore, command: str, at: datetime, *, dry: bool, marked: bool = True, status: str = "ok") -> str:
    run = store.begin_run(command, at)
    counts = {"read": {"contacts": 1, "orders": 0}, **({"dry_run": dry} if marked else {})}
    store.record_system_run(run, "shop", status, None if status == "ok" else "down", counts, at)
    store.finish_run(run, status, {"run_id": run.run_id, "dry_run": dry, "systems": {}}, at)
    return at.isoformat()


def test_the_command_of_a_dry_run_says_so() -> None:
    assert recorded_command("sync", True) == "sync --dry-run"
    assert recorded_command("plan", True) == "plan"
    assert recorded_command("sync", False) == "sync"


def test_dry_runs_are_kept_apart_from_the_last_cycle_and_success(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'crmsync.db'}")
    try:
        real = _cycle(store, "sync", T0, dry=False)
        _cycle(store, "sync --dry-run", T0 + timedelta(minutes=1), dry=True, status="failed")
        plan = _cycle(store, "plan", T0 + timedelta(minutes=2), dry=True)
        [(name, entry)] = store.last_system_runs().items()
    finally:
        store.close()
    assert name == "shop"
    assert entry["last"]["finished_at"] == entry["last_ok"]["finished_at"] == real
    assert (entry["last"]["command"], entry["last"]["dry_run"]) == ("sync", False)
    assert (entry["last_dry_run"]["command"], entry["last_dry_run"]["finished_at"]) == ("plan", plan)
    # A failed dry run is no failed cycle: status stays healthy.
    assert health.problems(["shop"], {"shop": entry}, now=T0 + timedelta(minutes=3), max_staleness=None) == {}


def test_rows_from_before_the_mark_are_told_by_their_run(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'crmsync.db'}")
    try:
        real = _cycle(store, "sync", T0, dry=False, marked=False)
        dry = _cycle(store, "sync", T0 + timedelta(minutes=1), dry=True, marked=False)  # a dry run back then
        entry = store.last_system_runs()["shop"]
        summary = store.last_run()
    finally:
        store.close()
    assert summary is not None and json.loads(summary["summary"])["dry_run"] is True
    assert entry["last_ok"]["finished_at"] == real and entry["last"]["finished_at"] == real
    assert entry["last_dry_run"]["finished_at"] == dry and entry["last_dry_run"]["dry_run"] is True
