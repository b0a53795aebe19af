"""Profit's clock: every date-time a GetConnector returns is Amsterdam wall time with a `Z` that
does not mean UTC ("2015-01-26T16:57:43Z" is 16:57:43 in Amsterdam; AFAS's own GetConnector page
says to ignore the `Z`), and filter values are sent as wall time without the `Z`.

Shared by the connector (cursor <-> filter value), the sandbox and the fixtures.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
WALL_FORMAT = "%Y-%m-%dT%H:%M:%S"


def parse_wall(text: str) -> datetime:
    """Naive Amsterdam wall time from a Profit value: `2025-03-01T10:00:00Z`, the same without the
    `Z`, or a bare date. An explicit offset (never sent by Profit) is honoured. Raises ValueError."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1]
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(AMSTERDAM).replace(tzinfo=None)
    return parsed


def wall_to_utc(wall: datetime) -> datetime:
    # In the autumn hour that happens twice the earlier reading is taken (fold=0): a record then
    # looks up to an hour older than it is, which only makes the next read fetch it once more.
    return wall.replace(tzinfo=AMSTERDAM).astimezone(UTC)


def parse_profit(text: str) -> datetime:
    """A Profit date-time as an aware UTC datetime. Raises ValueError."""
    return wall_to_utc(parse_wall(text))


def utc_to_wall(moment: datetime) -> datetime:
    return moment.astimezone(AMSTERDAM).replace(tzinfo=None)


def format_profit(wall: datetime) -> str:
    """How Profit writes a date-time in a GetConnector row (wall time, fake `Z`)."""
    return wall.strftime(WALL_FORMAT) + "Z"


def filter_value(moment: datetime) -> str:
    """A lower bound for a `>=` filter that misses nothing at or after `moment`.

    Wall times in the autumn hour that is lived twice are ambiguous: if `moment` falls in the first
    pass, records changed during the second pass carry smaller wall times. Starting an hour earlier
    on those nights costs a few re-read records; starting at the wall time would lose some."""
    wall = utc_to_wall(moment)
    first = wall.replace(tzinfo=AMSTERDAM, fold=0).utcoffset()
    second = wall.replace(tzinfo=AMSTERDAM, fold=1).utcoffset()
    if first != second:
        wall -= timedelta(hours=1)
    return wall.strftime(WALL_FORMAT)


def now_wall() -> datetime:
    return utc_to_wall(datetime.now(UTC)).replace(microsecond=0)
