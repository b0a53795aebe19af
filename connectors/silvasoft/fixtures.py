"""Synthetic Silvasoft relations and sales invoices, in the shape `listrelations` and
`listsalesinvoices` answer with.

Web-shop customers keep the shop's customer number as their Silvasoft customer number (what the
Silvasoft shop plugins do); the rest are numbered from 10000. Some relations are businesses with a
KvK and VAT number, some are suppliers too: data crmsync reads and never touches. Invoices are
numbered in date order, so the newest number is the newest invoice; refunded purchases are
credited invoices and cancelled ones cancelled, neither of which counts toward a customer's value.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.sandbox.people import Person, display_case

SHOPS = ("woocommerce", "shopify", "lightspeed")
STATUSES = {"paid": "Paid", "cancelled": "Cancelled", "refunded": "Credited"}
VAT = Decimal("1.21")


def customer_number(person: Person) -> int:
    shop = next((s for s in SHOPS if s in person.systems), None)
    # Above every web shop's numbers (WooCommerce's start at 1,000), so no two people share one
    # however many the demo makes.
    return person.shop_id(shop) if shop else 90_000_000 + person.index


def _relation(person: Person) -> dict[str, Any]:
    rng = person.rng("silvasoft")
    history = person.purchases.get("silvasoft", [])
    created = (history[0][0] if history else datetime.now(UTC)) - timedelta(days=rng.randrange(1, 90))
    email = display_case(person.email) if len(person.systems) > 1 else person.email
    phone = person.mobile if rng.random() < 0.7 else ""
    contact = {"FirstName": person.first_name, "LastName": person.last_name, "Email": email, "Phone": phone}
    if rng.random() < 0.5:
        contact["Sex"] = rng.choice(["Man", "Woman"])
    relation: dict[str, Any] = {
        "RelationGUID": 7_300_000_000 + person.index * 37,
        "CustomerNumber": customer_number(person),
        "SupplierNumber": 0,
        "Name": f"{person.first_name} {person.last_name}",
        "Email": email,
        "Phone": phone,
        "IsCustomer": True,
        "IsSupplier": False,
        "IsOther": False,
        "Address_Street": person.street,
        "Address_PostalCode": person.postcode,
        "Address_City": person.city,
        "Address_CountryCode": "NL",
        "Relation_Contact": [contact],
        "createdOn": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if rng.random() < 0.15:
        # A one-person business: the merchant keeps its KvK and VAT number.
        relation["Name"] = f"{person.last_name} Advies"
        relation["RegistrationNumber"] = f"{rng.randrange(10_000_000, 99_999_999)}"
        relation["TaxIdentificationNumber"] = f"{rng.randrange(100_000_000, 999_999_999)}B01"
    if rng.random() < 0.05:
        relation["SupplierNumber"] = 40_000 + person.index
        relation["IsSupplier"] = True
    return relation


def _invoice(number: int, person: Person, placed: datetime, amount: Decimal, status: str) -> dict[str, Any]:
    excl = (amount / VAT).quantize(Decimal("0.01"))
    return {
        "InvoiceNumber": number,
        "InvoiceDate": placed.strftime("%d-%m-%Y"),
        "CustomerNumber": customer_number(person),
        "CustomerName": f"{person.first_name} {person.last_name}",
        "CustomerEmail": person.email,
        "TotalAmountExclTax": float(excl),
        "TotalTax": float(amount - excl),
        "TotalAmountInclTax": float(amount),
        "Currency": "EUR",
        "InvoiceStatus": STATUSES[status],
        "InvoiceReference": f"Bestelling {number - 20_250_000}",
        "Invoice_InvoiceLine": [
            {
                "ProductNumber": "ART-001",
                "Description": "Bestelling",
                "Quantity": 1,
                "UnitPriceExclTax": float(excl),
                "TaxPc": 21,
                "SubTotalInclTax": float(amount),
            }
        ],
    }


def demo_fixtures(persons: list[Person]) -> dict[str, Any]:
    customers = [_relation(p) for p in persons if "silvasoft" in p.systems]
    # Invoice numbers follow the invoice dates, as they do in a real administration.
    purchases = sorted(
        ((placed, person.index, k), person, amount, status)
        for person in persons
        if "silvasoft" in person.systems
        for k, (placed, amount, status) in enumerate(person.purchases.get("silvasoft", []))
    )
    orders = [
        _invoice(20_250_001 + n, person, key[0], amount, status)
        for n, (key, person, amount, status) in enumerate(purchases)
    ]
    return {"customers": customers, "orders": orders}
