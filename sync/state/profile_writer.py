"""The profile writer: each cycle's resolution (which records form which profile, which identifier
joined them) and every profile's verdict (segments, tier, traits), written as a merge that touches
only what changed; and the reads of the stored profiles."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any

from sqlalchemy import Connection, func, select

from mapping.model import Membership, split_key
from sync.state.on_thread import OnThread, Turns, TurnsCancelled
from sync.state.schema import identity_links, meta, profile_aliases, profile_members, profiles
from sync.state.sql import Database, insert_rows, page_cache_of, raw_many, raw_rows, upsert_many

_split = methodcaller("partition", ":")  # `split_key` as a C call: (system, ":", record id)


@functools.lru_cache(maxsize=4096)
def segment_list_json(segments: frozenset[str]) -> str:
    """A profile's segments as stored: a sorted JSON list. Few distinct sets exist, so cached."""
    return json.dumps(sorted(segments))


def members_digest(members: Mapping[str, Sequence[str]]) -> str:
    """A digest of a resolution's assignment (profile id -> record keys, in the mapping's order):
    `save_profiles` keeps the one it stored in `meta`, and a resolution snapshot is reused only
    while the stored members are the ones it made (sync/resolution_snapshot.py)."""
    # Per profile, each text with its length first (a record id holding a tab or newline cannot
    # make two different assignments read alike), then a newline. Hashed in batches of lines, which
    # is the same digest as a line at a time at half the cost (most profiles hold one record).
    digest = hashlib.blake2b(digest_size=16)
    batch: list[str] = []
    for pid, keys in members.items():
        if len(keys) == 1:
            key = keys[0]
            batch.append(f"{len(pid)}:{pid}{len(key)}:{key}\n")
        else:
            batch.append(f"{len(pid)}:{pid}" + "".join([f"{len(key)}:{key}" for key in keys]) + "\n")
        if len(batch) >= 65_536:
            digest.update("".join(batch).encode())
            batch.clear()
    digest.update("".join(batch).encode())
    return digest.hexdigest()


def members_digest_after(
    digest: str, removed: Iterable[tuple[str, Sequence[str]]], added: Iterable[tuple[str, Sequence[str]]]
) -> str:
    """The digest of members made from those of `digest` by replacing the profiles `removed` with
    those `added` (a resolution of only the touched components): it names them as surely as
    `members_digest` does, from the change alone. The same members reached another way have
    another digest; that only costs a comparison (`save_profiles`) or a full resolution."""
    chained = hashlib.blake2b(digest_size=16)
    chained.update(f"after {digest}\n".encode())
    chained.update(members_digest(dict(removed)).encode())
    chained.update(members_digest(dict(added)).encode())
    return chained.hexdigest()


@dataclass(frozen=True)
class MembersChange:
    """What a resolution of only the touched components changed of the members and links stored
    with digest `since`: the profiles it made again (`added`, in place of those it resolved
    again), the keys gone, and the links dropped and made. `save_profiles` writes just that when
    the stored digest is `since`."""

    since: str
    added: Sequence[tuple[str, Sequence[str]]]
    deleted: Set[str]
    links_removed: Sequence[tuple[str, str, str, str]]
    links_added: Sequence[tuple[str, str, str, str]]


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


MEMBER_INDEX_BYTES = 32  # page cache per member written (its index entry ~25 bytes, pages part full)
MEMBER_CACHE_MAX_KIB = 32_768
_TURN = 20_000  # rows per batch of the resolution's writes, between which the verdicts' may go


@dataclass(frozen=True)
class ResolutionWrites:
    """The member and link rows a save writes, made before any is written: `apply` then only runs
    SQL (see `save_profiles`). Rows in key order (see record_segments)."""

    links_gone: list[tuple[str, str]]
    links_new: list[tuple[str, str, str, str]]
    members_cleared: bool = False  # every stored member row deleted first (nothing to compare with)
    members_gone: list[tuple[str, str]] = field(default_factory=list)  # (system, record id)
    members_moved: list[tuple[str, str, str]] = field(default_factory=list)  # (system, record id, profile)

    @classmethod
    def of_links(
        cls, stored: set[tuple[str, str, str, str]], wanted: set[tuple[str, str, str, str]]
    ) -> ResolutionWrites:
        return cls(sorted((a, b) for a, b, _, _ in stored - wanted), sorted(wanted - stored))

    def with_members(
        self, moved: list[tuple[str, str, str]], gone: Iterable[str], cleared: bool = False
    ) -> ResolutionWrites:
        """These writes, and: delete the members whose records are `gone` (keys), then upsert the
        `moved` rows (system, record id, profile id)."""
        removed = sorted(split_key(key) for key in gone)
        return dataclasses.replace(self, members_cleared=cleared, members_gone=removed, members_moved=sorted(moved))

    def apply(self, conn: Connection, turn: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext) -> None:
        """Write them on `conn`, a batch of rows at a time, each batch holding `turn`."""
        with turn():
            raw_many(conn, "DELETE FROM identity_links WHERE a = ? AND b = ?", self.links_gone)
            if self.members_cleared:
                raw_many(conn, "DELETE FROM profile_members", [()])
            raw_many(conn, "DELETE FROM profile_members WHERE system = ? AND record_id = ?", self.members_gone)
        for start in range(0, len(self.links_new), _TURN):
            with turn():
                insert_rows(conn, identity_links, ("a", "b", "kind", "value"), self.links_new[start : start + _TURN])
        for start in range(0, len(self.members_moved), _TURN):
            with turn():
                upsert_many(conn, profile_members, self.members_moved[start : start + _TURN])


class ProfileStore:
    def __init__(self, db: Database) -> None:
        self.db = db

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
        """Store the resolution: the record keys (`system:id`) of each profile, which identifier
        joined which records, and per profile its membership and traits.

        Only what changed is written: `verdicts` come in ascending profile-id order (a generator
        is fine) and are merged against the stored profiles a range at a time, comparing
        fingerprints; `previous` (record key -> profile id, as `previous_assignment` read it this
        cycle) limits the member rows written to the records that moved. A daily run at a million
        profiles then writes thousands of rows, not millions. Returns the segments each profile
        entered and left, for `record_segments`, when the stored history is known to match the
        stored profiles (else None). `digest`: `members_digest(members)`, when the caller knows it;
        members whose digest is the stored one are not compared again. `change`: what a resolution
        by difference changed; when the stored members are those it started from, only that is
        compared and written."""
        digest = digest or members_digest(members)
        with self.db.writing() as conn:
            keys = "('profiles_seq', 'history_seq', 'members_digest')"
            marks = dict(raw_rows(conn, f"SELECT key, value FROM meta WHERE key IN {keys}"))
            # Written first: this opens the transaction (SQLite's driver begins it at the first
            # write) on this thread, before the thread below writes in it too.
            upsert_many(
                conn,
                meta,
                [("profiles_seq", str(run_seq)), ("members_digest", digest)],
                ("key", "value"),
            )

            if change is not None and previous is not None and marks.get("members_digest") == change.since:
                writes = self._change_writes(change, previous)
            else:
                writes = self._link_writes(conn, links)
                if marks.get("members_digest") != digest:
                    writes = self._member_writes(writes, members, previous)
            # The members and links go in on a thread, in the same transaction, while this one
            # builds the verdicts' traits: those writes are SQLite steps of a whole batch each,
            # which hold no interpreter lock (sync/state/on_thread.py), and their rows were made
            # above, so that thread hardly asks for the lock (a thread busy in Python would make
            # every row of the profiles' executemany below wait for it). The two take turns on
            # the one connection (`Turns`), so the driver is never used by both at once.
            turns = Turns()
            # The members go in in key order, which is random order for their index by profile: with
            # that index larger than SQLite's page cache (2 MB), each insert met its page evicted
            # and read it back (a first save of 200,000 members: 0.8 s of CPU, 0.45 s with the cache
            # holding the index). The index takes ~25 bytes a member; the cache is capped, as memory
            # of a save at a million members (the full-scale peak RSS target is 2 GB).
            wanted = min(len(writes.members_moved) * MEMBER_INDEX_BYTES // 1024, MEMBER_CACHE_MAX_KIB)
            cache = page_cache_of(conn, wanted)
            with cache, OnThread(functools.partial(writes.apply, conn, turns.theirs), "crmsync-members") as behind:
                try:
                    changes = self._save_verdicts(conn, verdicts, run_seq, self.db.binary, turns.mine)
                except BaseException as exc:
                    # That thread stops at its next turn, and is over before the transaction is
                    # rolled back (`OnThread.__exit__`). Where it failed first, its error is the
                    # one to raise: on PostgreSQL it aborted the transaction this thread then met.
                    turns.cancel()
                    behind.wait_out()
                    failure = behind.failure
                    if failure is not None and not isinstance(failure, TurnsCancelled):
                        raise failure from exc
                    raise
            behind.result()
            # The history matches the profiles when the run that saved them also recorded it
            # (a dry run saves profiles only; a crash may fall between the two).
            in_step = marks.get("profiles_seq") == marks.get("history_seq") and (
                "history_seq" in marks or not changes.stored_before
            )
            if aliases:
                upsert_many(
                    conn,
                    profile_aliases,
                    [(a, p, run_seq) for a, p in sorted(aliases.items())],
                    ("alias", "profile_id", "seq"),
                )
        return changes if in_step else None

    @staticmethod
    def _link_writes(conn: Connection, links: Sequence[tuple[str, str, str, str]]) -> ResolutionWrites:
        stored = set(raw_rows(conn, "SELECT a, b, kind, value FROM identity_links"))
        return ResolutionWrites.of_links(stored, set(links))

    @staticmethod
    def _change_writes(change: MembersChange, previous: Mapping[str, str]) -> ResolutionWrites:
        """`_link_writes` and `_member_writes` for the profiles and links `change` names alone:
        every other member and link is stored as it stays."""
        writes = ResolutionWrites.of_links(set(change.links_removed), set(change.links_added))
        moved = [(*split_key(key), pid) for pid, keys in change.added for key in keys if previous.get(key) != pid]
        return writes.with_members(moved, (key for key in change.deleted if key in previous))

    @staticmethod
    def _member_writes(
        writes: ResolutionWrites, members: Mapping[str, Sequence[str]], previous: Mapping[str, str] | None
    ) -> ResolutionWrites:
        cleared = previous is None
        previous = previous or {}
        if not previous:  # a first save: every record moved, none gone; `split_key` inlined
            moved = [
                (system, record_id, pid) for pid, keys in members.items() for system, _, record_id in map(_split, keys)
            ]
            return writes.with_members(moved, (), cleared)
        current: set[str] = set()
        moved = []
        for pid, keys in members.items():
            for key in keys:
                current.add(key)
                if previous.get(key) != pid:
                    moved.append((*split_key(key), pid))
        return writes.with_members(moved, previous.keys() - current, cleared)

    @staticmethod
    def _save_verdicts(
        conn: Connection,
        verdicts: Iterable[VerdictChunk],
        run_seq: int,
        binary: str = "",
        turn: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> SegmentChanges:
        """Merge the verdicts into `profiles` one id range (a chunk) at a time: the range's stored
        rows are read, compared and the differences written before the next range. The ranges are
        compared in SQL as Python orders the ids (`binary`: `Database.binary`)."""
        changes = SegmentChanges()
        lower: str | None = None
        with turn():
            # A first save finds no profile stored: no range needs reading (this transaction adds
            # only ids at or below the ranges already read).
            changes.stored_before = bool(raw_rows(conn, "SELECT 1 FROM profiles LIMIT 1"))

        def stored_between(upper: str | None) -> dict[str, tuple[Any, ...]]:
            if not changes.stored_before:
                return {}
            where, params = [], []
            if lower is not None:
                where.append(f"profile_id{binary} > ?")
                params.append(lower)
            if upper is not None:
                where.append(f"profile_id{binary} <= ?")
                params.append(upper)
            sql = "SELECT profile_id, segments, tier, fingerprint FROM profiles"
            sql += (" WHERE " + " AND ".join(where)) if where else ""
            with turn():
                return {row[0]: row[1:] for row in raw_rows(conn, sql, params)}

        def drop(stored: Mapping[str, tuple[Any, ...]]) -> None:
            for pid, (segments, _, _) in stored.items():
                changes.ended.extend((pid, name) for name in json.loads(segments))
            with turn():
                raw_many(conn, "DELETE FROM profiles WHERE profile_id = ?", [(pid,) for pid in stored])

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

            # The rows in one loop each, not a call and a tuple unpacked into another per profile:
            # a first save inserts every profile.
            texts = iter(chunk.traits(new + changed))
            ids, memberships, prints = chunk.profiles, chunk.memberships, chunk.fingerprints
            inserted: list[tuple[Any, ...]] = []
            for at in new:
                verdict = memberships[at]
                segments = segment_list_json(verdict.segments)
                inserted.append((segments, verdict.tier, next(texts), prints[at], run_seq, ids[at], run_seq))
            updated: list[tuple[Any, ...]] = []
            for at in changed:
                verdict = memberships[at]
                segments = segment_list_json(verdict.segments)
                updated.append((segments, verdict.tier, next(texts), prints[at], run_seq, ids[at]))
            with turn():  # the rows made before the turn is taken
                insert_rows(
                    conn,
                    profiles,
                    ("segments", "tier", "traits", "fingerprint", "updated_seq", "profile_id", "created_seq"),
                    inserted,
                )
                raw_many(
                    conn,
                    "UPDATE profiles SET segments = ?, tier = ?, traits = ?, fingerprint = ?, updated_seq = ? "
                    "WHERE profile_id = ?",
                    updated,
                )
        drop(stored_between(None))  # beyond the last id
        return changes

    def segment_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self.db.engine.connect() as conn:
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
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(per_profile)).scalar() or 0)

    def profile_traits(self) -> dict[str, dict[str, Any]]:
        with self.db.engine.connect() as conn:
            return {
                pid: json.loads(traits)
                for pid, traits in conn.execute(select(profiles.c.profile_id, profiles.c.traits))
            }
