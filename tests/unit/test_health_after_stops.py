"""What `status` and /healthz make of cycles that did not end normally: one stopped part-way by a
SIGTERM (a restart, a deploy) says nothing of whether syncing works, and one whose process crashed
is a failure the state must remember, not only the running daemon's memory."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync import health, scheduler
from sync.config import load_config
from sync.lock import LockLost
from sync.service import MEMORY_KEY
from sync.state import StateStore

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFIG = """
[state]
url = "sqlite:///crmsync.db"
[systems.shop]
type = "shopify"
base_url = "https://example.myshopify.com"
access_token = "shpat_health_test_1"
"""


def _cycle(store: StateStore, at: datetime, status: str) -> None:
    run = store.begin_run("run", at)
    store.record_system_run(run, "shop", status, None if status == "ok" else f"it was {status}", {"dry_run": False}, at)
    store.finish_run(run, status, {"run_id": run.run_id, "dry_run": False, "systems": {}}, at)


def _problems(store: StateStore, at: datetime) -> dict[str, str]:
    return health.problems(["shop"], store.last_system_runs(), now=at, max_staleness=None)


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        (["ok"], {}),
        (["failed"], {"shop": "its last cycle failed: it was failed"}),
        ([], {"shop": "no cycle has finished for it yet (each was stopped part-way)"}),
    ],
)
def test_a_cycle_stopped_part_way_is_judged_by_the_one_before(
    tmp_path: Path, before: list[str], expected: dict[str, str]
) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'crmsync.db'}")
    try:
        for minute, status in enumerate([*before, "interrupted", "interrupted"]):
            _cycle(store, T0 + timedelta(minutes=minute), status)
        assert _problems(store, T0 + timedelta(hours=1)) == expected
        assert store.last_system_runs()["shop"]["last"]["status"] == "interrupted"  # still shown as it was
        if before == ["ok"]:  # a third stop in a row: restarted more often than a cycle takes
            _cycle(store, T0 + timedelta(minutes=5), "interrupted")
            assert _problems(store, T0 + timedelta(hours=1)) == {
                "shop": "its last 3 cycles were all stopped before they finished"
            }
        _cycle(store, T0 + timedelta(minutes=9), "failed")  # a real failure after them counts
        assert _problems(store, T0 + timedelta(hours=1)) == {"shop": "its last cycle failed: it was failed"}
    finally:
        store.close()


def test_a_crashed_cycle_process_is_a_failure_in_the_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's /healthz knew; `status` (read from the state) said healthy, and so did the
    /healthz of a daemon restarted after it, while every cycle crashed."""
    (tmp_path / "crmsync.toml").write_text(CONFIG)
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    _cycle(store, T0, "ok")

    def crashes(loaded: Any, store: StateStore, stop: threading.Event, guard: Any) -> dict[str, Any]:
        store.begin_run("run", T0 + timedelta(minutes=5))  # began its run, then died
        raise MemoryError("out of memory")

    monkeypatch.setattr(scheduler, "run_cycle", crashes)
    try:
        end = scheduler.run_daemon(loaded, store, threading.Event(), max_cycles=1, isolate=False)
        assert end.cycles == 1
        problems = _problems(store, T0 + timedelta(hours=1))
        assert problems == {"shop": "its last cycle failed: the cycle crashed: MemoryError"}
        last = store.last_run()
        assert last is not None and (last["status"], last["seq"]) == ("failed", 2)  # its own run, closed
        assert health.exit_code(True, problems) == health.UNHEALTHY
    finally:
        store.close()


def test_a_slot_missed_while_a_cycle_ran_runs_right_after_it_and_then_the_schedule_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every 6 s, the first cycle taking 7 s: the slot at 6 s is run as soon as that cycle ends,
    once, not left for the slot at 12 s (a 16-minute cycle on a 15-minute interval ran every 30);
    the cycle after it waits for the slot at 12 s (never back to back without a missed slot). The
    margins are seconds: a loaded machine delays the scheduler's thread and the daemon's own work
    between cycles (its collection of the freed memory)."""
    (tmp_path / "crmsync.toml").write_text(CONFIG + '[schedule]\ninterval = "6s"\n')
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    spans: list[tuple[float, float]] = []

    def cycle(loaded: Any, store: StateStore, stop: threading.Event, guard: Any) -> dict[str, Any]:
        began = time.monotonic()
        if not spans:
            stop.wait(7.0)  # the work of a long cycle, past the next slot
        spans.append((began, time.monotonic()))
        return {"outcome": "ok", "systems": {}}

    monkeypatch.setattr(scheduler, "run_cycle", cycle)
    try:
        end = scheduler.run_daemon(loaded, store, threading.Event(), max_cycles=3, isolate=False)
    finally:
        store.close()
    assert end.cycles == 3
    (first_start, first_end), (second_start, _), (third_start, _) = spans
    assert second_start - first_end < 2.5, spans  # without it, 5 s later: the slot at 12 s
    assert third_start - first_start > 11.5, spans  # the slot at 12 s, not at once


class LosableLock:
    """A writer lock the test takes away (on PostgreSQL: the lock's session terminated)."""

    where = "a test's lock"

    def __init__(self) -> None:
        self.held = True

    def still_held(self) -> bool:
        return self.held

    def guard(self) -> None:
        if not self.held:
            raise LockLost(self.where)


def test_a_daemon_that_lost_its_lock_writes_nothing_of_that_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle ended (its last batch already out) as the lock went to a standby: the daemon
    stands by again, and keeps its figures and alert memory out of the state the new holder writes."""
    (tmp_path / "crmsync.toml").write_text(CONFIG)
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    lock = LosableLock()

    def cycle(loaded: Any, store: StateStore, stop: threading.Event, guard: Any) -> dict[str, Any]:
        lock.held = False
        return {"outcome": "failed", "finished_at": T0.isoformat(), "systems": {"shop": {"status": "failed"}}}

    monkeypatch.setattr(scheduler, "run_cycle", cycle)
    try:
        end = scheduler.run_daemon(loaded, store, threading.Event(), max_cycles=1, isolate=False, lock=lock)  # type: ignore[arg-type]
        assert end.lock_lost is True
        assert store.get_meta(MEMORY_KEY) is None  # never written by a daemon without the lock
    finally:
        store.close()
