"""Demo people as Acme customers and orders."""

from __future__ import annotations

from typing import Any

from connectors.sandbox.people import Person


def demo_fixtures(persons: list[Person]) -> dict[str, Any]:
    customers, orders = [], []
    for person in (p for p in persons if "acme" in p.systems):
        number = person.shop_id("acme")
        customers.append(
            {"id": number, "email": person.email, "first_name": person.first_name, "last_name": person.last_name}
        )
        for placed, amount, status in person.purchases.get("acme", []):
            orders.append(
                {
                    "id": len(orders) + 1,
                    "customer_id": number,
                    "total": str(amount),
                    "currency": "EUR",
                    "created_at": placed.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "status": status,
                }
            )
    return {"customers": customers, "orders": orders}
