"""What the compute reads: contacts for identity resolution and orders as numpy columns, streamed
through the driver's cursor (no Python object per order), and the previous resolution."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select

from mapping.model import Contact, record_key
from sync.state.extracts import contact_from_row
from sync.state.schema import contacts, profile_members, profiles
from sync.state.sql import Database, raw_rows

ORDER_DTYPE = np.dtype(
    [("order", "i8"), ("contact", "i8"), ("amount", "f8"), ("created", "i8"), ("counts", "?"), ("plain", "?")]
)


def _literal(code: str) -> str:
    if not code.isalpha() or len(code) != 3:
        raise ValueError(f"not a currency code: {code!r}")
    return f"'{code}'"


class ComputeReader:
    def __init__(self, db: Database) -> None:
        self.db = db

    def iter_contacts(self) -> Iterator[tuple[Contact, int]]:
        with self.db.engine.connect() as conn:
            for row in conn.execute(select(contacts).order_by(contacts.c.system, contacts.c.record_id)).mappings():
                yield contact_from_row(row), int(row["changed_seq"])

    def identity_rows(
        self,
    ) -> Iterator[tuple[int, str, str | None, bool, str | None, str | None, str, str | None]]:
        """Per contact, what identity resolution reads, without building a Contact: row number,
        key (`system:id`), email match key, role flag, E.164 phone, phone kind, links (JSON) and
        given name. Streamed through the driver's own cursor: at a million rows the ORM-free path is
        several times faster, and plain SQL reads the same on SQLite and PostgreSQL."""
        sql = (
            # The record key (`mapping.model.record_key`'s form) built by SQLite: the identity
            # read is the compute's hottest query and Python-side joining costs a pass per row.
            "SELECT rowid, system || ':' || record_id, email_key, email_role, phone, phone_kind, links, given_name "
            "FROM contacts"
        )
        for chunk in self.db.raw_chunks(sql, 50_000):
            for rowid, key, email_key, role, phone, kind, links, given in chunk:
                yield rowid, key, email_key, bool(role), phone, kind, links, given

    def order_arrays(self, base_currency: str, chunk: int = 200_000) -> Iterator[npt.NDArray[Any]]:
        """Every order as structured arrays (order row number, contact row number or -1, amount,
        created epoch, counts, plain), filled by numpy straight from the driver's rows: no Python
        object per order. `plain` marks the orders these columns describe completely: they name a
        stored contact and are in the base currency (nearly all). The rest need `other_order_rows`."""
        sql = (
            "SELECT o.rowid, COALESCE(c.rowid, -1), CAST(o.amount AS REAL), o.created_epoch, o.counts, "
            f"c.rowid IS NOT NULL AND o.currency IN ('', {_literal(base_currency)}) FROM orders o "
            "LEFT JOIN contacts c ON c.system = o.system AND c.record_id = o.customer_id"
        )
        for rows in self.db.raw_chunks(sql, chunk):
            yield np.fromiter(rows, dtype=ORDER_DTYPE, count=len(rows))

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
        with self.db.engine.connect() as conn:
            for start in range(0, len(ordered), batch):
                part = ordered[start : start + batch]
                marks = ", ".join("?" for _ in part)
                yield from raw_rows(conn, f"{head}({marks}) ORDER BY o.rowid", part)

    def previous_assignment(self) -> tuple[dict[str, str], dict[str, int]]:
        """Record key -> profile id, and profile id -> creation sequence (its age)."""
        with self.db.engine.connect() as conn:
            assignment = {
                record_key(system, rid): pid
                for system, rid, pid in conn.execute(
                    select(profile_members.c.system, profile_members.c.record_id, profile_members.c.profile_id)
                ).all()
            }
            ages = {pid: int(seq) for pid, seq in conn.execute(select(profiles.c.profile_id, profiles.c.created_seq))}
        return assignment, ages
