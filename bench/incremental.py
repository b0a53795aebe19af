"""Cycles that follow a full one, against the full cycle, API waits excluded: one with nothing
changed, and one after 1 % of the records changed.

    python bench/incremental.py                # 50,000 contacts, 250,000 orders
    python bench/incremental.py --scale full   # 1,000,000 contacts, 5,000,000 orders
                                               # the targets (issue 17): unchanged <= 3 %,
                                               # 1 % changed <= 6 % of the full cycle's wall time

Full cycle: every record read is stored (map, hash, upsert: what extract does with each page a
backfill reads, `StateStore.store_page` with each connector's real mapper), then the compute and
the plan. Its writes are recorded as applied (untimed: vendor calls are API waits). The next cycle
of the default schedule, 15 minutes later, finds nothing changed at the source: an incremental read
returns nothing, and the compute and the plan run again. 15 minutes after that, 1 % of the contacts
have changed (moved house, new phone) and 1 % more orders have arrived, which is what an
incremental read returns; that cycle stores those and runs the compute and the plan again.
No HTTP anywhere: the time the vendors take to answer is the part these figures leave out.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from _common import machine, peak_rss_mb, result_line
from _merchant import CONFIG, NOW, Merchant, compute_cycle, mark_applied

from sync.collector import tune_collector
from sync.config import load_config
from sync.pipeline import Cycle, build_connectors, return_freed_memory
from sync.state import StateStore


def main() -> None:
    tune_collector()  # as every cycle does (`Cycle.run`)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="small (50k contacts), full (1M) or a contact count")
    parser.add_argument("--changed", type=float, default=1.0, help="percentage of records changed (default 1)")
    args = parser.parse_args()
    contacts = {"small": 50_000, "full": 1_000_000}.get(args.scale) or int(args.scale)
    orders = contacts * 5
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "crmsync.toml"
        config_path.write_text(CONFIG)
        loaded = load_config(config_path)
        store = StateStore(loaded.state_url())
        stop = threading.Event()
        connectors = build_connectors(loaded, stop)
        merchant = Merchant(store, connectors)
        clock = [NOW]
        cycle = Cycle(loaded, store, clock=lambda: clock[0], stop_event=stop)

        full_store_s = merchant.populate(contacts, orders, seq=1)
        full, full_steps, _ = compute_cycle(cycle, connectors, 1)
        mark_applied(store, full, 1)
        full.changes.clear()  # a daemon's report of the last cycle is gone before the next one
        return_freed_memory()  # as Cycle.run does when it ends

        clock[0] = NOW + timedelta(minutes=15)  # the next cycle of the default schedule
        unchanged, unchanged_steps, _ = compute_cycle(cycle, connectors, 2)
        reused = cycle.resolver.reused
        mark_applied(store, unchanged, 2)
        unchanged.changes.clear()
        return_freed_memory()

        clock[0] = NOW + timedelta(minutes=30)
        edited = round(contacts * args.changed / 100)
        arrived = round(orders * args.changed / 100)
        started = time.perf_counter()
        merchant.store_records(merchant.edited_contacts(edited, revision=1), seq=3)
        merchant.store_records(merchant.new_orders(arrived), seq=3)
        delta_store_s = time.perf_counter() - started
        delta, delta_steps, _ = compute_cycle(cycle, connectors, 3)
        by_difference = cycle.resolver.orders_by_difference
        contacts_again = cycle.resolver.contacts_by_difference
        store.close()
    peak = peak_rss_mb()
    full_s = full_store_s + full_steps["total"]
    unchanged_s = unchanged_steps["total"]
    delta_s = delta_store_s + delta_steps["total"]
    print(f"machine: {machine()}")
    print(f"contacts {contacts:,}  orders {orders:,}  changed: {edited:,} contacts edited, {arrived:,} orders arrived")
    print(f"{'step':<24}{'full cycle s':>14}{'unchanged s':>14}{'after changes s':>18}")
    print(f"{'store what was read':<24}{full_store_s:>14.2f}{0.0:>14.2f}{delta_store_s:>18.2f}")
    for step in full_steps:
        if step not in ("total", "cpu"):
            print(
                f"{step:<24}{full_steps[step]:>14.2f}{unchanged_steps.get(step, 0.0):>14.2f}"
                f"{delta_steps.get(step, 0.0):>18.2f}"
            )
    print(f"{'total':<24}{full_s:>14.2f}{unchanged_s:>14.2f}{delta_s:>18.2f}")
    print(
        f"planned writes: full cycle {sum(o.planned for o in full.systems.values()):,}, "
        f"unchanged {sum(o.planned for o in unchanged.systems.values()):,}, "
        f"after changes {sum(o.planned for o in delta.systems.values()):,}"
    )
    print(
        f"resolution reused by the unchanged cycle: {'yes' if reused else 'no'}; "
        f"contacts and orders read by difference after changes: {'yes' if contacts_again else 'no'}, "
        f"{'yes' if by_difference else 'no'}"
    )
    print(
        result_line(
            contacts=contacts,
            orders=orders,
            changed_records=edited + arrived,
            full_cycle_s=f"{full_s:.2f}",
            unchanged_s=f"{unchanged_s:.2f}",
            unchanged_pct=f"{100 * unchanged_s / full_s:.1f}",
            incremental_s=f"{delta_s:.2f}",
            ratio_pct=f"{100 * delta_s / full_s:.1f}",
            incremental_planned=sum(o.planned for o in delta.systems.values()),
            unchanged_reused=reused,
            contacts_by_difference=contacts_again,
            orders_by_difference=by_difference,
            peak_rss_mb=f"{peak:.0f}",
        )
    )


if __name__ == "__main__":
    main()
