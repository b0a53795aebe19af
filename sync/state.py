"""The state store: SQLAlchemy Core over a SQLite file (WAL) by default, PostgreSQL by URL.

What lives here, and why it is enough to resume after a crash at any point:
- raw_records: every vendor record as last read, with its content hash. An unchanged hash is
  skipped on arrival, so it costs nothing downstream.
- contacts / orders / quarantine: the mapped form of each raw record (or why it cannot be mapped),
  written in the same transaction as the raw record and the read checkpoint that covers it.
- checkpoints: where each system's read resumes.
- profiles, profile_members, identity_links, profile_aliases: the identity resolution (which
  identifier joined which records) and each profile's verdict.
- pushed: what each system last accepted from crmsync (the ledger), written per batch right
  after the vendor confirmed it. Writes are idempotent, so a batch repeated after a crash between
  the vendor's answer and this ledger changes nothing.
- pending: records a vendor rejected, retried every cycle until accepted.
- runs / system_runs: one row per cycle and per system, for `status`.
- segment_history: every entry of a profile into a segment and its exit, with run and time, so the
  report can say how stable a segment is and where people go when they leave.
- segment_runs: each segment's size and revenue at every (non-dry) run: sizes over time.
- profile_tiers: each profile's loyalty tier and the last time it qualified for it (hysteresis).

Every change carries the sequence number of the run that made it; comparing a raw record's
`changed_seq` with the ledger's `pushed_seq` tells which of the two is the newer word on a record.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mapping.model import (
    Contact,
    Kind,
    Membership,
    Order,
    Rejection,
    RemoteState,
    SourceRecord,
    WriteBack,
    WriteResult,
    parse_timestamp,
)
from mapping.normalize.email import email_match_key

SCHEMA_VERSION = "5"

metadata = MetaData()

raw_records = Table(
    "raw_records",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("updated_at", String(40)),
    Column("changed_seq", Integer, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("email", String(320)),
    Column("email_key", String(320), index=True),
    Column("email_role", Boolean, nullable=False, default=False),
    Column("phone", String(64), index=True),
    Column("given_name", String(255)),
    Column("phone_kind", String(16)),
    Column("details", Text, nullable=False, default="{}"),
    Column("updated_at", String(40)),
    Column("owned", Text, nullable=False),
    Column("links", Text, nullable=False, default="[]"),
    Column("changed_seq", Integer, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("order_id", String(255), primary_key=True),
    Column("customer_id", String(255)),
    Column("email", String(320)),
    Column("email_key", String(320)),
    Column("amount", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_epoch", BigInteger, nullable=False),
    Column("counts", Boolean, nullable=False),
    Column("changed_seq", Integer, nullable=False),
    Index("ix_orders_customer", "system", "customer_id"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("since_seq", Integer, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("seq", Integer, nullable=False),
)

profiles = Table(
    "profiles",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("created_seq", Integer, nullable=False),
    Column("segments", Text, nullable=False),
    Column("tier", String(64)),
    Column("traits", Text, nullable=False),
    # A hash of everything `traits` is built from: an unchanged profile is recognised without
    # building its JSON or reading the stored one.
    Column("fingerprint", BigInteger, nullable=False),
    Column("updated_seq", Integer, nullable=False),
)

profile_members = Table(
    "profile_members",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("profile_id", String(64), nullable=False, index=True),
)

identity_links = Table(
    "identity_links",
    metadata,
    Column("a", String(320), primary_key=True),
    Column("b", String(320), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("value", String(320), nullable=False),
)

profile_aliases = Table(
    "profile_aliases",
    metadata,
    Column("alias", String(64), primary_key=True),
    Column("profile_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
)

pushed = Table(
    "pushed",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("state", Text, nullable=False),
    Column("pushed_seq", Integer, nullable=False),
    Column("pushed_at", String(40), nullable=False),
)

pending = Table(
    "pending",
    metadata,
    Column("system", String(64), primary_key=True),
    Column("record_id", String(255), primary_key=True),
    Column("message", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_at", String(40), nullable=False),
    Column("last_at", String(40), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False, unique=True),
    Column("command", String(32), nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("status", String(16), nullable=False),
    Column("summary", Text),
)

system_runs = Table(
    "system_runs",
    metadata,
    Column("run_seq", Integer, primary_key=True),
    Column("system", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("finished_at", String(40), nullable=False),
    Column("counts", Text, nullable=False),
)

segment_history = Table(
    "segment_history",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("segment", String(64), primary_key=True),
    Column("entered_seq", Integer, primary_key=True),
    Column("entered_at", String(40), nullable=False),
    Column("exited_seq", Integer),
    Column("exited_at", String(40)),
    Index("ix_segment_history_exited", "exited_seq"),
    Index("ix_segment_history_segment", "segment", "entered_seq"),
)

segment_runs = Table(
    "segment_runs",
    metadata,
    Column("seq", Integer, primary_key=True),
    Column("segment", String(64), primary_key=True),
    Column("at", String(40), nullable=False),
    Column("size", Integer, nullable=False),
    Column("revenue_cents", BigInteger, nullable=False),
    Column("profiles", Integer, nullable=False),
    Column("total_revenue_cents", BigInteger, nullable=False),
)

profile_tiers = Table(
    "profile_tiers",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("tier", String(64), nullable=False),
    Column("qualified_at", String(40), nullable=False),
    Column("since_seq", Integer, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


# Built once: `json.dumps` with any non-default option builds a new encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_UNICODE_JSON = json.JSONEncoder(ensure_ascii=False)


def canonical_json(payload: Any) -> str:
    return _CANONICAL.encode(payload)


@functools.lru_cache(maxsize=4096)
def segment_list_json(segments: frozenset[str]) -> str:
    """A profile's segments as stored: a sorted JSON list. Few distinct sets exist, so cached."""
    return json.dumps(sorted(segments))


def _placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _raw_rows(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows through the driver's own cursor, inside `conn`'s transaction. `?` marks parameters."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql.replace("?", _placeholder(conn)), tuple(params))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _raw_many(conn: Connection, sql: str, rows: Iterable[Sequence[Any]], chunk: int = 20_000) -> int:
    """executemany through the driver's cursor, in chunks, inside `conn`'s transaction.

    The bulk writes of a cycle (a row per profile, per member, per segment entry) go this way: at a
    million profiles, building a dict per row for SQLAlchemy costs more than the database's work."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = sql.replace("?", _placeholder(conn))
    written = 0
    try:
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, chunk)):
            cursor.executemany(statement, batch)
            written += len(batch)
    finally:
        cursor.close()
    return written


def _insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    marks = ", ".join("?" for _ in columns)
    return _raw_many(conn, f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", rows)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunHandle:
    run_id: str
    seq: int


@dataclass(frozen=True)
class StoredPage:
    received: int
    changed: int
    quarantined: int


@dataclass(frozen=True)
class KnownState:
    """What crmsync believes a remote record holds now: the newer of the last read and the ledger."""

    owned: RemoteState
    changed_seq: int
    pushed: RemoteState | None
    pushed_seq: int

    @property
    def current(self) -> RemoteState:
        if self.pushed is not None and (self.pushed_seq >= self.changed_seq or not self.owned.known):
            return self.pushed
        return self.owned


Mapper = Callable[[SourceRecord], Contact | Order | Rejection]


class StateVersionError(RuntimeError):
    """The state database was written with a different schema."""


@dataclass(frozen=True)
class SegmentSnapshot:
    """One segment at one run."""

    seq: int
    at: str
    segment: str
    size: int
    revenue_cents: int
    profiles: int
    total_revenue_cents: int


@dataclass(frozen=True)
class VerdictChunk:
    """Verdicts of consecutive profiles (ascending id) as `save_profiles` takes them: the traits
    JSON is asked for only for the profiles that need writing."""

    profiles: Sequence[str]
    memberships: Sequence[Membership]
    fingerprints: Sequence[int]  # signed 64-bit, one per profile
    traits: Callable[[Sequence[int]], list[str]]  # positions in this chunk -> their traits JSON

    @classmethod
    def of(cls, rows: Sequence[tuple[str, Membership, str | Mapping[str, Any]]]) -> VerdictChunk:
        """From (profile id, membership, traits) rows, traits as JSON text or a mapping."""
        texts = [t if isinstance(t, str) else json.dumps(t, default=str) for _, _, t in rows]
        prints = [
            int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "big", signed=True) for t in texts
        ]
        return cls([p for p, _, _ in rows], [m for _, m, _ in rows], prints, lambda at: [texts[i] for i in at])


@dataclass
class SegmentChanges:
    """(profile id, segment) pairs a run opened and closed, as `save_profiles` saw them."""

    started: list[tuple[str, str]] = field(default_factory=list)
    ended: list[tuple[str, str]] = field(default_factory=list)
    stored_before: bool = False  # whether any profile was stored before this run


class SegmentStore:
    """Membership history, sizes per run and held tiers. Mixed into StateStore."""

    engine: Engine

    def _writing(self) -> Any:  # provided by StateStore
        raise NotImplementedError

    def _upsert(self, conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        raise NotImplementedError  # provided by StateStore

    def held_tiers(self) -> dict[str, tuple[str, datetime]]:
        """Profile id -> (tier, last time it qualified for it)."""
        with self.engine.connect() as conn:
            return {
                pid: (tier, parse_timestamp(at))
                for pid, tier, at in conn.execute(
                    select(profile_tiers.c.profile_id, profile_tiers.c.tier, profile_tiers.c.qualified_at)
                ).all()
            }

    def record_segments(
        self,
        run_seq: int,
        now: datetime,
        members: Mapping[str, Iterable[str]],
        snapshot: Sequence[tuple[str, int, int]],
        tiers: Mapping[str, tuple[str, datetime]],
        totals: tuple[int, int],
        changes: SegmentChanges | None = None,
    ) -> None:
        """After a run: open a history entry for every new (profile, segment), close the ones that
        ended (a profile merged away leaves all its segments), store each segment's size and
        revenue (`snapshot`: segment, size, revenue in cents) and the tiers held now.

        `changes`, when `save_profiles` returned them, say what to open and close without reading
        every open entry; without them the open entries are compared with `members`."""
        stamp = now.isoformat()
        with self._writing() as conn:
            # In profile-id order either way: rows written in key order cost a SQLite b-tree a
            # third of what the same rows in random order cost.
            if changes is not None:
                started, ended = changes.started, changes.ended
            else:
                open_now: set[tuple[str, str]] = set(
                    _raw_rows(conn, "SELECT profile_id, segment FROM segment_history WHERE exited_seq IS NULL")
                )
                wanted = {(pid, seg) for pid, segs in members.items() for seg in segs}
                ended = sorted(open_now - wanted)
                started = sorted(wanted - open_now)
                del open_now, wanted
            self._upsert(conn, meta, [{"key": "history_seq", "value": str(run_seq)}])
            _raw_many(
                conn,
                "UPDATE segment_history SET exited_seq = ?, exited_at = ? "
                "WHERE profile_id = ? AND segment = ? AND exited_seq IS NULL",
                ((run_seq, stamp, pid, seg) for pid, seg in ended),
            )
            _insert_rows(
                conn,
                segment_history,
                ("profile_id", "segment", "entered_seq", "entered_at"),
                ((pid, seg, run_seq, stamp) for pid, seg in started),
            )
            conn.execute(delete(segment_runs).where(segment_runs.c.seq == run_seq))
            _insert_rows(
                conn,
                segment_runs,
                ("seq", "segment", "at", "size", "revenue_cents", "profiles", "total_revenue_cents"),
                ((run_seq, segment, stamp, size, revenue, totals[0], totals[1]) for segment, size, revenue in snapshot),
            )
            previous = {
                pid: (tier, int(since))
                for pid, tier, since in _raw_rows(conn, "SELECT profile_id, tier, since_seq FROM profile_tiers")
            }
            conn.execute(delete(profile_tiers))
            _insert_rows(
                conn,
                profile_tiers,
                ("profile_id", "tier", "qualified_at", "since_seq"),
                (
                    (
                        pid,
                        tier,
                        at.isoformat(),
                        previous[pid][1] if previous.get(pid, ("", 0))[0] == tier else run_seq,
                    )
                    for pid, (tier, at) in tiers.items()
                ),
            )

    # ----- what the report reads -------------------------------------------------------------------
    def segment_snapshots(self) -> list[SegmentSnapshot]:
        with self.engine.connect() as conn:
            return [
                SegmentSnapshot(
                    int(r.seq),
                    r.at,
                    r.segment,
                    int(r.size),
                    int(r.revenue_cents),
                    int(r.profiles),
                    int(r.total_revenue_cents),
                )
                for r in conn.execute(select(segment_runs).order_by(segment_runs.c.seq, segment_runs.c.segment))
            ]

    def still_members(self, since_seq: int) -> dict[str, int]:
        """Per segment: members now who have been in it without a break since run `since_seq`."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(segment_history.c.segment, func.count())
                .where(segment_history.c.exited_seq.is_(None), segment_history.c.entered_seq <= since_seq)
                .group_by(segment_history.c.segment)
            ).all()
        return {segment: int(n) for segment, n in rows}

    def current_members(self) -> dict[str, list[str]]:
        """Profile id -> its segments now (open history entries)."""
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for pid, segment in conn.execute(
                select(segment_history.c.profile_id, segment_history.c.segment).where(
                    segment_history.c.exited_seq.is_(None)
                )
            ):
                out.setdefault(pid, []).append(segment)
        return out

    def transitions(self, since_seq: int) -> list[tuple[str, str | None, str, int]]:
        """Changes at runs after `since_seq`: (profile, segment left or None for a new profile's
        entry, segment entered, run). Entries and exits pair up per profile and run."""
        entered = segment_history.alias("entered")
        with self.engine.connect() as conn:
            entries = conn.execute(
                select(entered.c.profile_id, entered.c.segment, entered.c.entered_seq).where(
                    entered.c.entered_seq > since_seq
                )
            ).all()
            exits = conn.execute(
                select(segment_history.c.profile_id, segment_history.c.segment, segment_history.c.exited_seq).where(
                    segment_history.c.exited_seq > since_seq
                )
            ).all()
        left: dict[tuple[str, int], list[str]] = {}
        for pid, segment, seq in exits:
            left.setdefault((pid, int(seq)), []).append(segment)
        out: list[tuple[str, str | None, str, int]] = []
        for pid, segment, seq in entries:
            gone = left.get((pid, int(seq)), [])
            family = _family(segment)
            match = [g for g in gone if _family(g) == family] if family else []
            out.append((pid, match[0] if match else None, segment, int(seq)))
        return sorted(out, key=lambda t: (t[3], t[0], t[2]))

    def segments_before(self, profile_ids: Sequence[str], seq: int) -> dict[str, list[str]]:
        """The segments each profile was in just before run `seq`."""
        out: dict[str, list[str]] = {}
        ids = sorted(set(profile_ids))
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                for pid, segment, entered, exited in conn.execute(
                    select(
                        segment_history.c.profile_id,
                        segment_history.c.segment,
                        segment_history.c.entered_seq,
                        segment_history.c.exited_seq,
                    ).where(segment_history.c.profile_id.in_(ids[start : start + 500]))
                ):
                    if entered < seq and (exited is None or exited >= seq):
                        out.setdefault(pid, []).append(segment)
        return out

    def profile_traits(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            return {
                pid: json.loads(traits)
                for pid, traits in conn.execute(select(profiles.c.profile_id, profiles.c.traits))
            }

    def quarantine_summary(self) -> dict[str, dict[str, int]]:
        """CONTRACTS §2: quarantined records by reason and by system."""
        with self.engine.connect() as conn:
            by_reason = conn.execute(select(quarantine.c.reason, func.count()).group_by(quarantine.c.reason)).all()
            by_system = conn.execute(select(quarantine.c.system, func.count()).group_by(quarantine.c.system)).all()
        return {
            "by_reason": {reason: int(n) for reason, n in sorted(by_reason)},
            "by_system": {system: int(n) for system, n in sorted(by_system)},
        }


def _family(segment: str) -> str | None:
    """Segments of one family exclude each other: a profile leaving one enters another."""
    if segment.startswith(("lifecycle-", "tier-")):
        return segment.split("-", 1)[0]
    if segment in ("friends", "supporters", "acquaintances", "passers-by"):
        return "quadrant"
    return None


class StateStore(SegmentStore):
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30} if self.is_sqlite else {}
        self.engine: Engine = create_engine(url, connect_args=connect_args)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # SQLite has one writer; serialising our own writers avoids busy-waiting on its lock.
        self._write_lock = threading.Lock()
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
            if found is None:
                conn.execute(insert(meta).values(key="schema_version", value=SCHEMA_VERSION))
            elif found != SCHEMA_VERSION:
                raise StateVersionError(
                    f"the state at {url.split('///')[-1]} was written by another crmsync version "
                    f"(schema {found}, this one reads {SCHEMA_VERSION}); move it aside and backfill"
                )

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """One serialised write transaction."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _upsert(self, conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        keys = [c.name for c in table.primary_key.columns]
        builder = sqlite_insert if self.is_sqlite else pg_insert
        stmt = builder(table)
        updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates), list(rows))

    # ----- meta ----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
            return str(value) if value is not None else None

    def set_meta(self, key: str, value: str) -> None:
        with self._writing() as conn:
            self._upsert(conn, meta, [{"key": key, "value": value}])

    # ----- runs ----------------------------------------------------------------------------------
    def begin_run(self, command: str, now: datetime) -> RunHandle:
        run_id = str(uuid.uuid4())
        with self._writing() as conn:
            seq = conn.execute(
                insert(runs).values(run_id=run_id, command=command, started_at=now.isoformat(), status="running")
            ).inserted_primary_key
        assert seq is not None
        return RunHandle(run_id, int(seq[0]))

    def finish_run(self, run: RunHandle, status: str, summary: Mapping[str, Any], now: datetime) -> None:
        with self._writing() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.seq == run.seq)
                .values(finished_at=now.isoformat(), status=status, summary=json.dumps(summary))
            )

    def record_system_run(
        self, run: RunHandle, system: str, status: str, error: str | None, counts: Mapping[str, Any], now: datetime
    ) -> None:
        with self._writing() as conn:
            self._upsert(
                conn,
                system_runs,
                [
                    {
                        "run_seq": run.seq,
                        "system": system,
                        "status": status,
                        "error": error,
                        "finished_at": now.isoformat(),
                        "counts": json.dumps(counts),
                    }
                ],
            )

    def last_system_runs(self) -> dict[str, dict[str, Any]]:
        """Per system: the latest cycle and the latest successful one."""
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(system_runs).order_by(system_runs.c.run_seq)).mappings()
            for row in rows:
                entry = out.setdefault(row["system"], {"last": None, "last_ok": None})
                record = {
                    "status": row["status"],
                    "error": row["error"],
                    "finished_at": row["finished_at"],
                    "counts": json.loads(row["counts"]),
                }
                entry["last"] = record
                if row["status"] == "ok":
                    entry["last_ok"] = record
        return out

    def last_run(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(runs).order_by(runs.c.seq.desc()).limit(1)).mappings().first()
            return dict(row) if row else None

    # ----- extract -------------------------------------------------------------------------------
    def checkpoint(self, system: str, stream: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(checkpoints.c.value).where(checkpoints.c.system == system, checkpoints.c.stream == stream)
            ).scalar()
        return json.loads(value) if value is not None else None

    def set_checkpoint(self, system: str, stream: str, value: Mapping[str, Any] | None, seq: int) -> None:
        with self._writing() as conn:
            self._put_checkpoint(conn, system, stream, value, seq)

    def _put_checkpoint(
        self, conn: Connection, system: str, stream: str, value: Mapping[str, Any] | None, seq: int
    ) -> None:
        if value is None:
            conn.execute(delete(checkpoints).where(checkpoints.c.system == system, checkpoints.c.stream == stream))
        else:
            self._upsert(
                conn, checkpoints, [{"system": system, "stream": stream, "value": json.dumps(value), "seq": seq}]
            )

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
        guard: Callable[[list[Contact | Order | Rejection]], None] | None = None,
    ) -> StoredPage:
        """Store one page of records and its checkpoint in one transaction. Records whose content
        hash is unchanged are skipped (unless `force`); changed ones are mapped now, so nothing
        downstream re-reads raw payloads. The rows go through the driver's `executemany` with
        statements built once: per record, SQLAlchemy's per-row work would cost more than SQLite's.
        `guard` sees the mapped records before anything is written and may refuse the page (the
        drift guard): its exception rolls the transaction back, checkpoint included."""
        unique = {r.id: r for r in records}
        texts = {rid: canonical_json(r.payload) for rid, r in unique.items()}
        hashes = {rid: content_hash(text) for rid, text in texts.items()}
        quarantined = 0
        with self._writing() as conn:
            ids = list(unique)
            existing = _stored_hashes(conn, system, kind.value, ids)
            changed = ids if force else [rid for rid in ids if existing.get(rid) != hashes[rid]]
            raw_rows = []
            mapped_rows: list[tuple[Any, ...]] = []
            bad_rows: list[tuple[Any, ...]] = []
            # A record stored before may have a mapped row or a quarantine entry to replace; a new
            # one has neither (raw rows are never deleted), so only those need the deletes below.
            good_before: list[str] = []
            bad_before: list[str] = []
            results = [mapper(unique[rid]) for rid in changed]
            if guard is not None:
                guard(results)
            for rid, result in zip(changed, results, strict=True):
                record = unique[rid]
                stamp = record.updated_at
                raw_rows.append(
                    (system, kind.value, rid, hashes[rid], texts[rid], stamp.isoformat() if stamp else None, run_seq)
                )
                if isinstance(result, Rejection):
                    quarantined += 1
                    bad_rows.append((system, kind.value, rid, result.reason, result.message, hashes[rid], run_seq))
                    if rid in existing:
                        bad_before.append(rid)
                else:
                    row = _contact_row(result, run_seq) if isinstance(result, Contact) else _order_row(result, run_seq)
                    mapped_rows.append(row)
                    if rid in existing:
                        good_before.append(rid)
            mapped_table = contacts if kind is Kind.CONTACT else orders
            id_column = mapped_table.c.record_id if kind is Kind.CONTACT else mapped_table.c.order_id
            _upsert_many(conn, raw_records, raw_rows)
            _upsert_many(conn, mapped_table, mapped_rows)
            _upsert_many(conn, quarantine, bad_rows)
            for start in range(0, len(bad_before), 500):
                conn.execute(
                    delete(mapped_table).where(
                        mapped_table.c.system == system, id_column.in_(bad_before[start : start + 500])
                    )
                )
            for start in range(0, len(good_before), 500):
                conn.execute(
                    delete(quarantine).where(
                        quarantine.c.system == system,
                        quarantine.c.kind == kind.value,
                        quarantine.c.record_id.in_(good_before[start : start + 500]),
                    )
                )
            if checkpoint is not None:
                self._put_checkpoint(conn, system, checkpoint[0], checkpoint[1], run_seq)
        return StoredPage(len(records), len(changed), quarantined)

    def remap(self, system: str, kind: Kind, mapper: Mapper, run_seq: int) -> int:
        """Map every stored raw record of a system again (after the mapping code changed)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(raw_records.c.record_id, raw_records.c.payload, raw_records.c.updated_at).where(
                    raw_records.c.system == system, raw_records.c.kind == kind.value
                )
            ).all()
        records = [
            SourceRecord(system, kind, rid, parse_timestamp(stamp) if stamp else None, json.loads(payload))
            for rid, payload, stamp in rows
        ]
        for start in range(0, len(records), 1000):
            self.store_page(system, kind, records[start : start + 1000], mapper, run_seq, force=True)
        return len(records)

    # ----- compute -------------------------------------------------------------------------------
    def iter_contacts(self) -> Iterator[tuple[Contact, int]]:
        with self.engine.connect() as conn:
            for row in conn.execute(select(contacts).order_by(contacts.c.system, contacts.c.record_id)).mappings():
                yield contact_from_row(row), int(row["changed_seq"])

    def iter_orders(self) -> Iterator[Order]:
        with self.engine.connect() as conn:
            for row in conn.execute(select(orders).order_by(orders.c.system, orders.c.order_id)).mappings():
                yield Order(
                    system=row["system"],
                    id=row["order_id"],
                    customer_id=row["customer_id"],
                    email=row["email"],
                    amount=Decimal(row["amount"]),
                    currency=row["currency"],
                    created_at=parse_timestamp(row["created_at"]),
                    counts=bool(row["counts"]),
                )

    def identity_rows(
        self,
    ) -> Iterator[tuple[int, str, str | None, bool, str | None, str | None, str, str | None]]:
        """Per contact, what identity resolution reads, without building a Contact: row number,
        key (`system:id`), email match key, role flag, E.164 phone, phone kind, links (JSON) and
        given name. Streamed through the driver's own cursor: at a million rows the ORM-free path is
        several times faster, and plain SQL reads the same on SQLite and PostgreSQL."""
        sql = (
            "SELECT rowid, system || ':' || record_id, email_key, email_role, phone, phone_kind, links, given_name "
            "FROM contacts"
        )
        for chunk in self._raw_chunks(sql, 50_000):
            for rowid, key, email_key, role, phone, kind, links, given in chunk:
                yield rowid, key, email_key, bool(role), phone, kind, links, given

    ORDER_DTYPE = np.dtype(
        [("order", "i8"), ("contact", "i8"), ("amount", "f8"), ("created", "i8"), ("counts", "?"), ("plain", "?")]
    )

    def order_arrays(self, base_currency: str, chunk: int = 200_000) -> Iterator[npt.NDArray[Any]]:
        """Every order as structured arrays (order row number, contact row number or -1, amount,
        created epoch, counts, plain), filled by numpy straight from the driver's rows: no Python
        object per order. `plain` marks the orders these columns describe completely: they name a
        stored contact and are in the base currency (nearly all). The rest need `other_order_rows`."""
        sql = (
            "SELECT o.rowid, COALESCE(c.rowid, -1), CAST(o.amount AS REAL), o.created_epoch, o.counts, "
            f"c.rowid IS NOT NULL AND o.currency IN ('', {self._literal(base_currency)}) FROM orders o "
            "LEFT JOIN contacts c ON c.system = o.system AND c.record_id = o.customer_id"
        )
        for rows in self._raw_chunks(sql, chunk):
            yield np.fromiter(rows, dtype=self.ORDER_DTYPE, count=len(rows))

    def other_order_rows(self, order_rows: Sequence[int], batch: int = 500) -> Iterator[tuple[Any, ...]]:
        """The rest, by the order row numbers `order_arrays` marked not plain (orders in another
        currency, and guests' orders, whose customer record crmsync does not hold): contact row
        number or None, email match key, amount, currency, created epoch, counts, system. Looked up
        by row number, not found by a second join over every order: a shop with guest checkout
        would pay for the whole join twice."""
        head = (
            "SELECT c.rowid, o.email_key, CAST(o.amount AS REAL), o.currency, o.created_epoch, o.counts, o.system "
            "FROM orders o LEFT JOIN contacts c ON c.system = o.system AND c.record_id = o.customer_id "
            "WHERE o.rowid IN "
        )
        ordered = sorted(order_rows)
        with self.engine.connect() as conn:
            for start in range(0, len(ordered), batch):
                part = ordered[start : start + batch]
                marks = ", ".join("?" for _ in part)
                yield from _raw_rows(conn, f"{head}({marks}) ORDER BY o.rowid", part)

    @staticmethod
    def _literal(code: str) -> str:
        if not code.isalpha() or len(code) != 3:
            raise ValueError(f"not a currency code: {code!r}")
        return f"'{code}'"

    def _raw_chunks(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        with self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql)
                while rows := cursor.fetchmany(size):
                    yield rows
            finally:
                cursor.close()

    def previous_assignment(self) -> tuple[dict[str, str], dict[str, int]]:
        """Record key -> profile id, and profile id -> creation sequence (its age)."""
        with self.engine.connect() as conn:
            assignment = {
                f"{system}:{rid}": pid
                for system, rid, pid in conn.execute(
                    select(profile_members.c.system, profile_members.c.record_id, profile_members.c.profile_id)
                ).all()
            }
            ages = {pid: int(seq) for pid, seq in conn.execute(select(profiles.c.profile_id, profiles.c.created_seq))}
        return assignment, ages

    def save_profiles(
        self,
        members: Mapping[str, Sequence[str]],
        verdicts: Iterable[VerdictChunk],
        aliases: Mapping[str, str],
        run_seq: int,
        links: Sequence[tuple[str, str, str, str]] = (),
        previous: Mapping[str, str] | None = None,
    ) -> SegmentChanges | None:
        """Store the resolution: the record keys (`system:id`) of each profile, which identifier
        joined which records, and per profile its membership and traits.

        Only what changed is written: `verdicts` come in ascending profile-id order (a generator
        is fine) and are merged against the stored profiles a range at a time, comparing
        fingerprints; `previous` (record key -> profile id, as `previous_assignment` read it this
        cycle) limits the member rows written to the records that moved. A daily run at a million
        profiles then writes thousands of rows, not millions. Returns the segments each profile
        entered and left, for `record_segments`, when the stored history is known to match the
        stored profiles (else None)."""
        with self._writing() as conn:
            self._save_links(conn, links)
            self._save_members(conn, members, previous)
            changes = self._save_verdicts(conn, verdicts, run_seq)
            marks = dict(_raw_rows(conn, "SELECT key, value FROM meta WHERE key IN ('profiles_seq', 'history_seq')"))
            # The history matches the profiles when the run that saved them also recorded it
            # (a dry run saves profiles only; a crash may fall between the two).
            in_step = marks.get("profiles_seq") == marks.get("history_seq") and (
                "history_seq" in marks or not changes.stored_before
            )
            self._upsert(conn, meta, [{"key": "profiles_seq", "value": str(run_seq)}])
            if aliases:
                self._upsert(
                    conn,
                    profile_aliases,
                    [{"alias": a, "profile_id": p, "seq": run_seq} for a, p in sorted(aliases.items())],
                )
        return changes if in_step else None

    @staticmethod
    def _save_links(conn: Connection, links: Sequence[tuple[str, str, str, str]]) -> None:
        stored = set(_raw_rows(conn, "SELECT a, b, kind, value FROM identity_links"))
        wanted = set(links)
        _raw_many(conn, "DELETE FROM identity_links WHERE a = ? AND b = ?", ((a, b) for a, b, _, _ in stored - wanted))
        _insert_rows(conn, identity_links, ("a", "b", "kind", "value"), wanted - stored)

    @staticmethod
    def _save_members(
        conn: Connection, members: Mapping[str, Sequence[str]], previous: Mapping[str, str] | None
    ) -> None:
        if previous is None:
            conn.execute(delete(profile_members))
            previous = {}
        current: set[str] = set()
        rows = []
        for pid, keys in members.items():
            for key in keys:
                current.add(key)
                if previous.get(key) != pid:
                    rows.append((*key.split(":", 1), pid))
        rows.sort()  # in key order (see record_segments)
        gone = sorted(tuple(key.split(":", 1)) for key in previous.keys() - current)
        _raw_many(conn, "DELETE FROM profile_members WHERE system = ? AND record_id = ?", gone)
        _upsert_many(conn, profile_members, rows)

    @staticmethod
    def _save_verdicts(conn: Connection, verdicts: Iterable[VerdictChunk], run_seq: int) -> SegmentChanges:
        """Merge the verdicts into `profiles` one id range (a chunk) at a time: the range's stored
        rows are read, compared and the differences written before the next range."""
        changes = SegmentChanges()
        lower: str | None = None

        def stored_between(upper: str | None) -> dict[str, tuple[Any, ...]]:
            where, params = [], []
            if lower is not None:
                where.append("profile_id > ?")
                params.append(lower)
            if upper is not None:
                where.append("profile_id <= ?")
                params.append(upper)
            sql = "SELECT profile_id, segments, tier, fingerprint FROM profiles"
            sql += (" WHERE " + " AND ".join(where)) if where else ""
            found = {row[0]: row[1:] for row in _raw_rows(conn, sql, params)}
            changes.stored_before = changes.stored_before or bool(found)
            return found

        def drop(stored: Mapping[str, tuple[Any, ...]]) -> None:
            for pid, (segments, _, _) in stored.items():
                changes.ended.extend((pid, name) for name in json.loads(segments))
            _raw_many(conn, "DELETE FROM profiles WHERE profile_id = ?", ((pid,) for pid in stored))

        for chunk in verdicts:
            if not chunk.profiles:
                continue
            stored = stored_between(chunk.profiles[-1])
            new: list[int] = []
            changed: list[int] = []
            for at, (pid, verdict, fingerprint) in enumerate(
                zip(chunk.profiles, chunk.memberships, chunk.fingerprints, strict=True)
            ):
                if lower is not None and pid <= lower:
                    raise ValueError("verdicts must come in ascending profile-id order")
                lower = pid
                before = stored.pop(pid, None)
                if before is None:
                    new.append(at)
                    changes.started.extend((pid, name) for name in verdict.segments)
                elif before != (segment_list_json(verdict.segments), verdict.tier, fingerprint):
                    changed.append(at)
                    had = frozenset(json.loads(before[0]))
                    changes.started.extend((pid, name) for name in verdict.segments - had)
                    changes.ended.extend((pid, name) for name in had - verdict.segments)
            drop(stored)  # stored ids inside this range that no profile has any more

            def row(at: int, text: str, chunk: VerdictChunk = chunk) -> tuple[Any, ...]:
                verdict = chunk.memberships[at]
                return (segment_list_json(verdict.segments), verdict.tier, text, chunk.fingerprints[at], run_seq)

            texts = iter(chunk.traits(new + changed))
            _insert_rows(
                conn,
                profiles,
                ("segments", "tier", "traits", "fingerprint", "updated_seq", "profile_id", "created_seq"),
                [(*row(at, next(texts)), chunk.profiles[at], run_seq) for at in new],
            )
            _raw_many(
                conn,
                "UPDATE profiles SET segments = ?, tier = ?, traits = ?, fingerprint = ?, updated_seq = ? "
                "WHERE profile_id = ?",
                [(*row(at, next(texts)), chunk.profiles[at]) for at in changed],
            )
        drop(stored_between(None))  # beyond the last id
        return changes

    def segment_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.engine.connect() as conn:
            for (segments,) in conn.execute(select(profiles.c.segments)).all():
                for name in json.loads(segments):
                    counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    def profiles_spanning_systems(self) -> int:
        """Profiles whose records come from more than one system."""
        per_profile = (
            select(profile_members.c.profile_id)
            .group_by(profile_members.c.profile_id)
            .having(func.count(func.distinct(profile_members.c.system)) > 1)
            .subquery()
        )
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(per_profile)).scalar() or 0)

    # ----- explain ---------------------------------------------------------------------------------
    def profiles_for(
        self,
        *,
        record: tuple[str, str] | None = None,
        email_key: str | None = None,
        phone: str | None = None,
        profile: str | None = None,
    ) -> list[str]:
        """Profile ids matching one lookup (a record, an email match key, an E.164 phone, or a
        profile id or alias), most records first."""
        with self.engine.connect() as conn:
            if profile is not None:
                alias = conn.execute(
                    select(profile_aliases.c.profile_id).where(profile_aliases.c.alias == profile)
                ).scalar()
                target = alias or profile
                found = conn.execute(select(profiles.c.profile_id).where(profiles.c.profile_id == target)).scalar()
                return [found] if found else []
            query = select(profile_members.c.profile_id).join(
                contacts,
                (contacts.c.system == profile_members.c.system) & (contacts.c.record_id == profile_members.c.record_id),
            )
            if record is not None:
                query = select(profile_members.c.profile_id).where(
                    profile_members.c.system == record[0], profile_members.c.record_id == record[1]
                )
            elif email_key is not None:
                query = query.where(contacts.c.email_key == email_key)
            elif phone is not None:
                query = query.where(contacts.c.phone == phone)
            else:
                return []
            ids = [row[0] for row in conn.execute(query).all()]
        counts: dict[str, int] = {}
        for pid in ids:
            counts[pid] = counts.get(pid, 0) + 1
        return sorted(counts, key=lambda pid: (-counts[pid], pid))

    def profile_detail(self, profile_id: str) -> dict[str, Any]:
        """Everything `explain` shows about one profile, straight from the state."""
        with self.engine.connect() as conn:
            row = conn.execute(select(profiles).where(profiles.c.profile_id == profile_id)).mappings().first()
            members = conn.execute(
                select(profile_members.c.system, profile_members.c.record_id)
                .where(profile_members.c.profile_id == profile_id)
                .order_by(profile_members.c.system, profile_members.c.record_id)
            ).all()
            keys = [f"{system}:{rid}" for system, rid in members]
            contact_rows = []
            raws: dict[str, Any] = {}
            for system, rid in members:
                contact_row = (
                    conn.execute(select(contacts).where(contacts.c.system == system, contacts.c.record_id == rid))
                    .mappings()
                    .first()
                )
                if contact_row is not None:
                    contact_rows.append(contact_from_row(contact_row))
                payload = conn.execute(
                    select(raw_records.c.payload).where(
                        raw_records.c.system == system,
                        raw_records.c.kind == Kind.CONTACT.value,
                        raw_records.c.record_id == rid,
                    )
                ).scalar()
                raws[f"{system}:{rid}"] = json.loads(payload) if payload else None
            links = (
                conn.execute(select(identity_links).where(identity_links.c.a.in_(keys) | identity_links.c.b.in_(keys)))
                .mappings()
                .all()
            )
            aliases = [
                a
                for (a,) in conn.execute(
                    select(profile_aliases.c.alias).where(profile_aliases.c.profile_id == profile_id)
                ).all()
            ]
        return {
            "profile": dict(row) if row else None,
            "contacts": contact_rows,
            "raw": raws,
            "links": [dict(link) for link in links],
            "aliases": sorted(aliases),
        }

    def profile_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(profiles)).scalar() or 0)

    # ----- plan and apply --------------------------------------------------------------------------
    def known_states(self, system: str) -> dict[str, KnownState]:
        """Per record of `system`: its owned state as last read and as last pushed. Records that
        hold the same state share one RemoteState object (the planner relies on it for speed)."""
        parsed: dict[str, RemoteState] = {}

        def state(text: str) -> RemoteState:
            found = parsed.get(text)
            if found is None:
                found = parsed[text] = RemoteState.from_json(json.loads(text))
            return found

        sql = (
            "SELECT c.record_id, c.owned, c.changed_seq, p.state, p.pushed_seq FROM contacts c "
            "LEFT JOIN pushed p ON p.system = c.system AND p.record_id = c.record_id WHERE c.system = ?"
        )
        out = {}
        with self.engine.connect() as conn:
            for rid, owned, seq, pushed_state, pushed_seq in _raw_rows(conn, sql, (system,)):
                out[rid] = KnownState(
                    state(owned),
                    int(seq),
                    None if pushed_state is None else state(pushed_state),
                    -1 if pushed_seq is None else int(pushed_seq),
                )
        return out

    def set_owned(self, system: str, states: Mapping[str, RemoteState], run_seq: int) -> None:
        """What a verification saw on the remote records: the newest word on them (`changed_seq`)."""
        rows = [(json.dumps(state.to_json()), run_seq, system, rid) for rid, state in states.items()]
        if not rows:
            return
        with self._writing() as conn:
            _raw_many(conn, "UPDATE contacts SET owned = ?, changed_seq = ? WHERE system = ? AND record_id = ?", rows)

    def contact_ids_after(self, system: str, after: str, limit: int) -> list[str]:
        """The next `limit` record ids of a system after `after`, in id order, wrapping round once."""
        sql = "SELECT record_id FROM contacts WHERE system = ? AND record_id > ? ORDER BY record_id LIMIT ?"
        with self.engine.connect() as conn:
            ids = [str(row[0]) for row in _raw_rows(conn, sql, (system, after, limit))]
            if len(ids) < limit and after:
                more = _raw_rows(conn, sql, (system, "", limit - len(ids)))
                ids += [str(row[0]) for row in more if str(row[0]) not in ids]
        return ids

    def record_results(
        self, system: str, changes: Sequence[WriteBack], results: Iterable[WriteResult], run_seq: int, now: datetime
    ) -> None:
        """The ledger after one batch: accepted targets become the pushed state (unless the vendor's
        answer was not conclusive: see `WriteResult.confirmed`), refusals go pending."""
        by_id = {c.record_id: c for c in changes}
        stamp = now.isoformat()
        with self._writing() as conn:
            accepted = []
            refused = []
            done = []
            for result in results:
                change = by_id.get(result.record_id)
                if change is None:
                    continue
                if result.ok:
                    done.append(result.record_id)
                if result.ok and result.confirmed:
                    accepted.append(
                        {
                            "system": system,
                            "record_id": result.record_id,
                            "state": json.dumps(change.target.to_json()),
                            "pushed_seq": run_seq,
                            "pushed_at": stamp,
                        }
                    )
                else:
                    refused.append((result.record_id, result.message))
            self._upsert(conn, pushed, accepted)
            for start in range(0, len(done), 500):
                conn.execute(
                    delete(pending).where(
                        pending.c.system == system, pending.c.record_id.in_(done[start : start + 500])
                    )
                )
            for rid, message in refused:
                current = conn.execute(
                    select(pending.c.attempts, pending.c.first_at).where(
                        pending.c.system == system, pending.c.record_id == rid
                    )
                ).first()
                self._upsert(
                    conn,
                    pending,
                    [
                        {
                            "system": system,
                            "record_id": rid,
                            "message": message,
                            "attempts": (current[0] if current else 0) + 1,
                            "first_at": current[1] if current else stamp,
                            "last_at": stamp,
                        }
                    ],
                )

    def pending_records(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(select(pending).order_by(pending.c.system, pending.c.record_id)).mappings()
            ]

    def quarantine_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(quarantine.c.system, func.count()).group_by(quarantine.c.system)).all()
            return {system: int(n) for system, n in rows}


_DETAILS = (
    "phone_raw",
    "given_name",
    "infix",
    "family_name",
    "initials",
    "street",
    "house_number",
    "house_addition",
    "postcode",
    "city",
    "country",
    "company",
)


def contact_from_row(row: Any) -> Contact:
    """A Contact from a `contacts` row (any mapping of column name to value)."""
    details = json.loads(row["details"])
    return Contact(
        system=row["system"],
        id=row["record_id"],
        updated_at=parse_timestamp(row["updated_at"]) if row["updated_at"] else None,
        email=row["email"],
        email_role=bool(row["email_role"]),
        phone=row["phone"],
        phone_kind=row["phone_kind"],
        owned=RemoteState.from_json(json.loads(row["owned"])),
        links=tuple(json.loads(row["links"])),
        flags=tuple(details.pop("flags", ())),
        **{name: details.get(name) for name in _DETAILS},
    )


def _contact_row(result: Contact, run_seq: int) -> tuple[Any, ...]:
    """A `contacts` row, in the table's column order."""
    details: dict[str, Any] = {}
    for name in _DETAILS:
        value = getattr(result, name)
        if value is not None:
            details[name] = value
    if result.flags:
        details["flags"] = list(result.flags)
    email = result.email
    return (
        result.system,
        result.id,
        email,
        email_match_key(email) if email else None,
        result.email_role,
        result.phone,
        result.given_name or (result.initials[0] if result.initials else None),
        result.phone_kind,
        _UNICODE_JSON.encode(details),
        result.updated_at.isoformat() if result.updated_at else None,
        json.dumps(result.owned.to_json()),
        json.dumps(list(result.links)),
        run_seq,
    )


def _order_row(result: Order, run_seq: int) -> tuple[Any, ...]:
    """An `orders` row, in the table's column order."""
    return (
        result.system,
        result.id,
        result.customer_id,
        result.email,
        email_match_key(result.email) if result.email else None,
        str(result.amount),
        result.currency,
        result.created_at.isoformat(),
        int(result.created_at.timestamp()),
        result.counts,
        run_seq,
    )


def _stored_hashes(conn: Connection, system: str, kind: str, ids: Sequence[str]) -> dict[str, str]:
    """Record id -> content hash of the raw records already stored, for these ids."""
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        sql = "SELECT record_id, content_hash FROM raw_records WHERE system = ? AND kind = ? AND record_id IN ({})"
        found.update(_raw_rows(conn, sql.format(", ".join("?" for _ in chunk)), (system, kind, *chunk)))
    return found


@functools.cache
def _upsert_sql(table: Table, columns: tuple[str, ...] | None = None) -> str:
    """INSERT ... ON CONFLICT (key) DO UPDATE for `columns` (default: all of them), with `?` marks
    (`_raw_many` turns them into the driver's own): the same text for SQLite (3.24 on) and
    PostgreSQL."""
    names = columns or tuple(c.name for c in table.columns)
    keys = [c.name for c in table.primary_key.columns]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in keys)
    return (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


def _upsert_many(
    conn: Connection, table: Table, rows: Iterable[Sequence[Any]], columns: tuple[str, ...] | None = None
) -> None:
    """Upsert rows (tuples in the order of `columns`, default the table's) inside `conn`'s transaction."""
    _raw_many(conn, _upsert_sql(table, columns), rows)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
