"""How a Lightspeed shop's lists are read: its times, its filters, its pages.

Lists page with `page`/`limit` (at most 250) under a fixed `updated_at_min` filter. The list order
is not documented, so the cursor only moves when a read is complete (the kit's window: mid-read the
checkpoint names the next page and keeps the old cursor, and the new cursor is never later than the
moment the read began, as a record changed during the read may have slipped onto a page already
read). Record times keep the offset the shop wrote them with (`+01:00`/`+02:00`), and so does the
cursor. The zone a filter's time is read in is not documented: the filter is sent as the earlier of
the two readings (`updated_at_min`).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from connectors.streams import RecordSpec

FILTER_FORMAT = "%Y-%m-%d %H:%M:%S"


def shop_moment(text: str) -> datetime:
    """An ISO-8601 timestamp keeping the offset the shop wrote it with (a naive one is UTC);
    raises ValueError when it is none."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _moment(value: object) -> datetime | None:
    try:
        return shop_moment(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


# Customers and orders alike: a record never modified carries its creation time only.
RECORDS = RecordSpec("id", ("updatedAt", "createdAt"), parse_time=shop_moment)


def updated_at_min(since: datetime, cursor: str | None) -> str:
    """The `updated_at_min` filter for `since`: the earlier of its wall-clock times in the shop's
    zone (the offset of the cursor the bound comes from) and in UTC. Which of the two Lightspeed
    reads a filter in is not documented; the earlier one is at or before `since` either way, so
    the read loses nothing and at most reads the offset's hours again (skipped as unchanged), where
    the other would skip every change in those hours under the other reading."""
    stamp = _moment(cursor)
    zone: tzinfo = stamp.tzinfo if stamp is not None and stamp.tzinfo is not None else UTC
    return min(since.astimezone(zone).strftime(FILTER_FORMAT), since.astimezone(UTC).strftime(FILTER_FORMAT))
