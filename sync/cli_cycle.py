"""What `sync`, `plan` and `backfill` share: one cycle under the writer lock (or, for `plan` while
another process holds it, a plan from the stored records), then its document or report and its
exit code, 130 when Ctrl-C stopped it (CONTRACTS §6)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from sync.cli_support import (
    INTERRUPTED,
    Common,
    console,
    emit_json,
    fail,
    restore_signals,
    stop_on_signals,
    writer_state,
)

if TYPE_CHECKING:
    from sync.config import LoadedConfig
    from sync.lock import LockHeld
    from sync.pipeline import CycleReport


def run_cycle(
    common: Common,
    loaded: LoadedConfig,
    command: str,
    *,
    dry_run: bool,
    full: list[str] | None = None,
    allow_partial: bool = False,
    lock_held_raises: bool = False,
) -> tuple[CycleReport, str | None]:
    """One cycle under the writer lock; returns its report and the signal that stopped it, if one did."""
    from sync.clock import now
    from sync.pipeline import Cycle

    if full is not None:
        unknown = sorted(set(full) - set(loaded.config.systems))
        if unknown:
            fail(f"crmsync: no system named {', '.join(unknown)} in {loaded.path}", 2)
    with writer_state(loaded, command, lock_held_raises=lock_held_raises) as writer:
        store, guard = writer.store, writer.guard()
        stop = stop_on_signals()
        began = time.monotonic()
        try:
            if command == "backfill" and not common.as_json:
                from sync.progress import RecordProgress

                with RecordProgress() as progress:
                    cycle = Cycle(loaded, store, clock=now, stop_event=stop, progress=progress, write_guard=guard)
                    report = cycle.run(command, dry_run=dry_run, full=full or (), allow_partial=allow_partial)
            else:
                cycle = Cycle(loaded, store, clock=now, stop_event=stop, write_guard=guard)
                report = cycle.run(command, dry_run=dry_run, full=full or (), allow_partial=allow_partial)
        finally:
            restore_signals()
        # A one-off cycle (a cron job instead of the daemon) raises the daemon's alerts too.
        from sync.service import alerts_after_one_off

        alerts_after_one_off(loaded, store, report, duration=time.monotonic() - began)
    return report, stop.signal


def plan_from_stored_records(loaded: LoadedConfig, held: LockHeld) -> tuple[CycleReport, str | None]:
    """`plan` while another process holds the lock: from the stored records (sync/stored_plan.py)."""
    from sync.stored_plan import plan_from_stored

    path = loaded.sqlite_path()
    if path is not None and not path.exists():
        fail(f"crmsync: {held}; and nothing is stored yet to plan from", 5)
    print(f"crmsync: {held}; planning from the stored records, without reading the systems", file=sys.stderr)
    stop = stop_on_signals()
    try:
        return plan_from_stored(loaded, stop), stop.signal
    finally:
        restore_signals()


def finish_cycle(
    common: Common,
    report: CycleReport,
    title: str,
    *,
    with_changes: bool = False,
    stopped_by: str | None = None,
    extra: dict[str, Any] | None = None,
) -> NoReturn:
    """The cycle's document or report; the exit code of its outcome, or 130 when Ctrl-C stopped it
    (what it did until then is recorded and reported all the same)."""
    from sync.render import print_plan, print_report

    if common.as_json:
        document = {**report.to_json(with_changes=with_changes), **(extra or {})}
        emit_json({**document, "stopped_by": stopped_by} if stopped_by else document)
    else:
        out = console()
        print_report(out, report, title)
        if with_changes:
            print_plan(out, report)
        if report.interrupted:
            out.print("[yellow]stopped on request; what was confirmed is recorded[/]")
    raise typer.Exit(INTERRUPTED if stopped_by == "SIGINT" else report.exit_code())
