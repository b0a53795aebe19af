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
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

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
    bindparam,
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

SCHEMA_VERSION = "3"

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
    Column("amount", String(40), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", String(40), nullable=False),
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
        if self.pushed is not None and self.pushed_seq >= self.changed_seq:
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


class SegmentStore:
    """Membership history, sizes per run and held tiers. Mixed into StateStore."""

    engine: Engine

    def _writing(self) -> Any:  # provided by StateStore
        raise NotImplementedError

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
    ) -> None:
        """After a run: open a history entry for every new (profile, segment), close the ones that
        ended (a profile merged away leaves all its segments), store each segment's size and
        revenue (`snapshot`: segment, size, revenue in cents) and the tiers held now."""
        stamp = now.isoformat()
        with self._writing() as conn:
            open_now = set(
                conn.execute(
                    select(segment_history.c.profile_id, segment_history.c.segment).where(
                        segment_history.c.exited_seq.is_(None)
                    )
                ).all()
            )
            wanted = {(pid, seg) for pid, segs in members.items() for seg in segs}
            ended = sorted(open_now - wanted)
            started = sorted(wanted - open_now)
            close = (
                update(segment_history)
                .where(
                    segment_history.c.profile_id == bindparam("pid"),
                    segment_history.c.segment == bindparam("seg"),
                    segment_history.c.exited_seq.is_(None),
                )
                .values(exited_seq=run_seq, exited_at=stamp)
            )
            for start in range(0, len(ended), 5000):
                conn.execute(close, [{"pid": p, "seg": g} for p, g in ended[start : start + 5000]])
            rows = [{"profile_id": p, "segment": g, "entered_seq": run_seq, "entered_at": stamp} for p, g in started]
            for start in range(0, len(rows), 5000):
                conn.execute(insert(segment_history), rows[start : start + 5000])
            conn.execute(delete(segment_runs).where(segment_runs.c.seq == run_seq))
            snapshot_rows = [
                {
                    "seq": run_seq,
                    "segment": segment,
                    "at": stamp,
                    "size": size,
                    "revenue_cents": revenue,
                    "profiles": totals[0],
                    "total_revenue_cents": totals[1],
                }
                for segment, size, revenue in snapshot
            ]
            if snapshot_rows:
                conn.execute(insert(segment_runs), snapshot_rows)
            previous = {
                pid: (tier, int(since))
                for pid, tier, since in conn.execute(
                    select(profile_tiers.c.profile_id, profile_tiers.c.tier, profile_tiers.c.since_seq)
                ).all()
            }
            conn.execute(delete(profile_tiers))
            tier_rows = [
                {
                    "profile_id": pid,
                    "tier": tier,
                    "qualified_at": at.isoformat(),
                    "since_seq": previous[pid][1] if previous.get(pid, ("", 0))[0] == tier else run_seq,
                }
                for pid, (tier, at) in sorted(tiers.items())
            ]
            for start in range(0, len(tier_rows), 5000):
                conn.execute(insert(profile_tiers), tier_rows[start : start + 5000])

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
    ) -> StoredPage:
        """Store one page of records and its checkpoint in one transaction. Records whose content
        hash is unchanged are skipped (unless `force`); changed ones are mapped now, so nothing
        downstream re-reads raw payloads. The rows go through the driver's `executemany` with
        statements built once: per record, SQLAlchemy's per-row work would cost more than SQLite's."""
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
            for rid in changed:
                record = unique[rid]
                stamp = record.updated_at
                raw_rows.append(
                    (system, kind.value, rid, hashes[rid], texts[rid], stamp.isoformat() if stamp else None, run_seq)
                )
                result = mapper(record)
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
        members: Mapping[str, Sequence[tuple[str, str]]],
        verdicts: Mapping[str, tuple[Membership, Mapping[str, Any]]],
        aliases: Mapping[str, str],
        run_seq: int,
        links: Sequence[tuple[str, str, str, str]] = (),
    ) -> None:
        """Replace the resolution: members per profile, which identifier joined which records,
        each profile's verdict and traits."""
        with self._writing() as conn:
            conn.execute(delete(identity_links))
            link_rows = [{"a": a, "b": b, "kind": kind, "value": value} for a, b, kind, value in links]
            for start in range(0, len(link_rows), 5000):
                conn.execute(insert(identity_links), link_rows[start : start + 5000])
            ages = dict(conn.execute(select(profiles.c.profile_id, profiles.c.created_seq)).all())
            conn.execute(delete(profile_members))
            member_rows = [
                {"system": system, "record_id": rid, "profile_id": pid}
                for pid, keys in members.items()
                for system, rid in keys
            ]
            for start in range(0, len(member_rows), 5000):
                conn.execute(insert(profile_members), member_rows[start : start + 5000])
            conn.execute(delete(profiles))
            profile_rows = [
                {
                    "profile_id": pid,
                    "created_seq": ages.get(pid, run_seq),
                    "segments": json.dumps(sorted(verdict.segments)),
                    "tier": verdict.tier,
                    "traits": json.dumps(traits, default=str),
                    "updated_seq": run_seq,
                }
                for pid, (verdict, traits) in verdicts.items()
            ]
            for start in range(0, len(profile_rows), 5000):
                conn.execute(insert(profiles), profile_rows[start : start + 5000])
            if aliases:
                self._upsert(
                    conn,
                    profile_aliases,
                    [{"alias": a, "profile_id": p, "seq": run_seq} for a, p in sorted(aliases.items())],
                )

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
        with self.engine.connect() as conn:
            ledger = {
                rid: (RemoteState.from_json(json.loads(state)), int(seq))
                for rid, state, seq in conn.execute(
                    select(pushed.c.record_id, pushed.c.state, pushed.c.pushed_seq).where(pushed.c.system == system)
                ).all()
            }
            out = {}
            for rid, owned, seq in conn.execute(
                select(contacts.c.record_id, contacts.c.owned, contacts.c.changed_seq).where(
                    contacts.c.system == system
                )
            ).all():
                pushed_state, pushed_seq = ledger.get(rid, (None, -1))
                out[rid] = KnownState(RemoteState.from_json(json.loads(owned)), int(seq), pushed_state, pushed_seq)
        return out

    def record_results(
        self, system: str, changes: Sequence[WriteBack], results: Iterable[WriteResult], run_seq: int, now: datetime
    ) -> None:
        """The ledger after one batch: accepted targets become the pushed state, refusals go pending."""
        by_id = {c.record_id: c for c in changes}
        stamp = now.isoformat()
        with self._writing() as conn:
            accepted = []
            refused = []
            for result in results:
                change = by_id.get(result.record_id)
                if change is None:
                    continue
                if result.ok:
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
            ok_ids = [row["record_id"] for row in accepted]
            for start in range(0, len(ok_ids), 500):
                conn.execute(
                    delete(pending).where(
                        pending.c.system == system, pending.c.record_id.in_(ok_ids[start : start + 500])
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
        str(result.amount),
        result.currency,
        result.created_at.isoformat(),
        result.counts,
        run_seq,
    )


def _stored_hashes(conn: Connection, system: str, kind: str, ids: Sequence[str]) -> dict[str, str]:
    """Record id -> content hash of the raw records already stored, for these ids."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    found: dict[str, str] = {}
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            cursor.execute(
                "SELECT record_id, content_hash FROM raw_records WHERE system = "
                f"{mark} AND kind = {mark} AND record_id IN ({', '.join(mark for _ in chunk)})",
                (system, kind, *chunk),
            )
            found.update(cursor.fetchall())
    finally:
        cursor.close()
    return found


@functools.cache
def _upsert_sql(table: Table, paramstyle: str) -> str:
    """INSERT ... ON CONFLICT (key) DO UPDATE for every column: the same text for SQLite (3.24 on)
    and PostgreSQL, with the driver's own parameter marks."""
    columns = [c.name for c in table.columns]
    keys = [c.name for c in table.primary_key.columns]
    mark = "?" if paramstyle == "qmark" else "%s"
    updates = ", ".join(f"{name} = excluded.{name}" for name in columns if name not in keys)
    return (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(mark for _ in columns)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


def _upsert_many(conn: Connection, table: Table, rows: Sequence[Sequence[Any]]) -> None:
    """Upsert rows (tuples in the table's column order) through the driver's cursor, inside
    `conn`'s transaction."""
    if not rows:
        return
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(_upsert_sql(table, conn.dialect.paramstyle), rows)
    finally:
        cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
