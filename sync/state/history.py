"""Segment history: every entry of a profile into a segment and its exit, each segment's size and
revenue at every (non-dry) run, and the tier each profile holds; and what the report reads of them."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, select

from mapping.model import parse_timestamp
from sync.state.profile_writer import SegmentChanges
from sync.state.schema import meta, profile_tiers, segment_history, segment_runs
from sync.state.sql import Database, insert_rows, raw_many, raw_rows, upsert_many

TIERS_AT = "tiers_at"  # meta: the `now` of the run that last recorded the tiers (see _save_tiers)


@dataclass(frozen=True)
class StoredTiers:
    """`profile_tiers` as read, by columns: per row the profile id, its tier, when it qualified as
    stored ("": at `at`, the `now` of the run that last recorded the tiers) and since_seq."""

    ids: list[str]
    tiers: list[str]
    texts: list[str]
    since: list[int]
    at: datetime | None

    @classmethod
    def of(cls, rows: Mapping[str, tuple[str, str, int]], at: datetime | None) -> StoredTiers:
        """From profile id -> (tier, qualified_at as stored, since_seq)."""
        values = list(rows.values())
        return cls(list(rows), [v[0] for v in values], [v[1] for v in values], [v[2] for v in values], at)

    @functools.cached_property
    def rows(self) -> dict[str, tuple[str, str, int]]:
        """Profile id -> (tier, qualified_at as stored, since_seq)."""
        return dict(zip(self.ids, zip(self.tiers, self.texts, self.since, strict=True), strict=True))

    def moment(self, text: str, seen: dict[str, datetime]) -> datetime:
        """When a stored qualified_at says; `seen` caches the few distinct texts."""
        moment = seen.get(text)
        if moment is None:
            moment = seen[text] = parse_timestamp(text) if text or self.at is None else self.at
        return moment

    def held(self) -> dict[str, tuple[str, datetime]]:
        """Profile id -> (tier, last time it qualified for it)."""
        seen: dict[str, datetime] = {}
        rows = zip(self.ids, self.tiers, self.texts, strict=True)
        return {pid: (tier, self.moment(at, seen)) for pid, tier, at in rows}


def _read_tiers(conn: Connection) -> StoredTiers:
    """`profile_tiers` and `meta.tiers_at`, inside `conn`'s transaction."""
    last_run = raw_rows(conn, f"SELECT value FROM meta WHERE key = '{TIERS_AT}'")
    rows = raw_rows(conn, "SELECT profile_id, tier, qualified_at, since_seq FROM profile_tiers")
    at = parse_timestamp(last_run[0][0]) if last_run else None
    # A comprehension per column: `zip(*rows)` over 150,000 rows took three times as long.
    return StoredTiers([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], at)


@dataclass(frozen=True)
class TierChanges:
    """What a run changes in `profile_tiers`: rows to write (profile id, tier, qualified_at as
    stored, since_seq), in profile-id order, and the profiles that hold no tier any more."""

    rows: list[tuple[str, str, str, int]]
    gone: list[str]


def changed_tier_row(
    pid: str, tier: str, text: str, before: tuple[str, str, int] | None, run_seq: int
) -> tuple[str, str, str, int] | None:
    """The row to write for a profile holding `tier`, qualified at `text` ("" = at this run),
    given its stored row (None: none): None when the stored row says the same. A profile keeps
    `since_seq` while it keeps its tier."""
    row = (tier, text, before[2] if before is not None and before[0] == tier else run_seq)
    return None if row == before else (pid, *row)


def tier_changes(
    tiers: Mapping[str, tuple[str, datetime]], stored: Mapping[str, tuple[str, str, int]], run_seq: int, now: datetime
) -> TierChanges:
    """The changes that make `stored` hold `tiers` (profile id -> tier, last qualified)."""
    rows = []
    texts: dict[datetime, str] = {now: ""}  # most profiles qualified at one of few moments
    for pid, (tier, at) in tiers.items():
        text = texts.get(at)
        if text is None:
            text = texts[at] = at.isoformat()
        row = changed_tier_row(pid, tier, text, stored.get(pid), run_seq)
        if row is not None:
            rows.append(row)
    rows.sort()  # in key order (see record_segments)
    return TierChanges(rows, sorted(stored.keys() - tiers.keys()))


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


class SegmentHistory:
    """Membership history, sizes per run and held tiers."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def stored_tiers(self) -> StoredTiers:
        """The tiers held after the last run, as stored. A cycle reads them once: for the
        assessment's grace period, then to write the new ones by difference (`record_segments`)."""
        with self.db.reading() as conn:
            return _read_tiers(conn)

    def held_tiers(self) -> dict[str, tuple[str, datetime]]:
        """Profile id -> (tier, last time it qualified for it)."""
        return self.stored_tiers().held()

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
        """After a run: open a history entry for every new (profile, segment), close the ones that
        ended (a profile merged away leaves all its segments), store each segment's size and
        revenue (`snapshot`: segment, size, revenue in cents) and the tiers held now.

        `changes`, when `save_profiles` returned them, say what to open and close without reading
        every open entry; without them the open entries are compared with `members`.
        `tiers`: profile id -> (tier, last qualified), compared here with the stored ones; or the
        changes a cycle found from the tiers it read (`stored_tiers()`), which the writer lock
        keeps current."""
        stamp = now.isoformat()
        with self.db.writing() as conn:
            # In profile-id order either way: rows written in key order cost a SQLite b-tree a
            # third of what the same rows in random order cost.
            if changes is not None:
                started, ended = changes.started, changes.ended
            else:
                open_now: set[tuple[str, str]] = set(
                    raw_rows(conn, "SELECT profile_id, segment FROM segment_history WHERE exited_seq IS NULL")
                )
                wanted = {(pid, seg) for pid, segs in members.items() for seg in segs}
                ended = sorted(open_now - wanted)
                started = sorted(wanted - open_now)
                del open_now, wanted
            upsert_many(conn, meta, [("history_seq", str(run_seq))], ("key", "value"))
            raw_many(
                conn,
                "UPDATE segment_history SET exited_seq = ?, exited_at = ? "
                "WHERE profile_id = ? AND segment = ? AND exited_seq IS NULL",
                ((run_seq, stamp, pid, seg) for pid, seg in ended),
            )
            insert_rows(
                conn,
                segment_history,
                ("profile_id", "segment"),
                started,
                same=(("entered_seq", run_seq), ("entered_at", stamp)),
            )
            conn.execute(delete(segment_runs).where(segment_runs.c.seq == run_seq))
            insert_rows(
                conn,
                segment_runs,
                ("seq", "segment", "at", "size", "revenue_cents", "profiles", "total_revenue_cents"),
                ((run_seq, segment, stamp, size, revenue, totals[0], totals[1]) for segment, size, revenue in snapshot),
            )
            if not isinstance(tiers, TierChanges):
                tiers = tier_changes(tiers, _read_tiers(conn).rows, run_seq, now)
            self._save_tiers(conn, tiers, now)

    @staticmethod
    def _save_tiers(conn: Connection, changes: TierChanges, now: datetime) -> None:
        """The tiers held now, written by difference: rows that did not change are not written
        again. A profile that qualified at this run (`now`) stores "" for it and `meta.tiers_at`
        says when that was: the qualification time of every profile still qualifying moves with
        each run, and that is then one row of `meta`, not a row per profile."""
        if changes.gone:
            raw_many(conn, "DELETE FROM profile_tiers WHERE profile_id = ?", [(pid,) for pid in changes.gone])
        upsert_many(conn, profile_tiers, changes.rows, ("profile_id", "tier", "qualified_at", "since_seq"))
        upsert_many(conn, meta, [(TIERS_AT, now.isoformat())], ("key", "value"))

    def segment_snapshots(self) -> list[SegmentSnapshot]:
        with self.db.engine.connect() as conn:
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

    def segment_history_of(self, segment: str) -> list[tuple[str, str, str | None]]:
        """Every stay of every profile in one segment: (profile id, entered at, exited at or None)."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(segment_history.c.profile_id, segment_history.c.entered_at, segment_history.c.exited_at)
                .where(segment_history.c.segment == segment)
                .order_by(segment_history.c.profile_id, segment_history.c.entered_seq)
            ).all()
        return [(str(p), str(entered), None if exited is None else str(exited)) for p, entered, exited in rows]

    def profile_segments_and_traits(self) -> list[tuple[list[str], str]]:
        """Every profile's segments and its traits (JSON), for the report's revenue at stake. The
        segments are those the last recorded run left (the open history entries, which the report's
        sizes count), not `profiles.segments`: a dry run (`sync --dry-run`, `plan`) saves its own
        verdicts there without recording a run."""
        members = self.current_members()
        rows: list[tuple[list[str], str]] = []
        for chunk in self.db.raw_chunks("SELECT profile_id, traits FROM profiles", 50_000):
            rows.extend((members.get(str(pid), []), str(traits)) for pid, traits in chunk)
        return rows

    def members_since(self, segment: str) -> list[tuple[str, str]]:
        """The segment's members now, with when they entered it: (profile id, entered at), by id."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(segment_history.c.profile_id, segment_history.c.entered_at)
                .where(segment_history.c.segment == segment, segment_history.c.exited_seq.is_(None))
                .order_by(segment_history.c.profile_id)
            ).all()
        return [(str(p), str(entered)) for p, entered in rows]

    def still_members(self, since_seq: int) -> dict[str, int]:
        """Per segment: members now who have been in it without a break since run `since_seq`."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(segment_history.c.segment, func.count())
                .where(segment_history.c.exited_seq.is_(None), segment_history.c.entered_seq <= since_seq)
                .group_by(segment_history.c.segment)
            ).all()
        return {segment: int(n) for segment, n in rows}

    def current_members(self) -> dict[str, list[str]]:
        """Profile id -> its segments now (open history entries)."""
        out: dict[str, list[str]] = {}
        with self.db.engine.connect() as conn:
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
        with self.db.engine.connect() as conn:
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
        with self.db.engine.connect() as conn:
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


def _family(segment: str) -> str | None:
    """Segments of one family exclude each other: a profile leaving one enters another."""
    if segment.startswith(("lifecycle-", "tier-")):
        return segment.split("-", 1)[0]
    if segment in ("friends", "supporters", "acquaintances", "passers-by"):
        return "quadrant"
    return None
