"""SIGKILL `crmsync backfill` while Shopify's bulk operations run (issue 17): during the bulk read,
between a staged upload and its run, and while a bulk mutation runs on after crmsync has gone. The
rerun must end the shop and the state exactly as an uninterrupted run does, with no tag or metafield
twice: a read stopped half-way runs its query again, and writes wait (held, the cycle reported failed)
while an operation the kill left behind is still running (tests/chaos/crash.py has the general kill
lanes)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.shopify.sandbox_bulk import ACTIVE
from sync.demo import demo_data
from tests.chaos.crash import duplicates
from tests.chaos.lab import Lab, differences, soundness
from tests.kit import spawn, wait_until

BULK = 'bulk_read_threshold = 1\nbulk_write_threshold = 1\nbulk_poll_max = "200ms"\npage_size = 5'
MOMENTS = ("bulk read running", "staged, not yet run", "bulk mutation running")
KILLS = 6
OFFSETS = (timedelta(0), timedelta(days=400), timedelta(days=150), timedelta(days=700))
SEED = 20261204


def slow_bulk(lab: Lab, lines_per_s: float) -> None:
    url = f"{lab.sandboxes.url('shopify')}/_sandbox/app"
    requests.patch(url, json={"bulk_lines_per_s": lines_per_s}, timeout=5).raise_for_status()


def operations(lab: Lab, kind: str) -> list[Any]:
    app = lab.sandboxes.app("shopify")
    with app.lock:
        return [op for op in app.bulk.operations.values() if op.type == kind]


def uploads(lab: Lab) -> int:
    log = requests.get(f"{lab.sandboxes.url('shopify')}/_sandbox/requests", timeout=5).json()
    return sum(1 for entry in log if entry["path"] == "/staged-uploads" and entry["status"] == 201)


@pytest.mark.timeout(600)
def test_a_kill_during_a_bulk_operation_then_rerun_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    data = {"shopify": demo_data(30, seed=5)["shopify"]}
    overrides = {"shopify": BULK}
    base = datetime.now(UTC).replace(microsecond=0)
    failures = []
    landed = 0
    held = 0  # reruns that found a killed cycle's bulk mutation still running
    outcomes: list[str] = []
    with (
        Lab.start(data, tmp_path / "reference", overrides=overrides) as reference,
        Lab.start(data, tmp_path / "victim", overrides=overrides) as victim,
    ):
        assert victim.config is not None
        for number in range(KILLS):
            rng = random.Random(f"{SEED}/{number}")
            moment = MOMENTS[number % len(MOMENTS)]
            # Far apart, back and forth: tiers and lifecycles move, so every round has writes to make.
            now = base + OFFSETS[number % len(OFFSETS)]
            env = {"CRMSYNC_NOW": now.isoformat()}
            reference.cycle(now, "backfill", full=["shopify"])
            queries_before = len(operations(victim, "QUERY"))
            mutations_before = len(operations(victim, "MUTATION"))
            uploads_before = uploads(victim)
            # In the lab's clock (50 times ours): a line a second, so a kill finds an operation running.
            slow_bulk(victim, 0.02)
            # A backfill: a full read (in bulk) and a cycle's writes (in bulk), every round.
            process = spawn("backfill", "-c", str(victim.config), "--log-level", "warning", env=env)
            try:
                if moment == "bulk read running":
                    hit = wait_until(lambda n=queries_before: len(operations(victim, "QUERY")) > n, timeout=60)
                elif moment == "staged, not yet run":
                    hit = wait_until(lambda n=uploads_before: uploads(victim) > n, timeout=60, interval=0.002)
                else:
                    hit = wait_until(lambda n=mutations_before: len(operations(victim, "MUTATION")) > n, timeout=60)
                    wait_until(lambda: False, timeout=rng.uniform(0.0, 0.3))
                finished_first = process.poll() is not None
            finally:
                process.kill()
            landed += int(hit and not finished_first)
            outcomes.append(f"kill {number} ({moment}): hit={hit} finished_first={finished_first}")
            if moment != "bulk mutation running":
                slow_bulk(victim, 100_000)
            verdict = soundness(victim)
            # The operation a kill left behind goes on at Shopify (slowly here): the rerun holds its
            # writes while it runs, as the daemon's next cycle would, and the one after writes.
            rerun = spawn("backfill", "-c", str(victim.config), "--json", env=env).result(timeout=180)
            if rerun.returncode == 3 and "bulk mutation(s) of an earlier cycle" in rerun.stdout:
                held += 1
                slow_bulk(victim, 100_000)
                wait_until(lambda: not [op for op in operations(victim, "MUTATION") if op.status in ACTIVE], timeout=60)
                rerun = spawn("backfill", "-c", str(victim.config), "--json", env=env).result(timeout=180)
            slow_bulk(victim, 100_000)
            if rerun.returncode != 0:
                failures.append(f"kill {number} ({moment}): the rerun exited {rerun.returncode}: {rerun.stderr[-400:]}")
                continue
            problems = differences(reference.final_state(), victim.final_state()) + duplicates(victim)
            if verdict != "ok" or problems:
                failures.append(f"kill {number} ({moment}): {verdict}; " + "; ".join(problems))
    assert not failures, failures
    assert landed == KILLS, f"only {landed} kills landed inside a bulk operation: {outcomes}"
    assert held >= 1, "no rerun met a bulk mutation still running: the hold was never exercised"
