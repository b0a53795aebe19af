"""Synthetic Lightspeed eCom customers and orders, in the API's own reply shape.

Timestamps are in the shop's time (Europe/Amsterdam offsets), empty values are `false` where the
API writes false, and customers carry their metafield rows as a plain list (the fixture
convenience the emulator turns into rows). People also kept elsewhere often typed their email
differently here. Some customers hold things crmsync must leave alone: a merchant's `memo` note and
metafields of other apps; a few hold a `crmsync_loyalty_tier` row left by an earlier crmsync run,
which crmsync must correct in place (without adding a second row).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.lightspeed.shoptime import shop_time
from connectors.sandbox.people import Person, display_case

MEMOS = ("Belt liever dan dat ze mailt.", "Vaste klant van de winkel in de stad.", "Let op: retourneert vaak.")
ORDER_STATES = {
    # purchase status -> (order status, payment status)
    "paid": ("completed_shipped", "paid"),
    "cancelled": ("cancelled", "cancelled"),
    # A paid order cancelled afterwards is how a refund shows in an order's status fields.
    "refunded": ("cancelled", "paid"),
}


def _address(person: Person, kind: str) -> dict[str, Any]:
    street, _, number = person.street.rpartition(" ")
    return {
        f"address{kind}Name": f"{person.first_name} {person.last_name}",
        f"address{kind}Street": street or person.street,
        f"address{kind}Number": number if street else "",
        f"address{kind}Zipcode": person.postcode,
        f"address{kind}City": person.city,
        f"address{kind}Country": {"id": 150, "code": "nl", "code3": "nld", "title": "Nederland"},
    }


def _metafields(person: Person, rng: random.Random) -> list[dict[str, str]]:
    rows = []
    if rng.random() < 0.25:
        rows.append({"key": "klantenkaart", "value": f"KK-{rng.randrange(100_000, 999_999)}"})
    if rng.random() < 0.15:
        rows.append({"key": "favoriete_winkel", "value": person.city})
    if person.index % 13 == 0:
        rows.append({"key": "crmsync_loyalty_tier", "value": "platinum"})  # stale: no such tier any more
    return rows


def _customer(person: Person, rng: random.Random, created: datetime, updated: datetime) -> dict[str, Any]:
    email = display_case(person.email) if len(person.systems) > 1 and rng.random() < 0.5 else person.email
    return {
        "id": person.shop_id("lightspeed"),
        "createdAt": shop_time(created),
        "updatedAt": shop_time(updated),
        "isConfirmed": True,
        # One in eight checked out as a guest: Lightspeed keeps them as customers of that type.
        "type": "guest" if rng.random() < 0.125 else "registered",
        "gender": rng.choice([False, False, "male", "female"]),
        "email": email,
        "firstname": person.first_name,
        "lastname": person.last_name,
        "phone": person.mobile if rng.random() < 0.7 else "",
        **_address(person, "Billing"),
        **_address(person, "Shipping"),
        "memo": rng.choice(MEMOS) if rng.random() < 0.2 else "",
        "language": {"id": 1, "code": "nl", "locale": "nl_NL", "title": "Nederlands"},
        "metafields": _metafields(person, rng),
    }


def _order(person: Person, order_id: int, placed: datetime, amount: Decimal, state: str) -> dict[str, Any]:
    status, payment = ORDER_STATES[state]
    return {
        "id": order_id,
        "number": f"ORD{order_id % 100_000:05d}",
        "createdAt": shop_time(placed),
        "updatedAt": shop_time(placed + timedelta(hours=3)),
        "status": status,
        "paymentStatus": payment,
        "shipmentStatus": "shipped" if status != "cancelled" else "not_shipped",
        "priceExcl": float(round(amount / Decimal("1.21"), 2)),
        "priceIncl": float(amount),
        "email": person.email,
        "firstname": person.first_name,
        "lastname": person.last_name,
        "phone": person.mobile,
        **_address(person, "Billing"),
        "customer": person.shop_id("lightspeed"),
    }


def demo_fixtures(persons: list[Person]) -> dict[str, Any]:
    customers, orders = [], []
    order_id = 3_100_000
    for person in persons:
        if "lightspeed" not in person.systems:
            continue
        rng = person.rng("lightspeed")
        history = person.purchases.get("lightspeed", [])
        created = (history[0][0] if history else datetime.now(UTC)) - timedelta(days=rng.randrange(1, 60))
        customers.append(_customer(person, rng, created, history[-1][0] if history else created))
        for placed, amount, state in history:
            order_id += 1
            orders.append(_order(person, order_id, placed, amount, state))
    return {"customers": customers, "orders": orders}
