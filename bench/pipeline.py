"""The compute of one cycle at merchant scale, from the state database.

    python bench/pipeline.py                # 50,000 contacts, 250,000 orders (about a minute)
    python bench/pipeline.py --scale full   # 1,000,000 contacts over 3 systems, 5,000,000 orders:
                                            # the target is <= 60 s wall and <= 2 GB peak RSS

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
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
from pathlib import Path

from _common import machine, peak_rss_mb, result_line
from _merchant import CONFIG, NOW, Merchant, compute_cycle, mark_applied

from sync.config import load_config
from sync.pipeline import Cycle, build_connectors, return_freed_memory
from sync.state import SCHEMA_VERSION, StateStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="small (50k contacts), full (1M) or a contact count")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the populated database here and reuse it on the next run of the same scale "
        "(setup at full scale takes minutes)",
    )
    args = parser.parse_args()
    contacts = {"small": 50_000, "full": 1_000_000}.get(args.scale) or int(args.scale)
    orders = contacts * 5
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.workdir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / "crmsync.toml"
        config_path.write_text(CONFIG)
        loaded = load_config(config_path)
        pristine = folder / f"populated-{contacts}-schema{SCHEMA_VERSION}.db"
        database = folder / "crmsync.db"
        for stale in (database, database.with_name("crmsync.db-wal"), database.with_name("crmsync.db-shm")):
            stale.unlink(missing_ok=True)
        setup_s: float | None = None
        if pristine.exists():
            shutil.copyfile(pristine, database)
        stop = threading.Event()
        store = StateStore(loaded.state_url())
        connectors = build_connectors(loaded, stop)
        if not pristine.exists():
            setup_s = Merchant(store, connectors).populate(contacts, orders)
            if args.workdir:
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
    peak = peak_rss_mb()
    planned = sum(o.planned for o in first.systems.values())
    print(f"machine: {machine()}")
    print(f"contacts {contacts:,}  orders {orders:,}  profiles {first.profiles:,}  planned writes {planned:,}")
    if setup_s is not None:
        print(
            f"extract side (map + hash + store, not in the figure): {setup_s:.1f} s, "
            f"{setup_s / (contacts + orders) * 1e6:.1f} us per record"
        )
    print(f"{'step':<22}{'first cycle s':>14}{'peak RSS MiB':>14}{'unchanged rerun s':>19}{'peak RSS MiB':>14}")
    for step in steps_first:
        # The total and CPU rows carry the cycle's highest RSS, not a step's own.
        first_mb = rss_first.get(step) or max(rss_first.values(), default=0.0)
        second_mb = rss_second.get(step) or max(rss_second.values(), default=0.0)
        print(
            f"{step:<22}{steps_first[step]:>14.2f}{first_mb:>14.0f}"
            f"{steps_second.get(step, 0.0):>19.2f}{second_mb:>14.0f}"
        )
    print(
        result_line(
            contacts=contacts,
            orders=orders,
            profiles=first.profiles,
            pipeline_s=f"{steps_first['total']:.2f}",
            cpu_s=f"{steps_first['cpu']:.2f}",
            rerun_s=f"{steps_second['total']:.2f}",
            rerun_planned=sum(o.planned for o in second.systems.values()),
            peak_rss_mb=f"{peak:.0f}",
        )
    )


if __name__ == "__main__":
    main()
