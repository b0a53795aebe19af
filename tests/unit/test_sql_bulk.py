"""SQLite's bulk path (sync/state/sql.py `_sqlite_write`): a batch of narrow rows goes to SQLite as
one JSON array, and must store exactly what `executemany` of the same rows stores, value and type;
a batch JSON would not carry unchanged goes by `executemany`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import BigInteger, Boolean, Column, MetaData, String, Table, Text

from sync.state.sql import Database, _literals, insert_rows, page_cache_of, raw_rows, upsert_many

META = MetaData()
WIDE = Table(
    "wide",
    META,
    Column("k", String(64), primary_key=True),
    Column("a", Text),
    Column("b", BigInteger),
    Column("c", Boolean),
)
COLUMNS = ("k", "a", "b", "c")
PLAIN = "CREATE TABLE {name} (k VARCHAR(64) NOT NULL PRIMARY KEY, a TEXT, b BIGINT, c BOOLEAN)"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Database, Path]]:
    path = tmp_path / "bulk.db"
    database = Database(f"sqlite:///{path}")
    META.create_all(database.engine)
    yield database, path
    database.close()


def stored(path: Path, table: str) -> list[tuple[Any, ...]]:
    """Every row, each value with SQLite's own type of it, in key order."""
    with sqlite3.connect(path) as conn:
        sql = f"SELECT k, typeof(a), a, typeof(b), b, typeof(c), c FROM {table} ORDER BY k"
        return conn.execute(sql).fetchall()


def by_executemany(path: Path, rows: Sequence[Sequence[Any]], upsert: bool = False) -> list[tuple[Any, ...]]:
    """The same rows through sqlite3's `executemany`, one row per execution: what the bulk path
    must store."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE IF EXISTS plain")
        conn.execute(PLAIN.format(name="plain"))
        tail = " ON CONFLICT (k) DO UPDATE SET a = excluded.a, b = excluded.b, c = excluded.c" if upsert else ""
        conn.executemany(f"INSERT INTO plain (k, a, b, c) VALUES (?, ?, ?, ?){tail}", rows)
    return stored(path, "plain")


def statements(database: Database, write: Any) -> list[str]:
    """The statements SQLite ran for `write(conn)`."""
    seen: list[str] = []
    with database.writing() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.set_trace_callback(seen.append)
        try:
            write(conn)
        finally:
            driver.set_trace_callback(None)
    return seen


# No NUL and no lone surrogate: the one goes by executemany (below), the other neither path stores.
texts = st.one_of(
    st.none(),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30),
    st.sampled_from(['"quoted"', "back\\slash", "line\nbreak", "\u2028\u2029", "😀 emoji", "é", "", "null", "[1]"]),
)
# Within 2**53: a wider integer goes by executemany (below).
numbers = st.one_of(st.none(), st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1), st.sampled_from([0, -1]))
flags = st.one_of(st.none(), st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.tuples(texts, numbers, flags), min_size=64, max_size=150))
def test_a_json_batch_stores_what_executemany_stores(db: tuple[Database, Path], values: list[Any]) -> None:
    database, path = db
    with database.writing() as conn:
        conn.exec_driver_sql("DELETE FROM wide")
    rows = [(f"k{at:04d}", a, b, c) for at, (a, b, c) in enumerate(values)]
    ran = statements(database, lambda conn: insert_rows(conn, WIDE, COLUMNS, rows))
    assert any("json_each" in sql for sql in ran)  # the bulk path did run
    assert stored(path, "wide") == by_executemany(path, rows)


def test_an_upsert_batch_keeps_the_last_row_of_a_key_and_replaces_stored_ones(db: tuple[Database, Path]) -> None:
    database, path = db
    first = [(f"k{at:03d}", "old", at, True) for at in range(100)]
    with database.writing() as conn:
        insert_rows(conn, WIDE, COLUMNS, first)
    again = [(f"k{at:03d}", f"new {at}", -at, False) for at in range(50, 150)] + [("k060", "last", 7, None)]
    ran = statements(database, lambda conn: upsert_many(conn, WIDE, again, COLUMNS))
    assert any("json_each" in sql for sql in ran)
    assert stored(path, "wide") == by_executemany(path, first + again, upsert=True)
    assert stored(path, "wide")[60][1:3] == ("text", "last")


@pytest.mark.parametrize(
    ("odd", "why"),
    [
        (("has a \x00 NUL", 1, True), "JSON's `->>` would cut the text at the NUL"),
        (("wide", 2**63 - 1, None), "the highest 64-bit integer: stored by either path"),
    ],
)
def test_a_batch_json_would_not_carry_unchanged_goes_by_executemany_or_is_stored_alike(
    db: tuple[Database, Path], odd: tuple[Any, ...], why: str
) -> None:
    database, path = db
    rows = [(f"k{at:03d}", "plain", at, False) for at in range(80)] + [("z", *odd)]
    with database.writing() as conn:
        insert_rows(conn, WIDE, COLUMNS, rows)
    assert stored(path, "wide") == by_executemany(path, rows), why


@pytest.mark.parametrize("odd", [None, ("has a \x00 NUL",)], ids=["json", "executemany"])
def test_columns_every_row_takes_are_given_once_and_stored_as_in_every_row(
    db: tuple[Database, Path], odd: tuple[Any, ...] | None
) -> None:
    """`same` (the segment history's run and time): on the JSON path bound once per batch, not
    repeated in every row's text; by executemany (a batch JSON cannot carry) added to each row.
    Either way, what full rows store."""
    database, path = db
    rows = [(f"k{at:03d}", f"text {at}") for at in range(90)] + ([("z", *odd)] if odd else [])
    same = (("b", 2**40), ("c", True))
    ran = statements(database, lambda conn: insert_rows(conn, WIDE, ("k", "a"), rows, same=same))
    assert any("json_each" in sql for sql in ran) == (odd is None)
    assert stored(path, "wide") == by_executemany(path, [(*row, 2**40, True) for row in rows])


FIVE = Table(
    "five",
    META,
    Column("k", String(64), primary_key=True),
    Column("a", Text),
    Column("s", String(64)),
    Column("t", String(16)),
    Column("n", BigInteger),
)


@pytest.mark.parametrize(
    ("same", "literal"),
    [
        ((("s", "o'brien'); DROP TABLE five; --"), ("t", "contact"), ("n", 7)), True),
        ((("s", "lightspeed"), ("t", "order"), ("n", 2**63 - 1)), True),
        ((("s", "café"), ("t", "contact"), ("n", 7)), False),  # not ASCII: bound
        ((("s", "x\x00y"), ("t", "contact"), ("n", 7)), False),  # a NUL no statement holds: bound
        ((("s", "x"), ("t", None), ("n", 7)), False),
        ((("s", "x"), ("t", "contact"), ("n", True)), False),  # a bool is bound (stored as 1 either way)
        ((("s", "x"), ("t", "contact"), ("n", -1)), False),
    ],
)
def test_page_wide_columns_written_into_the_statement_store_what_binding_stores(
    db: tuple[Database, Path], same: tuple[tuple[str, Any], ...], literal: bool
) -> None:
    """The extract's page-wide columns (system, kind, run) of rows too wide for the JSON path are
    written into the statement as literals where that stores exactly what binding them stores, and
    bound with every row where it may not."""
    database, path = db
    rows = [(f"k{at:02d}", f"text {at}") for at in range(10)]
    values = tuple(value for _, value in same)
    assert (_literals(values) is not None) == literal
    with database.writing() as conn:
        insert_rows(conn, FIVE, ("k", "a"), rows, same=same)
    columns = "k, typeof(a), a, typeof(s), s, typeof(t), t, typeof(n), n"
    with sqlite3.connect(path) as conn:
        got = conn.execute(f"SELECT {columns} FROM five ORDER BY k").fetchall()
        conn.execute(
            "CREATE TABLE bound (k VARCHAR(64) NOT NULL PRIMARY KEY, a TEXT, s VARCHAR(64), t VARCHAR(16), n BIGINT)"
        )
        conn.executemany("INSERT INTO bound VALUES (?, ?, ?, ?, ?)", [(*row, *values) for row in rows])
        assert got == conn.execute(f"SELECT {columns} FROM bound ORDER BY k").fetchall()


def test_values_json_cannot_hold_fail_as_executemany_fails(db: tuple[Database, Path]) -> None:
    """An integer beyond 64 bits: JSON would store a REAL silently; executemany refuses it, and so
    must the bulk path. A datetime: orjson writes it otherwise than sqlite3 binds it."""
    database, path = db
    rows = [(f"k{at:03d}", "plain", at, False) for at in range(80)]
    with pytest.raises(OverflowError), database.writing() as conn:
        insert_rows(conn, WIDE, COLUMNS, [*rows, ("z", "x", 2**63, None)])
    assert stored(path, "wide") == []
    moment = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    ran = statements(database, lambda conn: insert_rows(conn, WIDE, COLUMNS, [*rows, ("z", moment, 1, None)]))
    assert not any("json_each" in sql for sql in ran)
    assert stored(path, "wide")[-1][1:3] == ("text", str(moment))


def test_a_table_with_a_float_column_never_takes_the_json_path(tmp_path: Path) -> None:
    """orjson writes an infinity as null; executemany stores it. Such a table goes by executemany."""
    from sqlalchemy import Float

    meta = MetaData()
    measured = Table("measured", meta, Column("k", String(8), primary_key=True), Column("x", Float))
    database = Database(f"sqlite:///{tmp_path / 'floats.db'}")
    meta.create_all(database.engine)
    rows = [(f"k{at:03d}", float("inf") if at == 5 else at / 3) for at in range(100)]
    ran = statements(database, lambda conn: insert_rows(conn, measured, ("k", "x"), rows))
    database.close()
    assert not any("json_each" in sql for sql in ran)
    with sqlite3.connect(tmp_path / "floats.db") as conn:
        assert conn.execute("SELECT x FROM measured WHERE k = 'k005'").fetchone() == (float("inf"),)


class Colour(Enum):
    RED = "red"


@pytest.mark.parametrize(
    "odd",
    [
        ("z", "x", "12", None),  # a number as text in an integer column: affinity makes it 12
        ("z", "x", "1e5", True),
        ("z", ["a", "list"], 1, None),  # sqlite3 refuses a list; JSON would store its text
        ("z", {"a": 1}, 1, None),
        ("z", Colour.RED, 1, None),  # a plain Enum: sqlite3 refuses it
        ("z", "x", 2**63 + 5, None),  # beyond 64 bits signed: binding refuses, JSON would store a REAL
        ("z", float("inf"), 1, None),  # orjson writes null; executemany stores Inf as text
        ("z", "x", 1),  # a row too short
        ("z", "x", 1, None, "extra"),  # a row too long
    ],
)
def test_whatever_a_row_holds_the_bulk_path_stores_or_refuses_it_as_executemany_does(
    db: tuple[Database, Path], odd: tuple[Any, ...]
) -> None:
    database, path = db
    rows = [(f"k{at:03d}", "plain", at, False) for at in range(80)] + [odd]

    def outcome(write: Any) -> object:
        try:
            write()
        except Exception as exc:  # the same kind of refusal
            return type(exc)
        return None

    def by_bulk() -> None:
        with database.writing() as conn:
            insert_rows(conn, WIDE, COLUMNS, rows)

    def plain() -> None:
        by_executemany(path, rows)

    assert outcome(by_bulk) == outcome(plain)
    assert stored(path, "wide") == (stored(path, "plain") if outcome(plain) is None else [])


def test_none_and_bools_bind_as_they_did_before_crmsync_registered_adapters_for_them() -> None:
    """sync/state/sql.py registers sqlite3 adapters for None and bool (a faster bind): the stored
    values and their types are those a connection without them stores (NULL, 0 and 1), and an int
    subclass still binds as the int it is."""
    import sync.state.sql  # noqa: F401 (registers the adapters)

    class Flag(int):
        pass

    rows = [(None, True, False, 1, Flag(7), "x")]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b, c, d, e, f)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows)
    stored = conn.execute("SELECT a, typeof(a), b, typeof(b), c, typeof(c), d, e, typeof(e), f FROM t").fetchall()
    assert stored == [(None, "null", 1, "integer", 0, "integer", 1, 7, "integer", "x")]
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    assert sqlite3.adapters[(bool, sqlite3.PrepareProtocol)](True) == 1


def test_a_larger_page_cache_for_a_write_is_taken_back_on_the_way_out_even_when_it_fails(
    db: tuple[Database, Path],
) -> None:
    """The pooled connection keeps SQLite's cache size it had: a save's larger cache (for a first
    save's members, sync/state/profile_writer.py) does not stay with it as memory."""
    database, _ = db
    with database.writing() as conn:
        [(before,)] = raw_rows(conn, "PRAGMA cache_size")
        with page_cache_of(conn, 8_192):
            assert raw_rows(conn, "PRAGMA cache_size") == [(-8_192,)]
            insert_rows(conn, WIDE, COLUMNS, [(f"k{i}", "a", i, True) for i in range(1_000)])
        assert raw_rows(conn, "PRAGMA cache_size") == [(before,)]
        with page_cache_of(conn, 1):  # never made smaller than it is
            assert raw_rows(conn, "PRAGMA cache_size") == [(before,)]
        with pytest.raises(ValueError), page_cache_of(conn, 16_384):
            raise ValueError("the write failed")
        assert raw_rows(conn, "PRAGMA cache_size") == [(before,)]
    with database.engine.connect() as conn:
        assert raw_rows(conn, "PRAGMA cache_size") == [(before,)]
        assert raw_rows(conn, "SELECT COUNT(*) FROM wide") == [(1_000,)]
