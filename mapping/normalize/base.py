from __future__ import annotations

from typing import Any, NamedTuple


class Invalid(NamedTuple):
    """A value that is present but unusable, with a short reason code and a human message."""

    reason: str
    message: str


def type_name(value: Any) -> str:
    return {dict: "object", list: "list", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )
