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
import random
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import machine, peak_rss_mb, result_line

from mapping.model import Kind, SourceRecord, WriteBack, WriteResult
from sync.config import load_config
from sync.pipeline import Cycle, CycleReport, SystemOutcome, build_connectors, make_mapper
from sync.state import StateStore

SYSTEMS = ("shopify", "woocommerce", "afas")
FIRST = ["Jan", "Piet", "Kees", "Anna", "Sanne", "Lotte", "Daan", "Bram", "Fleur", "Noor", "Thijs", "Emma", "Lars"]
LAST = [("", "Jansen"), ("de", "Vries"), ("van", "Dijk"), ("", "Bakker"), ("van der", "Berg"), ("", "Visser"),
        ("", "Smit"), ("de", "Boer"), ("", "Mulder"), ("", "Peeters")]  # fmt: skip
DOMAINS = ["gmail.com", "hotmail.com", "ziggo.nl", "kpnmail.nl", "telenet.be", "outlook.com"]
PAGE = 5_000
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)

CONFIG = """
[state]
url = "sqlite:///crmsync.db"
[systems.shopify]
type = "shopify"
base_url = "http://127.0.0.1:9"
access_token = "shpat_bench_token_0000"
[systems.woocommerce]
type = "woocommerce"
base_url = "http://127.0.0.1:9"
consumer_key = "ck_bench_key_0000"
consumer_secret = "cs_bench_secret_0000"
[systems.afas]
type = "afas"
base_url = "http://127.0.0.1:9"
token = "bench_afas_token_0000"
"""


def contact_payload(system: str, person: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    first = FIRST[person % len(FIRST)]
    infix, last = LAST[(person // 7) % len(LAST)]
    email = f"{first}.{last}{person}@{DOMAINS[person % len(DOMAINS)]}"
    shown = email.lower() if rng.random() < 0.6 else email
    digits = f"{10_000_000 + person % 89_999_999}"
    phone = rng.choice([f"06-{digits}", f"06{digits}", f"+31 6 {digits}", None])
    family = f"{infix} {last}".strip()
    if system == "shopify":
        gid = f"gid://shopify/Customer/{7_000_000 + person}"
        return gid, {
            "id": gid,
            "firstName": first,
            "lastName": family,
            "defaultEmailAddress": {"emailAddress": shown},
            "defaultPhoneNumber": {"phoneNumber": phone} if phone else None,
            "defaultAddress": {
                "address1": f"Kerkstraat {person % 200 + 1}",
                "zip": "1011AB",
                "city": "Amsterdam",
                "countryCodeV2": "NL",
            },
            "tags": ["vip"] if person % 11 == 0 else [],
            "loyaltyTier": None,
            "updatedAt": "2026-06-01T10:00:00Z",
        }
    if system == "woocommerce":
        rid = str(1000 + person)
        return rid, {
            "id": int(rid),
            "email": shown,
            "first_name": first,
            "last_name": family,
            "billing": {
                "phone": phone or "",
                "address_1": f"Dorpsweg {person % 90 + 1}",
                "postcode": "3511 AA",
                "city": "Utrecht",
                "country": "NL",
                "company": "",
            },
            "meta_data": [],
            "date_modified_gmt": "2026-06-01T10:00:00",
        }
    rid = str(100_000 + person)
    return rid, {
        "PersonId": rid,
        "FirstName": first,
        "LastName": last,
        "Email": shown,
        "Mobile": phone,
        "ModifiedDate": "2026-06-01T10:00:00Z",
    }


def order_payload(system: str, person: int, number: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    placed = NOW - timedelta(days=rng.randrange(1, 900), seconds=rng.randrange(86_400))
    amount = f"{rng.lognormvariate(3.8, 0.6):.2f}"
    status = rng.random()
    if system == "shopify":
        oid = f"gid://shopify/Order/{number}"
        return oid, {
            "id": oid,
            "email": None,
            "createdAt": placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updatedAt": placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cancelledAt": None if status > 0.05 else placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "test": False,
            "displayFinancialStatus": "PAID",
            "currentTotalPriceSet": {"shopMoney": {"amount": amount, "currencyCode": "EUR"}},
            "customer": {"id": f"gid://shopify/Customer/{7_000_000 + person}"},
        }
    if system == "woocommerce":
        return str(number), {
            "id": number,
            "status": "completed" if status > 0.05 else "cancelled",
            "currency": "EUR",
            "total": amount,
            "customer_id": 1000 + person,
            "billing": {"email": ""},
            "date_created_gmt": placed.strftime("%Y-%m-%dT%H:%M:%S"),
            "date_modified_gmt": placed.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    return str(number), {
        "InvoiceId": str(number),
        "PersonId": str(100_000 + person),
        "AmountInclVat": amount,
        "Currency": "EUR",
        "InvoiceDate": placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Credited": status <= 0.05,
    }


def populate(store: StateStore, cycle_connectors: dict[str, Any], contacts: int, orders: int) -> float:
    """Store synthetic records the way extract does; returns the seconds it took."""
    rng = random.Random(7)
    mappers = {
        (name, kind): make_mapper(connector, kind, cycle_connectors)
        for name, connector in cycle_connectors.items()
        for kind in (Kind.CONTACT, Kind.ORDER)
    }
    started = time.perf_counter()
    pending: dict[tuple[str, Kind], list[SourceRecord]] = {key: [] for key in mappers}
    holders: list[tuple[str, int]] = []  # (system, person) of every stored contact, for orders

    def flush(key: tuple[str, Kind], force: bool = False) -> None:
        if pending[key] and (force or len(pending[key]) >= PAGE):
            store.store_page(key[0], key[1], pending[key], mappers[key], 1)
            pending[key] = []

    person = 0
    stored = 0
    while stored < contacts:
        person += 1
        # ~30 % of people are in two systems
        systems = rng.sample(SYSTEMS, 2 if rng.random() < 0.3 else 1)
        for system in systems:
            if stored >= contacts:
                break
            rid, payload = contact_payload(system, person, rng)
            pending[(system, Kind.CONTACT)].append(SourceRecord(system, Kind.CONTACT, rid, NOW, payload))
            holders.append((system, person))
            stored += 1
            flush((system, Kind.CONTACT))
    for number in range(1, orders + 1):
        system, owner = holders[rng.randrange(len(holders))]
        oid, payload = order_payload(system, owner, number, rng)
        pending[(system, Kind.ORDER)].append(SourceRecord(system, Kind.ORDER, oid, NOW, payload))
        flush((system, Kind.ORDER))
    for key in pending:
        flush(key, force=True)
    return time.perf_counter() - started


def compute_cycle(cycle: Cycle, connectors: dict[str, Any], seq: int) -> tuple[CycleReport, dict[str, float]]:
    """What `Cycle.run` does after extract, dry (no vendor calls), with each step timed."""
    run = cycle.store.begin_run("bench", NOW)
    report = CycleReport(run.run_id, False, NOW)  # not dry: the segment history is written too
    report.systems = {name: SystemOutcome(c.type) for name, c in connectors.items()}
    steps: dict[str, float] = {}
    started = time.perf_counter()
    desired = cycle._compute(connectors, report, run, steps)
    mark = time.perf_counter()
    cycle._plan(connectors, report, desired)
    steps["plan"] = time.perf_counter() - mark
    steps["total"] = time.perf_counter() - started
    return report, steps


def mark_applied(store: StateStore, report: CycleReport, seq: int) -> None:
    """As if every planned write had succeeded (the vendor calls are bench/writes.py's business),
    so the second cycle meets the steady state of a daily run."""
    by_system: dict[str, list[WriteBack]] = {}
    for change in report.changes:
        by_system.setdefault(change.system, []).append(change)
    for system, changes in by_system.items():
        store.record_results(system, changes, [WriteResult(c.record_id, True) for c in changes], seq, NOW)


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
        pristine = folder / f"populated-{contacts}.db"
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
            setup_s = populate(store, connectors, contacts, orders)
            if args.workdir:
                store.close()
                shutil.copyfile(database, pristine)
                store = StateStore(loaded.state_url())
        cycle = Cycle(loaded, store, clock=lambda: NOW, stop_event=stop)
        first, steps_first = compute_cycle(cycle, connectors, 2)
        mark_applied(store, first, 2)
        second, steps_second = compute_cycle(cycle, connectors, 3)
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
    print(f"{'step':<24}{'first cycle s':>16}{'unchanged rerun s':>20}")
    for step in steps_first:
        print(f"{step:<24}{steps_first[step]:>16.2f}{steps_second.get(step, 0.0):>20.2f}")
    print(
        result_line(
            contacts=contacts,
            orders=orders,
            profiles=first.profiles,
            pipeline_s=f"{steps_first['total']:.2f}",
            rerun_s=f"{steps_second['total']:.2f}",
            rerun_planned=sum(o.planned for o in second.systems.values()),
            peak_rss_mb=f"{peak:.0f}",
        )
    )


if __name__ == "__main__":
    main()
