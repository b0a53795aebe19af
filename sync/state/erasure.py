"""The right to be forgotten, in the state (`crmsync forget`, CONTRACTS §6).

An erasure removes a person's data from the state in one transaction: their contact records and
orders (raw and mapped), quarantine entries of those records, the held (quarantined) records that
are theirs (given how each system's records name a customer and an email), profile, aliases,
identity links, segment history, tier, ledger and retry rows. What stays:

- `forgotten`: a salted SHA-256 of each erased record's identity (system, kind, vendor id), so the
  same vendor records are never stored (or profiled) again, and orders that name an erased
  customer record are not either. A record the vendor creates after the erasure has a new id and
  is processed as new: the person came back. The salt is the state's own (`meta.forget_salt`),
  made on the first erasure, so the hashes cannot be matched against another state's.
- `erasure_targets`: per writable system, the vendor record ids whose crmsync tags and fields must
  still be removed, with what crmsync knew those records hold. A row goes as soon as the vendor
  confirmed the removal; until then `status` lists the erasure as pending.
- `erasures`: when each was requested and completed; no identifier of the person.

Guest orders (orders naming no stored customer record) are the person's when their email match
key is theirs alone: the rule by which the compute attaches them to a profile.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, delete, func, select, update

from mapping import jsontext
from mapping.identity import given_names, names_agree, same_person_names
from mapping.model import Kind, RemoteState, record_key
from mapping.normalize.email import email_match_key, normalise_email
from mapping.normalize.phone import digits_in, national_digits, numbers_in_text, phone_region
from sync.state.erasure_journal import Abandoned, ErasureJournal, JournalEntry, JournalTarget
from sync.state.keys import addresses_a_record
from sync.state.schema import (
    RETIRED,
    contacts,
    erasure_targets,
    erasures,
    forgotten,
    identity_links,
    meta,
    orders,
    pending,
    profile_aliases,
    profile_members,
    profile_tiers,
    profiles,
    pushed,
    quarantine,
    raw_records,
    resolution_snapshot,
    segment_history,
)
from sync.state.sql import Database, insert_rows, raw_rows

log = structlog.get_logger("crmsync.erasure")

SALT_KEY = "forget_salt"
CUSTOMER = "customer"  # the hash kind that stops orders naming an erased customer record


@dataclass(frozen=True)
class HeldFacts:
    """What a held vendor record says of whom it belongs to, as its system's field map reads it."""

    customer: str | None = None  # the customer record an order names
    email_key: str | None = None
    mobile: str | None = None  # E.164, where the record's phone is a mobile number
    given_name: str | None = None
    links: tuple[str, ...] = ()  # record keys of other systems' records it names (`link:` fields)

    def names_no_one(self, kind: str) -> bool:
        """Nothing in it says whose it is: no customer, email or link, and on a contact no mobile."""
        if kind == Kind.ORDER.value:
            return self.customer is None and self.email_key is None
        return self.email_key is None and self.mobile is None and not self.links


# HeldFacts from (system, kind, payload). Given by the caller (`crmsync forget` has the
# connectors), so the quarantined records, which no profile holds, can be found too.
PayloadFacts = Callable[[str, str, Any], HeldFacts]


@dataclass(frozen=True)
class SharedAbove:
    """Per identifier kind, the records of one system it may be on before it is a shared one
    (`[identity] max_records_per_identifier`), as identity resolution counts them."""

    email: int = 3
    mobile: int = 3


def identity_hash(salt: str, system: str, kind: str, record_id: str) -> str:
    return hashlib.sha256("\x1f".join((salt, system, kind, record_id)).encode()).hexdigest()


@dataclass(frozen=True)
class ErasedPerson:
    """What one erasure removed (counts only: nothing that names the person)."""

    erasure_id: str
    profiles: tuple[str, ...]
    contacts: dict[str, int]  # per system
    orders: dict[str, int]
    targets: dict[str, int]  # per system: records whose tags and fields are still to be removed
    quarantined: dict[str, int] = field(default_factory=dict)  # per system: held records of theirs
    # Held records kept although their text holds an address or a mobile number of the person's:
    # their field map reads no one in them (`_unread_mentions`). As (system, kind, vendor id), which
    # the operator needs to find them at the vendor; nothing of the person's own, stored nowhere.
    unread: tuple[tuple[str, str, str], ...] = ()
    # The erasure journal it went to (None: a state with none, in memory), and why it did not go
    # there (None: it did).
    journal: str | None = None
    journal_problem: str | None = None


@dataclass
class Forgotten:
    """The salted hashes of erased records, as extract checks each page against them."""

    salt: str | None = None
    hashes: frozenset[str] = frozenset()
    count: int = 0

    def blocks(self, system: str, kind: str, record_id: str) -> bool:
        return self.salt is not None and identity_hash(self.salt, system, kind, record_id) in self.hashes


@dataclass
class Target:
    erasure_id: str
    record_id: str
    known: RemoteState
    attempts: int = 0
    message: str | None = None


class StaleProfiles(RuntimeError):
    """The stored profiles are older than the stored records."""


class NothingToErase(LookupError):
    """No profile was named, and nothing the state holds is under the address given."""


class ErasureStore:
    def __init__(self, db: Database, journal: ErasureJournal | None = None) -> None:
        """`journal`: the erasure journal (sync/state/erasure_journal.py), a file beside a SQLite
        state or a table beside a PostgreSQL one; None for a state in memory."""
        self.db = db
        self.journal = journal
        self._forgotten = Forgotten()

    # ----- the erasure itself ----------------------------------------------------------------------
    def erase(
        self,
        profile_ids: Sequence[str],
        now: datetime,
        expected: Mapping[str, RemoteState] | None = None,
        facts: PayloadFacts | None = None,
        shared_above: SharedAbove = SharedAbove(),
        writable: Set[str] | None = None,
        address: str | None = None,
        record: tuple[str, Sequence[str]] | None = None,
    ) -> ErasedPerson:
        """Remove these profiles' people from the state in one transaction (see the module
        docstring). `expected`: per configured system, the owned state crmsync writes there for the
        person's current segments: a write the vendor carried out but the ledger never recorded (a
        crash between the two, a lost reply) is covered by it. `facts`: how each system's records
        name their customer and email; with it, the quarantined records that are the person's go
        too (`_quarantined_of`; `shared_above`: the records of one system an email or a mobile
        number may be on before it is a shared one, as identity resolution counts them). `writable`:
        the systems write-back is on for now (None: every one in `expected`); a system it is off
        for, to which crmsync never wrote, gets no target for what it would write there.
        `address`: an email match key that is the person's though no profile holds it (a person
        whose one customer record is held, or who only ordered as a guest): the held records and
        guest orders under it go by the same rules as under an address of a profile's; with no
        profile and nothing under it, NothingToErase (and nothing is written). `record`: a
        customer record that is the person's though no profile holds it (a `<system>:<id>` KEY
        naming a held record), as its system and the stored ids the KEY may stand for: what the
        state holds of it goes as a held record of a profile's does (its payload and quarantine
        entry, the orders naming it, its ledger rows, and a vendor target where crmsync wrote to
        it), and its address, where no stored contact holds it, is theirs as a held record found
        by a link brings one; nothing held under it, NothingToErase. Raises
        StaleProfiles when records changed after the profiles were last computed: the members may
        then be out of date."""
        expected = expected or {}
        erasure_id = str(uuid.uuid4())
        with self.db.writing() as conn:
            _refuse_stale(conn)
            salt = _salt(conn)
            members = [
                (str(system), str(rid))
                for system, rid in conn.execute(
                    select(profile_members.c.system, profile_members.c.record_id).where(
                        profile_members.c.profile_id.in_(profile_ids)
                    )
                )
            ]
            email_keys = _email_keys_of(conn, members)
            if address is not None and not _holders(conn, "email", address):  # no stored contact's
                email_keys = sorted({*email_keys, address})
            named = _held_under(conn, *record, facts) if record is not None else []
            held: list[tuple[str, str, str]] = []
            unread: list[tuple[str, str, str]] = []
            if facts is not None:
                mobiles, linked = _mobiles_of(conn, members), _linked_from(conn, members)
                held, more_keys, unread = _quarantined_of(
                    conn, members, email_keys, mobiles, linked, facts, shared_above, set(named)
                )
                # An address of theirs that only a held record of theirs showed: their guest orders under it.
                email_keys = sorted({*email_keys, *more_keys})
            # Their held customer records are theirs as the mapped ones are (the orders naming them,
            # the tags crmsync wrote there before they were held, their ledger rows), where the key
            # is the record's own id: not a record held for having none, nor a stand-in for an id
            # too long to keep, which no write may address.
            records = list(
                dict.fromkeys(
                    [
                        *members,
                        *((s, rid) for s, kind, rid in held if kind == Kind.CONTACT.value),
                        *named,  # also where only its orders or ledger rows are left
                    ]
                )
            )
            records = [(s, rid) for s, rid in records if addresses_a_record(rid)]
            order_ids = _orders_of(conn, records, email_keys)
            if not profile_ids and not named and not held and not order_ids and not unread:
                raise NothingToErase("nothing the state holds is under that key")
            known = _known_states(conn, records, expected, writable)
            hashes = {identity_hash(salt, system, Kind.CONTACT.value, rid) for system, rid in records}
            hashes |= {identity_hash(salt, system, CUSTOMER, rid) for system, rid in records}
            hashes |= {identity_hash(salt, system, Kind.ORDER.value, oid) for system, oid in order_ids}
            # (Never the empty key: it would keep out every later record of that system without an id.)
            hashes |= {identity_hash(salt, system, kind, rid) for system, kind, rid in held if rid}
            record_erasure(
                conn,
                erasure_id,
                now.isoformat(),
                len(profile_ids),
                hashes,
                [(s, rid, jsontext.compact(state.to_json())) for (s, rid), state in sorted(known.items())],
                None if known else now.isoformat(),
                forgotten_hashes(conn) if hashes else set(),
            )
            _delete_person(conn, profile_ids, records, order_ids)
            for system, kind, rid in held:
                _delete_raw(conn, system, kind, [rid])
            journal_problem = None
            if self.journal is not None:
                # Kept no later than the commit (a file on disk before it, a table in the same
                # transaction): a restored backup, or on SQLite a crash before the commit, leaves
                # an entry whose replay completes the erasure (sync/state/erasure_replay.py).
                targets = tuple(
                    JournalTarget(s, rid, jsontext.compact(state.to_json()))
                    for (s, rid), state in sorted(known.items())
                )
                at, people = now.isoformat(), len(profile_ids)
                entry = JournalEntry(erasure_id, at, people, salt, tuple(sorted(hashes)), targets)
                journal_problem = self._journal_append(conn, entry)
        self._forgotten = Forgotten()  # read again on the next page
        count: dict[str, dict[str, int]] = {"contacts": {}, "orders": {}, "targets": {}, "quarantined": {}}
        for system, _ in members:
            count["contacts"][system] = count["contacts"].get(system, 0) + 1
        for system, _ in order_ids:
            count["orders"][system] = count["orders"].get(system, 0) + 1
        for system, _ in known:
            count["targets"][system] = count["targets"].get(system, 0) + 1
        for system, _, _ in held:
            count["quarantined"][system] = count["quarantined"].get(system, 0) + 1
        return ErasedPerson(
            erasure_id,
            tuple(profile_ids),
            count["contacts"],
            count["orders"],
            count["targets"],
            count["quarantined"],
            tuple(unread),
            self.journal.where if self.journal is not None else None,
            journal_problem,
        )

    def _journal_append(self, conn: Connection, entry: JournalEntry | Abandoned) -> str | None:
        """`entry` into the journal, inside `conn`'s transaction; None when it went there, else why
        not (the erasure goes on: a person's erasure never waits for the journal)."""
        assert self.journal is not None
        problem = self.journal.ready(conn)
        if problem is None:
            self.journal.append(conn, [entry])
        else:
            log.warning("erasure not in the erasure journal", journal=self.journal.where, problem=problem)
        return problem

    # ----- what is still to be removed at the vendors -------------------------------------------
    def targets(self, system: str) -> list[Target]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(
                    erasure_targets.c.erasure_id,
                    erasure_targets.c.record_id,
                    erasure_targets.c.known,
                    erasure_targets.c.attempts,
                    erasure_targets.c.message,
                )
                .where(erasure_targets.c.system == system)
                .order_by(erasure_targets.c.erasure_id, erasure_targets.c.record_id)
            ).all()
        return [Target(e, r, RemoteState.from_json(json.loads(k)), int(a), m) for e, r, k, a, m in rows]

    def target_systems(self) -> list[str]:
        with self.db.engine.connect() as conn:
            return [str(s) for (s,) in conn.execute(select(erasure_targets.c.system).distinct())]

    def confirm(self, system: str, done: Sequence[Target], now: datetime) -> None:
        """The vendor removed crmsync's tags and fields from these records: forget their ids too,
        and complete every erasure that has nothing left anywhere."""
        if not done:
            return
        with self.db.writing() as conn:
            for target in done:
                conn.execute(
                    delete(erasure_targets).where(
                        erasure_targets.c.erasure_id == target.erasure_id,
                        erasure_targets.c.system == system,
                        erasure_targets.c.record_id == target.record_id,
                    )
                )
            for erasure_id in sorted({t.erasure_id for t in done}):
                left = conn.execute(
                    select(func.count()).select_from(erasure_targets).where(erasure_targets.c.erasure_id == erasure_id)
                ).scalar()
                if not left:
                    _complete(conn, erasure_id, now)

    def abandon(self, erasure_id: str, system: str | None, now: datetime) -> dict[str, int] | None:
        """Give up clearing a pending erasure at one system (or all): for a record the vendor no
        longer has, or a system that is gone. Its ids are dropped like confirmed ones; the erasure
        completes once nothing is left. None when there is no such pending erasure (or it is not
        pending at `system`)."""
        with self.db.writing() as conn:
            found = conn.execute(select(erasures.c.completed_at).where(erasures.c.erasure_id == erasure_id)).first()
            if found is None or found[0] is not None:
                return None
            where = erasure_targets.c.erasure_id == erasure_id
            if system is not None:
                where = where & (erasure_targets.c.system == system)
            dropped: dict[str, int] = {}
            for (name,) in conn.execute(select(erasure_targets.c.system).where(where)):
                dropped[str(name)] = dropped.get(str(name), 0) + 1
            if not dropped:
                return None  # not pending at that system (a misspelt name): nothing given up
            conn.execute(delete(erasure_targets).where(where))
            if self.journal is not None:  # so a replay after a restore does not make them pending again
                self._journal_append(conn, Abandoned(erasure_id, system, now.isoformat()))
            left = conn.execute(
                select(func.count()).select_from(erasure_targets).where(erasure_targets.c.erasure_id == erasure_id)
            ).scalar()
            if not left:
                _complete(conn, erasure_id, now)
        return dropped

    def failed(self, system: str, targets: Sequence[Target], message: str) -> None:
        with self.db.writing() as conn:
            for target in targets:
                conn.execute(
                    update(erasure_targets)
                    .where(
                        erasure_targets.c.erasure_id == target.erasure_id,
                        erasure_targets.c.system == system,
                        erasure_targets.c.record_id == target.record_id,
                    )
                    .values(attempts=erasure_targets.c.attempts + 1, message=message[:500])
                )

    def waiting(self, erasure_id: str) -> dict[str, tuple[int, str | None]]:
        """Per system, the records one erasure still waits for there, and the last error."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(erasure_targets.c.system, func.count(), func.max(erasure_targets.c.message))
                .where(erasure_targets.c.erasure_id == erasure_id)
                .group_by(erasure_targets.c.system)
            ).all()
        return {str(system): (int(records), message) for system, records, message in rows}

    def pending_erasures(self) -> list[dict[str, Any]]:
        """Erasures some system has not confirmed yet (for `status`): when requested, and per
        system how many records wait and why (no identifier of the person)."""
        with self.db.engine.connect() as conn:
            open_ = conn.execute(
                select(erasures.c.erasure_id, erasures.c.requested_at)
                .where(erasures.c.completed_at.is_(None))
                .order_by(erasures.c.requested_at, erasures.c.erasure_id)
            ).all()
            waiting = conn.execute(
                select(
                    erasure_targets.c.erasure_id,
                    erasure_targets.c.system,
                    func.count(),
                    func.max(erasure_targets.c.attempts),
                    func.max(erasure_targets.c.message),
                ).group_by(erasure_targets.c.erasure_id, erasure_targets.c.system)
            ).all()
        by_erasure: dict[str, dict[str, Any]] = {}
        for erasure_id, system, records, attempts, message in waiting:
            by_erasure.setdefault(erasure_id, {})[system] = {
                "records": int(records),
                "attempts": int(attempts or 0),
                "last_error": message,
            }
        return [
            {"erasure": erasure_id, "requested_at": requested, "waiting_for": by_erasure.get(erasure_id, {})}
            for erasure_id, requested in open_
        ]

    # ----- extract's check ---------------------------------------------------------------------------
    def reread_forgotten(self) -> None:
        """The hashes changed behind this store's back (a replay of the journal): read them again."""
        self._forgotten = Forgotten()

    def forgotten(self) -> Forgotten:
        """The erased records' hashes; read again only when their number changed (one count per
        call, nothing more while nobody was ever forgotten)."""
        with self.db.engine.connect() as conn:
            count = int(conn.execute(select(func.count()).select_from(forgotten)).scalar() or 0)
            if count != self._forgotten.count:
                self._forgotten = Forgotten(stored_salt(conn), frozenset(forgotten_hashes(conn)), count)
        return self._forgotten


def stored_salt(conn: Connection) -> str | None:
    """The state's salt of erased records' hashes: None until the first erasure made one."""
    found = conn.execute(select(meta.c.value).where(meta.c.key == SALT_KEY)).scalar()
    return str(found) if found else None


def forgotten_hashes(conn: Connection) -> set[str]:
    return {str(h) for (h,) in conn.execute(select(forgotten.c.key_hash))}


def record_erasure(
    conn: Connection,
    erasure_id: str,
    requested_at: str,
    profiles: int,
    hashes: Iterable[str],
    targets: Sequence[tuple[str, str, str]],
    completed_at: str | None,
    stored: set[str],
) -> None:
    """An erasure's row, its hashes (less those `stored` already holds under an earlier erasure;
    `stored` takes the new ones) and its vendor targets (system, record id, known state as JSON):
    what `erase` writes, and what the journal's replay writes again after a restore."""
    conn.execute(
        erasures.insert().values(
            erasure_id=erasure_id, requested_at=requested_at, completed_at=completed_at, profiles=profiles
        )
    )
    new = sorted(set(hashes) - stored)
    stored.update(new)
    insert_rows(conn, forgotten, ("key_hash", "erasure_id"), [(h, erasure_id) for h in new])
    insert_rows(
        conn,
        erasure_targets,
        ("erasure_id", "system", "record_id", "known", "attempts", "message"),
        [(erasure_id, system, record_id, known, 0, None) for system, record_id, known in targets],
    )


def _salt(conn: Connection) -> str:
    found = stored_salt(conn)
    if found:
        return found
    made = secrets.token_hex(32)
    conn.execute(meta.insert().values(key=SALT_KEY, value=made))
    return made


def _complete(conn: Connection, erasure_id: str, now: datetime) -> None:
    conn.execute(update(erasures).where(erasures.c.erasure_id == erasure_id).values(completed_at=now.isoformat()))


# The contacts holding an identifier of each kind identity resolution joins by.
_HOLDING = {"email": "email_key = ?", "mobile": "phone = ? AND phone_kind = 'mobile'"}


def _holders(conn: Connection, kind: str, value: str) -> set[tuple[str, str]]:
    """(system, record id) of every mapped contact holding `value` as its `kind` identifier."""
    rows = raw_rows(conn, f"SELECT system, record_id FROM contacts WHERE {_HOLDING[kind]}", (value,))
    return {(str(system), str(rid)) for system, rid in rows}


def _email_keys_of(conn: Connection, members: Sequence[tuple[str, str]]) -> list[str]:
    """The email match keys of the person's records (not role addresses) that no one else's record
    holds: what makes a guest order, or a held record, theirs alone."""
    keys: set[str] = set()
    for system, rid in members:
        key = conn.execute(
            select(contacts.c.email_key).where(
                contacts.c.system == system, contacts.c.record_id == rid, contacts.c.email_role.is_(False)
            )
        ).scalar()
        if key:
            keys.add(str(key))
    mine = set(members)
    return [key for key in sorted(keys) if _holders(conn, "email", key) <= mine]  # else someone else's too


def _mobiles_of(conn: Connection, members: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The mobile numbers of the person's records that no one else's record holds, each with the
    given names their records carry beside it: what makes a held contact theirs by its number (as
    identity resolution joins by it: never across given names that disagree)."""
    mine = set(members)
    found: dict[str, list[str]] = {}
    for system, rid in members:
        row = conn.execute(
            select(contacts.c.phone, contacts.c.given_name).where(
                contacts.c.system == system, contacts.c.record_id == rid, contacts.c.phone_kind == "mobile"
            )
        ).first()
        if row is not None and row[0]:
            found.setdefault(str(row[0]), []).extend([str(row[1])] if row[1] else [])
    # Else someone else's record holds it too.
    return {mobile: names for mobile, names in sorted(found.items()) if _holders(conn, "mobile", mobile) <= mine}


def _linked_from(conn: Connection, members: Sequence[tuple[str, str]]) -> set[str]:
    """The record keys the person's records name in their `link:` fields (another system's id of
    the same person, which identity resolution joins by before anything else)."""
    found: set[str] = set()
    for system, rid in members:
        text = conn.execute(
            select(contacts.c.links).where(contacts.c.system == system, contacts.c.record_id == rid)
        ).scalar()
        found.update(str(key) for key in json.loads(text or "[]"))
    return found


def _held_under(
    conn: Connection, system: str, ids: Sequence[str], facts: PayloadFacts | None = None
) -> list[tuple[str, str]]:
    """(system, id) of the ids naming a customer record of `system` that the state holds anything
    of though no profile holds it: a held (quarantined) contact, orders naming it (held ones too,
    read by `facts`), ledger or retry rows. (The caller found no profile holding any of them.)"""
    found: list[tuple[str, str]] = []
    wanted = [rid for rid in dict.fromkeys(ids) if addresses_a_record(rid)]
    named_by_held_orders = _customers_of_held_orders(conn, system, facts) if facts is not None and wanted else set()
    for rid in wanted:
        if rid in named_by_held_orders:
            found.append((system, rid))
            continue
        questions = (
            select(quarantine.c.record_id).where(
                quarantine.c.system == system,
                quarantine.c.kind == Kind.CONTACT.value,
                quarantine.c.record_id == rid,
            ),
            select(orders.c.order_id).where(orders.c.system == system, orders.c.customer_id == rid),
            select(pushed.c.record_id).where(pushed.c.system == system, pushed.c.record_id == rid),
            select(pending.c.record_id).where(pending.c.system == system, pending.c.record_id == rid),
        )
        if any(conn.execute(question.limit(1)).first() is not None for question in questions):
            found.append((system, rid))
    return found


def _customers_of_held_orders(conn: Connection, system: str, facts: PayloadFacts) -> set[str]:
    """The customer ids the held (quarantined) orders of `system` name, read by `facts`."""
    sql = (
        "SELECT q.kind, r.payload FROM quarantine q JOIN raw_records r "
        "ON r.system = q.system AND r.kind = q.kind AND r.record_id = q.record_id "
        "WHERE q.system = ? AND q.kind = ?"
    )
    named: set[str] = set()
    for kind, payload in raw_rows(conn, sql, (system, Kind.ORDER.value)):
        try:
            customer = facts(system, str(kind), jsontext.loads(payload)).customer
        except Exception:  # a payload its field map cannot read names no one
            continue
        if customer is not None:
            named.add(customer)
    return named


def _orders_of(
    conn: Connection, members: Sequence[tuple[str, str]], email_keys: Sequence[str]
) -> list[tuple[str, str]]:
    """The person's orders: those naming one of their customer records, and guest orders (naming no
    stored customer record) under an email match key of theirs alone (`_email_keys_of`)."""
    found: set[tuple[str, str]] = set()
    for system, rid in members:
        found |= {
            (system, str(oid))
            for (oid,) in conn.execute(
                select(orders.c.order_id).where(orders.c.system == system, orders.c.customer_id == rid)
            )
        }
    for key in email_keys:
        names_a_stored_customer = (
            select(contacts.c.record_id)
            .where(contacts.c.system == orders.c.system, contacts.c.record_id == orders.c.customer_id)
            .exists()
        )
        guests = select(orders.c.system, orders.c.order_id).where(orders.c.email_key == key, ~names_a_stored_customer)
        found |= {(str(system), str(oid)) for system, oid in conn.execute(guests)}
    return sorted(found)


def _quarantined_of(
    conn: Connection,
    members: Sequence[tuple[str, str]],
    email_keys: Sequence[str],
    mobiles: Mapping[str, Sequence[str]],
    linked: Set[str],
    facts: PayloadFacts,
    shared_above: SharedAbove,
    given: Set[tuple[str, str]] = frozenset(),
) -> tuple[list[tuple[str, str, str]], list[str], list[tuple[str, str, str]]]:
    """The held records (quarantined: no profile holds them) that are the person's, as (system,
    kind, record id), the email match keys only those records showed, and the held records whose
    field map reads no one in them but whose text holds an address or number of theirs
    (`_unread_mentions`).

    A held contact is theirs, as identity resolution would join it to them: under an email match
    key of theirs alone; by a `link:` field naming one of their records, or named by one of theirs
    (`linked`: those record keys); or under a mobile number of theirs alone whose given names do
    not disagree with its own (and, where another held contact's name on that number is not
    theirs, whose own name is theirs and not that other's: no nameless one). One found by a link
    or a number whose own email is on someone
    else's record is left: the evidence points two ways, and an erasure cannot be undone. An email
    such a record brings, on no one else's record, is theirs from then on (more held contacts,
    their guest orders). A held contact in `given` (a `<system>:<id>` KEY naming it) is theirs
    outright, and brings its email the same way. A held order is theirs when it names one of their
    customer records (held ones included, and a record in `given` whose own record is not held),
    or names no one else's record, held or not, under an email of theirs.
    A key or number on more records of one system than identity resolution joins by, theirs and
    held ones counted together, is a shared one (a family's address or phone, a shop's own): no
    held record is theirs by it. Their raw payloads are the person's data as much as their mapped
    records are. A payload the field map cannot read is left, since nothing says whose it is; but
    one whose text holds an address or mobile number of theirs is named, so the operator can see
    to it."""
    sql = (
        "SELECT q.system, q.kind, q.record_id, r.payload FROM quarantine q JOIN raw_records r "
        "ON r.system = q.system AND r.kind = q.kind AND r.record_id = q.record_id"
    )
    read: list[tuple[str, str, str, HeldFacts]] = []
    unread: list[tuple[str, str, str, Any]] = []  # with the payload, read once
    held_rows: list[tuple[str, str, str]] = []
    for system, kind, rid, payload in raw_rows(conn, sql):
        held_as = (str(system), str(kind), str(rid))
        held_rows.append(held_as)
        try:
            value = jsontext.loads(payload)
        except Exception:  # no JSON: its text, each escape (`\n`) read as a space
            unread.append((*held_as, _JSON_ESCAPE.sub(" ", str(payload))))
            continue
        try:
            said = facts(*held_as[:2], value)
        except Exception:  # a payload this odd names no one the field map can see
            unread.append((*held_as, value))
            continue
        if said.names_no_one(held_as[1]):
            unread.append((*held_as, value))
        read.append((*held_as, said))
    contacts_held = [(system, rid, said) for system, kind, rid, said in read if kind != Kind.ORDER.value]
    mapped_mine = set(members)
    limits = {"email": shared_above.email, "mobile": shared_above.mobile}
    counted: dict[tuple[str, str], bool] = {}

    def shared(kind: str, value: str) -> bool:
        """On more records of one system than the limit: held ones, and mapped ones."""
        if (kind, value) not in counted:
            on = Counter(system for system, _, said in contacts_held if _value(said, kind) == value)
            on.update(system for system, _ in _holders(conn, kind, value))
            counted[(kind, value)] = any(n > limits[kind] for n in on.values())
        return counted[(kind, value)]

    their_keys = {record_key(system, rid) for system, rid in members}
    # The given names held contacts carry beside each of their numbers: on a number whose names
    # disagree (a family's), a held contact is theirs only by a name that is theirs and no one
    # else's there, as identity resolution joins no nameless record by such a number.
    held_names: dict[str, frozenset[str]] = {}
    for _, _, said in contacts_held:
        number = said.mobile
        if number is not None and number in mobiles:
            held_names[number] = held_names.get(number, frozenset()) | given_names(said.given_name)

    def joined(system: str, rid: str, said: HeldFacts) -> bool:
        """By a link either way, or by a mobile number of theirs."""
        if record_key(system, rid) in linked or their_keys.intersection(said.links):
            return True
        mobile = said.mobile
        if mobile is None or mobile not in mobiles or shared("mobile", mobile):
            return False
        own, theirs = given_names(said.given_name), frozenset(mobiles[mobile])
        if not names_agree(own, theirs):
            return False
        # Names on the number that are not theirs: someone else's too, then.
        others = [name for name in held_names.get(mobile, ()) if not names_agree({name}, theirs)]
        if not others:
            return True
        return bool(own) and not any(same_person_names(name, other) for name in own for other in others)

    keys = {key for key in email_keys if not shared("email", key)}
    more: set[str] = set()
    found: dict[tuple[str, str], None] = {}  # in the order found
    for system, kind, rid in held_rows:
        if kind == Kind.CONTACT.value and (system, rid) in given:
            found[(system, rid)] = None
    for system, rid, said in contacts_held:
        email = said.email_key
        if (system, rid) not in found or email is None or shared("email", email):
            continue
        if _holders(conn, "email", email) <= mapped_mine:  # else a profile's, who is not named
            keys.add(email)
            more.add(email)
    while True:  # until no held contact is added: each one found may bring an address of theirs
        before = len(found)
        for system, rid, said in contacts_held:
            if (system, rid) in found:
                continue
            email = said.email_key
            if email is not None and email in keys:
                found[(system, rid)] = None
            elif joined(system, rid, said) and (email is None or _holders(conn, "email", email) <= mapped_mine):
                found[(system, rid)] = None
                if email is not None and not shared("email", email):
                    keys.add(email)
                    more.add(email)
        if len(found) == before:
            break
    held = [(system, Kind.CONTACT.value, rid) for system, rid in found]
    # A record the KEY named is theirs whether or not its own record is held: its held orders go too.
    mine = {*members, *found, *given}
    others_held = {(system, rid) for system, rid, _ in contacts_held} - mine
    for system, kind, rid, said in read:
        if kind != Kind.ORDER.value:
            continue
        customer, key = said.customer, said.email_key
        if customer is not None:
            if (system, customer) in mine:
                held.append((system, kind, rid))
                continue
            if (system, customer) in others_held:
                continue  # another held customer record's order
            named = select(contacts.c.record_id).where(contacts.c.system == system, contacts.c.record_id == customer)
            if conn.execute(named).first() is not None:
                continue  # another stored customer's order
        if key is not None and key in keys:
            held.append((system, kind, rid))
    erased = set(held)  # one of theirs by a link may name no one itself
    left = [entry for entry in unread if entry[:3] not in erased]
    # Their numbers, and those of held contacts found to be theirs, as their addresses above.
    found_numbers = {said.mobile for system, rid, said in contacts_held if (system, rid) in found and said.mobile}
    numbers = {number for number in {*mobiles, *found_numbers} if not shared("mobile", number)}
    return sorted(held), sorted(more - set(email_keys)), _unread_mentions(left, keys, numbers)


# An address as it may stand anywhere in a payload's text (in a note, after a name, in a field
# the map does not read); `normalise_email` then decides whether it is one.
_ADDRESS_IN_TEXT = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def _unread_mentions(
    unread: Sequence[tuple[str, str, str, Any]], keys: Set[str], numbers: Set[str] = frozenset()
) -> list[tuple[str, str, str]]:
    """Of the held records whose field map reads no one in them (`unread`: with the payload as
    read), those holding, in any of their values, an address with one of `keys` (theirs alone) as
    its match key, or one of their mobile `numbers` (E.164, theirs alone) in any spelling
    `phonenumbers` finds in free text (a national one read as a number of their numbers'
    countries). They are kept: an address or number in a record is no proof of whose it is (a
    gift's recipient, a note), and an erasure cannot be undone. Named instead, so the erasure is
    not thought whole while a payload of the state may still hold them."""
    regions = {region for region in map(phone_region, numbers) if region is not None}
    digits = {national for national in map(national_digits, numbers) if national is not None}
    found = []
    for system, kind, rid, payload in unread:
        for value in _values_in(payload):
            if _holds_address(value, keys) or _holds_number(value, numbers, regions, digits):
                found.append((system, kind, rid))
                break
    return sorted(found)


# A JSON escape in a payload no JSON reader could read (`\n`, `\u00e9`): read as a space, so that
# what follows a line break is not read as joined to the letter before it.
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)")


def _values_in(payload: Any) -> Iterator[str]:
    """The texts a payload holds, each on its own (a note's line breaks as themselves): every key,
    string and number of it."""
    stack = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            yield from (str(key) for key in value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            yield value
        elif value is not None and not isinstance(value, bool):
            yield str(value)


def _holds_address(text: str, keys: Set[str]) -> bool:
    if "@" not in text:
        return False
    for candidate in _ADDRESS_IN_TEXT.findall(text):
        address = normalise_email(candidate)
        if isinstance(address, str) and email_match_key(address) in keys:
            return True
    return False


def _holds_number(text: str, numbers: Set[str], regions: Set[str], digits: Set[str]) -> bool:
    """Whether `text` holds one of `numbers`. The matcher costs about a millisecond per kilobyte and
    region, so it only reads a text whose digits, in a row, hold one of the numbers' own."""
    if not numbers:
        return False
    run = digits_in(text)  # the digits as the matcher reads them: it never finds a number this drops
    if not any(national in run for national in digits):
        return False
    return not numbers.isdisjoint(numbers_in_text(text, regions))


def _value(said: HeldFacts, kind: str) -> str | None:
    return said.email_key if kind == "email" else said.mobile


def _known_states(
    conn: Connection,
    members: Sequence[tuple[str, str]],
    expected: Mapping[str, RemoteState],
    writable: Set[str] | None = None,
) -> dict[tuple[str, str], RemoteState]:
    """The records whose crmsync tags and fields must come off, with every tag crmsync saw there,
    wrote there, or would have written there for the person's segments (removing one that is
    gone changes nothing). Marked unknown, so every owned field is cleared and a connector that
    can looks at the record before it writes. A record with nothing of crmsync's known or expected
    (a system crmsync does not write to) is no target. What crmsync would write counts only where
    it writes (`writable`), or wrote or tried to before write-back was switched off there: a system
    read but never written holds nothing of crmsync's, and its target would wait there for good."""
    known: dict[tuple[str, str], RemoteState] = {}
    ever_written: dict[str, bool] = {}

    def written_to(system: str) -> bool:
        if writable is None or system in writable:
            return True
        if system not in ever_written:
            ever_written[system] = any(
                conn.execute(select(table.c.record_id).where(table.c.system == system).limit(1)).first() is not None
                for table in (pushed, pending)
            )
        return ever_written[system]

    for system, rid in members:
        read = conn.execute(
            select(contacts.c.owned).where(contacts.c.system == system, contacts.c.record_id == rid)
        ).scalar()
        wrote = conn.execute(
            select(pushed.c.state).where(pushed.c.system == system, pushed.c.record_id == rid)
        ).scalar()
        states = [RemoteState.from_json(json.loads(text)) for text in (read, wrote) if text]
        would = expected.get(system) if written_to(system) else None
        if would is not None:
            states.append(would)
        tags = frozenset(tag for state in states for tag in state.tags)
        fields = {key: value for state in states for key, value in state.valued_fields().items()}
        could_write = would is not None and bool(would.tags or would.fields)
        if tags or fields or wrote or could_write:
            known[(system, rid)] = RemoteState(tags, fields, known=False)
    return known


def _refuse_stale(conn: Connection) -> None:
    computed = conn.execute(select(meta.c.value).where(meta.c.key == "profiles_seq")).scalar()
    changed = conn.execute(select(func.max(contacts.c.changed_seq))).scalar()
    if computed is not None and changed is not None and int(changed) > int(computed):
        raise StaleProfiles(
            "records changed after the profiles were last computed, so who belongs to this person may "
            "be out of date: run `crmsync sync` (or `crmsync plan`) first, then forget"
        )


def _delete_person(
    conn: Connection,
    profile_ids: Sequence[str],
    members: Sequence[tuple[str, str]],
    order_ids: Sequence[tuple[str, str]],
) -> None:
    of_system: dict[str, list[str]] = {}
    for system, rid in members:
        of_system.setdefault(system, []).append(rid)
    for system, rids in of_system.items():
        delete_contacts(conn, system, rids)
    by_system: dict[str, list[str]] = {}
    for system, oid in order_ids:
        by_system.setdefault(system, []).append(oid)
    for system, ids_of_system in by_system.items():
        for start in range(0, len(ids_of_system), 500):  # a big customer's orders: a statement per 500
            chunk = ids_of_system[start : start + 500]
            conn.execute(delete(orders).where(orders.c.system == system, orders.c.order_id.in_(chunk)))
            _delete_raw(conn, system, Kind.ORDER.value, chunk)
    ids = list(profile_ids)
    # Ids the person had before a merge: their history and tier rows are theirs too.
    # Not an id a live profile holds again (a merge that came apart: sync/state/schema.py RETIRED).
    retired = select(profile_aliases.c.alias).where(profile_aliases.c.profile_id.in_(ids), RETIRED)
    ids += [str(alias) for (alias,) in conn.execute(retired)]
    conn.execute(
        delete(profile_aliases).where(profile_aliases.c.profile_id.in_(ids) | profile_aliases.c.alias.in_(ids))
    )
    conn.execute(delete(segment_history).where(segment_history.c.profile_id.in_(ids)))
    conn.execute(delete(profile_tiers).where(profile_tiers.c.profile_id.in_(ids)))
    conn.execute(delete(profiles).where(profiles.c.profile_id.in_(ids)))
    # The compute's snapshot names every record and order it attached: the next cycle resolves in full.
    conn.execute(delete(resolution_snapshot))
    conn.execute(delete(meta).where(meta.c.key == "members_digest"))  # the stored members changed


def delete_contacts(conn: Connection, system: str, record_ids: Sequence[str]) -> None:
    """Every row naming these contact records of a system, inside `conn`'s transaction: mapped,
    raw and held rows, profile members, identity links, ledger and retry rows. Not their profiles
    (the caller decides: an erasure deletes them, a record the vendor deleted leaves its profile to
    the next compute) and no `forgotten` hash (the caller's too). The stored members then differ
    from the resolution snapshot's: the next compute resolves identities in full (a cycle by
    difference takes a member's row for stored where the snapshot had it, and one deleted here
    that came back to the same profile would be left without its row)."""
    if record_ids:
        conn.execute(delete(meta).where(meta.c.key == "members_digest"))
    for start in range(0, len(record_ids), 500):
        chunk = list(record_ids[start : start + 500])
        for table in (contacts, profile_members, pushed, pending):
            conn.execute(delete(table).where(table.c.system == system, table.c.record_id.in_(chunk)))
        _delete_raw(conn, system, Kind.CONTACT.value, chunk)
        keys = [record_key(system, rid) for rid in chunk]
        conn.execute(delete(identity_links).where(identity_links.c.a.in_(keys) | identity_links.c.b.in_(keys)))


def _delete_raw(conn: Connection, system: str, kind: str, record_ids: Sequence[str]) -> None:
    conn.execute(
        delete(raw_records).where(
            raw_records.c.system == system, raw_records.c.kind == kind, raw_records.c.record_id.in_(record_ids)
        )
    )
    conn.execute(
        delete(quarantine).where(
            quarantine.c.system == system, quarantine.c.kind == kind, quarantine.c.record_id.in_(record_ids)
        )
    )
