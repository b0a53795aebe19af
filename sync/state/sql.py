"""The database every part of the state shares, and SQL through the driver's own cursor.

SQLAlchemy 2 Core over a SQLite file (WAL) by default, PostgreSQL by URL. The bulk reads and writes
of a cycle (a row per profile, per member, per segment entry, per record of a page) go through the
driver's cursor with statements built once: at a million rows, building a dict per row for
SQLAlchemy costs more than the database's work. Statements are written with `?` marks, turned into
the driver's own here, so the same text serves SQLite and PostgreSQL.

There is one upsert: `upsert_many` (INSERT ... ON CONFLICT DO UPDATE, SQLite 3.24 on and PostgreSQL).
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """The engine and its one serialised writer, shared by every part of the state store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30} if self.is_sqlite else {}
        self.engine: Engine = create_engine(url, connect_args=connect_args)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # SQLite has one writer; serialising our own writers avoids busy-waiting on its lock.
        self._write_lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One serialised write transaction."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def raw_chunks(self, sql: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of one query in lists of `size`, streamed through the driver's cursor."""
        with self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql)
                while rows := cursor.fetchmany(size):
                    yield rows
            finally:
                cursor.close()


def _placeholder(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def raw_rows(conn: Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows through the driver's own cursor, inside `conn`'s transaction. `?` marks parameters."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql.replace("?", _placeholder(conn)), tuple(params))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def raw_many(conn: Connection, sql: str, rows: Iterable[Sequence[Any]], chunk: int = 20_000) -> int:
    """executemany through the driver's cursor, in chunks, inside `conn`'s transaction."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = sql.replace("?", _placeholder(conn))
    written = 0
    try:
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, chunk)):
            cursor.executemany(statement, batch)
            written += len(batch)
    finally:
        cursor.close()
    return written


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    marks = ", ".join("?" for _ in columns)
    return raw_many(conn, f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", rows)


@functools.cache
def _upsert_sql(table: Table, columns: tuple[str, ...] | None = None) -> str:
    """INSERT ... ON CONFLICT (key) DO UPDATE for `columns` (default: all of them), with `?` marks
    (`raw_many` turns them into the driver's own): the same text for SQLite (3.24 on) and
    PostgreSQL."""
    names = columns or tuple(c.name for c in table.columns)
    keys = [c.name for c in table.primary_key.columns]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in keys)
    return (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )


def upsert_many(
    conn: Connection, table: Table, rows: Iterable[Sequence[Any]], columns: tuple[str, ...] | None = None
) -> None:
    """Upsert rows (tuples in the order of `columns`, default the table's) inside `conn`'s transaction."""
    raw_many(conn, _upsert_sql(table, columns), rows)
