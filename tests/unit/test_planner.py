from mapping.model import RemoteState
from sync.planner import diff, plan_system
from sync.state import KnownState


def test_nothing_to_do_when_remote_matches() -> None:
    state = RemoteState(frozenset({"crmsync:friends"}), {"crmsync.loyalty_tier": "gold"})
    assert diff("shop", "1", state, state) is None


def test_tags_compare_case_insensitively_and_removal_uses_remote_spelling() -> None:
    desired = RemoteState(frozenset({"crmsync:friends", "crmsync:tier-gold"}))
    current = RemoteState(frozenset({"CRMSYNC:Friends", "crmsync:old-segment"}))
    change = diff("shop", "1", desired, current)
    assert change is not None
    assert change.add_tags == ("crmsync:tier-gold",)
    assert change.remove_tags == ("crmsync:old-segment",)
    assert change.set_fields == {}
    assert change.target == desired


def test_a_known_tag_crmsync_no_longer_owns_is_never_removed() -> None:
    """After a `tag_prefix` change, a pushed state still lists tags under the old prefix: they are
    not crmsync's any more, whether a plan or an erasure compares against them."""

    def owns(tag: str) -> bool:
        return tag.casefold().startswith("seg:")

    current = RemoteState(frozenset({"crmsync:friends", "seg:friends", "seg:old"}))
    change = diff("shop", "1", RemoteState(frozenset({"seg:friends", "seg:new"})), current, owns)
    assert change is not None and change.add_tags == ("seg:new",) and change.remove_tags == ("seg:old",)
    erased = diff("shop", "1", RemoteState(), current, owns)
    assert erased is not None and erased.remove_tags == ("seg:friends", "seg:old")
    plan = plan_system("shop", {"1": RemoteState(frozenset({"seg:friends"}))}, {"1": current}, owns)
    assert [(c.add_tags, c.remove_tags) for c in plan] == [((), ("seg:old",))]


def test_only_changed_fields_are_set() -> None:
    desired = RemoteState(frozenset(), {"crmsync_segments": "friends,tier-gold", "crmsync_loyalty_tier": "gold"})
    current = RemoteState(frozenset(), {"crmsync_segments": "friends", "crmsync_loyalty_tier": "gold"})
    change = diff("web", "9", desired, current)
    assert change is not None and change.set_fields == {"crmsync_segments": "friends,tier-gold"}


def test_plan_is_sorted_and_skips_unchanged() -> None:
    same = RemoteState(frozenset({"crmsync:friends"}))
    other = RemoteState(frozenset({"crmsync:supporters"}))
    changes = plan_system(
        "shop",
        {"2": same, "9": other, "1": other, "3": same, "10": other},
        {"1": same, "2": same, "3": same, "9": same},
    )
    assert [c.record_id for c in changes] == ["1", "10", "9"]  # in record-id order, whatever the desired order
    assert changes[1].add_tags == ("crmsync:supporters",) and changes[1].remove_tags == ()  # "10": nothing known


def test_known_state_prefers_the_newer_of_read_and_ledger() -> None:
    read = RemoteState(frozenset({"crmsync:old"}))
    pushed = RemoteState(frozenset({"crmsync:new"}))
    assert KnownState(read, changed_seq=3, pushed=pushed, pushed_seq=3).current == pushed  # pushed after reading
    assert KnownState(read, changed_seq=4, pushed=pushed, pushed_seq=3).current == read  # read again since
    assert KnownState(read, changed_seq=4, pushed=None, pushed_seq=-1).current == read
