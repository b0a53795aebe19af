"""Column-wise traits and RFM, against expectations computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np

from mapping.model import Order
from mapping.traits import DAY, OrderColumns, order_columns, quintile, rfm_scores, to_base_cents, trait_columns

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SYSTEMS = ("crm", "shop")
CHANNELS = ("offline", "online")


def columns(rows: list[tuple[int, int, int, float, bool]]) -> OrderColumns:
    """(profile, system, cents, days ago, counts) per order."""
    stamp = int(NOW.timestamp())
    return OrderColumns(
        profile=np.array([r[0] for r in rows], dtype=np.int64),
        system=np.array([r[1] for r in rows], dtype=np.int64),
        cents=np.array([r[2] for r in rows], dtype=np.int64),
        created=np.array([stamp - int(r[3] * DAY) for r in rows], dtype=np.int64),
        counts=np.array([r[4] for r in rows], dtype=np.bool_),
    )


def test_traits_per_profile_by_hand() -> None:
    orders = columns(
        [
            (0, 1, 10_000, 10, True),  # 100.00 online, 10 days ago
            (0, 0, 5_000, 400, True),  # 50.00 offline, 400 days ago: not in the last 12 months
            (0, 1, 99_900, 5, False),  # cancelled: never counts
            (0, 1, 7_000, -3, True),  # dated after now: has not happened yet
            (1, 0, 2_500, 365, True),  # exactly 365 days ago: still inside the 12 months
            (1, 1, 2_500, 365, True),  # same second, other system: the latest order's system is the higher index
        ]
    )
    t = trait_columns(orders, 3, NOW, CHANNELS)
    assert t.order_count.tolist() == [2, 2, 0]
    assert t.revenue_cents.tolist() == [15_000, 5_000, 0]
    assert t.spend_12m_cents.tolist() == [10_000, 5_000, 0]
    assert t.orders_12m.tolist() == [1, 2, 0]
    assert t.aov_cents.tolist() == [7_500, 2_500, 0]
    assert t.days_since_last_order[:2].tolist() == [10, 365] and np.isnan(t.days_since_last_order[2])
    assert t.tenure_days[:2].tolist() == [400, 365] and np.isnan(t.tenure_days[2])
    assert t.first_order[0] == (NOW - timedelta(days=400)).timestamp()
    assert t.last_order[0] == (NOW - timedelta(days=10)).timestamp()
    assert (t.online_orders.tolist(), t.offline_orders.tolist()) == ([1, 1, 0], [1, 1, 0])
    assert t.order_systems.tolist() == [0b11, 0b11, 0]
    assert t.last_order_system.tolist() == [1, 1, -1]
    assert t.has_orders.tolist() == [True, True, False]


def test_days_are_whole_days_rounded_down() -> None:
    t = trait_columns(columns([(0, 0, 100, 30.99, True), (1, 0, 100, 31.0, True)]), 2, NOW, CHANNELS)
    assert t.days_since_last_order.tolist() == [30, 31]


def test_currency_conversion_to_cents_and_missing_rates() -> None:
    amounts = np.array([10.0, 10.0, 12.5, 19.99, 3.0])
    currencies = np.array(["EUR", "USD", "GBP", "", "JPY"], dtype=object)
    cents, known = to_base_cents(amounts, currencies, "EUR", {"USD": Decimal("0.92"), "GBP": Decimal("1.17")})
    # 10 USD = 9.20 EUR; 12.50 GBP = 14.625 -> 14.62 (half to even on the cent); no currency = base
    assert cents[:4].tolist() == [1000, 920, 1462, 1999]
    assert known.tolist() == [True, True, True, True, False]


def test_order_columns_from_order_objects_count_unconverted() -> None:
    at = NOW - timedelta(days=1)
    orders = [
        (0, Order("shop", "1", "c", None, Decimal("10.00"), "EUR", at)),
        (0, Order("crm", "2", "c", None, Decimal("10.00"), "USD", at)),
        (1, Order("crm", "3", "c", None, Decimal("10.00"), "CHF", at)),
        (1, Order("crm", "4", "c", None, Decimal("10.00"), "CHF", at, counts=False)),
    ]
    built, unconverted = order_columns(orders, SYSTEMS, "EUR", {"USD": Decimal("0.5")})
    assert unconverted == 1  # the cancelled CHF order would not have counted anyway
    assert built.cents.tolist()[:2] == [1000, 500]
    assert built.counts.tolist() == [True, True, False, False]
    assert built.system.tolist() == [1, 0, 0, 0]


def test_quintiles_of_distinct_values() -> None:
    # 1 + floor(5 x below / n) with n = 10: two customers per score
    values = np.arange(1, 11)
    assert quintile(values, np.ones(10, dtype=bool)).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_quintile_ties_share_the_lowest_rank() -> None:
    values = np.array([1, 1, 1, 1, 1, 1, 2, 3, 4, 5])
    # six customers tie at the bottom (0 below: 1); 2 has 6 below: 1 + 30 // 10 = 4; 3: 1 + 35 // 10 = 4
    assert quintile(values, np.ones(10, dtype=bool)).tolist() == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]
    everyone_equal = np.full(7, 3)
    assert set(quintile(everyone_equal, np.ones(7, dtype=bool)).tolist()) == {1}


def test_rfm_by_hand_with_customers_without_orders() -> None:
    days = np.array([0, 1, 2, 3, 4, np.nan])  # the last customer never ordered
    counts = np.array([1, 1, 2, 5, 9, 0])
    revenue = np.array([100, 500, 300, 300, 900, 0])
    r, f, m = rfm_scores(days, counts, revenue)
    # n = 5 customers with orders; score = 1 + (5 x below) // 5 = 1 + below
    assert r.tolist() == [5, 4, 3, 2, 1, 0]  # most recent is best
    assert f.tolist() == [1, 1, 3, 4, 5, 0]  # the two single-order customers tie at the bottom
    assert m.tolist() == [1, 4, 2, 2, 5, 0]  # the two 300s tie: one customer below them
    assert r[5] == f[5] == m[5] == 0  # outside RFM


def test_rfm_is_the_same_in_any_order() -> None:
    rng = np.random.default_rng(1)
    days = rng.integers(0, 50, 200).astype(float)
    counts = rng.integers(0, 6, 200)
    revenue = rng.integers(0, 10, 200) * 1000
    days[counts == 0] = np.nan
    order = rng.permutation(200)
    base = rfm_scores(days, counts, revenue)
    shuffled = rfm_scores(days[order], counts[order], revenue[order])
    for a, b in zip(base, shuffled, strict=True):
        assert a[order].tolist() == b.tolist()
