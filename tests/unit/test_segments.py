"""Quadrant, lifecycle and tier boundaries, tier hysteresis over runs, and determinism."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.model import Order, Traits
from mapping.segments import (
    LifecycleWindows,
    QuadrantRules,
    SegmentSettings,
    TierState,
    assess,
    columns_of,
    hold_tiers,
    lifecycle,
    lifecycle_codes,
    quadrant,
    quadrant_codes,
    unique_rows,
)
from mapping.traits import order_columns, trait_columns
from sync.segmenting import trait_json

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def traits(
    count: int, revenue: str, last_days: float | None, first_days: float | None = None, spend: str = "0"
) -> Traits:
    last = NOW - timedelta(days=last_days) if last_days is not None else None
    first = NOW - timedelta(days=first_days if first_days is not None else last_days) if last_days is not None else None
    return Traits(count, Decimal(revenue), Decimal(spend), first, last)


RULES = QuadrantRules(
    loyal_min_orders=2, loyal_recency_days=365, loyal_min_tenure_days=30, high_value_min_revenue=Decimal(250)
)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (traits(2, "250", 365, 400), "friends"),  # on every boundary at once
        (traits(2, "249.99", 365, 400), "supporters"),  # a cent short of valuable
        (traits(2, "250", 366, 400), "acquaintances"),  # the last order a day too long ago
        (traits(2, "250", 364, 400), "friends"),  # a day inside the recency window
        (traits(1, "250", 10, 400), "acquaintances"),  # one order is not loyalty
        (traits(3, "250", 10, 29), "acquaintances"),  # a customer for 29 days: not yet loyal
        (traits(3, "250", 10, 30), "friends"),  # 30 days: loyal
        (traits(3, "100", 10, 31), "supporters"),
        (traits(1, "10", 1), "passers-by"),
        (traits(0, "0", None), "passers-by"),  # a prospect
    ],
)
def test_quadrant_boundaries(case: Traits, expected: str) -> None:
    assert quadrant(case, RULES, NOW) == expected


def test_quadrant_threshold_in_fractions_of_a_cent() -> None:
    rules = QuadrantRules(high_value_min_revenue=Decimal("249.995"))
    assert quadrant(traits(1, "249.99", 1), rules, NOW) == "passers-by"
    assert quadrant(traits(1, "250.00", 1), rules, NOW) == "acquaintances"


WINDOWS = LifecycleWindows(new_days=90, active_days=180, at_risk_days=365)


@pytest.mark.parametrize(
    ("last_days", "first_days", "expected"),
    [
        (None, None, "prospect"),
        (89, 89, "new"),  # the day before the end of the new window
        (90, 90, "new"),  # the day of
        (90.9, 90.9, "new"),  # still day 90 until the day has passed
        (91, 91, "active"),  # the day after: an ordinary active customer
        (5, 91, "active"),  # first order 91 days ago, last order recent
        (179, 400, "active"),
        (180, 400, "active"),
        (181, 400, "at-risk"),
        (364, 400, "at-risk"),
        (365, 400, "at-risk"),
        (366, 400, "lapsed"),
        (2000, 2000, "lapsed"),
    ],
)
def test_lifecycle_boundaries(last_days: float | None, first_days: float | None, expected: str) -> None:
    case = traits(1 if last_days is not None else 0, "10", last_days, first_days)
    assert lifecycle(case, WINDOWS, NOW) == expected


def test_lifecycle_windows_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="at_risk_days must be longer"):
        LifecycleWindows(active_days=200, at_risk_days=200)


def test_vectorised_and_one_profile_forms_agree() -> None:
    cases = [
        traits(n, str(r), d, d + extra)
        for n in (0, 1, 3)
        for r in (0, 300)
        for d in (5, 200, 400)
        for extra in (0, 100)
    ]
    cols = columns_of(cases, NOW)
    q = quadrant_codes(cols, RULES).tolist()
    lc = lifecycle_codes(cols, WINDOWS).tolist()
    from mapping.segments import LIFECYCLE, QUADRANTS

    assert [QUADRANTS[i] for i in q] == [quadrant(c, RULES, NOW) for c in cases]
    assert [LIFECYCLE[i] for i in lc] == [lifecycle(c, WINDOWS, NOW) for c in cases]


# ----- tiers -------------------------------------------------------------------------------------
TIER_SETTINGS = SegmentSettings(tier_grace_days=90)  # bronze 0, silver 250, gold 750


def run_tiers(spend_by_day: list[tuple[int, str]]) -> list[str | None]:
    """One profile through a sequence of runs, `now` advancing, its tier state carried over."""
    state = TierState.empty(1)
    seen = []
    for day, spend in spend_by_day:
        now = NOW + timedelta(days=day)
        cols = columns_of([Traits(1, Decimal(spend), Decimal(spend), now, now)], now)
        result = assess(cols, TIER_SETTINGS, now, previous=state)
        state = result.tiers
        seen.append(result.tier_name(0))
    return seen


def test_tier_upgrade_is_immediate_and_downgrade_waits_for_the_grace_period() -> None:
    assert run_tiers(
        [
            (0, "800"),  # gold at once
            (30, "300"),  # qualifies for silver only: gold is kept (30 days < 90)
            (60, "800"),  # gold again: qualified anew on day 60
            (149, "100"),  # 89 days after qualifying: still gold
            (150, "100"),  # 90 days: down, straight to the tier reached now
            (151, "300"),  # an upgrade needs no wait
            (152, "0"),  # bronze reached, silver kept
        ]
    ) == ["gold", "gold", "gold", "gold", "bronze", "silver", "silver"]


def test_a_tier_never_flaps_around_a_threshold() -> None:
    days = [(d, "760" if (d // 10) % 2 == 0 else "740") for d in range(0, 200, 10)]
    assert set(run_tiers(days)) == {"gold"}


def test_no_grace_means_no_hysteresis() -> None:
    state = TierState(np.array([2, 2, -1]), np.array([NOW.timestamp()] * 2 + [np.nan]))
    held = hold_tiers(np.array([1, 2, 0]), state, NOW, 0)
    assert held.tier.tolist() == [1, 2, 0]


def test_a_tier_without_a_qualification_time_is_not_kept() -> None:
    held = hold_tiers(np.array([0]), TierState(np.array([2]), np.array([np.nan])), NOW, 90)
    assert held.tier.tolist() == [0] and held.qualified_at.tolist() == [NOW.timestamp()]


# ----- determinism -------------------------------------------------------------------------------
SYSTEMS = ["crm", "shop"]
DETERMINISM_SETTINGS = SegmentSettings(
    rates={"USD": Decimal("0.9")},
    rules=[
        {"name": "regulars", "when": "order_count >= 3 and last_order >= now - days(120)"},
        {"name": "top", "when": "rfm in ['555', '455'] or m == 5"},
    ],
)

order_strategy = st.tuples(
    st.integers(0, 11),  # profile
    st.sampled_from(SYSTEMS),
    st.decimals(min_value=0, max_value=2000, places=2),
    st.sampled_from(["EUR", "USD", "GBP"]),
    st.integers(-10, 900),  # days ago
    st.booleans(),
)


def verdict_bytes(orders: list[tuple[str, Order]], profiles: list[str]) -> bytes:
    """What the cycle stores for these inputs, serialised canonically."""
    ordered = sorted(profiles)
    index = {pid: i for i, pid in enumerate(ordered)}
    rows = [(index[pid], order) for pid, order in orders]
    cols, _ = order_columns(rows, SYSTEMS, "EUR", DETERMINISM_SETTINGS.rates)
    t = trait_columns(cols, len(ordered), NOW, ["offline", "online"])
    result = assess(t, DETERMINISM_SETTINGS, NOW, systems=SYSTEMS)
    docs = [json.loads(doc) for doc in trait_json(t, result, SYSTEMS)]
    out = {
        pid: {"segments": sorted(m.segments), "tier": m.tier, "traits": doc}
        for pid, m, doc in zip(ordered, result.memberships(), docs, strict=True)
    }
    return json.dumps(out, sort_keys=True).encode()


@settings(max_examples=60, deadline=None)
@given(st.lists(order_strategy, max_size=60), st.randoms(use_true_random=False))
def test_same_inputs_and_now_give_byte_identical_segments_in_any_order(
    raw: list[tuple[int, str, Decimal, str, int, bool]], rng: random.Random
) -> None:
    profiles = [f"p{i:02d}" for i in range(12)]
    orders = [
        (f"p{p:02d}", Order(system, f"o{n}", None, None, amount, currency, NOW - timedelta(days=days), counts))
        for n, (p, system, amount, currency, days, counts) in enumerate(raw)
    ]
    first = verdict_bytes(orders, profiles)
    shuffled_orders = orders[:]
    rng.shuffle(shuffled_orders)
    shuffled_profiles = profiles[:]
    rng.shuffle(shuffled_profiles)
    assert verdict_bytes(shuffled_orders, shuffled_profiles) == first


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 80), st.integers(0, 60), st.integers(0, 2**32 - 1))
def test_unique_rows_match_numpys_row_unique(names: int, profiles: int, seed: int) -> None:
    """Memberships group profiles by their packed segment bits: as integers up to 64 segments,
    as rows beyond (both sides of the 8-byte limit are drawn)."""
    rng = np.random.default_rng(seed)
    matrix = rng.random((profiles, names)) < rng.choice([0.05, 0.5])
    packed = np.packbits(matrix, axis=1)
    combos, inverse = unique_rows(packed)
    expected, _ = np.unique(packed, axis=0, return_inverse=True)
    assert sorted(map(bytes, combos)) == sorted(map(bytes, expected))  # each distinct row once
    assert inverse.shape == (profiles,)
    assert all(bytes(combos[inverse[i]]) == bytes(packed[i]) for i in range(profiles))
