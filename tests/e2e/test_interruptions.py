"""Kills, stops and vendor faults during `crmsync sync`: nothing lost, nothing written twice."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.kit import Sandboxes, json_out, run_crmsync, secret, spawn, wait_until


def final_state(sandboxes: Sandboxes, data: dict[str, Any]) -> dict[str, Any]:
    """Everything a sync may touch, without timestamps and ids that differ between runs."""
    state: dict[str, Any] = {}
    for customer in data["shopify"]["customers"]:
        stored = sandboxes.customer("shopify", customer["id"])
        state[customer["id"]] = (
            sorted(stored["tags"]),
            sorted((m["namespace"], m["key"], m["value"]) for m in stored["metafields"]),
        )
    for customer in data["woocommerce"]["customers"]:
        stored = sandboxes.customer("woocommerce", str(customer["id"]))
        state[f"woo:{customer['id']}"] = sorted((m["key"], str(m["value"])) for m in stored["meta_data"])
    return state


def writes_seen(sandboxes: Sandboxes, system_type: str) -> list[dict[str, Any]]:
    return [e for e in sandboxes.request_log(system_type) if e["write"]]


SMALL_BATCHES = {"shopify": "write_batch = 5", "woocommerce": "write_batch = 5"}


def test_sigkill_while_applying_then_rerun_matches_an_uninterrupted_run(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    reference = start_sandboxes_fixture(small_data, time_scale=50)
    (tmp_path / "ref").mkdir()
    clean = run_crmsync("sync", "-c", str(reference.config(tmp_path / "ref", **SMALL_BATCHES)), "--json")
    assert clean.returncode == 0, clean.stderr
    planned_calls = sum(s["write_calls"] for s in json_out(clean)["systems"].values())

    victim = start_sandboxes_fixture(small_data, time_scale=50)
    (tmp_path / "victim").mkdir()
    config = victim.config(tmp_path / "victim", **SMALL_BATCHES)
    for system_type in ("shopify", "woocommerce"):
        victim.fault(system_type, match="writes", fault="slow", seconds=0.4, times=1000)
    process = spawn("sync", "-c", str(config))
    try:
        assert wait_until(lambda: len(writes_seen(victim, "shopify")) >= 2, timeout=30)
    finally:
        process.kill()
    done = sum(len(writes_seen(victim, t)) for t in ("shopify", "woocommerce"))
    assert 0 < done < planned_calls, "the kill must land in the middle of the write-back"
    # The state database is intact after the kill.
    with sqlite3.connect(tmp_path / "victim" / "crmsync.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    for sandbox in victim.running:
        requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()
    rerun = run_crmsync("sync", "-c", str(config), "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert final_state(victim, small_data) == final_state(reference, small_data)
    settle = run_crmsync("sync", "-c", str(config), "--json")
    assert sum(s["write_calls"] for s in json_out(settle)["systems"].values()) == 0


def test_sigterm_during_a_slow_batch_finishes_it_records_it_and_exits_0(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path, **SMALL_BATCHES)
    sandboxes.fault("shopify", match="writes", fault="slow", seconds=2, times=100)
    sandboxes.fault("woocommerce", match="writes", fault="slow", seconds=2, times=100)
    process = spawn("sync", "-c", str(config), "--json")
    in_flight = lambda: any(e["status"] is None for e in writes_seen(sandboxes, "shopify"))  # noqa: E731
    assert wait_until(in_flight, timeout=30)
    stopped_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    result = process.result(timeout=15)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - stopped_at < 10
    doc = json_out(result)
    shop = doc["systems"]["shopify"]
    assert shop["status"] == "interrupted"
    assert 0 < shop["written"] < shop["planned"]
    with sqlite3.connect(tmp_path / "crmsync.db") as db:
        ledger = db.execute("SELECT count(*) FROM pushed WHERE system = 'shopify'").fetchone()[0]
    assert ledger == shop["written"] == 5 * len([e for e in writes_seen(sandboxes, "shopify") if e["status"] == 200])


def test_throttling_server_errors_and_dropped_connections_are_survived(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    sandboxes.fault("woocommerce", match="GET /wp-json/wc/v3/customers", fault="429", retry_after=1, times=1)
    sandboxes.fault("woocommerce", match="writes", fault="503", times=1)
    sandboxes.fault("shopify", match="reads", fault="reset", times=1)
    sandboxes.fault("shopify", match="writes", fault="vendor-throttle", times=1)
    result = run_crmsync("sync", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    doc = json_out(result)
    for name in ("shopify", "woocommerce"):
        assert doc["systems"][name]["status"] == "ok"
        assert doc["systems"][name]["written"] == doc["systems"][name]["planned"] > 0
    assert sandboxes.stats("woocommerce")["throttled"] == 1 and sandboxes.stats("shopify")["throttled"] == 1


def test_refused_credentials_stop_that_system_only_with_exit_3(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    # A complete picture first (a plan reads everything and writes nothing): after that, a system
    # that fails keeps its stored records and does not hold the others (tests/e2e/test_write_gate.py
    # shows the first cycle, when it does).
    assert run_crmsync("plan", "-c", str(config)).returncode == 0
    sandboxes.fault("woocommerce", match="reads", fault="auth", times=1)
    result = run_crmsync("sync", "-c", str(config), "--json")
    assert result.returncode == 3
    doc = json_out(result)
    assert doc["systems"]["woocommerce"]["status"] == "failed"
    assert doc["systems"]["woocommerce"]["error"].startswith("woocommerce: ")
    assert "credentials refused" in doc["systems"]["woocommerce"]["error"]
    assert doc["systems"]["woocommerce"]["written"] == 0
    assert doc["systems"]["shopify"]["status"] == "ok" and doc["systems"]["shopify"]["written"] > 0
    wrong = sandboxes.config(tmp_path, woocommerce=f'consumer_secret = "{secret("cs_wrong_secret")}"')
    human = run_crmsync("sync", "-c", str(wrong))
    assert human.returncode == 3
    assert "woocommerce: GET /wp-json/wc/v3/customers: credentials refused" in human.stdout


def test_a_rejected_record_is_reported_kept_pending_and_dropped_once_deleted_at_the_vendor(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    # A deletion is taken at the second full read without the record, however soon (the waiting time
    # is tests/e2e/test_deleted_at_vendor.py's).
    config.write_text(config.read_text() + '\n[drift_guard]\nabsent_for = "0s"\n')
    assert run_crmsync("plan", "-c", str(config)).returncode == 0  # crmsync now knows every customer
    # The shop loses one customer record between the read and the write: the vendor refuses that
    # one update inside the batch ("Invalid resource ID") and accepts the rest.
    victim = small_data["woocommerce"]["customers"][3]["id"]
    app = sandboxes.app("woocommerce")
    with app.lock:
        removed = app.customers.pop(victim)
    result = run_crmsync("sync", "-c", str(config), "--json")
    assert result.returncode == 1, result.stderr
    woo = json_out(result)["systems"]["woocommerce"]
    assert woo["rejected"] == 1 and woo["written"] == woo["planned"] - 1 and woo["write_calls"] == 1
    status = json_out(run_crmsync("status", "-c", str(config), "--json"))
    [pending] = status["pending"]
    assert (pending["system"], pending["record_id"], pending["attempts"]) == ("woocommerce", str(victim), 1)
    assert "Invalid resource ID" in pending["message"]
    # The second full read in a row without it (WooCommerce's customers list is read whole every
    # cycle): deleted at the vendor, it leaves the state with its retry, and is tried no more.
    again = run_crmsync("sync", "-c", str(config), "--json")
    assert again.returncode == 0, again.stderr
    assert json_out(again)["systems"]["woocommerce"]["deleted"] == 1
    assert json_out(again)["systems"]["woocommerce"]["rejected"] == 0
    assert json_out(run_crmsync("status", "-c", str(config), "--json"))["pending"] == []
    with app.lock:
        app.customers[victim] = removed  # restored at the vendor: read again as a new record, written
    healed = run_crmsync("sync", "-c", str(config), "--json")
    assert healed.returncode == 0, healed.stderr
    assert json_out(healed)["systems"]["woocommerce"]["written"] >= 1
    assert json_out(run_crmsync("status", "-c", str(config), "--json"))["pending"] == []
