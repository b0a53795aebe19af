"""The incremental window: which changes one pass over a list reads, and the cursor it leaves.

One policy for every vendor:
- a pass reads what changed since the stored cursor minus the look-back (records committed late
  with an older timestamp), with that lower bound fixed for the whole pass;
- mid-pass the checkpoint keeps the stored cursor and the pass (its bound, when it started, the
  newest change seen, the paginator's position), so a crash resumes where the pass stood;
- a finished pass moves the cursor to the newest change it saw, never past the moment the pass
  started (a record changed mid-pass behind the paging position is read next time) and never
  backwards.
A full scan (no modification filter) keeps no cursor: a finished scan starts over next cycle.

Checkpoints of the earlier per-vendor shapes hold no `pass`: a read resumed from one starts its
pass again from the stored cursor, which re-reads records but loses none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors import clock
from mapping.model import SourceRecord, parse_timestamp


@dataclass
class Window:
    incremental: bool
    cursor: str | None
    since: datetime | None
    started: datetime
    newest: datetime | None = None
    at: Any = None
    pages: int = 0

    @classmethod
    def open(cls, checkpoint: Mapping[str, Any] | None, *, lookback: float, incremental: bool = True) -> Window:
        state = dict(checkpoint or {})
        cursor = str(state["cursor"]) if incremental and state.get("cursor") else None
        resumed = state.get("pass")
        if isinstance(resumed, dict):
            return cls(
                incremental,
                cursor,
                _moment(resumed.get("since")),
                _moment(resumed.get("started")) or clock.now(),
                _moment(resumed.get("newest")),
                resumed.get("at"),
                int(resumed.get("pages") or 0),
            )
        since = parse_timestamp(cursor) - timedelta(seconds=lookback) if cursor else None
        return cls(incremental, cursor, since, clock.now())

    def saw(self, records: Sequence[SourceRecord]) -> None:
        self.pages += 1
        for record in records:
            if record.updated_at is not None and (self.newest is None or record.updated_at > self.newest):
                self.newest = record.updated_at

    def resume_at(self, position: Any) -> dict[str, Any]:
        """The checkpoint after a page that is not the last: the next page's position."""
        state: dict[str, Any] = {
            "since": self.since.isoformat() if self.since else None,
            "started": self.started.isoformat(),
            "newest": self.newest.isoformat() if self.newest else None,
            "at": position,
            "pages": self.pages,
        }
        return {"cursor": self.cursor, "pass": state} if self.cursor else {"pass": state}

    def close(self) -> dict[str, Any]:
        """The checkpoint after the last page of a pass."""
        if not self.incremental:
            return {}
        previous = _moment(self.cursor)
        if self.newest is None:
            return {"cursor": self.cursor} if self.cursor else {}
        # Capped at the pass's start, written in the newest record's own offset: a vendor that
        # reads its filter in the offset it is given (Lightspeed, in the shop's time) keeps its bound.
        newest = self.newest if self.newest <= self.started else self.started.astimezone(self.newest.tzinfo)
        if previous is not None and previous > newest:
            return {"cursor": self.cursor}
        return {"cursor": newest.isoformat()}


def _moment(value: Any) -> datetime | None:
    """A stored moment, in the offset it was written in (UTC when it names none)."""
    if not isinstance(value, str) or not value:
        return None
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
