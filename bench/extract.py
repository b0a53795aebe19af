"""Extract: crmsync's own CPU time per record read from each unthrottled sandbox.

    python bench/extract.py                 # 1,500 people per system (~35,000 records), well under a minute
    python bench/extract.py --scale full    # 20,000 people per system (~470,000 records): the target,
                                            # <= 50 us of crmsync CPU per record for every system, on a
                                            # host whose reference loop takes 0.33 s (scaled by it here)
    python bench/extract.py --profile FILE  # also write a cProfile of the measured extract to FILE
    python bench/extract.py --instructions  # machine instructions per record instead (valgrind):
                                            # the same work, counted, not timed (see below)
    python bench/extract.py --instructions --only shopify   # ... of one system

Setup (not measured): the project's synthetic people (`crmsync demo`'s generator, fixed seed), each
system getting its own, as fixture files in every vendor's own shape; all seven emulators serve them
from a process of their own with no rate limits (an unthrottled Shopify gets a bottomless cost
bucket), so their CPU time is not crmsync's.

Measured: a crmsync process that backfills one system after the other exactly as a cycle's extract
does (the connector's reader -> pages -> `StateStore.store_page` with the connector's mapper, into
a fresh SQLite state, every checkpoint stored), and its CPU time (`time.process_time`: all of its
threads, the emulators' excluded) per system and per record read. The split: map = the field map and
normalisers (inside store_page), hash + store = the rest of store_page (canonical JSON, hashes,
SQLite), HTTP + parse = everything else (requests, JSON decoding, the connector's paging); store is
the CPU time of the extracting thread (`time.thread_time`, once per page), map its wall time per
record (`time.perf_counter`: a thread CPU clock costs a system call, which per record would inflate
the figure it measures).
Peak RSS is summed over every process: fixture writers, the emulators, crmsync and this script.

`--instructions`: on a shared host the CPU per record of one commit moves by 15 % from run to
run, more than most single changes to the extract gain, and the reference loop does not follow it
(the loop is arithmetic; the extract is memory and allocation). So a change is compared by the
instructions the crmsync process executes, counted by valgrind's callgrind, which are the same
from run to run to within ~0.5 %: per system, one process that backfills that system, less one
that does everything but (imports, config, connectors), divided by the records read. The
emulators run natively in their own process and are not counted. About a minute per system.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import load_average, machine, peak_rss_mb, reference_loop_s, result_line
from _sandboxes import SandboxProcess, run_measured, write_fixtures

from connectors.registry import TYPES

SCALES = {"small": 1_500, "full": 20_000}
TARGET_US = 50.0
# Issue 17 states the target for a host whose reference loop (bench/_common.py) takes 0.33 s; on
# another host every figure is scaled by the ratio of the two loops before it is compared.
REFERENCE_LOOP_S = 0.33


# ----- the measured crmsync process ----------------------------------------------------------------
def measure(config_path: Path, profile: Path | None, only: str | None = None) -> dict[str, Any]:
    """Backfill every configured system in turn (`only`: that one, "-": none); CPU, wall and the
    split per system."""
    from mapping.fieldmaps import FieldAbsence
    from mapping.model import Kind
    from sync.clock import now
    from sync.collector import tune_collector
    from sync.config import load_config
    from sync.log import setup_logging
    from sync.pipeline import STREAMS, Cycle, SystemOutcome, build_connectors, make_mapper
    from sync.state import StateStore

    setup_logging("info")  # as `crmsync` runs: debug lines are dropped where they are made
    tune_collector()  # as every cycle does (`Cycle.run`)
    warm_up()
    loaded = load_config(config_path)
    store = StateStore(loaded.state_url())
    cycle = Cycle(loaded, store, clock=now)
    connectors = build_connectors(loaded, threading.Event())
    run = store.begin_run("bench-extract", now())
    spent = {"map": 0.0, "store": 0.0}
    store_page = store.store_page

    def timed_store(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return store_page(*args, **kwargs)
        finally:
            spent["store"] += time.thread_time() - started

    store.store_page = timed_store  # type: ignore[method-assign]

    def timed_mapper(kind: Kind, connector: Any) -> Any:
        mapper = make_mapper(connector, kind, connectors, cycle.rules, FieldAbsence())

        def mapped(record: Any) -> Any:
            # The wall clock, not the thread's CPU clock: reading that is a system call (~0.6 us,
            # twice per record), which would add itself to the figure it splits. Mapping does not
            # wait, so its wall time is its CPU time unless the emulators' process takes the core
            # in between: the split is an estimate; the CPU per record (process_time) is exact.
            started = time.perf_counter()
            try:
                return mapper(record)
            finally:
                spent["map"] += time.perf_counter() - started

        return mapped

    profiler = cProfile.Profile(time.process_time) if profile else None
    systems: dict[str, Any] = {}
    for name, connector in connectors.items():
        if only is not None and name != only:
            continue
        outcome = SystemOutcome(connector.type)
        spent.update(map=0.0, store=0.0)
        requests_before = connector.client.stats.requests
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        for stream, kind in STREAMS:
            cycle._extract_stream(connector, outcome, run, stream, kind, timed_mapper(kind, connector), True)
        if profiler:
            profiler.disable()
        cpu = time.process_time() - cpu_started
        systems[name] = {
            "type": connector.type,
            "contacts": outcome.read_contacts,
            "orders": outcome.read_orders,
            "quarantined": store.quarantine_counts().get(name, 0),
            "requests": connector.client.stats.requests - requests_before,
            "cpu_s": cpu,
            "wall_s": time.perf_counter() - wall_started,
            "map_s": spent["map"],
            "store_s": spent["store"] - spent["map"],
        }
        connector.close()
    if profiler and profile:
        profiler.dump_stats(str(profile))
    store.close()
    return systems


def warm_up() -> None:
    """Load what libraries load on first use (phone metadata, the country database, the email
    validator), once per process, so the first system measured does not carry it alone."""
    from mapping.normalize.address import normalise_country
    from mapping.normalize.email import normalise_email
    from mapping.normalize.phone import parse_phone

    parse_phone("020 123 4567", "NL")
    parse_phone("+32 2 123 45 67", "BE")
    normalise_country("Spain")
    normalise_email("Jan Jansen <Jan@Voorbeeld.Nl>")


# ----- the orchestration -----------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="small (1,500 people per system), full (20,000) or a number")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the measured extract here")
    parser.add_argument("--instructions", action="store_true", help="count instructions per record (valgrind)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the crmsync child: its config
    # The child: one system ("-": none); with --instructions, count that system alone (a change to one
    # connector is measured in a minute, not in eight).
    parser.add_argument("--only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.profile, args.only)))
        return
    people = SCALES.get(args.scale) or int(args.scale)
    if args.instructions:
        count_instructions(people, args.scale, args.only)
        return
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        counts, writers_mb = write_fixtures(folder / "data", people, TYPES, shared=False)
        with SandboxProcess(folder / "data", unthrottled=True, state_url="sqlite:///extract.db") as sandboxes:
            config = folder / "crmsync.toml"
            config.write_text(sandboxes.config)
            command = [sys.executable, __file__, "--measure", str(config)]
            if args.profile:
                command += ["--profile", str(args.profile.resolve())]
            child = run_measured(command, cwd=folder)
            if child.returncode != 0:
                raise SystemExit(f"the measured crmsync process failed:\n{child.stderr[-3000:]}")
            sandbox_usage = sandboxes.stop()
    systems: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    total_records = sum(s["contacts"] + s["orders"] for s in systems.values())
    total_cpu = sum(s["cpu_s"] for s in systems.values())
    overall_us = total_cpu / max(1, total_records) * 1e6
    peak = writers_mb + sandbox_usage.peak_rss_mb + child.usage.peak_rss_mb + peak_rss_mb()

    loop_s = reference_loop_s()
    scale_to_reference = REFERENCE_LOOP_S / loop_s
    print(f"machine: {machine(loop_s)}; load average {load_before} before, {load_average()} after")
    print(f"{people:,} people per system, fixtures in each vendor's shape; emulators unthrottled, in their own process")
    header = (
        f"{'system':<12}{'contacts':>9}{'orders':>9}{'requests':>9}{'CPU s':>8}{'us/rec':>8}"
        f"{'rec/CPU-s':>11}{'HTTP+parse':>11}{'map':>6}{'hash+store':>11}{'wall s':>8}"
    )
    print(header)
    print("-" * len(header))
    figures: dict[str, Any] = {}
    scaled: dict[str, float] = {}
    for name, s in systems.items():
        records = s["contacts"] + s["orders"]
        us = s["cpu_s"] / max(1, records) * 1e6
        other = max(0.0, s["cpu_s"] - s["map_s"] - s["store_s"])
        split = [100 * part / s["cpu_s"] if s["cpu_s"] else 0.0 for part in (other, s["map_s"], s["store_s"])]
        print(
            f"{name:<12}{s['contacts']:>9,}{s['orders']:>9,}{s['requests']:>9,}{s['cpu_s']:>8.2f}{us:>8.1f}"
            f"{records / s['cpu_s'] if s['cpu_s'] else 0:>11,.0f}{split[0]:>10.0f}%{split[1]:>5.0f}%{split[2]:>10.0f}%"
            f"{s['wall_s']:>8.1f}"
        )
        figures[f"{name}_us"] = f"{us:.1f}"
        scaled[name] = us * scale_to_reference
    print("-" * len(header))
    print(
        f"{'all':<12}{sum(s['contacts'] for s in systems.values()):>9,}{sum(s['orders'] for s in systems.values()):>9,}"
        f"{sum(s['requests'] for s in systems.values()):>9,}{total_cpu:>8.2f}{overall_us:>8.1f}"
        f"{total_records / total_cpu if total_cpu else 0:>11,.0f}"
    )
    quarantined = sum(s["quarantined"] for s in systems.values())
    print(
        f"quarantined {quarantined}; peak RSS MB: crmsync {child.usage.peak_rss_mb:.0f}, emulators "
        f"{sandbox_usage.peak_rss_mb:.0f}, fixture writers {writers_mb:.0f}, this script {peak_rss_mb():.0f}; "
        f"emulators' CPU {sandbox_usage.cpu_s:.1f} s (not counted)"
    )
    print(
        f"at a {REFERENCE_LOOP_S} s reference loop (this host's {loop_s:.2f} s, figures x {scale_to_reference:.2f}): "
        + ", ".join(f"{name} {us:.1f}" for name, us in scaled.items())
        + f"; all {overall_us * scale_to_reference:.1f} us per record (target <= {TARGET_US:.0f})"
    )
    worst = max(scaled, key=lambda n: scaled[n])
    print(
        result_line(
            scale=args.scale,
            records=total_records,
            us_per_record=f"{overall_us:.1f}",
            records_per_cpu_s=f"{total_records / total_cpu:.0f}" if total_cpu else 0,
            worst=worst,
            worst_us=figures[f"{worst}_us"],
            **figures,
            crmsync_rss_mb=f"{child.usage.peak_rss_mb:.0f}",
            peak_rss_mb=f"{peak:.0f}",
            reference_loop_s=f"{loop_s:.2f}",
            scaled_us_per_record=f"{overall_us * scale_to_reference:.1f}",
            scaled_worst_us=f"{scaled[worst]:.1f}",
            target_ok=all(us <= TARGET_US for us in scaled.values()),
        )
    )
    _ = counts


def count_instructions(people: int, scale: str, only: str | None = None) -> None:
    """Instructions per record read, per system (see the module's docstring); `only`: that system."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_fixtures(folder / "data", people, TYPES, shared=False)
        with SandboxProcess(folder / "data", unthrottled=True, state_url="sqlite:///extract.db") as sandboxes:
            config = folder / "crmsync.toml"
            config.write_text(sandboxes.config)

            def counted(only: str) -> tuple[int, dict[str, Any]]:
                (folder / "extract.db").unlink(missing_ok=True)
                command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
                command += [sys.executable, __file__, "--measure", str(config), "--only", only]
                child = run_measured(command, cwd=folder)
                found = re.search(r"==(\d+)== Collected : (\d+)", child.stderr)
                if child.returncode != 0 or found is None:
                    raise SystemExit(f"the counted crmsync process failed:\n{child.stderr[-3000:]}")
                return int(found.group(2)), json.loads(child.stdout.strip().splitlines()[-1])

            setup, _ = counted("-")
            print(f"{people:,} people per system; instructions of the crmsync process, less {setup:,} for its setup")
            print(f"{'system':<12}{'records':>9}{'instructions':>16}{'per record':>12}")
            figures: dict[str, int] = {}
            total_records = total = 0
            for name in ("shopify", "woocommerce", "lightspeed", "afas", "superoffice", "efficy", "silvasoft"):
                if only is not None and name != only:
                    continue
                counted_all, systems = counted(name)
                records = systems[name]["contacts"] + systems[name]["orders"]
                spent = counted_all - setup
                figures[f"{name}_ir"] = spent // max(1, records)
                total, total_records = total + spent, total_records + records
                print(f"{name:<12}{records:>9,}{spent:>16,}{figures[f'{name}_ir']:>12,}")
    overall = total // max(1, total_records)
    print(f"{'all':<12}{total_records:>9,}{total:>16,}{overall:>12,}")
    print(result_line(scale=scale, records=total_records, instructions_per_record=overall, **figures))


if __name__ == "__main__":
    main()
