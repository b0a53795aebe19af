import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.identity import resolve


def _ids(pairs: list[tuple[str, str | None]]) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(key, [("email", email)] if email else []) for key, email in pairs]


RECORDS = [
    ("shop:1", "jan@example.nl"),
    ("web:10", "jan@example.nl"),
    ("shop:2", "piet@example.nl"),
    ("web:11", None),
    ("shop:3", "kees@example.nl"),
    ("web:12", "kees@example.nl"),
    ("crm:7", "kees@example.nl"),
]


def _partition(assignment: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for key, pid in assignment.items():
        groups.setdefault(pid, set()).add(key)
    return {frozenset(g) for g in groups.values()}


def test_records_sharing_an_email_are_one_profile() -> None:
    result = resolve(_ids(RECORDS), {}, {})
    assert _partition(result.assignment) == {
        frozenset({"shop:1", "web:10"}),
        frozenset({"shop:2"}),
        frozenset({"web:11"}),
        frozenset({"shop:3", "web:12", "crm:7"}),
    }
    assert {(link.kind, link.value) for link in result.links} == {
        ("email", "jan@example.nl"),
        ("email", "kees@example.nl"),
    }


@settings(max_examples=50, deadline=None)
@given(st.randoms(use_true_random=False))
def test_same_partition_and_ids_in_any_order(rng: random.Random) -> None:
    baseline = resolve(_ids(RECORDS), {}, {})
    shuffled = list(RECORDS)
    rng.shuffle(shuffled)
    again = resolve(_ids(shuffled), {}, {})
    assert again.assignment == baseline.assignment


def test_ids_are_stable_across_runs() -> None:
    first = resolve(_ids(RECORDS), {}, {})
    second = resolve(_ids(RECORDS), first.assignment, {pid: 1 for pid in first.assignment.values()})
    assert second.assignment == first.assignment
    assert not second.created and not second.aliases


def test_merge_keeps_the_older_id_and_aliases_the_other() -> None:
    previous = {"shop:2": "p_old", "web:20": "p_new"}
    ages = {"p_old": 1, "p_new": 5}
    result = resolve(_ids([("shop:2", "piet@example.nl"), ("web:20", "piet@example.nl")]), previous, ages)
    assert set(result.assignment.values()) == {"p_old"}
    assert result.aliases == {"p_new": "p_old"}


def test_split_leaves_the_id_with_the_larger_part() -> None:
    previous = {"a:1": "p_x", "b:1": "p_x", "c:1": "p_x"}
    # a:1 changed its email: it leaves; b:1 and c:1 still share theirs
    records = [("a:1", "other@example.nl"), ("b:1", "same@example.nl"), ("c:1", "same@example.nl")]
    result = resolve(_ids(records), previous, {"p_x": 1})
    assert result.assignment["b:1"] == result.assignment["c:1"] == "p_x"
    assert result.assignment["a:1"] != "p_x"
    assert result.assignment["a:1"] in result.created


def test_a_stored_id_of_another_system_joins_records_without_any_shared_email() -> None:
    records = [
        ("shop:gid://shopify/Customer/5", [("record", "shop:gid://shopify/Customer/5"), ("email", "a@x.nl")]),
        ("erp:77", [("record", "erp:77"), ("record", "shop:gid://shopify/Customer/5"), ("email", "b@y.nl")]),
    ]
    result = resolve(records, {}, {})
    assert len(set(result.assignment.values())) == 1
    assert [(link.kind, link.value) for link in result.links] == [("record", "shop:gid://shopify/Customer/5")]
