"""Human output: rich tables for the terminal. `--json` output never comes through here. Times
are shown with `sync.timefmt.for_people` (local zone, whole seconds); the plan is in
sync/plan_render.py (`print_plan`, importable from here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from sync.pipeline import CycleReport
from sync.plan_render import print_plan, separated, wrap
from sync.timefmt import for_people

__all__ = [
    "check_details",
    "check_table",
    "console",
    "print_plan",
    "print_report",
    "print_status",
    "status_lines",
    "status_table",
    "summary_lines",
    "summary_table",
]


def console() -> Console:
    """Terminal output; piped output gets a fixed, roomy width instead of rich's 80 columns."""
    out = Console(highlight=False)
    return out if out.is_terminal else Console(highlight=False, width=160)


STATUS_STYLE = {"ok": "green", "failed": "bold red", "interrupted": "yellow", "skipped": "dim"}


def summary_table(report: CycleReport, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in (
        "system",
        "type",
        "status",
        "contacts",
        "orders",
        "quarantined",
        "planned",
        "written",
        "rejected",
        "calls",
    ):
        table.add_column(column, justify="right" if column not in ("system", "type", "status") else "left")
    for name, outcome in report.systems.items():
        table.add_row(
            name,
            outcome.type,
            f"[{STATUS_STYLE.get(outcome.status, '')}]{outcome.status}[/]",
            str(outcome.read_contacts),
            str(outcome.read_orders),
            str(outcome.quarantined),
            str(outcome.planned),
            str(outcome.written),
            str(outcome.rejected),
            str(outcome.write_calls),
        )
    table.caption = f"profiles: {report.profiles}   started {for_people(report.started_at)}" + (
        "   (dry run: nothing written)" if report.dry_run else ""
    )
    table.caption_justify = "left"
    return table


def summary_lines(report: CycleReport, title: str, width: int) -> Text:
    """The summary table's content as lines of at most `width` cells, one block per system: what a
    terminal too narrow for the table shows instead of a table whose columns are cut off."""
    lines = [title]
    for name, outcome in report.systems.items():
        label = name if outcome.type == name else f"{name} ({outcome.type})"
        facts = (  # a count never breaks from its label
            ("read", f"{outcome.read_contacts} contacts,", f"{outcome.read_orders} orders"),
            (f"quarantined {outcome.quarantined}",),
            (f"planned {outcome.planned}",),
            (f"written {outcome.written}",),
            (f"rejected {outcome.rejected}",),
            (f"calls {outcome.write_calls}",),
        )
        lines += wrap([label, "", outcome.status, "", *separated(facts)], width, 2, 4)
    return _coloured("\n".join(lines))


def status_lines(systems: Mapping[str, Mapping[str, Any]], width: int) -> Text:
    """The status table's content as lines of at most `width` cells (see `summary_lines`)."""
    lines = ["last cycle per system"]
    for name, entry in systems.items():
        last = entry.get("last") or {}
        ok = entry.get("last_ok") or {}
        counts = last.get("counts") or {}
        read = counts.get("read") or {}
        facts: list[str | tuple[str, ...]] = [
            ("finished", for_people(last.get("finished_at")) or "-"),
            ("last", "success", for_people(ok.get("finished_at")) or "never"),
            ("read", f"{read.get('contacts', 0)} contacts,", f"{read.get('orders', 0)} orders"),
            (f"written {counts.get('written', 0)}",),
            (f"rejected {counts.get('rejected', 0)}",),
        ]
        if last.get("error"):
            facts.append(f"error: {last['error']}")
        lines += wrap([name, "", str(last.get("status", "-")), "", *separated(facts)], width, 2, 4)
    return _coloured("\n".join(lines))


def _coloured(text: str) -> Text:
    shown = Text(text)
    for status, style in STATUS_STYLE.items():
        shown.highlight_regex(rf"(?m)^  \S+(?: \([^)]*\))?  ({status})(?= |$)", style)
    return shown


def _fits(console: Console, table: Table) -> bool:
    """Whether the table fits the terminal without a column cut short ("…")."""
    unbounded = console.options.update(width=max(console.width, 10_000))
    return Measurement.get(console, unbounded, table).minimum <= console.width


def print_report(console: Console, report: CycleReport, title: str) -> None:
    table = summary_table(report, title)
    if _fits(console, table):
        console.print(table)
    else:
        console.print(summary_lines(report, title, console.width), soft_wrap=True)
        console.print(table.caption)
    for name, outcome in report.systems.items():
        if outcome.error:
            console.print(f"[red]{outcome.error}[/]")
        for record_id, message in outcome.rejections[:10]:
            console.print(f"[yellow]{name}[/]: record {record_id} rejected: {message}")
        if len(outcome.rejections) > 10:
            console.print(f"[yellow]{name}[/]: ... and {len(outcome.rejections) - 10} more rejected records")
        if outcome.deleted:
            console.print(f"{name}: {outcome.deleted} contacts deleted at the vendor left the state")
        for warning in outcome.warnings:
            console.print(f"[yellow]{name}[/]: {escape(warning)}")
    if report.held is not None:
        console.print(
            f"[red]writes held[/] (waiting for {', '.join(report.held.waiting_for)}): {escape(report.held.reason)}"
        )
        console.print("[red]nothing was written to any system[/]; `--allow-partial` overrides this for one run")
    for caveat in report.caveats:
        console.print(f"[yellow]note[/]: {escape(caveat)}")


def check_table(results: Mapping[str, Mapping[str, Any]]) -> Table:
    table = Table(title="systems", title_justify="left")
    for column in ("system", "type", "reachable", "auth", "read", "incremental", "write"):
        table.add_column(column)
    for name, result in results.items():
        caps = result["capabilities"]
        writes = [w for w, ok in (("tags", caps["write_tags"]), ("fields", caps["write_fields"])) if ok]
        reads = [r for r, ok in (("contacts", caps["read_contacts"]), ("orders", caps["read_orders"])) if ok]
        table.add_row(
            name,
            result["type"],
            "[green]yes[/]" if result["reachable"] else "[red]no[/]",
            {"ok": "[green]ok[/]", "refused": "[red]refused[/]"}.get(result["auth"], result["auth"]),
            ", ".join(reads) or "-",
            "yes" if caps["incremental"] else "no (full scan)",
            ", ".join(writes) or "[yellow]none[/]",
        )
    return table


def check_details(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Below the table, per system: what was proven, what is missing with its fix, warnings."""
    lines: list[str] = []
    for name, result in results.items():
        permissions = result.get("permissions") or []
        proven = [p["name"] for p in permissions if p["ok"]]
        missing = [p for p in permissions if not p["ok"]]
        if proven:
            lines.append(f"[green]{name}[/]: proven: {', '.join(proven)}")
        for permission in missing:
            style = "red" if permission.get("needed", True) else "yellow"
            lines.append(f"[{style}]{name}[/]: {permission['name']} missing: {escape(str(permission['fix']))}")
        for warning in result.get("warnings") or []:
            lines.append(f"[yellow]{name}[/]: {escape(warning)}")
        if result.get("error") and not missing:
            error = str(result["error"])
            error = error[len(name) + 2 :] if error.startswith(f"{name}: ") else error  # named once
            lines.append(f"[red]{name}[/]: {escape(error)}")
    return lines


def status_table(systems: Mapping[str, Mapping[str, Any]]) -> Table:
    table = Table(title="last cycle per system", title_justify="left")
    for column in ("system", "last status", "finished", "last success", "read", "written", "rejected", "error"):
        table.add_column(column)
    for name, entry in systems.items():
        last = entry.get("last") or {}
        ok = entry.get("last_ok") or {}
        counts = last.get("counts") or {}
        read = counts.get("read") or {}
        table.add_row(
            name,
            f"[{STATUS_STYLE.get(last.get('status', ''), '')}]{last.get('status', '-')}[/]",
            for_people(last.get("finished_at")) or "-",
            for_people(ok.get("finished_at")) or "never",
            f"{read.get('contacts', 0)} / {read.get('orders', 0)}",
            str(counts.get("written", 0)),
            str(counts.get("rejected", 0)),
            str(last.get("error") or ""),
        )
    return table


def print_status(
    console: Any,
    systems: Mapping[str, Any],
    held: Mapping[str, Any] | None,
    pending: Sequence[Mapping[str, Any]],
    holder: Mapping[str, Any] | None,
    problems: Mapping[str, str],
) -> None:
    """`status` for a person: the table, held writes, records waiting, the lock, what is wrong."""
    table = status_table(systems)
    if _fits(console, table):
        console.print(table)
    else:
        console.print(status_lines(systems, console.width), soft_wrap=True)
    for name, entry in systems.items():
        # What the last cycle held back (contacts a full read left out in bulk): there until a
        # cycle no longer says it.
        for warning in ((entry.get("last") or {}).get("counts") or {}).get("warnings") or ():
            console.print(f"[yellow]{escape(name)}[/]: {escape(str(warning))}")
    if held:
        console.print(f"[red]writes held[/] in the last cycle (waiting for {', '.join(held['waiting_for'])}):")
        console.print(f"  {escape(held['reason'])}")
    if pending:
        console.print(f"{len(pending)} records waiting to be retried:")
        for row in pending[:20]:
            console.print(f"  {row['system']}:{row['record_id']} ({row['attempts']} attempts): {row['message']}")
    if holder:
        since = f" since {for_people(holder['since'])}" if holder.get("since") else ""
        console.print(f"lock: held by pid {holder.get('pid')} ({holder.get('command')}){since}")
    else:
        console.print("lock: free")
    for name, why in problems.items():
        console.print(f"[red]{escape(name)}[/]: {escape(why)}")
