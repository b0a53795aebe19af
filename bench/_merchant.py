"""A synthetic merchant for the benchmarks: contacts and orders in the shapes Shopify, WooCommerce
and AFAS Profit serve them (~30 % of people in two systems, messy spellings), stored the way
extract stores what it reads, and the compute steps of a cycle timed one by one."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from mapping.model import Kind, SourceRecord, WriteBack, WriteResult
from sync.pipeline import Cycle, CycleReport, SystemOutcome, make_mapper
from sync.state import StateStore

SYSTEMS = ("shopify", "woocommerce", "afas")
FIRST = ["Jan", "Piet", "Kees", "Anna", "Sanne", "Lotte", "Daan", "Bram", "Fleur", "Noor", "Thijs", "Emma", "Lars"]
LAST = [("", "Jansen"), ("de", "Vries"), ("van", "Dijk"), ("", "Bakker"), ("van der", "Berg"), ("", "Visser"),
        ("", "Smit"), ("de", "Boer"), ("", "Mulder"), ("", "Peeters")]  # fmt: skip
TYPES = ["Shoes", "Bags", "Hats", "Coats", "Scarves", "Socks"]
DOMAINS = ["gmail.com", "hotmail.com", "ziggo.nl", "kpnmail.nl", "telenet.be", "outlook.com"]
PAGE = 5_000
GUEST_SHARE = 0.05
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


def person_email(person: int) -> str:
    """The address a person uses everywhere: on their contacts and on their guest orders."""
    return f"{FIRST[person % len(FIRST)]}.{LAST[(person // 7) % len(LAST)][1]}{person}@{DOMAINS[person % len(DOMAINS)]}"


def contact_payload(system: str, person: int, rng: random.Random, revision: int = 0) -> tuple[str, dict[str, Any]]:
    """A contact as `system` serves it; a later `revision` has moved house and changed phone."""
    first = FIRST[person % len(FIRST)]
    infix, last = LAST[(person // 7) % len(LAST)]
    email = person_email(person)
    shown = email.lower() if rng.random() < 0.6 else email
    digits = f"{10_000_000 + (person + 7919 * revision) % 89_999_999}"
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
                "address1": f"Kerkstraat {(person + revision) % 200 + 1}",
                "zip": "1011AB",
                "city": "Amsterdam",
                "countryCodeV2": "NL",
            },
            "tags": ["vip"] if person % 11 == 0 else [],
            "loyaltyTier": None,
            "updatedAt": f"2026-06-{1 + revision % 28:02d}T10:00:00Z",
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
                "address_1": f"Dorpsweg {(person + revision) % 90 + 1}",
                "postcode": "3511 AA",
                "city": "Utrecht",
                "country": "NL",
                "company": "",
            },
            "meta_data": [],
            "date_modified_gmt": f"2026-06-{1 + revision % 28:02d}T10:00:00",
        }
    rid = str(100_000 + person)
    return rid, {
        "PersonId": rid,
        "FirstName": first,
        "LastName": last,
        "Email": shown,
        "Mobile": phone,
        "ModifiedDate": f"2026-06-{1 + revision % 28:02d}T10:00:00Z",
    }


def order_payload(system: str, person: int, number: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """An order as `system` serves it; in the shops one in twenty is a guest checkout, naming no
    customer record, only the buyer's email address (crmsync attaches it by that address)."""
    placed = NOW - timedelta(days=rng.randrange(1, 900), seconds=rng.randrange(86_400))
    amount = f"{rng.lognormvariate(3.8, 0.6):.2f}"
    status = rng.random()
    guest = rng.random() < GUEST_SHARE
    email = person_email(person)
    if system == "shopify":
        oid = f"gid://shopify/Order/{number}"
        return oid, {
            "id": oid,
            "email": email if guest else None,
            "createdAt": placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "updatedAt": placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cancelledAt": None if status > 0.05 else placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "test": False,
            "displayFinancialStatus": "PAID",
            "currentTotalPriceSet": {"shopMoney": {"amount": amount, "currencyCode": "EUR"}},
            "customer": None if guest else {"id": f"gid://shopify/Customer/{7_000_000 + person}"},
            # Derived from the number, not drawn: the random sequence (and every other figure) stays.
            "discountCodes": ["WELKOM10"] if number % 5 == 0 else [],
            "lineItems": {
                "nodes": [{"product": {"productType": TYPES[(number + i) % len(TYPES)]}} for i in range(number % 3 + 1)]
            },
        }
    if system == "woocommerce":
        return str(number), {
            "id": number,
            "status": "completed" if status > 0.05 else "cancelled",
            "currency": "EUR",
            "total": amount,
            "customer_id": 0 if guest else 1000 + person,
            "billing": {"email": email if guest else ""},
            "date_created_gmt": placed.strftime("%Y-%m-%dT%H:%M:%S"),
            "date_modified_gmt": placed.strftime("%Y-%m-%dT%H:%M:%S"),
            "coupon_lines": [{"code": "welkom"}] if number % 5 == 0 else [],
        }
    return str(number), {
        "InvoiceId": str(number),
        "PersonId": str(100_000 + person),
        "AmountInclVat": amount,
        "Currency": "EUR",
        "InvoiceDate": placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Credited": status <= 0.05,
    }


class Merchant:
    """Synthetic records stored page by page through `StateStore.store_page` with each connector's
    real mapper, as extract stores what it reads."""

    def __init__(self, store: StateStore, cycle_connectors: dict[str, Any], seed: int = 7) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.mappers = {
            (name, kind): make_mapper(connector, kind, cycle_connectors)
            for name, connector in cycle_connectors.items()
            for kind in (Kind.CONTACT, Kind.ORDER)
        }
        self.holders: list[tuple[str, int]] = []  # (system, person) of every stored contact
        self.orders = 0

    def store_records(self, records: Iterable[SourceRecord], seq: int) -> int:
        """Store in pages of PAGE records per system and kind; returns how many were stored."""
        pending: dict[tuple[str, Kind], list[SourceRecord]] = {key: [] for key in self.mappers}
        count = 0
        for record in records:
            key = (record.system, record.kind)
            pending[key].append(record)
            count += 1
            if len(pending[key]) >= PAGE:
                self.store.store_page(key[0], key[1], pending[key], self.mappers[key], seq)
                pending[key] = []
        for key, page in pending.items():
            if page:
                self.store.store_page(key[0], key[1], page, self.mappers[key], seq)
        return count

    def populate(self, contacts: int, orders: int, seq: int = 1) -> float:
        """Store `contacts` contacts and `orders` orders; returns the seconds it took."""
        started = time.perf_counter()
        self.store_records(self._new_contacts(contacts), seq)
        self.store_records(self.new_orders(orders), seq)
        return time.perf_counter() - started

    def _new_contacts(self, contacts: int) -> Iterator[SourceRecord]:
        person = 0
        stored = 0
        while stored < contacts:
            person += 1
            # ~30 % of people are in two systems
            systems = self.rng.sample(SYSTEMS, 2 if self.rng.random() < 0.3 else 1)
            for system in systems:
                if stored >= contacts:
                    break
                rid, payload = contact_payload(system, person, self.rng)
                self.holders.append((system, person))
                stored += 1
                yield SourceRecord(system, Kind.CONTACT, rid, NOW, payload)

    def new_orders(self, orders: int) -> Iterator[SourceRecord]:
        for _ in range(orders):
            self.orders += 1
            system, owner = self.holders[self.rng.randrange(len(self.holders))]
            oid, payload = order_payload(system, owner, self.orders, self.rng)
            yield SourceRecord(system, Kind.ORDER, oid, NOW, payload)

    def edited_contacts(self, count: int, revision: int) -> Iterator[SourceRecord]:
        """`count` stored contacts, edited at the source (moved house, new phone)."""
        for system, person in self.rng.sample(self.holders, count):
            rid, payload = contact_payload(system, person, self.rng, revision)
            yield SourceRecord(system, Kind.CONTACT, rid, NOW, payload)


class RssSampler:
    """Resident memory of this process every 20 ms, on a thread, to tell which step peaks."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20

    def _run(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop.wait(0.02):
                statm.seek(0)
                self.samples.append((time.perf_counter(), int(statm.read().split()[1]) * self._page_mb))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peaks(self, started: float, steps: dict[str, float]) -> dict[str, float]:
        """Highest RSS (MiB) seen during each of `steps`, which ran back to back from `started`."""
        out: dict[str, float] = {}
        begin = started
        for name, seconds in steps.items():
            end = begin + seconds
            out[name] = max((rss for at, rss in self.samples if begin <= at <= end), default=0.0)
            begin = end
        return out


def compute_cycle(
    cycle: Cycle, connectors: dict[str, Any], seq: int
) -> tuple[CycleReport, dict[str, float], dict[str, float]]:
    """What `Cycle.run` does after extract, with no vendor calls, each step timed: returns the
    report, seconds per step and peak RSS (MiB) per step."""
    run = cycle.store.begin_run("bench", cycle.clock())
    report = CycleReport(run.run_id, False, cycle.clock())  # not dry: the segment history is written too
    report.systems = {name: SystemOutcome(c.type) for name, c in connectors.items()}
    steps: dict[str, float] = {}
    cpu = time.process_time()
    with RssSampler() as sampler:
        started = time.perf_counter()
        cycle._compute_and_plan(connectors, report, run, True, steps)  # as `Cycle.run` does
    peaks = sampler.peaks(started, steps)
    steps["total"] = time.perf_counter() - started
    # CPU seconds of every thread: on a busy machine wall time drifts, this much less.
    steps["cpu"] = time.process_time() - cpu
    # `Cycle.run` has the state's write-ahead log checkpointed after the compute, beside the
    # vendor writes (`checkpoint_beside`): not part of the total, but shown beside it.
    began = time.perf_counter()
    cycle.store.wal_checkpoint()
    steps["checkpoint after"] = time.perf_counter() - began
    return report, steps, peaks


def mark_applied(store: StateStore, report: CycleReport, seq: int) -> None:
    """As if every planned write had succeeded (the vendor calls are bench/writes.py's business),
    so the second cycle meets the steady state of a daily run."""
    by_system: dict[str, list[WriteBack]] = {}
    for change in report.changes:
        by_system.setdefault(change.system, []).append(change)
    for system, changes in by_system.items():
        store.record_results(system, changes, [WriteResult(c.record_id, True) for c in changes], seq, NOW)
