"""The AFAS sandbox's GetConnector query parameters, as get-connector.md describes them:
`skip`/`take` (default 0/100, -1/-1 = everything, other non-positive takes or a negative skip =
500 "unexpected error"), `orderbyfieldids` (`-` for descending), `filterfieldids`/`filtervalues`/
`operatortypes` (`,` = AND, `;` = OR, operators 1-15) or `filterjson`; unknown fields = 500
"Connector field 'X' not found". Values compare within their column's type, text in any case;
a comparison with null is never true, as in SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.wrappers import Request

from connectors.afas.profit_time import parse_wall
from connectors.afas.sandbox_tables import UNEXPECTED, Table, field_not_found, profit_error
from connectors.sandbox import VendorError
from connectors.sandbox.store import int_param

Condition = tuple[str, int, str]  # column, operator type, value


def paging(request: Request) -> tuple[int, int]:
    skip = int_param(request, "skip", 0, invalid=_unexpected)
    take = int_param(request, "take", 100, invalid=_unexpected)
    if (skip, take) == (-1, -1):
        return skip, take  # "get all": allowed, and strongly discouraged
    if skip < 0 or take <= 0:
        # get-connector.md: e.g. skip=2&take=-1 is "An unexpected error has occurred."
        raise profit_error(UNEXPECTED)
    return skip, take


def conditions(request: Request, table: Table) -> list[list[Condition]]:
    """OR-groups of AND-ed conditions, from `filterjson` or the three parallel lists."""
    if request.args.get("filterjson"):
        return _json_filters(request.args["filterjson"], table)
    names = request.args.get("filterfieldids")
    if not names:
        return []
    values = request.args.get("filtervalues", "")
    operators = request.args.get("operatortypes", "")
    name_groups, value_groups, op_groups = names.split(";"), values.split(";"), operators.split(";")
    if not len(name_groups) == len(value_groups) == len(op_groups):
        raise profit_error(UNEXPECTED)
    groups: list[list[Condition]] = []
    for group_names, group_values, group_ops in zip(name_groups, value_groups, op_groups, strict=True):
        fields, vals, ops = group_names.split(","), group_values.split(","), group_ops.split(",")
        if not (len(fields) == len(vals) == len(ops)):
            raise profit_error(UNEXPECTED)
        groups.append([_condition(table, f, o, v) for f, o, v in zip(fields, ops, vals, strict=True)])
    return groups


def _json_filters(raw: str, table: Table) -> list[list[Condition]]:
    try:
        filters = json.loads(raw)["Filters"]["Filter"]
        filters = filters if isinstance(filters, list) else [filters]
        groups = []
        for one in filters:
            items = one["Field"] if isinstance(one["Field"], list) else [one["Field"]]
            groups.append(
                [_condition(table, str(i["@FieldId"]), str(i["@OperatorType"]), str(i.get("#text", ""))) for i in items]
            )
        return groups
    except (ValueError, KeyError, TypeError):
        raise profit_error(UNEXPECTED) from None


def _condition(table: Table, column: str, operator: str, value: str) -> Condition:
    column = column.strip()
    if column not in table.columns:
        raise field_not_found(column)
    try:
        op = int(operator)
    except ValueError:
        raise profit_error(UNEXPECTED) from None
    if not 1 <= op <= 15:
        raise profit_error(UNEXPECTED)
    return column, op, value


def order(request: Request, table: Table) -> list[tuple[str, bool]]:
    raw = request.args.get("orderbyfieldids", "")
    order = []
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        descending = part.startswith("-")
        column = part.lstrip("-")
        if column not in table.columns:
            raise field_not_found(column)
        order.append((column, descending))
    return order


def _typed(kind: str, value: Any) -> Any:
    """A value comparable within its column type ("any": extra fixture columns, as text); None stays None."""
    if value is None or value == "":
        return None
    if kind == "date":
        return parse_wall(str(value))
    if kind in ("decimal", "integer"):
        return Decimal(str(value))
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true")
    return str(value).casefold()


def sort_rows(rows: list[dict[str, Any]], table: Table, order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    # Stable sorts from the last key to the first; nulls sort first, as in SQL Server.
    result = list(rows)
    for column, descending in reversed(order):
        kind = table.columns[column]

        def key(row: Mapping[str, Any], column: str = column, kind: str = kind) -> tuple[int, Any]:
            return _sort_key(_typed(kind, row.get(column)))

        result.sort(key=key, reverse=descending)
    return result


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)


def matches(row: Mapping[str, Any], table: Table, groups: Iterable[list[Condition]]) -> bool:
    groups = list(groups)
    if not groups:
        return True
    return any(all(_holds(row, table, c) for c in group) for group in groups)


def _holds(row: Mapping[str, Any], table: Table, condition: Condition) -> bool:
    column, op, raw = condition
    kind = table.columns[column]
    value = row.get(column)
    if op == 8:
        return value in (None, "")
    if op == 9:
        return value not in (None, "")
    if op in (6, 10, 11, 12, 13, 14, 15):
        text, needle = ("" if value is None else str(value)).casefold(), raw.casefold()
        return {
            6: needle in text,
            15: needle in text,
            10: text.startswith(needle),
            11: needle not in text,
            12: not text.startswith(needle),
            13: text.endswith(needle),
            14: not text.endswith(needle),
        }[op]
    have = _typed(kind, value)
    try:
        want = _typed(kind, raw)
    except (ValueError, InvalidOperation):
        raise profit_error(UNEXPECTED) from None
    if have is None or want is None:
        return False  # a comparison with null is never true, as in SQL
    return bool(
        {1: have == want, 7: have != want, 2: have >= want, 3: have <= want, 4: have > want, 5: have < want}[op]
    )


def _unexpected(message: str) -> VendorError:
    return profit_error(UNEXPECTED)  # Profit names no parameter: every bad one is "unexpected"
