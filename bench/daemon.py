"""The daemon: resident memory of `crmsync run` between cycles, and how fast `crmsync --help` starts.

    python bench/daemon.py                  # 600 synthetic people over the seven emulators (~30 s)
    python bench/daemon.py --scale full     # 20,000 people (~60,000 records): the targets,
                                            # <= 120 MB idle RSS, `crmsync --help` <= 0.5 s

Start-up: `crmsync --help` run ten times after one warm-up, wall time of each (a new Python process
every time, as a user or a shell completion would start it).

Idle RSS: `crmsync run` (the real daemon, APScheduler, JSON logs) against `crmsync demo`'s synthetic
people in all seven emulators (unthrottled, in a process of their own), every 15 s. When a cycle has
finished (the first reads everything, the second is incremental) its resident set is sampled from
/proc for two seconds, from one second after the cycle's last log line; then SIGTERM. Peak RSS is
summed over every process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from _common import load_average, machine, peak_rss_mb, result_line
from _sandboxes import SandboxProcess, Usage, child_env, write_fixtures

from connectors.registry import TYPES

SCALES = {"small": 600, "full": 20_000}
TARGET_IDLE_MB = 120.0
TARGET_HELP_S = 0.5
INTERVAL = "15s"


def help_times(runs: int = 10) -> list[float]:
    command = [sys.executable, "-m", "sync.cli", "--help"]
    env = child_env()
    subprocess.run(command, env=env, capture_output=True, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return times


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample_idle(pid: int, seconds: float = 2.0) -> float:
    """The resident set while the daemon waits for its next cycle: the largest sample over two
    seconds, from one second after the cycle said it finished (it tidies up after saying so)."""
    time.sleep(1.0)
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(rss_mb(pid))
        time.sleep(0.2)
    return max(samples)


class Daemon:
    """`crmsync run` as a child; its log lines are read as they come."""

    def __init__(self, folder: Path, config: Path) -> None:
        command = [sys.executable, "-m", "sync.cli", "run", "-c", str(config), "--log-json"]
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=folder, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.finished: list[dict[str, Any]] = []
        self.cycle_done = threading.Event()
        assert self.process.stderr is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "cycle finished":
                self.finished.append(event)
                self.cycle_done.set()

    def wait_cycle(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.finished) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon ended or stalled before cycle {count} (exit {self.process.returncode})")
            self.cycle_done.wait(0.2)
            self.cycle_done.clear()

    def stop(self) -> tuple[int, Usage]:
        self.process.send_signal(signal.SIGTERM)
        _, status, rusage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        usage = Usage(rusage.ru_utime + rusage.ru_stime, rusage.ru_maxrss / 1024, time.perf_counter() - self.started)
        return self.process.returncode, usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="small (600 people), full (20,000) or a number")
    args = parser.parse_args()
    people = SCALES.get(args.scale) or int(args.scale)
    load_before = load_average()
    times = help_times()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        counts, writers_mb = write_fixtures(folder / "data", people, TYPES, shared=True)
        with SandboxProcess(folder / "data", unthrottled=True) as sandboxes:
            config = folder / "crmsync.toml"
            config.write_text(sandboxes.config.replace('interval = "15m"', f'interval = "{INTERVAL}"'))
            daemon = Daemon(folder, config)
            try:
                daemon.wait_cycle(1, timeout=3600)
                idle_first = sample_idle(daemon.process.pid)
                daemon.wait_cycle(2, timeout=3600)
                idle_second = sample_idle(daemon.process.pid)
            finally:
                code, usage = daemon.stop()
            sandbox_usage = sandboxes.stop()
    idle = max(idle_first, idle_second)
    records = sum(customers + orders for customers, orders in counts.values())
    peak = writers_mb + sandbox_usage.peak_rss_mb + usage.peak_rss_mb + peak_rss_mb()

    print(f"machine: {machine()}; load average {load_before} before, {load_average()} after")
    print(f"{people:,} people, {records:,} records (customers and orders) over {len(counts)} emulators")
    cycles = daemon.finished[:2]
    print(f"{'measure':<44}{'value':>12}{'target':>10}")
    print("-" * 66)
    for label, value, target in (
        ("crmsync --help, median of 10 (s)", f"{statistics.median(times):.3f}", f"<= {TARGET_HELP_S}"),
        ("crmsync --help, slowest of 10 (s)", f"{max(times):.3f}", ""),
        ("daemon RSS idle after cycle 1, full read (MB)", f"{idle_first:.0f}", f"<= {TARGET_IDLE_MB:.0f}"),
        ("daemon RSS idle after cycle 2, incremental (MB)", f"{idle_second:.0f}", f"<= {TARGET_IDLE_MB:.0f}"),
        ("daemon peak RSS during cycles (MB)", f"{usage.peak_rss_mb:.0f}", ""),
        ("cycle peak RSS the daemon logged (MB)", f"{max(e.get('peak_rss_mb', 0) for e in daemon.finished):.0f}", ""),
        ("profiles after cycle 1 / cycle 2", " / ".join(f"{e.get('profiles', 0):,}" for e in cycles), ""),
        ("records written in cycle 1 / cycle 2", " / ".join(f"{e.get('written', 0):,}" for e in cycles), ""),
        ("daemon exit code after SIGTERM", str(code), "0"),
    ):
        print(f"{label:<44}{value:>12}{target:>10}")
    print(
        result_line(
            scale=args.scale,
            people=people,
            help_s=f"{statistics.median(times):.3f}",
            help_max_s=f"{max(times):.3f}",
            idle_rss_mb=f"{idle:.0f}",
            idle_first_mb=f"{idle_first:.0f}",
            idle_second_mb=f"{idle_second:.0f}",
            daemon_peak_mb=f"{usage.peak_rss_mb:.0f}",
            exit_code=code,
            peak_rss_mb=f"{peak:.0f}",
            target_ok=idle <= TARGET_IDLE_MB and statistics.median(times) <= TARGET_HELP_S and code == 0,
        )
    )


if __name__ == "__main__":
    main()
