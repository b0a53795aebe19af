"""`plan` while another crmsync process (the daemon) holds the writer lock: a plan from the records
the state already holds, that never waits for the writer and never writes.

No vendor is read: the stored records are what the last cycle read, so the plan is what a sync
would write if nothing changed in the systems since. Nothing is written either, twice over:
- the state is opened read-only (SQLite: a `mode=ro` connection, which WAL lets read beside the
  writer without blocking it; PostgreSQL: read-only transactions), so a write fails loudly;
- `ReadOnlyStore` drops the writes a cycle's compute makes whatever the dry-run flag (the
  profiles and verdicts, `save_profiles`, and the resolution snapshot, `save_resolution`), and
  refuses every other write by name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from sqlalchemy.engine import make_url

from sync.config import LoadedConfig
from sync.reports import CycleReport
from sync.state import MembersChange, SegmentChanges, StateStore, VerdictChunk


class ReadOnlyState(RuntimeError):
    """A write reached the read-only state: a bug in the plan-from-stored path."""


def read_only_url(url: str) -> str:
    """The same state, opened so that it cannot be written."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        path = Path(url[len("sqlite:///") :])
        return f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true"
    if url.startswith("postgresql"):
        parsed = make_url(url)
        given = parsed.query.get("options") or ()
        options = [given] if isinstance(given, str) else list(given)
        options.append("-c default_transaction_read_only=on")
        return parsed.update_query_dict({"options": " ".join(options)}).render_as_string(hide_password=False)
    return url


class ReadOnlyStore(StateStore):
    """A state store for planning from what is stored: every read as usual, no write."""

    def __init__(self, url: str) -> None:
        super().__init__(read_only_url(url))

    def save_profiles(
        self,
        members: Mapping[str, Sequence[str]],
        verdicts: Iterable[VerdictChunk],
        aliases: Mapping[str, str],
        run_seq: int,
        links: Sequence[tuple[str, str, str, str]] = (),
        previous: Mapping[str, str] | None = None,
        digest: str | None = None,
        change: MembersChange | None = None,
    ) -> SegmentChanges | None:
        """The compute saves profiles even in a dry run; a stored plan keeps them to itself. (None:
        no segment changes known, which only the segment history would read, and a plan records
        none.)"""
        return None

    def save_resolution(self, inputs: str, parts: Iterable[tuple[str, bytes]]) -> None:
        """Nor is its resolution kept as a snapshot (sync/resolution_snapshot.py); it may reuse one."""
        return None

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise ReadOnlyState("the plan from stored records tried to write to the state")

    set_meta = begin_run = finish_run = record_system_run = set_checkpoint = store_page = _refuse
    remap = record_segments = set_owned = record_results = _refuse


def plan_from_stored(loaded: LoadedConfig, stop: threading.Event) -> CycleReport:
    """The plan from the stored records (see the module's docstring)."""
    from sync.clock import now
    from sync.pipeline import Cycle

    store = ReadOnlyStore(loaded.state_url())
    try:
        return Cycle(loaded, store, clock=now, stop_event=stop).plan_stored()
    finally:
        store.close()
