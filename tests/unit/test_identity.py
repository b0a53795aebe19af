import dataclasses
import random

import pytest
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


# ----- merge protection, priorities, survivorship ------------------------------------------------
from datetime import UTC, datetime  # noqa: E402
from zoneinfo import ZoneInfo  # noqa: E402

from hypothesis import strategies as st  # noqa: E402

from mapping.identity import identifiers, same_person_names, survive  # noqa: E402
from mapping.model import Contact  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def contact(key: str, email: str | None = None, mobile: str | None = None, role: bool = False, **kw: object) -> Contact:
    system, _, rid = key.partition(":")
    return Contact(
        system,
        rid,
        kw.pop("updated_at", T0),
        email=email,
        email_role=role,  # type: ignore[arg-type]
        phone=mobile,
        phone_kind="mobile" if mobile else None,
        **kw,  # type: ignore[arg-type]
    )


def test_role_addresses_and_landlines_never_join() -> None:
    records = [
        contact("shop:1", "info@bedrijf.nl", role=True),
        contact("shop:2", "info@bedrijf.nl", role=True),
        Contact("crm", "1", T0, phone="+31201234567", phone_kind="landline"),
        Contact("crm", "2", T0, phone="+31201234567", phone_kind="landline"),
    ]
    result = resolve([(c.key, identifiers(c)) for c in records], {}, {})
    assert len(set(result.assignment.values())) == 4


def test_an_identifier_on_too_many_records_of_one_system_is_shared() -> None:
    b2b = [contact(f"web:{i}", "orders@groothandel.nl") for i in range(4)]  # a shop's own address
    person = [contact("shop:9", "piet@example.nl"), contact("crm:9", "piet@example.nl")]
    records = b2b + person
    result = resolve([(c.key, identifiers(c)) for c in records], {}, {}, limits={"email": 3})
    assert len({result.assignment[c.key] for c in b2b}) == 4
    assert result.shared == {("email", "orders@groothandel.nl"): 4}
    assert result.assignment["shop:9"] == result.assignment["crm:9"]  # one per system: a person


def test_mobile_joins_but_email_is_stronger_under_the_size_limit() -> None:
    records = [
        contact("a:1", "x@example.nl", "+31611111111"),
        contact("b:1", "x@example.nl"),
        contact("c:1", None, "+31611111111"),
    ]
    joined = resolve([(c.key, identifiers(c)) for c in records], {}, {})
    assert len(set(joined.assignment.values())) == 1
    assert {link.kind for link in joined.links} == {"email", "mobile"}
    limited = resolve([(c.key, identifiers(c)) for c in records], {}, {}, max_profile=2)
    # email joins first (stronger), so the mobile join that would make three records is refused
    assert limited.assignment["a:1"] == limited.assignment["b:1"] != limited.assignment["c:1"]
    assert [(link.kind, link.value) for link in limited.refused] == [("mobile", "+31611111111")]


def test_a_given_name_of_dots_alone_is_no_name_and_a_real_disagreement_still_keeps_a_mobile_apart() -> None:
    """A placeholder given name ("." where a form demanded one, or dots and spaces) says no more
    than none: a mobile number joins its record to another whatever that one's name (it raised
    IndexError, so every cycle of such a merchant failed in identity resolution). A name that does
    disagree still keeps the number from joining."""
    records = [contact(key, None, "+31611111111") for key in ("crm:1", "shop:1", "web:1", "web:2")]
    names = {"crm:1": "Jan", "shop:1": ".", "web:1": " . . "}
    result = resolve([(c.key, identifiers(c)) for c in records], {}, {}, names=names)
    assert len(set(result.assignment.values())) == 1  # Jan's number: the placeholders and the nameless join
    names["web:2"] = "Piet"
    result = resolve([(c.key, identifiers(c)) for c in records], {}, {}, names=names)
    # Now a family's number: Jan and Piet stay apart, and so do the records without a real name.
    assert len(set(result.assignment.values())) == 4
    assert same_person_names(".", "Jan") and same_person_names("Jan", ". .") and same_person_names(None, ".")
    assert same_person_names("Jan", ". \t") and same_person_names("\u2028", "Jan")  # white space of other kinds
    assert not same_person_names("Piet", "Jan") and same_person_names("J.", "Jan")


def test_a_record_without_a_name_never_carries_a_familys_number_from_one_member_to_another() -> None:
    """A mobile number joins clusters, not records: a record with no given name agreed with Jan and
    with Piet alike, so as the first holder of their family's number it joined both into one profile
    (two people's orders, segments and tags as one). Now it joins neither: whose record it is, the
    number cannot say."""
    family = "+31611111111"
    records = [contact("crm:1", None, family), contact("shop:2", None, family), contact("web:3", None, family)]
    result = resolve([(c.key, identifiers(c)) for c in records], {}, {}, names={"shop:2": "Jan", "web:3": "Piet"})
    assert len(set(result.assignment.values())) == 3 and result.links == []
    # The nameless record is Piet's by their shared email: Jan's number still joins nobody to Piet.
    records = [
        contact("crm:1", "piet@x.nl", family),
        contact("shop:2", None, family),
        contact("web:3", "piet@x.nl"),
    ]
    result = resolve([(c.key, identifiers(c)) for c in records], {}, {}, names={"shop:2": "Jan", "web:3": "Piet"})
    assert result.assignment["crm:1"] == result.assignment["web:3"] != result.assignment["shop:2"]
    assert [(link.kind, link.b) for link in result.links] == [("email", "web:3")]
    # The two records of one component stay one component (resolved again together by difference).
    assert len(set(result.components)) == 1


def test_on_a_familys_number_each_member_still_finds_their_own_records() -> None:
    """Piet's record comes first on the number, so it used to be the only one compared against:
    Jan's two records, which agree, stayed apart. Each holder now joins the first one before it whose
    names agree; "J." agrees with Jan and with Joost, who do not agree with each other."""
    family = "+31611111111"
    keys = ("a:1", "b:1", "c:1", "d:1", "e:1")
    names = {"a:1": "Piet", "b:1": "Jan", "c:1": "jan", "d:1": "J.", "e:1": "Joost"}
    result = resolve([(k, [("mobile", family)]) for k in keys], {}, {}, names=names)
    at = result.assignment
    assert at["b:1"] == at["c:1"] == at["d:1"] != at["a:1"]
    assert len({at["a:1"], at["b:1"], at["e:1"]}) == 3  # Joost disagrees with Jan, though not with J.
    assert [(link.a, link.b) for link in result.links] == [("b:1", "c:1"), ("b:1", "d:1")]


names_pool = st.sampled_from([None, ".", "Jan", "jan", "J.", "Joost", "Piet"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 6),
            st.one_of(st.none(), st.sampled_from(["x@x.nl", "y@x.nl"])),
            st.one_of(st.none(), st.sampled_from(["+31611111111", "+31622222222"])),
            names_pool,
        ),
        min_size=1,
        max_size=16,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.one_of(st.none(), st.integers(1, 3)),
    st.integers(2, 8),
)
def test_two_disagreeing_names_share_a_profile_only_by_email_or_link(
    rows: list[tuple[str, int, str | None, str | None, str | None]], limit: int | None, max_profile: int
) -> None:
    """Whatever the records (and the limits on shared values and profile size), wherever a profile
    holds two given names that disagree, the records carrying them are joined by emails and links
    alone: no mobile number (directly, or through a record with no name) put two people together."""
    records = [contact(f"{s}:{n}", email, mobile) for s, n, email, mobile, _ in rows]
    names = {f"{s}:{n}": name for s, n, _, _, name in rows if name is not None}
    limits = {} if limit is None else {"email": limit, "mobile": limit}
    result = resolve(
        [(c.key, identifiers(c)) for c in records], {}, {}, limits=limits, max_profile=max_profile, names=names
    )
    parent = {c.key: c.key for c in records}

    def top(key: str) -> str:
        while parent[key] != key:
            key = parent[key]
        return key

    for link in result.links:
        if link.kind != "mobile":
            parent[top(link.a)] = top(link.b)
    for a in names:
        for b in names:
            if result.assignment[a] == result.assignment[b] and not same_person_names(names[a], names[b]):
                assert top(a) == top(b), (a, b, result.links)


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        ("J.", "Jan", True),  # an initial
        ("J. W.", "Jan Willem", True),
        ("Jan", "Jan Willem", True),  # as far as the shorter goes
        ("Anne-Marie", "anne marie", True),
        ("Ad", "Anna", False),  # two letters are a name, not an initial
        ("Bo", "Bram", False),
        ("Jo", "Jeroen", False),
        ("Anne Marie", "Anne Sophie", False),  # a double name is more than its first word
        ("Jan Willem", "Jan Peter", False),
        ("J", "Piet", False),
    ],
)
def test_given_names_agree_word_by_word_and_a_single_letter_is_an_initial(a: str, b: str, agree: bool) -> None:
    """A family's mobile joined a father "Ad" and a daughter "Anna" (a two-letter name was read as
    an initial), and "Jan Willem" with "Jan Peter" (only the first word was compared)."""
    assert same_person_names(a, b) is agree and same_person_names(b, a) is agree
    family = "+31611111111"
    holders = [("crm:1", [("mobile", family)]), ("shop:1", [("mobile", family)])]
    result = resolve(holders, {}, {}, names={"crm:1": a, "shop:1": b})
    assert (result.assignment["crm:1"] == result.assignment["shop:1"]) is agree


@given(st.text(max_size=8), st.text(max_size=8))
def test_any_two_given_names_are_compared_without_failing(a: str, b: str) -> None:
    """Whatever text a state holds as a given name, the comparison answers, and the same either
    way round, so no stored name can stop identity resolution or make it depend on record order."""
    assert same_person_names(a, b) == same_person_names(b, a)


pools = st.tuples(
    st.sampled_from(["a", "b", "c", "d"]),
    st.integers(0, 9),
    st.one_of(st.none(), st.sampled_from(["jan@x.nl", "piet@x.nl", "info@x.nl", "kees@x.nl"])),
    st.one_of(st.none(), st.sampled_from(["+31611111111", "+31622222222", "+31633333333"])),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(pools, min_size=1, max_size=30, unique_by=lambda t: (t[0], t[1])), st.randoms(use_true_random=False))
def test_resolution_is_order_independent_and_never_joins_by_role_or_shared(
    rows: list[tuple[str, int, str | None, str | None]], rng: random.Random
) -> None:
    records = [
        contact(f"{s}:{n}", email, mobile, role=bool(email and email.startswith("info@")))
        for s, n, email, mobile in rows
    ]
    limits = {"email": 2, "mobile": 2}
    baseline = resolve([(c.key, identifiers(c)) for c in records], {}, {}, limits=limits, max_profile=4)
    shuffled = list(records)
    rng.shuffle(shuffled)
    again = resolve([(c.key, identifiers(c)) for c in shuffled], {}, {}, limits=limits, max_profile=4)
    assert again.assignment == baseline.assignment
    assert again.links == baseline.links
    for link in baseline.links:
        assert not link.value.startswith("info@")
        assert (link.kind, link.value) not in baseline.shared
    assert max(len(keys) for keys in baseline.members().values()) <= 4


def test_survivorship_by_priority_then_recency() -> None:
    old = contact("crm:1", "jan@x.nl", given_name="Jan", city="Utrecht", updated_at=datetime(2025, 1, 1, tzinfo=UTC))
    new = contact(
        "shop:1",
        "jan@x.nl",
        given_name="Johannes",
        city="Amsterdam",
        postcode="1011 AB",
        updated_at=datetime(2026, 6, 1, tzinfo=UTC),
    )
    by_recency = survive([old, new], [])
    assert by_recency["given_name"].value == "Johannes" and by_recency["given_name"].source == "shop:1"
    assert by_recency["given_name"].why == "most recent: updated 2026-06-01"
    assert (by_recency["city"].value, by_recency["postcode"].value) == ("Amsterdam", "1011 AB")
    by_priority = survive([new, old], ["crm"])
    assert by_priority["city"].value == "Utrecht" and by_priority["city"].why == "source priority: crm before shop"
    # With [segments] timezone the date is the merchant's: 23:30 UTC on 31 May is 1 June in Amsterdam.
    late = dataclasses.replace(new, updated_at=datetime(2026, 5, 31, 23, 30, tzinfo=UTC))
    assert survive([old, late], [])["given_name"].why == "most recent: updated 2026-05-31"
    local = survive([old, late], [], ZoneInfo("Europe/Amsterdam"))["given_name"]
    assert (local.value, local.why) == ("Johannes", "most recent: updated 2026-06-01")
    assert "postcode" not in by_priority  # Amsterdam's postcode is not Utrecht's: an address comes whole


def test_an_address_and_a_name_come_whole_from_one_record_and_a_personal_email_first() -> None:
    """Field by field, a trusted AFAS record (a role address, Jan Jansen, Kerkstraat 1, Utrecht)
    and a Shopify one (Jan de Vries, Damrak 70 C, 1012 LM Amsterdam) made "Jan de Jansen" of
    "Kerkstraat 1 C, 1012 LM Utrecht", reached at info@."""
    afas = contact(
        "afas:1",
        "info@bakkerij-jansen.nl",
        role=True,
        given_name="Jan",
        family_name="Jansen",
        street="Kerkstraat",
        house_number="1",
        city="Utrecht",
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    shop = contact(
        "shop:1",
        "jan@devries.nl",
        given_name="Jan",
        infix="de",
        family_name="Vries",
        street="Damrak",
        house_number="70",
        house_addition="C",
        postcode="1012 LM",
        city="Amsterdam",
        country="NL",
        updated_at=datetime(2026, 6, 1, tzinfo=UTC),
    )
    chosen = survive([shop, afas], ["afas"])
    values = {name: choice.value for name, choice in chosen.items()}
    assert {k: values.get(k) for k in ("given_name", "infix", "family_name")} == {
        "given_name": "Jan",
        "infix": None,
        "family_name": "Jansen",
    }
    address = ("street", "house_number", "house_addition", "postcode", "city", "country")
    assert [values.get(k) for k in address] == ["Kerkstraat", "1", None, None, "Utrecht", None]
    assert {chosen[k].source for k in ("street", "house_number", "city", "family_name")} == {"afas:1"}
    assert chosen["city"].why == "source priority: afas before shop"
    assert values["email"] == "jan@devries.nl"  # the person's own, though from the less trusted source
    assert chosen["email"].why == "a personal address before a role address"
    # Older and less trusted still wins the email, and explain says why (not "tie" or "most recent").
    older_shop = dataclasses.replace(shop, updated_at=datetime(2025, 1, 1, tzinfo=UTC))
    older = survive([older_shop, afas], ["afas"])
    assert (older["email"].value, older["email"].why) == ("jan@devries.nl", "a personal address before a role address")
    # Where the personal address wins by trust anyway, trust is the reason given.
    assert survive([older_shop, afas], ["shop"])["email"].why == "source priority: shop before afas"
    # With the shop trusted first, its address and name come whole instead.
    trusted_shop = {name: choice.value for name, choice in survive([afas, shop], ["shop"]).items()}
    assert [trusted_shop.get(k) for k in address] == ["Damrak", "70", "C", "1012 LM", "Amsterdam", "NL"]
    assert (trusted_shop["infix"], trusted_shop["family_name"]) == ("de", "Vries")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(pools, min_size=1, max_size=30, unique_by=lambda t: (t[0], t[1])),
    st.lists(st.sampled_from(["p_old1", "p_old2", "p_old3", None]), min_size=30, max_size=30),
)
def test_members_are_the_assignment_by_key(
    rows: list[tuple[str, int, str | None, str | None]], former: list[str | None]
) -> None:
    """`members()` comes from the named clusters, not from sorting the assignment: the same dict,
    in the same order, with previous ids kept, merged (aliases) and split."""
    records = [contact(f"{s}:{n}", email, mobile) for s, n, email, mobile in rows]
    previous = {c.key: pid for c, pid in zip(records, former, strict=False) if pid is not None}
    ages = {"p_old1": 3, "p_old2": 1, "p_old3": 2}
    result = resolve([(c.key, identifiers(c)) for c in records], previous, ages, limits={"mobile": 2}, max_profile=3)
    by_key: dict[str, list[str]] = {}
    for key, profile in sorted(result.assignment.items()):
        by_key.setdefault(profile, []).append(key)
    assert list(result.members().items()) == list(by_key.items())
