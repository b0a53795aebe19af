"""Synthetic WooCommerce customers and orders (REST v3 shape), guests included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.sandbox.people import Person


def _wc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def demo_fixtures(persons: list[Person]) -> dict[str, Any]:
    customers, orders = [], []
    order_id = 100
    for person in persons:
        if "woocommerce" not in person.systems:
            continue
        rng = person.rng("woocommerce")
        history = person.purchases.get("woocommerce", [])
        # One in eight buys as a guest: no account, only the email on the order links them.
        guest = rng.random() < 0.125 and len(person.systems) > 1
        customer_id = 0 if guest else person.shop_id("woocommerce")
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
                    "refunds": (
                        [{"id": order_id + 1_000_000, "reason": "", "total": f"-{amount:.2f}"}]
                        if status == "refunded"
                        else []
                    ),
                }
            )
    return {"customers": customers, "orders": orders}
