"""Times as crmsync shows them: one helper for people and one for JSON documents.

- `for_people`: whole seconds in the local time zone (the process's, so `TZ` is respected) with
  the zone's name or offset: `2026-05-01 14:03:07 CEST`.
- `for_json`: ISO-8601 in UTC, whole seconds, `+00:00` (what `datetime.isoformat` has always
  written for crmsync's UTC times): `2026-05-01T12:03:07+00:00`.
- `for_json_in`: the same moment at a zone's offset (`[segments] timezone`, the merchant's
  calendar), for the fields that say what a time was on that calendar:
  `2026-05-01T14:03:07+02:00`.

`for_people` takes a zone too: a report read on the merchant's calendar shows its times there.

Both take a datetime (a naive one is UTC, as everywhere in crmsync) or an ISO-8601 text as the
state stores it; `None` and text that is no timestamp pass through unchanged, so a caller can hand
over whatever a stored row holds. What the state stores is not changed here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any, overload

from mapping.model import parse_timestamp

# A text that looks like an ISO-8601 instant (date, `T` or a space, time); a bare date is a date.
_ISO_INSTANT = re.compile(r"^\s*\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _instant(value: datetime | str) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    if not _ISO_INSTANT.match(value):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


@overload
def for_people(value: datetime, zone: tzinfo | None = None) -> str: ...
@overload
def for_people(value: str, zone: tzinfo | None = None) -> str: ...
@overload
def for_people(value: None, zone: tzinfo | None = None) -> None: ...
def for_people(value: datetime | str | None, zone: tzinfo | None = None) -> str | None:
    """`2026-05-01 14:03:07 CEST`: local time, no fraction of a second, the zone shown; in `zone`
    when given, else the process's zone."""
    if value is None:
        return None
    instant = _instant(value)
    if instant is None:
        return value if isinstance(value, str) else str(value)
    local = instant.astimezone(zone)  # None: the local zone, from TZ or the system's setting
    name = local.tzname() or local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {name}"


@overload
def for_json(value: datetime) -> str: ...
@overload
def for_json(value: str) -> str: ...
@overload
def for_json(value: None) -> None: ...
def for_json(value: datetime | str | None) -> str | None:
    """`2026-05-01T12:03:07+00:00`: UTC, ISO-8601, whole seconds."""
    if value is None:
        return None
    instant = _instant(value)
    if instant is None:
        return value if isinstance(value, str) else str(value)
    return instant.astimezone(UTC).replace(microsecond=0).isoformat()


@overload
def for_json_in(value: datetime, zone: tzinfo | None) -> str: ...
@overload
def for_json_in(value: None, zone: tzinfo | None) -> None: ...
def for_json_in(value: datetime | None, zone: tzinfo | None) -> str | None:
    """`2026-05-01T14:03:07+02:00`: ISO-8601 at `zone`'s offset at that moment, whole seconds
    (`for_json` without a zone)."""
    if value is None or zone is None:
        return for_json(value)
    instant = _instant(value)
    assert instant is not None  # a datetime is always an instant
    return instant.astimezone(zone).replace(microsecond=0).isoformat()


def times_for_json(value: Any) -> Any:
    """A document as stored rows give it, with each time (a key ending in `_at`, or `since`) in
    `for_json`'s form; everything else unchanged."""
    if isinstance(value, dict):
        return {
            key: for_json(item)
            if isinstance(item, str) and (key.endswith("_at") or key == "since")
            else times_for_json(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [times_for_json(item) for item in value]
    return value
