"""The benchmarks' vendor sandboxes and child processes, kept apart from crmsync's own process.

A benchmark that talks HTTP runs the emulators in a process of their own, so their CPU time and
memory are not counted as crmsync's, and measures every process it starts with `os.wait4` (CPU
seconds and peak RSS of that one child). Run as a script, this module is that sandbox process:

    python bench/_sandboxes.py --data DIR [--scales '{"afas": 30}'] [--unthrottled] [--state URL]

prints one JSON line `{"config": <crmsync TOML>, "urls": {type: url}}` once every emulator
listens, and serves until its stdin is closed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from _common import ROOT

# The settings that make a client unthrottled too: no request windows (Lightspeed and Silvasoft
# default to their vendors' published ones when the config says nothing).
NO_LIMITS: dict[str, Any] = {"rate_limit": []}
# Shopify paces by query cost, not request count: an unthrottled emulator gets a bottomless bucket.
UNTHROTTLED_OPTIONS: dict[str, dict[str, Any]] = {"shopify": {"bucket_size": 1e12, "restore_rate": 1e12}}


# ----- fixtures ------------------------------------------------------------------------------------
def _write_one(folder: str, system_type: str, people: int, types: tuple[str, ...]) -> tuple[str, int, int, float]:
    """One vendor's fixtures as files; returns the type, its counts and this worker's peak RSS (MB)."""
    import resource

    from sync.demo import demo_data

    data = demo_data(people, types=types)[system_type]
    sub = Path(folder) / system_type
    sub.mkdir(parents=True, exist_ok=True)
    for name in ("customers", "orders"):
        (sub / f"{name}.json").write_text(json.dumps(data.get(name, []), ensure_ascii=False))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return system_type, len(data.get("customers", [])), len(data.get("orders", [])), rss


def write_fixtures(
    folder: Path, people: int | Mapping[str, int], types: Sequence[str], *, shared: bool
) -> tuple[dict[str, tuple[int, int]], float]:
    """The project's synthetic people (`crmsync demo`'s, fixed seed) as fixture files per type, made
    in two worker processes. `shared`: the demo's spread, people in several systems under the same
    email; otherwise every system gets `people` (or `people[type]`) of its own. Returns (customers,
    orders) per type and the workers' peak RSS summed (MB)."""
    counts: dict[str, tuple[int, int]] = {}
    peaks: list[float] = []
    sizes = {t: people if isinstance(people, int) else people[t] for t in types}
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_write_one, str(folder), t, sizes[t], tuple(types) if shared else (t,)) for t in types]
        for future in futures:
            system_type, customers, orders, rss = future.result()
            counts[system_type] = (customers, orders)
            peaks.append(rss)
    # A worker that wrote several vendors is one process: count each worker once (its largest peak).
    return counts, sum(sorted(peaks)[-2:])


# ----- child processes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    """What one child process used: CPU seconds (user + system), peak RSS, wall seconds."""

    cpu_s: float
    peak_rss_mb: float
    wall_s: float


def _reap(process: subprocess.Popen[Any], started: float) -> tuple[int, Usage]:
    _, status, rusage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    usage = Usage(rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1024, time.perf_counter() - started)
    return process.returncode, usage


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured child: the project importable, no CRMSYNC_* from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str
    usage: Usage


def run_measured(
    command: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 3600
) -> Finished:
    """Run a command to the end; its output, exit code, CPU time and peak RSS."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), cwd=cwd, env=child_env(env), stdout=out, stderr=err, text=True)
        timer = _Deadline(process, started + timeout)  # os.wait4 blocks without a timeout
        try:
            code, usage = _reap(process, started)
        finally:
            timer.cancel()
        out.seek(0)
        err.seek(0)
        return Finished(code, out.read(), err.read(), usage)


class _Deadline:
    """Kills a child that outlives its deadline (os.wait4 itself cannot time out)."""

    def __init__(self, process: subprocess.Popen[Any], deadline: float) -> None:
        import threading

        self._timer = threading.Timer(max(0.0, deadline - time.perf_counter()), process.kill)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()


class SandboxProcess:
    """The emulators in a child process; `config` is a working crmsync config for them."""

    def __init__(
        self,
        data: Path,
        *,
        scales: Mapping[str, float] | None = None,
        unthrottled: bool = False,
        state_url: str = "sqlite:///crmsync.db",
    ) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--data", str(data), "--state", state_url]
        if scales:
            command += ["--scales", json.dumps(dict(scales))]
        if unthrottled:
            command.append("--unthrottled")
        self._stderr: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115 (open while the child runs)
        self._started = time.perf_counter()
        self.process = subprocess.Popen(
            command, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self._stderr.seek(0)
            raise RuntimeError(f"the sandboxes did not start:\n{self._stderr.read()[-3000:]}")
        ready = json.loads(line)
        self.config: str = ready["config"]
        self.urls: dict[str, str] = ready["urls"]
        self.usage: Usage | None = None

    def stats(self, system_type: str) -> dict[str, Any]:
        return _get(f"{self.urls[system_type]}/_sandbox/stats")  # type: ignore[no-any-return]

    def request_log(self, system_type: str) -> list[dict[str, Any]]:
        return _get(f"{self.urls[system_type]}/_sandbox/requests")  # type: ignore[no-any-return]

    def reset_stats(self) -> None:
        import requests

        for url in self.urls.values():
            requests.delete(f"{url}/_sandbox/stats", timeout=30).raise_for_status()

    def stop(self) -> Usage:
        if self.usage is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            _, self.usage = _reap(self.process, self._started)
            self._stderr.close()
        return self.usage

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _get(url: str) -> Any:
    import requests

    session = requests.Session()
    session.trust_env = False
    response = session.get(url, timeout=60)
    response.raise_for_status()
    return response.json()


# ----- the sandbox process itself --------------------------------------------------------------------
def serve(data_dir: Path, scales: Mapping[str, float], unthrottled: bool, state_url: str) -> None:
    from sync.sandboxes import load_fixture_dir, sandbox_config, start_sandboxes, stop_sandboxes

    data = load_fixture_dir(data_dir)
    running = []
    try:
        for system_type in data:
            # Each type on its own time scale; unthrottled: no request windows, no cost bucket.
            options = {system_type: UNTHROTTLED_OPTIONS.get(system_type, {"rate_limits": []})} if unthrottled else None
            running += start_sandboxes(
                {system_type: data[system_type]}, time_scale=scales.get(system_type, 1.0), options=options
            )
        overrides = {s.type: NO_LIMITS for s in running} if unthrottled else None
        config = sandbox_config(running, state_url=state_url, overrides=overrides)
        print(json.dumps({"config": config, "urls": {s.type: s.url for s in running}}), flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin
    finally:
        stop_sandboxes(running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--scales", default="{}", help="time scale per type, as JSON")
    parser.add_argument("--unthrottled", action="store_true")
    parser.add_argument("--state", default="sqlite:///crmsync.db")
    args = parser.parse_args()
    serve(args.data, json.loads(args.scales), args.unthrottled, args.state)


if __name__ == "__main__":
    main()
