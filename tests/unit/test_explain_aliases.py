"""`crmsync explain` by a retired profile id: an alias of an alias still finds the person."""

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
