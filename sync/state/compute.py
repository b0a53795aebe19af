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

import functools
import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, delete, select

from mapping.model import Contact, split_key
from sync.state.extracts import contact_from_row
from sync.state.on_thread import OnThread
from sync.state.order_text import aggregate_sql, decode_orders
from sync.state.schema import contacts, resolution_snapshot
from sync.state.sql import Database, raw_many, raw_rows

# One order: its own row number (SQLite's rowid; -1 on PostgreSQL, which has none that lasts), its
# contact's row number (-1: none stored), amount, created epoch, counts, and for the orders these
# columns do not describe completely (another currency, or a guest's order, attached by email)
# `other`: "currency<TAB>email match key<TAB>system". Plain orders (nearly all) leave it None, so
# they cost no Python string; one CASE costs the database less than one per column.
ORDER_DTYPE = np.dtype(
    [("order", "i8"), ("contact", "i8"), ("amount", "f8"), ("created", "i8"), ("counts", "?"), ("other", "O")]
)


def split_other(other: str) -> tuple[str, str | None, str]:
    """An order's `other` column: (currency, email match key or None, system)."""
    currency, email_key, system = other.split("\t", 2)
    return currency, email_key or None, system


IdentityRow = tuple[int, str, str | None, bool, str | None, str | None, str, str | None]
KEY = "system || ':' || record_id"  # a contact's record key, `mapping.model.record_key`'s form
# The tables whose rows a snapshot keeps by number (SQLite's rowid), their id columns, and how many
# of their highest rows (and as many spread below) it keeps as witnesses that numbers did not move.
NUMBERED = (("contacts", "record_id"), ("orders", "order_id"))
WITNESSES = 8
# Read from `ix_<table>_changed` alone, not a scan of every row (schema 12).
ORDERS_WRITTEN_SINCE = "o.changed_seq > ?"
ORDER_RANGE = "o.rowid BETWEEN ? AND ?"  # SQLite's full order read, a range at a time
ORDER_RANGE_ROWS = 200_000  # row numbers per range
MARKS_SQL = "SELECT COUNT(*), COALESCE(MAX(changed_seq), 0), COALESCE(SUM(changed_seq), 0) FROM {table}"
# After the row number: key, email match key, role flag, E.164 phone, phone kind, links, given name.
IDENTITY_COLUMNS = f"{KEY}, email_key, email_role, phone, phone_kind, links, given_name"


def by_system(keys: Iterable[str]) -> dict[str, list[str]]:
    """Record keys (`system:id`) as the ids of each system, systems in order."""
    grouped: dict[str, list[str]] = {}
    for key in keys:
        system, record_id = split_key(key)
        grouped.setdefault(system, []).append(record_id)
    return dict(sorted(grouped.items()))


def batches(values: Iterable[Any]) -> Iterator[list[Any]]:
    """The distinct `values`, sorted, in lists of 500: under every SQLite build's limit on
    parameters (999 before 3.32)."""
    wanted = sorted(set(values))
    for start in range(0, len(wanted), 500):
        yield wanted[start : start + 500]


def rows_in(conn: Connection, sql: str, values: Iterable[Any], before: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
    """The rows of `sql` for every one of `values`: its `{}` is filled with a list of markers,
    a batch of values at a time, after the parameters `before`."""
    for batch in batches(values):
        yield from raw_rows(conn, sql.format(", ".join("?" for _ in batch)), (*before, *batch))


def _identity_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[IdentityRow]:
    for number, key, email_key, role, phone, kind, links, given in rows:
        yield number, key, email_key, bool(role), phone, kind, links, given


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
        # The record key (`mapping.model.record_key`'s form) built by the database: the identity
        # read is the compute's hottest query and Python-side joining costs a pass per row.
        sql = f"SELECT {self._numbering()}, {IDENTITY_COLUMNS} FROM contacts ORDER BY system{binary}, record_id{binary}"
        for chunk in self.db.raw_chunks(sql, 50_000, self.conn):
            yield from _identity_rows(chunk)

    # ----- what resolving only the touched components reads (SQLite: rowids that last) -----------
    def identity_rows_written_since(self, contacts_seq: int) -> list[IdentityRow]:
        """`identity_rows` of the contacts written since run `contacts_seq`."""
        sql = f"SELECT rowid, {IDENTITY_COLUMNS} FROM contacts WHERE changed_seq > ?"
        return list(_identity_rows(raw_rows(self.conn, sql, (contacts_seq,))))

    def identity_rows_of(self, keys: Iterable[str]) -> list[IdentityRow]:
        """`identity_rows` of the contacts with these record keys (`system:id`), by primary key."""
        found: list[IdentityRow] = []
        sql = f"SELECT rowid, {IDENTITY_COLUMNS} FROM contacts WHERE system = ? AND record_id IN ({{}})"
        for system, ids in by_system(keys).items():
            found.extend(_identity_rows(rows_in(self.conn, sql, ids, (system,))))
        return found

    def contacts_holding(self, emails: Iterable[str], phones: Iterable[str], keys: Set[str]) -> set[str]:
        """The keys of the contacts holding one of these email match keys or phone numbers (by
        their indexes), or linking to one of `keys` (the few that link at all, through the partial
        index `ix_contacts_linking`)."""
        found: set[str] = set()
        for column, values in (("email_key", emails), ("phone", phones)):
            sql = f"SELECT {KEY} FROM contacts WHERE {column} IN ({{}})"
            found.update(str(key) for (key,) in rows_in(self.conn, sql, values))
        if keys:
            for key, links in raw_rows(self.conn, f"SELECT {KEY}, links FROM contacts WHERE links <> '[]'"):
                if not keys.isdisjoint(json.loads(links)):
                    found.add(str(key))
        return found

    def contact_keys(self) -> set[str]:
        """Every stored contact's key."""
        return {str(key) for (key,) in raw_rows(self.conn, f"SELECT {KEY} FROM contacts")}

    def personal_email_rows(self, emails: Sequence[str]) -> list[tuple[str, int]]:
        """(email match key, contact row number) of the contacts whose personal (not role) address
        has one of these match keys."""
        sql = "SELECT email_key, rowid FROM contacts WHERE email_key IN ({}) AND NOT email_role"
        return [(str(email), int(number)) for email, number in rows_in(self.conn, sql, emails)]

    @property
    def rows_are_numbered(self) -> bool:
        """Whether order and contact row numbers last from one read transaction to the next
        (SQLite's rowids, which an upsert keeps), so that orders can be read by difference."""
        return not self.db.is_postgres

    def order_arrays(
        self,
        base_currency: str,
        chunk: int = ORDER_RANGE_ROWS,
        where: str = "",
        params: Sequence[Any] = (),
        take: Callable[[], int] | None = None,
    ) -> Iterator[npt.NDArray[Any]]:
        """Every order (or those `where` selects, a condition on `o`) as structured arrays of
        ORDER_DTYPE, in row order on SQLite. `other` is None for the orders the numeric columns
        describe completely: they name a stored contact and are in the base currency.

        SQLite: a range of `chunk` row numbers (or all `where` selects) as one aggregate row
        (sync/state/order_text.py); `take`: the number of the next range to read (0 for the first),
        which readers side by side share (`RangeTaker`). PostgreSQL: numpy fills the arrays from
        the driver's rows."""
        if self.db.is_postgres:
            for rows in self.db.raw_chunks(self.order_arrays_sql(base_currency, where), chunk, self.conn, params):
                yield np.fromiter(rows, dtype=ORDER_DTYPE, count=len(rows))
            return
        if where:
            yield self._order_text(aggregate_sql(self.order_arrays_sql(base_currency, where)), params)
            return
        [(low, high)] = raw_rows(self.conn, "SELECT MIN(rowid), MAX(rowid) FROM orders")
        if low is None:
            return
        ranged = aggregate_sql(self.order_arrays_sql(base_currency, ORDER_RANGE))
        take = take or itertools.count().__next__
        while (start := int(low) + take() * chunk) <= int(high):
            found = self._order_text(ranged, (start, start + chunk - 1))
            if found.shape[0]:
                yield found

    def _order_text(self, sql: str, params: Sequence[Any]) -> npt.NDArray[Any]:
        [(count, hexes, amounts, others)] = raw_rows(self.conn, sql, params)
        return decode_orders(int(count), hexes, amounts, others, ORDER_DTYPE)

    def order_arrays_sql(self, base_currency: str, where: str = "") -> str:
        """The rows `order_arrays` reads (on SQLite, what its aggregate runs over)."""
        numbered, number = self._numbered_contacts()
        rowid = "-1" if self.db.is_postgres else "o.rowid"
        # In row order on SQLite (a read by difference merges by it): the scan's own order when
        # every row is read; a few rows selected by a condition are sorted (`+` keeps the planner
        # from scanning every order in row order to spare that sort: it reads `ix_orders_changed`).
        order = " ORDER BY o.rowid" if where in ("", ORDER_RANGE) else " ORDER BY +o.rowid"
        order = "" if self.db.is_postgres else order
        # PostgreSQL reads the amount as a float (its text-to-float conversion is correctly rounded;
        # DOUBLE PRECISION: its REAL has 24 bits). SQLite hands over the stored text: see order_text.py.
        amount = "CAST(o.amount AS DOUBLE PRECISION)" if self.db.is_postgres else "o.amount"
        return (
            f"SELECT {rowid}, COALESCE(c.{number}, -1), {amount}, o.created_epoch, "
            f"o.counts, CASE WHEN c.{number} IS NOT NULL AND o.currency IN ('', {_literal(base_currency)}) THEN NULL "
            "ELSE o.currency || '\t' || COALESCE(o.email_key, '') || '\t' || o.system END "
            f"FROM orders o LEFT JOIN {numbered} c "
            "ON c.system = o.system AND c.record_id = o.customer_id" + (f" WHERE {where}" if where else "") + order
        )

    def orders_written_since(self, orders_seq: int) -> int:
        """How many orders were written since run `orders_seq` (from `ix_orders_changed` alone)."""
        sql = f"SELECT COUNT(*) FROM orders o WHERE {ORDERS_WRITTEN_SINCE}"
        return int(raw_rows(self.conn, sql, (orders_seq,))[0][0])

    def contacts_changed_since(self, contacts_seq: int) -> tuple[npt.NDArray[np.int64], list[int]]:
        """The row numbers of contacts written since run `contacts_seq`, and of the orders naming
        them: one scan of contacts, the orders found through their customer index (SQLite only)."""
        rows = raw_rows(
            self.conn,
            "SELECT c.rowid, o.rowid FROM contacts c LEFT JOIN orders o "
            "ON o.system = c.system AND o.customer_id = c.record_id WHERE c.changed_seq > ?",
            (contacts_seq,),
        )
        contacts = np.unique(np.array([int(c) for c, _ in rows], dtype=np.int64))
        return contacts, [int(o) for _, o in rows if o is not None]

    def contact_keys_written_since(self, contacts_seq: int) -> set[str]:
        """The keys (`system:id`) of the contacts written since run `contacts_seq`."""
        sql = f"SELECT {KEY} FROM contacts WHERE changed_seq > ?"
        return {str(key) for (key,) in raw_rows(self.conn, sql, (contacts_seq,))}

    def orders_naming(self, keys: Iterable[str]) -> list[int]:
        """The row numbers of the orders naming these contacts (record keys), through the customer
        index. SQLite only (`rows_are_numbered`)."""
        sql = "SELECT rowid FROM orders WHERE system = ? AND customer_id IN ({})"
        return [int(n) for system, ids in by_system(keys).items() for (n,) in rows_in(self.conn, sql, ids, (system,))]

    def orders_changed_since(
        self, base_currency: str, orders_seq: int, numbers: Sequence[int]
    ) -> Iterator[npt.NDArray[Any]]:
        """The orders written since run `orders_seq`, and those of row `numbers`; an order may
        come twice. SQLite only (`rows_are_numbered`)."""
        yield from self.order_arrays(base_currency, where=ORDERS_WRITTEN_SINCE, params=(orders_seq,))
        for batch in batches(numbers):
            where = f"o.rowid IN ({', '.join('?' for _ in batch)})"
            yield from self.order_arrays(base_currency, where=where, params=batch)

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
            [(count, highest, total)] = raw_rows(self.conn, MARKS_SQL.format(table=table))
            marks.append([int(count), int(highest), int(total)])
        return marks

    def numbering_mark(self) -> int | None:
        """What vouches that row numbers lasted since a snapshot was kept: SQLite's schema cookie,
        which `VACUUM` raises (a copy made by `VACUUM INTO` holds it raised too). `VACUUM` may
        renumber the rowids of a table without an INTEGER PRIMARY KEY, and the kept contact rows
        and the orders read by difference are keyed by them; crmsync never vacuums, a user may.
        None on PostgreSQL, where nothing is keyed by row numbers."""
        if self.db.is_postgres:
            return None
        [(cookie,)] = raw_rows(self.conn, "PRAGMA schema_version")
        return int(cookie)

    def row_witness(self) -> list[dict[str, Any]] | None:
        """Per table whose rows the snapshot keeps by number (contacts, orders), rows as [rowid,
        system, id] that vouch the numbers did not move: the highest ones, and as many spread
        evenly below them (`whole`: they are every row the table has). What renumbers rows
        (`VACUUM`, a state restored from a dump, a copy made by `INSERT ... SELECT`) closes the gaps
        deleted rows left and keeps their order, so every row above the first gap moves: the
        highest ones, and the spread ones above it. Checked by `witness_holds`. None on PostgreSQL."""
        if self.db.is_postgres:
            return None
        found: list[dict[str, Any]] = []
        for table, id_column in NUMBERED:
            columns = f"rowid, system, {id_column}"
            top = raw_rows(self.conn, f"SELECT {columns} FROM {table} ORDER BY rowid DESC LIMIT {WITNESSES + 1}")
            rows = [[int(number), str(system), str(rid)] for number, system, rid in top[:WITNESSES]]
            if len(top) > WITNESSES:
                highest, taken = int(top[0][0]), {row[0] for row in rows}
                sql = f"SELECT {columns} FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 1"
                for step in range(1, WITNESSES + 1):
                    for number, system, rid in raw_rows(self.conn, sql, (highest * step // (WITNESSES + 1),)):
                        if int(number) not in taken:
                            taken.add(int(number))
                            rows.append([int(number), str(system), str(rid)])
            found.append({"rows": rows, "whole": len(top) <= WITNESSES})
        return found

    def witness_holds(self, witness: Sequence[Mapping[str, Any]] | None, seqs: Sequence[int]) -> bool:
        """Whether a kept `row_witness` vouches that no row moved since: every row of it not written
        since (`changed_seq` at most that table's `seqs`, the highest when it was kept) still holds
        its number, and in each table at least one such row is left, unless the witness was the
        whole table (then no row it does not name was kept by number)."""
        if witness is None:
            return False
        for (table, id_column), kept, seq in zip(NUMBERED, witness, seqs, strict=True):
            sql = f"SELECT rowid, changed_seq FROM {table} WHERE system = ? AND {id_column} = ?"
            vouched = bool(kept["whole"])
            for number, system, rid in kept["rows"]:
                now = raw_rows(self.conn, sql, (system, rid))
                if not now or int(now[0][1]) > seq:
                    continue  # deleted or written since: it says nothing
                if int(now[0][0]) != int(number):
                    return False
                vouched = True
            if not vouched:
                return False
        return True

    def stored_resolution(self) -> tuple[str, bytes] | None:
        """The resolution snapshot the last compute kept: its inputs and its header (the parts
        follow from `resolution_parts`)."""
        rows = raw_rows(self.conn, "SELECT inputs, data FROM resolution_snapshot WHERE name = 'header'")
        return (str(rows[0][0]), bytes(rows[0][1])) if rows else None

    def resolution_part(self, name: str) -> bytes | None:
        """One part of the snapshot by name (None: not kept)."""
        rows = raw_rows(self.conn, "SELECT data FROM resolution_snapshot WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def resolution_parts(self, names: Sequence[str] | None = None) -> Iterator[tuple[str, bytes]]:
        """The snapshot's other parts in name order, one at a time (each is some megabytes); with
        `names`, only the parts of those columns (a part is named `column.number`)."""
        where = "name <> 'header'"
        patterns = [name.replace("_", "!_") + ".%" for name in names or ()]
        if names is not None:
            where += " AND (" + " OR ".join("name LIKE ? ESCAPE '!'" for _ in patterns) + ")"
        sql = f"SELECT name, data FROM resolution_snapshot WHERE {where} ORDER BY name"
        for chunk in self.db.raw_chunks(sql, 1, self.conn, patterns):
            for name, data in chunk:
                yield str(name), bytes(data)


def read_orders_ahead(
    db: Database,
    base_currency: str,
    marks: list[list[int]],
    numbering: int | None,
    take: Callable[[], int] | None = None,
    chunk: int = ORDER_RANGE_ROWS,
    gate: Callable[[], bool] = lambda: True,
) -> list[npt.NDArray[Any]] | None:
    """Every order (`order_arrays`) on a read transaction of its own, begun after the compute's.
    For a caller holding the writer lock only: no other crmsync process writes contacts or orders
    between the two transactions, and its own cycle has stored what it read before it computes.
    What may still come between (a user's VACUUM, which may renumber rows; a writer that ignores
    the lock) is checked: None unless this transaction saw the compute's input marks and schema
    cookie, and then the compute reads the orders on its own transaction. The marks alone would
    not do without the lock: a row written again within the run that wrote it, or a row deleted
    and another inserted in one run, leaves them as they were. `gate`: asked before each range;
    False ends the read (None)."""
    with db.reading() as conn:
        reads = ComputeSnapshot(db, conn)
        if reads.input_marks() != marks or reads.numbering_mark() != numbering:
            return None
        chunks: list[npt.NDArray[Any]] = []
        ranges = reads.order_arrays(base_currency, chunk, take=take)
        while gate():  # asked before each range is read: see ReadGate
            found = next(ranges, None)
            if found is None:
                return chunks
            chunks.append(found)
        return None  # the caller left without the orders


READERS_AHEAD = 2  # the orders' ranges read by this many threads, each on its own read transaction
# Ranges read before the caller asks for them (1,200,000 orders at most): a cycle's peak memory is
# while it resolves identities, and every order decoded by then adds to it. Two readers that read
# on regardless put all 5,000,000 orders of the full-scale bench there: +198 MiB at the peak, over
# 2 GB. Past the window they wait, and read the rest with both cores once resolving is done.
RANGES_BEFORE_ASKED = 6


class ReadGate:
    """How many ranges the readers may read before the caller asks for the orders (`open`), then
    every one; `close`: the caller left without them, and the readers stop."""

    def __init__(self, window: int) -> None:
        self._state = threading.Condition()
        self._left = window
        self._open = False
        self._closed = False

    def enter(self) -> bool:
        """Before a range is read: wait for leave to read it; False when the caller left."""
        with self._state:
            self._state.wait_for(lambda: self._open or self._closed or self._left > 0)
            if not self._open:
                self._left -= 1
            return not self._closed

    def open(self) -> None:
        with self._state:
            self._open = True
            self._state.notify_all()

    def close(self) -> None:
        with self._state:
            self._closed = True
            self._state.notify_all()


class RangeTaker:
    """The ranges readers side by side share: each reader takes the next range no one has taken,
    so one that is done early takes more. With every other range each, one reader was often left
    with the last range alone while the other had nothing to do."""

    def __init__(self) -> None:
        self._next = itertools.count()
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return next(self._next)


class OrdersAhead:
    """`read_orders_ahead` by READERS_AHEAD threads taking ranges in turn (`RangeTaker`): once the
    caller's own work (resolving identities) is done, the rest of the read uses every core, not
    one; before that, the readers read RANGES_BEFORE_ASKED ranges between them. `result()`: every
    order's chunks in row order, or None when any reader's transaction did not see the compute's
    marks. Leaving the `with` block stops the readers and waits for them."""

    def __init__(self, read: Callable[..., list[npt.NDArray[Any]] | None], window: int = RANGES_BEFORE_ASKED) -> None:
        self._gate = ReadGate(window)
        self._readers: list[OnThread[list[npt.NDArray[Any]] | None]] = []
        try:
            take = RangeTaker()
            for i in range(READERS_AHEAD):
                work = functools.partial(read, take, gate=self._gate.enter)
                self._readers.append(OnThread(work, f"crmsync-orders-{i}"))
        except BaseException:  # no reader left waiting at the gate with its transaction open
            self.__exit__(None)
            raise

    def result(self) -> list[npt.NDArray[Any]] | None:
        self._gate.open()
        parts = [reader.result() for reader in self._readers]
        complete = all(part is not None for part in parts)
        chunks = [chunk for part in parts if part is not None for chunk in part] if complete else []
        for part in parts:
            # The readers' own lists (which their threads keep as their results) let go of the
            # chunks, so that the caller frees each as it uses it (`resolve.drained`); else all
            # 5,000,000 orders of the full-scale bench stayed alive to the end of the read (and
            # half of them through the read again, when the other reader's marks had moved).
            if part is not None:
                part.clear()
        if not complete:
            return None
        chunks.sort(key=lambda chunk: int(chunk["order"][0]))  # disjoint ranges, each in row order
        return chunks

    def __enter__(self) -> OrdersAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None = None, *exc: object) -> None:
        self._gate.close()
        interrupted: BaseException | None = None
        for reader in self._readers:
            try:
                reader.__exit__(kind)
            except BaseException as raised:  # every reader is waited for first
                interrupted = raised
        if interrupted is not None:
            raise interrupted


class ComputeReader:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def snapshot(self) -> Iterator[ComputeSnapshot]:
        with self.db.reading() as conn:
            yield ComputeSnapshot(self.db, conn)

    def orders_ahead(self, base_currency: str, marks: list[list[int]], numbering: int | None) -> OrdersAhead:
        """`read_orders_ahead` on threads while the caller goes on (on SQLite the read is
        aggregates that hold no interpreter lock, sync/state/order_text.py); `marks` and
        `numbering`: `input_marks` and `numbering_mark` of the caller's snapshot."""
        return OrdersAhead(functools.partial(read_orders_ahead, self.db, base_currency, marks, numbering))

    def identity_rows(self) -> Iterator[IdentityRow]:
        with self.snapshot() as reads:
            yield from reads.identity_rows()

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
            ages = self._ages(conn)
        return assignment, ages

    def profile_ages(self, ids: Iterable[str] | None = None) -> tuple[dict[str, int], int]:
        """Profile id -> creation sequence (its age), of every profile or of those `ids`; and how
        many profiles are stored."""
        with self.db.reading() as conn:
            count = int(raw_rows(conn, "SELECT COUNT(*) FROM profiles")[0][0])
            if ids is None:
                return self._ages(conn), count
            sql = "SELECT profile_id, created_seq FROM profiles WHERE profile_id IN ({})"
            return {str(pid): int(seq) for pid, seq in rows_in(conn, sql, ids)}, count

    @staticmethod
    def _ages(conn: Connection) -> dict[str, int]:
        return {pid: int(seq) for pid, seq in raw_rows(conn, "SELECT profile_id, created_seq FROM profiles")}
