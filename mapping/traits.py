"""Order traits per profile: count, revenue, 12-month spend, first and last order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from mapping.model import Order, Traits

YEAR = timedelta(days=365)


def to_base(amount: Decimal, currency: str, base: str, rates: Mapping[str, Decimal]) -> Decimal | None:
    """The amount in the base currency; None when no rate is configured for `currency`.
    An order without a currency is taken to be in the shop's (base) currency."""
    if not currency or currency == base:
        return amount
    rate = rates.get(currency)
    return None if rate is None else amount * rate


def order_traits(orders: Iterable[Order], now: datetime, base: str, rates: Mapping[str, Decimal]) -> tuple[Traits, int]:
    """Traits over the orders that count, and how many were left out for want of an exchange rate."""
    count = 0
    revenue = Decimal(0)
    spend_12m = Decimal(0)
    first: datetime | None = None
    last: datetime | None = None
    unconverted = 0
    for order in orders:
        # An order dated after `now` has not happened yet as far as this computation knows.
        if not order.counts or order.created_at > now:
            continue
        amount = to_base(order.amount, order.currency, base, rates)
        if amount is None:
            unconverted += 1
            continue
        count += 1
        revenue += amount
        if now - order.created_at <= YEAR:
            spend_12m += amount
        first = order.created_at if first is None or order.created_at < first else first
        last = order.created_at if last is None or order.created_at > last else last
    return Traits(count, revenue, spend_12m, first, last), unconverted
