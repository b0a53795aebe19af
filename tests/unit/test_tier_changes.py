"""The tiers a run writes, found by columns (`column_tier_changes`, what a cycle uses) and by
comparing every held tier with the stored rows (`tier_changes`): the same rows, the same deletions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.segments import TierState
from sync.segmenting import column_tier_changes, previous_tiers
from sync.state import StoredTiers
from sync.state.history import tier_changes

NAMES = ["bronze", "silver", "gold"]
LAST_RUN = datetime(2026, 11, 30, 6, 15, 0, 123456, tzinfo=UTC)
EARLIER = [LAST_RUN - timedelta(days=40), LAST_RUN - timedelta(days=3, microseconds=7)]


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[str], StoredTiers, TierState, datetime, int]:
    size = draw(st.integers(0, 25))
    profiles = [f"p_{i:03d}" for i in range(size)]
    rows: dict[str, tuple[str, str, int]] = {}
    # Stored rows for some profiles, and for profiles merged away since (not in `profiles`).
    for pid in profiles + [f"gone_{i}" for i in range(draw(st.integers(0, 3)))]:
        if draw(st.booleans()):
            tier = draw(st.sampled_from([*NAMES, "platinum"]))  # platinum: no longer configured
            text = draw(st.sampled_from(["", *(moment.isoformat() for moment in EARLIER)]))
            rows[pid] = (tier, text, draw(st.integers(1, 5)))
    stored = StoredTiers.of(rows, LAST_RUN if draw(st.booleans()) or not rows else None)
    if stored.at is None:  # no `tiers_at` yet: no row can say "at the last run"
        stored = StoredTiers.of({pid: (t, x or EARLIER[0].isoformat(), s) for pid, (t, x, s) in rows.items()}, None)
    now = LAST_RUN + timedelta(
        minutes=draw(st.sampled_from([0, 15, 60 * 24 * 100])), microseconds=draw(st.integers(0, 999_999))
    )
    previous = previous_tiers(stored, profiles, NAMES).state
    codes, qualified = [], []
    for i in range(size):
        code = draw(st.integers(-1, 2))
        codes.append(code)
        if code < 0:
            qualified.append(np.nan)
        elif draw(st.booleans()) or np.isnan(previous.qualified_at[i]):
            qualified.append(now.timestamp())  # qualified at this run
        else:
            qualified.append(float(previous.qualified_at[i]))  # kept in its grace period
    tiers = TierState(np.array(codes, dtype=np.int64), np.array(qualified, dtype=np.float64))
    return profiles, stored, tiers, now, draw(st.integers(6, 7))


@settings(max_examples=400, deadline=None)
@given(runs())
def test_the_columns_find_the_same_changes_as_the_comparison(
    run: tuple[list[str], StoredTiers, TierState, datetime, int],
) -> None:
    profiles, stored, tiers, now, seq = run
    held = {
        pid: (NAMES[code], datetime.fromtimestamp(at, UTC))
        for pid, code, at in zip(profiles, tiers.tier.tolist(), tiers.qualified_at.tolist(), strict=True)
        if code >= 0
    }
    expected = tier_changes(held, stored.rows, seq, now)
    previous = previous_tiers(stored, profiles, NAMES).state  # as the held tiers say, aligned
    before = stored.held()
    for i, pid in enumerate(profiles):
        tier, at = before.get(pid, ("none", None))
        assert previous.tier[i] == (NAMES.index(tier) if tier in NAMES else -1)
        if tier in NAMES and at is not None:
            assert previous.qualified_at[i] == at.timestamp()
        else:
            assert np.isnan(previous.qualified_at[i])
    assert column_tier_changes(profiles, NAMES, tiers, previous_tiers(stored, profiles, NAMES), seq, now) == expected


def test_an_unchanged_run_changes_no_row() -> None:
    """Every profile still qualifying at this run, as at the last: nothing to write (the case the
    columns exist for); one that fell out is deleted, one kept in grace gets its moment written."""
    stored = StoredTiers.of({"p_1": ("gold", "", 3), "p_2": ("silver", "", 4), "p_3": ("gold", "", 2)}, LAST_RUN)
    now = LAST_RUN + timedelta(minutes=15)
    profiles = ["p_1", "p_2", "p_3"]
    previous = previous_tiers(stored, profiles, NAMES)
    still = TierState(np.array([2, 1, 2]), np.array([now.timestamp()] * 3))
    assert column_tier_changes(profiles, NAMES, still, previous, 9, now).rows == []
    changed = TierState(np.array([2, -1, 2]), np.array([now.timestamp(), np.nan, LAST_RUN.timestamp()]))
    found = column_tier_changes(profiles, NAMES, changed, previous, 9, now)
    assert found.rows == [("p_3", "gold", LAST_RUN.isoformat(), 2)] and found.gone == ["p_2"]


def test_profiles_must_be_unique() -> None:
    """A stored tier lines up with one position per profile id: a repeated id is refused, not
    given the tier at one of its positions only."""
    stored = StoredTiers.of({"p_1": ("gold", "", 3)}, LAST_RUN)
    with pytest.raises(ValueError, match="unique"):
        previous_tiers(stored, ["p_1", "p_2", "p_1"], NAMES)
