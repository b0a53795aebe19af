"""The compute of one cycle at merchant scale, from the state database.

    python bench/pipeline.py                # 50,000 contacts, 250,000 orders (about a minute)
    python bench/pipeline.py --scale full   # 1,000,000 contacts over 3 systems, 5,000,000 orders:
                                            # the target is <= 60 s wall and <= 2 GB peak RSS
    python bench/pipeline.py --backend postgresql   # the same on SQLite and on PostgreSQL (a server
                                            # started for the run, or --url), side by side;
                                            # the target is PostgreSQL within 1.5x of SQLite

Setup (not part of the figure): synthetic contacts and orders in the shapes Shopify, WooCommerce
and AFAS Profit serve them (~30 % of people in two systems, messy spellings), stored page by page
through `StateStore.store_page` with each connector's real mapper, exactly as extract stores what
it reads. In crmsync the map step happens there, per page, while reading; its cost per record is
printed here as the extract-side figure and measured against its own target by `bench/extract.py`.

Timed: everything a cycle does between extract and the vendor calls, on the state database:
identity resolution over every contact, orders attached to profiles, traits and segments for every
profile, the profiles and segment history saved, and the plan (desired vs known state of every
record in every writable system). Then the planned writes are recorded as applied (untimed) and
the same runs again as a second cycle with nothing changed: the steady state of a daily run.
Untimed but printed (`checkpoint after`): the checkpoint of the state's write-ahead log, which a
cycle makes after the compute, beside its vendor writes (sync/pipeline.py, `checkpoint_beside`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import load_average, machine, peak_rss_mb, result_line
from _merchant import CONFIG, NOW, Merchant, compute_cycle, mark_applied

from sync.collector import tune_collector
from sync.config import load_config
from sync.pipeline import Cycle, build_connectors, return_freed_memory
from sync.reports import CycleReport
from sync.state import SCHEMA_VERSION, StateStore


@dataclass
class Figures:
    """One backend's run: the two cycles' reports, seconds and peak RSS per step, setup seconds."""

    backend: str
    first: CycleReport
    second: CycleReport
    steps_first: dict[str, float]
    steps_second: dict[str, float]
    rss_first: dict[str, float]
    rss_second: dict[str, float]
    setup_s: float | None


BASES = """
[segments.bases]
enabled = ["region", "interest", "b2b", "cross-sell", "win-back", "abandoned-checkout"]
"""


def measure(folder: Path, contacts: int, orders: int, url: str | None, keep: bool, bases: bool = False) -> Figures:
    """Populate a state (SQLite in `folder`, or the PostgreSQL database at `url`) and time two
    cycles' compute on it. `keep` (SQLite only): reuse the populated file of an earlier run."""
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "crmsync.toml"
    config = CONFIG if url is None else CONFIG.replace('"sqlite:///crmsync.db"', f'"{url}"')
    config_path.write_text(config + (BASES if bases else ""))
    loaded = load_config(config_path)
    pristine = folder / f"populated-{contacts}-schema{SCHEMA_VERSION}.db"
    database = folder / "crmsync.db"
    for stale in (database, database.with_name("crmsync.db-wal"), database.with_name("crmsync.db-shm")):
        stale.unlink(missing_ok=True)
    setup_s: float | None = None
    reuse = url is None and pristine.exists()
    if reuse:
        shutil.copyfile(pristine, database)
    stop = threading.Event()
    store = StateStore(loaded.state_url())
    connectors = build_connectors(loaded, stop)
    if not reuse:
        setup_s = Merchant(store, connectors).populate(contacts, orders)
        if keep and url is None:
            store.close()
            shutil.copyfile(database, pristine)
            store = StateStore(loaded.state_url())
    cycle = Cycle(loaded, store, clock=lambda: NOW, stop_event=stop)
    first, steps_first, rss_first = compute_cycle(cycle, connectors, 2)
    mark_applied(store, first, 2)
    first.changes.clear()  # a daemon's report of the last cycle is gone before the next one
    return_freed_memory()  # as Cycle.run does when it ends
    second, steps_second, rss_second = compute_cycle(cycle, connectors, 3)
    store.close()
    backend = "sqlite" if url is None else "postgresql"
    return Figures(backend, first, second, steps_first, steps_second, rss_first, rss_second, setup_s)


@contextlib.contextmanager
def postgres_database(url: str | None) -> Iterator[str]:
    """The database to measure on: `url` as given, or a new one on a PostgreSQL server started for
    the run (tests/postgres.py: Debian's package, a temporary folder, 127.0.0.1, fsync off as in the
    tests), stopped at the end."""
    if url is not None:
        yield url
        return
    import psycopg

    from tests.postgres import postgres_server

    with postgres_server() as server:
        with psycopg.connect(server.url("postgres", driver="postgresql"), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        yield server.url("bench")


def print_one(figures: Figures, contacts: int, orders: int) -> None:
    first, steps_first, steps_second = figures.first, figures.steps_first, figures.steps_second
    planned = sum(o.planned for o in first.systems.values())
    print(f"contacts {contacts:,}  orders {orders:,}  profiles {first.profiles:,}  planned writes {planned:,}")
    if figures.setup_s is not None:
        print(
            f"extract side (map + hash + store, not in the figure): {figures.setup_s:.1f} s, "
            f"{figures.setup_s / (contacts + orders) * 1e6:.1f} us per record"
        )
    print(f"{'step':<22}{'first cycle s':>14}{'peak RSS MiB':>14}{'unchanged rerun s':>19}{'peak RSS MiB':>14}")
    for step in steps_first:
        # The total and CPU rows carry the cycle's highest RSS, not a step's own.
        first_mb = figures.rss_first.get(step) or max(figures.rss_first.values(), default=0.0)
        second_mb = figures.rss_second.get(step) or max(figures.rss_second.values(), default=0.0)
        print(
            f"{step:<22}{steps_first[step]:>14.2f}{first_mb:>14.0f}"
            f"{steps_second.get(step, 0.0):>19.2f}{second_mb:>14.0f}"
        )


def print_side_by_side(lite: Figures, pg: Figures, contacts: int, orders: int) -> None:
    """Both backends' seconds per step (wall; `cpu` is this process's, the server's not included)."""
    planned = sum(o.planned for o in lite.first.systems.values())
    print(f"contacts {contacts:,}  orders {orders:,}  profiles {lite.first.profiles:,}  planned writes {planned:,}")
    if lite.setup_s is not None and pg.setup_s is not None:
        print(
            f"extract side (map + hash + store, not in the figure): SQLite {lite.setup_s:.1f} s, "
            f"PostgreSQL {pg.setup_s:.1f} s ({pg.setup_s / lite.setup_s:.2f}x)"
        )
    head = f"{'step':<18}{'SQLite 1st':>11}{'PG 1st':>9}{'PG/SQLite':>10}{'SQLite rerun':>14}{'PG rerun':>10}"
    print(head + f"{'PG/SQLite':>10}")
    for step in lite.steps_first:
        a, b = lite.steps_first[step], pg.steps_first.get(step, 0.0)
        c, d = lite.steps_second.get(step, 0.0), pg.steps_second.get(step, 0.0)
        print(
            f"{step:<18}{a:>11.2f}{b:>9.2f}{(b / a if a else 0.0):>9.2f}x{c:>14.2f}{d:>10.2f}"
            f"{(d / c if c else 0.0):>9.2f}x"
        )


def baseline(state: Path) -> tuple[float, int] | None:
    """The DuckDB yardstick on the same state (bench/_yardstick.py), printed; None without DuckDB."""
    if importlib.util.find_spec("duckdb") is None:
        print("duckdb baseline: not installed (pip install -e '.[bench]')")
        return None
    # In a process of its own: DuckDB's memory is not crmsync's peak RSS.
    script = Path(__file__).with_name("_yardstick.py")
    done = subprocess.run(
        [sys.executable, str(script), str(state), NOW.isoformat()], capture_output=True, text=True, check=True
    )
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    seconds, profiles = float(answer["seconds"]), int(answer["profiles"])
    with sqlite3.connect(state) as db:
        ours = Counter(
            name for (segments,) in db.execute("SELECT segments FROM profiles") for name in json.loads(segments)
        )
    print("quadrants, DuckDB / crmsync (the same job gives nearly the same counts; crmsync also joins by phone):")
    for name in ("friends", "supporters", "acquaintances", "passers-by"):
        print(f"  {name:<14}{answer['quadrants'].get(name, 0):>10,}{ours.get(name, 0):>10,}")
    print(f"duckdb baseline (the core job in memory, 2 threads, best of 3): {seconds:.2f} s, {profiles:,} profiles")
    return seconds, profiles


def main() -> None:
    tune_collector()  # as every cycle does (`Cycle.run`)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="small (50k contacts), full (1M) or a contact count")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the populated SQLite database here and reuse it on the next run of the same scale "
        "(setup at full scale takes minutes)",
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="postgresql: the same run on PostgreSQL too, printed side by side with SQLite",
    )
    parser.add_argument(
        "--url",
        help="with --backend postgresql: an empty database to use (postgresql+psycopg://user@host/db); "
        "by default a server is started for the run (Debian's postgresql package)",
    )
    parser.add_argument(
        "--bases", action="store_true", help="with every [segments.bases] base on (region, interest, b2b, ...)"
    )
    args = parser.parse_args()
    contacts = {"small": 50_000, "full": 1_000_000}.get(args.scale) or int(args.scale)
    orders = contacts * 5
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.workdir or Path(scratch)
        lite = measure(folder, contacts, orders, None, keep=args.workdir is not None, bases=args.bases)
        duckdb_s = baseline(folder / "crmsync.db")
        pg = None
        if args.backend == "postgresql":
            with postgres_database(args.url) as url:
                pg = measure(Path(scratch) / "postgresql", contacts, orders, url, keep=False, bases=args.bases)
    peak = peak_rss_mb()
    print(f"machine: {machine()}, load {load_average()}")
    if pg is None:
        print_one(lite, contacts, orders)
    else:
        print_side_by_side(lite, pg, contacts, orders)
    pipeline_s = lite.steps_first["total"]
    figures = {
        "contacts": contacts,
        "orders": orders,
        "profiles": lite.first.profiles,
        "pipeline_s": f"{pipeline_s:.2f}",
        "duckdb_s": f"{duckdb_s[0]:.2f}" if duckdb_s else "n/a",
        "ratio": f"{pipeline_s / duckdb_s[0]:.1f}" if duckdb_s else "n/a",
        "cpu_s": f"{lite.steps_first['cpu']:.2f}",
        "checkpoint_after_s": f"{lite.steps_first['checkpoint after']:.2f}",
        "rerun_s": f"{lite.steps_second['total']:.2f}",
        "rerun_planned": sum(o.planned for o in lite.second.systems.values()),
    }
    if pg is not None:
        figures["pg_pipeline_s"] = f"{pg.steps_first['total']:.2f}"
        figures["pg_rerun_s"] = f"{pg.steps_second['total']:.2f}"
        figures["pg_rerun_planned"] = sum(o.planned for o in pg.second.systems.values())
    print(result_line(**figures, peak_rss_mb=f"{peak:.0f}"))


if __name__ == "__main__":
    main()
