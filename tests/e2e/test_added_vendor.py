"""A vendor is added by its folder alone: `tests/vendors/acme` (declarations on the connector kit,
an emulator on the sandbox kit, demo fixtures) is found through CRMSYNC_VENDOR_PACKAGES, with no
edit anywhere outside tests/, and runs the whole cycle like the seven built in."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.kit import json_out, run_crmsync, spawn, wait_until

ROOT = Path(__file__).resolve().parents[2]
ADDED = {"CRMSYNC_VENDOR_PACKAGES": "tests.vendors", "PYTHONPATH": str(ROOT)}
CUSTOMERS = [
    {"id": 5_000_001, "email": "ans@example.nl", "first_name": "Ans", "last_name": "Bakker", "tags": ["vip"]},
    {"id": 5_000_002, "email": "bo@example.nl", "first_name": "Bo", "last_name": "Jansen"},
    {"id": 5_000_003, "email": "cor@example.nl", "first_name": "Cor", "last_name": "Visser"},
]
ORDERS = [
    {
        "id": n,
        "customer_id": 5_000_001,
        "total": "80.00",
        "currency": "EUR",
        "created_at": f"2026-1{n % 2}-0{n}T10:00:00Z",
        "status": "paid",
    }
    for n in range(1, 6)
] + [
    {
        "id": 6,
        "customer_id": 5_000_002,
        "total": "20.00",
        "currency": "EUR",
        "created_at": "2026-11-20T10:00:00Z",
        "status": "cancelled",
    }
]


def _free_base(offset: int) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1] - offset
        if base > 1024 and base + offset < 65000:
            return base
    raise RuntimeError("no free port")


def test_the_registry_finds_a_vendor_by_its_folder() -> None:
    probe = (
        "import json; from connectors import registry as r; "
        "print(json.dumps([r.TYPES, r.PORT_OFFSETS, sorted(r.ONLINE_TYPES)]))"
    )
    found = run_crmsync_python(probe)
    types, offsets, online = json.loads(found)
    assert types[-1] == "acme" and offsets["acme"] == 7 and "acme" in online
    assert types[:7] == ["shopify", "woocommerce", "lightspeed", "afas", "superoffice", "efficy", "silvasoft"]
    assert "acme" not in json.loads(run_crmsync_python(probe, added=False))[0]  # only where it is named


def run_crmsync_python(code: str, *, added: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    if added:
        env.update(ADDED)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def test_an_added_vendor_runs_the_whole_cycle(tmp_path: Path) -> None:
    data = tmp_path / "data" / "acme"
    data.mkdir(parents=True)
    (data / "customers.json").write_text(json.dumps(CUSTOMERS))
    (data / "orders.json").write_text(json.dumps(ORDERS))
    base = _free_base(7)
    config = tmp_path / "sandbox.toml"
    process = spawn(
        "sandbox", "--data", str(tmp_path / "data"), "--port-base", str(base), "--write-config", str(config), env=ADDED
    )
    try:
        assert wait_until(lambda: "acme http" in process.stdout(), timeout=30), process.stderr()
        assert process.stdout().split() == ["acme", f"http://127.0.0.1:{base + 7}"]  # its declared port
        result = run_crmsync("sync", "-c", str(config), "--json", cwd=tmp_path, env=ADDED)
        assert result.returncode == 0, result.stderr
        system = json_out(result)["systems"]["acme"]
        assert system["read"]["contacts"] == 3 and system["read"]["orders"] == 6
        assert system["written"] >= 1
        url = f"http://127.0.0.1:{base + 7}/_sandbox/customers"
        ans = requests.get(f"{url}/5000001", timeout=5).json()
        assert "vip" in ans["tags"]  # a tag crmsync does not own stays
        assert any(t.startswith("crmsync:") for t in ans["tags"])
        again = run_crmsync("sync", "-c", str(config), "--json", cwd=tmp_path, env=ADDED)
        assert again.returncode == 0, again.stderr
        assert json_out(again)["systems"]["acme"]["write_calls"] == 0  # written once, idempotent
        unknown = run_crmsync("check", "-c", str(config), cwd=tmp_path)  # without the package named
        assert unknown.returncode == 2 and "unknown system type" in unknown.stderr
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    finally:
        process.kill()
