"""Resolving again only the touched components (mapping/identity_delta.py) gives exactly what a
full resolution of every record gives: clusters and their order, components, ids, aliases, new ids
and links in order. Random records share emails and mobiles (over the limits, with names that
disagree or are missing), link to each other and to records not there, and change, arrive and go in rounds."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.identity import Resolution, resolve
from mapping.identity_delta import Before, link_order, resolve_again

KEYS = [f"{system}:{n}" for system in ("shop", "web") for n in range(8)]
RECORD = st.fixed_dictionaries(
    {
        "email": st.one_of(st.none(), st.sampled_from(["a@x.nl", "b@x.nl", "c@x.nl"])),
        "mobile": st.one_of(st.none(), st.sampled_from(["+31611", "+31622"])),
        # "J." agrees with Jan and with Joost, who disagree; "." is no name: a family's number
        # then joins its named holders cluster by cluster and no nameless one.
        "name": st.one_of(st.none(), st.sampled_from(["Jan", "J.", "Joost", "Piet", "."])),
        "links": st.lists(st.sampled_from([*KEYS, "shop:99"]), max_size=2),
    }
)
STATE = st.dictionaries(st.sampled_from(KEYS), RECORD, max_size=len(KEYS))


def identified(state: dict[str, dict[str, Any]]) -> list[tuple[str, list[tuple[str, str]]]]:
    out = []
    for key in sorted(state):
        record = state[key]
        idents = [("record", link) for link in record["links"]]
        idents += [(kind, record[kind]) for kind in ("email", "mobile") if record[kind]]
        out.append((key, idents))
    return out


def names(state: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {key: record["name"] for key, record in state.items() if record["name"]}


def links(resolution: Resolution) -> list[tuple[str, str, str, str]]:
    return [(link.a, link.b, link.kind, link.value) for link in resolution.links]


@settings(max_examples=300, deadline=None)
@given(
    first=STATE,
    rounds=st.lists(st.tuples(STATE, st.sets(st.sampled_from(KEYS))), min_size=1, max_size=3),
    limit=st.integers(1, 3),
    max_profile=st.integers(2, 6),
)
def test_resolving_again_the_touched_components_is_a_full_resolution(
    first: dict[str, Any], rounds: list[tuple[dict[str, Any], set[str]]], limit: int, max_profile: int
) -> None:
    """Each round: `edits` overwrite or add records, `gone` are deleted, and some keys are written
    again unchanged (a write that changes nothing is still a change to look at)."""
    settings_ = {"limits": {"email": limit, "mobile": limit}, "max_profile": max_profile}
    state = dict(first)
    full = resolve(identified(state), {}, {}, names=names(state), **settings_)
    age = {pid: rank for rank, (pid, _) in enumerate(full.clusters)}
    before = Before(full.clusters, full.components, links(full))
    previous = full.assignment
    for edits, touched in rounds:
        gone = {key for key in touched if key in state and key not in edits and len(key) % 2}
        rewritten = {key for key in touched if key in state} - gone
        for key in gone:
            del state[key]
        state.update(edits)
        changed = set(edits) | rewritten
        rows = identified(state)
        full = resolve(rows, previous, age, names=names(state), **settings_)
        delta = resolve_again(rows, changed, gone, before, previous, age, names=names(state), **settings_)
        again = delta.resolution
        assert again.clusters == full.clusters
        assert again.components == full.components
        assert again.assignment == full.assignment
        assert (again.aliases, again.created) == (full.aliases, full.created)
        assert delta.links == links(full)
        assert delta.records <= len(state)
        for pid in full.created:
            age[pid] = len(age)
        before = Before(again.clusters, again.components, delta.links)
        previous = again.assignment


def test_an_untouched_component_is_not_resolved_again() -> None:
    """Only the changed record's component and the one its new address reaches are resolved."""
    state = {
        "shop:1": {"email": "a@x.nl", "mobile": None, "name": None, "links": []},
        "web:1": {"email": "a@x.nl", "mobile": None, "name": None, "links": []},
        "shop:2": {"email": "b@x.nl", "mobile": None, "name": None, "links": []},
        "web:2": {"email": "c@x.nl", "mobile": None, "name": None, "links": []},
        "shop:3": {"email": "d@x.nl", "mobile": None, "name": None, "links": []},
    }
    full = resolve(identified(state), {}, {})
    before = Before(full.clusters, full.components, links(full))
    state["web:2"] = {"email": "b@x.nl", "mobile": None, "name": None, "links": []}
    delta = resolve_again(identified(state), {"web:2"}, set(), before, full.assignment, {})
    assert delta.records == 2  # web:2 and shop:2, which it reaches now; not Anna's two, nor shop:3
    assert delta.resolution.assignment["web:2"] == delta.resolution.assignment["shop:2"]
    assert delta.resolution.assignment["shop:1"] == full.assignment["shop:1"]


def test_links_are_ordered_as_a_full_resolution_makes_them() -> None:
    made = [("a", "b", "email", "x"), ("a", "c", "record", "c"), ("b", "d", "mobile", "+31")]
    assert sorted(made, key=link_order) == [made[1], made[0], made[2]]


def test_a_new_id_is_never_one_an_untouched_profile_holds() -> None:
    """web:5 and web:6 made a profile named after web:5; web:5 went and comes back as someone
    else: its new profile's first choice of id is the one web:6 still holds."""
    record = {"mobile": None, "name": None, "links": []}
    state = {"web:5": {**record, "email": "a@x.nl"}, "web:6": {**record, "email": "a@x.nl"}}
    first = resolve(identified(state), {}, {})
    del state["web:5"]
    before = Before(first.clusters, first.components, links(first))
    second = resolve_again(identified(state), set(), {"web:5"}, before, first.assignment, {})
    held = second.resolution.assignment["web:6"]
    assert held == first.assignment["web:5"]
    state["web:5"] = {**record, "email": "b@x.nl"}
    before = Before(second.resolution.clusters, second.resolution.components, second.links)
    third = resolve_again(identified(state), {"web:5"}, set(), before, second.resolution.assignment, {})
    assert third.resolution.assignment["web:5"] not in (held, None)
    assert third.resolution.assignment == resolve(identified(state), second.resolution.assignment, {}).assignment
