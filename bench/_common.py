"""Shared bits of the benchmark scripts: the machine they ran on, peak memory, the result line."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

# The scripts run from a checkout: make the project importable without installing it first.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def machine(loop_s: float | None = None) -> str:
    """The machine line; `loop_s`: a reference loop time already measured."""
    cores = os.cpu_count() or 0
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f"{pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        memory = "?"
    return (
        f"{cores} cores, {memory}, Python {platform.python_version()}, {platform.machine()}, "
        f"reference loop {loop_s if loop_s is not None else reference_loop_s():.2f} s"
    )


def reference_loop_s() -> float:
    """Seconds for ten million additions in a Python loop, best of three: the same machine's CPU can
    be twice as fast one day as the next (a shared host), and every figure here scales with it."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(10_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    return best


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def result_line(**figures: object) -> str:
    """The last line of every bench script: key=value pairs a script can parse."""
    return " ".join(f"{key}={value}" for key, value in figures.items())


def load_average() -> str:
    """The 1-minute load average (the machine is shared: a figure taken under load says so)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"
