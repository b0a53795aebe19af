"""Synthetic Dutch customers across the sandboxes (seeded, so every run shows the same shop), and
the demo: start the sandboxes, backfill, sync, sync again to show nothing is rewritten.

The data is made to exercise what matters: people who shop in both stores under the same email in
different case, guest orders that only an email links, cancelled and refunded orders that must not
count, tags and meta fields set by people that crmsync must leave alone, and a stale crmsync tag it
must take away.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from faker import Faker

SEED = 20261125
PEOPLE = 300
HUMAN_TAGS = ("vip", "nieuwsbrief", "zakelijk", "retour-klant", "Black Friday 2025")


@dataclass
class Person:
    index: int
    first_name: str
    last_name: str
    email: str
    mobile: str
    street: str
    postcode: str
    city: str
    shops: tuple[str, ...]
    orders: dict[str, list[tuple[datetime, Decimal, str]]] = field(default_factory=dict)


def _slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", plain.lower())


def _mobile(rng: random.Random) -> str:
    digits = f"{rng.randrange(10_000_000, 99_999_999)}"
    style = rng.randrange(4)
    if style == 0:
        return f"06-{digits}"
    if style == 1:
        return f"06{digits}"
    if style == 2:
        return f"+31 6 {digits[:4]} {digits[4:]}"
    return f"+316{digits}"


def people(count: int = PEOPLE, seed: int = SEED, today: datetime | None = None) -> list[Person]:
    """`count` persons; about 40 % shop only at Shopify, 30 % only at WooCommerce, 30 % at both."""
    fake = Faker("nl_NL")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    anchor = (today or datetime.now(UTC)).replace(hour=12, minute=0, second=0, microsecond=0)
    out = []
    for index in range(count):
        first, last = fake.first_name(), fake.last_name()
        roll = rng.random()
        shops = ("shopify",) if roll < 0.4 else ("woocommerce",) if roll < 0.7 else ("shopify", "woocommerce")
        person = Person(
            index=index,
            first_name=first,
            last_name=last,
            email=f"{_slug(first)}.{_slug(last)}{index}@{fake.free_email_domain()}",
            mobile=_mobile(rng),
            street=fake.street_address(),
            postcode=fake.postcode(),
            city=fake.city(),
            shops=shops,
        )
        for shop in shops:
            # Most customers order a few times; some never; a few are regulars with many orders.
            n = rng.choices([0, 1, 2, 3, 5, 9], weights=[15, 30, 20, 15, 12, 8])[0]
            orders = []
            for _ in range(n):
                placed = anchor - timedelta(days=rng.randrange(1, 720), minutes=rng.randrange(0, 1440))
                # Web-shop baskets: a median around 45 euro, a long tail of big orders.
                amount = Decimal(str(round(min(900.0, rng.lognormvariate(3.8, 0.6)), 2)))
                status = rng.choices(["paid", "cancelled", "refunded"], weights=[90, 6, 4])[0]
                orders.append((placed, amount, status))
            person.orders[shop] = sorted(orders)
        out.append(person)
    return out


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _display_case(email: str) -> str:
    """The same address as a person might type it in another shop: `Jan.Jansen@Gmail.com`."""
    local, _, domain = email.partition("@")
    return ".".join(part.capitalize() for part in local.split(".")) + "@" + domain.capitalize()


def shopify_data(persons: list[Person], seed: int = SEED) -> dict[str, Any]:
    rng = random.Random(seed + 1)
    customers, orders = [], []
    order_number = 1000
    for person in persons:
        if "shopify" not in person.shops:
            continue
        gid = f"gid://shopify/Customer/{7_000_000 + person.index}"
        history = person.orders.get("shopify", [])
        created = (history[0][0] if history else datetime.now(UTC)) - timedelta(days=rng.randrange(1, 60))
        tags = sorted(rng.sample(HUMAN_TAGS, rng.choice([0, 0, 1, 2])))
        if person.index % 17 == 0:
            tags.append("crmsync:old-segment")  # left behind by an earlier crmsync: must go
        both = len(person.shops) > 1
        customers.append(
            {
                "id": gid,
                "firstName": person.first_name,
                "lastName": person.last_name,
                "defaultEmailAddress": {
                    "emailAddress": _display_case(person.email) if both else person.email,
                    "marketingState": rng.choice(["SUBSCRIBED", "NOT_SUBSCRIBED"]),
                },
                "defaultPhoneNumber": {"phoneNumber": person.mobile} if rng.random() < 0.7 else None,
                "defaultAddress": {
                    "address1": person.street,
                    "zip": person.postcode,
                    "city": person.city,
                    "country": "Netherlands",
                    "countryCodeV2": "NL",
                },
                "tags": tags,
                "createdAt": _iso(created),
                "updatedAt": _iso(history[-1][0] if history else created),
                "metafields": [
                    {
                        "namespace": "custom",
                        "key": "favourite_store",
                        "type": "single_line_text_field",
                        "value": person.city,
                    }
                ]
                if rng.random() < 0.2
                else [],
            }
        )
        for placed, amount, status in history:
            order_number += 1
            orders.append(
                {
                    "id": f"gid://shopify/Order/{5_000_000 + order_number}",
                    "name": f"#{order_number}",
                    "email": person.email,
                    "createdAt": _iso(placed),
                    "updatedAt": _iso(placed + timedelta(hours=2)),
                    "cancelledAt": _iso(placed + timedelta(hours=1)) if status == "cancelled" else None,
                    "displayFinancialStatus": "REFUNDED" if status == "refunded" else "PAID",
                    "totalPriceSet": {
                        "shopMoney": {"amount": f"{amount:.2f}", "currencyCode": "EUR"},
                        "presentmentMoney": {"amount": f"{amount:.2f}", "currencyCode": "EUR"},
                    },
                    "customer": {"id": gid},
                }
            )
    return {"customers": customers, "orders": orders}


def woocommerce_data(persons: list[Person], seed: int = SEED) -> dict[str, Any]:
    rng = random.Random(seed + 2)
    customers, orders = [], []
    order_id = 100
    for person in persons:
        if "woocommerce" not in person.shops:
            continue
        history = person.orders.get("woocommerce", [])
        # One in eight buys as a guest: no account, only the email on the order links them.
        guest = rng.random() < 0.125 and len(person.shops) > 1
        customer_id = 0 if guest else 1000 + person.index
        created = (history[0][0] if history else datetime.now(UTC)) - timedelta(days=rng.randrange(1, 60))
        billing = {
            "first_name": person.first_name,
            "last_name": person.last_name,
            "address_1": person.street,
            "postcode": person.postcode,
            "city": person.city,
            "country": "NL",
            "email": person.email,
            "phone": person.mobile,
        }
        if not guest:
            meta = [{"key": "newsletter_optin", "value": rng.choice(["yes", "no"])}] if rng.random() < 0.3 else []
            customers.append(
                {
                    "id": customer_id,
                    "email": person.email,
                    "first_name": person.first_name,
                    "last_name": person.last_name,
                    "role": "customer",
                    "username": person.email.split("@")[0],
                    "billing": billing,
                    "shipping": {k: v for k, v in billing.items() if k not in ("email", "phone")},
                    "date_created_gmt": _wc(created),
                    "date_modified_gmt": _wc(history[-1][0] if history else created),
                    "meta_data": meta,
                }
            )
        for placed, amount, status in history:
            order_id += 1
            orders.append(
                {
                    "id": order_id,
                    "status": {"paid": "completed", "cancelled": "cancelled", "refunded": "refunded"}[status],
                    "currency": "EUR",
                    "total": f"{amount:.2f}",
                    "customer_id": customer_id,
                    "billing": billing,
                    "date_created_gmt": _wc(placed),
                    "date_modified_gmt": _wc(placed + timedelta(hours=3)),
                }
            )
    return {"customers": customers, "orders": orders}


def demo_data(count: int = PEOPLE, seed: int = SEED, today: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Vendor-shaped fixtures per sandbox type, for the demo and `crmsync sandbox`."""
    persons = people(count, seed, today)
    return {"shopify": shopify_data(persons, seed), "woocommerce": woocommerce_data(persons, seed)}
