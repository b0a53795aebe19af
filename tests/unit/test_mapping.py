from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mapping.fieldmaps import map_contact, map_order
from mapping.model import FieldSpec, Kind, Order, Rejection, RemoteState, SourceRecord, Traits, get_path
from mapping.normalize import Invalid
from mapping.normalize.email import normalise_email
from mapping.segments import QuadrantRules, SegmentSettings, Tier, membership, quadrant, tier
from mapping.traits import order_traits

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Jan.Jansen@Example.NL", "jan.jansen@example.nl"),
        ("  jan@example.nl  ", "jan@example.nl"),
        ("Jan Jansen <JAN@example.nl>", "jan@example.nl"),
        ("mailto:Jan@Example.nl", "jan@example.nl"),
        ("", None),
        (None, None),
    ],
)
def test_email_normalisation(raw: object, clean: str | None) -> None:
    assert normalise_email(raw) == clean


@pytest.mark.parametrize("raw", ["jan@", "@example.nl", "jan example.nl", "jan@@example.nl", "jan@example", 42])
def test_unusable_emails_say_why(raw: object) -> None:
    assert isinstance(normalise_email(raw), Invalid)


@given(st.emails())
def test_email_normalisation_is_idempotent(address: str) -> None:
    once = normalise_email(address)
    if isinstance(once, str):
        assert normalise_email(once) == once


def test_get_path_walks_dicts_and_lists() -> None:
    payload = {"a": {"b": [{"c": 1}]}, "x": None}
    assert get_path(payload, "a.b.0.c") == 1
    assert get_path(payload, "a.b.5.c") is None
    assert get_path(payload, "x.y") is None
    assert get_path(payload, "missing") is None


def _walk(payload: object, path: str) -> object:
    """What a path names, step by step: the reading every path getter must agree with."""
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping):
            if part not in value:
                return None
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


_leaves = st.one_of(st.none(), st.integers(), st.text(max_size=3))
_keys = st.sampled_from(["a", "b", "0", "1"])
_trees = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.dictionaries(_keys, inner, max_size=3),
        st.lists(inner, max_size=3),
        st.dictionaries(_keys, inner, max_size=3).map(MappingProxyType),  # a Mapping, no dict
    ),
    max_leaves=12,
)


@given(_trees, st.lists(_keys, min_size=1, max_size=3).map(".".join))
@example({"a": MappingProxyType({"b": 1})}, "a.b")  # a Mapping inside a dict
@example(MappingProxyType({"a": {"b": 2}}), "a.b")
@example(MappingProxyType({"a": 3}), "a")
@example({"a": [7]}, "a.0")
@example([{"a": 1}], "0.a")
@example({"a": None}, "a.b")
@example({"a": {"b": None}}, "a.b")
@example({"a": "text"}, "a.b")
def test_every_path_getter_reads_what_walking_the_path_reads(payload: object, path: str) -> None:
    """One- and two-key paths take a shortcut through plain dicts; any payload (a Mapping that is
    no dict, a list, a missing key, a null on the way) must read as the step-by-step walk does."""
    assert get_path(payload, path) == _walk(payload, path)


def _walk_all(payload: object, path: str) -> object:
    """What a path with `*` names: under each element of the list before the first `*`, what the
    rest of the path names, lists flattened one level, nulls left out."""
    parts = path.split(".")
    if "*" not in parts:
        return _walk(payload, path)
    star = parts.index("*")
    items = _walk(payload, ".".join(parts[:star])) if star else payload
    if not isinstance(items, list):
        return None
    rest = ".".join(parts[star + 1 :])
    found: list[object] = []
    for item in items:
        value = _walk_all(item, rest) if rest else item
        if isinstance(value, list):
            found.extend(v for v in value if v is not None)
        elif value is not None:
            found.append(value)
    return found


@given(_trees, st.lists(st.sampled_from(["a", "b", "0", "*"]), min_size=1, max_size=5).map(".".join))
@example({"a": {"b": {"0": 4}}}, "a.b.0")  # three keys, the last one digits
@example({"a": {"b": MappingProxyType({"a": 5})}}, "a.b.a")
@example({"a": {"b": [1, 2]}}, "a.b.a")
@example({"a": {"b": None}}, "a.b.a")
@example({"a": [{"b": [1, None]}, {"b": 2}, None, {"b": None}]}, "a.*.b")
@example([[1, None], 2], "*")
@example({"a": [{"b": [{"a": 1}, {"a": [2, 3]}]}]}, "a.*.b.*.a")
@example({"a": MappingProxyType({"b": [{"a": 6}]})}, "a.b.*.a")
@example({"a": [{"": 1}, 2]}, "a.*.")  # nothing after the `*`: each element itself
def test_longer_and_starred_paths_read_what_walking_them_reads(payload: object, path: str) -> None:
    """Three-key paths take a shortcut through plain dicts, and a `*` path's getters before and
    after the `*` are made once: any payload must read as the walk does."""
    assert get_path(payload, path) == _walk_all(payload, path)


def test_a_star_inside_a_part_fails_only_where_the_walk_reaches_it() -> None:
    """`a*` names no list step: such a path fails when a record is read through it, not when the
    config's field map is built, and only where the walk gets to that part (as it always did)."""
    spec = FieldSpec("a.*.b*")  # built without complaint
    assert get_path(None, "*.0*") is None  # nothing to walk into
    assert spec.get({"a": []}) == []
    with pytest.raises(ValueError):
        spec.get({"a": [{}]})
    with pytest.raises(ValueError):
        FieldSpec("tags*").get({"tags*": 1})


def test_a_field_spec_reads_its_path_and_survives_pickling_and_odd_paths() -> None:
    """The path is split once, when the spec is made; a spec crosses a process boundary (pickle)
    as its path and normaliser; a part that is a digit but no number ("²") fails only where a
    list is met, as it always did, so a config with such a path still loads."""
    import pickle

    spec = FieldSpec("a.b.0.c", "id")
    payload = {"a": {"b": [{"c": 1}]}, "x": None}
    assert spec.get(payload) == 1
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and again.get(payload) == 1
    odd = FieldSpec("a.²")
    assert odd.get({"a": {"²": "x"}}) == "x"
    with pytest.raises(ValueError):
        odd.get({"a": ["x"]})


FIELDS = {"email": FieldSpec("mail", "email"), "first_name": FieldSpec("first"), "last_name": FieldSpec("last")}
ORDER_FIELDS = {
    "customer_id": FieldSpec("customer", "id"),
    "email": FieldSpec("mail", "email"),
    "amount": FieldSpec("total", "money"),
    "currency": FieldSpec("currency", "currency"),
    "created_at": FieldSpec("at", "datetime"),
}


def _record(payload: object, kind: Kind = Kind.CONTACT, rid: str = "1") -> SourceRecord:
    return SourceRecord("shop", kind, rid, NOW, payload)


def test_contact_with_a_bad_email_is_kept_without_it() -> None:
    contact = map_contact(_record({"mail": "not-an-email", "first": "Jan"}), FIELDS, RemoteState())
    assert not isinstance(contact, Rejection)
    assert contact.email is None and contact.given_name == "Jan"
    assert contact.flags == ("invalid_email",)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [([1, 2], "wrong_type"), ({"first": {"nested": True}}, "wrong_type"), ({"first": "x" * 2000}, "too_long")],
)
def test_contacts_that_cannot_be_understood_are_rejected_with_a_reason(payload: object, reason: str) -> None:
    result = map_contact(_record(payload), FIELDS, RemoteState())
    assert isinstance(result, Rejection) and result.reason == reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"customer": "7", "total": "abc", "at": "2026-01-01T00:00:00Z"}, "invalid_amount"),
        ({"customer": "7", "total": "-5.00", "at": "2026-01-01T00:00:00Z"}, "negative_amount"),
        ({"customer": "7", "total": "1e12", "at": "2026-01-01T00:00:00Z"}, "absurd_amount"),
        ({"customer": "7", "total": "5.00", "at": "yesterday"}, "invalid_date"),
        ({"customer": "7", "total": "5.00", "at": "1066-10-14T00:00:00Z"}, "impossible_date"),
        ({"customer": "7", "total": "5.00"}, "missing_date"),
        ({"total": "5.00", "at": "2026-01-01T00:00:00Z"}, "unlinkable_order"),
        ({"customer": "7", "total": "5.00", "currency": "EURO", "at": "2026-01-01T00:00:00Z"}, "invalid_currency"),
        ({"customer": "7", "total": "5.00", "currency": "XYZ", "at": "2026-01-01T00:00:00Z"}, "invalid_currency"),
        ({"customer": "7", "total": "5.00", "currency": "XXX", "at": "2026-01-01T00:00:00Z"}, "invalid_currency"),
        ({"mail": "not an address", "total": "5.00", "at": "2026-01-01T00:00:00Z"}, "unlinkable_order"),
    ],
)
def test_orders_that_cannot_count_are_rejected_with_a_reason(payload: object, reason: str) -> None:
    result = map_order(_record(payload, Kind.ORDER), ORDER_FIELDS, True)
    assert isinstance(result, Rejection) and result.reason == reason, result
    # The customer it names, where one is readable: an erased customer's held orders stay out too.
    assert result.customer_id == (payload.get("customer") if isinstance(payload, dict) else None)


def test_an_unusable_email_on_an_order_a_customer_id_links_leaves_the_order_counting() -> None:
    order = map_order(
        _record({"customer": "7", "mail": "jan@@example", "total": "5.00", "at": "2026-01-01T00:00:00Z"}, Kind.ORDER),
        ORDER_FIELDS,
        True,
    )
    assert isinstance(order, Order) and (order.customer_id, order.email) == ("7", None)


def test_guest_order_links_by_email() -> None:
    order = map_order(
        _record(
            {"mail": "Guest@Example.nl", "total": "12.50", "currency": "eur", "at": "2026-01-01T10:00:00"}, Kind.ORDER
        ),
        ORDER_FIELDS,
        True,
    )
    assert isinstance(order, Order)
    assert (order.customer_id, order.email, order.amount, order.currency) == (
        None,
        "guest@example.nl",
        Decimal("12.50"),
        "EUR",
    )


def _woo_order(status: str, total: str, refunds: list[dict[str, object]] | None) -> Order | Rejection:
    from connectors.woocommerce.client import WooCommerceConnector

    payload: dict[str, object] = {"id": 7, "status": status, "currency": "EUR", "total": total, "customer_id": 3}
    payload |= {"date_created_gmt": "2026-05-01T10:00:00", "coupon_lines": []}
    if refunds is not None:
        payload["refunds"] = refunds
    return map_order(
        SourceRecord("woo", Kind.ORDER, "7", None, payload),
        WooCommerceConnector.order_fields,
        status in ("completed", "processing", "on-hold"),
    )


@pytest.mark.parametrize(
    ("refunds", "amount", "counts"),
    [
        (None, "300.00", True),  # an export without the list: nothing known refunded
        ([], "300.00", True),
        # WooCommerce keeps `total` and the status of a partly refunded order and lists the refund,
        # negative, as its REST controllers write it ('-' . wc_format_decimal(amount)).
        ([{"id": 9, "reason": "", "total": "-270.00"}], "30.00", True),
        ([{"id": 9, "reason": "", "total": "-100.00"}, {"id": 10, "reason": "", "total": "-200.00"}], "0.00", False),
    ],
)
def test_a_woocommerce_order_counts_what_was_not_refunded(
    refunds: list[dict[str, object]] | None, amount: str, counts: bool
) -> None:
    order = _woo_order("completed", "300.00", refunds)
    assert isinstance(order, Order) and (order.amount, order.counts) == (Decimal(amount), counts)


def test_a_refund_that_cannot_be_read_holds_the_order() -> None:
    order = _woo_order("completed", "300.00", [{"id": 9, "reason": "", "total": "-x"}])
    assert isinstance(order, Rejection) and order.reason == "invalid_amount"


def _shopify_order(status: str, total: str, current: str, refunded: str) -> Order | Rejection:
    from connectors.shopify.client import ShopifyConnector

    def money(amount: str) -> dict[str, object]:
        return {"shopMoney": {"amount": amount, "currencyCode": "EUR"}}

    payload: dict[str, object] = {"id": "gid://shopify/Order/7", "displayFinancialStatus": status}
    payload |= {"customer": {"id": "gid://shopify/Customer/3"}, "createdAt": "2026-05-01T10:00:00Z"}
    payload |= {"totalPriceSet": money(total), "currentTotalPriceSet": money(current)}
    payload |= {"totalRefundedSet": money(refunded), "discountCodes": []}
    from types import SimpleNamespace

    from connectors.shopify.settings import COUNTED_FINANCIAL_STATUSES

    # The mapping alone: a connector with only the setting `order_counts` reads, at its default.
    connector = ShopifyConnector.__new__(ShopifyConnector)
    connector.settings = SimpleNamespace(counted_financial_statuses=COUNTED_FINANCIAL_STATUSES)  # type: ignore[assignment]
    return map_order(
        SourceRecord("shop", Kind.ORDER, "gid://shopify/Order/7", None, payload),
        ShopifyConnector.order_fields,
        connector.order_counts(payload),
    )


@pytest.mark.parametrize(
    ("status", "current", "refunded", "amount", "counts"),
    [
        ("PAID", "300.00", "0.00", "300.00", True),
        # A refund of an amount, no item returned: Shopify's current total is the total "after
        # returns" (Admin 2026-10 schema), so it stays 300; the 270 is in totalRefundedSet only.
        ("PARTIALLY_REFUNDED", "300.00", "270.00", "30.00", True),
        # 100 of items returned and refunded: the current total already left them out.
        ("PARTIALLY_REFUNDED", "200.00", "100.00", "200.00", True),
        # ... and 20 more refunded than the items were worth (a refund discrepancy in the buyer's favour)
        ("PARTIALLY_REFUNDED", "200.00", "120.00", "180.00", True),
        # Were the current total to leave every refund out, nothing is taken off twice.
        ("PARTIALLY_REFUNDED", "30.00", "270.00", "30.00", True),
        # An edit took 50 of items off before payment: nothing refunded, the current total counts.
        ("PAID", "250.00", "0.00", "250.00", True),
    ],
)
def test_a_shopify_order_counts_what_was_neither_returned_nor_refunded(
    status: str, current: str, refunded: str, amount: str, counts: bool
) -> None:
    order = _shopify_order(status, "300.00", current, refunded)
    assert isinstance(order, Order) and (order.amount, order.counts) == (Decimal(amount), counts)


def _order(days_ago: float, amount: str, counts: bool = True, currency: str = "EUR") -> Order:
    return Order("shop", "o", "c", None, Decimal(amount), currency, NOW - timedelta(days=days_ago), counts)


def test_order_traits_leave_out_what_does_not_count() -> None:
    orders = [
        _order(10, "100"),
        _order(400, "50"),
        _order(5, "999", counts=False),
        _order(-3, "70"),
        _order(20, "10", currency="USD"),
        _order(30, "20", currency="GBP"),
    ]
    traits, unconverted = order_traits(orders, NOW, "EUR", {"USD": Decimal("0.9")})
    assert traits.order_count == 3  # 100, 50 and the converted USD order; the future one not yet
    assert traits.revenue == Decimal("159.0")
    assert traits.spend_12m == Decimal("109.0")
    assert traits.last_order == NOW - timedelta(days=10)
    assert traits.first_order == NOW - timedelta(days=400)
    assert unconverted == 1


RULES = QuadrantRules(loyal_min_orders=2, loyal_recency_days=365, high_value_min_revenue=Decimal(250))


def _traits(count: int, revenue: str, last_days: int | None, spend_12m: str = "0") -> Traits:
    last = NOW - timedelta(days=last_days) if last_days is not None else None
    return Traits(count, Decimal(revenue), Decimal(spend_12m), last, last)


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        (_traits(2, "250", 365), "friends"),  # exactly on every boundary: loyal and valuable
        (_traits(2, "249.99", 365), "supporters"),
        (_traits(2, "250", 366), "acquaintances"),  # one day too long ago: no longer loyal
        (_traits(1, "250", 1), "acquaintances"),  # one order is not loyalty
        (_traits(1, "10", 1), "passers-by"),
        (_traits(0, "0", None), "passers-by"),  # a prospect
    ],
)
def test_quadrant_boundaries(traits: Traits, expected: str) -> None:
    assert quadrant(traits, RULES, NOW) == expected


def test_tier_is_the_highest_threshold_reached() -> None:
    tiers = SegmentSettings(
        tiers=(Tier(name="gold", min_spend_12m=Decimal(750)), Tier(name="silver", min_spend_12m=Decimal(250)))
    ).tiers
    assert [t.name for t in tiers] == ["silver", "gold"]  # kept sorted by threshold
    assert tier(_traits(1, "0", 1, "249.99"), tiers) is None
    assert tier(_traits(1, "0", 1, "250"), tiers) == "silver"
    assert tier(_traits(1, "0", 1, "750"), tiers) == "gold"


def test_membership_names_follow_contracts() -> None:
    verdict = membership(_traits(3, "900", 10, "800"), SegmentSettings(), NOW)
    # first and last order 10 days ago: a new customer (lifecycle), loyal and valuable (quadrant)
    assert verdict.segments == frozenset({"friends", "lifecycle-new", "tier-gold"})
    assert verdict.tier == "gold"


def test_segment_settings_refuse_duplicate_tiers_and_bad_rates() -> None:
    with pytest.raises(ValueError):
        SegmentSettings(tiers=(Tier(name="a", min_spend_12m=Decimal(1)), Tier(name="a", min_spend_12m=Decimal(2))))
    with pytest.raises(ValueError):
        SegmentSettings(rates={"usd": Decimal(1)})


def test_stored_ids_of_other_systems_become_links() -> None:
    fields = {**FIELDS, "link:shop": FieldSpec("custom.shop_id", "id"), "link:web": FieldSpec("custom.web_id", "id")}
    payload = {"mail": "a@b.nl", "custom": {"shop_id": "  123 ", "web_id": "not-a-number"}}

    def canonical(system: str, raw: str) -> str | None:
        return f"gid://shopify/Customer/{raw.strip()}" if system == "shop" else (raw if raw.isdigit() else None)

    contact = map_contact(SourceRecord("erp", Kind.CONTACT, "9", NOW, payload), fields, RemoteState(), canonical)
    assert not isinstance(contact, Rejection)
    assert contact.links == ("shop:gid://shopify/Customer/123",)


def test_a_stored_id_of_another_system_that_is_no_id_is_dropped_and_flagged_and_the_contact_kept() -> None:
    fields = {**FIELDS, "link:shop": FieldSpec("custom.shop_id", "id"), "link:web": FieldSpec("custom.web_id", "id")}
    payload = {"mail": "a@b.nl", "custom": {"shop_id": "1" * 300, "web_id": {"id": 4}}}
    contact = map_contact(SourceRecord("erp", Kind.CONTACT, "9", NOW, payload), fields, RemoteState())
    assert not isinstance(contact, Rejection), contact
    assert contact.links == () and {"id_too_long", "wrong_type"} <= set(contact.flags)
    assert contact.email == "a@b.nl"


def test_a_record_key_splits_back_into_its_system_and_an_id_that_holds_colons() -> None:
    from mapping.model import key_system, record_key, split_key

    key = record_key("shop", "gid://shopify/Customer/7")
    assert key == "shop:gid://shopify/Customer/7"
    assert split_key(key) == ("shop", "gid://shopify/Customer/7") and key_system(key) == "shop"
