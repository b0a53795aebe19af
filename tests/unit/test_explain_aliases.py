"""`crmsync explain` from the state: a retired profile id (an alias of an alias too) finds the person,
and the segment reasons agree with the verdicts they explain."""

from __future__ import annotations

from sync.config import LoadedConfig
from sync.explain import find_profiles
from sync.state import StateStore
from tests.unit.test_campaign import state  # noqa: F401  (the small state, as a fixture)


def test_an_alias_whose_profile_was_merged_away_too_finds_the_profile_now(
    state: tuple[LoadedConfig, StateStore],  # noqa: F811
) -> None:
    """p_x merged into p_y at run 5, then p_y into p_b at run 7: the stored alias p_x -> p_y is
    not rewritten, so the lookup follows the chain to p_b, and p_b lists both retired ids."""
    loaded, store = state
    with store.db.writing() as conn:
        conn.exec_driver_sql("INSERT INTO profile_aliases (alias, profile_id, seq) VALUES ('p_x', 'p_y', 5)")
        conn.exec_driver_sql("INSERT INTO profile_aliases (alias, profile_id, seq) VALUES ('p_y', 'p_b', 7)")
    try:
        assert find_profiles(store, "p_y", loaded.config) == ["p_b"]
        assert find_profiles(store, "p_x", loaded.config) == ["p_b"]
        assert store.profile_detail("p_b")["aliases"] == ["p_x", "p_y"]
        assert find_profiles(store, "p_nobody", loaded.config) == []
    finally:
        store.close()


def test_a_segment_reason_cites_the_days_the_verdict_was_made_from() -> None:
    """Explained 200 days after the run, a profile the run found active (last order 34 days before
    it) is still explained with the run's 34 days, as its traits show, not with 234."""
    from datetime import UTC, datetime

    from mapping.segments import SegmentSettings
    from sync.explain import segment_reason

    traits = {"order_count": 3, "revenue": "300.00", "last_order": "2026-11-03T10:00:00+00:00"}
    traits["days_since_last_order"] = 34
    later = datetime(2027, 6, 1, tzinfo=UTC)
    why = segment_reason("lifecycle-active", traits, SegmentSettings(), later)
    assert why.startswith("3 orders, the last 34 days ago. lifecycle-active: last order within 180 days"), why
    assert "the last 34 days ago" in segment_reason("friends", traits, SegmentSettings(), later)
    no_days = {k: v for k, v in traits.items() if k != "days_since_last_order"}
    at_run = datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert "the last 34 days ago" in segment_reason("lifecycle-active", no_days, SegmentSettings(), at_run)
    assert "none yet" in segment_reason("lifecycle-prospect", {"order_count": 0}, SegmentSettings(), later)


def test_a_tier_held_below_its_threshold_says_why(state: tuple[LoadedConfig, StateStore]) -> None:  # noqa: F811
    """A tier comes down only after `tier_grace_days` below it: a silver customer whose 12-month
    spend fell to 225 (threshold 250) is still silver, and the reason says so instead of citing a
    threshold the figure beside it does not meet."""
    from datetime import UTC, datetime

    from mapping.segments import SegmentSettings
    from sync.explain import segment_reason

    _loaded, store = state
    with store.db.writing() as conn:
        conn.exec_driver_sql(
            "INSERT INTO profile_tiers (profile_id, tier, qualified_at, since_seq) VALUES "
            "('p_b', 'silver', '2026-10-08T10:00:00+00:00', 1), ('p_f', 'bronze', '', 1)"
        )
        conn.exec_driver_sql("INSERT INTO meta (key, value) VALUES ('tiers_at', '2026-12-01T00:00:00+00:00')")
    try:
        held = store.profile_detail("p_b")["tier_qualified_at"]
        assert held == "2026-10-08T10:00:00+00:00"
        assert store.profile_detail("p_f")["tier_qualified_at"] == "2026-12-01T00:00:00+00:00"  # "" = that run
        assert store.profile_detail("p_g")["tier_qualified_at"] is None
    finally:
        store.close()
    now = datetime(2026, 12, 7, tzinfo=UTC)
    why = segment_reason("tier-silver", {"spend_12m": "225.07"}, SegmentSettings(), now, held)
    assert why == (
        "12-month spend 225.07 EUR. tier-silver: 12-month spend >= 250 EUR; below it now, kept since it last "
        "qualified on 2026-10-08: a tier is taken away only after 90 days below it (tier_grace_days), on 2027-01-06"
    )
    met = segment_reason("tier-silver", {"spend_12m": "300.00"}, SegmentSettings(), now, held)
    assert met == "12-month spend 300.00 EUR. tier-silver: 12-month spend >= 250 EUR"
