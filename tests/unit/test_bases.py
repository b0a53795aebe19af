"""The brief's other bases (mapping/bases.py, issue 18 items 1 and 2), worked out by hand:
age and bands on their boundaries, B2B signals, interest slugs and ranking, the discount share,
`abandoned-checkout` on both edges of its window, cross-sell, win-back, regions, and consent
(an unsubscribe anywhere wins; a consent-marked segment never reaches someone without consent)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping.bases import (
    BaseSettings,
    OrderDetails,
    PersonFields,
    age_band,
    age_on,
    b2b_reason,
    base_columns,
    base_of,
    slug,
)
from mapping.identity import survive
from mapping.model import Contact
from mapping.normalize import NORMALISERS, Invalid
from mapping.segments import Rule, SegmentSettings, assess
from mapping.traits import OrderColumns, trait_columns

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STAMP = int(NOW.timestamp())
HOUR, DAY = 3600, 86_400


@pytest.mark.parametrize(
    ("born", "today", "age"),
    [
        ("1990-06-01", date(2026, 6, 1), 36),  # the birthday itself
        ("1990-06-02", date(2026, 6, 1), 35),  # a day before it
        ("2000-02-29", date(2026, 2, 28), 25),  # a leap-day birthday, not yet in a common year
        ("2000-02-29", date(2026, 3, 1), 26),
        ("2026-06-02", date(2026, 6, 1), None),  # born tomorrow: an error in the data, no age
        (None, date(2026, 6, 1), None),
    ],
)
def test_age_in_whole_years(born: str | None, today: date, age: int | None) -> None:
    assert age_on(born, today) == age


@pytest.mark.parametrize(
    ("age", "band"),
    [(17, "<18"), (18, "18-24"), (24, "18-24"), (25, "25-34"), (64, "55-64"), (65, "65+"), (101, "65+"), (None, "")],
)
def test_age_bands_on_their_edges(age: int | None, band: str) -> None:
    assert age_band(age, (18, 25, 35, 45, 55, 65)) == band


def test_b2b_needs_a_strong_signal_or_a_company_with_its_own_domain() -> None:
    def reason(**given: Any) -> str | None:
        fields: dict[str, Any] = {"business": None, "kvk": None, "vat": None, "company": None, "email": None}
        return b2b_reason(**(fields | given))

    assert reason(business=True) == "the system marks it a company"
    assert reason(kvk="12345678") == "has a KvK number"
    assert reason(vat="NL001234567B01") == "has a VAT number"
    assert reason(company="Bakkerij Jansen", email="piet@bakkerijjansen.nl") == (
        "company name and an address at bakkerijjansen.nl"
    )
    assert reason(company="Bakkerij Jansen", email="piet@gmail.com") is None  # a free mailbox says nothing
    assert reason(company="Bakkerij Jansen", email="piet@Ziggo.NL") is None
    assert reason(email="piet@bakkerijjansen.nl") is None  # an own domain alone: could be a family's
    assert reason(business=False, company="Bakkerij Jansen") is None


@pytest.mark.parametrize(
    ("label", "expected"),
    [("Schoenen & Tassen", "schoenen-tassen"), ("Café Crème", "cafe-creme"), ("  T-shirts ", "t-shirts"), ("—", "")],
)
def test_interest_slugs(label: str, expected: str) -> None:
    assert slug(label) == expected


def test_base_of_names_the_base_of_a_segment() -> None:
    assert [base_of(n) for n in ("region-nl-nh", "interest-shoes", "b2b", "win-back", "region", "friends")] == [
        "region",
        "interest",
        "b2b",
        "win-back",
        None,
        None,
    ]


def test_normalisers_of_the_new_fields() -> None:
    birth = NORMALISERS["birth_date"]
    assert birth("1999-05-13T00:00:00") == "1999-05-13"  # SuperOffice's datetime form
    assert birth("13-05-1999") == "1999-05-13"
    assert birth("0001-01-01T00:00:00") is None  # .NET's "no date"
    assert birth("1900-01-01") is None
    assert birth(False) is None  # Lightspeed's "empty"
    assert isinstance(birth("1999-02-30"), Invalid)
    consent = NORMALISERS["consent"]
    assert [consent(v) for v in ("SUBSCRIBED", "NOT_SUBSCRIBED", "PENDING", "UNSUBSCRIBED", True, None)] == [
        True,
        False,
        False,  # a double opt-in not yet confirmed is no consent
        False,
        True,
        None,
    ]
    assert consent("MAYBE") is False  # a state crmsync does not know is no consent
    flag = NORMALISERS["flag"]
    assert [flag(v) for v in ([], ["SUMMER10"], [{"code": "x"}], False, "SUMMER", "", None)] == [
        False,
        True,
        True,
        False,
        True,
        False,
        None,
    ]
    labels = NORMALISERS["labels"]
    assert labels(["Shoes", None, "", "Bags", "Shoes", {"name": "Hats"}]) == ("Shoes", "Bags", "Hats")


def person(n: int, **columns: Sequence[Any]) -> PersonFields:
    empty: list[Any] = [None] * n
    return PersonFields(**{name: columns.get(name, empty) for name in PersonFields.__dataclass_fields__})


def details(rows: list[tuple[int, int, bool, int, bool, tuple[str, ...]]]) -> OrderDetails:
    """(profile, seconds before NOW, counts, discount, unfinished, categories) per order."""
    return OrderDetails(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([STAMP - r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.bool_),
        np.array([r[3] for r in rows], dtype=np.int8),
        np.array([r[4] for r in rows], dtype=np.bool_),
        [r[5] for r in rows],
    )


def test_discount_share_and_interests_by_hand() -> None:
    orders = details(
        [
            # profile 0: three orders, two with a known discount state (one with a code)
            (0, 10 * DAY, True, 1, False, ("Shoes",)),
            (0, 20 * DAY, True, 0, False, ("Shoes", "Bags")),
            (0, 30 * DAY, True, -1, False, ("Bags", "Hats")),
            (0, 40 * DAY, False, 1, False, ("Coats",)),  # cancelled: counts for nothing
            (0, -DAY, True, 1, False, ("Scarves",)),  # dated after now: not yet happened
            # profile 1: a tie between two categories goes to the alphabet
            (1, DAY, True, 0, False, ("Tassen",)),
            (1, DAY, True, 0, False, ("Schoenen",)),
        ]
    )
    bases = base_columns(person(3), orders, 3, NOW, BaseSettings())
    assert bases.discount_share[0] == pytest.approx(0.5)
    assert bases.discount_share[1] == 0.0
    assert np.isnan(bases.discount_share[2])  # no orders: unknown, not 0
    assert bases.interests[0] == ("bags", "shoes", "hats")  # bags 2, shoes 2 (tie: alphabet), hats 1
    assert str(bases.top_interest[0]) == "bags"
    assert bases.interests[1] == ("schoenen", "tassen")
    assert bases.interests[2] == () and str(bases.top_interest[2]) == ""


@pytest.mark.parametrize(
    ("rows", "member"),
    [
        ([(0, HOUR, False, -1, True, ())], True),  # exactly the minimum age (60 minutes)
        ([(0, HOUR - 1, False, -1, True, ())], False),  # a minute short: they may still be paying
        ([(0, 7 * DAY, False, -1, True, ())], True),  # the last second of the 7-day window
        ([(0, 7 * DAY + 1, False, -1, True, ())], False),  # past the window: the tag leaves
        ([(0, 2 * DAY, False, -1, True, ()), (0, DAY, True, -1, False, ())], False),  # bought since
        ([(0, 2 * DAY, False, -1, True, ()), (0, 2 * DAY, True, -1, False, ())], False),  # same second
        ([(0, 2 * DAY, False, -1, True, ()), (0, 3 * DAY, True, -1, False, ())], True),  # bought before
        ([(0, 2 * DAY, False, -1, True, ()), (0, DAY, False, -1, False, ())], True),  # a cancelled order
        ([(0, -HOUR, False, -1, True, ())], False),  # a checkout dated after now
        # A new checkout still too young to count does not hide an older one that does.
        ([(0, 2 * DAY, False, -1, True, ()), (0, 10 * 60, False, -1, True, ())], True),
    ],
)
def test_abandoned_checkout_on_both_edges_of_its_window(
    rows: list[tuple[int, int, bool, int, bool, tuple[str, ...]]], member: bool
) -> None:
    bases = base_columns(person(1), details(rows), 1, NOW, BaseSettings())
    assert bool(bases.abandoned[0]) is member


@pytest.mark.parametrize("zone", [None, "Europe/Amsterdam"])
def test_abandoned_checkout_days_are_days_on_the_merchants_calendar(zone: str | None) -> None:
    """NOW is 14:00 on 1 June in Amsterdam. A checkout at 04:00 on 25 May (local) is 7 days old
    on the merchant's calendar, inside `abandoned_checkout_days = 7`, though 7 days and 10 hours
    ago; one at 23:00 on 24 May is 8 days old, outside either way."""
    from zoneinfo import ZoneInfo

    from mapping.calendar_days import AS_BEFORE, Calendar

    calendar = Calendar(ZoneInfo(zone)) if zone else AS_BEFORE
    rows = [(0, 7 * DAY + 10 * HOUR, False, -1, True, ()), (1, 7 * DAY + 15 * HOUR, False, -1, True, ())]
    bases = base_columns(person(2), details(rows), 2, NOW, BaseSettings(), calendar=calendar)
    assert bases.abandoned.tolist() == [zone is not None, False]


def test_an_order_in_any_system_ends_it() -> None:
    """The traits' last order (every system: an AFAS invoice, an order whose facts were never read)
    counts as buying since, not only the orders with facts."""
    checkout = details([(0, 2 * DAY, False, -1, True, ()), (1, 2 * DAY, False, -1, True, ())])
    last_order = np.array([STAMP - DAY, STAMP - 3 * DAY], dtype=np.float64)
    bases = base_columns(person(2), checkout, 2, NOW, BaseSettings(), last_order)
    assert bases.abandoned.tolist() == [False, True]
    nothing = base_columns(person(2), checkout, 2, NOW, BaseSettings(), np.full(2, np.nan))
    assert nothing.abandoned.tolist() == [True, True]


def test_regions_b2b_ages_and_consent_columns() -> None:
    fields = person(
        4,
        email=["a@gmail.com", "b@jansen.nl", None, "d@x.be"],
        company=[None, "Jansen BV", None, None],
        postcode=["1012 AB", "3511 AA", None, "2000"],
        country=["NL", "NL", None, "BE"],
        birth_date=["1990-06-01", None, "2010-01-01", None],
        email_consent=[True, False, None, True],
    )
    bases = base_columns(fields, OrderDetails.empty(), 4, NOW, BaseSettings())
    assert bases.region.tolist() == ["NL-NH", "NL-UT", "", "BE-VAN"]
    assert bases.b2b.tolist() == [False, True, False, False]
    assert [str(b) for b in bases.age_band] == ["35-44", "", "<18", ""]
    assert bases.email_consent.tolist() == [True, False, False, True]  # unknown is no consent


def orders_for(rows: list[tuple[int, int, bool]], size: int) -> OrderColumns:
    """(profile, days before NOW, counts) per valid order, 100.00 each."""
    n = len(rows)
    return OrderColumns(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.full(n, 10_000, dtype=np.int64),
        np.array([STAMP - r[1] * DAY for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.bool_),
    )


def test_the_base_segments_by_hand() -> None:
    # 0: friends, active, one category      -> cross-sell
    # 1: friends, at-risk (last 200 days)   -> win-back, and two categories: no cross-sell
    # 2: a passer-by with an open checkout and consent -> abandoned-checkout
    # 3: the same without consent           -> not abandoned-checkout (consent-marked by default)
    traits = trait_columns(
        orders_for([(0, 10, True), (0, 100, True), (0, 200, True), (1, 200, True), (1, 300, True)], 4), 4, NOW
    )
    order_details = details(
        [
            (0, 10 * DAY, True, 0, False, ("Shoes",)),
            (0, 100 * DAY, True, 0, False, ("Shoes",)),
            (1, 200 * DAY, True, 0, False, ("Shoes",)),
            (1, 300 * DAY, True, 0, False, ("Bags",)),
            (2, DAY, False, -1, True, ()),
            (3, DAY, False, -1, True, ()),
        ]
    )
    fields = person(
        4,
        email_consent=[None, None, True, False],
        postcode=["1012 AB", None, None, None],
        country=["NL", None, None, None],
    )
    settings_ = SegmentSettings(
        quadrant={"loyal_min_orders": 2, "high_value_min_revenue": 200},
        bases=BaseSettings(enabled=("region", "interest", "b2b", "cross-sell", "win-back", "abandoned-checkout")),
    )
    bases = base_columns(fields, order_details, 4, NOW, settings_.bases)
    result = assess(traits, settings_, NOW, bases=bases)
    members = [
        sorted(
            m.segments
            - {"passers-by", "friends", "tier-bronze", "tier-silver", "tier-gold"}
            - {n for n in m.segments if n.startswith("lifecycle-")}
        )
        for m in result.memberships()
    ]
    assert members == [
        ["cross-sell", "interest-shoes", "region-nl-nh"],
        ["interest-bags", "interest-shoes", "win-back"],
        ["abandoned-checkout"],
        [],
    ]
    assert "region-nl-nh" in result.names and "interest-bags" in result.names


def test_a_rule_can_ask_for_consent_and_read_the_bases() -> None:
    traits = trait_columns(orders_for([(0, 10, True), (1, 10, True)], 2), 2, NOW)
    fields = person(2, email_consent=[True, None], company=["A BV", "B BV"], email=["x@a.nl", "y@b.nl"])
    rules = (
        Rule(name="zakelijk-nieuws", when="b2b and email_consent", requires_consent=False),
        Rule(name="zakelijk-mail", when="b2b", requires_consent=True),
    )
    settings_ = SegmentSettings(rules=rules)
    assert settings_.uses_bases()
    bases = base_columns(fields, OrderDetails.empty(), 2, NOW, settings_.bases)
    result = assess(traits, settings_, NOW, bases=bases)
    assert ["zakelijk-mail" in m.segments for m in result.memberships()] == [True, False]
    assert ["zakelijk-nieuws" in m.segments for m in result.memberships()] == [True, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 10 * DAY)), min_size=1, max_size=40))
def test_a_consent_marked_segment_never_reaches_someone_without_consent(
    people: list[tuple[bool, bool, int]],
) -> None:
    size = len(people)
    order_details = details([(i, age, False, -1, True, ()) for i, (_, _, age) in enumerate(people)])
    fields = person(size, email_consent=[c if known else None for c, known, _ in people])
    settings_ = SegmentSettings(bases=BaseSettings(enabled=("abandoned-checkout",)))
    bases = base_columns(fields, order_details, size, NOW, settings_.bases)
    result = assess(trait_columns(orders_for([], size), size, NOW), settings_, NOW, bases=bases)
    for (consent, known, age), membership in zip(people, result.memberships(), strict=True):
        in_window = HOUR <= age <= 7 * DAY
        assert ("abandoned-checkout" in membership.segments) == (consent and known and in_window)


def test_an_opt_out_anywhere_wins_over_an_opt_in_elsewhere() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    shop = Contact("shop", "1", moment + timedelta(days=9), email="a@x.nl", email_consent=True)
    crm = Contact("crm", "1", moment, email="a@x.nl", email_consent=False)
    chosen = survive([shop, crm], ["shop", "crm"])
    assert chosen["email_consent"].value is False and chosen["email_consent"].source == "crm:1"
    assert survive([shop], ["shop"])["email_consent"].value is True


def test_consent_marks_on_rules_and_built_ins_are_kept() -> None:
    rule = Rule(name="vip-mail", when="order_count > 1")
    marked = SegmentSettings(rules=(rule,), bases=BaseSettings(requires_consent=("vip-mail", "lifecycle-lapsed")))
    assert marked.needs_consent("vip-mail") and marked.needs_consent("lifecycle-lapsed")
    assert marked.uses_bases()  # consent is read although no base is on
    traits = trait_columns(orders_for([(0, 400, True), (1, 400, True)], 2), 2, NOW)
    bases = base_columns(person(2, email_consent=[True, None]), OrderDetails.empty(), 2, NOW, marked.bases)
    lapsed = [("lifecycle-lapsed" in m.segments) for m in assess(traits, marked, NOW, bases=bases).memberships()]
    assert lapsed == [True, False]
    with pytest.raises(ValueError, match="consent"):
        assess(traits, marked, NOW)  # never written for everyone, nor emptied for everyone
    assert not SegmentSettings().uses_bases()  # the default marks abandoned-checkout, which is off


def test_bases_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="not a base"):
        BaseSettings(enabled=("age",))
    with pytest.raises(ValueError, match="rising ages"):
        BaseSettings(age_bands=(30, 20))
    with pytest.raises(ValueError, match="names no family"):
        SegmentSettings(bases=BaseSettings(requires_consent=("shoes-*",)))
    with pytest.raises(ValueError, match="switched on"):
        SegmentSettings(
            rules=(Rule(name="win-back", when="order_count > 1"),), bases=BaseSettings(enabled=("win-back",))
        )
    # A rule that carries a base's name is the rule's while that base is off (configs of before).
    assert SegmentSettings(rules=(Rule(name="win-back", when="order_count > 1"),)).knows("win-back")
    assert SegmentSettings(bases=BaseSettings(enabled=("region",))).knows("region-nl-nh")
    assert not SegmentSettings().knows("region-nl-nh")


def test_a_system_gets_only_the_bases_it_is_switched_on_for() -> None:
    from mapping.model import Membership
    from sync.compute import bases_for

    member = Membership(frozenset({"friends", "abandoned-checkout", "region-nl-nh", "win-back"}), None)
    enabled = ("abandoned-checkout", "region", "win-back")
    assert bases_for(member, ["abandoned-checkout"], enabled).segments == {"friends", "abandoned-checkout"}
    assert bases_for(member, [], enabled).segments == {"friends"}
    # A rule named like a base that is off is the rule's, and goes everywhere.
    assert bases_for(member, [], ("region",)).segments == {"friends", "abandoned-checkout", "win-back"}


def test_a_change_in_the_bases_changes_the_stored_traits_fingerprint() -> None:
    from sync.segmenting import trait_fingerprints, trait_json

    traits = trait_columns(orders_for([(0, 10, True), (1, 10, True)], 2), 2, NOW)
    settings_ = SegmentSettings(bases=BaseSettings(enabled=("region",)))

    def run(postcodes: list[str | None]) -> tuple[list[int], list[str]]:
        fields = person(2, postcode=postcodes, country=["NL", "NL"])
        bases = base_columns(fields, OrderDetails.empty(), 2, NOW, settings_.bases)
        result = assess(traits, settings_, NOW, bases=bases)
        return trait_fingerprints(traits, result, ["shop"], bases).tolist(), trait_json(
            traits, result, ["shop"], bases=bases
        )

    prints, docs = run(["1012 AB", "3511 AA"])
    again, same = run(["1012 AB", "3511 AA"])
    moved, moved_docs = run(["1012 AB", "9711 AB"])
    assert (prints, docs) == (again, same)  # the same inputs: the same fingerprints and JSON
    assert prints[0] == moved[0] and prints[1] != moved[1]  # only the one who moved
    assert '"region": "NL-GR"' in moved_docs[1] and docs[0] == moved_docs[0]


def test_consent_belongs_to_an_address_not_to_the_person() -> None:
    from mapping.bases import consented_records

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    records = [
        Contact("shop", "1", moment, email="piet@example.nl", email_consent=True),
        Contact("crm", "1", moment, email="piet@example.nl"),  # the same address, nothing said: yes
        Contact("woo", "1", moment, email="piet.work@firma.nl"),  # the same person, another address: no
        Contact("shop", "2", moment, email="an@example.nl", email_consent=True),
        Contact("crm", "2", moment, email="an@example.nl", email_consent=False),  # an opt-out wins
        Contact("crm", "3", moment, email_consent=True),  # no address to mail
    ]
    assert consented_records(records) == {"shop:1", "crm:1"}


def test_a_region_reads_the_country_of_the_postcodes_own_record() -> None:
    from mapping.identity import FieldChoice
    from sync.segmenting import person_fields

    chosen = {
        "postcode": FieldChoice("2000", "shop:1", "only source"),
        "country": FieldChoice("NL", "crm:1", "source priority"),  # from a record without a postcode
        "postcode_country": FieldChoice("BE", "shop:1", "the postcode's own record"),
    }
    fields = person_fields({"p1": chosen}, ["p1"])
    bases = base_columns(fields, OrderDetails.empty(), 1, NOW, BaseSettings())
    assert bases.region.tolist() == ["BE-VAN"]  # Antwerp, not a Dutch 2000


def test_a_consent_marked_member_list_gives_only_an_address_that_opted_in() -> None:
    from sync.members import consented_address

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    shop = Contact("shop", "1", moment, email="a@example.nl", email_consent=True)
    woo = Contact("woo", "1", moment, email="b@example.nl")
    assert consented_address([shop, woo], "b@example.nl") == "a@example.nl"  # not the surviving b
    assert consented_address([shop, woo], "a@example.nl") == "a@example.nl"
    assert consented_address([woo], "b@example.nl") is None  # nobody to list
