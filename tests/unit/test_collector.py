"""A cycle runs with the collector thresholds made for bulk reads and compute; a process that runs
no cycle (the daemon's own) keeps Python's defaults."""

from __future__ import annotations

import gc
import threading
from datetime import UTC, datetime
from pathlib import Path

from sync.collector import THRESHOLDS
from sync.config import load_config
from sync.pipeline import Cycle
from sync.state import StateStore
from tests.kit import UNREACHABLE_SHOP_CONFIG, run_crmsync_here


def test_a_cycle_sets_the_collector_thresholds(tmp_path: Path) -> None:
    before = gc.get_threshold()
    (tmp_path / "crmsync.toml").write_text(UNREACHABLE_SHOP_CONFIG)
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    stop = threading.Event()
    stop.set()  # the cycle stops before it asks the (closed) port anything
    try:
        gc.set_threshold(700, 10, 10)
        Cycle(loaded, store, clock=lambda: datetime(2026, 12, 5, tzinfo=UTC), stop_event=stop).run("sync")
        assert gc.get_threshold() == THRESHOLDS
        assert THRESHOLDS[0] > 700  # young collections far apart: a page of JSON is thousands of dicts
    finally:
        gc.set_threshold(*before)
        store.close()


def test_the_command_line_alone_leaves_the_defaults(tmp_path: Path) -> None:
    """`crmsync run` without a cycle in its own process (the daemon) never collects in full after
    a cycle, so it must not put full collections off."""

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert run_crmsync_here("check", "--config", str(tmp_path / "missing.toml")).returncode == 2
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)
