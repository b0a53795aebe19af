"""The write gate, with the command line over seven sandboxes: crmsync writes to any system only
from a complete picture. Segments from a picture missing a system are wrong for everyone whose
orders sit there, and those tags reach mail flows and discounts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.chaos.lab import sandbox_state
from tests.kit import Sandboxes, json_out, run_crmsync, secret

NOW = {"CRMSYNC_NOW": "2026-11-20T10:00:00+00:00"}
LATER = {"CRMSYNC_NOW": "2026-11-21T10:00:00+00:00"}


def writes(sandboxes: Sandboxes) -> dict[str, int]:
    return {t: int(sandboxes.stats(t)["writes"]) for t in sandboxes.by_type}


def test_one_system_refused_on_a_fresh_state_holds_every_write_and_the_fixed_run_equals_a_clean_one(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    broken = start_sandboxes_fixture(small_data, time_scale=50)
    (tmp_path / "a").mkdir()
    wrong = broken.config(tmp_path / "a", shopify=f'client_secret = "{secret("shpss_a_wrong_secret_99")}"')
    first = run_crmsync("sync", "-c", str(wrong), "--json", env=NOW)
    assert first.returncode == 3, first.stderr
    doc = json_out(first)
    assert doc["held"]["waiting_for"] == ["shopify"]
    assert "shopify could not be read" in doc["held"]["reason"]
    assert doc["systems"]["shopify"]["status"] == "failed"
    assert all(doc["systems"][t]["status"] == "ok" for t in broken.by_type if t != "shopify")
    assert sum(s["planned"] for s in doc["systems"].values()) > 0  # computed and planned ...
    assert writes(broken) == dict.fromkeys(broken.by_type, 0)  # ... and nothing written anywhere
    status = json_out(run_crmsync("status", "-c", str(wrong), "--json"))
    assert status["held"]["waiting_for"] == ["shopify"]
    human = run_crmsync("status", "-c", str(wrong))
    assert "writes held" in human.stdout and "shopify" in human.stdout

    fixed = broken.config(tmp_path / "a")
    second = run_crmsync("sync", "-c", str(fixed), "--json", env=NOW)
    assert second.returncode == 0, second.stderr
    assert json_out(second)["held"] is None
    assert all(count > 0 for t, count in writes(broken).items() if t != "silvasoft")

    # The same data in sandboxes that never failed, synced at the same moment: the same segments.
    clean = start_sandboxes_fixture(small_data, time_scale=50)
    (tmp_path / "b").mkdir()
    assert run_crmsync("sync", "-c", str(clean.config(tmp_path / "b")), env=NOW).returncode == 0
    assert sandbox_state(broken, small_data) == sandbox_state(clean, small_data)


def test_allow_partial_writes_from_a_partial_picture_and_says_so(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    sandboxes.fault("afas", match="*", fault="auth", times=100)
    result = run_crmsync("sync", "-c", str(config), "--json", "--allow-partial", env=NOW)
    assert result.returncode == 3  # afas still failed
    assert json_out(result)["held"] is None
    assert writes(sandboxes)["shopify"] > 0
    warning = [json.loads(line) for line in result.stderr.splitlines() if '"event": "writing from a partial' in line]
    assert warning and warning[0]["level"] == "warning" and warning[0]["held"] == ["afas"]


def test_after_a_complete_picture_a_failing_system_holds_nobody_until_max_staleness(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    config.write_text(
        config.read_text().replace('tag_prefix = "crmsync:"', 'tag_prefix = "crmsync:"\nmax_staleness = "12h"')
    )
    assert run_crmsync("sync", "-c", str(config), env=NOW).returncode == 0
    # efficy fails from here on; a customer edited in the shop must still be written back
    sandboxes.fault("efficy", match="*", fault="auth", times=100_000)
    sandboxes.reset_stats()
    sandboxes.patch_customer("shopify", "gid://shopify/Customer/7000001", {"tags": ["crmsync:friends", "vip"]})
    soon = run_crmsync("sync", "-c", str(config), "--json", env={"CRMSYNC_NOW": "2026-11-20T16:00:00+00:00"})
    assert soon.returncode == 3
    assert json_out(soon)["held"] is None and json_out(soon)["systems"]["efficy"]["status"] == "failed"
    assert writes(sandboxes)["shopify"] > 0  # six hours stale is within max_staleness: the others write
    sandboxes.reset_stats()
    sandboxes.patch_customer("shopify", "gid://shopify/Customer/7000001", {"tags": ["crmsync:friends", "vip"]})
    late = run_crmsync("sync", "-c", str(config), "--json", env=LATER)
    assert late.returncode == 3
    held = json_out(late)["held"]
    assert held["waiting_for"] == ["efficy"] and "max_staleness" in held["reason"]
    # said once by whoever shows the reason ("writes held: ..."), never twice
    assert held["reason"].startswith("efficy failed")
    assert writes(sandboxes) == dict.fromkeys(sandboxes.by_type, 0)
    assert json_out(run_crmsync("status", "-c", str(config), "--json"))["held"] == held


def test_a_read_that_never_reached_the_end_does_not_open_the_gate(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    # woocommerce's orders fail after its customers were read: its picture is not complete
    sandboxes.fault("woocommerce", match="GET /wp-json/wc/v3/orders", fault="500", times=100)
    first = run_crmsync("sync", "-c", str(config), "--json", env=NOW)
    assert first.returncode == 3 and json_out(first)["held"]["waiting_for"] == ["woocommerce"]
    assert json_out(first)["systems"]["woocommerce"]["read"]["contacts"] > 0
    # a dry run's complete read counts: once the orders are readable, a plan opens the gate
    requests.delete(f"{sandboxes.url('woocommerce')}/_sandbox/faults", timeout=5)
    assert run_crmsync("plan", "-c", str(config), env=NOW).returncode == 0
    assert writes(sandboxes) == dict.fromkeys(sandboxes.by_type, 0)
    assert run_crmsync("sync", "-c", str(config), env=NOW).returncode == 0
    assert writes(sandboxes)["woocommerce"] > 0
