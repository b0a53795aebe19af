from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from mapping.model import parse_timestamp
from mapping.normalize.base import Invalid, type_name

_EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def normalise_datetime(value: Any) -> datetime | Invalid | None:
    if value is None or value == "" or value is False:
        return None
    if not isinstance(value, str):
        return Invalid("wrong_type", f"expected a timestamp, got {type_name(value)}")
    try:
        parsed = parse_timestamp(value)
    except ValueError:
        return Invalid("invalid_date", "not an ISO-8601 timestamp")
    if not _EARLIEST <= parsed < _LATEST:
        return Invalid("impossible_date", f"date {parsed.date()} outside 1990-2100")
    return parsed


_DMY = re.compile(r"^\s*(\d{1,2})-(\d{1,2})-(\d{4})\s*$")


def normalise_date_dmy(value: Any) -> datetime | Invalid | None:
    """A calendar date written `dd-MM-yyyy` (Silvasoft's format), as midnight UTC of that day."""
    if value is None or value == "" or value is False:
        return None
    if not isinstance(value, str):
        return Invalid("wrong_type", f"expected a dd-MM-yyyy date, got {type_name(value)}")
    match = _DMY.match(value)
    if not match:
        return Invalid("invalid_date", "not a dd-MM-yyyy date")
    day, month, year = (int(part) for part in match.groups())
    try:
        parsed = datetime(year, month, day, tzinfo=UTC)
    except ValueError:
        return Invalid("invalid_date", "no such calendar date")
    if not _EARLIEST <= parsed < _LATEST:
        return Invalid("impossible_date", f"date {parsed.date()} outside 1990-2100")
    return parsed
