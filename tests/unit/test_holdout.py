"""Holdouts (mapping/holdout.py, CONTRACTS §6): who is held out depends on the segment name and the
profile id only, the share is met, and what is written leaves exactly the held-out segments out."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mapping.holdout import Holdouts, held_out
from mapping.model import Membership
from mapping.segments import SegmentSettings


def test_the_choice_is_pinned_by_segment_and_profile_id() -> None:
    # Pinned: a change to the hash would move people in and out of every running campaign's holdout.
    chosen = {p: (held_out("win-back", p, 0.5), held_out("friends", p, 0.5)) for p in ("p_a", "p_b", "p_e", "p_f")}
    assert chosen == {
        "p_a": (True, True),
        "p_b": (False, False),
        "p_e": (True, False),
        "p_f": (False, True),
    }


def test_the_share_is_met_on_a_large_base() -> None:
    ids = [f"p_{i:012x}" for i in range(100_000)]
    held = sum(held_out("friends", p, 0.1) for p in ids)
    assert 9_600 <= held <= 10_400  # 10 % +- 4 standard deviations (sd ~95)
    assert not any(held_out("friends", p, 0.0) for p in ids[:1000])


@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=50, unique=True), st.randoms())
def test_the_choice_does_not_depend_on_order(ids: list[str], rng: random.Random) -> None:
    holdouts = Holdouts({"friends": 0.3})
    membership = Membership(frozenset({"friends", "lifecycle-active"}), None)
    first = {p: holdouts.written(p, membership) for p in ids}
    shuffled = list(ids)
    rng.shuffle(shuffled)
    again = Holdouts({"friends": 0.3})
    assert {p: again.written(p, membership) for p in shuffled} == first


def test_written_leaves_out_only_held_segments_and_shares_objects() -> None:
    holdouts = Holdouts({"friends": 0.5, "win-back": 0.5})
    both = Membership(frozenset({"friends", "win-back", "tier-gold"}), "gold")
    plain = Membership(frozenset({"supporters"}), None)
    assert holdouts.written("p_a", plain) is plain  # no held segment: the same object
    assert holdouts.written("p_b", both) is both  # in neither holdout
    assert holdouts.written("p_a", both) == Membership(frozenset({"tier-gold"}), "gold")
    assert holdouts.written("p_e", both) == Membership(frozenset({"friends", "tier-gold"}), "gold")
    assert holdouts.written("p_f", both) == Membership(frozenset({"win-back", "tier-gold"}), "gold")
    assert holdouts.written("p_a", both) is holdouts.written("p_c", both)  # equal results: one object
    assert not Holdouts({}) and not Holdouts({"friends": 0.0})


@pytest.mark.parametrize(
    ("holdout", "message"),
    [
        ({"no-such-segment": 0.1}, "holdout.no-such-segment: no segment of that name"),
        ({"tier-gold": 0.1}, "holdout.tier-gold: a loyalty tier is a promise"),
        ({"friends": 0.0}, "holdout.friends: a share above 0 and at most 0.5"),
        ({"friends": 0.6}, "holdout.friends: a share above 0 and at most 0.5"),
    ],
)
def test_a_holdout_must_name_a_segment_and_a_sensible_share(holdout: dict[str, float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SegmentSettings(holdout=holdout)
    assert SegmentSettings(holdout={"friends": 0.1, "lifecycle-at-risk": 0.5}).holdout["friends"] == 0.1
