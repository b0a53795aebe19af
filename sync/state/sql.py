"""The database every part of the state shares, and SQL through the driver's own cursor.

SQLAlchemy 2 Core over a SQLite file (WAL) by default, PostgreSQL (psycopg 3) by URL, with the same
SQL on both: no `rowid`, no type affinity (amounts are cast explicitly, booleans are booleans). The
bulk reads and writes of a cycle (a row per profile, per member, per segment entry, per record of a
page) go through the driver's cursor with statements built once: at a million rows, building a dict
per row for SQLAlchemy costs more than the database's work. Statements are written with `?` marks,
turned into the driver's own here (`%s` for psycopg), so the same text serves SQLite and
PostgreSQL. Bulk writes take each backend's fast path: on SQLite `executemany`, or for narrow rows
one JSON array per batch (`_sqlite_write`); on PostgreSQL new
rows go by COPY and upserts as one statement per batch over typed arrays (`unnest`), several
times faster there than one statement per row, pipelined or not (bench/RESULTS.md). Large reads
stream: SQLite's cursor steps through the rows, PostgreSQL's is a server-side cursor.

On PostgreSQL one database holds many deployments, one per schema (`[state] schema`): the URL
carries it as the connection's `search_path` (`with_schema`), so every table, Alembic's version
table included, lives in that schema; it is created when missing.

There is one upsert: `upsert_many` (INSERT ... ON CONFLICT DO UPDATE, SQLite 3.24 on and PostgreSQL).
"""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from sync.state.on_thread import CallersInside

# A schema name crmsync accepts: a plain lower-case PostgreSQL identifier, never quoted.
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SEARCH_PATH = re.compile(r"-c\s*search_path=(?P<schema>[A-Za-z0-9_]+)")


def is_postgres_url(url: str) -> bool:
    return url.startswith("postgresql")


def with_schema(url: str, schema: str | None) -> str:
    """A PostgreSQL URL whose connections use `schema` as their whole `search_path` (libpq's
    `options`, kept beside any the URL already has). The URL unchanged when `schema` is None."""
    if schema is None:
        return url
    if not SCHEMA_NAME.match(schema):
        raise ValueError(f"not a schema name crmsync accepts (lower-case letters, digits, _): {schema!r}")
    parsed = make_url(url)
    given = parsed.query.get("options") or ()
    options = [given] if isinstance(given, str) else list(given)
    options = [part for part in options if not _SEARCH_PATH.search(part)]
    options.append(f"-csearch_path={schema}")
    return parsed.update_query_dict({"options": " ".join(options)}).render_as_string(hide_password=False)


def schema_of(url: str) -> str | None:
    """The schema a PostgreSQL URL made by `with_schema` puts its connections in (None: the
    server's default search path)."""
    if not is_postgres_url(url):
        return None
    given = make_url(url).query.get("options") or ()
    for part in [given] if isinstance(given, str) else list(given):
        found = _SEARCH_PATH.search(part)
        if found:
            return found.group("schema")
    return None


def ensure_schema(url: str) -> None:
    """Create the URL's schema when it is missing (a new deployment in a shared database), on a
    connection of its own: an engine caches its default schema at its first connection."""
    schema = schema_of(url)
    if schema is None:
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            cursor = driver.cursor()
            try:
                cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                driver.commit()
            finally:
                cursor.close()
    finally:
        engine.dispose()


_CURSORS = itertools.count(1)  # names of PostgreSQL's server-side cursors

# Python's sqlite3 (3.11) binds an int, float, str or bytearray directly, but looks for an adapter
# for every other value it binds, None and bool included: not in its registry, it asks its protocol
# type for `__adapt__`, and that miss raises an AttributeError with a formatted message, cleared
# again. That cost ~0.3 us per None or bool bound, as much as binding six plain values, and every
# contact and order row has several (bench/extract.py). Adapters in the registry end the hunt at
# once: None stays None (bound as NULL: `{}.get` is a C function returning None), a bool becomes
# the int it is (stored as 0/1, as before). Both return what binding stored without them.
_NOTHING: dict[Any, Any] = {}
sqlite3.register_adapter(type(None), _NOTHING.get)
sqlite3.register_adapter(bool, int)


# The page size of a new SQLite state (one made before keeps its own: SQLite sets it when the first
# table is written, and a database in WAL mode never changes it). At SQLite's default, 4,096 bytes,
# a raw record of 2.1 KB or more fills a page of its own (a Lightspeed customer is ~2.4 KB: 40 % of
# each such page unused, and written twice, to the write-ahead log and to the database); a 16 KB
# page holds six, and every table's b-trees have fewer pages to write and balance. A Lightspeed
# backfill took ~10 % less CPU, with 0.4 % fewer instructions in crmsync itself: the rest is the
# writing of fewer pages.
SQLITE_PAGE_SIZE = 16_384


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # only a new, empty database takes it
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


# SQLite's own default: a commit that leaves more pages than this in the write-ahead log copies
# them into the database file (a checkpoint) before it returns.
AUTOCHECKPOINT_PAGES = 1000


class Database:
    """The engine and its one serialised writer, shared by every part of the state store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = is_postgres_url(url)
        self.schema = schema_of(url)
        # Text compared or ordered in SQL the way Python compares it (by code point), whatever the
        # PostgreSQL database's collation: SQLite's default (BINARY) already does.
        self.binary = ' COLLATE "C"' if self.is_postgres else ""
        connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": 30} if self.is_sqlite else {}
        if self.is_postgres:
            ensure_schema(url)
        self.engine: Engine = create_engine(url, connect_args=connect_args)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "checkout", self._set_autocheckpoint)
        # SQLite has one writer; serialising our own writers avoids busy-waiting on its lock.
        self._write_lock = threading.Lock()
        self._deferring = CallersInside()  # callers inside `wal_checkpoints_deferred`

    def _set_autocheckpoint(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        """On each checkout: a connection's commits checkpoint as SQLite's default has them do,
        except while `wal_checkpoints_deferred` is in force."""
        wanted = 0 if self._deferring.any else AUTOCHECKPOINT_PAGES
        if record.info.get("autocheckpoint") != wanted:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA wal_autocheckpoint={wanted}")
            cursor.close()
            record.info["autocheckpoint"] = wanted

    def wal_checkpoints_deferred(self) -> AbstractContextManager[None]:
        """No commit checkpoints while inside (SQLite; elsewhere nothing changes): the pages they
        wrote stay in the write-ahead log, readable as ever, until `wal_checkpoint` copies them.

        Why: the compute's first cycle writes a few hundred MB (members, profiles, the resolution
        snapshot, the segment history), and each of its commits copied everything in the log into
        the database file before returning, on the main thread's path: keeping the 44 MB
        resolution snapshot took 0.68-0.79 s that way and 0.25 s without (bench/RESULTS.md).
        Only connections checked out inside are affected; the log holds at most what the block
        wrote (any commit after it checkpoints again)."""
        return self._deferring()

    def wal_checkpoint(self) -> None:
        """Copy what the write-ahead log holds into the database file, beside readers and writers
        (a PASSIVE checkpoint: it waits for no one, and leaves what a reader still needs)."""
        if not self.is_sqlite:
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """One serialised write transaction."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """One read transaction on one snapshot: every query on the connection sees the same
        state (PostgreSQL: REPEATABLE READ; SQLite: an explicit BEGIN, which WAL keeps on the
        snapshot of its first read until it ends)."""
        with self.engine.connect() as conn:
            if self.is_postgres:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                conn.exec_driver_sql("SELECT 1")  # the transaction (and its snapshot) starts here
            else:
                conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                conn.rollback()

    def raw_chunks(
        self, sql: str, size: int, conn: Connection | None = None, params: Sequence[Any] = ()
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of one query in lists of `size`, streamed through the driver's cursor (a
        server-side cursor on PostgreSQL: the client never holds the whole result), on `conn`
        (inside its transaction) or a connection of its own. `?` marks parameters."""
        if conn is None:
            with self.reading() as own:
                yield from self.raw_chunks(sql, size, own, params)
            return
        driver = conn.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor(name=f"crmsync_chunks_{next(_CURSORS)}") if self.is_postgres else driver.cursor()
        try:
            cursor.execute(sql.replace("?", _placeholder(conn)), tuple(params))
            while rows := cursor.fetchmany(size):
                yield rows
        finally:
            cursor.close()


def _placeholder(conn: Connection) -> str:
    """The driver's parameter mark: sqlite3 takes `?`, psycopg `%s`."""
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


def insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    same: Sequence[tuple[str, Any]] = (),
) -> int:
    """Insert new rows (tuples in the order of `columns`) inside `conn`'s transaction: executemany
    on SQLite, COPY on PostgreSQL (several times faster there than one INSERT per row, pipelined
    or not). `same`: (column, value) that every row takes, given once (on SQLite's JSON path, not
    repeated in every row's text; on its `executemany` path written into the statement where
    `_literals` can, not bound again for every row)."""
    names, values = tuple(name for name, _ in same), tuple(value for _, value in same)
    if conn.dialect.name == "postgresql":
        return _copy_rows(conn, table, (*columns, *names), ((*row, *values) for row in rows) if same else rows)
    # Rows as wide as the JSON path takes, with their page-wide columns, keep to it.
    literals = _literals(values) if same and len(columns) + len(names) > _JSON_WIDEST else None
    if literals is not None:
        marks = ", ".join([*("?" for _ in columns), *literals])
        return raw_many(conn, f"INSERT INTO {table.name} ({', '.join((*columns, *names))}) VALUES ({marks})", rows)
    marks = ", ".join("?" for _ in (*columns, *names))
    statement = f"INSERT INTO {table.name} ({', '.join((*columns, *names))}) VALUES ({marks})"
    return _sqlite_write(conn, table, tuple(columns), rows, statement, upsert=False, same=(names, values))


@contextmanager
def page_cache_of(conn: Connection, kib: int) -> Iterator[None]:
    """SQLite's page cache of `conn` at least `kib` KiB while inside, then as it was (elsewhere
    nothing changes). For a write that inserts in random key order into an index larger than the
    cache: each insert then finds its page evicted, spilled to the write-ahead log and read back.
    Taken back on the way out: the pages beyond the old size are freed as the commit releases
    them, so a pooled connection does not keep the memory."""
    if conn.dialect.name != "sqlite":
        yield
        return
    [(before,)] = raw_rows(conn, "PRAGMA cache_size")
    # A negative size is in KiB, a positive one in pages (SQLite's own convention).
    page_size = int(raw_rows(conn, "PRAGMA page_size")[0][0])
    now_kib = -int(before) if int(before) < 0 else int(before) * page_size // 1024
    if kib <= now_kib:
        yield
        return
    raw_rows(conn, f"PRAGMA cache_size = {-int(kib)}")
    try:
        yield
    finally:
        raw_rows(conn, f"PRAGMA cache_size = {int(before)}")


def _literals(values: Sequence[Any]) -> list[str] | None:
    """SQLite literals storing exactly what binding `values` stores, or None where one is not
    sure to: an int from 0 to 2**63 - 1 (a wider one, refused when bound, would be a REAL as text) and
    an ASCII str without NUL (the statement's text holds no NUL; quotes are doubled). The page-wide
    columns of the extract's rows (system, kind, run) are written once per statement this way, not
    bound again for every row."""
    texts = []
    for value in values:
        if type(value) is int and 0 <= value < 2**63:
            texts.append(str(value))
        elif type(value) is str and value.isascii() and "\x00" not in value:
            texts.append("'" + value.replace("'", "''") + "'")
        else:
            return None
    return texts


def _copy_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    written = 0
    try:
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                written += 1
    finally:
        cursor.close()
    return written


@functools.cache
def _upsert_sql(table: Table, columns: tuple[str, ...] | None = None, postgres: bool = False) -> str:
    """INSERT ... ON CONFLICT (key) DO UPDATE for `columns` (default: all of them). With `?` marks,
    one row per execution (`raw_many` turns them into the driver's own): the same text for SQLite
    (3.24 on) and PostgreSQL. `postgres`: the rows of a whole batch in one statement instead, one
    typed array per column (`unnest(%s::type[], ...)`): PostgreSQL then plans and runs one statement
    per batch, not one per row."""
    names = columns or tuple(c.name for c in table.columns)
    if postgres:
        from sqlalchemy.dialects import postgresql

        dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
        types = [table.c[name].type.compile(dialect=dialect) for name in names]
        source = "SELECT * FROM unnest(" + ", ".join(f"%b::{kind}[]" for kind in types) + ")"
    else:
        source = f"VALUES ({', '.join('?' for _ in names)})"
    return f"INSERT INTO {table.name} ({', '.join(names)}) {source} {_on_conflict(table, names, postgres)}"


def _on_conflict(table: Table, names: Sequence[str], postgres: bool = False) -> str:
    """The upsert's clause: a row whose key is stored replaces the stored row's other columns; a
    column the table's `info["kept_while_same"]` names keeps its stored value where the columns
    named with it are the same in the new row (NULL the same as NULL)."""
    keys = [c.name for c in table.primary_key.columns]
    kept, compared = table.info.get("kept_while_same", (None, ()))
    same = " IS NOT DISTINCT FROM " if postgres else " IS "
    updates = []
    for name in names:
        if name in keys:
            continue
        if name == kept and all(column in names for column in compared):
            unchanged = " AND ".join(f"{table.name}.{column}{same}excluded.{column}" for column in compared)
            updates.append(f"{name} = CASE WHEN {unchanged} THEN {table.name}.{name} ELSE excluded.{name} END")
        else:
            updates.append(f"{name} = excluded.{name}")
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(updates)}"


def upsert_many(
    conn: Connection, table: Table, rows: Iterable[Sequence[Any]], columns: tuple[str, ...] | None = None
) -> None:
    """Upsert rows (tuples in the order of `columns`, default the table's) inside `conn`'s
    transaction. Of rows with the same key the last one wins, on both backends."""
    if conn.dialect.name != "postgresql":
        names = columns or tuple(c.name for c in table.columns)
        _sqlite_write(conn, table, names, rows, _upsert_sql(table, columns), upsert=True)
        return
    names = columns or tuple(c.name for c in table.columns)
    at = [names.index(c.name) for c in table.primary_key.columns]
    statement = _upsert_sql(table, columns, True)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, 10_000)):
            # One statement may not update a row twice: of repeated keys, the last row (as executemany would).
            unique = {tuple(row[i] for i in at): row for row in batch}
            cursor.execute(statement, [list(column) for column in zip(*unique.values(), strict=True)])
    finally:
        cursor.close()


# ----- SQLite's bulk path: a batch of rows as one JSON array ---------------------------------------
# `executemany` binds every value of every row from Python, one row per step: at ~460,000 segment
# history entries that binding is a third of the insert's time. The same rows as one JSON array
# per batch, unpacked by SQLite itself (`json_each`, `->>`), take that third off
# (bench/RESULTS.md). `->>` returns a JSON string as TEXT, an integer as INTEGER, true/false as
# 1/0 and null as NULL: what binding the same Python values stores. Only a batch of exactly those
# (str, int, bool, None; no subclass, no float, no list), every row as wide as the statement, goes
# this way, and not when a text holds a NUL (`->>` would cut the text there) or an integer is
# beyond 2**53 (orjson's strict integers; JSON could turn a wider one into a REAL where binding
# refuses it). Any other batch goes by `executemany`, which stores or refuses it as it always did.
_JSON_ARROW = sqlite3.sqlite_version_info >= (3, 38, 0)  # `->>` came with 3.38
_JSON_BATCH_MIN = 64  # below this, one more statement text is not worth it
# SQLite finds each value of a row in the row's JSON text: the wider the row, the more that costs.
# At four short columns (a segment entry, a tier, a link) the JSON path wins; at seven (a profile
# with its traits) it took twice executemany's time, at three (a member) it won by a little.
_JSON_WIDEST = 4
_JSON_PLAIN = frozenset({str, int, bool, type(None)})


def _sqlite_write(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    rows: Iterable[Sequence[Any]],
    statement: str,
    upsert: bool,
    same: tuple[tuple[str, ...], tuple[Any, ...]] = ((), ()),
) -> int:
    """Insert or upsert `rows` in batches: a batch as one JSON array where it carries the rows
    unchanged, else by `executemany` of `statement` (one row per execution). `same`: the names and
    values of the columns every row takes after its own (bound once per batch on the JSON path)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    names, values = same
    wanted = _JSON_ARROW and len(columns) <= _JSON_WIDEST
    by_json = _json_write_sql(table, columns, upsert, names) if wanted else None
    written = 0
    try:
        iterator = iter(rows)
        while batch := list(itertools.islice(iterator, 20_000)):
            blob = _json_batch(batch, len(columns)) if by_json is not None else None
            if blob is not None:
                cursor.execute(by_json, (*values, blob))
            elif values:
                cursor.executemany(statement, [(*row, *values) for row in batch])
            else:
                cursor.executemany(statement, batch)
            written += len(batch)
    finally:
        cursor.close()
    return written


def _json_batch(batch: list[Sequence[Any]], width: int) -> bytes | None:
    """`batch` as one JSON array of arrays, or None where JSON would not carry it unchanged
    (see above)."""
    if len(batch) < _JSON_BATCH_MIN or set(map(len, batch)) != {width}:
        return None
    if not set(map(type, itertools.chain.from_iterable(batch))) <= _JSON_PLAIN:
        return None
    try:
        blob = orjson.dumps(batch, option=orjson.OPT_STRICT_INTEGER)
    except orjson.JSONEncodeError:
        return None
    return None if b"\\u0000" in blob else blob


@functools.cache
def _json_write_sql(table: Table, columns: tuple[str, ...], upsert: bool, same: tuple[str, ...] = ()) -> str:
    """The INSERT (or upsert) of one JSON array of rows, each an array in the order of `columns`,
    and the columns `same` from parameters before the array. `WHERE true` tells SQLite's parser
    that ON CONFLICT belongs to the INSERT, not to a join."""
    picks = ", ".join([*(f"value->>{at}" for at in range(len(columns))), *("?" for _ in same)])
    names = ", ".join((*columns, *same))
    sql = f"INSERT INTO {table.name} ({names}) SELECT {picks} FROM json_each(?) WHERE true"
    if upsert:
        sql += " " + _on_conflict(table, columns)
    return sql
