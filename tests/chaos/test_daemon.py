"""`crmsync run` against every sandbox on a one-second schedule, its clock running ten days per
second (`$CRMSYNC_NOW` + `$CRMSYNC_NOW_SPEED`): segments move with the time it sees, memory stays
flat from cycle to cycle, cycles never overlap (one of them is made slower than the schedule), a
system that starts failing does not stop the others, `crmsync status` shows the last successful
cycle of each system, and SIGTERM ends it cleanly. Bounded: it stops after a few cycles."""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.clock import Clock
from tests.chaos import report
from tests.kit import Sandboxes, json_out, run_crmsync, spawn, wait_until

START = "2026-01-15T09:00:00+00:00"
SPEED = "864000"  # ten days a second


def cycles(stderr: str) -> list[dict[str, Any]]:
    found = []
    for line in stderr.splitlines():
        if '"event": "cycle finished"' in line:
            found.append(json.loads(line))
    return found


def runs(state: Path) -> list[tuple[int, str, str | None, str]]:
    if not state.exists():
        return []
    with closing(sqlite3.connect(state)) as db:
        return [tuple(row) for row in db.execute("SELECT seq, started_at, finished_at, status FROM runs ORDER BY seq")]


def system_runs(state: Path, system: str) -> list[tuple[int, str]]:
    with closing(sqlite3.connect(state)) as db:
        return list(db.execute("SELECT run_seq, status FROM system_runs WHERE system = ? ORDER BY run_seq", (system,)))


def test_the_daemon_over_simulated_weeks(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    config.write_text(config.read_text().replace('interval = "15m"', 'interval = "1s"'))
    state = tmp_path / "crmsync.db"
    daemon = spawn("run", "-c", str(config), env={"CRMSYNC_NOW": START, "CRMSYNC_NOW_SPEED": SPEED})
    try:
        assert wait_until(lambda: len(cycles(daemon.stderr())) >= 3, timeout=60), daemon.stderr()[-2000:]
        # One cycle slower than the schedule: the next start must wait for it, never run beside it.
        sandboxes.fault("woocommerce", match="reads", fault="slow", seconds=1.5, times=1)
        # From here on efficy refuses the credentials: the other systems go on without it.
        sandboxes.fault("efficy", match="*", fault="auth", times=100_000)
        healthy = len(cycles(daemon.stderr()))
        assert wait_until(lambda: len(cycles(daemon.stderr())) >= healthy + 4, timeout=90), daemon.stderr()[-2000:]
        stopped_at = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=30)
    finally:
        daemon.kill()
    assert code == 0, daemon.stderr()[-2000:]
    assert time.monotonic() - stopped_at < 10
    err = daemon.stderr()
    assert '"event": "daemon stopped"' in err and "Traceback" not in err
    seen = cycles(err)

    # time moved: every cycle saw a later "now", days apart
    moments = [datetime.fromisoformat(c["now"]) for c in seen]
    assert moments == sorted(moments) and (moments[-1] - moments[0]).days >= 30
    assert moments[0] >= datetime.fromisoformat(START)
    # no two cycles at once
    finished = runs(state)
    assert all(status != "running" for _, _, _, status in finished)
    for (_, _, end, _), (_, start, _, _) in itertools.pairwise(finished):
        assert end is not None and start >= end
    # a failing system does not stop the others
    later = [seq for seq, *_ in finished][healthy + 1 :]
    assert later
    for system_type in sandboxes.by_type:
        statuses = dict(system_runs(state, system_type))
        expected = "failed" if system_type == "efficy" else "ok"
        assert all(statuses[seq] == expected for seq in later if seq in statuses), (system_type, statuses)
    # memory stays flat once the first cycles have warmed up
    rss = [c["rss_mb"] for c in seen]
    assert max(rss[2:]) - rss[2] < 20, rss
    report.record(
        "daemon",
        {
            "cycles": [
                {"cycle": i + 1, "now": c["now"], "peak_rss_mb": c["peak_rss_mb"], "rss_mb": c["rss_mb"]}
                for i, c in enumerate(seen)
            ]
        },
    )

    status = run_crmsync("status", "-c", str(config), "--json")
    # Changed with issue 15 (CONTRACTS §6): a system whose last cycle failed makes `status` exit 3,
    # so a monitor can page on it; it exited 0 before.
    assert status.returncode == 3, status.stderr
    doc = json_out(status)
    assert list(doc["problems"]) == ["efficy"] and "credentials refused" in doc["problems"]["efficy"]
    assert doc["lock"] is None
    efficy = doc["systems"]["efficy"]
    assert efficy["last"]["status"] == "failed" and "credentials refused" in efficy["last"]["error"]
    assert efficy["last_ok"] is not None and efficy["last_ok"]["finished_at"] < efficy["last"]["finished_at"]
    for name, entry in doc["systems"].items():
        if name != "efficy":
            assert entry["last_ok"] == entry["last"], name
    human = run_crmsync("status", "-c", str(config))
    assert "last success" in human.stdout and "efficy" in human.stdout


def test_an_unusable_clock_speed_is_a_usage_error(tmp_path: Path) -> None:
    result = run_crmsync("status", env={"CRMSYNC_NOW_SPEED": "fast"}, cwd=tmp_path)
    assert result.returncode == 2 and "CRMSYNC_NOW_SPEED" in result.stderr


DAY = 86_400
TOKEN_SPEED = 14_400  # four hours a second: three simulated days in eighteen


def test_the_daemon_keeps_its_shopify_token_across_three_simulated_days(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    """Client-credentials tokens live 24 hours, as Shopify's do. The daemon holds the token and hands
    it to each cycle process, so it asks for a new one only when one expired: token requests equal
    expiries + 1, not one per cycle, and no cycle surfaces an error."""
    start = datetime.fromisoformat(START)
    # The emulator runs on the same sped-up time as the daemon (its own origin: a token's lifetime is
    # relative, so the two origins need not agree).
    shop = start_sandboxes_fixture(
        {"shopify": small_data["shopify"]}, time_scale=50, options={"shopify": {"clock": Clock(start, TOKEN_SPEED)}}
    )
    app = shop.app("shopify")
    assert app.token_ttl_s == 86399
    config = shop.config(tmp_path)
    config.write_text(config.read_text().replace('interval = "15m"', 'interval = "1s"'))
    daemon = spawn("run", "-c", str(config), env={"CRMSYNC_NOW": START, "CRMSYNC_NOW_SPEED": str(TOKEN_SPEED)})
    try:
        # three expiries, then two more cycles on the fourth token
        def enough() -> bool:
            if app.issued_count() < 4:
                return False
            fourth = sorted(t.issued_at for t in app.issued.values())[3]
            return sum(1 for c in cycles(daemon.stderr()) if datetime.fromisoformat(c["now"]) > fourth) >= 2

        assert wait_until(enough, timeout=90), daemon.stderr()[-3000:]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
    err = daemon.stderr()
    seen = cycles(err)
    moments = [datetime.fromisoformat(c["now"]) for c in seen]
    assert moments[-1] - moments[0] >= timedelta(days=3)
    assert all(c["systems"] == {"shopify": "ok"} for c in seen)  # no expiry ever surfaced as an error
    assert not [line for line in err.splitlines() if '"level": "error"' in line]
    tokens = sorted(app.issued.values(), key=lambda t: t.issued_at)
    requested = shop.stats("shopify")["requests"]["POST /admin/oauth/access_token"]
    assert requested == len(tokens)
    # Every token served until its expiry, less the renewal margin (5 minutes) and the few simulated
    # minutes a request takes at this speed: never renewed early, never per cycle. (How long after
    # its expiry a token is replaced depends on when the next cycle runs: on a busy host, later.)
    lifetimes = [(new.issued_at - old.issued_at).total_seconds() for old, new in itertools.pairwise(tokens)]
    assert all(DAY - 900 <= lived < 2 * DAY for lived in lifetimes), lifetimes
    span = (moments[-1] - moments[0]).total_seconds()
    assert requested <= span / (DAY - 900) + 1  # requests = expiries + 1, at most
    # Cycles share a token, not one token per cycle. (Not a fixed number per token: at four
    # simulated hours a second, a cycle on a loaded host spans half a simulated day.)
    assert len(seen) > requested
    report.record(
        "tokens",
        {"cycles": len(seen), "token_requests": requested, "simulated_days": (moments[-1] - moments[0]).days},
    )
