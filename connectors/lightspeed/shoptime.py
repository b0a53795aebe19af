"""Timestamps as a Lightspeed shop writes them: ISO-8601 in the shop's own time zone, with its offset.

A Dutch shop runs on Europe/Amsterdam, so its offset is +01:00 in winter and +02:00 in summer. The
EU rule (summer time from the last Sunday of March to the last Sunday of October, switching at
01:00 UTC) is spelled out here so the emulator and the demo data do not depend on the host's tz
database. Filters such as `updated_at_min` take the shop's wall-clock time (`YYYY-MM-DD HH:MM:SS`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

WINTER = timedelta(hours=1)
SUMMER = timedelta(hours=2)
FILTER_FORMAT = "%Y-%m-%d %H:%M:%S"


def _last_sunday(year: int, month: int) -> datetime:
    """01:00 UTC on the last Sunday of `month` (March or October)."""
    last_day = datetime(year, month + 1, 1, 1, tzinfo=UTC) - timedelta(days=1)
    return last_day - timedelta(days=(last_day.weekday() - 6) % 7)


def shop_offset(moment: datetime) -> timedelta:
    """The Amsterdam offset in force at `moment` (an aware datetime)."""
    utc = moment.astimezone(UTC)
    return SUMMER if _last_sunday(utc.year, 3) <= utc < _last_sunday(utc.year, 10) else WINTER


def shop_time(moment: datetime) -> str:
    """`2026-03-01T11:00:00+01:00`: how the shop renders `moment`."""
    return moment.astimezone(timezone(shop_offset(moment))).isoformat(timespec="seconds")


def from_shop_wall_clock(text: str) -> datetime:
    """The instant (UTC) of a filter value in the shop's wall-clock time, `YYYY-MM-DD HH:MM:SS` or
    `YYYY-MM-DD`. In the autumn hour that happens twice, the earlier instant is taken (a filter
    that reads a little more, never less). Raises ValueError on any other format."""
    text = text.strip()
    wall = datetime.strptime(text, FILTER_FORMAT if " " in text else "%Y-%m-%d")
    for offset in (SUMMER, WINTER):
        candidate = (wall - offset).replace(tzinfo=UTC)
        if shop_offset(candidate) == offset:
            return candidate
    return (wall - SUMMER).replace(tzinfo=UTC)  # the spring hour that does not exist
