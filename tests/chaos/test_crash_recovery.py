"""SIGKILL `crmsync sync` at 21 seeded random moments across extract, plan and apply; after each
kill the state database passes `PRAGMA integrity_check`, and a rerun ends every sandbox exactly
as an uninterrupted run does: nothing lost, no tag or metafield row twice, no foreign tag or field
touched (tests/chaos/crash.py). Replay a failure with CRMSYNC_CHAOS_SEED=<the seed printed>."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from sync.demo import demo_data
from tests.chaos import report
from tests.chaos.crash import DEFAULT_SEED, PHASES, run_lanes, to_json

KILLS = 21


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_then_rerun_ends_as_an_uninterrupted_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    seed = int(os.environ.get("CRMSYNC_CHAOS_SEED", DEFAULT_SEED))
    kills = run_lanes(demo_data(20, seed=5), tmp_path_factory.mktemp("crash"), KILLS, seed)
    report.record("crash", to_json(kills, seed))
    print(f"crash recovery seed: {seed}")
    failed = [k for k in kills if not k.recovered]
    assert not failed, f"seed {seed}: " + "; ".join(f"kill {k.number} ({k.phase}): {k.detail}" for k in failed)
    assert all(k.integrity == "ok" for k in kills)
    hit = Counter(k.phase for k in kills)
    assert sum(hit[p] for p in PHASES) >= 20, hit  # moments that landed in a phase, not after the run
    assert all(hit[p] >= 3 for p in PHASES), hit
