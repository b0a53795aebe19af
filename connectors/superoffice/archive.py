"""The OData-style archive queries of the SuperOffice WebAPI, as the sandbox answers them.

`GET /api/v1/Person`, `GET /api/v1/Sale` and `GET /api/v1/Archive/{provider}` list rows of an
archive provider: `$select` names the columns, `$filter` restricts the rows (SuperOffice-flavoured
OData: `personUpdatedDate afterTime '2024-05-01T00:00:00' and personId gt 10`), `$orderBy` sorts,
`$top`/`$skip` page, and the reply carries `odata.nextLink` while more rows follow. Each row is
`PrimaryKey`, `EntityName` and the selected columns under their archive names.

Column names and types follow the provider reference pages (docs/en/api/archive-providers/
reference/person.md and sale.md in SuperOfficeDocs/superoffice-docs). The subset of the filter
language implemented here is what a sync needs; anything else is refused with the vendor's error,
never silently ignored, so a connector cannot rely on a filter that would not filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from connectors.sandbox.store import page

ColumnKind = Literal["int", "string", "date", "decimal", "bool", "ids"]
Row = Mapping[str, Any]

DEFAULT_TOP = 200
MAX_TOP = 5000  # (assumed) the notes know no documented maximum; larger pages are refused


class ArchiveError(ValueError):
    """A query the archive refuses; `error_type` is SuperOffice's exception name."""

    def __init__(self, message: str, error_type: str = "ArgumentException") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class Column:
    kind: ColumnKind
    get: Callable[[Row], Any]
    orderable: bool = True


@dataclass(frozen=True)
class Provider:
    """One archive provider: its entity name, primary key, rows and columns."""

    name: str
    entity: str
    key: Callable[[Row], int]
    column: Callable[[str], Column | None]
    default_select: tuple[str, ...]


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: Any


# ----- values ---------------------------------------------------------------------------------
_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?(Z|[+-]00:?00)?$")


def parse_date(text: str) -> datetime:
    """SuperOffice date literals: `'2009-1-1'` (documented) or `'2024-05-01T10:00:00'` (UTC)."""
    match = _DATE.match(text.strip())
    if not match:
        raise ArchiveError(f"'{text}' is not a date")
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups()[:6])
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise ArchiveError(f"'{text}' is not a date") from None


# A date never set: SuperOffice stores no null dates, an empty one is 1760-01-01 in the database and
# `DateTime.MinValue` through NetServer (documented: docs/database/whats-new/changes-in-7/datetime.md),
# and a new row's `updated` is that empty date until its first edit (documented: the custom-priming
# sample). How REST writes it is not documented; NetServer's MinValue is assumed.
NEVER = "0001-01-01T00:00:00"


def format_date(moment: datetime) -> str:
    """Archive dates are ISO strings in UTC without an offset, to the second. The year has four
    digits however small (`strftime` writes year 1, the empty date's, as `1`)."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}"


def _literal(kind: ColumnKind, raw: str, column: str) -> Any:
    text = raw[1:-1].replace("''", "'") if len(raw) >= 2 and raw[0] == raw[-1] == "'" else raw
    try:
        if kind in ("int", "ids"):
            return int(text)
        if kind == "decimal":
            return Decimal(text)
        if kind == "date":
            return parse_date(text)
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
    except (ValueError, InvalidOperation):
        raise ArchiveError(f"'{text}' is not a valid value for column '{column}' ({kind})") from None
    return text


# ----- $filter ----------------------------------------------------------------------------------
_TOKEN = re.compile(r"'(?:[^']|'')*'|[()]|[^\s()]+")
OPERATORS: dict[ColumnKind, frozenset[str]] = {
    "int": frozenset({"eq", "ne", "lt", "le", "gt", "ge", "equals", "unequals", "greater", "less"}),
    "decimal": frozenset({"eq", "ne", "lt", "le", "gt", "ge"}),
    "string": frozenset({"eq", "ne", "is", "isnot", "contains", "notcontains", "begins", "notbegins"}),
    # `before`, `after` and `date` compare the day alone ("RestrictionType 'date' - only the date
    # part is used"); `beforeTime`, `afterTime` and `dateTime` the date and the time (the REST
    # search docs' DateTime operators): api-notes/superoffice.md.
    "date": frozenset({"before", "after", "date", "eq", "beforetime", "aftertime", "datetime"}),
    "bool": frozenset({"eq", "ne", "set", "equals"}),
    "ids": frozenset({"oneof", "notoneof", "eq"}),
}


@dataclass(frozen=True)
class Either:
    """Restrictions joined by `or` (`all_of` False) or by `and`."""

    parts: tuple[Restriction, ...]
    all_of: bool


Restriction = Condition | Either


def parse_filter(text: str, provider: Provider) -> Restriction:
    """Restrictions joined by `and` and `or`, `and` binding tighter, grouped by brackets
    (documented: "AND has a higher priority than OR ... Brackets can be used for grouping",
    GetArchiveListByColumns2). Functions and unary operators are refused (not needed)."""
    tokens = _TOKEN.findall(text)
    at = 0

    def peek() -> str | None:
        return tokens[at].lower() if at < len(tokens) else None

    def joined(word: str, part: Callable[[], Restriction]) -> Restriction:
        nonlocal at
        parts = [part()]
        while peek() == word:
            at += 1
            if peek() is None:
                raise ArchiveError(f"$filter ends with '{word}'")
            parts.append(part())
        return parts[0] if len(parts) == 1 else Either(tuple(parts), word == "and")

    def any_of() -> Restriction:
        return joined("or", lambda: joined("and", single))

    def single() -> Restriction:
        nonlocal at
        if peek() == "(":
            at += 1
            inner = any_of()
            if peek() != ")":
                raise ArchiveError("Unbalanced brackets in $filter")
            at += 1
            return inner
        if len(tokens) - at < 3 or ")" in tokens[at : at + 3] or "(" in tokens[at : at + 3]:
            raise ArchiveError(f"Incomplete restriction in $filter: '{' '.join(tokens[at:])}'")
        name, op, raw = tokens[at : at + 3]
        column = provider.column(name)
        if column is None:
            raise ArchiveError(f"Unknown column '{name}' in $filter for archive provider '{provider.name}'")
        if op.lower() not in OPERATORS[column.kind]:
            raise ArchiveError(f"Operator '{op}' is not supported for column '{name}' of type {column.kind}")
        at += 3
        return Condition(name, op.lower(), _literal(column.kind, raw, name))

    restriction = any_of()
    if at < len(tokens):
        raise ArchiveError(f"Expected 'and' or 'or' in $filter, found '{tokens[at]}'")
    return restriction


def _holds(value: Any, op: str, wanted: Any) -> bool:
    if value is None or value == "":
        return op in ("ne", "unequals", "isnot", "notcontains", "notbegins", "notoneof")
    if isinstance(value, str) and isinstance(wanted, str):
        value, wanted = value.casefold(), wanted.casefold()
    if isinstance(value, datetime) and op in ("date", "before", "after"):
        day, wanted_day = value.date(), wanted.date()
        return bool(day == wanted_day if op == "date" else day < wanted_day if op == "before" else day > wanted_day)
    if isinstance(value, frozenset):
        return (wanted in value) != (op == "notoneof")
    checks: dict[str, Callable[[Any, Any], bool]] = {
        "eq": lambda a, b: a == b,
        "equals": lambda a, b: a == b,
        "is": lambda a, b: a == b,
        "set": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "unequals": lambda a, b: a != b,
        "isnot": lambda a, b: a != b,
        "lt": lambda a, b: a < b,
        "less": lambda a, b: a < b,
        "before": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "greater": lambda a, b: a > b,
        "after": lambda a, b: a > b,
        "aftertime": lambda a, b: a >= b,  # "After or equal to Datetime"
        "beforetime": lambda a, b: a < b,
        "datetime": lambda a, b: a == b,
        "ge": lambda a, b: a >= b,
        "contains": lambda a, b: b in a,
        "notcontains": lambda a, b: b not in a,
        "begins": lambda a, b: a.startswith(b),
        "notbegins": lambda a, b: not a.startswith(b),
    }
    return checks[op](value, wanted)


def _typed(kind: ColumnKind, value: Any) -> Any:
    """A stored value as the comparisons need it (dates as datetimes, amounts as Decimals)."""
    if value is None:
        return None
    try:
        if kind == "date" and isinstance(value, str):
            return parse_date(value)
        if kind == "decimal":
            return Decimal(str(value))
        if kind == "ids":
            return frozenset(value)
    except (ArchiveError, InvalidOperation):
        return None
    return value


# ----- the query ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    select: tuple[str, ...]
    restriction: Restriction | None
    order: tuple[tuple[str, bool], ...]  # (column, descending)
    top: int
    skip: int


def _int_param(args: Mapping[str, str], name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ArchiveError(f"The value '{raw}' is not valid for {name}.") from None


def _case_insensitive(args: Mapping[str, str], name: str) -> str | None:
    for key, value in args.items():
        if key.lower() == name.lower():
            return value
    return None


def parse_query(args: Mapping[str, str], provider: Provider) -> Query:
    params = {key: _case_insensitive(args, key) for key in ("$select", "$filter", "$orderBy", "$top", "$skip")}
    select = tuple(c.strip() for c in (params["$select"] or "").split(",") if c.strip()) or provider.default_select
    for name in select:
        if provider.column(name) is None:
            raise ArchiveError(f"Unknown column '{name}' in $select for archive provider '{provider.name}'")
    restriction = parse_filter(params["$filter"], provider) if params["$filter"] else None
    order = []
    for part in (p.strip() for p in (params["$orderBy"] or "").split(",") if p.strip()):
        name, _, direction = part.partition(" ")
        column = provider.column(name)
        if column is None or not column.orderable:
            raise ArchiveError(f"Cannot order archive provider '{provider.name}' by '{name}'")
        if direction.strip().lower() not in ("", "asc", "desc"):
            raise ArchiveError(f"Unknown sort direction '{direction.strip()}' in $orderBy")
        order.append((name, direction.strip().lower() == "desc"))
    top = _int_param({"$top": params["$top"] or ""}, "$top", DEFAULT_TOP)
    skip = _int_param({"$skip": params["$skip"] or ""}, "$skip", 0)
    if not 1 <= top <= MAX_TOP:
        raise ArchiveError(f"$top must be between 1 and {MAX_TOP}, was {top}")
    if skip < 0:
        raise ArchiveError(f"$skip cannot be negative, was {skip}")
    return Query(select, restriction, tuple(order), top, skip)


def run_query(query: Query, provider: Provider, rows: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The rows of one page in archive shape, and whether more rows follow."""
    restriction = query.restriction
    matching = [row for row in rows if restriction is None or _matches(row, restriction, provider)]
    for name, descending in reversed(query.order or ((provider.default_select[0], False),)):
        column = provider.column(name)
        assert column is not None  # checked when the query was parsed

        def key(row: Row, column: Column = column) -> tuple[bool, Any]:
            value = _typed(column.kind, column.get(row))
            return (value is not None, value if value is not None else 0)

        matching.sort(key=key, reverse=descending)
    rows_of_page = page(matching, query.skip, query.top)
    return [_render(row, query.select, provider) for row in rows_of_page], query.skip + query.top < len(matching)


def _matches(row: Row, restriction: Restriction, provider: Provider) -> bool:
    if isinstance(restriction, Either):
        found = (_matches(row, part, provider) for part in restriction.parts)
        return all(found) if restriction.all_of else any(found)
    column = provider.column(restriction.column)
    assert column is not None
    return _holds(_typed(column.kind, column.get(row)), restriction.op, restriction.value)


def _render(row: Row, select: Sequence[str], provider: Provider) -> dict[str, Any]:
    out: dict[str, Any] = {"PrimaryKey": provider.key(row), "EntityName": provider.entity}
    for name in select:
        column = provider.column(name)
        assert column is not None
        value = column.get(row)
        if column.kind == "ids":
            # (assumed) a multi-valued list column comes back as the ids, comma-separated
            value = ",".join(str(i) for i in sorted(value or ()))
        elif column.kind == "decimal" and value is not None:
            value = float(Decimal(str(value)))
        out[name] = value
    return out
