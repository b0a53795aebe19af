"""Segments on the merchant's calendar (`[segments] timezone`, mapping/calendar_days.py): day counts
turn at local midnight, `year()` and `date()` read local dates, summer time changes nothing a
merchant would count, and without the setting every figure is what it was before it existed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.bases import BaseSettings, OrderDetails, PersonFields, base_columns
from mapping.calendar_days import AS_BEFORE, DAY, Calendar
from mapping.model import Order, Traits
from mapping.segments import (
    LIFECYCLE,
    LifecycleWindows,
    SegmentSettings,
    TierState,
    assess,
    columns_of,
    hold_tiers,
    lifecycle,
    lifecycle_codes,
    membership,
)
from mapping.traits import OrderColumns, order_traits, trait_columns
from sync.config import ConfigError, load_config
from sync.segmenting import segment_calendar

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
LOCAL = Calendar(AMSTERDAM)
ZONES = [AMSTERDAM, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kathmandu")]


def at(*parts: int) -> datetime:
    """A moment on the clock on an Amsterdam wall."""
    return datetime(*parts, tzinfo=AMSTERDAM)  # type: ignore[misc]


def orders_at(*moments: datetime, cents: int = 1000) -> OrderColumns:
    """One order per moment, profile i the i-th."""
    n = len(moments)
    return OrderColumns(
        profile=np.arange(n, dtype=np.int64),
        system=np.zeros(n, dtype=np.int64),
        cents=np.full(n, cents, dtype=np.int64),
        created=np.array([int(m.timestamp()) for m in moments], dtype=np.int64),
        counts=np.ones(n, dtype=np.bool_),
    )


def rule_matches(when: str, first: datetime, now: datetime, calendar: Calendar) -> bool:
    """Whether one customer, whose only order is at `first`, is in the rule segment `when`."""
    settings = SegmentSettings(rules=[{"name": "r", "when": when}])
    traits = trait_columns(orders_at(first), 1, now, (), calendar)
    result = assess(traits, settings, now, calendar=calendar)
    return bool(result.matrix[0, result.names.index("r")])


# ----- rules: year(), date(), days() -------------------------------------------------------------------
NEW_YEAR_NIGHT = at(2026, 1, 1, 0, 30)  # 2025-12-31 23:30 UTC
JANUARY = at(2026, 1, 20, 12, 0)


@pytest.mark.parametrize(
    "when",
    [
        "year(first_order) == 2026",
        "first_order >= date('2026-01-01')",
        "year(first_order) == year(now)",  # the merchant's "new customers this year"
        "first_order >= date('2026-01-01T00:00:00+01:00')",  # an offset written out: that moment
    ],
)
def test_an_order_half_an_hour_into_the_new_year_in_amsterdam_is_from_that_year(when: str) -> None:
    assert rule_matches(when, NEW_YEAR_NIGHT, JANUARY, LOCAL)


@pytest.mark.parametrize(
    ("when", "before"),
    [
        ("year(first_order) == 2026", False),
        ("first_order >= date('2026-01-01')", False),
        ("first_order >= date('2026-01-01T00:00:00+01:00')", True),  # a moment is a moment anywhere
    ],
)
def test_without_a_zone_dates_are_utc_as_before(when: str, before: bool) -> None:
    assert rule_matches(when, NEW_YEAR_NIGHT, JANUARY, AS_BEFORE) is before


def test_days_in_a_rule_are_days_on_the_wall_across_the_march_change() -> None:
    """Clocks go forward on 29 March 2026: from 09:30 on the 24th to 09:45 on the 31st is a week and
    a quarter of an hour on the wall, but 6 days 23 h 15 min of elapsed time."""
    order, now = at(2026, 3, 24, 9, 30), at(2026, 3, 31, 9, 45)
    assert rule_matches("last_order < now - days(7)", order, now, LOCAL)
    assert not rule_matches("last_order < now - days(7)", order, now, AS_BEFORE)
    assert rule_matches("now - last_order > days(7)", order, now, LOCAL)


# ----- traits and lifecycle: days turn at local midnight ---------------------------------------------------
def test_a_day_count_turns_at_local_midnight() -> None:
    order = at(2026, 6, 10, 23, 30)  # 21:30 UTC
    before_midnight, after_midnight = at(2026, 6, 10, 23, 59), at(2026, 6, 11, 0, 10)  # 22:10 UTC
    days = [
        trait_columns(orders_at(order), 1, now, (), LOCAL).days_since_last_order[0]
        for now in (before_midnight, after_midnight)
    ]
    assert days == [0, 1]
    # In UTC 40 minutes are no day: the count of before turned only at 23:30 local the next evening.
    assert trait_columns(orders_at(order), 1, after_midnight, ()).days_since_last_order[0] == 0
    assert Traits(1, Decimal(1), Decimal(1), order, order).days_since_last_order(after_midnight, AMSTERDAM) == 1


def test_a_lifecycle_window_ends_at_local_midnight() -> None:
    windows = LifecycleWindows(new_days=0, active_days=30, at_risk_days=60)
    order = at(2026, 5, 1, 23, 30)
    last_evening, first_minutes = at(2026, 5, 31, 23, 59), at(2026, 6, 1, 0, 5)
    stages = [
        LIFECYCLE[int(lifecycle_codes(trait_columns(orders_at(order), 1, now, (), LOCAL), windows)[0])]
        for now in (last_evening, first_minutes)
    ]
    assert stages == ["active", "at-risk"]  # day 30 is still active, day 31 is not
    assert (
        LIFECYCLE[int(lifecycle_codes(trait_columns(orders_at(order), 1, first_minutes, ()), windows)[0])] == "active"
    )
    # The one-profile form reads the same calendar.
    one = Traits(1, Decimal(10), Decimal(10), order, order)
    assert [lifecycle(one, windows, now, LOCAL) for now in (last_evening, first_minutes)] == stages


def test_a_week_across_the_october_change_is_seven_days_at_midnight_not_at_23() -> None:
    """Clocks go back on 25 October 2026: the 25th lasts 25 hours. An order at 00:30 on the 19th is
    seven days old at 00:00 on the 26th; by elapsed 24-hour periods it already was at 23:30 on the
    25th."""
    order = at(2026, 10, 19, 0, 30)
    moments = [at(2026, 10, 25, 23, 50), at(2026, 10, 26, 0, 0), at(2026, 10, 26, 0, 20)]
    local = [trait_columns(orders_at(order), 1, now, (), LOCAL).days_since_last_order[0] for now in moments]
    utc = [trait_columns(orders_at(order), 1, now, ()).days_since_last_order[0] for now in moments]
    assert local == [6, 7, 7]
    assert utc == [7, 7, 7]


def test_the_twelve_months_take_the_whole_365th_day() -> None:
    order = at(2025, 6, 1, 0, 30)
    now = at(2026, 6, 1, 23, 0)  # 365 days and 22.5 hours later
    local = trait_columns(orders_at(order), 1, now, (), LOCAL)
    assert local.spend_12m_cents[0] == 1000 and local.orders_12m[0] == 1 and local.days_since_last_order[0] == 365
    assert trait_columns(orders_at(order), 1, now, ()).spend_12m_cents[0] == 0  # as before: to the second
    # A day later it is out.
    assert trait_columns(orders_at(order), 1, now + timedelta(hours=2), (), LOCAL).spend_12m_cents[0] == 0
    kept = Order("shop", "1", "c", None, Decimal(10), "EUR", order)
    assert order_traits([kept], now, "EUR", {}, LOCAL)[0].spend_12m == Decimal(10)
    assert order_traits([kept], now, "EUR", {})[0].spend_12m == Decimal(0)


def test_a_tier_grace_ends_at_local_midnight() -> None:
    qualified = at(2026, 4, 1, 23, 30)
    previous = TierState(np.array([1], dtype=np.int64), np.array([qualified.timestamp()]))
    reached = np.array([0], dtype=np.int64)
    for now, kept in ((at(2026, 4, 10, 23, 59), 1), (at(2026, 4, 11, 0, 1), 0)):
        assert hold_tiers(reached, previous, now, 10, LOCAL).tier.tolist() == [kept]
    assert hold_tiers(reached, previous, at(2026, 4, 11, 0, 1), 10).tier.tolist() == [1]  # 24-hour periods


def test_an_age_turns_on_the_birthday_at_local_midnight() -> None:
    empty = {field.name: [None] for field in dataclasses.fields(PersonFields)}
    person = PersonFields(**{**empty, "birth_date": ["1990-06-02"]})
    now = at(2026, 6, 2, 0, 30).astimezone(UTC)  # still 1 June in UTC, as the cycle's clock reads
    ages = [
        base_columns(person, OrderDetails.empty(), 1, now, BaseSettings(), calendar=c).age[0]
        for c in (LOCAL, AS_BEFORE)
    ]
    assert ages == [36, 35]


def test_membership_of_one_profile_reads_the_calendar() -> None:
    order = at(2026, 1, 1, 0, 30)
    one = Traits(1, Decimal(10), Decimal(10), order, order)
    settings = SegmentSettings(rules=[{"name": "new-this-year", "when": "year(first_order) == 2026"}])
    assert "new-this-year" in membership(one, settings, JANUARY, LOCAL).segments
    assert "new-this-year" not in membership(one, settings, JANUARY).segments


# ----- the calendar itself ------------------------------------------------------------------------------
MOMENTS = st.integers(
    int(datetime(1990, 1, 1, tzinfo=UTC).timestamp()), int(datetime(2060, 1, 1, tzinfo=UTC).timestamp())
)


@settings(max_examples=200, deadline=None)
@given(zone=st.sampled_from(ZONES), now=MOMENTS, moments=st.lists(MOMENTS, min_size=1, max_size=30))
def test_the_column_reading_is_python_s_reading_moment_by_moment(zone: ZoneInfo, now: int, moments: list[int]) -> None:
    calendar = Calendar(zone)
    stamps = np.array([*moments, np.nan], dtype=np.float64)
    offsets = calendar.offsets(stamps).tolist()
    days = calendar.days_between(float(now), stamps)
    today = datetime.fromtimestamp(now, zone).date()
    for i, moment in enumerate(moments):
        local = datetime.fromtimestamp(moment, zone)
        assert offsets[i] == local.utcoffset().total_seconds()  # type: ignore[union-attr]
        assert days[i] == (today - local.date()).days
        assert calendar.wall(stamps)[i] == datetime(*local.timetuple()[:6], tzinfo=UTC).timestamp()
        assert bool(calendar.within(float(now), stamps, 30)[i]) == ((today - local.date()).days <= 30)
    assert offsets[-1] == 0 and np.isnan(days[-1]) and not calendar.within(float(now), stamps, 30)[-1]


@settings(max_examples=100, deadline=None)
@given(now=MOMENTS, moments=st.lists(MOMENTS, min_size=1, max_size=30))
def test_without_a_zone_every_reading_is_the_one_of_before(now: int, moments: list[int]) -> None:
    stamps = np.array(moments, dtype=np.float64)
    assert AS_BEFORE.days_between(float(now), stamps).tolist() == np.floor((now - stamps) / DAY).tolist()
    assert AS_BEFORE.within(float(now), stamps, 365).tolist() == (now - stamps <= 365 * DAY).tolist()
    assert AS_BEFORE.wall(stamps).tolist() == stamps.tolist()
    moment = datetime.fromtimestamp(now, UTC)
    assert AS_BEFORE.today(moment) == moment.date()


def test_a_day_starts_at_the_jump_where_the_clocks_skip_midnight() -> None:
    havana = Calendar(ZoneInfo("America/Havana"))  # summer time starts at 00:00 on 8 March 2026
    start = havana.day_start(datetime(2026, 3, 8, 12, tzinfo=UTC).timestamp())
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 3, 8, 5, tzinfo=UTC)
    assert datetime.fromtimestamp(start - 1, havana.zone).date() == date(2026, 3, 7)


# ----- the setting ---------------------------------------------------------------------------------
def test_the_setting_is_an_iana_name_checked_when_the_config_loads(tmp_path: Path) -> None:
    config = tmp_path / "crmsync.toml"
    config.write_text('[segments]\ntimezone = "Europe/Amsterdm"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.problems == [
        "config error: segments.timezone: unknown time zone 'Europe/Amsterdm' (an IANA name such as "
        "'Europe/Amsterdam' or 'UTC')"
    ]
    config.write_text('[segments]\ntimezone = "Europe/Amsterdam"\n')
    loaded = load_config(config).config
    assert loaded.segments.timezone == "Europe/Amsterdam"
    assert segment_calendar(loaded.segments.timezone) == LOCAL
    config.write_text("[segments]\n")
    assert load_config(config).config.segments.timezone is None
    assert segment_calendar(None) is AS_BEFORE


def test_explain_dates_a_held_tier_s_grace_on_the_merchant_s_calendar() -> None:
    from sync.explain import segment_reason

    traits = {"order_count": 1, "spend_12m": 10, "revenue": 10, "days_since_last_order": 3}
    qualified = "2026-04-01T22:30:00+00:00"  # 00:30 on 2 April in Amsterdam
    reasons = [
        segment_reason("tier-silver", traits, SegmentSettings(timezone=zone, tier_grace_days=10), JANUARY, qualified)
        for zone in ("Europe/Amsterdam", None)
    ]
    assert "last qualified on 2026-04-02" in reasons[0] and "(tier_grace_days), on 2026-04-12" in reasons[0]
    assert "last qualified on 2026-04-01" in reasons[1] and "(tier_grace_days), on 2026-04-11" in reasons[1]


# Moments within a year and a half of 2026's two changes of the clocks, to the second.
NEAR = st.integers(int(at(2025, 10, 1).timestamp()), int(at(2027, 4, 1).timestamp()))


@settings(max_examples=150, deadline=None)
@given(zone=st.sampled_from(ZONES), now=NEAR, moments=st.lists(NEAR, min_size=1, max_size=12))
def test_the_column_and_the_one_profile_forms_count_the_same_local_days(
    zone: ZoneInfo, now: int, moments: list[int]
) -> None:
    calendar = Calendar(zone)
    at_now = datetime.fromtimestamp(now, UTC)
    placed = [datetime.fromtimestamp(m, UTC) for m in moments]
    orders = [Order("shop", str(i), "c", None, Decimal(1), "EUR", moment) for i, moment in enumerate(placed)]
    one, _ = order_traits(orders, at_now, "EUR", {}, calendar)
    column = OrderColumns(
        profile=np.zeros(len(moments), dtype=np.int64),
        system=np.zeros(len(moments), dtype=np.int64),
        cents=np.full(len(moments), 100, dtype=np.int64),
        created=np.array(moments, dtype=np.int64),
        counts=np.ones(len(moments), dtype=np.bool_),
    )
    traits = trait_columns(column, 1, at_now, (), calendar)
    assert traits.order_count[0] == one.order_count
    assert traits.spend_12m_cents[0] == int(one.spend_12m * 100)
    if one.last_order is None:
        assert np.isnan(traits.days_since_last_order[0])
        return
    assert traits.days_since_last_order[0] == one.days_since_last_order(at_now, zone)
    assert traits.days_since_last_order[0] == calendar.days_since(at_now, one.last_order)
    assert one.first_order is not None
    assert traits.tenure_days[0] == (at_now.astimezone(zone).date() - one.first_order.astimezone(zone).date()).days
    columns = columns_of([one], at_now, calendar)
    assert (columns.days_since_last_order[0], columns.tenure_days[0]) == (
        traits.days_since_last_order[0],
        traits.tenure_days[0],
    )


def test_a_placeholder_date_centuries_back_reads_only_the_years_the_column_holds() -> None:
    """An order dated 0001-01-01 (the "no date" of many ERPs) beside this year's: the column is read
    as Python reads each moment, and only the two years holding moments are scanned for changes of
    offset, not the 2,025 between (ten seconds at every cycle's start)."""
    from mapping.calendar_days import _changes

    zone = ZoneInfo("Europe/Brussels")  # a zone no other test reads, so nothing of it is cached
    moments = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1, 6, 1, 12, tzinfo=UTC),
        at(2026, 3, 29, 1, 59),
        at(2026, 3, 29, 3, 0),
        at(2026, 10, 25, 2, 30).replace(fold=1),
    ]
    before = _changes.cache_info().misses
    offsets = Calendar(zone).offsets([m.timestamp() for m in moments]).tolist()
    assert offsets == [m.astimezone(zone).utcoffset().total_seconds() for m in moments]  # type: ignore[union-attr]
    assert _changes.cache_info().misses - before <= 2


@pytest.mark.parametrize(("zone", "day"), [("Europe/Amsterdam", "2026-06-01"), (None, "2026-05-31")])
def test_explain_dates_the_most_recent_update_on_the_merchant_s_calendar(
    tmp_path: Path, zone: str | None, day: str
) -> None:
    """`explain` says why a field came from a record: "most recent: updated <date>". An edit at
    00:30 on 1 June in Amsterdam (22:30 UTC on 31 May) is of 1 June with the zone set."""
    from mapping.model import Contact, Kind, Membership, SourceRecord
    from sync.explain import explain_profile
    from sync.state import StateStore, VerdictChunk

    config = tmp_path / "crmsync.toml"
    setting = f'timezone = "{zone}"\n' if zone else ""
    config.write_text(f'[state]\nurl = "sqlite:///crmsync.db"\n[segments]\n{setting}')
    loaded = load_config(config)
    store = StateStore(loaded.state_url())
    edits = {
        "1": ("Jan", datetime(2026, 3, 1, tzinfo=UTC)),
        "2": ("Johannes", datetime(2026, 5, 31, 22, 30, tzinfo=UTC)),
    }

    def contact(record: SourceRecord) -> Contact:
        name, updated = edits[record.id]
        return Contact(record.system, record.id, updated, email="jan@x.nl", given_name=name, family_name="Berg")

    records = [SourceRecord("shop", Kind.CONTACT, cid, updated, {}) for cid, (_, updated) in edits.items()]
    store.store_page("shop", Kind.CONTACT, records, contact, 1)
    verdicts = [VerdictChunk.of([("p_1", Membership(frozenset(), None), "{}")])]
    store.save_profiles({"p_1": ["shop:1", "shop:2"]}, verdicts, {}, 1)
    doc = explain_profile(store, "p_1", loaded.config, datetime(2026, 6, 2, tzinfo=UTC))
    store.close()
    assert doc["fields"]["given_name"] == {"value": "Johannes", "from": "shop:2", "why": f"most recent: updated {day}"}


@pytest.mark.parametrize(("zone", "days"), [("Europe/Amsterdam", 8), (None, 7)])
def test_the_checkouts_read_covers_the_first_local_day_of_the_window(
    tmp_path: Path, zone: str | None, days: int
) -> None:
    """`abandoned_checkout_days = 7` on the merchant's calendar reaches back to the local midnight
    seven days ago, up to a day before now - 7 x 24 hours: Shopify's checkouts are read a day further
    back then (the read takes `created_at >= now - unfinished_days`), and as before without a zone."""
    import threading

    from sync.pipeline import build_connectors

    config = tmp_path / "crmsync.toml"
    setting = f'timezone = "{zone}"\n' if zone else ""
    config.write_text(
        f'[state]\nurl = "sqlite:///crmsync.db"\n[segments]\n{setting}[segments.bases]\n'
        'enabled = ["abandoned-checkout"]\nabandoned_checkout_days = 7\n'
        '[systems.shop]\ntype = "shopify"\nbase_url = "https://example.myshopify.com"\naccess_token = "shpat_x"\n'
    )
    connectors = build_connectors(load_config(config), threading.Event())
    assert connectors["shop"].unfinished_days == days
