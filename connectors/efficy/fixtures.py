"""Synthetic efficy contacts and opportunities, in the rows the saved queries return plus the
contact's categories (`{"categories": {"CONT$...": {FIELD: value}}}`).

What crmsync must leave alone is there too: a marketing category and a memo set by people, the
webshop customer number a salesperson typed in, and on some contacts a crmsync category holding
a stale verdict from an earlier run (crmsync owns that one and corrects it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.sandbox.people import Person, display_case

CONTACT_BASE = 40_000
OPPORTUNITY_BASE = 80_000
STATUS = {"paid": "WON", "cancelled": "LOST", "refunded": "CANCELLED"}
SOURCES = ("beurs", "website", "telefonisch", "doorverwezen")


def _efficy(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def demo_fixtures(persons: list[Person]) -> dict[str, Any]:
    contacts: list[dict[str, Any]] = []
    opportunities: list[dict[str, Any]] = []
    for person in persons:
        if "efficy" not in person.systems:
            continue
        key = CONTACT_BASE + person.index
        history = person.purchases.get("efficy", [])
        contacts.append(_contact(person, key, history[0][0] if history else None))
        opportunities.extend(_opportunities(person, key, len(opportunities)))
    return {"customers": contacts, "orders": opportunities}


def _contact(person: Person, key: int, first_purchase: datetime | None) -> dict[str, Any]:
    rng = person.rng("efficy")
    created = (first_purchase or datetime.now(UTC)) - timedelta(days=rng.randrange(30, 400))
    contact: dict[str, Any] = {
        "K_CONTACT": key,
        "FIRSTNAME": person.first_name,
        "NAME": person.last_name,
        "EMAIL1": display_case(person.email) if len(person.systems) > 1 else person.email,
        "MOBILE": person.mobile if rng.random() < 0.75 else None,
        "PHONE1": f"0{rng.randrange(10, 99)}-{rng.randrange(1_000_000, 9_999_999)}" if rng.random() < 0.4 else None,
        "ADDRESS1": person.street,
        "POSTCODE": person.postcode,
        "CITY": person.city,
        "COUNTRY": "NL",
        "LANGUAGE": "NL",
        "MEMO": "Belt liever dan te mailen." if rng.random() < 0.15 else None,
        "D_CREATE": _efficy(created),
        "D_CHANGE": _efficy(created + timedelta(days=rng.randrange(0, 30), minutes=rng.randrange(0, 1440))),
        "categories": {},
    }
    if "shopify" in person.systems and rng.random() < 0.6:
        contact["WEBSHOP_NR"] = str(person.shop_id("shopify"))
    if rng.random() < 0.35:
        contact["categories"]["CONT$MARKETING"] = {"NEWSLETTER": rng.choice(["0", "1"]), "SOURCE": rng.choice(SOURCES)}
    if person.index % 11 == 0:
        # An earlier crmsync run left a verdict that no longer holds: crmsync owns it and corrects it.
        contact["categories"]["CONT$CRMSYNC"] = {"SEGMENTS": "friends", "LOYALTY_TIER": "gold"}
    return contact


def _opportunities(person: Person, contact_key: int, numbered: int) -> list[dict[str, Any]]:
    rng = person.rng("efficy-opportunities")
    found = []
    for offset, (placed, amount, status) in enumerate(person.purchases.get("efficy", [])):
        found.append(
            {
                "K_OPPORTUNITY": OPPORTUNITY_BASE + numbered + offset,
                "NAME": f"Offerte {placed:%Y}-{numbered + offset:04d}",
                "K_CONTACT": contact_key,
                "AMOUNT": float(amount),
                "CURRENCY": "EUR",
                "STATUS": STATUS[status],
                "D_CREATE": _efficy(placed - timedelta(days=rng.randrange(1, 21))),
                "D_CLOSE": _efficy(placed),
                "D_CHANGE": _efficy(placed + timedelta(hours=rng.randrange(1, 48))),
            }
        )
    return found
