"""Write-back: calls per changed membership, and none on an unchanged rerun.

    python bench/writes.py                  # 600 synthetic people over the seven emulators (~20 s)
    python bench/writes.py --scale full     # 10,000 people: the targets (unchanged rerun: 0 calls;
                                            # changed: <= ceil(changes / the largest batch the API allows))

Setup: `crmsync demo`'s synthetic people (fixed seed, people in several systems under the same email)
in all seven emulators, unthrottled, in a process of their own. Measured, each step a real `crmsync`
command with `$CRMSYNC_NOW` fixed:
1. `plan`, then `sync`: the first sync writes every record's segments;
2. `sync` again with nothing changed: it must make no write call at all;
3. 120 days later (`$CRMSYNC_NOW` moved), `plan`, then `sync`: lifecycle stages and tiers move.
Changes are the records `plan` lists; a call is a request that changes state (`write_calls` in the
sync's JSON, checked against the emulator's own count of write requests). The bound is one call per
batch of the largest size the API allows (`max_write_batch`: Shopify 25 customers per document,
WooCommerce 100 per `customers/batch`, efficy 100 contexts per request, AFAS and SuperOffice one
record per call), and for Lightspeed, where every metafield is its own object and request, one call
per field value that changes. Silvasoft is read-only. Peak RSS is summed over every process.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import load_average, machine, peak_rss_mb, result_line
from _sandboxes import Finished, SandboxProcess, run_measured, write_fixtures

from connectors.registry import TYPES, connector_class

SCALES = {"small": 600, "full": 10_000}
LATER = timedelta(days=120)
# Every metafield value is a request of its own (no batch endpoint): the bound counts values.
PER_FIELD = {"lightspeed"}


def crmsync(folder: Path, config: Path, now: datetime, *command: str) -> tuple[dict[str, Any], Finished]:
    args = [sys.executable, "-m", "sync.cli", *command, "-c", str(config), "--json", "--log-level", "warning"]
    done = run_measured(args, cwd=folder, env={"CRMSYNC_NOW": now.isoformat()})
    try:
        return json.loads(done.stdout), done
    except ValueError:
        message = f"crmsync {command[0]} printed no JSON (exit {done.returncode}):\n{done.stderr[-3000:]}"
        raise SystemExit(message) from None


def changes_by_system(plan: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per system: records with a change, and field values plus tag operations they set."""
    out: dict[str, tuple[int, int]] = {}
    for change in plan.get("changes", []):
        records, values = out.get(change["system"], (0, 0))
        out[change["system"]] = (records + 1, values + len(change["set_fields"]))
    return out


def bound(system_type: str, records: int, values: int) -> int:
    if system_type in PER_FIELD:
        return values
    return math.ceil(records / connector_class(system_type).max_write_batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="small (600 people), full (10,000) or a number")
    args = parser.parse_args()
    people = SCALES.get(args.scale) or int(args.scale)
    load_before = load_average()
    now = datetime.now(UTC).replace(microsecond=0)
    steps: dict[str, dict[str, Any]] = {}
    runs: list[Finished] = []
    sandbox_writes: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        counts, writers_mb = write_fixtures(folder / "data", people, TYPES, shared=True)
        with SandboxProcess(folder / "data", unthrottled=True) as sandboxes:
            config = folder / "crmsync.toml"
            config.write_text(sandboxes.config)
            for step, at, command in (
                ("plan 1", now, "plan"),
                ("sync 1", now, "sync"),
                ("rerun", now, "sync"),
                ("plan 2", now + LATER, "plan"),
                ("sync 2", now + LATER, "sync"),
            ):
                before = {t: sandboxes.stats(t)["writes"] for t in sandboxes.urls}
                steps[step], done = crmsync(folder, config, at, command)
                runs.append(done)
                sandbox_writes[step] = {t: sandboxes.stats(t)["writes"] - before[t] for t in sandboxes.urls}
            sandbox_usage = sandboxes.stop()

    print(f"machine: {machine()}; load average {load_before} before, {load_average()} after")
    records = sum(customers for customers, _ in counts.values())
    print(f"{people:,} people, {records:,} customer records over {len(counts)} emulators (unthrottled)")
    header = (
        f"{'system':<12}{'batch':>6}{'changes':>9}{'calls':>7}{'bound':>7}{'per change':>11}"
        f"{'rerun calls':>12}{'changes':>9}{'calls':>7}{'bound':>7}{'per change':>11}"
    )
    print(f"{'':<18}{'first sync':-^34}{'':<12}{'120 days later':-^34}")
    print(header)
    print("-" * len(header))
    first, later = changes_by_system(steps["plan 1"]), changes_by_system(steps["plan 2"])
    figures: dict[str, Any] = {}
    ok = True
    rerun_total = 0
    mismatched = []
    for name, outcome in steps["sync 1"]["systems"].items():
        system_type = outcome["type"]
        capabilities = connector_class(system_type).capabilities
        if not (capabilities.write_tags or capabilities.write_fields):
            print(f"{name:<12}{'read-only: crmsync writes nothing here':>40}")
            continue
        cells = []
        for step, plan in (("sync 1", first), ("sync 2", later)):
            changed, values = plan.get(name, (0, 0))
            calls = steps[step]["systems"][name]["write_calls"]
            limit = bound(system_type, changed, values)
            ok = ok and calls <= limit and steps[step]["systems"][name]["status"] == "ok"
            if sandbox_writes[step][system_type] != calls:
                mismatched.append(f"{name} {step}: emulator saw {sandbox_writes[step][system_type]} writes")
            per = f"{calls / changed:.3f}" if changed else "-"
            cells.append(f"{changed:>9,}{calls:>7,}{limit:>7,}{per:>11}")
            figures[f"{name}_calls_{'first' if step == 'sync 1' else 'later'}"] = calls
        rerun = steps["rerun"]["systems"][name]["write_calls"]
        rerun_total += rerun + sandbox_writes["rerun"][system_type]
        batch = "field" if system_type in PER_FIELD else str(connector_class(system_type).max_write_batch)
        print(f"{name:<12}{batch:>6}{cells[0]}{rerun:>12}{cells[1]}")
    print("-" * len(header))
    for line in mismatched:
        print(f"mismatch: {line}")
    exits = [done.returncode for done in runs]
    peak = writers_mb + sandbox_usage.peak_rss_mb + sum(done.usage.peak_rss_mb for done in runs) + peak_rss_mb()
    print(
        f"exit codes {exits}; peak RSS MB: crmsync runs {max(d.usage.peak_rss_mb for d in runs):.0f} at most "
        f"({len(runs)} runs), emulators {sandbox_usage.peak_rss_mb:.0f}, fixture writers {writers_mb:.0f}"
    )
    print(
        result_line(
            scale=args.scale,
            people=people,
            rerun_calls=rerun_total,
            **figures,
            within_bound=ok and not mismatched,
            exit_codes=",".join(str(code) for code in exits),
            peak_rss_mb=f"{peak:.0f}",
            target_ok=ok and not mismatched and rerun_total == 0 and not any(exits),
        )
    )


if __name__ == "__main__":
    main()
