"""The state store: SQLAlchemy Core over a SQLite file (WAL) by default, PostgreSQL by URL.

A module per job: schema.py (the tables, and what each holds), sql.py (the shared database and SQL
through the driver's cursor, the one upsert), runlog.py, extracts.py, compute.py, profile_writer.py,
history.py, explain.py, ledger.py, consistency.py (the state's own check), and store.py (StateStore,
which holds one part per job and hands each call to it). The names below are the package's public
ones: every `from sync.state import ...` written against the single module still works.
"""

from sync.state.compute import ORDER_DTYPE, ComputeReader, ComputeSnapshot
from sync.state.explain import ExplainQueries
from sync.state.extracts import (
    ExtractStore,
    Guard,
    MappedPage,
    Mapper,
    StoredPage,
    canonical_json,
    contact_from_row,
    content_hash,
)
from sync.state.history import SegmentHistory, SegmentSnapshot, StoredTiers, TierChanges
from sync.state.ledger import KnownState, Ledger
from sync.state.profile_writer import MembersChange, ProfileStore, SegmentChanges, VerdictChunk, segment_list_json
from sync.state.runlog import RunHandle, RunLog
from sync.state.schema import (
    SCHEMA_VERSION,
    StateVersionError,
    checkpoints,
    contacts,
    identity_links,
    meta,
    metadata,
    orders,
    pending,
    profile_aliases,
    profile_members,
    profile_tiers,
    profiles,
    pushed,
    quarantine,
    raw_records,
    runs,
    segment_history,
    segment_runs,
    system_runs,
)
from sync.state.sql import Database
from sync.state.store import StateStore

__all__ = [
    "ORDER_DTYPE",
    "SCHEMA_VERSION",
    "ComputeReader",
    "ComputeSnapshot",
    "Database",
    "ExplainQueries",
    "ExtractStore",
    "Guard",
    "KnownState",
    "Ledger",
    "MappedPage",
    "Mapper",
    "MembersChange",
    "ProfileStore",
    "RunHandle",
    "RunLog",
    "SegmentChanges",
    "SegmentHistory",
    "SegmentSnapshot",
    "StateStore",
    "StateVersionError",
    "StoredPage",
    "StoredTiers",
    "TierChanges",
    "VerdictChunk",
    "canonical_json",
    "checkpoints",
    "contact_from_row",
    "contacts",
    "content_hash",
    "identity_links",
    "meta",
    "metadata",
    "orders",
    "pending",
    "profile_aliases",
    "profile_members",
    "profile_tiers",
    "profiles",
    "pushed",
    "quarantine",
    "raw_records",
    "runs",
    "segment_history",
    "segment_list_json",
    "segment_runs",
    "system_runs",
]
