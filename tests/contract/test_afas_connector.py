"""The AFAS Profit connector against its sandbox, over real HTTP."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.afas.client import AfasConnector, filter_params, token_header
from connectors.afas.fixtures import demo_fixtures
from connectors.afas.profit_time import filter_value, parse_profit
from connectors.afas.sandbox import DEFAULT_TOKEN, INVOICES, PERSONS, free_field_id
from connectors.errors import ApiError, AuthError
from connectors.sandbox.people import people
from connectors.shopify.client import ShopifyConnector, ShopifySettings
from mapping.fieldmaps import map_contact, map_order
from mapping.identity import identifiers, resolve
from mapping.model import Contact, Kind, Membership, Order, RemoteState, WriteBack
from sync.planner import diff
from tests.contract.test_afas_sandbox import invoices, persons
from tests.kit import Sandboxes, json_out, make_connector, run_crmsync

READ_PERSONS = f"GET /ProfitRestServices/connectors/{PERSONS}"
PUT_PERSON = "PUT /ProfitRestServices/connectors/KnPerson"
OWNED = ("crmsync_segments", "crmsync_loyalty_tier", "ModifiedDate")


@pytest.fixture
def afas(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"afas": {"customers": persons(30), "orders": invoices(25)}})


def connector(sb: Sandboxes, **overrides: Any) -> AfasConnector:
    made: AfasConnector = make_connector(sb, "afas", **overrides)
    return made


def change(record_id: str, fields: dict[str, str | None]) -> WriteBack:
    return WriteBack("afas", record_id, (), (), fields, RemoteState(frozenset(), fields))


def requests_seen(sb: Sandboxes, route: str) -> int:
    return int(sb.stats("afas")["requests"].get(route, 0))


@pytest.mark.parametrize(("count", "sizes"), [(30, [10, 10, 10, 0]), (31, [10, 10, 10, 1]), (25, [10, 10, 5])])
def test_reads_every_page_and_an_empty_or_short_page_ends_the_read(
    start_sandboxes_fixture: Callable[..., Sandboxes], count: int, sizes: list[int]
) -> None:
    afas = start_sandboxes_fixture({"afas": {"customers": persons(count)}})
    pages = list(connector(afas, page_size=10).read_contacts(None))
    ids = [r.id for page in pages for r in page.records]
    assert [len(page.records) for page in pages] == sizes
    assert ids == [str(100_000 + i) for i in range(1, count + 1)]  # in key order, none twice
    # nothing read after the empty/short page, which is asked for once more before it ends the read
    assert requests_seen(afas, READ_PERSONS) == len(sizes) + 1
    newest = parse_profit(f"2026-01-01T{count // 60:02d}:{count % 60:02d}:00Z")
    assert pages[-1].checkpoint == {"cursor": newest.isoformat()}
    assert all("pass" in page.checkpoint for page in pages[:-1])


def test_keys_holding_a_list_separator_page_through_filterjson(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    rows = [{**persons(1)[0], "PersonId": f"K,{i:03d}"} for i in range(1, 6)]
    afas = start_sandboxes_fixture({"afas": {"customers": rows}})
    pages = list(connector(afas, page_size=2).read_contacts(None))
    assert [r.id for page in pages for r in page.records] == ["K,001", "K,002", "K,003", "K,004", "K,005"]
    assert filter_params([("PersonId", 4, "K,002")])["filterjson"].startswith('{"Filters"')
    assert filter_params([("ModifiedDate", 2, "2026-01-01T00:00:00"), ("PersonId", 4, "7")]) == {
        "filterfieldids": "ModifiedDate,PersonId",
        "filtervalues": "2026-01-01T00:00:00,7",
        "operatortypes": "2,4",
    }


def test_text_keys_page_in_profits_order_whatever_their_case(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    # Profit orders and filters a text key without regard to case: "B2" follows "a1" there.
    keys = ["a1", "B2", "c3", "D4", "e5"]
    rows = [{**persons(1)[0], "PersonId": key} for key in keys]
    afas = start_sandboxes_fixture({"afas": {"customers": rows}})
    pages = list(connector(afas, page_size=2).read_contacts(None))
    assert [r.id for page in pages for r in page.records] == keys


def test_an_interrupted_pass_resumes_after_the_last_stored_page(afas: Sandboxes) -> None:
    reader = connector(afas, page_size=10).read_contacts(None)
    first, second = next(reader), next(reader)
    assert [r.id for r in second.records][-1] == "100020"
    resumed = list(connector(afas, page_size=10).read_contacts(second.checkpoint))
    assert [r.id for p in resumed for r in p.records] == [str(100_000 + i) for i in range(21, 31)]
    assert resumed[-1].checkpoint == {"cursor": parse_profit("2026-01-01T00:30:00Z").isoformat()}
    assert first.checkpoint["pass"]["at"] == "100010"


def test_an_incremental_read_returns_the_changed_person_and_not_the_others(afas: Sandboxes) -> None:
    reader = connector(afas, page_size=10, lookback=0)
    checkpoint = [page.checkpoint for page in reader.read_contacts(None)][-1]
    afas.patch_customer("afas", "100007", {"Email": "nieuw@example.nl"})
    changed = [r for page in reader.read_contacts(checkpoint) for r in page.records]
    # the cursor is inclusive: the newest person of the last pass comes again, with the changed one
    assert [r.id for r in changed] == ["100007", "100030"]
    assert changed[0].payload["Email"] == "nieuw@example.nl"
    assert changed[0].updated_at is not None and changed[0].updated_at > datetime.now(UTC) - timedelta(minutes=1)
    log = afas.request_log("afas")
    assert len(log) == 4 + 1 + 2  # four pages for the backfill, one for the increment, each last one twice


def test_dates_are_amsterdam_wall_time_whatever_the_z_says() -> None:
    assert parse_profit("2026-07-01T12:00:00Z") == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)  # summer: UTC+2
    assert parse_profit("2026-01-15T12:00:00Z") == datetime(2026, 1, 15, 11, 0, tzinfo=UTC)  # winter: UTC+1
    assert filter_value(datetime(2026, 3, 1, 9, 30, tzinfo=UTC)) == "2026-03-01T10:30:00"  # no Z in filters
    # 02:30 happens twice on 25 October 2026: from the first pass, start an hour earlier
    assert filter_value(datetime(2026, 10, 25, 0, 30, tzinfo=UTC)) == "2026-10-25T01:30:00"


def test_invoices_link_to_persons_and_credited_ones_do_not_count(afas: Sandboxes) -> None:
    reader = connector(afas, page_size=10)
    records = [r for page in reader.read_orders(None) for r in page.records]
    assert {r.kind for r in records} == {Kind.ORDER} and len(records) == 25
    assert requests_seen(afas, f"GET /ProfitRestServices/connectors/{INVOICES}") == 3 + 1  # short last page twice
    counted = {r.id: reader.order_counts(r.payload) for r in records}
    assert counted["25000003"] is False and counted["25000001"] is True
    order = map_order(records[0], reader.order_fields, True)
    assert isinstance(order, Order)
    assert (order.customer_id, str(order.amount), order.currency) == ("100002", "24.95", "EUR")


def test_write_back_lands_touches_nothing_else_and_a_second_write_plans_nothing(afas: Sandboxes) -> None:
    crm = connector(afas)
    before = {rid: afas.customer("afas", rid) for rid in ("100003", "100004")}
    membership = Membership(frozenset({"friends", "lifecycle-active", "tier-gold"}), "gold")
    desired = crm.desired_state(membership)
    assert desired == RemoteState(
        frozenset(), {"crmsync_segments": "friends,lifecycle-active,tier-gold", "crmsync_loyalty_tier": "gold"}
    )
    changes = [diff("afas", rid, desired, crm.owned_state(before[rid])) for rid in before]
    results = crm.write([c for c in changes if c is not None])
    assert [(r.record_id, r.ok) for r in results] == [("100003", True), ("100004", True)]
    for rid, old in before.items():
        new = afas.customer("afas", rid)
        assert new["crmsync_segments"] == "friends,lifecycle-active,tier-gold" and new["crmsync_loyalty_tier"] == "gold"
        # every column crmsync does not own, byte for byte
        assert {k: v for k, v in new.items() if k not in OWNED} == {k: v for k, v in old.items() if k not in OWNED}
    assert requests_seen(afas, PUT_PERSON) == 2  # one person per call, as KnPerson is published
    # Planner level: the re-read payload already holds the verdict, so nothing is planned.
    reread = {r.id: r.payload for page in crm.read_contacts(None) for r in page.records}
    assert all(diff("afas", rid, desired, crm.owned_state(reread[rid])) is None for rid in before)
    # Leaving every segment clears the free fields ("" in the PUT, null in the GetConnector).
    empty = crm.desired_state(Membership(frozenset(), None))
    assert crm.write([change("100003", dict(empty.fields))])[0].ok
    assert (
        afas.customer("afas", "100003")["crmsync_segments"],
        afas.customer("afas", "100003")["crmsync_loyalty_tier"],
    ) == (
        None,
        None,
    )
    assert crm.owned_state(afas.customer("afas", "100003")) == empty


def test_free_fields_are_found_by_label_once_or_used_by_id(afas: Sandboxes) -> None:
    crm = connector(afas)
    for rid in ("100001", "100002"):
        assert crm.write([change(rid, {"crmsync_loyalty_tier": "silver"})])[0].ok
    assert requests_seen(afas, "GET /ProfitRestServices/metainfo/update/<name>") == 1
    by_id = connector(
        afas,
        segments_field=free_field_id("crmsync_segments"),
        tier_field=free_field_id("crmsync_loyalty_tier"),
        segments_column="crmsync_segments",
        tier_column="crmsync_loyalty_tier",
    )
    tier_id = free_field_id("crmsync_loyalty_tier")
    assert by_id.write([change("100005", {tier_id: "gold"})])[0].ok
    assert requests_seen(afas, "GET /ProfitRestServices/metainfo/update/<name>") == 1  # no lookup for an id
    assert by_id.owned_state(afas.customer("afas", "100005")).fields[tier_id] == "gold"
    missing = connector(afas, tier_field="Klantstatus")
    with pytest.raises(ApiError, match="KnPerson has no free field labelled 'Klantstatus'"):
        missing.write([change("100006", {"Klantstatus": "gold"})])
    # KnPerson's own fields, named by label or by id, are the merchant's: never written
    for name in ("Remark", "remark", "Website"):
        standard = connector(afas, tier_field=name)
        with pytest.raises(ApiError, match=f"KnPerson has no free field labelled '{name}'"):
            standard.write([change("100006", {name: "gold"})])
    assert requests_seen(afas, PUT_PERSON) == 3  # the three above; none for a standard field


def test_a_validation_500_rejects_that_record_only_and_is_not_retried(afas: Sandboxes) -> None:
    crm = connector(afas)
    changes = [
        change("100001", {"crmsync_loyalty_tier": "gold"}),
        change("100002", {"crmsync_loyalty_tier": "platinum-" + "x" * 40}),  # longer than the free field
        change("999999", {"crmsync_loyalty_tier": "gold"}),  # deleted in Profit since the last read
        change("100003", {"crmsync_loyalty_tier": "gold"}),
    ]
    results = {r.record_id: r for r in crm.write(changes)}
    assert results["100001"].ok and results["100003"].ok
    assert not results["100002"].ok and "te lang (maximaal 40 tekens)" in results["100002"].message
    assert not results["999999"].ok and "bestaat niet" in results["999999"].message
    assert "Profit log" in results["999999"].message  # the reference an AFAS admin looks up
    assert requests_seen(afas, PUT_PERSON) == 4  # one each: a refused record is never sent twice
    assert afas.customer("afas", "100002")["crmsync_loyalty_tier"] is None


def test_a_plain_500_is_retried(afas: Sandboxes) -> None:
    crm = connector(afas, page_size=10)
    afas.fault("afas", match="writes", fault="500", times=1)  # Profit's "unexpected error"
    assert crm.write([change("100001", {"crmsync_loyalty_tier": "gold"})])[0].ok
    assert requests_seen(afas, PUT_PERSON) == 2
    afas.fault("afas", match="reads", fault="500", times=2)
    assert len([r for page in crm.read_contacts(None) for r in page.records]) == 30
    assert afas.customer("afas", "100001")["crmsync_loyalty_tier"] == "gold"


def test_maintenance_503_is_retried_after_its_hint(afas: Sandboxes) -> None:
    crm = connector(afas, page_size=10)
    afas.fault("afas", match=f"GET /ProfitRestServices/connectors/{PERSONS}", fault="vendor-throttle", retry_after=0.6)
    assert len([r for page in crm.read_contacts(None) for r in page.records]) == 30
    log = afas.request_log("afas")
    assert log[0]["status"] == 503 and log[1]["status"] == 200
    assert log[1]["t"] - log[0]["t"] >= 0.55  # the body's retry_after, not the header's whole second
    assert log[1]["t"] - log[0]["t"] < 0.95
    assert afas.stats("afas")["throttled"] == 1 and crm.client.stats.throttled == 1


def test_a_setup_error_on_a_read_is_reported_not_retried(afas: Sandboxes) -> None:
    crm = connector(afas, modified_field="Gewijzigd_op", page_size=10)
    checkpoint = {"cursor": "2026-01-01T00:00:00+00:00"}
    with pytest.raises(ApiError, match="Connector field 'Gewijzigd_op' not found"):
        list(crm.read_contacts(checkpoint))
    assert requests_seen(afas, READ_PERSONS) == 1


def test_the_token_goes_as_base64_of_its_xml_and_a_wrong_one_is_not_retried(afas: Sandboxes) -> None:
    envelope = f"<token><version>1</version><data>{DEFAULT_TOKEN}</data></token>"
    expected = "AfasToken " + base64.b64encode(envelope.encode()).decode()
    assert token_header(DEFAULT_TOKEN) == token_header(envelope) == expected
    crm = connector(afas, token=envelope)  # pasted as Profit shows it: works as well
    prepared = crm.client.prepare("GET", f"{afas.url('afas')}/x")
    assert prepared.headers["Authorization"] == expected
    crm.check()
    # check() reads metainfo only: the listing, the two GetConnectors' columns, KnPerson's fields
    assert afas.stats("afas")["reads"] == 4
    with pytest.raises(AuthError, match=r"afas: GET .*: credentials refused \(HTTP 401\)"):
        connector(afas, token="00FF00FF").check()
    assert afas.stats("afas")["reads"] == 5  # a wrong token: one call, not retried


def test_a_webshop_number_in_a_free_field_links_the_person_to_that_shop(afas: Sandboxes) -> None:
    afas.patch_customer("afas", "100009", {"Webshop_klantnummer": "7000042", "Email": "a.devries@werk.nl"})
    crm = connector(afas, links={"shopify": "Webshop_klantnummer"})
    assert "link:shopify" in crm.contact_fieldmap
    assert crm.canonical_id(" 100009 ") == "100009" and crm.canonical_id("1" * 16) is None  # BcCo: 15 at most
    shop = ShopifyConnector(
        "shopify", ShopifySettings(type="shopify", base_url="http://127.0.0.1:9", access_token="shpat_x")
    )
    record = next(r for page in crm.read_contacts(None) for r in page.records if r.id == "100009")
    contact = map_contact(
        record,
        crm.contact_fieldmap,
        crm.owned_state(record.payload),
        lambda system, raw: shop.canonical_id(raw) if system == "shopify" else None,
    )
    assert isinstance(contact, Contact)
    assert contact.links == ("shopify:gid://shopify/Customer/7000042",)
    assert ("record", "shopify:gid://shopify/Customer/7000042") in identifiers(contact)
    shop_contact = Contact("shopify", "gid://shopify/Customer/7000042", None, email="anne@privemail.nl")
    resolution = resolve([(c.key, identifiers(c)) for c in (contact, shop_contact)], {}, {})
    assert resolution.assignment[contact.key] == resolution.assignment[shop_contact.key]


def test_linked_people_get_one_profile_and_the_same_segments_in_a_real_sync(
    start_sandboxes_fixture: Callable[..., Sandboxes], tmp_path: Path
) -> None:
    recent = datetime.now(UTC) - timedelta(days=20)
    shop_orders = [
        {
            "id": f"gid://shopify/Order/{i}",
            "customer": {"id": "gid://shopify/Customer/7000042"},
            "totalPriceSet": {"shopMoney": {"amount": "180.00", "currencyCode": "EUR"}},
            "createdAt": (recent + timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for i in range(1, 4)
    ]
    shop_customer = {
        "id": "gid://shopify/Customer/7000042",
        "firstName": "Anne",
        "lastName": "de Vries",
        "defaultEmailAddress": {"emailAddress": "anne@privemail.nl"},
        "tags": ["vip"],
        "updatedAt": recent.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    person = {**persons(1)[0], "Email": "a.devries@werk.nl", "Webshop_klantnummer": "7000042"}
    sandboxes = start_sandboxes_fixture(
        {"shopify": {"customers": [shop_customer], "orders": shop_orders}, "afas": {"customers": [person]}},
        time_scale=50,
    )
    config = sandboxes.config(tmp_path, afas='links = { shopify = "Webshop_klantnummer" }')
    before = sandboxes.customer("afas", "100001")
    result = run_crmsync("sync", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    assert json_out(result)["profiles"] == 1  # the emails differ; the stored shop number joins them
    tags = {
        t.removeprefix("crmsync:") for t in sandboxes.customer("shopify", "7000042")["tags"] if t.startswith("crmsync:")
    }
    stored = sandboxes.customer("afas", "100001")
    assert "friends" in tags and set(stored["crmsync_segments"].split(",")) == tags
    assert stored["crmsync_loyalty_tier"] == next(t for t in tags if t.startswith("tier-")).removeprefix("tier-")
    assert {k: v for k, v in stored.items() if k not in OWNED} == {k: v for k, v in before.items() if k not in OWNED}


def test_demo_people_in_the_shop_carry_their_shop_number_and_are_writable(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    crowd = people(("shopify", "woocommerce", "afas"), 120, seed=11)
    data = demo_fixtures(crowd)
    in_afas = [p for p in crowd if "afas" in p.systems]
    assert len(data["customers"]) == len(in_afas)
    for row, person in zip(data["customers"], in_afas, strict=True):
        expected = str(person.shop_id("shopify")) if "shopify" in person.systems else None
        assert row["Webshop_klantnummer"] == expected
    assert any(row["Webshop_klantnummer"] for row in data["customers"])
    afas = start_sandboxes_fixture({"afas": data}, time_scale=50)
    crm = connector(afas)
    verdict = crm.desired_state(Membership(frozenset({"passers-by", "lifecycle-new", "tier-bronze"}), "bronze"))
    results = crm.write([change(row["PersonId"], dict(verdict.fields)) for row in data["customers"]])
    assert all(r.ok for r in results)  # nothing in the demo data that Profit would refuse


def test_a_backfill_of_thousands_stays_under_the_rate_limit(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    # 100 requests a minute, 5x faster: 100 every 12 seconds. 3000 persons in pages of 25 is 121
    # requests, more than the sandbox answers in one window: the client has to wait for it. The
    # window is long so that it has to on any host: a loaded one answered 122 requests in over 3
    # seconds (a 20x window) without the client needing to wait.
    afas = start_sandboxes_fixture({"afas": {"customers": persons(3000)}}, time_scale=5)
    crm = connector(afas, page_size=25)  # rate_limit as client_settings() gives it
    assert [(w.requests, w.per_seconds) for w in crm.settings.rate_limit] == [(100, 12.0)]
    ids = [r.id for page in crm.read_contacts(None) for r in page.records]
    assert len(ids) == len(set(ids)) == 3000
    stats = afas.stats("afas")
    assert stats["throttled"] <= 2 and stats["errors"] == 0
    log = afas.request_log("afas")
    assert len(log) - stats["throttled"] == 121 + 1  # the empty last page is asked for twice
    answered = [entry["t"] for entry in log if entry["status"] != 429]
    # no 101 answered requests within one 12-second window, what the vendor's limit allows (less a
    # second for the time a loaded host takes between a request sent and its arrival logged)
    assert min(answered[i + 100] - answered[i] for i in range(len(answered) - 100)) >= 11.0
    assert crm.client.stats.paced_seconds > 0  # it waited for the window instead of bouncing off it


def test_capabilities_and_ids() -> None:
    caps = AfasConnector.capabilities.to_json()
    assert caps == {
        "read_contacts": True,
        "read_orders": True,
        "incremental": True,
        "write_tags": False,
        "write_fields": True,
    }
    assert AfasConnector.max_write_batch == 1
