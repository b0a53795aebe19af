"""SQLite's order read as aggregates (sync/state/order_text.py) and read on a thread beside identity
resolution (`OrdersAhead`, sync/state/compute.py): every order comes back as its row says, each
amount as Python reads its stored text, and orders read on a transaction that saw another state
are never used."""

from __future__ import annotations

import functools
import random
import sqlite3
import weakref
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.state import StateStore
from sync.state.compute import ORDER_DTYPE, OrdersAhead, RangeTaker, read_orders_ahead
from sync.state.order_text import aggregate_sql, decode_orders
from tests.kit import wait_until
from tests.unit.test_resolution_snapshot import Merchant, merchant, populated, seed_contacts

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# An amount as `normalise_money` stores it: a finite Decimal's text, at most 17 digits.
AMOUNTS = st.decimals(min_value=-(10**8), max_value=10**8, allow_nan=False, allow_infinity=False, places=6).map(str)
OTHER = st.none() | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
ROWS = st.lists(st.tuples(I64, I64, AMOUNTS, I64, st.booleans(), OTHER), max_size=40, unique_by=lambda row: row[0])


@settings(max_examples=150, deadline=None)
@given(rows=ROWS, seed=st.integers(0, 2**16))
def test_the_aggregate_carries_every_order_whole_in_row_order(rows: list[tuple[Any, ...]], seed: int) -> None:
    """Any row numbers, contact numbers and epochs (negative ones in two's complement), any amount
    text a mapper stores, any `other` text (quotes, tabs, non-ASCII): read back exactly, in row
    order, whatever order SQLite visits the rows in."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    with closing(sqlite3.connect(":memory:")) as db:
        db.execute("CREATE TABLE t (n INTEGER, contact INTEGER, amount TEXT, created INTEGER, counts BOOLEAN, other)")
        db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", shuffled)
        [(count, hexes, amounts, others)] = db.execute(aggregate_sql("SELECT * FROM t")).fetchall()
    read = decode_orders(count, hexes, amounts, others, ORDER_DTYPE)
    want = sorted(rows)
    assert read["order"].tolist() == [row[0] for row in want]
    assert read["contact"].tolist() == [row[1] for row in want]
    assert read["amount"].tolist() == [float(row[2]) for row in want]
    assert read["created"].tolist() == [row[3] for row in want]
    assert read["counts"].tolist() == [row[4] for row in want]
    assert read["other"].tolist() == [row[5] for row in want]


def test_an_aggregate_that_does_not_hold_its_orders_is_refused() -> None:
    one = "0000000000000001ffffffffffffffff000000000000000201"
    assert decode_orders(1, one, "1.5", "[]", ORDER_DTYPE)["contact"].tolist() == [-1]
    with pytest.raises(ValueError, match="whole"):
        decode_orders(1, one[:-2], "1.5", "[]", ORDER_DTYPE)  # a NULL printed as nothing
    with pytest.raises(ValueError):
        decode_orders(1, one, "1.5,2", "[]", ORDER_DTYPE)
    with pytest.raises(ValueError):
        decode_orders(1, one, "abc", "[]", ORDER_DTYPE)
    with pytest.raises(ValueError, match="flags"):
        decode_orders(1, one, "1.5", '["EUR\\t\\tshop"]', ORDER_DTYPE)  # a text its flags do not announce


# SQLite 3.40's CAST reads these one unit in the last place off the correctly rounded float.
MISREAD = ["0.048842", "2000673.005244", "238314.626397", "53943.777693", "-1.823851"]


def stored_orders(path: Path) -> dict[int, tuple[Any, ...]]:
    """rowid -> (contact rowid or -1, amount as Python reads the stored text, epoch, counts)."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT o.rowid, COALESCE(c.rowid, -1), o.amount, o.created_epoch, o.counts FROM orders o "
            "LEFT JOIN contacts c ON c.system = o.system AND c.record_id = o.customer_id"
        ).fetchall()
    return {n: (contact, float(amount), epoch, bool(counts)) for n, contact, amount, epoch, counts in rows}


def as_rows(arrays: list[Any]) -> dict[int, tuple[Any, ...]]:
    read = np.concatenate(arrays) if arrays else np.zeros(0, ORDER_DTYPE)
    assert read["order"].tolist() == sorted(read["order"].tolist())  # in row order
    return {
        int(r["order"]): (int(r["contact"]), float(r["amount"]), int(r["created"]), bool(r["counts"])) for r in read
    }


def test_every_sqlite_order_read_gives_each_amount_as_python_reads_its_text(tmp_path: Path) -> None:
    """In full (a range of row numbers at a time, across a gap a deleted order left) and by
    difference (`orders_changed_since`): the same floats, those of `float(text)`, and an order's
    `other` text where its numbers do not describe it."""
    shop = merchant(tmp_path)
    seed_contacts(shop)
    for n, amount in enumerate([*MISREAD, "1E+2", "-0.00", "10.00", "3.30"]):
        shop.order("shop", f"o{n}", ("1", None, amount, "EUR", n % 2 == 0, n))
    shop.order("web", "guest", (None, "anna@example.nl", "20.00", "EUR", True, 40))
    shop.order("shop", "usd", ("2", None, "40.00", "USD", True, 500))
    path = tmp_path / "crmsync.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM orders WHERE order_id = 'o8'")  # a gap in the row numbers
    expected = stored_orders(path)
    assert {amount for _, amount, _, _ in expected.values()} >= {float(text) for text in MISREAD}
    with shop.store.compute_snapshot() as reads:
        full = list(reads.order_arrays("EUR", chunk=3))
        others = {int(r["order"]): r["other"] for r in np.concatenate(full)}
        since = list(reads.orders_changed_since("EUR", 0, []))
        named = list(reads.orders_changed_since("EUR", 10**6, sorted(expected)[:2]))
    assert len(full) >= 3  # several ranges
    assert as_rows(full) == expected
    # Two readers side by side (`OrdersAhead`), taking ranges in turn from one `RangeTaker`: between
    # them, every order once, whichever reader takes more.
    with shop.store.compute_snapshot() as reads:
        take = RangeTaker()
        first, second = reads.order_arrays("EUR", chunk=3, take=take), reads.order_arrays("EUR", chunk=3, take=take)
        halves: list[list[Any]] = [[next(first)], [next(second)]]
        halves[1].extend(second)  # the second takes every range left
        halves[0].extend(first)  # and the first finds none
    assert len(halves[0]) == 1 and len(halves[1]) >= 2
    assert as_rows(sorted([*halves[0], *halves[1]], key=lambda chunk: int(chunk["order"][0]))) == expected
    assert as_rows(since) == expected
    assert as_rows(named) == {n: expected[n] for n in sorted(expected)[:2]}
    assert sorted(text for text in others.values() if text is not None) == [
        "EUR\tanna@example.nl\tweb",
        "USD\t\tshop",
    ]


def marks_of(store: StateStore) -> tuple[list[list[int]], int | None]:
    with store.compute_snapshot() as reads:
        return reads.input_marks(), reads.numbering_mark()


def test_orders_read_ahead_are_those_of_the_same_state_and_none_of_another(tmp_path: Path) -> None:
    shop = populated(tmp_path)
    marks, numbering = marks_of(shop.store)
    with shop.store.compute_snapshot() as reads:
        on_the_main_thread = as_rows(list(reads.order_arrays("EUR")))
    with shop.store.orders_ahead("EUR", marks, numbering) as ahead:
        read = ahead.result()
    assert read is not None and as_rows(read) == on_the_main_thread and len(on_the_main_thread) == 4
    # A range of one order each, taken by the two readers in turn: put back in row order.
    with OrdersAhead(functools.partial(read_orders_ahead, shop.store.db, "EUR", marks, numbering, chunk=1)) as ahead:
        read = ahead.result()
    assert read is not None and len(read) == 4 and as_rows(read) == on_the_main_thread
    shop.order("shop", "o5", ("1", None, "7.00", "EUR", True, 2))  # a write after the marks were read
    with shop.store.orders_ahead("EUR", marks, numbering) as ahead:
        assert ahead.result() is None
    marks, numbering = marks_of(shop.store)
    with closing(sqlite3.connect(tmp_path / "crmsync.db")) as db:
        db.execute("VACUUM")  # may renumber rows: the schema cookie moves, the marks do not
    assert marks_of(shop.store)[0] == marks
    with shop.store.orders_ahead("EUR", marks, numbering) as ahead:
        assert ahead.result() is None


def test_readers_ahead_read_a_window_of_ranges_until_asked_and_stop_when_the_caller_leaves(tmp_path: Path) -> None:
    """A cycle's memory peaks while it resolves identities; orders decoded by then add to it. So the
    readers read RANGES_BEFORE_ASKED ranges between them, then wait until the caller asks for the
    orders (and read the rest), or stop when it leaves without them."""
    shop = populated(tmp_path)
    marks, numbering = marks_of(shop.store)
    with shop.store.compute_snapshot() as reads:
        on_the_main_thread = as_rows(list(reads.order_arrays("EUR")))
    passed: list[int] = []

    def counting(take: Any, gate: Any) -> Any:
        def counted() -> bool:
            if not gate():
                return False
            passed.append(1)
            return True

        return read_orders_ahead(shop.store.db, "EUR", marks, numbering, take, chunk=1, gate=counted)

    with OrdersAhead(counting, window=1) as ahead:
        assert wait_until(lambda: len(passed) == 1, timeout=10)
        assert not wait_until(lambda: len(passed) > 1, timeout=0.5)  # the second range waits
        read = ahead.result()
        assert read is not None and as_rows(read) == on_the_main_thread
        # A chunk the caller lets go of is freed while the readers still exist (`resolve.drained`
        # frees each as it is used): they keep no list of their own holding it.
        first = weakref.ref(read[0])
        read.clear()
        assert first() is None
    assert len(passed) == 6  # four ranges of one order, and each reader's look past its last

    passed.clear()
    with OrdersAhead(counting, window=1):
        assert wait_until(lambda: len(passed) == 1, timeout=10)
    # left without asking: both readers stopped at the gate, nothing more was read
    assert len(passed) == 1


class RacedStore(StateStore):
    """A state where another writer commits an order just as the orders are read ahead: after the
    compute's own snapshot began, before the read on the thread does."""

    def __init__(self, url: str, shop: Merchant) -> None:
        super().__init__(url)
        self.shop = shop

    def orders_ahead(self, base_currency: str, marks: list[list[int]], numbering: int | None) -> Any:
        self.shop.order("shop", "raced", ("1", None, "99.00", "EUR", True, 1))
        return super().orders_ahead(base_currency, marks, numbering)


def test_a_first_compute_reads_the_orders_ahead_and_a_raced_read_is_read_again(tmp_path: Path) -> None:
    """Only where the cycle holds the writer lock (`read_ahead`, set by `Cycle._compute_and_plan`):
    a plan beside a running writer (`plan_stored`) reads every order on its own transaction. The
    marks are checked all the same, for a writer that ignores the lock."""
    shop = populated(tmp_path)
    shop.resolve(reuse=False)
    assert not shop.cycle.resolver.orders_read_ahead  # as `plan_stored` computes
    shop.cycle.resolver.read_ahead = True
    shop.resolve(reuse=False)
    assert shop.cycle.resolver.orders_read_ahead
    before = shop.resolve(reuse=False)
    cents = sorted(before.orders.cents.tolist())
    raced = RacedStore(shop.store.url, shop)
    shop.cycle.resolver.store = raced
    try:
        after = shop.resolve(reuse=False)
    finally:
        shop.cycle.resolver.store = shop.store
        raced.close()
    assert not shop.cycle.resolver.orders_read_ahead
    assert sorted(after.orders.cents.tolist()) == cents  # the compute's own snapshot: without the raced order
    assert 9900 in shop.resolve(reuse=False).orders.cents.tolist()  # read by the next compute


def test_a_read_by_difference_of_more_orders_than_a_range_reads_them_all(tmp_path: Path, monkeypatch: Any) -> None:
    """The orders written since come as one aggregate: past a full read's range (200,000), the
    cycle reads every order instead, a range at a time, and gets what a full read gets."""
    from sync import resolve

    shop = populated(tmp_path)  # its compute kept the snapshot the next ones read by difference from
    shop.order("shop", "o5", ("1", None, "7.00", "EUR", True, 2))
    shop.order("shop", "o6", ("1", None, "8.00", "EUR", True, 2))
    by_difference = shop.resolve(reuse=True)
    assert shop.cycle.resolver.orders_by_difference
    monkeypatch.setattr(resolve, "ORDERS_BY_DIFFERENCE_AT_MOST", 1)
    in_full = shop.resolve(reuse=True)
    assert not shop.cycle.resolver.orders_by_difference
    for name in ("profile", "cents", "created", "counts"):
        assert np.array_equal(getattr(in_full.orders, name), getattr(by_difference.orders, name)), name
