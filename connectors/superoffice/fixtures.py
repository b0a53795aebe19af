"""Synthetic SuperOffice persons (PersonEntity shape) and sales (SaleEntity shape).

What people keep on the card and crmsync must leave alone: the webshop customer number, notes, the
newsletter checkbox, the ERP debtor number and a loyalty-card extra field, and interests ticked by
sales staff. A few persons still carry a stale `crmsync:` interest or an old value in crmsync's
segments UDF, left by an earlier run: those crmsync owns and corrects.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.sandbox.people import Person, display_case

PERSON_ID_BASE = 10_000
SALE_ID_BASE = 70_000
HUMAN_INTERESTS = ("Nieuwsbrief", "Beurzen", "Productnieuws", "Zakelijk")
COMPANIES = ("Bakkerij De Korenschoof", "Installatiebedrijf Smit", "Fietsenmaker Van Dijk", "Kantoorhuis Noord")
NOTES = ("Belt liever na 17:00", "Vaste klant beurs Utrecht", "Wil offerte per mail")
STATUS = {"paid": "Sold", "cancelled": "Lost", "refunded": "Lost"}


def _so(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _custom_fields(person: Person, rng: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    if "shopify" in person.systems:
        fields["SuperOffice:1"] = str(person.shop_id("shopify"))
    elif "woocommerce" in person.systems:
        fields["SuperOffice:1"] = str(person.shop_id("woocommerce"))
    if rng.random() < 0.3:
        fields["SuperOffice:2"] = rng.choice(NOTES)
    fields["SuperOffice:3"] = rng.choice(["[I:0]", "[I:1]"])
    if rng.random() < 0.5:
        fields["SuperOffice:5"] = f"D{20000 + person.index}"
    if rng.random() < 0.25:
        fields["x_klantkaart"] = f"KK-{rng.randrange(100000, 999999)}"
    if person.index % 19 == 0:
        fields["SuperOffice:8"] = "old-segment"  # left by an earlier crmsync: it is crmsync's to correct
    return fields


def _interests(person: Person, rng: Any) -> list[dict[str, Any]]:
    chosen = rng.sample(HUMAN_INTERESTS, rng.choice([0, 0, 1, 2]))
    items = [{"Name": name, "Selected": True} for name in sorted(chosen)]
    if person.index % 17 == 0:
        items.append({"Name": "crmsync:old-segment", "Selected": True})
    return items


def demo_fixtures(persons: list[Person]) -> dict[str, Any]:
    customers, orders = [], []
    sale_id = SALE_ID_BASE
    for person in persons:
        if "superoffice" not in person.systems:
            continue
        rng = person.rng("superoffice")
        person_id = PERSON_ID_BASE + person.index
        history = person.purchases.get("superoffice", [])
        created = (history[0][0] if history else datetime.now(UTC)) - timedelta(days=rng.randrange(1, 90))
        company = rng.choice(COMPANIES) if rng.random() < 0.35 else None
        contact = {"ContactId": 500 + COMPANIES.index(company), "Name": company} if company else None
        both = len(person.systems) > 1
        customers.append(
            {
                "PersonId": person_id,
                "Firstname": person.first_name,
                "MiddleName": "",
                "Lastname": person.last_name,
                "Emails": [{"Value": display_case(person.email) if both else person.email, "Description": ""}],
                "MobilePhones": [{"Value": person.mobile, "Description": ""}] if rng.random() < 0.7 else [],
                "Contact": contact,
                "Country": {
                    "CountryId": 528,
                    "Name": "Nederland",
                    "EnglishName": "Netherlands",
                    "TwoLetterISOCountry": "NL",
                },
                "Interests": _interests(person, rng),
                "CustomFields": _custom_fields(person, rng),
                "CreatedDate": _so(created),
                "UpdatedDate": _so(history[-1][0] if history else created),
            }
        )
        for placed, amount, status in history:
            sale_id += 1
            orders.append(_sale(sale_id, person_id, contact, placed, f"{amount:.2f}", STATUS[status]))
        if rng.random() < 0.2:
            # An opportunity still open: known to sales, not yet revenue.
            sale_id += 1
            orders.append(_sale(sale_id, person_id, contact, created + timedelta(days=3), "1250.00", "Open"))
    return {"customers": customers, "orders": orders}


def _sale(
    sale_id: int, person_id: int, contact: dict[str, Any] | None, placed: datetime, amount: str, status: str
) -> dict[str, Any]:
    return {
        "SaleId": sale_id,
        "Heading": f"Order {sale_id}",
        "Number": str(sale_id),
        "Amount": float(amount),
        "Currency": {"Id": 1, "Value": "EUR"},
        "Status": status,
        "Saledate": _so(placed),
        "Person": {"PersonId": person_id},
        "Contact": {"ContactId": contact["ContactId"]} if contact else None,
        "CreatedDate": _so(placed),
        "UpdatedDate": _so(placed + timedelta(hours=2)),
    }
