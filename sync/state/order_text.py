"""SQLite's order read as text: a range of orders comes back as one row of three aggregates,
which numpy turns into columns, instead of one driver row per order.

Why: through `sqlite3` every order row is a step of the statement, a tuple and six Python values,
and the interpreter lock is handed to SQLite and back on every step. A million orders cost ~1 us
each that way, on the main thread, and a second thread cannot take the work (both sides slowed
on every hand-over, measured). An aggregate runs the whole range inside one step: SQLite holds no
interpreter lock for it, so a thread of its own can read every order while the main thread
resolves identities (`read_orders_ahead` in sync/state/compute.py), and what is left for Python
is decoding three strings, ~0.5 s per million orders (bench/RESULTS.md).

The aggregates, per range:
- per order, its row number, contact row number (-1: none) and created epoch as 16 hex digits
  each (two's complement), then two hex digits of flags (1: counts, 2: has `other`), all run
  together: `bytes.fromhex` makes them big-endian integers;
- the amounts as stored (decimal text), comma-separated: numpy parses each as Python's `float`
  does, correctly rounded. SQLite's own `CAST(... AS REAL)` is not (3.40 reads "0.048842" one
  unit in the last place low), so every SQLite order read goes through here, full or by
  difference: two reads of one amount must give one float;
- the `other` texts of the orders that have one, as a JSON array (text needs its escaping).

The three aggregates see the rows in one order, so they line up; the row numbers they carry say
which order each is, so the result is put in row order whatever order SQLite fed them in."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

HEX_PER_ORDER = 50
PACKED = np.dtype([("order", ">i8"), ("contact", ">i8"), ("created", ">i8"), ("flags", "u1")])
COUNTS, HAS_OTHER = 1, 2


def aggregate_sql(rows_sql: str) -> str:
    """The aggregate over the rows of `rows_sql`, a query whose columns are those of the order read
    (`ComputeSnapshot.order_arrays_sql`: row number, contact row number, amount as stored, created
    epoch, counts, other)."""
    return (
        f"WITH read(n, contact, amount, created, counts, other) AS ({rows_sql}) "
        "SELECT COUNT(*), "
        "group_concat(printf('%016x%016x%016x%02x', n, contact, created, "
        f"(CASE WHEN counts THEN {COUNTS} ELSE 0 END) + (CASE WHEN other IS NULL THEN 0 ELSE {HAS_OTHER} END)), ''), "
        "group_concat(amount, ','), "
        "json_group_array(other) FILTER (WHERE other IS NOT NULL) "
        "FROM read"
    )


def decode_orders(
    count: int, hexes: str | None, amounts: str | None, others: str | None, dtype: np.dtype[Any]
) -> npt.NDArray[Any]:
    """One aggregate row of `aggregate_sql` as a structured array of `dtype` (ORDER_DTYPE), in row
    order. Raises ValueError when the texts do not hold `count` orders (a value the read cannot
    carry: a NULL where the schema allows none, an amount that is not a number)."""
    out = np.empty(count, dtype=dtype)
    if count == 0:
        return out
    if hexes is None or amounts is None or len(hexes) != count * HEX_PER_ORDER:
        raise ValueError(f"the order read did not carry {count} orders whole")
    packed = np.frombuffer(bytes.fromhex(hexes), dtype=PACKED)
    with warnings.catch_warnings():  # a text numpy cannot read to its end: fewer values, refused below
        warnings.simplefilter("ignore", DeprecationWarning)
        # Each as `float` reads it (correctly rounded), and no Python string per amount: a read by
        # difference may carry millions in one aggregate.
        values = np.fromstring(amounts, dtype=np.float64, sep=",")
    if values.shape[0] != count:
        raise ValueError(f"the order read carried {values.shape[0]} amounts for {count} orders")
    out["order"] = packed["order"]
    out["contact"] = packed["contact"]
    out["amount"] = values
    out["created"] = packed["created"]
    flags = packed["flags"]
    out["counts"] = (flags & COUNTS) != 0
    out["other"] = None
    having = (flags & HAS_OTHER) != 0
    texts = orjson.loads(others or "[]")
    if len(texts) != int(having.sum()):
        raise ValueError("the order read's other texts do not match its flags")
    if texts:
        out["other"][having] = np.array(texts, dtype=object)
    order = out["order"]
    if count > 1 and not bool((order[1:] > order[:-1]).all()):
        out = out[np.argsort(order, kind="stable")]
    return out
