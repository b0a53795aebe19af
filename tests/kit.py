"""Helpers for tests: sandboxes and their test routes, the `crmsync` command as a subprocess,
polling with a deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from sync.sandboxes import RunningSandbox, sandbox_config

CRMSYNC = str(Path(sys.executable).parent / "crmsync")


class Sandboxes:
    """Running emulators plus helpers to talk to their test routes."""

    def __init__(self, running: list[RunningSandbox]) -> None:
        self.running = running
        self.by_type = {s.type: s for s in running}

    def url(self, system_type: str) -> str:
        return self.by_type[system_type].url

    def app(self, system_type: str) -> Any:
        return self.by_type[system_type].app

    def stats(self, system_type: str) -> dict[str, Any]:
        return requests.get(f"{self.url(system_type)}/_sandbox/stats", timeout=5).json()  # type: ignore[no-any-return]

    def reset_stats(self) -> None:
        for sandbox in self.running:
            requests.delete(f"{sandbox.url}/_sandbox/stats", timeout=5).raise_for_status()

    def request_log(self, system_type: str) -> list[dict[str, Any]]:
        return requests.get(f"{self.url(system_type)}/_sandbox/requests", timeout=5).json()  # type: ignore[no-any-return]

    def customer(self, system_type: str, customer_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.url(system_type)}/_sandbox/customers/{customer_id}", timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def patch_customer(self, system_type: str, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any]:
        response = requests.patch(f"{self.url(system_type)}/_sandbox/customers/{customer_id}", json=partial, timeout=5)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def fault(self, system_type: str, **spec: Any) -> None:
        requests.post(f"{self.url(system_type)}/_sandbox/faults", json=spec, timeout=5).raise_for_status()

    def config(self, folder: Path, extra: str = "", state: str = "sqlite:///crmsync.db", **systems: str) -> Path:
        """Write a config for these sandboxes. `systems` maps a system type to TOML lines that
        replace (or add to) that system's keys; `extra` is appended as is."""
        lines = sandbox_config(self.running, state_url=state).split("\n")
        for system_type, overrides in systems.items():
            header = lines.index(f"[systems.{system_type}]")
            end = next((i for i in range(header + 1, len(lines)) if not lines[i].strip()), len(lines))
            for override in (line.strip() for line in overrides.strip().splitlines()):
                key = override.split("=", 1)[0].strip()
                at = next((i for i in range(header + 1, end) if lines[i].split("=", 1)[0].strip() == key), None)
                if at is None:
                    lines.insert(end, override)
                    end += 1
                else:
                    lines[at] = override
        path = folder / "crmsync.toml"
        path.write_text("\n".join(lines) + "\n" + extra)
        return path


def run_crmsync(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    full_env.update(env or {})
    return subprocess.run(
        [CRMSYNC, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def json_out(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout.strip(), f"no stdout; stderr was:\n{result.stderr}"
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it holds or the deadline passes (tests never sleep blindly)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(interval)
    return predicate()


def make_connector(sandboxes: Sandboxes, system_type: str, **overrides: Any) -> Any:
    """A connector for one running sandbox, with the sandbox's credentials; `overrides` are
    settings (e.g. page_size=10, rate_limit=[...])."""
    from connectors.registry import connector_class

    cls = connector_class(system_type)
    fields: dict[str, Any] = {"type": system_type, "base_url": sandboxes.url(system_type)}
    fields.update(sandboxes.app(system_type).client_settings())
    fields.setdefault("retry", {"backoff_initial": 0.05, "backoff_max": 0.5})
    fields.update(overrides)
    return cls(system_type, cls.settings_class(**fields))
