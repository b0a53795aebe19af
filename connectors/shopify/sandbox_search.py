"""The subset of Shopify's search syntax the sandbox understands, for `customers(query:)` and
`orders(query:)`: `field:value`, `field:>value` (also `>=`, `<`, `<=`), quoted values, `AND`, `OR`
and implicit AND between terms, `-field:value` to negate. Bare words match names and emails."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from mapping.model import parse_timestamp

Predicate = Callable[[Mapping[str, Any]], bool]

_TERM = re.compile(r"^(?P<neg>-)?(?P<field>[a-z_]+):(?P<op><=|>=|<|>|)?(?P<value>.*)$")


class SearchSyntaxError(ValueError):
    pass


def compile_query(query: str | None, fields: Mapping[str, Callable[[Mapping[str, Any]], Any]]) -> Predicate:
    """A predicate over stored nodes. `fields` maps a search field to a getter on the node."""
    if not query or not query.strip():
        return lambda node: True
    try:
        tokens = shlex.split(query.replace("'", '"'))
    except ValueError as exc:
        raise SearchSyntaxError(f"unbalanced quotes in query {query!r}") from exc
    groups: list[list[Predicate]] = [[]]
    for token in tokens:
        if token == "OR":
            groups.append([])
        elif token != "AND":
            groups[-1].append(_term(token, fields))
    alternatives = [group for group in groups if group]
    return lambda node: any(all(pred(node) for pred in group) for group in alternatives)


def _term(token: str, fields: Mapping[str, Callable[[Mapping[str, Any]], Any]]) -> Predicate:
    match = _TERM.match(token)
    if not match or match.group("field") not in fields:
        needle = token.lower()
        text_fields = [fields[name] for name in ("email", "name") if name in fields]
        return lambda node: any(needle in str(get(node) or "").lower() for get in text_fields)
    getter = fields[match.group("field")]
    op = match.group("op") or ":"
    raw = match.group("value")
    negate = bool(match.group("neg"))

    def compare(node: Mapping[str, Any]) -> bool:
        value = getter(node)
        if value is None:
            return False
        if isinstance(value, datetime):
            try:
                other: Any = parse_timestamp(raw)
            except ValueError:
                return False
        elif isinstance(value, date):
            # A filter "matching a whole day": the day as the value writes it, its time and zone
            # set aside (the getter gives the node's day in the shop's time zone).
            try:
                other = date.fromisoformat(raw.strip()[:10])
            except ValueError:
                return False
        elif isinstance(value, int):
            try:
                other = int(raw)
            except ValueError:
                return False
        else:
            value, other = str(value).lower(), raw.lower()
        if op == ":":
            return bool(value == other)
        return bool({"<": value < other, "<=": value <= other, ">": value > other, ">=": value >= other}[op])

    return (lambda node: not compare(node)) if negate else compare
