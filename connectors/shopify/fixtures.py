"""Synthetic Shopify customers and orders (GraphQL node shape of Admin API 2026-10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.sandbox.people import HUMAN_TAGS, Person, display_case


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def demo_fixtures(persons: list[Person]) -> dict[str, Any]:
    customers, orders = [], []
    order_number = 1000
    for person in persons:
        if "shopify" not in person.systems:
            continue
        rng = person.rng("shopify")
        gid = f"gid://shopify/Customer/{person.shop_id('shopify')}"
        history = person.purchases.get("shopify", [])
        created = (history[0][0] if history else datetime.now(UTC)) - timedelta(days=rng.randrange(1, 60))
        tags = sorted(rng.sample(HUMAN_TAGS, rng.choice([0, 0, 1, 2])))
        if person.index % 17 == 0:
            tags.append("crmsync:old-segment")  # left behind by an earlier crmsync: must go
        both = len(person.systems) > 1
        customers.append(
            {
                "id": gid,
                "firstName": person.first_name,
                "lastName": person.last_name,
                "defaultEmailAddress": {
                    "emailAddress": display_case(person.email) if both else person.email,
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
