"""`crmsync demo`: the first five minutes of crmsync, against local sandboxes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from rich.table import Table

from sync.clock import now
from sync.config import LoadedConfig, load_config
from sync.demo import demo_data
from sync.lock import LockHeld, current_holder
from sync.pipeline import Cycle
from sync.render import console as render_console
from sync.render import print_report
from sync.report import build_report
from sync.report_guide import DUTCH_LABELS, add_guide
from sync.report_html import render_html
from sync.runtime import lock_path, open_state
from sync.sandboxes import sandbox_config, start_sandboxes, stop_sandboxes
from sync.state import StateStore

REPLAY_DAYS = (90, 60, 30)
# Shopify's cost bucket refills 20x faster in the demo, so a few hundred customers take seconds.
DEMO_TIME_SCALE = 20.0
# The demo shows the report's Dutch names of the segments it makes (the background notes' terms);
# the tags it writes keep the fixed English names.
DEMO_LABELED = (
    "friends",
    "supporters",
    "acquaintances",
    "passers-by",
    "lifecycle-prospect",
    "lifecycle-new",
    "lifecycle-active",
    "lifecycle-at-risk",
    "lifecycle-lapsed",
)
DEMO_LABELS = "[segments.labels]\n" + "".join(f'"{name}" = "{DUTCH_LABELS[name]}"\n' for name in DEMO_LABELED)


def run_demo(folder: Path, contacts: int, *, as_json: bool) -> int:
    console = render_console()
    say = (lambda *a, **k: None) if as_json else console.print
    folder.mkdir(parents=True, exist_ok=True)
    lock = lock_path(folder / "crmsync.db")
    holder = current_holder(lock)
    if holder is not None:  # another demo runs in this folder: its state is not ours to clear
        raise LockHeld(lock, holder)
    for leftover in folder.glob("crmsync.db*"):
        if leftover != lock:
            leftover.unlink()  # every demo starts from an empty state
    data = demo_data(contacts)
    spread = ", ".join(f"{len(records['customers'])} in {system_type}" for system_type, records in data.items())
    say(f"[bold]crmsync demo[/]: {contacts} synthetic Dutch customers; {spread} (some in several systems).")
    running = start_sandboxes(data, time_scale=DEMO_TIME_SCALE)
    try:
        for sandbox in running:
            say(f"  {sandbox.type} sandbox on {sandbox.url}")
        say(f"  (sandbox rate limits run {DEMO_TIME_SCALE:g}x faster than the vendors' real ones)")
        config_file = folder / "crmsync.toml"
        config_file.write_text(sandbox_config(running, extra=DEMO_LABELS))
        loaded = load_config(config_file)
        stop = threading.Event()
        with open_state(loaded, "demo") as store:
            say(f"  replaying the last {REPLAY_DAYS[0]} days (read-only) so the report has history to show ...")
            replay_history(loaded, store, stop)
            first = Cycle(loaded, store, clock=now, stop_event=stop).run("backfill", full=list(loaded.config.systems))
            second = Cycle(loaded, store, clock=now, stop_event=stop).run("sync")
            segments = store.segment_counts()
            spanning = store.profiles_spanning_systems()
            report_file = write_report(store, loaded, folder)
        writes_after = {s.type: requests.get(f"{s.url}/_sandbox/stats", timeout=5).json()["writes"] for s in running}
    finally:
        stop_sandboxes(running)
    state_file = loaded.sqlite_path()
    second_calls = sum(o.write_calls for o in second.systems.values())
    if as_json:
        # The sync document of the full cycle (CONTRACTS §2), plus what the demo adds.
        document: dict[str, Any] = {
            **first.to_json(),
            "second": second.to_json(),
            "profiles_spanning_systems": spanning,
            "segments": segments,
            "sandbox_writes": writes_after,
            "state": str(state_file),
            "report": str(report_file),
            "config": str(config_file.resolve()),
        }
        print(json.dumps(document))
    else:
        print_report(console, first, "cycle 1: backfill, then write-back")
        console.print(f"{spanning} profiles span more than one system (same person, one profile).")
        console.print(_segments_table(segments, loaded.config.segments.label))
        print_report(console, second, "cycle 2: incremental sync")
        verdict = "[green]wrote nothing[/]" if second_calls == 0 else f"[red]made {second_calls} write calls[/]"
        console.print(f"The second cycle {verdict}: everything was already in place.")
        console.print(f"State file: {state_file}")
        console.print(f"Config:     {config_file.resolve()}")
        console.print(f"Segment health in the terminal: crmsync report -c {config_file.resolve()}", soft_wrap=True)
        console.print(f"Report:     {report_file}", soft_wrap=True)
    failed = max(first.exit_code(), second.exit_code())
    return failed if failed else (0 if second_calls == 0 else 1)


def replay_history(loaded: LoadedConfig, store: StateStore, stop: threading.Event) -> None:
    """Cycles as of some days ago, writing nothing back: traits only count orders placed before
    each cycle's `now`, so these are the segments those days would have had. They give the
    report's sizes over time, stability and lifecycle flows something to show."""
    read_only = loaded.config.model_copy(
        update={"systems": {n: s.model_copy(update={"writeback": False}) for n, s in loaded.config.systems.items()}}
    )
    replay = LoadedConfig(path=loaded.path, config=read_only)
    today = now()
    for i, days in enumerate(REPLAY_DAYS):
        at = today - timedelta(days=days)
        full = list(loaded.config.systems) if i == 0 else []
        Cycle(replay, store, clock=_fixed(at), stop_event=stop).run("replay", full=full)


def _fixed(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def write_report(store: StateStore, loaded: LoadedConfig, folder: Path) -> Path:
    """The segment health report of the demo's state, as HTML beside its config."""
    path = (folder / "report.html").resolve()
    document = build_report(store, loaded.config.segments, now(), loaded.config.report.language)
    add_guide(document, store, loaded)
    path.write_text(render_html(document), encoding="utf-8")
    return path


def _segments_table(counts: dict[str, int], label: Any) -> Table:
    table = Table(title="segments", title_justify="left")
    table.add_column("segment")
    table.add_column("label")
    table.add_column("profiles", justify="right")
    for name, count in counts.items():
        table.add_row(name, label(name), str(count))
    return table
