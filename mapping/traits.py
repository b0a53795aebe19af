"""Order traits per profile: count, revenue, 12-month spend, first and last order, recency,
tenure, average order value, channel mix and RFM scores.

`order_traits` is the one-profile form (for `explain` and tests); `trait_columns` computes the same
for the whole customer base at once, column-wise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from mapping.calendar_days import AS_BEFORE, Calendar
from mapping.model import Order, Traits

YEAR = timedelta(days=365)


def to_base(amount: Decimal, currency: str, base: str, rates: Mapping[str, Decimal]) -> Decimal | None:
    """The amount in the base currency; None when no rate is configured for `currency`.
    An order without a currency is taken to be in the shop's (base) currency."""
    if not currency or currency == base:
        return amount
    rate = rates.get(currency)
    return None if rate is None else amount * rate


def order_traits(
    orders: Iterable[Order],
    now: datetime,
    base: str,
    rates: Mapping[str, Decimal],
    calendar: Calendar = AS_BEFORE,
) -> tuple[Traits, int]:
    """Traits over the orders that count, and how many were left out for want of an exchange rate.
    The 12 months are 365 days on `calendar` (`trait_columns`)."""
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
        recent = (
            calendar.days_since(now, order.created_at) <= YEAR.days
            if calendar.local
            else now - order.created_at <= YEAR
        )
        if recent:
            spend_12m += amount
        first = order.created_at if first is None or order.created_at < first else first
        last = order.created_at if last is None or order.created_at > last else last
    return Traits(count, revenue, spend_12m, first, last), unconverted


# ----- column-wise traits for the whole customer base ------------------------------------------------
#
# One Python object per order does not scale to millions of orders, so the cycle computes traits
# over columns: one numpy array per attribute, one row per order or per profile. Money is counted
# in integer cents of the base currency (each order rounded once, on conversion), so sums are exact
# and the same in any input order; times are whole seconds since the epoch.

DAY = 86_400
YEAR_SECONDS = 365 * DAY
NO_TIME = np.iinfo(np.int64).min
ONLINE, OFFLINE = "online", "offline"
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int8]
BOOL = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class OrderColumns:
    """Orders as columns. `profile` indexes the profile list; `system` indexes `systems`."""

    profile: I64
    system: I64
    cents: I64  # in the base currency
    created: I64  # epoch seconds
    counts: BOOL  # False: cancelled, refunded, test, or no exchange rate

    @property
    def size(self) -> int:
        return int(self.profile.shape[0])

    def take(self, order: npt.NDArray[np.intp]) -> OrderColumns:
        return OrderColumns(
            self.profile[order], self.system[order], self.cents[order], self.created[order], self.counts[order]
        )


def to_base_cents(
    amounts: F64, currencies: npt.NDArray[Any], base: str, rates: Mapping[str, Decimal]
) -> tuple[I64, BOOL]:
    """Amounts (in their own currency) as integer cents of the base currency, and which could be
    converted: an order in a currency without a configured rate cannot count. An empty currency is
    the shop's own (base) currency."""
    codes, inverse = np.unique(currencies, return_inverse=True)
    factor = np.array(
        [1.0 if (not code or code == base) else float(rates.get(str(code), "nan")) for code in codes.tolist()],
        dtype=np.float64,
    )
    per_order = factor[inverse.reshape(-1)] if len(codes) else np.ones(amounts.shape[0])
    known = ~np.isnan(per_order)
    cents = np.rint(np.rint(amounts * 100.0) * np.where(known, per_order, 0.0)).astype(np.int64)
    return cents, known


def order_columns(
    rows: Sequence[tuple[int, Order]],
    systems: Sequence[str],
    base: str,
    rates: Mapping[str, Decimal],
) -> tuple[OrderColumns, int]:
    """Columns from (profile index, Order) pairs, and how many orders lacked an exchange rate.
    The pipeline's bridge from Order objects; the state store can fill the columns directly."""
    index = {name: i for i, name in enumerate(systems)}
    n = len(rows)
    profile = np.fromiter((p for p, _ in rows), dtype=np.int64, count=n)
    system = np.fromiter((index[o.system] for _, o in rows), dtype=np.int64, count=n)
    amounts = np.fromiter((float(o.amount) for _, o in rows), dtype=np.float64, count=n)
    currencies = np.array([o.currency or "" for _, o in rows], dtype=object)
    created = np.fromiter((int(o.created_at.timestamp()) for _, o in rows), dtype=np.int64, count=n)
    counts = np.fromiter((o.counts for _, o in rows), dtype=np.bool_, count=n)
    cents, known = to_base_cents(amounts, currencies, base, rates) if n else (np.zeros(0, np.int64), counts)
    unconverted = int(np.count_nonzero(counts & ~known))
    return OrderColumns(profile, system, cents, created, counts & known), unconverted


def empty_order_columns() -> OrderColumns:
    none = np.zeros(0, np.int64)
    return OrderColumns(none, none, none, none, np.zeros(0, np.bool_))


@dataclass(frozen=True)
class TraitColumns:
    """Traits of every profile, one array element per profile. Missing values (a profile without
    orders has no last order) are NaN in float columns and 0 in counts; RFM scores are 0 outside RFM."""

    order_count: I64
    revenue_cents: I64
    spend_12m_cents: I64
    orders_12m: I64
    aov_cents: I64
    first_order: F64  # epoch seconds, NaN without orders
    last_order: F64
    days_since_last_order: F64
    tenure_days: F64  # days since the first order
    online_orders: I64
    offline_orders: I64
    order_systems: I64  # bit i set: orders in systems[i]
    last_order_system: I64  # index into systems, -1 without orders
    r: I8
    f: I8
    m: I8

    @property
    def size(self) -> int:
        return int(self.order_count.shape[0])

    @property
    def has_orders(self) -> BOOL:
        return self.order_count > 0

    def rows(self, which: slice | npt.NDArray[np.int64]) -> TraitColumns:
        """The same columns for the profiles in `which` (a slice gives views, positions copies)."""
        return TraitColumns(**{f.name: getattr(self, f.name)[which] for f in dataclasses.fields(self)})


def trait_columns(
    orders: OrderColumns,
    profiles: int,
    now: datetime,
    channels: Sequence[str] = (),
    calendar: Calendar = AS_BEFORE,
) -> TraitColumns:
    """Traits over the orders that count and are not dated after `now`. `channels[i]` says
    whether system i is an online shop or an offline (CRM, invoicing) source. Day counts and the
    12 months (365 days) are read on `calendar`: with a zone, local calendar days (an order of
    23:59 is a day old at 00:00, and the 365th day before today counts whole)."""
    stamp = int(now.timestamp())
    valid = orders.counts & (orders.created <= stamp)
    profile = orders.profile[valid]
    cents = orders.cents[valid]
    created = orders.created[valid]
    system = orders.system[valid]
    # Sums of integers are exact in float64 below 2**53 cents, so bincount's order does not matter.
    count = np.bincount(profile, minlength=profiles).astype(np.int64)
    revenue = np.rint(np.bincount(profile, weights=cents, minlength=profiles)).astype(np.int64)
    # On the merchant's calendar one comparison with the first moment of the 365th day before
    # today; without a zone 365 days to the second, as always.
    recent = calendar.within(stamp, created, YEAR.days) if calendar.local else stamp - created <= YEAR_SECONDS
    spend = np.rint(np.bincount(profile[recent], weights=cents[recent], minlength=profiles)).astype(np.int64)
    orders_12m = np.bincount(profile[recent], minlength=profiles).astype(np.int64)
    first = np.full(profiles, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(profiles, NO_TIME, dtype=np.int64)
    np.minimum.at(first, profile, created)
    np.maximum.at(last, profile, created)
    has = count > 0
    first_f = np.where(has, first, 0).astype(np.float64)
    last_f = np.where(has, last, 0).astype(np.float64)
    first_f[~has] = np.nan
    last_f[~has] = np.nan
    # Whole days: local midnights passed with a zone; without one 24-hour periods rounded down,
    # as `(now - last).days` does.
    since = calendar.days_between(stamp, last_f)
    tenure = calendar.days_between(stamp, first_f)
    aov = np.zeros(profiles, dtype=np.int64)
    aov[has] = np.rint(revenue[has] / count[has]).astype(np.int64)
    online_mask = np.array([c == ONLINE for c in channels], dtype=np.bool_)
    is_online = online_mask[system] if len(channels) else np.ones(system.shape[0], dtype=np.bool_)
    online = np.bincount(profile[is_online], minlength=profiles).astype(np.int64)
    offline = count - online
    bits = np.zeros(profiles, dtype=np.int64)
    np.bitwise_or.at(bits, profile, np.left_shift(np.int64(1), system))
    # The system of the latest order; of several at the same second, the highest index (any
    # fixed choice keeps the result independent of input order).
    latest = created == last[profile]
    last_system = np.full(profiles, -1, dtype=np.int64)
    np.maximum.at(last_system, profile[latest], system[latest])
    r, f, m = rfm_scores(since, count, revenue)
    return TraitColumns(
        order_count=count,
        revenue_cents=revenue,
        spend_12m_cents=spend,
        orders_12m=orders_12m,
        aov_cents=aov,
        first_order=first_f,
        last_order=last_f,
        days_since_last_order=since,
        tenure_days=tenure,
        online_orders=online,
        offline_orders=offline,
        order_systems=bits,
        last_order_system=last_system,
        r=r,
        f=f,
        m=m,
    )


def quintile(values: npt.NDArray[Any], eligible: BOOL) -> I8:
    """Scores 1-5 among the eligible: 1 + floor(5 x (eligible values strictly below) / eligible).

    Equal values always share a score (the one of their lowest rank), so the result does not depend
    on input order; a tie straddling a quintile edge takes the lower quintile. Ineligible: 0."""
    out = np.zeros(values.shape[0], dtype=np.int8)
    pool = values[eligible]
    n = pool.shape[0]
    if n == 0:
        return out
    below = np.searchsorted(np.sort(pool, kind="stable"), pool, side="left")
    out[eligible] = (1 + (5 * below) // n).astype(np.int8)
    return out


def rfm_scores(days_since_last: F64, order_count: I64, revenue_cents: I64) -> tuple[I8, I8, I8]:
    """Recency, frequency and monetary quintiles over the customers with orders (5 = best: the most
    recent, the most orders, the highest revenue). Customers without orders are outside RFM (0)."""
    eligible = order_count > 0
    recency = np.where(eligible, -np.nan_to_num(days_since_last, nan=0.0), 0.0)
    return quintile(recency, eligible), quintile(order_count, eligible), quintile(revenue_cents, eligible)
