"""Rate limits: the share of each vendor's allowed request rate a backfill uses, and 0 errors.

    python bench/ratelimit.py                # small backfills (well under a minute); every limit binds
    python bench/ratelimit.py --scale full   # 4-8x the people: 8-40 windows each, so the last burst
                                             # weighs little (~2 minutes); the target is >= 90 %, 0 errors

Setup: each throttled emulator serves its own synthetic people (`crmsync demo`'s generator) with its
vendor's published limits, divided by a time scale chosen per vendor (below), from a process of its
own; the config is the one `crmsync sandbox --write-config` writes (rate limits matching the scaled
ones, pacing margin and everything else at crmsync's defaults). Measured: one real `crmsync backfill`
(all systems in parallel, one thread each, then the write-back), and every request as the emulator
logged its arrival.

The share, per system and phase (the read, the verification, then the write-back): the time an ideal client would need
for the same requests under the same limits, divided by the time crmsync took from the phase's first
request to its last. The ideal sends each request the moment every window allows it (given what was
sent before) and the emulator has answered the previous one (the emulator's own time per request, as
logged): only the vendor's limits and response times hold it back, while crmsync's own work between
requests and its pacing margin count against crmsync. 100 % is the limit used completely. Shopify
paces by query cost: its ideal is the cost bucket's, fed the costs the emulator charged. Lightspeed
counts fixed windows; the ideal here uses sliding ones (the same long-run rate). WooCommerce
publishes no limit. A throttled reply is a wasted call and counted as such. The verification is
Lightspeed's rolling look at its customers' metafields (the list carries none): it runs after every
system's read has ended, so it is a phase of its own (within the read, the wait for the other
systems would count against it).

Time scales: a request's rate-limit slot counts from the moment its answer is back, so crmsync needs
no margin against network jitter, but each request's own latency lengthens its slot. A scaled window
should stay long next to that latency, as the vendors' real windows (1 s at the shortest) are: the
vendors whose 1-second window binds run at their real speed (scale 1), the others at scales where
their binding windows last 2 s or more. Silvasoft's 2-per-second window binds only in bursts, its
50-per-minute one in the long run. efficy's hour (1,000 requests) is a real hour at scale 1: the
full backfill stays below it. Lightspeed's 20 a second (added to its limits after its time scale was
chosen) lasts 0.02 s at 50x: too short to measure against (see SHORTEST_WINDOW), so its ideal keeps
to the other three windows.

Also printed (computed, not measured, so it costs no time at any scale): what a first read of 20,000
Lightspeed customers costs in requests, now (the list pages only: 80 full pages of 250, then the empty
page asked for twice) and before issue 13 (the same pages plus one metafield request per customer),
and how long the ideal client above needs for them under Lightspeed's published windows (20 a second,
300 per 5 minutes, 3,000 an hour, 12,000 a day; sliding, response times not counted).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import load_average, machine, peak_rss_mb, result_line
from _sandboxes import SandboxProcess, run_measured, write_fixtures

from connectors.ratelimit import Window
from connectors.registry import sandbox_class

TARGET = 0.90
# Requests of the rolling verification (`Connector.verify_owned`) as the emulators log their paths.
VERIFY = {"lightspeed": re.compile(r"^/[^/]+/customers/\d+/metafields\.json$")}
PHASES = ("read", "verify", "write")
# A window the time scale shrinks below this (Lightspeed's 20 a second at 50x: 20 per 0.02 s) is left
# out of the ideal: a request's own latency (~1-3 ms) is no longer short next to it, so it would
# measure crmsync's time per request rather than its pacing. The emulator still enforces it.
SHORTEST_WINDOW = 0.1
FIRST_READ_CUSTOMERS = 20_000


@dataclass(frozen=True)
class Plan:
    scale: float  # the emulator's --time-scale
    small: int  # people at the default scale
    full: int  # people at --scale full: enough windows that the last burst weighs little


PLANS = {
    "shopify": Plan(40, 800, 3000),
    "lightspeed": Plan(50, 300, 1200),
    "afas": Plan(30, 500, 2000),
    "superoffice": Plan(1, 100, 400),
    "efficy": Plan(1, 2000, 16000),
    "silvasoft": Plan(6, 3000, 12000),
}


# ----- the ideal client --------------------------------------------------------------------------
def ideal_span(
    windows: Sequence[Window], before: Sequence[float], services: Sequence[float], start: float
) -> tuple[float, float]:
    """Seconds from `start` until an ideal client has sent a request for every service time in
    `services`, under every sliding window, given the requests that arrived `before`: it sends each
    the first moment all windows allow and the vendor has answered the previous one."""
    logs = [deque((t for t in before if t > start - w.per_seconds), maxlen=w.requests) for w in windows]
    moment = answered = start
    held = 0.0  # how long the limits made the ideal wait
    for service in services:
        moment = max(moment, answered)
        allowed = moment
        for window, log in zip(windows, logs, strict=True):
            if len(log) == window.requests:
                allowed = max(allowed, log[0] + window.per_seconds)
        held += allowed - moment
        moment = allowed
        for log in logs:
            log.append(moment)
        answered = moment + service
    return moment - start, held


def ideal_cost_span(
    size: float,
    rate: float,
    before: Sequence[tuple[float, float]],
    start: float,
    phase: Sequence[tuple[float, float, float]],
) -> tuple[float, float]:
    """The same for Shopify's cost bucket: `before` holds (arrival, points charged) of the earlier
    requests, `phase` (points requested, points charged, service time) of the phase's. A request waits
    until the bucket holds what it asks for, then pays what it was charged. Returns the span and how
    long the bucket held the ideal back."""
    level, at = size, None
    for arrived, charged in before:
        if at is not None:
            level = min(size, level + (arrived - at) * rate)
        level, at = level - charged, arrived
    if at is not None:
        level = min(size, level + (start - at) * rate)
    moment = answered = start
    held = 0.0
    for requested, charged, service in phase:
        if answered > moment:
            level = min(size, level + (answered - moment) * rate)
            moment = answered
        if level < requested:
            held += (requested - level) / rate
            moment += (requested - level) / rate
            level = requested
        level -= charged
        answered = moment + service
    return moment - start, held


def shares(system_type: str, scale: float, log: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests, throttled replies and the share of the allowed rate per phase (read, write)."""
    admitted = [e for e in log if e.get("status") is not None and not e.get("throttled")]
    throttled = sum(1 for e in log if e.get("throttled"))
    first_write = next((i for i, e in enumerate(admitted) if e.get("write")), len(admitted))
    verify = VERIFY.get(system_type)
    checks = [e for e in admitted[:first_write] if verify is not None and verify.match(e["path"])]
    phases = {
        "read": [e for e in admitted[:first_write] if not (verify is not None and verify.match(e["path"]))],
        "verify": checks,
        "write": admitted[first_write:],
    }
    out: dict[str, Any] = {"throttled": throttled}
    for phase, entries in phases.items():
        out[f"{phase}_requests"] = len(entries)
        if len(entries) < 2:
            out[f"{phase}_share"] = None
            continue
        before = admitted[: admitted.index(entries[0])]
        actual = entries[-1]["t"] - entries[0]["t"]
        services = [max(0.0, e["done"] - e["t"]) for e in entries]
        if system_type == "shopify":
            from connectors.shopify.sandbox import BUCKET_SIZE, RESTORE_RATE

            charged = [(e["t"], float(e.get("cost", 0))) for e in before]
            asked = [
                (float(e.get("requested_cost", 0)), float(e.get("cost", 0)), service)
                for e, service in zip(entries, services, strict=True)
            ]
            ideal, held = ideal_cost_span(BUCKET_SIZE, RESTORE_RATE * scale, charged, entries[0]["t"], asked)
        else:
            windows = [
                Window(w.requests, w.per_seconds / scale)
                for w in sandbox_class(system_type).rate_limits
                if w.per_seconds / scale >= SHORTEST_WINDOW
            ]
            ideal, held = ideal_span(windows, [e["t"] for e in before], services, entries[0]["t"])
        # A phase the limits never held back (it fit in the first burst) has no share to speak of.
        out[f"{phase}_share"] = ideal / actual if held > 0 and actual > 0 else None
        out[f"{phase}_s"] = actual
    return out


def binding(system_type: str, scale: float) -> str:
    if system_type == "shopify":
        from connectors.shopify.sandbox import BUCKET_SIZE, RESTORE_RATE

        return f"{BUCKET_SIZE:.0f} pts, +{RESTORE_RATE * scale:.0f}/s"
    return ", ".join(f"{w.requests}/{_seconds(w.per_seconds / scale)}" for w in sandbox_class(system_type).rate_limits)


def _seconds(value: float) -> str:
    return f"{value:g}s" if value < 60 else f"{value / 60:g}m"


# ----- Lightspeed: a first read, computed ----------------------------------------------------------
def first_read(customers: int) -> dict[str, dict[str, float]]:
    """Requests and the ideal client's seconds for a first read of `customers` Lightspeed customers
    under the published windows: `now` asks for the list pages only, `before` (issue 13) also asked
    for each customer's metafields."""
    from connectors.lightspeed.client import MAX_PAGE, published_limits

    windows = [w.window() for w in published_limits()]
    # Full pages, then the first short (here empty) page, asked for a second time (`connectors.streams.confirmed`).
    pages = customers // MAX_PAGE + 2
    out = {}
    for name, requests in (("now", pages), ("before", pages + customers)):
        span, _ = ideal_span(windows, (), [0.0] * requests, 0.0)
        out[name] = {"requests": requests, "seconds": span}
    return out


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    return " ".join([*parts, f"{hours} h", f"{minutes:02d} min"])


def print_first_read(customers: int) -> dict[str, Any]:
    figures = first_read(customers)
    limits = ", ".join(f"{w.requests}/{_seconds(w.per_seconds)}" for w in sandbox_class("lightspeed").rate_limits)
    print(f"Lightspeed, a first read of {customers:,} customers (computed: the ideal client under {limits})")
    for name, label in (("before", "list pages + one metafield request per customer"), ("now", "list pages only")):
        figure = figures[name]
        print(f"  {name:<7}{figure['requests']:>7,} requests  {_duration(figure['seconds']):>16}   {label}")
    return {
        "lightspeed_first_read_requests": figures["now"]["requests"],
        "lightspeed_first_read_requests_before": figures["before"]["requests"],
        "lightspeed_first_read_s": f"{figures['now']['seconds']:.0f}",
        "lightspeed_first_read_s_before": f"{figures['before']['seconds']:.0f}",
    }


# ----- the orchestration -----------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="small, full, or a factor on the small people counts")
    parser.add_argument("--dump", type=Path, help="also write each emulator's request log here (JSON)")
    args = parser.parse_args()
    if args.scale in ("small", "full"):
        people = {t: plan.small if args.scale == "small" else plan.full for t, plan in PLANS.items()}
    else:
        people = {t: max(10, math.ceil(plan.small * float(args.scale))) for t, plan in PLANS.items()}
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _, writers_mb = write_fixtures(folder / "data", people, tuple(PLANS), shared=False)
        scales = {t: plan.scale for t, plan in PLANS.items()}
        with SandboxProcess(folder / "data", scales=scales) as sandboxes:
            config = folder / "crmsync.toml"
            config.write_text(sandboxes.config)
            command = [sys.executable, "-m", "sync.cli", "backfill", "-c", str(config), "--json"]
            child = run_measured([*command, "--log-level", "warning"], cwd=folder, timeout=1800)
            logs = {t: sandboxes.request_log(t) for t in PLANS}
            if args.dump:
                args.dump.mkdir(parents=True, exist_ok=True)
                for system_type, log in logs.items():
                    (args.dump / f"{system_type}.json").write_text(json.dumps(log))
            sandbox_usage = sandboxes.stop()
    try:
        report = json.loads(child.stdout)
    except ValueError:
        message = f"crmsync backfill printed no JSON (exit {child.returncode}):\n{child.stderr[-3000:]}"
        raise SystemExit(message) from None

    print(f"machine: {machine()}; load average {load_before} before, {load_average()} after")
    print(f"`crmsync backfill` of {sum(people.values()):,} people over {len(PLANS)} throttled emulators, in parallel")
    header = (
        f"{'system':<12}{'scale':>6}  {'limits (scaled)':<42}{'people':>7}{'reads':>7}{'share':>7}"
        f"{'verify':>7}{'share':>7}{'writes':>7}{'share':>7}{'throttled':>10}  {'status':<8}"
    )
    print(header)
    print("-" * len(header))
    figures: dict[str, Any] = {}
    all_shares: list[float] = []
    errors = 0
    throttled_total = 0
    for system_type, plan in PLANS.items():
        measured = shares(system_type, plan.scale, logs[system_type])
        outcome = report["systems"][system_type]
        failed = outcome["status"] != "ok" or outcome["error"] is not None or outcome["rejected"]
        errors += 1 if failed else 0
        throttled_total += measured["throttled"]
        cells = ""
        for phase in PHASES:
            share = measured[f"{phase}_share"]
            cells += f"{measured[f'{phase}_requests']:>7,}"
            cells += f"{share:>7.1%}" if share is not None else f"{'-':>7}"
            if share is not None:
                all_shares.append(share)
                figures[f"{system_type}_{phase}"] = f"{share:.3f}"
        print(
            f"{system_type:<12}{plan.scale:>6g}  {binding(system_type, plan.scale):<42}{people[system_type]:>7,}"
            f"{cells}{measured['throttled']:>10}  {outcome['status']:<8}"
        )
        if failed:
            print(f"    error: {outcome['error']}; rejected {outcome['rejected']}")
    print("-" * len(header))
    peak = writers_mb + sandbox_usage.peak_rss_mb + child.usage.peak_rss_mb + peak_rss_mb()
    print(
        f"backfill {child.usage.wall_s:.1f} s wall, exit {child.returncode}; peak RSS MB: crmsync "
        f"{child.usage.peak_rss_mb:.0f}, emulators {sandbox_usage.peak_rss_mb:.0f}, fixture writers "
        f"{writers_mb:.0f}, this script {peak_rss_mb():.0f}"
    )
    lowest = min(all_shares) if all_shares else 0.0
    first = print_first_read(FIRST_READ_CUSTOMERS)
    print(
        result_line(
            scale=args.scale,
            min_share=f"{lowest:.3f}",
            **figures,
            **first,
            throttled=throttled_total,
            errors=errors,
            exit_code=child.returncode,
            backfill_s=f"{child.usage.wall_s:.1f}",
            peak_rss_mb=f"{peak:.0f}",
            target_ok=lowest >= TARGET and errors == 0 and child.returncode == 0,
        )
    )


if __name__ == "__main__":
    main()
