"""A Shopify app without `read_all_orders`, from the command line: Shopify then returns the last 60
days of orders only, so lifetime revenue, tiers and "lapsed" would be computed from two months and
written back wrongly. `check` and `sync` stop for it, unless the merchant accepts 60 days."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.kit import Sandboxes, json_out, run_crmsync

SCOPES = ["read_customers", "write_customers", "read_orders"]


def test_without_read_all_orders_check_and_sync_stop_unless_recent_orders_only(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    requests.patch(f"{sandboxes.url('shopify')}/_sandbox/app", json={"scopes": SCOPES}, timeout=5).raise_for_status()
    config = sandboxes.config(tmp_path)
    check = run_crmsync("check", "-c", str(config), "--json")
    assert check.returncode == 3
    shop = json_out(check)["systems"]["shopify"]
    missing = [p for p in shop["permissions"] if not p["ok"]]
    assert [p["name"] for p in missing] == ["read_all_orders"] and "Dev Dashboard" in missing[0]["fix"]
    human = run_crmsync("check", "-c", str(config))
    assert "read_all_orders missing" in human.stdout
    sync = run_crmsync("sync", "-c", str(config), "--json")
    assert sync.returncode == 3
    doc = json_out(sync)
    assert doc["systems"]["shopify"]["status"] == "failed" and "read_all_orders" in doc["systems"]["shopify"]["error"]
    assert doc["held"]["waiting_for"] == ["shopify"]  # nothing written anywhere from the partial picture

    accepted = sandboxes.config(tmp_path, shopify="recent_orders_only = true")
    check = run_crmsync("check", "-c", str(accepted), "--json")
    assert check.returncode == 0
    assert any("60 days" in w for w in json_out(check)["systems"]["shopify"]["warnings"])
    sync = run_crmsync("sync", "-c", str(accepted), "--json")
    assert sync.returncode == 0, sync.stderr
    doc = json_out(sync)
    assert doc["held"] is None and any("60 days" in c for c in doc["caveats"])
    report = json_out(run_crmsync("report", "-c", str(accepted), "--json"))
    assert any("shopify" in c and "60 days" in c for c in report["caveats"])
    explain = run_crmsync("explain", "shopify:gid://shopify/Customer/7000000", "-c", str(accepted), "--json")
    assert any("60 days" in c for c in json_out(explain)["caveats"])
