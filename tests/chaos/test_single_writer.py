"""One writer per state, whichever commands meet: while `crmsync sync` or `crmsync run` holds the
state, a second `sync` or `run` exits 5 naming the holder; once the holder is SIGKILLed, the next
one takes the lock over. On PostgreSQL a second `run` is a standby instead: it waits and takes
over. (sync against sync: tests/e2e/test_commands.py; replicas: tests/e2e/test_pg_lock.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from sync.pglock import current_holder
from tests.kit import Sandboxes, json_out, run_crmsync, spawn, wait_until

SECOND = {"sync": ("sync",), "run": ("run", "--cycles", "1")}


@pytest.mark.parametrize(("holder", "second"), [("run", "sync"), ("sync", "run"), ("run", "run")])
def test_the_second_writer_exits_5_naming_the_holder_and_a_killed_holder_is_taken_over(
    sandboxes: Sandboxes, tmp_path: Path, holder: str, second: str
) -> None:
    config = sandboxes.config(tmp_path)
    config.write_text(config.read_text().replace('interval = "15m"', 'interval = "1s"'))
    # The holder must still hold the lock while two more processes start and ask, however slow
    # this host is: its reads stall (20 s each, retries included) until the test clears the fault,
    # before the kill. (A single 5 s stall let a `sync` holder finish first on a loaded host.)
    sandboxes.fault("shopify", match="reads", fault="slow", seconds=20, times=5)
    process = spawn(holder, "-c", str(config))
    lock = tmp_path / "crmsync.db.lock"
    try:
        assert wait_until(lambda: lock.exists() and f'"pid": {process.pid}' in lock.read_text(), timeout=30)
        refused = run_crmsync(*SECOND[second], "-c", str(config))
        assert refused.returncode == 5, refused.stderr
        assert f"pid {process.pid}" in refused.stderr and f"({holder}," in refused.stderr
        assert json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"]["pid"] == process.pid
    finally:
        requests.delete(f"{sandboxes.url('shopify')}/_sandbox/faults", timeout=5).raise_for_status()
        process.kill()
    taken_over = run_crmsync(*SECOND[second], "-c", str(config))
    assert taken_over.returncode == 0, taken_over.stderr
    assert json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"] is None


@pytest.mark.parametrize("holder", ["run", "sync"])
def test_on_postgresql_a_one_off_writer_exits_5_and_a_second_daemon_waits_as_a_standby_then_takes_over(
    sandboxes: Sandboxes, tmp_path: Path, postgres_url: str, holder: str
) -> None:
    """The same meeting on PostgreSQL (issue 16): the advisory lock's session names the holder, a
    one-off `sync` exits 5, and a second `run` does not exit 5 but waits until the holder is gone."""
    config = sandboxes.config(tmp_path, state=postgres_url)
    config.write_text(
        config.read_text()
        .replace('interval = "15m"', 'interval = "1s"')
        .replace("[state]\n", '[state]\nfailover = "3s"\n')
    )
    # The holder must still hold the lock when the standby starts, however slow this host is: its
    # reads stall (20 s each, retries included) until the test clears the fault, before the kill.
    sandboxes.fault("shopify", match="reads", fault="slow", seconds=20, times=5)
    process = spawn(holder, "-c", str(config))
    standby = None
    try:
        assert wait_until(lambda: (current_holder(postgres_url) or {}).get("pid") == process.pid, timeout=30)
        refused = run_crmsync("sync", "-c", str(config))
        assert refused.returncode == 5, refused.stderr
        assert f"pid {process.pid}" in refused.stderr and f"({holder}," in refused.stderr
        assert json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"]["pid"] == process.pid
        standby = spawn("run", "--cycles", "1", "-c", str(config))
        assert wait_until(lambda: "standby: waiting for the active crmsync" in standby.stderr(), timeout=30)
        assert standby.poll() is None  # waiting, not refused
        assert (current_holder(postgres_url) or {}).get("pid") == process.pid
    finally:
        requests.delete(f"{sandboxes.url('shopify')}/_sandbox/faults", timeout=5).raise_for_status()
        process.kill()
    assert standby.result(timeout=90).returncode == 0, standby.stderr()
    assert '"event": "cycle finished"' in standby.stderr()
    assert json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"] is None
