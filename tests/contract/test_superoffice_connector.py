"""The SuperOffice connector against its sandbox, over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from pydantic import ValidationError

from connectors.errors import AuthError, PermissionDenied
from connectors.superoffice.archive import NEVER
from connectors.superoffice.client import SuperOfficeSettings
from connectors.superoffice.sandbox import DEFAULT_TOKEN, SEGMENTS_UDF, TIER_UDF
from mapping.model import Contact, Kind, Membership, RemoteState, WriteBack, parse_timestamp
from sync.planner import diff
from tests.contract.test_superoffice_sandbox import get, persons, sales
from tests.kit import Sandboxes, make_connector, wait_until

PERSON = "GET /<tenant>/api/v1/Person"
GOLD_FRIEND = Membership(frozenset({"friends", "lifecycle-active", "tier-gold"}), "gold")


@pytest.fixture
def so(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"superoffice": {"customers": persons(30), "orders": sales(12)}})


def record_of(connector: Any, record_id: str) -> Any:
    return next(r for page in connector.read_contacts(None) for r in page.records if r.id == record_id)


@pytest.mark.parametrize("next_link", [True, False])
@pytest.mark.parametrize("count", [30, 31])
def test_reads_every_page_by_id_until_a_short_page_with_or_without_next_link(
    start_sandboxes_fixture: Callable[..., Sandboxes], count: int, next_link: bool
) -> None:
    """The documentation does not promise `odata.nextLink`: a read that stopped where the link
    stopped would move the cursor after one page. Pages follow by id until one comes back short."""
    so = start_sandboxes_fixture({"superoffice": {"customers": persons(count)}})
    requests.patch(f"{so.url('superoffice')}/_sandbox/app", json={"next_link": next_link}, timeout=5)
    connector = make_connector(so, "superoffice", page_size=10)
    read = list(connector.read_contacts(None))
    ids = [r.id for page in read for r in page.records]
    assert len(read) == 4 and ids == [str(i) for i in range(1, count + 1)]
    # three full pages, then the short (or empty) last one asked for twice
    assert so.stats("superoffice")["requests"][PERSON] == 5
    # mid-pass: no cursor yet, the next page starts after id 10, the newest change seen so far
    first = read[0].checkpoint
    assert "cursor" not in first and first["pass"]["at"] == 10 and first["pass"]["since"] is None
    assert first["pass"]["newest"] == "2026-01-01T00:00:10+00:00"
    assert read[-1].checkpoint == {"cursor": f"2026-01-01T00:00:{count:02d}+00:00"}
    record = read[0].records[0]
    assert record.kind is Kind.CONTACT and record.payload["email/emailAddress"] == "klant1@example.nl"
    filters = [e for e in so.request_log("superoffice") if e["path"].endswith("/Person")]
    assert len(filters) == 5


def test_a_person_changed_later_on_the_day_of_the_cursor_is_read(so: Sandboxes) -> None:
    """The update date is of RestrictionType `date`, on which `after` compares the day alone
    (documented): a read `after` a cursor of 00:00:30 would find nothing changed later that day.
    The read asks `afterTime`, which compares the time too."""
    connector = make_connector(so, "superoffice", page_size=10, lookback=0)
    checkpoint = [page.checkpoint for page in connector.read_contacts(None)][-1]
    assert checkpoint == {"cursor": "2026-01-01T00:00:30+00:00"}
    so.patch_customer("superoffice", "8", {"Firstname": "Middag"})
    app = so.app("superoffice")
    with app.lock:
        app.stamp_customer("8", datetime(2026, 1, 1, 15, 0, tzinfo=UTC))
    changed = [r for page in connector.read_contacts(checkpoint) for r in page.records]
    assert [r.id for r in changed] == ["8", "30"] and changed[0].payload["firstName"] == "Middag"
    sent = [e for e in so.request_log("superoffice") if e["path"].endswith("/Person")][-1]
    assert "afterTime" in str(sent)


def test_a_read_killed_mid_way_resumes_after_the_last_stored_id(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", page_size=10)
    first = next(iter(connector.read_contacts(None)))
    rest = list(connector.read_contacts(first.checkpoint))
    assert [r.id for page in rest for r in page.records] == [str(i) for i in range(11, 31)]
    assert rest[-1].checkpoint == {"cursor": "2026-01-01T00:00:30+00:00"}


def test_incremental_read_returns_the_changed_person_and_not_the_others(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", page_size=10, lookback=0)
    checkpoint = [page.checkpoint for page in connector.read_contacts(None)][-1]
    so.patch_customer("superoffice", "7", {"Firstname": "Gewijzigd"})
    changed = [r for page in connector.read_contacts(checkpoint) for r in page.records]
    # the cursor is inclusive: the person at the cursor is read again, plus the changed one
    assert [r.id for r in changed] == ["7", "30"]
    assert changed[0].payload["firstName"] == "Gewijzigd"
    last = so.request_log("superoffice")[-1]
    assert last["path"].endswith("/Person") and last["status"] == 200


def test_a_person_created_and_never_edited_is_read_by_its_registration_date(so: Sandboxes) -> None:
    """SuperOffice stores no null dates: a person never edited since it was created has an empty
    update date (`NEVER`), which no `personUpdatedDate after ...` matches. Filtered on the update
    date alone, every new person waited for the daily full read; the read also asks for persons
    registered since, and dates them by that."""
    connector = make_connector(so, "superoffice", page_size=10, lookback=0)
    checkpoint = [page.checkpoint for page in connector.read_contacts(None)][-1]
    app = so.app("superoffice")
    with app.lock:
        app.persons[31] = app._load_person("test", {"PersonId": 31, "Firstname": "Nieuw", "Lastname": "Klant"})
    person = get(
        so, "/Person", **{"$select": "personId,personUpdatedDate,personRegisteredDate", "$filter": "personId eq 31"}
    )
    [row] = person.json()["value"]
    assert row["personUpdatedDate"] == NEVER and row["personRegisteredDate"] > checkpoint["cursor"][:19]
    read = {r.id: r for page in connector.read_contacts(checkpoint) for r in page.records}
    assert "31" in read and read["31"].updated_at == parse_timestamp(row["personRegisteredDate"] + "Z")
    assert read["30"].updated_at == parse_timestamp("2026-01-01T00:00:30Z")  # the boundary, as before
    sent = so.request_log("superoffice")[-1]
    assert sent["path"].endswith("/Person") and sent["status"] == 200


def test_filtered_pages_follow_by_id_to_the_end(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", page_size=2, lookback=0)
    checkpoint = {"cursor": "2026-01-01T00:00:20+00:00"}
    pages = list(connector.read_contacts(checkpoint))
    assert [r.id for p in pages for r in p.records] == [str(i) for i in range(20, 31)]
    assert len(pages) == 6 and so.stats("superoffice")["requests"][PERSON] == 6 + 1  # the short last one twice
    assert pages[-1].checkpoint == {"cursor": "2026-01-01T00:00:30+00:00"}


def test_a_webshop_number_kept_in_a_udf_links_the_person(so: Sandboxes) -> None:
    from mapping.fieldmaps import map_contact

    connector = make_connector(so, "superoffice", links={"shop": "personUdef/SuperOffice:1"})
    record = record_of(connector, "3")
    assert record.payload["personUdef/SuperOffice:1"] == "7003"  # the link column is read with the rest
    contact = map_contact(record, connector.contact_fieldmap, RemoteState(), lambda system, raw: f"#{raw}")
    assert isinstance(contact, Contact) and contact.links == ("shop:#7003",)


def test_sales_are_read_and_only_sold_ones_count(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", page_size=5)
    pages = list(connector.read_orders(None))
    records = [r for p in pages for r in p.records]
    assert len(pages) == 3 and len(records) == 12 and {r.kind for r in records} == {Kind.ORDER}
    # The tenant is Dutch: a client that does not ask for English sees "Verkocht", and crmsync's
    # earlier client counted no sale at all there.
    dutch = requests.get(
        f"{so.url('superoffice')}/Cust12345/api/v1/Sale",
        params={"$select": "saleId,saleStatus", "$filter": "saleId eq 101"},
        headers=dict(connector.client.prepare("GET", so.url("superoffice")).headers)
        | {"SO-Language": "", "Accept-Language": ""},
        timeout=5,
    ).json()["value"]
    assert dutch == [{"PrimaryKey": 101, "EntityName": "sale", "saleId": 101, "saleStatus": "Verkocht"}]
    counted = {r.id: connector.order_counts(r.payload) for r in records}
    assert counted["103"] is False and counted["101"] is True
    assert records[0].payload["person/personId"] == 2 and records[0].payload["amount"] == 25.5
    assert pages[-1].checkpoint == {"cursor": "2026-02-01T12:00:12+00:00"}
    only_open = make_connector(so, "superoffice", orders_filter="saleStatus is 'Lost'")
    assert [r.id for p in only_open.read_orders(None) for r in p.records] == ["103"]
    # A configured filter joined by `or` stays one restriction: `and` binds tighter, so without
    # brackets every sold sale would pass whatever its date (and page after page, whatever its id).
    either = make_connector(so, "superoffice", orders_filter="saleStatus is 'Lost' or saleStatus is 'Sold'", lookback=0)
    since_last = {"cursor": "2026-02-01T12:00:12+00:00"}
    assert [r.id for p in either.read_orders(since_last) for r in p.records] == ["112"]


def test_udf_write_back_lands_touches_no_other_udf_and_a_second_sync_writes_nothing(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice")
    before = so.customer("superoffice", "4")
    desired = connector.desired_state(GOLD_FRIEND)
    assert desired == RemoteState(frozenset(), {SEGMENTS_UDF: "friends,lifecycle-active,tier-gold", TIER_UDF: "gold"})
    change = diff("superoffice", "4", desired, connector.owned_state(record_of(connector, "4").payload))
    assert change is not None and change.set_fields == desired.fields
    assert [(r.record_id, r.ok) for r in connector.write([change])] == [("4", True)]
    after = so.customer("superoffice", "4")
    assert after["CustomFields"] == {**before["CustomFields"], **desired.fields}
    for key in ("Interests", "Emails", "Firstname", "Lastname", "Contact"):
        assert after[key] == before[key]
    assert so.stats("superoffice")["writes"] == 1
    again = connector.owned_state(record_of(connector, "4").payload)
    assert again == desired and diff("superoffice", "4", desired, again) is None
    emptied = connector.desired_state(Membership(frozenset(), None))
    assert emptied.fields == {SEGMENTS_UDF: "", TIER_UDF: ""}  # a UDF is emptied, never removed
    cleared = diff("superoffice", "4", emptied, again)
    assert cleared is not None and connector.write([cleared])[0].ok
    assert so.customer("superoffice", "4")["CustomFields"] == {**before["CustomFields"], SEGMENTS_UDF: "", TIER_UDF: ""}


def test_one_refused_person_does_not_sink_the_others(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice")
    changes = [
        WriteBack("superoffice", rid, (), (), {TIER_UDF: value}, RemoteState(frozenset(), {TIER_UDF: value}))
        for rid, value in (("1", "gold"), ("2", "g" * 41), ("999", "gold"), ("3", "silver"))
    ]
    results = {r.record_id: r for r in connector.write(changes)}
    assert results["1"].ok and results["3"].ok
    assert not results["2"].ok and "ShortText holds 40" in results["2"].message
    assert not results["999"].ok and "Person id 999 not found" in results["999"].message
    assert so.customer("superoffice", "3")["CustomFields"][TIER_UDF] == "silver"
    # In the Interests mode too: the agent names the person in its body, and a person gone fails alone.
    interests = make_connector(so, "superoffice", segments_as="interests", segments_field=None, tier_field=None)
    tagged = [
        WriteBack("superoffice", rid, ("crmsync:friends",), (), {}, RemoteState(frozenset({"crmsync:friends"})))
        for rid in ("1", "999", "3")
    ]
    by_id = {r.record_id: r for r in interests.write(tagged)}
    assert by_id["1"].ok and by_id["3"].ok and not by_id["999"].ok
    assert "Person id 999 not found" in by_id["999"].message
    assert "crmsync:friends" in {i["Name"] for i in so.customer("superoffice", "3")["Interests"] if i["Selected"]}


def test_an_unknown_udf_is_refused_per_record_and_named_by_check(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", tier_field="SuperOffice:77")
    change = WriteBack("superoffice", "1", (), (), {"SuperOffice:77": "gold"}, RemoteState())
    result = connector.write([change])[0]
    assert not result.ok and "Unknown user-defined or extra field 'SuperOffice:77'" in result.message
    missing = connector.check().missing
    assert [p.name for p in missing] == ["field SuperOffice:77"] and "create 'SuperOffice:77'" in str(missing[0].fix)
    read_only = make_connector(so, "superoffice", tier_field="SuperOffice:5").check()
    assert [p.name for p in read_only.missing] == ["field SuperOffice:5"] and not read_only.capabilities.write_fields
    assert "read-only" in str(read_only.missing[0].fix)
    report = make_connector(so, "superoffice", tier_field="x_klantkaart").check()
    assert report.missing == [] and report.capabilities.write_fields


def test_interests_mode_switches_only_crmsync_interests(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    people = persons(3)
    people[0]["Interests"] = [{"Name": "Beurzen", "Selected": True}, {"Name": "crmsync:old-segment", "Selected": True}]
    so = start_sandboxes_fixture({"superoffice": {"customers": people}})
    connector = make_connector(so, "superoffice", segments_as="interests", segments_field=None)
    desired = connector.desired_state(GOLD_FRIEND)
    assert desired.tags == {"crmsync:friends", "crmsync:lifecycle-active", "crmsync:tier-gold"}
    current = connector.owned_state(record_of(connector, "1").payload)
    assert current == RemoteState(frozenset({"crmsync:old-segment"}), {TIER_UDF: ""})
    change = diff("superoffice", "1", desired, current)
    assert change is not None and change.remove_tags == ("crmsync:old-segment",)
    second = diff("superoffice", "2", desired, connector.owned_state(record_of(connector, "2").payload))
    assert second is not None
    assert all(r.ok for r in connector.write([change, second]))
    selected = {i["Name"] for i in so.customer("superoffice", "1")["Interests"] if i["Selected"]}
    assert selected == {"Beurzen", *desired.tags}  # the person's own interest stays
    assert {i["Name"] for i in so.customer("superoffice", "2")["Interests"] if i["Selected"]} == desired.tags
    stats = so.stats("superoffice")["requests"]
    assert stats["POST /<tenant>/api/v1/List/PersonInterest/Items"] == 3  # created once, reused for person 2
    again = connector.owned_state(record_of(connector, "1").payload)
    assert again == desired and diff("superoffice", "1", desired, again) is None


def test_interests_are_named_while_reading_and_mapping_never_calls_the_api(
    start_sandboxes_fixture: Callable[..., Sandboxes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline maps records inside the state's write transaction: a mapper must not wait on
    the network. The interest list is read once per read (and again for an interest created in
    between), and the names travel in the payload."""
    people = persons(4)
    people[0]["Interests"] = [{"Name": "Beurzen", "Selected": True}, {"Name": "crmsync:friends", "Selected": True}]
    so = start_sandboxes_fixture({"superoffice": {"customers": people}})
    connector = make_connector(so, "superoffice", segments_as="interests", segments_field=None, page_size=2)
    pages = connector.read_contacts(None)
    records = {r.id: r for r in next(pages).records}
    # ticked in SuperOffice after the list was read: an interest the read does not know yet
    so.patch_customer("superoffice", "3", {"Interests": [{"Name": "crmsync:new", "Selected": True}]})
    records.update({r.id: r for page in pages for r in page.records})
    assert so.stats("superoffice")["requests"]["GET /<tenant>/api/v1/List/PersonInterest/Items"] == 2
    requested = dict(so.stats("superoffice")["requests"])

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"mapping called the API: {args}")

    monkeypatch.setattr(connector.client, "request", no_network)
    owned = {rid: connector.owned_state(record.payload) for rid, record in records.items()}
    assert so.stats("superoffice")["requests"] == requested
    assert connector.payload_tags(records["1"].payload) == ["Beurzen", "crmsync:friends"]
    assert owned["1"] == RemoteState(frozenset({"crmsync:friends"}), {TIER_UDF: ""})
    assert owned["3"].tags == {"crmsync:new"} and owned["2"].tags == owned["4"].tags == frozenset()
    # a row stored without the names (by an earlier crmsync) is not guessed at: its state is unknown
    unnamed = {"personId": 1, "personInterestIds": records["1"].payload["personInterestIds"]}
    assert connector.owned_state(unnamed) == RemoteState.unknown()


def test_interests_are_switched_by_id_and_a_merchant_edit_made_meanwhile_survives(so: Sandboxes) -> None:
    """crmsync read the whole Interests list, switched its own items and PATCHed the list back
    under If-Unmodified-Since, which holds whole seconds: a merchant's tick in the same second as
    the person's change before crmsync's read was overwritten. The Person agent's UpdateInterests
    switches the ids it names and touches no other interest, so the tick survives whenever it lands
    and the person's list is never written back."""
    connector = make_connector(so, "superoffice", segments_as="interests", segments_field=None, tier_field=None)
    agent = "POST /Cust12345/api/v1/Agents/Person/UpdateInterests"
    add = WriteBack("superoffice", "2", ("crmsync:friends",), (), {}, RemoteState(frozenset({"crmsync:friends"})))
    so.fault("superoffice", match=agent, fault="slow", seconds=0.5)
    results: list[Any] = []
    writer = threading.Thread(target=lambda: results.extend(connector.write([add])))
    writer.start()
    in_flight = lambda: any(  # noqa: E731
        e["method"] == "POST" and e["path"].endswith("/UpdateInterests") and e["status"] is None
        for e in so.request_log("superoffice")
    )
    assert wait_until(in_flight, timeout=10)
    so.patch_customer("superoffice", "2", {"Interests": [{"Name": "Zakelijk", "Selected": True}]})
    writer.join(timeout=15)
    assert [r.ok for r in results] == [True]

    def selected() -> set[str]:
        return {i["Name"] for i in so.customer("superoffice", "2")["Interests"] if i["Selected"]}

    assert selected() == {"Zakelijk", "crmsync:friends"}
    remove = WriteBack("superoffice", "2", (), ("crmsync:friends",), {}, RemoteState())
    assert [r.ok for r in connector.write([remove])] == [True]
    assert selected() == {"Zakelijk"}
    log = so.request_log("superoffice")
    assert not any(e["method"] in ("PATCH", "PUT") for e in log)  # the list is never written back
    assert [e["status"] for e in log if e["path"].endswith("/UpdateInterests")] == [204, 204]
    again = connector.write([remove])  # idempotent: asked again, the same end state
    assert [r.ok for r in again] == [True] and selected() == {"Zakelijk"}


def test_a_fixed_ticket_still_works_and_both_its_credentials_matter(so: Sandboxes) -> None:
    """Installations from before the token flows keep a fixed token or ticket (auth = "ticket")."""
    fixed = {"auth": "ticket", "access_token": DEFAULT_TOKEN}
    report = make_connector(so, "superoffice", **fixed).check()
    assert report.missing == [] and so.stats("superoffice")["writes"] == 0  # check changes nothing
    assert "POST /Login/api/PartnerSystemUser/Authenticate" not in so.stats("superoffice")["requests"]
    with pytest.raises(AuthError, match="SO-AppToken is not valid"):
        make_connector(so, "superoffice", **fixed, app_token="someone-elses-app").check()
    with pytest.raises(AuthError, match="credentials refused"):
        make_connector(so, "superoffice", **{**fixed, "access_token": "8A:expired"}).check()
    make_connector(so, "superoffice", **fixed, auth_scheme="SOTicket").check()


def test_throttling_and_server_errors_are_retried(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", page_size=10)
    so.fault("superoffice", match="GET /Cust12345/api/v1/Person", fault="vendor-throttle", retry_after=0)
    so.fault("superoffice", match="GET /Cust12345/api/v1/Person", fault="503")
    so.fault("superoffice", match="GET /Cust12345/api/v1/Person", fault="reset")
    ids = [r.id for p in connector.read_contacts(None) for r in p.records]
    assert ids == [str(i) for i in range(1, 31)]
    assert so.stats("superoffice")["throttled"] == 1 and connector.client.stats.retries == 3


def test_a_page_that_lost_a_row_is_read_again_and_a_repeated_row_counts_once(so: Sandboxes) -> None:
    connector = make_connector(so, "superoffice", page_size=10)
    so.fault("superoffice", match="GET /Cust12345/api/v1/Person", fault="skip-item")
    so.fault("superoffice", match="GET /Cust12345/api/v1/Person", fault="repeat-item")
    pages = list(connector.read_contacts(None))
    ids = [r.id for p in pages for r in p.records]
    assert ids == [str(i) for i in range(1, 31)]  # nothing lost, nothing twice
    # the short first page asked for again, then two full pages and the empty end twice
    assert so.stats("superoffice")["requests"][PERSON] == 6


def test_a_backfill_of_thousands_paces_below_the_scaled_limit(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    so = start_sandboxes_fixture({"superoffice": {"customers": persons(3000)}}, time_scale=5)  # 50 requests/s
    connector = make_connector(so, "superoffice", page_size=50)  # rate_limit from client_settings()
    assert connector.settings.rate_limit[0].per_seconds == pytest.approx(0.2)
    ids = {r.id for p in connector.read_contacts(None) for r in p.records}
    assert len(ids) == 3000
    stats = so.stats("superoffice")
    assert stats["requests"][PERSON] == 62 and stats["throttled"] <= 2 and stats["errors"] == 0  # + the empty end
    log = so.request_log("superoffice")
    # 60 requests at 10 per 0.2 s cannot take less than 1 s when the client paces itself
    assert log[-1]["t"] - log[0]["t"] >= 0.95


def test_settings_refuse_a_section_with_nowhere_to_write() -> None:
    base: dict[str, Any] = {
        "type": "superoffice",
        "base_url": "https://online.superoffice.com",
        "tenant": "Cust1",
        "access_token": "t",
        "app_token": "a",
    }
    with pytest.raises(ValidationError, match="nothing to write to"):
        SuperOfficeSettings(**base)
    with pytest.raises(ValidationError, match="exclude each other"):
        SuperOfficeSettings(**base, segments_field="SuperOffice:8", segments_as="interests")
    with pytest.raises(ValidationError, match="must be different"):
        SuperOfficeSettings(**base, segments_field="SuperOffice:8", tier_field="SuperOffice:8")
    assert SuperOfficeSettings(**base, writeback=False).segments_field is None
    with pytest.raises(ValidationError, match="tenant"):
        SuperOfficeSettings(**{**base, "tenant": "Cust1/../x"}, writeback=False)


def test_check_names_a_role_without_the_right_to_update_persons(so: Sandboxes) -> None:
    requests.patch(f"{so.url('superoffice')}/_sandbox/app", json={"person_rights": "Select"}, timeout=5)
    connector = make_connector(so, "superoffice")
    report = connector.check()
    assert [p.name for p in report.missing] == ["update persons"]
    assert "Roles" in str(report.missing[0].fix) and "Select" in str(report.missing[0].fix)
    assert not report.capabilities.write_fields and report.capabilities.read_contacts
    assert so.stats("superoffice")["writes"] == 0  # proven from what the API shows, not by trying
    change = WriteBack("superoffice", "1", (), (), {TIER_UDF: "gold"}, RemoteState())
    with pytest.raises(PermissionDenied, match="No update rights"):  # as the API then refuses the write
        connector.write([change])
    assert make_connector(so, "superoffice", writeback=False).check().missing == []  # reading needs no more
