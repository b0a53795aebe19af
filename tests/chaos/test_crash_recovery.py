"""SIGKILL `crmsync sync` at seeded random moments across extract, plan and apply; after each kill
the state is sound (SQLite: `PRAGMA integrity_check`; on both backends the state's own consistency
check: every mapped row, link, member and ledger row names a stored record), and a rerun ends every
sandbox exactly as an uninterrupted run does: nothing lost, no tag or metafield row twice, no
foreign tag or field touched (tests/chaos/crash.py). 21 kills on each backend (on PostgreSQL each
lab is a deployment in a schema of the test's database). Replay a failure with CRMSYNC_CHAOS_SEED=<the
seed printed>."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from sync.demo import demo_data
from tests.chaos import report
from tests.chaos.crash import DEFAULT_SEED, PHASES, run_lanes, to_json

KILLS = 21  # on each backend


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_then_rerun_ends_as_an_uninterrupted_run(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> None:
    seed = int(os.environ.get("CRMSYNC_CHAOS_SEED", DEFAULT_SEED))
    postgres = None if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    kills = run_lanes(demo_data(20, seed=5), tmp_path_factory.mktemp("crash"), KILLS, seed, postgres=postgres)
    report.record("crash" if backend == "sqlite" else f"crash_{backend}", to_json(kills, seed))
    print(f"crash recovery seed ({backend}): {seed}")
    failed = [k for k in kills if not k.recovered]
    assert not failed, f"seed {seed}: " + "; ".join(f"kill {k.number} ({k.phase}): {k.detail}" for k in failed)
    assert all(k.integrity == "ok" for k in kills)
    hit = Counter(k.phase for k in kills)
    assert sum(hit[p] for p in PHASES) >= 20, hit  # moments that landed in a phase, not after the run
    assert all(hit[p] >= 3 for p in PHASES), hit
