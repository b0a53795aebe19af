"""The yardstick for the cycle's compute (issue 17): DuckDB doing the core of crmsync's job on the
same stored contacts and orders, in memory, on the same machine.

The core job, step for step as crmsync does it (nothing slower):
1. trim and lower-case every contact's email (over every system);
2. one profile per distinct address (contacts without one are a profile of their own);
3. attach every order to a profile: by the customer record it names, else (a guest) by its email;
4. per profile, over the orders that count (not cancelled, refunded or test) and are not dated
   after `now`: count, revenue, first and last order;
5. RFM quintiles (`ntile(5)` over recency, frequency, revenue) among the customers with orders;
6. the loyalty x value quadrant (2+ orders with the last within a year; revenue >= 250).

crmsync does more (phones and merge protection in identity, survivorship, history, tiers, the
plan); the ratio `pipeline_s / duckdb_s` says how far its own compute is from this floor.

Loading the rows into DuckDB is not timed: the baseline is the in-memory job. DuckDB is a
benchmark-only dependency (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

CORE_JOB = """
CREATE OR REPLACE TEMP TABLE result AS
WITH c AS (
    SELECT system, record_id, NULLIF(lower(trim(email)), '') AS address FROM contacts
),
p AS (  -- one profile per distinct address; an address-less contact is its own profile
    SELECT system, record_id, address,
           dense_rank() OVER (ORDER BY coalesce(address, system || ':' || record_id)) AS profile
    FROM c
),
by_address AS (SELECT DISTINCT address, profile FROM p WHERE address IS NOT NULL),
attached AS (
    SELECT coalesce(p.profile, g.profile) AS profile, o.amount, o.created
    FROM orders o
    LEFT JOIN p ON p.system = o.system AND p.record_id = o.customer_id
    LEFT JOIN by_address g ON p.profile IS NULL AND g.address = lower(trim(o.email))
    WHERE o.counts AND o.created <= $now
),
traits AS (
    SELECT profile, count(*) AS orders, sum(amount) AS revenue, min(created) AS first, max(created) AS last
    FROM attached WHERE profile IS NOT NULL GROUP BY profile
),
scored AS (
    SELECT *,
           ntile(5) OVER (ORDER BY last) AS r,
           ntile(5) OVER (ORDER BY orders) AS f,
           ntile(5) OVER (ORDER BY revenue) AS m
    FROM traits
)
SELECT p.profile, s.orders, s.revenue, s.first, s.last, s.r, s.f, s.m,
       CASE WHEN coalesce(s.orders, 0) >= 2 AND s.last >= $now - 365 * 86400
            THEN (CASE WHEN s.revenue >= 250 THEN 'friends' ELSE 'supporters' END)
            ELSE (CASE WHEN coalesce(s.revenue, 0) >= 250 THEN 'acquaintances' ELSE 'passers-by' END)
       END AS quadrant
FROM (SELECT DISTINCT profile FROM p) p LEFT JOIN scored s USING (profile)
"""


def _columns(rows: list[tuple[Any, ...]], names: list[str], kinds: list[str]) -> dict[str, Any]:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    out: dict[str, Any] = {}
    for name, kind, values in zip(names, kinds, columns, strict=True):
        out[name] = np.array(values, dtype=object) if kind == "text" else np.array(values, dtype=kind)
    return out


def duckdb_core_job(state: Path, now: datetime, threads: int = 2) -> tuple[float, int, dict[str, int]]:
    """Seconds DuckDB takes for the core job over the SQLite state at `state` (best of three, the
    load not counted), the profiles it made and how many fall in each quadrant (to hold beside
    crmsync's: the same job gives nearly the same counts)."""
    import duckdb

    with sqlite3.connect(state) as source:
        contact_rows = source.execute("SELECT system, record_id, email FROM contacts").fetchall()
        order_rows = source.execute(
            "SELECT system, coalesce(customer_id, ''), coalesce(email, ''), CAST(amount AS REAL), created_epoch, "
            "counts FROM orders"
        ).fetchall()
    contacts = _columns(contact_rows, ["system", "record_id", "email"], ["text", "text", "text"])
    orders = _columns(
        order_rows,
        ["system", "customer_id", "email", "amount", "created", "counts"],
        ["text", "text", "text", "float64", "int64", "bool"],
    )
    del contact_rows, order_rows
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.register("contacts_in", contacts)
    con.register("orders_in", orders)
    con.execute("CREATE TABLE contacts AS SELECT * FROM contacts_in")
    con.execute("CREATE TABLE orders AS SELECT * FROM orders_in")
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        con.execute(CORE_JOB, {"now": int(now.timestamp())})
        best = min(best, time.perf_counter() - started)
    profiles = con.execute("SELECT count(*) FROM result").fetchone()
    quadrants = dict(con.execute("SELECT quadrant, count(*) FROM result GROUP BY quadrant").fetchall())
    con.close()
    return best, int(profiles[0]) if profiles else 0, {str(k): int(v) for k, v in quadrants.items()}


if __name__ == "__main__":
    # Run apart from the benchmark (bench/pipeline.py), so DuckDB's memory is not counted as crmsync's.
    import json
    import sys

    seconds, count, quadrants = duckdb_core_job(Path(sys.argv[1]), datetime.fromisoformat(sys.argv[2]))
    print(json.dumps({"seconds": seconds, "profiles": count, "quadrants": quadrants}))
