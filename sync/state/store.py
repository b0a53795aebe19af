"""The state store: one object over one database, made of a part per job, each over the shared
`Database` (engine and serialised writer):

- `runs` (sync/state/runlog.py): runs, per-system outcomes and meta;
- `extracts` (extracts.py): raw records, their mapped rows or quarantine entries, checkpoints;
- `reader` (compute.py): what the compute reads (contacts for resolution, orders as columns);
- `profiles` (profile_writer.py): the resolution and verdicts, and the stored profiles' reads;
- `history` (history.py): segment history, sizes per run, held tiers;
- `explain` (explain.py): `crmsync explain`'s queries;
- `ledger` (ledger.py): what was pushed, what is pending, and the known remote states;
- `erasures` (erasure.py): `crmsync forget`: people erased, and what is left to clear at vendors.

The store's methods hand each call to its part, so callers keep one object to pass around.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from mapping.model import Contact, Kind, RemoteState, SourceRecord, WriteBack, WriteResult
from sync.state.compute import ORDER_DTYPE, ComputeReader, ComputeSnapshot, IdentityRow, OrdersAhead
from sync.state.consistency import consistency_problems
from sync.state.erasure import ErasureStore
from sync.state.erasure_journal import ErasureJournal, FileJournal, journal_path
from sync.state.erasure_journal_table import TableJournal
from sync.state.explain import ExplainQueries
from sync.state.extracts import ExtractStore, Guard, Mapper, StoredPage
from sync.state.history import SegmentHistory, SegmentSnapshot, StoredTiers, TierChanges
from sync.state.ledger import KnownState, Ledger
from sync.state.profile_writer import MembersChange, ProfileStore, SegmentChanges, VerdictChunk
from sync.state.runlog import RunHandle, RunLog
from sync.state.schema import open_schema
from sync.state.sql import Database


def _journal_of(db: Database) -> ErasureJournal | None:
    """The erasure journal: a file beside a SQLite state, a table in a schema beside a PostgreSQL
    one's (sync/state/erasure_journal_table.py); none for a state in memory."""
    if db.is_postgres:
        return TableJournal(db)
    if not db.url.startswith("sqlite:///") or ":memory:" in db.url:
        return None
    return FileJournal(journal_path(Path(db.url[len("sqlite:///") :].split("?", 1)[0])))


class StateStore:
    ORDER_DTYPE = ORDER_DTYPE

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.url = url
        self.is_sqlite = self.db.is_sqlite
        self.engine = self.db.engine
        open_schema(self.db)
        self.runs = RunLog(self.db)
        self.erasures = ErasureStore(self.db, _journal_of(self.db))
        self.extracts = ExtractStore(self.db, self.erasures.forgotten)
        self.reader = ComputeReader(self.db)
        self.profiles = ProfileStore(self.db)
        self.history = SegmentHistory(self.db)
        self.explain = ExplainQueries(self.db)
        self.ledger = Ledger(self.db)

    def close(self) -> None:
        self.db.close()

    def wal_checkpoints_deferred(self) -> AbstractContextManager[None]:
        """No commit copies the write-ahead log into the database file meanwhile (`Database`)."""
        return self.db.wal_checkpoints_deferred()

    def wal_checkpoint(self) -> None:
        self.db.wal_checkpoint()

    def consistency_problems(self) -> list[str]:
        """The state's own consistency check (sync/state/consistency.py): every mapped row, link,
        member and ledger row names a record (and a profile) the state holds. [] when it does."""
        return consistency_problems(self.db)

    # ----- runs and meta ---------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        return self.runs.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.runs.set_meta(key, value)

    def begin_run(self, command: str, now: datetime) -> RunHandle:
        return self.runs.begin_run(command, now)

    def finish_run(self, run: RunHandle, status: str, summary: Mapping[str, Any], now: datetime) -> None:
        self.runs.finish_run(run, status, summary, now)

    def last_seq(self) -> int:
        return self.runs.last_seq()

    def last_started(self, command: str) -> datetime | None:
        return self.runs.last_started(command)

    def record_crash(self, after_seq: int, summary: Mapping[str, Any], now: datetime) -> None:
        self.runs.record_crash(after_seq, summary, now)

    def record_system_run(
        self, run: RunHandle, system: str, status: str, error: str | None, counts: Mapping[str, Any], now: datetime
    ) -> None:
        self.runs.record_system_run(run, system, status, error, counts, now)

    def last_system_runs(self) -> dict[str, dict[str, Any]]:
        return self.runs.last_system_runs()

    def last_run(self) -> dict[str, Any] | None:
        return self.runs.last_run()

    # ----- extract ---------------------------------------------------------------------------------
    def checkpoint(self, system: str, stream: str) -> dict[str, Any] | None:
        return self.extracts.checkpoint(system, stream)

    def set_checkpoint(self, system: str, stream: str, value: Mapping[str, Any] | None, seq: int) -> None:
        self.extracts.set_checkpoint(system, stream, value, seq)

    def contacts_absent(self, system: str, seen: AbstractSet[str]) -> tuple[int, list[str]]:
        return self.extracts.contacts_absent(system, seen)

    def drop_deleted_contacts(
        self, system: str, record_ids: Sequence[str], checkpoint: tuple[str, Mapping[str, Any] | None], seq: int
    ) -> None:
        self.extracts.drop_deleted_contacts(system, record_ids, checkpoint, seq)

    def store_page(
        self,
        system: str,
        kind: Kind,
        records: Sequence[SourceRecord],
        mapper: Mapper,
        run_seq: int,
        checkpoint: tuple[str, Mapping[str, Any] | None] | None = None,
        *,
        force: bool = False,
        guard: Guard | None = None,
    ) -> StoredPage:
        """See `ExtractStore.store_page`: mapped first, then stored with its checkpoint in one
        transaction."""
        return self.extracts.store_page(system, kind, records, mapper, run_seq, checkpoint, force=force, guard=guard)

    def remap(self, system: str, kind: Kind, mapper: Mapper, run_seq: int, guard: Guard | None = None) -> int:
        return self.extracts.remap(system, kind, mapper, run_seq, guard)

    def quarantine_counts(self) -> dict[str, int]:
        return self.extracts.quarantine_counts()

    def quarantine_summary(self) -> dict[str, dict[str, int]]:
        return self.extracts.quarantine_summary()

    def frozen_counts(self) -> dict[str, int]:
        return self.extracts.frozen_counts()

    # ----- compute ---------------------------------------------------------------------------------
    def iter_contacts(self) -> Iterator[tuple[Contact, int]]:
        return self.reader.iter_contacts()

    def compute_snapshot(self) -> AbstractContextManager[ComputeSnapshot]:
        """The compute's reads (identity rows, order arrays) on one read transaction: their contact
        row numbers agree."""
        return self.reader.snapshot()

    def orders_ahead(self, base_currency: str, marks: list[list[int]], numbering: int | None) -> OrdersAhead:
        """Every order read on threads while the compute resolves (sync/state/compute.py)."""
        return self.reader.orders_ahead(base_currency, marks, numbering)

    def identity_rows(self) -> Iterator[IdentityRow]:
        return self.reader.identity_rows()

    def previous_assignment(self) -> tuple[dict[str, str], dict[str, int]]:
        return self.reader.previous_assignment()

    def profile_ages(self, ids: Iterable[str] | None = None) -> tuple[dict[str, int], int]:
        return self.reader.profile_ages(ids)

    def save_resolution(self, inputs: str, parts: Iterable[tuple[str, bytes]]) -> None:
        self.reader.save_resolution(inputs, parts)

    # ----- profiles --------------------------------------------------------------------------------
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
        return self.profiles.save_profiles(members, verdicts, aliases, run_seq, links, previous, digest, change)

    def segment_counts(self) -> dict[str, int]:
        return self.profiles.segment_counts()

    def profiles_spanning_systems(self) -> int:
        return self.profiles.profiles_spanning_systems()

    def profile_traits(self) -> dict[str, dict[str, Any]]:
        return self.profiles.profile_traits()

    # ----- segment history -------------------------------------------------------------------------
    def held_tiers(self) -> dict[str, tuple[str, datetime]]:
        return self.history.held_tiers()

    def stored_tiers(self) -> StoredTiers:
        return self.history.stored_tiers()

    def record_segments(
        self,
        run_seq: int,
        now: datetime,
        members: Mapping[str, Iterable[str]],
        snapshot: Sequence[tuple[str, int, int]],
        tiers: Mapping[str, tuple[str, datetime]] | TierChanges,
        totals: tuple[int, int],
        changes: SegmentChanges | None = None,
    ) -> None:
        self.history.record_segments(run_seq, now, members, snapshot, tiers, totals, changes)

    def segment_snapshots(self) -> list[SegmentSnapshot]:
        return self.history.segment_snapshots()

    def segment_history_of(self, segment: str) -> list[tuple[str, str, str | None]]:
        return self.history.segment_history_of(segment)

    def alias_targets(self) -> dict[str, str]:
        """Retired profile id -> the id holding its person now (alias chains followed)."""
        from sync.state.explain import alias_targets

        with self.db.engine.connect() as conn:
            return alias_targets(conn)

    def profile_segments_and_traits(self) -> list[tuple[list[str], str]]:
        return self.history.profile_segments_and_traits()

    def members_since(self, segment: str) -> list[tuple[str, str]]:
        return self.history.members_since(segment)

    def still_members(self, since_seq: int) -> dict[str, int]:
        return self.history.still_members(since_seq)

    def current_members(self) -> dict[str, list[str]]:
        return self.history.current_members()

    def transitions(self, since_seq: int) -> list[tuple[str, str | None, str, int]]:
        return self.history.transitions(since_seq)

    def segments_before(self, profile_ids: Sequence[str], seq: int) -> dict[str, list[str]]:
        return self.history.segments_before(profile_ids, seq)

    # ----- explain ---------------------------------------------------------------------------------
    def profiles_for(
        self,
        *,
        record: tuple[str, str] | None = None,
        email_key: str | None = None,
        phone: str | None = None,
        profile: str | None = None,
    ) -> list[str]:
        return self.explain.profiles_for(record=record, email_key=email_key, phone=phone, profile=profile)

    def profile_detail(self, profile_id: str) -> dict[str, Any]:
        return self.explain.profile_detail(profile_id)

    # ----- plan and apply --------------------------------------------------------------------------
    def known_states(self, system: str) -> dict[str, KnownState]:
        return self.ledger.known_states(system)

    def current_states(self, system: str) -> dict[str, RemoteState]:
        return self.ledger.current_states(system)

    def set_owned(self, system: str, states: Mapping[str, RemoteState], run_seq: int) -> None:
        self.ledger.set_owned(system, states, run_seq)

    def contact_ids_after(self, system: str, after: str, limit: int) -> list[str]:
        return self.ledger.contact_ids_after(system, after, limit)

    def record_results(
        self, system: str, changes: Sequence[WriteBack], results: Iterable[WriteResult], run_seq: int, now: datetime
    ) -> None:
        self.ledger.record_results(system, changes, results, run_seq, now)

    def pending_records(self) -> list[dict[str, Any]]:
        return self.ledger.pending_records()
