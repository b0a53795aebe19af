"""`crmsync plan` for people: a summary per system first, then every record, readable at 80 columns.

The summary says, per system, how many records change, how many join and leave each segment, and
how many get each field set (with the values, when there are few) or cleared. Then, per system,
one block per record: its id as people see it in the vendor's screens (`Connector.short_id`: a
Shopify customer is 7000000, not its gid), the person's name and email, and on the next line(s)
the tags added (`+`) and removed (`-`) and the fields set, every value whole: long lines wrap
instead of being cut off. `--json` never comes through here (it has every id and value as is).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mapping.model import WriteBack
from sync.reports import CycleReport
from sync.timefmt import for_people

# A field's values are listed in the summary when a system sets it to at most this many values, each
# at most this long (a segments field's combinations are told by the segment table instead).
FEW_VALUES = 6
SHORT_VALUE = 24


def print_plan(console: Console, report: CycleReport) -> None:
    """The plan of a (dry-run) cycle: summary first, then the records, grouped per system."""
    by_system: dict[str, list[WriteBack]] = defaultdict(list)
    for change in report.changes:
        by_system[change.system].append(change)
    systems = list(report.systems) + sorted(set(by_system) - set(report.systems))
    total = len(report.changes)
    console.print(
        Text.assemble(
            ("plan", "bold"),
            f" of {for_people(report.started_at)}: {_records(total)} would change"
            f" in {sum(1 for name in systems if by_system[name])} of {len(systems)} systems",
        )
    )
    for name in systems:
        console.print()
        outcome = report.systems.get(name)
        status = outcome.status if outcome is not None else "ok"
        for part in system_summary(name, _type_of(report, name), by_system[name], status):
            console.print(part)
    for name in systems:
        if by_system[name]:
            console.print()
            console.print(Text(f"{name}: {_records(len(by_system[name]))}, one by one", style="bold"))
            short = _short_id(_type_of(report, name))
            lines = []
            for change in sorted(by_system[name], key=lambda c: _order(c, short)):
                lines += record_lines(change, console.width, short)
            console.print(_styled("\n".join(lines)), soft_wrap=True)


def system_summary(name: str, system_type: str, changes: Sequence[WriteBack], status: str = "ok") -> list[Any]:
    """The summary of one system: records, joins and leaves per segment, fields set and cleared."""
    label = name if system_type in ("", name) else f"{name} ({system_type})"
    if not changes:
        why = "nothing to write" if status == "ok" else f"not planned ({status})"
        return [Text.assemble((label, "bold"), f": {why}")]
    parts: list[Any] = [Text.assemble((label, "bold"), f": {_records(len(changes))}")]
    joins: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for change in changes:
        joined, left = segments_of(change)
        joins.update(joined)
        leaves.update(left)
    if joins or leaves:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0))
        table.add_column("segment", overflow="fold")
        table.add_column("add", justify="right")
        table.add_column("remove", justify="right")
        for segment in sorted(joins.keys() | leaves.keys()):
            table.add_row(segment, _count(joins[segment]), _count(leaves[segment]))
        parts.append(_indent(table, 2))
    values: dict[str, Counter[str | None]] = defaultdict(Counter)
    for change in changes:
        for field, value in change.set_fields.items():
            values[field][value] += 1
    if values:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 2, 0, 0))
        table.add_column("field", overflow="fold")
        table.add_column("set", justify="right")
        table.add_column("cleared", justify="right")
        table.add_column("values", overflow="fold")
        for field in sorted(values):
            counts = values[field]
            cleared = counts.pop(None, 0)
            table.add_row(field, _count(sum(counts.values())), _count(cleared), _values(counts))
        parts.append(_indent(table, 2))
    return parts


def record_lines(change: WriteBack, width: int, short_id: Callable[[str], str] = str) -> list[str]:
    """One record of the plan as lines of at most `width` cells: its id, then name and email
    (wrapping beside the id); below, the tags added (+) and removed (-) and the fields set, every
    value whole (a value longer than a line is folded, never cut)."""
    record = short_id(change.record_id)
    name, email = getattr(change, "name", None), getattr(change, "email", None)
    who = [word for part in (name, email) if part for word in (*part.split(), "")][:-1]
    head = [record, "", *(who or ["(no name or email known)"])]
    hanging = 4 + cell_len(record) if cell_len(record) <= width // 3 else 4
    tags = " ".join([f"+{tag}" for tag in change.add_tags] + [f"-{tag}" for tag in change.remove_tags])
    fields = [
        f"{field} cleared" if value is None else f"{field} = {_quoted(value)}"
        for field, value in change.set_fields.items()
    ]
    return wrap(head, width, 2, hanging) + wrap(separated([tags, *fields] if tags else fields), width, 4, 4)


def separated(phrases: Sequence[str | Sequence[str]]) -> list[str]:
    """The words of these phrases, a " ·" closing each phrase but the last (never opening a line).
    A phrase given as a sequence is taken as its words (a word may hold spaces: a time that should
    not break)."""
    words: list[str] = []
    for phrase in phrases:
        if words:
            words[-1] += " ·"
        words += phrase.split(" ") if isinstance(phrase, str) else list(phrase)
    return words


def wrap(words: Sequence[str], width: int, indent: int, hanging: int) -> list[str]:
    """Words filled into lines of at most `width` cells, the first indented by `indent`, the others
    by `hanging`; an empty word is an extra space (two between name and email); a word longer than
    a line is folded over lines."""
    lines: list[str] = []
    line, used = " " * indent, indent
    fresh = True  # nothing on this line yet
    for word in words:
        if not word:  # a wider gap, unless the line breaks here anyway
            if not fresh and used + 1 < width:
                line, used = line + " ", used + 1
            continue
        size = cell_len(word)
        if not fresh and used + 1 + size > width:
            lines.append(line)
            line, used, fresh = " " * hanging, hanging, True
        if not fresh:
            line, used = line + " ", used + 1
        while used + size > width and size:  # longer than a whole line: fold it
            room = max(1, width - used)
            piece = _chop(word, room)
            lines.append(line + piece)
            word = word[len(piece) :]
            size = cell_len(word)
            line, used = " " * hanging, hanging
        line, used, fresh = line + word, used + size, False
    if not fresh:
        lines.append(line)
    return [line.rstrip() for line in lines]


def _chop(word: str, cells: int) -> str:
    """The longest start of `word` that fits in `cells` cells (at least one character)."""
    end = 1
    while end < len(word) and cell_len(word[: end + 1]) <= cells:
        end += 1
    return word[:end]


def segments_of(change: WriteBack) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The segments a change joins and leaves (a planned change knows them, from the tags and from
    the segments field); for a bare WriteBack, its owned tags."""
    joins = getattr(change, "joins", None)
    leaves = getattr(change, "leaves", None)
    if joins is None or leaves is None:
        return change.add_tags, change.remove_tags
    return joins, leaves


def _values(counts: Counter[str | None]) -> str:
    """The values a field is set to, most frequent first, when they are few and short."""
    if not counts:
        return ""
    if len(counts) > FEW_VALUES or any(len(value or "") > SHORT_VALUE for value in counts):
        return f"{len(counts)} different"
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0] or ""))
    return ", ".join(f"{_quoted(value)} {n}" for value, n in ranked)


def _order(change: WriteBack, short_id: Callable[[str], str]) -> tuple[Any, ...]:
    """Records by name (those without one last), then email, then id: a person is easy to find."""
    name = getattr(change, "name", None) or ""
    email = getattr(change, "email", None) or ""
    record = short_id(change.record_id)
    return (not name, name.casefold(), email.casefold(), len(record), record)


def _styled(text: str) -> Text:
    """Colour for a terminal: record ids, tags added and removed, fields cleared."""
    styled = Text(text)
    styled.highlight_regex(r"(?m)^  [^ ]+", "cyan")
    styled.highlight_regex(r"(?m)(?<= )\+[^ ]+", "green")
    styled.highlight_regex(r"(?m)(?<= )-[^ ]+", "red")
    styled.highlight_regex(r"(?<= )cleared(?=$| )", "yellow")
    return styled


def _indent(renderable: Any, columns: int) -> Padding:
    return Padding(renderable, (0, 0, 0, columns), expand=False)


def _records(n: int) -> str:
    return f"{n} record{'' if n == 1 else 's'}"


def _count(n: int) -> str:
    return str(n) if n else "-"


def _quoted(value: str | None) -> str:
    return json.dumps(value, ensure_ascii=False)


def _type_of(report: CycleReport, system: str) -> str:
    outcome = report.systems.get(system)
    return outcome.type if outcome is not None else ""


def _short_id(system_type: str) -> Callable[[str], str]:
    """How a system's record ids are shown: `Connector.short_id` of its type, or as stored."""
    from connectors.registry import TYPES, connector_class

    return connector_class(system_type).short_id if system_type in TYPES else str
