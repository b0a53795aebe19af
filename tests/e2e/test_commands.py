"""`check`, the state lock, the daemon, `sandbox` and `demo`, as subprocesses."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from tests.kit import Sandboxes, Spawned, json_out, run_crmsync, secret, spawn, wait_until

BROKEN = {
    "wrong-type": (
        '[systems.shop]\ntype = "shopify"\nbase_url = "https://x.myshopify.com"\n'
        f'access_token = "{secret("shpat_secret_in_bad_config")}"\nrate_limit = "fast"\n',
        "config error: systems.shop.rate_limit: ",
    ),
    "missing-credential": (
        '[systems.web]\ntype = "woocommerce"\nbase_url = "https://winkel.example.nl"\n'
        f'consumer_key = "{secret("ck_secret_in_bad_config")}"\n',
        "config error: systems.web.consumer_secret: field required",
    ),
    "unknown-type": (
        '[systems.erp]\ntype = "sap"\nbase_url = "https://erp.example.nl"\n'
        f'api_key = "{secret("secret_in_bad_config")}"\n',
        "config error: systems.erp.type: unknown system type",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_check_refuses_a_broken_config_with_exit_2_and_the_key_path(tmp_path: Path, case: str) -> None:
    text, expected = BROKEN[case]
    config = tmp_path / "crmsync.toml"
    config.write_text(text)
    result = run_crmsync("check", "-c", str(config))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith(expected) for line in lines), lines
    assert all(line.startswith("config error: ") for line in lines)
    assert "Traceback" not in result.stderr and "secret_in_bad_config" not in result.stderr


def test_check_proves_what_each_system_allows_and_changes_nothing(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    result = run_crmsync("check", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    doc = json_out(result)
    assert doc["systems"]["shopify"] == {
        "type": "shopify",
        "reachable": True,
        "auth": "ok",
        "capabilities": {
            "read_contacts": True,
            "read_orders": True,
            "incremental": True,
            "write_tags": True,
            "write_fields": True,
        },
        "permissions": [
            {"name": scope, "ok": True, "fix": None, "needed": True}
            for scope in ("read_customers", "read_orders", "read_all_orders", "write_customers")
        ],
        # The emulated shop keeps Amsterdam's calendar; this config counts segment days in UTC.
        "warnings": [
            "the system keeps its calendar in Europe/Amsterdam, segments count days and years in UTC "
            '([segments] timezone is unset): set [segments] timezone = "Europe/Amsterdam" to count them as '
            "the shop does"
        ],
        "timezone": "Europe/Amsterdam",
        "error": None,
    }
    assert doc["systems"]["woocommerce"]["capabilities"]["write_tags"] is False
    assert doc["systems"]["silvasoft"]["capabilities"]["write_fields"] is False
    assert any("writes nothing" in w for w in doc["systems"]["silvasoft"]["warnings"])
    assert all(s["auth"] == "ok" and s["error"] is None for s in doc["systems"].values())
    assert all(sandboxes.stats(t)["writes"] == 0 for t in doc["systems"])  # proven without changing data
    wrong = sandboxes.config(tmp_path, shopify=f'client_secret = "{secret("shpss_nope_not_the_secret")}"')
    bad = run_crmsync("check", "-c", str(wrong), "--json")
    assert bad.returncode == 3
    shop = json_out(bad)["systems"]["shopify"]
    assert shop["auth"] == "refused" and "check client_id and client_secret" in shop["error"]
    assert not any(shop["capabilities"].values())  # nothing proven, nothing claimed


def test_config_from_environment_and_default_file(sandboxes: Sandboxes, tmp_path: Path) -> None:
    sandboxes.config(tmp_path)
    assert run_crmsync("check", cwd=tmp_path).returncode == 0  # ./crmsync.toml by default
    moved = tmp_path / "elsewhere.toml"
    (tmp_path / "crmsync.toml").rename(moved)
    assert run_crmsync("check", cwd=tmp_path, env={"CRMSYNC_CONFIG": str(moved)}).returncode == 0
    missing = run_crmsync("check", cwd=tmp_path)
    assert missing.returncode == 2 and "crmsync.toml: file not found" in missing.stderr


def test_bad_clock_override_is_a_usage_error(tmp_path: Path) -> None:
    result = run_crmsync("status", env={"CRMSYNC_NOW": "next tuesday"}, cwd=tmp_path)
    assert result.returncode == 2 and "CRMSYNC_NOW" in result.stderr


def test_a_second_writer_exits_5_naming_the_holder_and_a_killed_holder_is_taken_over(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    # The holder stalls on its first read until the test kills it: however slow this machine,
    # it still holds the lock when the second writer and `status` look.
    sandboxes.fault("shopify", match="reads", fault="slow", seconds=30, times=1)
    holder = spawn("sync", "-c", str(config))
    lock = tmp_path / "crmsync.db.lock"
    try:
        assert wait_until(lambda: lock.exists() and str(holder.pid) in lock.read_text(), timeout=20)
        second = run_crmsync("sync", "-c", str(config))
        assert second.returncode == 5
        assert f"pid {holder.pid}" in second.stderr and "(sync," in second.stderr
        status = json_out(run_crmsync("status", "-c", str(config), "--json"))
        assert status["lock"]["pid"] == holder.pid  # status reads without taking the lock
    finally:
        holder.kill()
    taken_over = run_crmsync("sync", "-c", str(config))
    assert taken_over.returncode == 0, taken_over.stderr
    assert json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"] is None


def test_daemon_runs_cycles_on_schedule_and_stops_cleanly(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    config.write_text(config.read_text().replace('interval = "15m"', 'interval = "1s"'))
    bounded = run_crmsync("run", "-c", str(config), "--cycles", "2", timeout=60)
    assert bounded.returncode == 0, bounded.stderr
    assert bounded.stderr.count('"event": "cycle finished"') == 2
    status = json_out(run_crmsync("status", "-c", str(config), "--json"))
    assert status["systems"]["shopify"]["last_ok"] is not None

    daemon = spawn("run", "-c", str(config))
    try:
        assert wait_until(lambda: json_out(run_crmsync("status", "-c", str(config), "--json"))["lock"] is not None)
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=15)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, err
    assert time.monotonic() - started < 10
    assert '"event": "daemon stopped"' in err


def _free_port_pair() -> int:
    """A port base whose every `--port-base` offset is free (each registered vendor binds its own)."""
    from connectors.registry import PORT_OFFSETS

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        try:
            sockets = [socket.socket() for _ in PORT_OFFSETS]
            try:
                for sock, offset in zip(sockets, PORT_OFFSETS.values(), strict=True):
                    sock.bind(("127.0.0.1", base + offset))
            finally:
                for sock in sockets:
                    sock.close()
            return base
        except OSError:
            continue
    raise RuntimeError("no run of free ports for every sandbox offset")


def test_sandbox_command_prints_its_systems_and_writes_a_working_config(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.toml"
    for _ in range(5):
        # The ports were free a moment ago; another test's server may take one in between, and
        # the sandbox then stops at once, saying so. Another run of ports, then.
        base = _free_port_pair()
        process = spawn("sandbox", "--port-base", str(base), "--write-config", str(config))

        def up_or_gone(started: Spawned = process) -> bool:
            return len(started.stdout().splitlines()) >= 2 or started.poll() is not None

        assert wait_until(up_or_gone, timeout=30)
        if process.poll() is None or "already in use" not in process.stderr():
            break
    try:
        assert len(process.stdout().splitlines()) >= 2, process.stderr()
        lines = process.stdout().splitlines()[:2]
        assert lines == [f"shopify http://127.0.0.1:{base}", f"woocommerce http://127.0.0.1:{base + 1}"]
        assert config.exists()
        assert 'url = "sqlite:///crmsync.db"' in config.read_text()
        check = run_crmsync("check", "-c", str(config), "--json")
        assert check.returncode == 0, check.stderr
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0


def test_sandbox_command_refuses_a_bad_fixture_naming_it(tmp_path: Path) -> None:
    (tmp_path / "woocommerce").mkdir()
    (tmp_path / "woocommerce" / "customers.json").write_text('[{"id": "seven"}]')
    result = run_crmsync("sandbox", "--data", str(tmp_path))
    assert result.returncode == 2
    assert "woocommerce/customers.json item 0" in result.stderr


def test_demo_shows_the_full_cycle_and_a_quiet_second_run(tmp_path: Path) -> None:
    result = run_crmsync("demo", "--contacts", "40", "--dir", str(tmp_path / "demo"), "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json_out(result)
    assert doc["dry_run"] is False and doc["profiles"] == 40  # the sync document of the full cycle
    assert doc["systems"]["shopify"]["written"] > 0
    assert doc["systems"]["woocommerce"]["written"] > 0
    assert doc["profiles_spanning_systems"] > 0
    assert all(s["write_calls"] == 0 for s in doc["second"]["systems"].values())
    assert Path(doc["state"]).exists()
    human = run_crmsync("demo", "--contacts", "20", "--dir", str(tmp_path / "demo2"), timeout=120)
    assert human.returncode == 0
    assert "The second cycle wrote nothing" in human.stdout and "State file:" in human.stdout


def test_every_command_logs_at_info_unless_told_otherwise() -> None:
    """CONTRACTS §1: `--log-level` defaults to info for every subcommand (`make demo` asks the demo
    for warning itself). The suite's runs set $CRMSYNC_LOG_LEVEL, so the declared default is read."""
    import typer.main

    from sync.cli import app

    group = typer.main.get_command(app)
    defaults = {
        name: next(str(p.default.value) for p in command.params if p.name == "log_level")
        for name, command in group.commands.items()  # type: ignore[attr-defined]
        if any(p.name == "log_level" for p in command.params)
    }
    assert "demo" in defaults and len(defaults) >= 10
    assert {name: level for name, level in defaults.items() if level != "info"} == {}


def test_unexpected_failures_print_one_line_and_exit_70(tmp_path: Path) -> None:
    # A state URL whose directory cannot be created is not a config error but an environment one.
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = tmp_path / "crmsync.toml"
    config.write_text(f'[state]\nurl = "sqlite:///{blocker}/sub/crmsync.db"\n')
    result = run_crmsync("sync", "-c", str(config))
    assert result.returncode == 70
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("crmsync: internal error: ") and "Traceback" not in result.stderr
