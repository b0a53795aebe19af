"""One writer per state, whichever commands meet: while `crmsync sync` or `crmsync run` holds the
state, a second `sync` or `run` exits 5 naming the holder; once the holder is SIGKILLed, the next
one takes the lock over. (sync against sync: tests/e2e/test_commands.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit import Sandboxes, json_out, run_crmsync, spawn, wait_until

SECOND = {"sync": ("sync",), "run": ("run", "--cycles", "1")}


@pytest.mark.parametrize(("holder", "second"), [("run", "sync"), ("sync", "run"), ("run", "run")])
def test_the_second_writer_exits_5_naming_the_holder_and_a_killed_holder_is_taken_over(
    sandboxes: Sandboxes, tmp_path: Path, holder: str, second: str
) -> None:
    config = sandboxes.config(tmp_path)
    config.write_text(config.read_text().replace('interval = "15m"', 'interval = "1s"'))
    sandboxes.fault("shopify", match="reads", fault="slow", seconds=5, times=1)  # the holder takes its time
    process = spawn(holder, "-c", str(config))
    lock = tmp_path / "crmsync.db.lock"
    try:
        assert wait_until(lambda: lock.exists() and f'"pid": {process.pid}' in lock.read_text(), timeout=30)
        refused = run_crmsync(*SECOND[second], "-c", str(config))
        assert refused.returncode == 5, refused.stderr
        assert f"pid {process.pid}" in refused.stderr and f"({holder}," in refused.stderr
        assert json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"]["pid"] == process.pid
    finally:
        process.kill()
    taken_over = run_crmsync(*SECOND[second], "-c", str(config))
    assert taken_over.returncode == 0, taken_over.stderr
    assert json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"] is None
