"""What `crmsync explain` reads: the profiles a lookup matches, and everything about one profile."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from mapping.model import Kind, record_key
from sync.state.extracts import contact_from_row
from sync.state.schema import (
    RETIRED,
    contacts,
    identity_links,
    meta,
    profile_aliases,
    profile_members,
    profile_tiers,
    profiles,
    raw_records,
    runs,
    segment_history,
)
from sync.state.sql import Database


def alias_targets(conn: Connection) -> dict[str, str]:
    """Retired profile id -> the id that holds its person now. A profile merged away keeps the alias
    it was given (`p_a` -> `p_b`); when `p_b` is later merged away too (`p_b` -> `p_c`), `p_a` is
    still stored as pointing at `p_b`, so the chain is followed to its end."""
    aliases = select(profile_aliases.c.alias, profile_aliases.c.profile_id).where(RETIRED)
    direct = {str(a): str(p) for a, p in conn.execute(aliases)}
    return {alias: chain_end(alias, direct.get) for alias in direct}


def _surviving(conn: Connection, profile_id: str) -> str:
    """The id that holds `profile_id`'s person now: itself, or where its alias chain ends."""

    def target(alias: str) -> str | None:
        found = conn.execute(
            select(profile_aliases.c.profile_id).where(profile_aliases.c.alias == alias, RETIRED)
        ).scalar()
        return None if found is None else str(found)

    # One alias at a time from the table: a lookup follows one short chain, not every alias.
    return chain_end(profile_id, target)


def chain_end(start: str, target_of: Callable[[str], str | None]) -> str:
    """Where the alias chain from `start` ends (`target_of`: an id's alias target, None for an id
    that is no alias): `start` itself when it is no alias. Aliases are never rewritten when their
    target is merged away in turn, so a chain may take several hops; a cycle, which resolution
    never makes, ends at its last id before one repeats rather than looping."""
    seen = {start}
    current = start
    while (target := target_of(current)) is not None and target not in seen:
        seen.add(target)
        current = target
    return current


class ExplainQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

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
        with self.db.engine.connect() as conn:
            if profile is not None:
                target = _surviving(conn, profile)
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
        with self.db.engine.connect() as conn:
            row = conn.execute(select(profiles).where(profiles.c.profile_id == profile_id)).mappings().first()
            members = conn.execute(
                select(profile_members.c.system, profile_members.c.record_id)
                .where(profile_members.c.profile_id == profile_id)
                .order_by(profile_members.c.system, profile_members.c.record_id)
            ).all()
            keys = [record_key(system, rid) for system, rid in members]
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
                raws[record_key(system, rid)] = json.loads(payload) if payload else None
            links = (
                conn.execute(select(identity_links).where(identity_links.c.a.in_(keys) | identity_links.c.b.in_(keys)))
                .mappings()
                .all()
            )
            aliases = [alias for alias, target in alias_targets(conn).items() if target == profile_id]
            held = conn.execute(
                select(profile_tiers.c.tier, profile_tiers.c.qualified_at).where(
                    profile_tiers.c.profile_id == profile_id
                )
            ).first()
            # qualified_at "" stands for the `now` of the run that last recorded the tiers (meta).
            tiers_at = conn.execute(select(meta.c.value).where(meta.c.key == "tiers_at")).scalar()
            recorded = conn.execute(
                select(segment_history.c.segment).where(
                    segment_history.c.profile_id == profile_id, segment_history.c.exited_seq.is_(None)
                )
            ).scalars()
            marks = dict(
                conn.execute(
                    select(meta.c.key, meta.c.value).where(meta.c.key.in_(("profiles_seq", "history_seq")))
                ).all()
            )
            saved_by, recorded_by = (_run(conn, marks.get(key)) for key in ("profiles_seq", "history_seq"))
            # Whether any run ever recorded segment history (a state from before the marks did).
            history_kept = conn.execute(select(segment_history.c.profile_id).limit(1)).first() is not None
        return {
            "profile": dict(row) if row else None,
            "contacts": contact_rows,
            "raw": raws,
            "links": [dict(link) for link in links],
            "aliases": sorted(aliases),
            # The held tier and the last time the profile qualified for it (ISO-8601), or None.
            "tier_qualified_at": (held[1] or tiers_at) if held is not None else None,
            # A dry run (or a held cycle) saves its verdicts in `profiles` and records no segment
            # history; the open history entries are what the last recorded run concluded, which is
            # what the systems were given. `saved_by` / `recorded_by`: those two runs, or None.
            "recorded_segments": sorted(recorded),
            "saved_by": saved_by,
            "recorded_by": recorded_by,
            "history_kept": history_kept,
        }


def _run(conn: Connection, seq: str | None) -> dict[str, Any] | None:
    """The run with sequence number `seq` (a `meta` value): its seq, id, command and times (only
    the seq where the run's row is gone)."""
    if seq is None:
        return None
    row = conn.execute(
        select(runs.c.run_id, runs.c.command, runs.c.started_at, runs.c.finished_at).where(runs.c.seq == int(seq))
    ).first()
    return {"seq": int(seq), **(dict(row._mapping) if row is not None else {})}
