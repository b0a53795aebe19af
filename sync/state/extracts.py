"""The extract store: raw records, their mapped rows (contacts, orders) or quarantine entries, and the
read checkpoints, a page at a time.

A page is mapped before its write transaction opens (`map_page`): connector hooks the mapper calls
(owned state, payload tags) may be slow, and must not hold the database while they run. The write
(`write_page`) then stores the page's raw records, their mapped rows and the checkpoint that covers
them in one transaction, so a crash leaves either all of them or none.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Connection, Table, and_, delete, func, select

from mapping import jsontext
from mapping.model import (
    PROFILE_FIELDS,
    Contact,
    Kind,
    Order,
    Rejection,
    RemoteState,
    SourceRecord,
    iso_text,
    parse_timestamp,
    record_key,
)
from mapping.normalize.email import email_match_key
from mapping.normalize.text import MAX_ID
from sync.state.erasure import CUSTOMER, Forgotten, delete_contacts
from sync.state.keys import SHORTEST_UNKEYABLE, storage_id, unkeyable
from sync.state.schema import (
    checkpoints,
    contacts,
    identity_links,
    orders,
    pending,
    profile_members,
    pushed,
    quarantine,
    raw_records,
)
from sync.state.sql import Database, insert_rows, raw_many, raw_rows, upsert_many

Mapper = Callable[[SourceRecord], Contact | Order | Rejection]
Guard = Callable[[Iterable[Contact | Order | Rejection]], None]

canonical_json = jsontext.canonical  # every record read passes here: no wrapper call on the way


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class StoredPage:
    received: int
    changed: int
    quarantined: int


@dataclass
class MappedPage:
    """One page, mapped against the content hashes stored when it was mapped (`existing`): the
    records whose hash differs from the stored one (all of them when forced) are `changed`, and
    `results` holds their mapped form."""

    system: str
    kind: Kind
    received: int  # records handed over, duplicates included
    records: dict[str, SourceRecord]  # by id; of duplicates the last one
    texts: dict[str, str]  # canonical JSON of each payload
    hashes: dict[str, str]
    force: bool
    existing: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    results: dict[str, Contact | Order | Rejection] = field(default_factory=dict)


# The columns of a contact kept in its `details` JSON: every profile field but the two with columns
# of their own (email, phone), and the phone as the record wrote it.
_DETAILS = ("phone_raw", *(name for name in PROFILE_FIELDS if name not in ("email", "phone")))


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


def _contact_values(result: Contact, stamp: str | None = None) -> tuple[Any, ...]:
    """A `contacts` row without its page-wide columns (`system` and `changed_seq`, the first and
    the last), in the table's column order. `stamp`: its `updated_at` as text when the caller has
    written it already (the raw record's row holds the same time)."""
    details: dict[str, Any] = {}
    for name in _DETAILS:
        value = getattr(result, name)
        if value is not None:
            details[name] = value
    if result.flags:
        details["flags"] = list(result.flags)
    email = result.email
    return (
        result.id,
        email,
        email_match_key(email) if email else None,
        result.email_role,
        result.phone,
        result.given_name or (result.initials[0] if result.initials else None),
        result.phone_kind,
        jsontext.compact(details),
        stamp if stamp is not None else iso_text(result.updated_at) if result.updated_at else None,
        _owned_text(result.owned),
        jsontext.compact(result.links) if result.links else "[]",
    )


# The `owned` text of a state with no tags and no fields of ours, known or not: most contacts read
# hold none (Lightspeed's and SuperOffice's lists never show them), so their text is made once here.
_EMPTY_OWNED = (jsontext.compact(RemoteState().to_json()), jsontext.compact(RemoteState.unknown().to_json()))


def _owned_text(owned: RemoteState) -> str:
    if not owned.tags and not owned.fields:
        return _EMPTY_OWNED[not owned.known]  # to_json asks `not known` too
    return jsontext.compact(owned.to_json())


def _order_values(result: Order) -> tuple[Any, ...]:
    """An `orders` row without its page-wide columns (`system`, the first, and `changed_seq`, the
    eleventh), in the table's column order."""
    return (
        result.id,
        result.customer_id,
        result.email,
        email_match_key(result.email) if result.email else None,
        str(result.amount),
        result.currency,
        iso_text(result.created_at),
        int(result.created_at.timestamp()),
        result.counts,
        None if result.discount is None else result.discount,
        jsontext.compact(result.categories) if result.categories else None,
        result.unfinished,
    )


# Where a row of each table takes its page-wide columns: a new record's row is written without them
# (`insert_rows` gives them once per statement), a row stored before with them (`upsert_many`).
_CONTACT_COLUMNS = tuple(c.name for c in contacts.columns)
_ORDER_COLUMNS = tuple(c.name for c in orders.columns)
_RAW_COLUMNS = tuple(c.name for c in raw_records.columns)
_QUARANTINE_COLUMNS = tuple(c.name for c in quarantine.columns)


def _contact_row(values: tuple[Any, ...], system: str, run_seq: int) -> tuple[Any, ...]:
    return (system, *values, run_seq)


def _order_row(values: tuple[Any, ...], system: str, run_seq: int) -> tuple[Any, ...]:
    return (system, *values[:9], run_seq, *values[9:])


def _mapped_table(kind: Kind) -> tuple[Table, Column[Any]]:
    """The table a record of this kind is mapped into, and its id column."""
    return (contacts, contacts.c.record_id) if kind is Kind.CONTACT else (orders, orders.c.order_id)


def _stored_hashes(conn: Connection, system: str, kind: str, ids: Sequence[str]) -> dict[str, str]:
    """Record id -> content hash of the raw records already stored, for these ids (on PostgreSQL in
    one query with the ids as one array parameter: a list of 500 marks costs it more to plan than
    to run)."""
    if conn.dialect.name == "postgresql":
        sql = "SELECT record_id, content_hash FROM raw_records WHERE system = ? AND kind = ? AND record_id = ANY(?)"
        return dict(raw_rows(conn, sql, (system, kind, list(ids))))
    found: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        sql = "SELECT record_id, content_hash FROM raw_records WHERE system = ? AND kind = ? AND record_id IN ({})"
        found.update(raw_rows(conn, sql.format(", ".join("?" for _ in chunk)), (system, kind, *chunk)))
    return found


def put_checkpoint(conn: Connection, system: str, stream: str, value: Mapping[str, Any] | None, seq: int) -> None:
    """Set (or with None, clear) a checkpoint inside `conn`'s transaction."""
    if value is None:
        conn.execute(delete(checkpoints).where(checkpoints.c.system == system, checkpoints.c.stream == stream))
    else:
        upsert_many(conn, checkpoints, [(system, stream, json.dumps(value), seq)], ("system", "stream", "value", "seq"))


class ExtractStore:
    def __init__(self, db: Database, forgotten: Callable[[], Forgotten] | None = None) -> None:
        self.db = db
        # The erased records' hashes (sync/state/erasure.py): those records are never stored again.
        self.forgotten = forgotten or Forgotten

    # ----- checkpoints -----------------------------------------------------------------------------
    def checkpoint(self, system: str, stream: str) -> dict[str, Any] | None:
        with self.db.engine.connect() as conn:
            value = conn.execute(
                select(checkpoints.c.value).where(checkpoints.c.system == system, checkpoints.c.stream == stream)
            ).scalar()
        return json.loads(value) if value is not None else None

    def set_checkpoint(self, system: str, stream: str, value: Mapping[str, Any] | None, seq: int) -> None:
        with self.db.writing() as conn:
            put_checkpoint(conn, system, stream, value, seq)

    # ----- pages -----------------------------------------------------------------------------------
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
        """Store one page of records and its checkpoint in one transaction. Records whose content
        hash is unchanged are skipped (unless `force`); changed ones are mapped, before the write
        transaction opens, so nothing downstream re-reads raw payloads and no mapping holds the
        database. The rows go through the driver's `executemany` with statements built once: per
        record, SQLAlchemy's per-row work would cost more than SQLite's. `guard` sees the mapped
        records before anything is written and may refuse the page (the drift guard): its
        exception comes before the transaction, so nothing of the page is stored, checkpoint
        included."""
        page = self.map_page(system, kind, records, mapper, force=force, guard=guard)
        while (stored := self.write_page(page, run_seq, checkpoint)) is None:
            # Another writer stored some of these records between the mapping and the write (the
            # state lock and one extract thread per system rule it out): decide again from what is
            # stored now, mapping only the records not mapped yet.
            page = self.map_page(system, kind, records, mapper, force=force, guard=guard, mapped=page.results)
        return stored

    def map_page(
        self,
        system: str,
        kind: Kind,
        records: Sequence[SourceRecord],
        mapper: Mapper,
        *,
        force: bool = False,
        guard: Guard | None = None,
        mapped: Mapping[str, Contact | Order | Rejection] | None = None,
    ) -> MappedPage:
        """Map the records of a page that changed since they were stored (all of them when
        `force`), outside any write transaction; `guard` then sees the mapped records and may refuse
        the page by raising. `mapped`: results of an earlier attempt at this page, reused."""
        # An id is its own key unless it is over-long (a call per record saved for the others).
        unique = {r.id if len(r.id) <= MAX_ID else storage_id(r.id): r for r in records}
        erased = self.forgotten()
        if erased.salt is not None:
            # By its key, and by its whole id where that is over-long: an erasure made before such
            # ids were keyed by a stand-in hashed the whole id.
            unique = {
                rid: r
                for rid, r in unique.items()
                if not (
                    erased.blocks(system, kind.value, rid) or (r.id != rid and erased.blocks(system, kind.value, r.id))
                )
            }
        texts: dict[str, str] = {}
        hashes: dict[str, str] = {}
        sha256, canonical_utf8 = hashlib.sha256, jsontext.canonical_utf8
        for rid, r in unique.items():  # `content_hash` of `canonical_json`, without a call per record
            data = canonical_utf8(r.payload)
            hashes[rid] = sha256(data).hexdigest()
            texts[rid] = data.decode()
        page = MappedPage(system, kind, len(records), unique, texts, hashes, force)
        ids = list(unique)
        with self.db.engine.connect() as conn:
            page.existing = _stored_hashes(conn, system, kind.value, ids)
        page.changed = ids if force else [rid for rid in ids if page.existing.get(rid) != hashes[rid]]
        earlier = mapped or {}
        for rid in page.changed:
            result = earlier.get(rid)
            if result is None:
                record = unique[rid]
                # Only an id as long as a stand-in or longer can be unkeyable (a call saved for the others).
                held = unkeyable(record.id) if len(record.id) >= SHORTEST_UNKEYABLE else None
                result = held or mapper(record)
                if kind is Kind.ORDER and result.__class__ is Rejection and result.reason == "id_too_long":
                    # Held for its own id, it may still name a customer: an erased one's keeps it out.
                    named = mapper(record)
                    result = Rejection(result.reason, result.message, getattr(named, "customer_id", None))
            page.results[rid] = result
        if erased.salt is not None and kind is Kind.ORDER:
            # An order naming an erased customer record is that person's: not stored either, held or not.
            page.changed = [
                rid
                for rid in page.changed
                if not (
                    isinstance(order := page.results[rid], Order | Rejection)
                    and order.customer_id
                    and erased.blocks(system, CUSTOMER, order.customer_id)
                )
            ]
        if guard is not None:
            guard([page.results[rid] for rid in page.changed])
        return page

    def write_page(
        self, page: MappedPage, run_seq: int, checkpoint: tuple[str, Mapping[str, Any] | None] | None = None
    ) -> StoredPage | None:
        """Store a mapped page and its checkpoint in one transaction. None, with nothing written,
        when the stored hashes of its records are no longer those it was mapped against."""
        system, kind = page.system, page.kind
        quarantined = 0
        with self.db.writing() as conn:
            existing = _stored_hashes(conn, system, kind.value, list(page.records))
            if existing != page.existing:
                return None
            # Rows of records new to the state are plain inserts (COPY on PostgreSQL, its fastest
            # path); only records stored before need an upsert. A record stored before may also have
            # a mapped row or a quarantine entry to replace; a new one has neither (raw rows are
            # never deleted), so only those need the deletes below.
            # The raw and mapped rows of a new record leave out the columns every row of the page
            # shares (system, kind, run), given once per statement; a row stored before is whole.
            rows: dict[tuple[str, bool], list[tuple[Any, ...]]] = {
                (table, before): [] for table in ("raw", "mapped", "bad") for before in (False, True)
            }
            good_before: list[str] = []
            bad_before: list[str] = []
            # Looked up once, not per record: an enum's value is a property, a page's fields attributes.
            kind_value = kind.value
            results, records, hashes, texts = page.results, page.records, page.hashes, page.texts
            raw_new, raw_before = rows["raw", False], rows["raw", True]
            mapped_new, mapped_before = rows["mapped", False], rows["mapped", True]
            whole = _contact_row if kind is Kind.CONTACT else _order_row
            for rid in page.changed:
                result = results[rid]
                before = rid in existing
                updated_at = records[rid].updated_at
                stamp = iso_text(updated_at) if updated_at else None
                if before:
                    raw_before.append((system, kind_value, rid, hashes[rid], texts[rid], stamp, run_seq))
                else:
                    raw_new.append((rid, hashes[rid], texts[rid], stamp))
                if isinstance(result, Rejection):
                    quarantined += 1
                    rows["bad", before].append(
                        (system, kind_value, rid, result.reason, result.message, hashes[rid], run_seq)
                    )
                    if before:
                        bad_before.append(rid)
                else:
                    if isinstance(result, Contact):
                        values = _contact_values(result, stamp if result.updated_at is updated_at else None)
                    else:
                        values = _order_values(result)
                    if before:
                        mapped_before.append(whole(values, system, run_seq))
                        good_before.append(rid)
                    else:
                        mapped_new.append(values)
            mapped_table, id_column = _mapped_table(kind)
            page_wide = {
                raw_records: (_RAW_COLUMNS[2:6], (("system", system), ("kind", kind_value), ("changed_seq", run_seq))),
                contacts: (_CONTACT_COLUMNS[1:12], (("system", system), ("changed_seq", run_seq))),
                orders: (_ORDER_COLUMNS[1:10] + _ORDER_COLUMNS[11:], (("system", system), ("changed_seq", run_seq))),
                quarantine: (_QUARANTINE_COLUMNS, ()),  # few: whole, as they come
            }
            for name, table in (("raw", raw_records), ("mapped", mapped_table), ("bad", quarantine)):
                upsert_many(conn, table, rows[name, True])
                if rows[name, False]:
                    columns, same = page_wide[table]
                    insert_rows(conn, table, columns, rows[name, False], same)
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
                put_checkpoint(conn, system, checkpoint[0], checkpoint[1], run_seq)
        return StoredPage(page.received, len(page.changed), quarantined)

    def remap(self, system: str, kind: Kind, mapper: Mapper, run_seq: int, guard: Guard | None = None) -> int:
        """Map every stored raw record of a system again (after the mapping code changed).

        `guard` (the drift guard) first sees every record mapped anew, before one is stored: a new
        mapping that would quarantine nearly all of them (a status word the new code does not know)
        raises, and the records stay as they were mapped before. Those are mapped twice then.

        Mapping again stamps every contact with this run, as a read would, yet nothing was read:
        where the ledger's last push was the newer word on a record (pushed at or after it was
        last read), the push is stamped with this run first, so it stays the newer word. Else the
        record's stale read would count as newer than the push, and a write back to what was read
        would be planned as no change."""
        if kind is Kind.CONTACT:
            with self.db.writing() as conn:
                raw_many(
                    conn,
                    "UPDATE pushed SET pushed_seq = ? WHERE system = ? AND pushed_seq >= (SELECT c.changed_seq "
                    "FROM contacts c WHERE c.system = pushed.system AND c.record_id = pushed.record_id)",
                    [(run_seq, system)],
                )
        # A contact's time is the one its mapped row holds where it has one: the raw row's is the
        # vendor's last stamp, which may be crmsync's own write there (the upsert kept the mapped
        # row's time then, `kept_while_same`); a remap reads no news of the person, and a mapping
        # that maps more columns must not make every record crmsync wrote to its profile's newest.
        stamp: Any = raw_records.c.updated_at
        source: Any = raw_records
        if kind is Kind.CONTACT:
            stamp = func.coalesce(contacts.c.updated_at, raw_records.c.updated_at)
            source = raw_records.outerjoin(
                contacts,
                and_(contacts.c.system == raw_records.c.system, contacts.c.record_id == raw_records.c.record_id),
            )
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(raw_records.c.record_id, raw_records.c.payload, stamp)
                .select_from(source)
                .where(raw_records.c.system == system, raw_records.c.kind == kind.value)
            ).all()
        records = [
            SourceRecord(system, kind, rid, parse_timestamp(stamp) if stamp else None, jsontext.loads(payload))
            for rid, payload, stamp in rows
        ]
        batches = [records[start : start + 1000] for start in range(0, len(records), 1000)]
        if guard is not None:
            guard(
                page.results[rid]
                for page in (self.map_page(system, kind, batch, mapper, force=True) for batch in batches)
                for rid in page.changed
            )
        for batch in batches:
            self.store_page(system, kind, batch, mapper, run_seq, force=True)
        self._drop_over_long_keys(system, kind)
        return len(records)

    def _drop_over_long_keys(self, system: str, kind: Kind) -> None:
        """Rows a SQLite state stored under an over-long id before such records were keyed by a
        stand-in (PostgreSQL refused them): the remap has just stored each again under its
        stand-in, quarantined, so every row naming the whole id goes: mapped, raw and held rows,
        and a contact's profile member, identity links and ledger rows."""
        if self.db.is_postgres:
            return
        mapped_table, id_column = _mapped_table(kind)
        with self.db.writing() as conn:
            long_ids = [
                str(rid)
                for (rid,) in conn.execute(
                    select(id_column).where(mapped_table.c.system == system, func.length(id_column) > MAX_ID)
                )
            ]
            conn.execute(delete(mapped_table).where(mapped_table.c.system == system, func.length(id_column) > MAX_ID))
            for table in (raw_records, quarantine):
                conn.execute(
                    delete(table).where(
                        table.c.system == system, table.c.kind == kind.value, func.length(table.c.record_id) > MAX_ID
                    )
                )
            if kind is Kind.CONTACT and long_ids:
                for table in (profile_members, pushed, pending):
                    conn.execute(delete(table).where(table.c.system == system, table.c.record_id.in_(long_ids)))
                keys = [record_key(system, rid) for rid in long_ids]
                conn.execute(delete(identity_links).where(identity_links.c.a.in_(keys) | identity_links.c.b.in_(keys)))

    # ----- contacts the vendor deleted --------------------------------------------------------------
    def contacts_absent(self, system: str, seen: Set[str]) -> tuple[int, list[str]]:
        """How many contact records of a system the state holds (mapped or held), and the ids of
        those not in `seen`. The stored ids pass by in batches, never all in memory at once: at a
        million contacts `seen` is the one big set."""
        stored = 0
        absent: list[str] = []
        sql = "SELECT record_id FROM raw_records WHERE system = ? AND kind = ?"
        for batch in self.db.raw_chunks(sql, 10_000, params=(system, Kind.CONTACT.value)):
            stored += len(batch)
            absent += [str(rid) for (rid,) in batch if rid not in seen]
        return stored, absent

    def drop_deleted_contacts(
        self, system: str, record_ids: Sequence[str], checkpoint: tuple[str, Mapping[str, Any] | None], run_seq: int
    ) -> None:
        """Contacts the vendor deleted leave the state as records that no longer exist
        (`erasure.delete_contacts`: mapped, raw and held rows, members, links, ledger and retries),
        with the checkpoint that says so, in one transaction. Their profiles stay to the next
        compute, which resolves identities in full once (the stored members changed). No
        `forgotten` hash: a record the vendor restores is stored again when it is read."""
        with self.db.writing() as conn:
            delete_contacts(conn, system, record_ids)
            put_checkpoint(conn, system, checkpoint[0], checkpoint[1], run_seq)

    # ----- quarantine ------------------------------------------------------------------------------
    def quarantine_counts(self) -> dict[str, int]:
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(quarantine.c.system, func.count()).group_by(quarantine.c.system)).all()
            return {system: int(n) for system, n in rows}

    def quarantine_summary(self) -> dict[str, dict[str, int]]:
        """CONTRACTS §2: quarantined records by reason and by system."""
        with self.db.engine.connect() as conn:
            by_reason = conn.execute(select(quarantine.c.reason, func.count()).group_by(quarantine.c.reason)).all()
            by_system = conn.execute(select(quarantine.c.system, func.count()).group_by(quarantine.c.system)).all()
        return {
            "by_reason": {reason: int(n) for reason, n in sorted(by_reason)},
            "by_system": {system: int(n) for system, n in sorted(by_system)},
        }

    def frozen_counts(self) -> dict[str, int]:
        """Per system, the held contacts that still carry crmsync's tags or fields as it last
        wrote them. crmsync never writes to a record it cannot read: a contact held after crmsync
        tagged it keeps those tags, however the person's segments move, until it reads cleanly
        again. The report says how many, so that stale tags are seen, not silently kept."""
        on_held = (quarantine.c.system == pushed.c.system) & (quarantine.c.record_id == pushed.c.record_id)
        with self.db.engine.connect() as conn:
            written = conn.execute(
                select(pushed.c.system, pushed.c.state)
                .join(quarantine, on_held)
                .where(quarantine.c.kind == Kind.CONTACT.value)
            ).all()
        frozen: dict[str, int] = {}
        for system, state in written:
            held = RemoteState.from_json(json.loads(state))
            if held.tags or held.valued_fields():
                frozen[system] = frozen.get(system, 0) + 1
        return dict(sorted(frozen.items()))
