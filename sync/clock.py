"""The one place crmsync reads the clock: `$CRMSYNC_NOW` (ISO-8601) replaces it when set."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from mapping.model import parse_timestamp


class ClockError(ValueError):
    pass


def now() -> datetime:
    override = os.environ.get("CRMSYNC_NOW")
    if override:
        try:
            return parse_timestamp(override)
        except ValueError:
            raise ClockError(f"CRMSYNC_NOW={override!r} is not an ISO-8601 timestamp") from None
    return datetime.now(UTC)
