"""Helpers for tests: sandboxes and their test routes, the `crmsync` command as a subprocess,
polling with a deadline.

Everything a `crmsync` subprocess prints goes to a file in `output_dir()` as well, and every secret
a test hands to crmsync is registered with `secret()`: at the end of the session the suite scans
all of it (tests/conftest.py, tests/chaos/secrets.py) and fails on a single secret found.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import requests

from sync.sandboxes import RunningSandbox, sandbox_config

CRMSYNC = str(Path(sys.executable).parent / "crmsync")

# One WooCommerce shop on a port nobody listens on: a config for the tests that build a Cycle and
# hand it a connector of their own (or stop it before it asks anything).
UNREACHABLE_SHOP_CONFIG = """
[state]
url = "sqlite:///crmsync.db"
[systems.shop]
type = "woocommerce"
base_url = "http://127.0.0.1:9"
consumer_key = "ck_test"
consumer_secret = "cs_test"
"""

# Secrets the tests hand to crmsync (beyond the sandboxes' own credentials).
SECRETS: set[str] = set()
_output_dir: Path | None = None
_numbers = itertools.count(1)
_numbers_lock = threading.Lock()


def secret(value: str) -> str:
    """Register a value crmsync must never print, log or store; returns it."""
    SECRETS.add(value)
    return value


def capture_output_to(folder: Path) -> None:
    global _output_dir
    folder.mkdir(parents=True, exist_ok=True)
    _output_dir = folder


def output_dir() -> Path:
    """Where the output of every `crmsync` subprocess of this session is kept."""
    global _output_dir
    if _output_dir is None:
        _output_dir = Path(tempfile.mkdtemp(prefix="crmsync-output-"))
    return _output_dir


def _output_files(args: tuple[str, ...]) -> tuple[Path, Path]:
    with _numbers_lock:
        number = next(_numbers)
    label = re.sub(r"[^a-z0-9]+", "-", (args[0] if args else "crmsync").lower())
    stem = output_dir() / f"{number:05d}-{label}"
    return stem.with_suffix(".out"), stem.with_suffix(".err")


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

    def delete_customer(self, system_type: str, customer_id: str) -> dict[str, Any]:
        """Delete a customer at the vendor, as its UI would (`DELETE /_sandbox/customers/<id>`)."""
        response = requests.delete(f"{self.url(system_type)}/_sandbox/customers/{customer_id}", timeout=10)
        response.raise_for_status()
        deleted: dict[str, Any] = response.json()
        return deleted

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


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The test process's environment without its CRMSYNC_ variables, crmsync logging at debug
    level unless a test says otherwise (the secrets scan reads everything it logs)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    full_env["CRMSYNC_LOG_LEVEL"] = "debug"
    full_env.update(env or {})
    return full_env


def run_crmsync(
    *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [CRMSYNC, *args], cwd=cwd, env=_environment(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    out, err = _output_files(args)
    out.write_text(result.stdout)
    err.write_text(result.stderr)
    return result


def run_crmsync_here(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`crmsync` in this process (the same entry point, `sync.cli.main`), for the many quick
    refusals that would each cost a second of interpreter start-up as a subprocess. Its output is
    kept for the secrets scan like a subprocess's."""
    import contextlib
    import io

    from sync.cli import main

    saved = {k: v for k, v in os.environ.items() if k.startswith("CRMSYNC_")}
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    argv = sys.argv
    try:
        for name in saved:
            del os.environ[name]
        os.environ.update({"CRMSYNC_LOG_LEVEL": "debug", **(env or {})})
        sys.argv = ["crmsync", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.argv = argv
        for name in [k for k in os.environ if k.startswith("CRMSYNC_")]:
            del os.environ[name]
        os.environ.update(saved)
    out_path, err_path = _output_files(args)
    out_path.write_text(out.getvalue())
    err_path.write_text(err.getvalue())
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["crmsync", *args], returncode, out.getvalue(), err.getvalue())


class Spawned:
    """A `crmsync` process running in the background, its output going to files (kept for the
    secrets scan) that the test reads with `stdout()` / `stderr()` / `communicate()`."""

    def __init__(self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.out_path, self.err_path = _output_files(args)
        self._out: IO[str] = open(self.out_path, "w")  # noqa: SIM115  (open for the process's lifetime)
        self._err: IO[str] = open(self.err_path, "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [CRMSYNC, *args], cwd=cwd, env=_environment(env), stdout=self._out, stderr=self._err, text=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def poll(self) -> int | None:
        return self.process.poll()

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.wait(10)

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout)
        self._out.close()
        self._err.close()
        return code

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self.stdout(), self.stderr()

    def result(self, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        out, err = self.communicate(timeout)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)


def spawn(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Spawned:
    return Spawned(*args, cwd=cwd, env=env)


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


def send_half_a_body(base_url: str, path: str, headers: Mapping[str, str], body: bytes) -> None:
    """A POST whose client dies mid-body: the headers promise more than `body`, and the
    connection closes after it (what a crmsync killed while sending a request leaves a vendor)."""
    host, port = base_url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body) + 5000}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=5) as client:
        client.sendall(head.encode() + body)


def requests_ended(app: Any) -> bool:
    """Whether a sandbox has answered every request it logged (none still in flight)."""
    with app.lock:
        return all(entry["status"] is not None for entry in app.stats.log)
