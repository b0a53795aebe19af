"""Operating crmsync as a service: `status` exit codes a monitor can page on, and `backup` while
a daemon writes (CONTRACTS §6)."""

from __future__ import annotations

import sqlite3
import stat
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.kit import Sandboxes, json_out, run_crmsync, secret, spawn, wait_until


def test_status_exits_4_without_state_0_when_healthy_and_3_naming_what_is_wrong(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    none_yet = run_crmsync("status", "-c", str(config), "--json")
    assert none_yet.returncode == 4, none_yet.stderr
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    healthy = run_crmsync("status", "-c", str(config), "--json")
    assert healthy.returncode == 0 and json_out(healthy)["problems"] == {}

    # one system's credentials refused: its cycle fails, the others succeed
    (tmp_path / "broken").mkdir()
    broken = sandboxes.config(
        tmp_path / "broken",
        state=f"sqlite:///{tmp_path / 'crmsync.db'}",
        woocommerce=f'consumer_secret = "{secret("cs_not_the_secret_at_all")}"',
    )
    assert run_crmsync("sync", "-c", str(broken)).returncode == 3
    failing = run_crmsync("status", "-c", str(broken), "--json")
    assert failing.returncode == 3
    assert list(json_out(failing)["problems"]) == ["woocommerce"]
    human = run_crmsync("status", "-c", str(broken))
    assert human.returncode == 3 and "woocommerce" in human.stdout and "last cycle failed" in human.stdout

    # healthy again, but with max_staleness set and the clock a day on, every success is too old
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    stale = config.with_name("stale.toml")
    stale.write_text(
        config.read_text().replace('tag_prefix = "crmsync:"', 'tag_prefix = "crmsync:"\nmax_staleness = "1h"')
    )
    assert run_crmsync("status", "-c", str(stale)).returncode == 0
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    old = run_crmsync("status", "-c", str(stale), "--json", env={"CRMSYNC_NOW": later})
    assert old.returncode == 3 and "over max_staleness" in json_out(old)["problems"]["shopify"]


def test_backup_while_the_daemon_runs_is_whole_and_a_sync_from_it_writes_nothing(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    config.write_text(config.read_text().replace('interval = "15m"', 'interval = "1s"'))
    daemon = spawn("run", "-c", str(config))
    copy = tmp_path / "copies" / "crmsync-backup.db"
    try:
        assert wait_until(lambda: '"event": "cycle finished"' in daemon.stderr(), timeout=60), daemon.stderr()
        assert json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"] is not None  # it is running
        made = run_crmsync("backup", str(copy), "-c", str(config), "--json")
        assert made.returncode == 0, made.stderr
        assert json_out(made) == {"ok": True, "backup": str(copy), "bytes": copy.stat().st_size, "integrity": "ok"}
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # every customer's data: its owner's alone
        again = run_crmsync("backup", str(copy), "-c", str(config), "--json")
        assert again.returncode == 2 and "never overwrites" in json_out(again)["error"]["messages"][0]
    finally:
        daemon.kill()
    with closing(sqlite3.connect(copy)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM profiles").fetchone()[0] > 0
    restored = config.with_name("restored.toml")
    restored.write_text(config.read_text().replace('url = "sqlite:///crmsync.db"', f'url = "sqlite:///{copy}"'))
    result = run_crmsync("sync", "-c", str(restored), "--json")
    assert result.returncode == 0, result.stderr
    assert all(s["write_calls"] == 0 for s in json_out(result)["systems"].values())


def test_backup_without_state_exits_4(sandboxes: Sandboxes, tmp_path: Path) -> None:
    result = run_crmsync("backup", str(tmp_path / "b.db"), "-c", str(sandboxes.config(tmp_path)))
    assert result.returncode == 4 and "nothing to back up" in result.stderr
    assert not (tmp_path / "b.db").exists()
