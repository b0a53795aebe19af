"""Streams: a vendor's list declared once, read by the one read loop every connector shares.

A vendor declares how to ask for a page (`fetch`), how it pages (a paginator), how an item
becomes a `SourceRecord` (a `RecordSpec`) and whether the list can be filtered by modification
time. `read_stream` does the rest: the incremental window, re-asking for a short page, loop
detection, and a checkpoint with every page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.paging import Paginator, Reply
from connectors.window import Window
from mapping.model import Kind, SourceRecord, parse_timestamp


def id_text(value: Any) -> str:
    """A record id as a vendor's JSON gives it, as crmsync keeps it: "" (quarantined as a record
    without an id) for null, false, an empty string or anything that is no number or text, so a
    null never becomes the id "None"."""
    if type(value) is str:  # most ids: no other check needed
        return value.strip()
    if type(value) is int:  # the others: a number's text has no spaces to strip (a bool is no int here)
        return str(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return str(value).strip()


def positive_int(text: str) -> int | None:
    """A positive whole number as text ("0042" is 42), else None: most vendors' ids."""
    stripped = text.strip()
    return int(stripped) if stripped.isdigit() and int(stripped) > 0 else None


@dataclass(frozen=True)
class Page:
    """Records read in one request, and the checkpoint to store in the same transaction.

    Storing the checkpoint together with the records is what makes a crash at any point resumable:
    a read restarts from the last checkpoint whose records are known to be stored.

    `number` counts the pages of this pass over the list, from its start (a resumed read goes on
    counting); `total` (items) and `total_pages` are what the vendor said the whole list holds,
    None where it says nothing: for a progress display, never for deciding where a list ends."""

    records: list[SourceRecord]
    checkpoint: dict[str, Any]
    number: int = 0
    total: int | None = None
    total_pages: int | None = None


@dataclass(frozen=True)
class RecordSpec:
    """Where a vendor item keeps its id and its modification time. `stamps` are tried in order
    (a record never modified may carry only its creation time); an unreadable time is None, which
    the content hash makes harmless."""

    id_key: str
    stamps: tuple[str, ...] = ()
    parse_time: Callable[[str], datetime] = parse_timestamp
    id_rule: Callable[[Any], str] = id_text
    never: tuple[str, ...] = ()  # how a vendor writes a time never set (SuperOffice's empty date)

    def parse(self, system: str, kind: Kind, item: Any) -> SourceRecord:
        if type(item) is not dict and not isinstance(item, Mapping):  # a dict skips the ABC check
            return SourceRecord(system, kind, "", None, item)
        return SourceRecord(system, kind, self.id_rule(item.get(self.id_key)), self.updated_at(item), item)

    def updated_at(self, item: Mapping[str, Any]) -> datetime | None:
        for key in self.stamps:
            stamp = item.get(key)
            if isinstance(stamp, str) and stamp and not stamp.startswith(self.never):
                try:
                    return self.parse_time(stamp)
                except ValueError:
                    return None
        return None


def last_per_id(records: list[SourceRecord]) -> list[SourceRecord]:
    """A page with one record per id, the last copy winning: a list that repeats a row (an archive
    joining a person to two of something, a shop answering from two replicas) counts it once."""
    return list({record.id: record for record in records}.values())


@dataclass(frozen=True)
class Stream:
    """One readable list. `fetch(position, window)` asks for the page at `position` (the window's
    `since` is the modification bound); `paginator(position)` makes the paginator, starting at
    `position` (None: the first page); `refine` is a vendor's step over a page's records (adding
    what the list leaves out); `rereads` is how often a short page is asked for again;
    `repeats_boundary` says the next page starts again at the last page's final timestamp (a
    keyset on whole seconds), so the records it sends again unchanged are passed on once."""

    system: str
    kind: Kind
    fetch: Callable[[Any, Window], Reply]
    paginator: Callable[[Any], Paginator]
    records: RecordSpec
    lookback: float = 0.0
    incremental: bool = True
    rereads: int = 1
    refine: Callable[[list[SourceRecord]], list[SourceRecord]] | None = None
    repeats_boundary: bool = False


_NONE = object()


def read_stream(stream: Stream, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
    window = Window.open(checkpoint, lookback=stream.lookback, incremental=stream.incremental)
    paginator = stream.paginator(window.at)
    previous: dict[tuple[str, Any], Any] = {}
    while True:
        reply = confirmed(stream, paginator, window)
        records = [stream.records.parse(stream.system, stream.kind, item) for item in reply.items]
        if stream.refine is not None:
            records = stream.refine(records)
        window.saw(records)
        fresh = records
        if stream.repeats_boundary:
            # Only a copy equal in every field is a repeat: one changed meanwhile without a new
            # timestamp (a vendor whose time is a date) is passed on.
            fresh = [r for r in records if previous.get((r.id, r.updated_at), _NONE) != r.payload]
            previous = {(r.id, r.updated_at): r.payload for r in records}
        pages = paginator.pages(reply)
        if not paginator.advance(reply):
            yield Page(fresh, window.close(), window.pages, reply.total, pages)
            return
        yield Page(fresh, window.resume_at(paginator.position), window.pages, reply.total, pages)


def confirmed(stream: Stream, paginator: Paginator, window: Window) -> Reply:
    """One page, asked for again when it came back short.

    A short page is how a list without totals says it has ended, so a reply that lost an item on
    the way (a cache or proxy glitch) would end the read early or drop the item for good; asking
    again shows it, and the longest answer wins. The cost is one request at the end of each read,
    and one more where the vendor's totals say a page should follow."""
    best = stream.fetch(paginator.position, window)
    attempts = stream.rereads + (1 if paginator.expects_more(best) else 0)
    for _ in range(attempts):
        if not paginator.short(best):
            break
        again = stream.fetch(paginator.position, window)
        if len(again.items) > len(best.items):
            best = again
    return best
