"""The erasure journal against the state, at the start of every writing command
(sync/runtime.py `open_writer`) and before each of the daemon's cycles: a person forgotten must
stay forgotten when a backup made before the erasure is restored, or (SQLite) when a crash stopped
the erasure between its journal line and its commit. The same for both journal stores
(sync/state/erasure_journal.py: a file beside a SQLite state, a table beside a PostgreSQL one),
inside one state transaction:

- Journal erasures the state lacks: the state is older than they are. Each is done again, in one
  transaction: its `erasures` row, its `forgotten` hashes and its vendor targets (less those given
  up with `forget --abandon`), and every stored record whose salted hash is among its hashes goes
  through the erasure's own deletion (`_delete_person`, `_delete_raw`). One pass hashes each
  stored key once. Done again, it finds its row and does nothing: the replay is idempotent.
- State erasures the journal lacks (a state from a crmsync before the journal, or a journal
  lost): written to the journal from the state.
- A journal erasure made with another salt than the state's cannot be matched against the
  state's records: `JournalMismatch`, and no cycle runs (one could tag an erased person again).
- A journal that cannot be kept (a PostgreSQL role that may not create its schema): nothing to
  reconcile; a warning saying why and what to do, at every writing command, and in `status`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, delete, select

from mapping.model import Kind
from sync.state.erasure import (
    CUSTOMER,
    SALT_KEY,
    ErasureStore,
    _delete_person,
    _delete_raw,
    forgotten_hashes,
    identity_hash,
    record_erasure,
    stored_salt,
)
from sync.state.erasure_journal import ErasureJournal, JournalContents, JournalEntry, JournalTarget
from sync.state.schema import erasure_targets, erasures, forgotten, meta, profile_members
from sync.state.sql import raw_rows

log = structlog.get_logger("crmsync.erasure_replay")

REPLAYED_KEY = "erasures_replayed"


class JournalMismatch(RuntimeError):
    """The journal holds erasures this state lacks, made with another salt than the state's."""


@dataclass
class Reconciled:
    replayed: int = 0  # journal erasures done again in the state
    journaled: int = 0  # state erasures written to the journal
    profiles: int = 0
    contacts: int = 0
    orders: int = 0
    other: int = 0  # held records of other kinds
    problem: str | None = None  # why there is no journal to reconcile with


def reconcile(store: ErasureStore, now: datetime) -> Reconciled:
    """Journal and state made to agree (module docstring); the caller holds the writer lock (so
    one process at a time makes a PostgreSQL journal's schema, or writes either store)."""
    done = Reconciled()
    journal = store.journal
    if journal is None:
        return done
    with store.db.writing() as conn:
        done.problem = journal.ready(conn)
        if done.problem is not None:
            log.warning("no erasure journal", journal=journal.where, problem=done.problem)
            return done
        contents = journal.read(conn)
        in_state = {str(e) for (e,) in conn.execute(select(erasures.c.erasure_id))}
        missing = list({e.erasure_id: e for e in contents.entries if e.erasure_id not in in_state}.values())
        if missing:
            _replay(conn, journal, contents, missing, now, done)
        journaled = {e.erasure_id for e in contents.entries}
        unjournaled = sorted(in_state - journaled)
        if unjournaled:
            journal.append(conn, _entries_from_state(conn, unjournaled))
            done.journaled = len(unjournaled)
    if done.replayed:
        store.reread_forgotten()
        # Counts only: nothing that names the person.
        log.warning(
            "erasures replayed after a restore",
            erasures=done.replayed,
            profiles=done.profiles,
            contacts=done.contacts,
            orders=done.orders,
            held=done.other,
        )
    if done.journaled:
        log.info("erasures written to the erasure journal", erasures=done.journaled, journal=journal.where)
    return done


def _replay(
    conn: Connection,
    journal: ErasureJournal,
    contents: JournalContents,
    missing: Sequence[JournalEntry],
    now: datetime,
    done: Reconciled,
) -> None:
    state_salt = stored_salt(conn)
    salts = {entry.salt for entry in missing}
    if len(salts) > 1 or (state_salt and state_salt not in salts):
        raise JournalMismatch(
            f"the erasure journal {journal.where} holds {len(missing)} erasure(s) this state lacks, made "
            "with another salt than this state's, so crmsync cannot tell which stored records they "
            "erased and runs no cycle (one could tag an erased person again). The state is not the one "
            "those erasures were made in: restore that state (or a backup of it), or, if this state is "
            f"truly another deployment's, {journal.set_aside()} and run `crmsync forget` again for each "
            "person forgotten since this state's backup"
        )
    salt = salts.pop()
    if not state_salt:  # a state from before any erasure: its records hash as the journal's did
        conn.execute(meta.insert().values(key=SALT_KEY, value=salt))
    hashes = {h for entry in missing for h in entry.hashes}
    contacts_found, orders_found, other_found = _stored_records_in(conn, salt, hashes)
    profile_ids = _profiles_holding(conn, contacts_found)
    if contacts_found or orders_found or profile_ids:
        _delete_person(conn, profile_ids, contacts_found, orders_found)
        # Records of those profiles the erasure did not name were someone else's then: no profile
        # holds them now, and the next cycle resolves them afresh.
        conn.execute(delete(profile_members).where(profile_members.c.profile_id.in_(profile_ids)))
    for system, kind, rid in other_found:
        _delete_raw(conn, system, kind, [rid])
    stored = forgotten_hashes(conn)
    for entry in missing:
        given_up = contents.abandoned_at(entry.erasure_id)
        targets = [t for t in entry.targets if None not in given_up and t.system not in given_up]
        record_erasure(
            conn,
            entry.erasure_id,
            entry.requested_at,
            entry.profiles,
            entry.hashes,
            [(t.system, t.record_id, t.known) for t in targets],
            None if targets else now.isoformat(),
            stored,
        )
    # For `status`: when the state last learnt of erasures it had lost (a count, no one named).
    record = json.dumps({"at": now.isoformat(), "erasures": len(missing)})
    conn.execute(delete(meta).where(meta.c.key == REPLAYED_KEY))
    conn.execute(meta.insert().values(key=REPLAYED_KEY, value=record))
    done.replayed = len(missing)
    done.profiles, done.contacts, done.orders = len(profile_ids), len(contacts_found), len(orders_found)
    done.other = len(other_found)


# Every (system, record id) the state keeps of a contact, mapped, held, or only in the ledger.
_CONTACT_KEYS = (
    "SELECT system, record_id FROM raw_records WHERE kind = 'contact' "
    "UNION SELECT system, record_id FROM contacts UNION SELECT system, record_id FROM profile_members "
    "UNION SELECT system, record_id FROM quarantine WHERE kind = 'contact' "
    "UNION SELECT system, record_id FROM pushed UNION SELECT system, record_id FROM pending"
)
_ORDER_KEYS = (
    "SELECT system, record_id, NULL FROM raw_records WHERE kind = 'order' "
    "UNION SELECT system, order_id, customer_id FROM orders "
    "UNION SELECT system, record_id, NULL FROM quarantine WHERE kind = 'order'"
)
_OTHER_KEYS = (
    "SELECT system, kind, record_id FROM raw_records WHERE kind NOT IN ('contact', 'order') "
    "UNION SELECT system, kind, record_id FROM quarantine WHERE kind NOT IN ('contact', 'order')"
)


def _stored_records_in(
    conn: Connection, salt: str, hashes: set[str]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str, str]]]:
    """The stored contacts, orders and other held records whose salted hash is one of `hashes`:
    hashed as the erasure hashed them (an order also by the customer record it names)."""
    contact = Kind.CONTACT.value
    found_contacts = sorted(
        {
            (str(s), str(r))
            for s, r in raw_rows(conn, _CONTACT_KEYS)
            if identity_hash(salt, str(s), contact, str(r)) in hashes
        }
    )
    found_orders: set[tuple[str, str]] = set()
    for system, oid, customer in raw_rows(conn, _ORDER_KEYS):
        s, o = str(system), str(oid)
        if identity_hash(salt, s, Kind.ORDER.value, o) in hashes or (
            customer is not None and identity_hash(salt, s, CUSTOMER, str(customer)) in hashes
        ):
            found_orders.add((s, o))
    others = sorted(
        {
            (str(s), str(k), str(r))
            for s, k, r in raw_rows(conn, _OTHER_KEYS)
            if identity_hash(salt, str(s), str(k), str(r)) in hashes
        }
    )
    return found_contacts, sorted(found_orders), others


def _profiles_holding(conn: Connection, records: Sequence[tuple[str, str]]) -> list[str]:
    found: set[str] = set()
    for system, rid in records:
        holder = conn.execute(
            select(profile_members.c.profile_id).where(
                profile_members.c.system == system, profile_members.c.record_id == rid
            )
        ).scalar()
        if holder is not None:
            found.add(str(holder))
    return sorted(found)


def _entries_from_state(conn: Connection, erasure_ids: Sequence[str]) -> list[JournalEntry]:
    """The state's erasures as journal entries: what a crmsync before the journal did. Their
    hashes are those `forgotten` holds under them (one an earlier erasure stored is under that one)."""
    salt = stored_salt(conn) or ""
    entries = []
    for erasure_id in erasure_ids:
        row = conn.execute(
            select(erasures.c.requested_at, erasures.c.profiles).where(erasures.c.erasure_id == erasure_id)
        ).one()
        under = select(forgotten.c.key_hash).where(forgotten.c.erasure_id == erasure_id)
        hashes = tuple(sorted(str(h) for (h,) in conn.execute(under)))
        targets = tuple(
            JournalTarget(str(s), str(r), str(k))
            for s, r, k in conn.execute(
                select(erasure_targets.c.system, erasure_targets.c.record_id, erasure_targets.c.known)
                .where(erasure_targets.c.erasure_id == erasure_id)
                .order_by(erasure_targets.c.system, erasure_targets.c.record_id)
            )
        )
        entries.append(JournalEntry(erasure_id, str(row[0]), int(row[1]), salt, hashes, targets))
    return entries


def journal_status(store: ErasureStore) -> dict[str, Any] | None:
    """For `status` (read only, no lock, nothing made): where the journal is, the erasures it holds
    that the state lacks (the next writing command replays them), the last replay, and why there
    is no journal (`problem`, None when there is one). None for a state in memory."""
    journal = store.journal
    if journal is None:
        return None
    with store.db.reading() as conn:
        problem = journal.ready(conn, make=False)
        entries = {entry.erasure_id for entry in journal.read(conn).entries} if problem is None else set()
        in_state = {str(e) for (e,) in conn.execute(select(erasures.c.erasure_id))}
        replayed = conn.execute(select(meta.c.value).where(meta.c.key == REPLAYED_KEY)).scalar()
    return {
        "journal": journal.where,
        "erasures": len(entries),
        "to_replay": len(entries - in_state),
        "replayed": json.loads(replayed) if replayed else None,
        "problem": problem,
    }
