"""Synthetic AFAS Profit persons and sales invoices: rows of the persons and invoices GetConnectors
(`Profit_CRM_Persons`, `Profit_CRM_SalesInvoices`), dates as Profit writes them (Amsterdam wall
time, fake `Z`), nulls for empty fields.

People who also shop in the Shopify store carry their Shopify customer number in the free field
"Webshop klantnummer" (a sales employee typed it in), so a `links = { shopify = "Webshop_klantnummer" }`
setting can join them without relying on the email. Hand-set free fields ("Voorkeurswinkel") and
organisation columns belong to people and must survive every sync untouched.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.afas.profit_time import format_profit, utc_to_wall
from connectors.sandbox.people import Person, display_case

FIRST_PERSON_CODE = 100_001
FIRST_INVOICE = 25_000_001
FIRST_DEBTOR = 20_001
TUSSENVOEGSELS = frozenset({"van", "de", "der", "den", "het", "ten", "ter", "te", "in", "op", "'t", "vd"})
ORGANISATIONS = ("Bakkerij De Korenschoof", "Van Dijk Installatietechniek", "Stichting Buurtwerk", "Atelier Noord")
STORES = ("Amsterdam", "Utrecht", "Zwolle", "webwinkel")
_HOUSE = re.compile(r"^(?P<street>.*?)\s+(?P<number>\d+)\s*(?P<add>\S*)$")


def _profit(moment: datetime) -> str:
    return format_profit(utc_to_wall(moment).replace(microsecond=0))


def split_last_name(last_name: str) -> tuple[str | None, str]:
    """("van der", "Berg") from "van der Berg": Profit keeps the prefix in its own field."""
    words = last_name.split()
    prefix = []
    while len(words) > 1 and words[0].lower() in TUSSENVOEGSELS:
        prefix.append(words.pop(0))
    return (" ".join(prefix) or None), " ".join(words)


def _address(street_address: str) -> dict[str, Any]:
    match = _HOUSE.match(street_address)
    if match is None:
        return {"Street": street_address, "HouseNumber": None, "HouseNumberAdd": None}
    return {
        "Street": match["street"],
        "HouseNumber": int(match["number"]),
        "HouseNumberAdd": match["add"] or None,
    }


def demo_fixtures(persons: list[Person]) -> dict[str, Any]:
    customers: list[dict[str, Any]] = []
    invoices: list[dict[str, Any]] = []
    code, debtor, invoice = FIRST_PERSON_CODE, FIRST_DEBTOR, FIRST_INVOICE
    for person in persons:
        if "afas" not in person.systems:
            continue
        history = person.purchases.get("afas", [])
        debtor_id = str(debtor) if history else None
        debtor += 1 if history else 0
        customers.append(_person_row(person, str(code), debtor_id))
        for placed, amount, status in history:
            if status == "cancelled":
                continue  # a cancelled order is never invoiced
            invoices.append(_invoice(str(invoice), str(code), debtor_id, placed, amount, credited=status == "refunded"))
            invoice += 1
        code += 1
    return {"customers": customers, "orders": invoices}


def _person_row(person: Person, code: str, debtor_id: str | None) -> dict[str, Any]:
    rng = person.rng("afas")
    history = person.purchases.get("afas", [])
    created = (history[0][0] if history else datetime.now(UTC)) - timedelta(days=rng.randrange(1, 90))
    modified = max([created, *(placed for placed, _, _ in history)])
    prefix, last_name = split_last_name(person.last_name)
    typed_elsewhere = len(person.systems) > 1 and rng.random() < 0.3
    landline = f"0{rng.randrange(10, 99)}-{rng.randrange(1_000_000, 9_999_999)}" if rng.random() < 0.2 else None
    organisation = rng.choice(ORGANISATIONS) if rng.random() < 0.15 else None
    return {
        "PersonId": code,
        "FirstName": person.first_name,
        "Initials": person.first_name[:1] + ".",
        "Prefix": prefix,
        "LastName": last_name,
        "Email": display_case(person.email) if typed_elsewhere else person.email,
        "Phone": landline,
        "Mobile": person.mobile if rng.random() < 0.8 else None,
        **_address(person.street),
        "ZipCode": person.postcode,
        "City": person.city,
        "CountryId": "NL",
        "OrganisationId": f"O{ORGANISATIONS.index(organisation) + 1:04d}" if organisation else None,
        "OrganisationName": organisation,
        "DebtorId": debtor_id,
        "CreateDate": _profit(created),
        "ModifiedDate": _profit(modified),
        # Left behind by an earlier crmsync run: it must be replaced by the current verdict.
        "crmsync_segments": "old-segment" if rng.random() < 0.08 else None,
        "crmsync_loyalty_tier": None,
        "Webshop_klantnummer": str(person.shop_id("shopify")) if "shopify" in person.systems else None,
        "Voorkeurswinkel": rng.choice(STORES) if rng.random() < 0.3 else None,
    }


def _invoice(
    invoice_id: str, person_code: str, debtor_id: str | None, placed: datetime, amount: Decimal, *, credited: bool
) -> dict[str, Any]:
    return {
        "InvoiceId": invoice_id,
        "InvoiceDate": _profit(placed),
        "DebtorId": debtor_id,
        "PersonId": person_code,
        "OrganisationId": None,
        "AmountExclVat": float(round(amount / Decimal("1.21"), 2)),
        "AmountInclVat": float(amount),
        "Currency": "EUR",
        # A refund is a credit note against the invoice; the invoice then no longer counts.
        "Credited": credited,
        "CreateDate": _profit(placed),
        "ModifiedDate": _profit(placed + (timedelta(days=3) if credited else timedelta(hours=1))),
    }
