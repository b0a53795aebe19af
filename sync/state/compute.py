"""What the compute reads: contacts for identity resolution and orders as numpy columns, streamed
through the driver's cursor (no Python object per plain order), and the previous resolution.

Contacts are numbered, the same numbers in the identity read and in the order read, which both run
in one read transaction (`ComputeReader.snapshot`): the resolver indexes arrays by them, so an order
finds its contact's profile without a Python object per order. On SQLite the number is the contact
row's `rowid`: an order then finds it through the primary key's covering index, where a numbering
by `ROW_NUMBER()` had to be materialised and indexed again for the join (2.4 -> 1.7 s for 1,000,000
orders, bench/RESULTS.md). PostgreSQL has no stable row number, so there it is `ROW_NUMBER() OVER
(ORDER BY system, record_id)`, which its hash join takes as it is."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, delete, select

from mapping.model import Contact
from sync.state.extracts import contact_from_row
from sync.state.schema import contacts, resolution_snapshot
from sync.state.sql import Database, raw_many, raw_rows

# One order: its contact's row number (-1: none stored), amount, created epoch, counts, and for the
# orders these columns do not describe completely (another currency, or a guest's order, attached by
# email) `other`: "currency<TAB>email match key<TAB>system". Plain orders (nearly all) leave it None,
# so they cost no Python string; one CASE costs the database less than one per column.
ORDER_DTYPE = np.dtype([("contact", "i8"), ("amount", "f8"), ("created", "i8"), ("counts", "?"), ("other", "O")])


def split_other(other: str) -> tuple[str, str | None, str]:
    """An order's `other` column: (currency, email match key or None, system)."""
    currency, email_key, system = other.split("\t", 2)
    return currency, email_key or None, system


IdentityRow = tuple[int, str, str | None, bool, str | None, str | None, str, str | None]


def _literal(code: str) -> str:
    if not code.isalpha() or len(code) != 3:
        raise ValueError(f"not a currency code: {code!r}")
    return f"'{code}'"


class ComputeSnapshot:
    """The compute's reads on one read transaction: the contact row numbers of `identity_rows`
    and `order_arrays` agree."""

    def __init__(self, db: Database, conn: Connection) -> None:
        self.db = db
        self.conn = conn

    def _numbering(self) -> str:
        if not self.db.is_postgres:
            return "rowid"  # stable inside the read transaction; upserts keep a row's rowid
        binary = self.db.binary
        return f"ROW_NUMBER() OVER (ORDER BY system{binary}, record_id{binary})"

    def _numbered_contacts(self) -> tuple[str, str]:
        """What orders join to find their contact's number, and that number's column."""
        if not self.db.is_postgres:
            return "contacts", "rowid"
        return f"(SELECT system, record_id, {self._numbering()} AS n FROM contacts)", "n"

    def identity_rows(self) -> Iterator[IdentityRow]:
        """Per contact, what identity resolution reads, without building a Contact: row number,
        key (`system:id`), email match key, role flag, E.164 phone, phone kind, links (JSON) and
        given name, in key order. Streamed through the driver's own cursor: at a million rows the
        ORM-free path is several times faster."""
        binary = self.db.binary
        sql = (
            # The record key (`mapping.model.record_key`'s form) built by the database: the
            # identity read is the compute's hottest query and Python-side joining costs a pass per row.
            f"SELECT {self._numbering()}, system || ':' || record_id, email_key, email_role, phone, phone_kind, "
            f"links, given_name FROM contacts ORDER BY system{binary}, record_id{binary}"
        )
        for chunk in self.db.raw_chunks(sql, 50_000, self.conn):
            for number, key, email_key, role, phone, kind, links, given in chunk:
                yield number, key, email_key, bool(role), phone, kind, links, given

    def order_arrays(self, base_currency: str, chunk: int = 200_000) -> Iterator[npt.NDArray[Any]]:
        """Every order as structured arrays of ORDER_DTYPE, filled by numpy straight from the
        driver's rows. `other` is None for the orders the numeric columns describe completely:
        they name a stored contact and are in the base currency."""
        numbered, number = self._numbered_contacts()
        sql = (
            # DOUBLE PRECISION: amounts are stored as decimal text, and PostgreSQL's REAL has 24 bits.
            f"SELECT COALESCE(c.{number}, -1), CAST(o.amount AS DOUBLE PRECISION), o.created_epoch, o.counts, "
            f"CASE WHEN c.{number} IS NOT NULL AND o.currency IN ('', {_literal(base_currency)}) THEN NULL "
            "ELSE o.currency || '\t' || COALESCE(o.email_key, '') || '\t' || o.system END "
            f"FROM orders o LEFT JOIN {numbered} c "
            "ON c.system = o.system AND c.record_id = o.customer_id"
        )
        for rows in self.db.raw_chunks(sql, chunk, self.conn):
            yield np.fromiter(rows, dtype=ORDER_DTYPE, count=len(rows))

    def order_details(self, facts: frozenset[str]) -> Iterator[tuple[Any, ...]]:
        """The orders holding one of `facts` ("categories", "discount", "unfinished"; what the
        bases read, mapping/bases.py): system, customer id, email match key, created epoch, counts,
        discount, categories (JSON), unfinished. Only those rows: with `abandoned-checkout` alone,
        the few unfinished purchases."""
        tests = {"categories": "categories IS NOT NULL", "discount": "discount IS NOT NULL", "unfinished": "unfinished"}
        where = " OR ".join(tests[name] for name in sorted(facts))
        if not where:
            return
        sql = (
            "SELECT system, customer_id, email_key, created_epoch, counts, discount, categories, unfinished "
            f"FROM orders WHERE {where}"
        )
        for chunk in self.db.raw_chunks(sql, 50_000, self.conn):
            yield from chunk

    def input_marks(self) -> list[list[int]]:
        """Per table the compute reads (contacts, orders): row count, highest and sum of
        `changed_seq`. Every write to either table stamps the rows it writes with its run's
        number, and run numbers only grow, so any row written, or deleted, since they were read
        changes them (sync/resolution_snapshot.py)."""
        marks = []
        for table in ("contacts", "orders"):
            sql = f"SELECT COUNT(*), COALESCE(MAX(changed_seq), 0), COALESCE(SUM(changed_seq), 0) FROM {table}"
            [(count, highest, total)] = raw_rows(self.conn, sql)
            marks.append([int(count), int(highest), int(total)])
        return marks

    def stored_resolution(self) -> tuple[str, bytes] | None:
        """The resolution snapshot the last compute kept: its inputs and its header (the parts
        follow from `resolution_parts`)."""
        rows = raw_rows(self.conn, "SELECT inputs, data FROM resolution_snapshot WHERE name = 'header'")
        return (str(rows[0][0]), bytes(rows[0][1])) if rows else None

    def resolution_parts(self) -> Iterator[tuple[str, bytes]]:
        """The snapshot's other parts in name order, one at a time (each is some megabytes)."""
        sql = "SELECT name, data FROM resolution_snapshot WHERE name <> 'header' ORDER BY name"
        for chunk in self.db.raw_chunks(sql, 1, self.conn):
            for name, data in chunk:
                yield str(name), bytes(data)


class ComputeReader:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def snapshot(self) -> Iterator[ComputeSnapshot]:
        with self.db.reading() as conn:
            yield ComputeSnapshot(self.db, conn)

    def identity_rows(self) -> Iterator[IdentityRow]:
        with self.snapshot() as reads:
            yield from reads.identity_rows()

    def order_arrays(self, base_currency: str, chunk: int = 200_000) -> Iterator[npt.NDArray[Any]]:
        with self.snapshot() as reads:
            yield from reads.order_arrays(base_currency, chunk)

    def iter_contacts(self) -> Iterator[tuple[Contact, int]]:
        with self.db.engine.connect() as conn:
            for row in conn.execute(select(contacts).order_by(contacts.c.system, contacts.c.record_id)).mappings():
                yield contact_from_row(row), int(row["changed_seq"])

    def save_resolution(self, inputs: str, parts: Iterable[tuple[str, bytes]]) -> None:
        """Keep this compute's resolution snapshot, replacing the last one: its parts (the first
        named `header`, which carries the inputs), written one at a time so that no copy of the
        whole is ever held."""
        with self.db.writing() as conn:
            conn.execute(delete(resolution_snapshot))
            rows = ((name, inputs if name == "header" else "", data) for name, data in parts)
            raw_many(conn, "INSERT INTO resolution_snapshot (name, inputs, data) VALUES (?, ?, ?)", rows, chunk=1)

    def previous_assignment(self) -> tuple[dict[str, str], dict[str, int]]:
        """Record key -> profile id, and profile id -> creation sequence (its age)."""
        with self.db.reading() as conn:
            # Through the driver's cursor, keys built by the database (`record_key`'s form, as
            # `identity_rows` does): read in full every cycle.
            rows = raw_rows(conn, "SELECT system || ':' || record_id, profile_id FROM profile_members")
            assignment: dict[str, str] = dict(rows)
            del rows
            ages = {pid: int(seq) for pid, seq in raw_rows(conn, "SELECT profile_id, created_seq FROM profiles")}
        return assignment, ages
