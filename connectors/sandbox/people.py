"""Synthetic Dutch people for the sandboxes: who they are, which systems know them, what they
bought. Seeded per person, so the same seed gives the same people whichever vendors exist.

Each vendor's `fixtures.py` turns these people into records in the vendor's own shape; the demo
and `crmsync sandbox` put every registered vendor's fixtures together.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from faker import Faker

from connectors.registry import vendor

SEED = 20261125
PEOPLE = 300
HUMAN_TAGS = ("vip", "nieuwsbrief", "zakelijk", "retour-klant", "Black Friday 2025")

# Where people shop and are kept: each vendor declares the weight of its system as the first one a
# person is in (`Vendor.people_weight`). Every person is in one system, 30 % are in a second one
# too and 10 % in a third (same email, often typed differently); every fourth person is in the
# first shop and one other system (see `people`). A web shop's customer numbers start at its
# `Vendor.shop_id_base`, so a CRM can store "the webshop customer number" of a person.

Purchase = tuple[datetime, Decimal, str]  # when, amount in EUR, "paid" | "cancelled" | "refunded"


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
    systems: tuple[str, ...]
    purchases: dict[str, list[Purchase]] = field(default_factory=dict)

    def shop_id(self, shop_type: str) -> int:
        """This person's customer number in a web shop of the given type."""
        base = vendor(shop_type).shop_id_base
        if base is None:
            raise ValueError(f"{shop_type} declares no shop_id_base")
        return base + self.index

    def rng(self, salt: str) -> random.Random:
        """Randomness for one vendor's view of this person, independent of every other vendor."""
        return random.Random(f"{self.index}/{salt}")


def slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", plain.lower())


def display_case(email: str) -> str:
    """The same address as a person might type it elsewhere: `Jan.Jansen@Gmail.com`."""
    local, _, domain = email.partition("@")
    return ".".join(part.capitalize() for part in local.split(".")) + "@" + domain.capitalize()


def mobile(rng: random.Random) -> str:
    digits = f"{rng.randrange(10_000_000, 99_999_999)}"
    style = rng.randrange(4)
    if style == 0:
        return f"06-{digits}"
    if style == 1:
        return f"06{digits}"
    if style == 2:
        return f"+31 6 {digits[:4]} {digits[4:]}"
    return f"+316{digits}"


def people(
    systems: tuple[str, ...], count: int = PEOPLE, seed: int = SEED, today: datetime | None = None
) -> list[Person]:
    """`count` persons spread over `systems` (in registry order), with purchases in each."""
    weights = [vendor(s).people_weight for s in systems]
    anchor = (today or datetime.now(UTC)).replace(hour=12, minute=0, second=0, microsecond=0)
    fake = Faker("nl_NL")
    out = []
    for index in range(count):
        rng = random.Random(seed * 1_000_003 + index)
        fake.seed_instance(seed * 1_000_003 + index)
        first, last = fake.first_name(), fake.last_name()
        if index % 4 == 0 and len(systems) > 1:
            # Every fourth person is in the first shop and one other system, turning through all of
            # them, so the first shop shares people with every other system at any size.
            chosen = [systems[0], systems[1 + (index // 4) % (len(systems) - 1)]]
        elif index % 8 == 2 and len(systems) > 2:
            # ... and every eighth, two neighbouring systems further down the list.
            turn = 1 + (index // 8) % (len(systems) - 1)
            chosen = [systems[turn], systems[turn + 1 if turn + 1 < len(systems) else 1]]
        else:
            chosen = [rng.choices(systems, weights)[0]]
            for chance in (0.3, 0.1):
                if rng.random() < chance and len(chosen) < len(systems):
                    chosen.append(rng.choice([s for s in systems if s not in chosen]))
        person = Person(
            index=index,
            first_name=first,
            last_name=last,
            email=f"{slug(first)}.{slug(last)}{index}@{fake.free_email_domain()}",
            mobile=mobile(rng),
            street=fake.street_address(),
            postcode=fake.postcode(),
            city=fake.city(),
            systems=tuple(s for s in systems if s in chosen),
        )
        for system in person.systems:
            # Most customers buy a few times; some never; a few are regulars with many orders.
            n = rng.choices([0, 1, 2, 3, 5, 9], weights=[15, 30, 20, 15, 12, 8])[0]
            purchases = []
            for _ in range(n):
                placed = anchor - timedelta(days=rng.randrange(1, 720), minutes=rng.randrange(0, 1440))
                # Web-shop baskets: a median around 45 euro, a long tail of big orders.
                amount = Decimal(str(round(min(900.0, rng.lognormvariate(3.8, 0.6)), 2)))
                status = rng.choices(["paid", "cancelled", "refunded"], weights=[90, 6, 4])[0]
                purchases.append((placed, amount, status))
            person.purchases[system] = sorted(purchases)
        out.append(person)
    return out
