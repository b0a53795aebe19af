"""The SuperOffice sandbox follows the WebAPI contract, refusals included (each proven here)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.superoffice.archive import NEVER
from connectors.superoffice.sandbox import DEFAULT_APP_TOKEN, DEFAULT_TENANT, DEFAULT_TOKEN
from tests.kit import Sandboxes

API = f"/{DEFAULT_TENANT}/api/v1"
HEADERS = {"Authorization": f"Bearer {DEFAULT_TOKEN}", "SO-AppToken": DEFAULT_APP_TOKEN}
SELECT = "personId,lastName,personUpdatedDate"


def persons(n: int) -> list[dict[str, Any]]:
    return [
        {
            "PersonId": i,
            "Firstname": f"Klant{i}",
            "Lastname": "Jansen",
            "Emails": [{"Value": f"klant{i}@example.nl", "Description": ""}],
            "UpdatedDate": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}",
            "CustomFields": {
                "SuperOffice:1": f"70{i:02d}",
                "SuperOffice:2": "Belt liever na 17:00",
                "x_klantkaart": "",
            },
            "Interests": [{"Name": "Beurzen", "Selected": True}] if i % 2 else [],
        }
        for i in range(1, n + 1)
    ]


def sales(n: int) -> list[dict[str, Any]]:
    return [
        {
            "SaleId": 100 + i,
            "Heading": f"Order {i}",
            "Amount": 25.5,
            "Status": "Lost" if i == 3 else "Sold",
            "Saledate": "2026-02-01T10:00:00",
            "Person": {"PersonId": 1 + i % 5},
            "UpdatedDate": f"2026-02-01T12:00:{i:02d}",
        }
        for i in range(1, n + 1)
    ]


@pytest.fixture
def so(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"superoffice": {"customers": persons(25), "orders": sales(12)}})


def get(so: Sandboxes, path: str, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
    return requests.get(
        so.url("superoffice") + API + path, params=params, headers=HEADERS if headers is None else headers, timeout=5
    )


def patch(
    so: Sandboxes, path: str, body: Any, content_type: str = "application/merge-patch+json", **headers: str
) -> requests.Response:
    data = json.dumps(body)
    all_headers = {**HEADERS, "Content-Type": content_type, **headers}
    return requests.patch(so.url("superoffice") + API + path, data=data, headers=all_headers, timeout=5)


def assert_vendor_error(response: requests.Response, status: int, error_type: str, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"Error", "ErrorType", "ErrorMessage", "ErrorSource"}
    assert body["Error"] is True and body["ErrorType"] == error_type
    assert fragment in body["ErrorMessage"]


def test_both_the_bearer_token_and_the_app_token_are_required(so: Sandboxes) -> None:
    only_token = get(so, "/Person", headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"})
    assert_vendor_error(only_token, 401, "UnauthorizedAccessException", "SO-AppToken header is missing")
    only_app = get(so, "/Person", headers={"SO-AppToken": DEFAULT_APP_TOKEN})
    assert_vendor_error(only_app, 401, "UnauthorizedAccessException", "Authorization header is missing")
    wrong_token = get(so, "/Person", headers={**HEADERS, "Authorization": "Bearer 8A:nope"})
    assert_vendor_error(wrong_token, 401, "UnauthorizedAccessException", "not valid or has expired")
    assert wrong_token.headers["WWW-Authenticate"].startswith("Bearer")
    wrong_app = get(so, "/Person", headers={**HEADERS, "SO-AppToken": "someone-elses-app"})
    assert_vendor_error(wrong_app, 401, "UnauthorizedAccessException", "SO-AppToken is not valid")
    basic = get(so, "/Person", headers={**HEADERS, "Authorization": "Basic dGplMDpUamUw"})
    assert_vendor_error(basic, 401, "UnauthorizedAccessException", "'Basic' is not supported")
    other_tenant = requests.get(so.url("superoffice") + "/Cust99999/api/v1/Person", headers=HEADERS, timeout=5)
    assert_vendor_error(other_tenant, 401, "UnauthorizedAccessException", "tenant 'Cust99999'")
    ticket = get(so, "/Person", headers={**HEADERS, "Authorization": f"SOTicket {DEFAULT_TOKEN}"})
    assert ticket.status_code == 200
    assert so.stats("superoffice")["errors"] == 6


def test_archive_rows_carry_primary_key_entity_and_the_selected_columns(so: Sandboxes) -> None:
    body = get(so, "/Person", **{"$select": "personId,email/emailAddress,personUdef/SuperOffice:1", "$top": 2}).json()
    assert body["odata.metadata"].endswith(f"/{DEFAULT_TENANT}/api/v1/archive$metadata")
    assert body["value"][0] == {
        "PrimaryKey": 1,
        "EntityName": "person",
        "personId": 1,
        "email/emailAddress": "klant1@example.nl",
        "personUdef/SuperOffice:1": "7001",
    }


def test_paging_with_top_skip_and_next_link_to_the_end(so: Sandboxes) -> None:
    seen, url, requests_made = [], so.url("superoffice") + API + "/Person", 0
    params: dict[str, Any] | None = {"$select": SELECT, "$orderBy": "personId asc", "$top": 10}
    while url:
        body = requests.get(url, params=params, headers=HEADERS, timeout=5).json()
        requests_made += 1
        seen += [row["personId"] for row in body["value"]]
        url, params = body.get("odata.nextLink"), None
    assert seen == list(range(1, 26)) and requests_made == 3
    exact = get(so, "/Person", **{"$select": SELECT, "$top": 25}).json()
    assert len(exact["value"]) == 25 and "odata.nextLink" not in exact  # no link to an empty page
    past = get(so, "/Person", **{"$select": SELECT, "$skip": 40}).json()
    assert past["value"] == [] and "odata.nextLink" not in past


def test_date_columns_compare_the_day_with_after_and_the_time_with_after_time(so: Sandboxes) -> None:
    """The update and registration dates are of RestrictionType `date`: "only the date part is
    used" by `before`, `after` and `date`, while `beforeTime`, `afterTime` ("After or equal to
    Datetime") and `dateTime` compare the time too (documented: api-notes/superoffice.md). Every
    person here was updated on 2026-01-01 (person n at 00:00:n)."""

    def persons_where(restriction: str, **extra: str) -> list[int]:
        rows = get(so, "/Person", **{"$select": SELECT, "$filter": restriction, **extra}).json()
        return [r["personId"] for r in rows["value"]]

    assert persons_where("personUpdatedDate after '2026-01-01T00:00:20'") == []  # the same day is not after it
    assert persons_where("personUpdatedDate after '2025-12-31T23:59:59'") == list(range(1, 26))
    assert persons_where("personUpdatedDate before '2026-01-01T23:00:00'") == []
    assert persons_where("personUpdatedDate date '2026-01-01T23:00:00'") == list(range(1, 26))
    assert persons_where("personUpdatedDate afterTime '2026-01-01T00:00:20'") == [20, 21, 22, 23, 24, 25]
    assert persons_where("personUpdatedDate beforeTime '2026-01-01T00:00:03'") == [1, 2]
    assert persons_where("personUpdatedDate dateTime '2026-01-01T00:00:07'") == [7]
    both = persons_where("personUpdatedDate afterTime '2026-1-1' and personId gt 22", **{"$orderBy": "personId desc"})
    assert both == [25, 24, 23]
    since = "updatedDate afterTime '2026-02-01T12:00:11'"
    sold = get(so, "/Sale", **{"$select": "saleId,saleStatus", "$filter": since})
    assert [r["saleId"] for r in sold.json()["value"]] == [111, 112]
    late = get(so, "/Sale", **{"$select": "saleId", "$filter": "updatedDate after '2026-02-01T12:00:10'"})
    assert late.json()["value"] == []


def test_or_and_brackets_combine_restrictions_and_a_date_never_set_is_the_empty_date(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """`AND has a higher priority than OR ... Brackets can be used for grouping` (documented,
    GetArchiveListByColumns2). A person or sale never edited since it was created carries the
    empty date (SuperOffice stores no nulls: `NEVER`), which no `afterTime` matches."""
    created = [{**p, "CreatedDate": p["UpdatedDate"]} for p in persons(5)]
    fresh = {"PersonId": 6, "Firstname": "Nieuw", "CreatedDate": "2026-03-01T00:00:00"}  # no UpdatedDate
    copied = {"PersonId": 7, "CreatedDate": "2026-03-01T00:00:00", "UpdatedDate": NEVER}  # as a reply shows it
    sale = {"SaleId": 900, "Amount": 10, "Saledate": "2026-03-01T00:00:00", "Person": {"PersonId": 6}}
    so = start_sandboxes_fixture({"superoffice": {"customers": [*created, fresh, copied], "orders": [sale]}})
    columns = "personId,personUpdatedDate,personRegisteredDate"
    [row] = get(so, "/Person", **{"$select": columns, "$filter": "personId eq 6"}).json()["value"]
    assert (row["personUpdatedDate"], row["personRegisteredDate"]) == (NEVER, "2026-03-01T00:00:00")
    [row] = get(so, "/Person", **{"$select": columns, "$filter": "personId eq 7"}).json()["value"]
    assert row["personUpdatedDate"] == NEVER  # four digits: a year-1 date written back as it came
    since = "'2026-01-01T00:00:04'"
    changed = f"personUpdatedDate afterTime {since}"
    assert ids(so, changed) == [4, 5]  # the new person is not among them
    assert ids(so, f"{changed} or personRegisteredDate afterTime {since}") == [4, 5, 6, 7]
    assert ids(so, f"({changed} or personRegisteredDate afterTime {since}) and personId gt 4") == [5, 6, 7]
    assert ids(so, f"personId eq 1 or {changed} and personId gt 4") == [1, 5]  # and binds tighter
    [sold] = get(so, "/Sale", **{"$select": "saleId,updatedDate,registeredDate"}).json()["value"]
    assert sold["updatedDate"] == NEVER and sold["registeredDate"] == "2026-03-01T00:00:00"


def ids(so: Sandboxes, restriction: str) -> list[int]:
    rows = get(so, "/Person", **{"$select": "personId", "$filter": restriction, "$orderBy": "personId"}).json()
    return [row["personId"] for row in rows["value"]]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"$top": 5001}, "$top must be between 1 and 5000"),
        ({"$top": "many"}, "is not valid for $top"),
        ({"$skip": -1}, "$skip cannot be negative"),
        ({"$select": "personId,shoeSize"}, "Unknown column 'shoeSize' in $select"),
        ({"$select": "personUdef/SuperOffice:77"}, "Unknown column 'personUdef/SuperOffice:77'"),
        ({"$filter": "updatedDate after '2026-01-01'"}, "Unknown column 'updatedDate' in $filter"),
        ({"$filter": "personUpdatedDate since '2026-01-01'"}, "Operator 'since' is not supported"),
        ({"$filter": "personUpdatedDate after 'yesterday'"}, "'yesterday' is not a valid value"),
        ({"$filter": "personId gt 3 xor personId lt 2"}, "Expected 'and' or 'or'"),
        ({"$filter": "(personId gt 3 or personId lt 2"}, "Unbalanced brackets"),
        ({"$orderBy": "personInterestIds"}, "Cannot order"),
    ],
)
def test_bad_queries_are_refused_in_the_vendor_shape(so: Sandboxes, params: dict[str, Any], fragment: str) -> None:
    assert_vendor_error(get(so, "/Person", **params), 400, "ArgumentException", fragment)


def test_unknown_archive_provider_and_unknown_person(so: Sandboxes) -> None:
    assert_vendor_error(get(so, "/Archive/Shoes"), 400, "ArgumentException", "Unknown archive provider 'Shoes'")
    assert get(so, "/Archive/Sale", **{"$select": "saleId", "$top": 1}).json()["value"][0]["saleId"] == 101
    assert_vendor_error(get(so, "/Person/999"), 404, "SoNotFoundException", "Person id 999 not found")
    assert_vendor_error(patch(so, "/Person/999", {}), 404, "SoNotFoundException", "Person id 999 not found")


def test_a_merge_patch_of_one_udf_leaves_every_other_udf_byte_for_byte(so: Sandboxes) -> None:
    before = so.customer("superoffice", "3")
    response = patch(so, "/Person/3", {"CustomFields": {"SuperOffice:9": "gold"}})
    assert response.status_code == 200
    after = so.customer("superoffice", "3")
    assert after["CustomFields"] == {**before["CustomFields"], "SuperOffice:9": "gold"}
    assert after["UserDefinedFields"]["SuperOffice:9"] == "gold"
    assert after["Interests"] == before["Interests"] and after["Emails"] == before["Emails"]
    assert after["UpdatedDate"] >= before["UpdatedDate"]
    # the deprecated bucket and JSON Patch reach the same field
    json_patch = [{"op": "replace", "path": "userdefinedfields/SuperOffice:9", "value": "silver"}]
    assert patch(so, "/Person/3", json_patch, "application/json-patch+json").status_code == 200
    assert so.customer("superoffice", "3")["CustomFields"]["SuperOffice:9"] == "silver"


def test_custom_field_refusals(so: Sandboxes) -> None:
    unknown = patch(so, "/Person/2", {"CustomFields": {"SuperOffice:77": "x"}})
    assert_vendor_error(unknown, 400, "ArgumentException", "Unknown user-defined or extra field 'SuperOffice:77'")
    read_only = patch(so, "/Person/2", {"UserDefinedFields": {"SuperOffice:5": "D1"}})
    assert_vendor_error(read_only, 400, "SoFieldReadOnlyException", "is read-only")
    too_long = patch(so, "/Person/2", {"CustomFields": {"SuperOffice:9": "x" * 41}})
    assert_vendor_error(too_long, 400, "ArgumentException", "ShortText holds 40")
    no_such_property = patch(so, "/Person/2", {"ShoeSize": 44})
    assert_vendor_error(no_such_property, 400, "ArgumentException", "no property 'ShoeSize'")
    move = patch(
        so, "/Person/2", [{"op": "move", "path": "/Title", "from": "/Lastname"}], "application/json-patch+json"
    )
    assert_vendor_error(move, 400, "NotSupportedException", "'move' is not supported")
    failed_test = patch(
        so, "/Person/2", [{"op": "test", "path": "/Lastname", "value": "Pietersen"}], "application/json-patch+json"
    )
    assert_vendor_error(failed_test, 409, "ConflictException", "Test failed")
    assert so.stats("superoffice")["writes"] == 6


def test_interests_replace_as_a_whole_and_if_unmodified_since_guards_them(so: Sandboxes) -> None:
    entity = get(so, "/Person/1").json()
    beurzen = next(i for i in entity["Interests"] if i["Name"] == "Beurzen")
    assert beurzen["Selected"] is True and entity["ActiveInterests"] == 1
    stale = "Thu, 01 Jan 2026 00:00:00 GMT"  # before the person's last update
    refused = patch(so, "/Person/1", {"Interests": []}, **{"If-Unmodified-Since": stale})
    assert_vendor_error(refused, 412, "PreconditionFailedException", "has changed since")
    items = [{**i, "Selected": i["Name"] in ("Beurzen", "Zakelijk")} for i in entity["Interests"]]
    ok = patch(so, "/Person/1", {"Interests": items}, **{"If-Unmodified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert ok.status_code == 200
    selected = {i["Name"] for i in so.customer("superoffice", "1")["Interests"] if i["Selected"]}
    assert selected == {"Beurzen", "Zakelijk"}
    unknown = patch(so, "/Person/1", {"Interests": [{"Id": 999, "Selected": True}]})
    assert_vendor_error(unknown, 400, "ArgumentException", "No interest")


def test_the_person_agent_switches_only_the_interests_it_names(so: Sandboxes) -> None:
    """`POST /api/v1/Agents/Person/UpdateInterests` (documented: 204; an id in both arrays throws;
    the official client: "not touch any other interests"), and what it refuses."""
    url = so.url("superoffice") + API + "/Agents/Person/UpdateInterests"
    ids = {i["Name"]: i["Id"] for i in get(so, "/Person/1").json()["Interests"]}
    before = so.customer("superoffice", "1")["UpdatedDate"]

    def update(body: Any) -> requests.Response:
        return requests.post(url, json=body, headers=HEADERS, timeout=5)

    done = update({"PersonId": 1, "EnableInterestIds": [ids["Zakelijk"]], "DisableInterestIds": []})
    assert done.status_code == 204 and done.content == b""
    selected = {i["Name"] for i in so.customer("superoffice", "1")["Interests"] if i["Selected"]}
    assert selected == {"Beurzen", "Zakelijk"}  # Beurzen, not named, untouched
    assert so.customer("superoffice", "1")["UpdatedDate"] >= before
    off = update({"PersonId": 1, "EnableInterestIds": [], "DisableInterestIds": [ids["Zakelijk"]]})
    assert off.status_code == 204
    assert {i["Name"] for i in so.customer("superoffice", "1")["Interests"] if i["Selected"]} == {"Beurzen"}
    both = update({"PersonId": 1, "EnableInterestIds": [ids["Zakelijk"]], "DisableInterestIds": [ids["Zakelijk"]]})
    assert_vendor_error(both, 400, "ArgumentException", "in both arrays")
    unknown = update({"PersonId": 1, "EnableInterestIds": [999], "DisableInterestIds": []})
    assert_vendor_error(unknown, 400, "ArgumentException", "No interest 999")
    nobody = update({"PersonId": 9999, "EnableInterestIds": [ids["Zakelijk"]]})
    assert_vendor_error(nobody, 404, "SoNotFoundException", "Person id 9999 not found")
    text_ids = update({"PersonId": 1, "EnableInterestIds": ["1"]})
    assert_vendor_error(text_ids, 400, "ArgumentException", "must be integers")
    # An agent, not the REST API: If-Unmodified-Since does not apply to it (documented).
    stale = {**HEADERS, "If-Unmodified-Since": "Thu, 01 Jan 2026 00:00:00 GMT"}
    guarded = requests.post(url, json={"PersonId": 1, "EnableInterestIds": [ids["Zakelijk"]]}, headers=stale, timeout=5)
    assert guarded.status_code == 204


def test_interest_list_items_are_looked_up_and_created(so: Sandboxes) -> None:
    url = so.url("superoffice") + API + "/List/PersonInterest/Items"
    before = requests.get(url, headers=HEADERS, timeout=5).json()
    assert {"Nieuwsbrief", "Beurzen"} <= {i["Name"] for i in before}
    created = requests.post(url, json={"Name": "crmsync:friends"}, headers=HEADERS, timeout=5).json()
    assert created["Name"] == "crmsync:friends" and created["Id"] not in {i["Id"] for i in before}
    empty = requests.post(url, json={"Name": " "}, headers=HEADERS, timeout=5)
    assert_vendor_error(empty, 400, "ArgumentException", "needs a Name")


def test_custom_field_metadata_lists_udfs_and_extra_fields(so: Sandboxes) -> None:
    fields = {f["FieldName"]: f for f in get(so, "/Person/CustomField").json()}
    assert fields["SuperOffice:8"]["FieldType"] == "LongText" and fields["SuperOffice:9"]["FieldType"] == "ShortText"
    assert fields["SuperOffice:5"]["IsReadOnly"] is True
    assert fields["x_klantkaart"]["TemplateVariableName"] is None


def test_the_rate_limit_answers_429_with_retry_after(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    so = start_sandboxes_fixture({"superoffice": {"customers": persons(3)}}, time_scale=0.01)  # 10 per 100 s
    answers = [get(so, "/Person", **{"$top": 1}) for _ in range(11)]
    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert_vendor_error(answers[10], 429, "TooManyRequestsException", "slow down")
    assert int(answers[10].headers["Retry-After"]) >= 1
    assert so.stats("superoffice")["throttled"] == 1
    so.fault("superoffice", match="reads", fault="vendor-throttle", retry_after=2)
    forced = get(so, "/Person", **{"$top": 1})
    assert_vendor_error(forced, 429, "TooManyRequestsException", "slow down")
    assert forced.headers["Retry-After"] == "2" and so.stats("superoffice")["throttled"] == 2


def test_fixture_with_wrong_structure_names_file_and_item(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    from connectors.sandbox import FixtureError

    with pytest.raises(FixtureError, match=r"superoffice/customers.json item 1: PersonId must be a positive integer"):
        start_sandboxes_fixture({"superoffice": {"customers": [persons(1)[0], {"PersonId": "7"}]}})
    with pytest.raises(FixtureError, match=r"superoffice/customers.json item 0: Emails must be a list"):
        start_sandboxes_fixture({"superoffice": {"customers": [{"PersonId": 1, "Emails": "a@b.nl"}]}})
    with pytest.raises(FixtureError, match=r"superoffice/orders.json item 0: Status must be one of"):
        start_sandboxes_fixture({"superoffice": {"orders": [{"SaleId": 1, "Status": "Won"}]}})


def test_messy_but_well_typed_data_loads_as_it_is(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    messy = {
        "PersonId": 5,
        "Firstname": "  jan ",
        "Emails": [{"Value": "  J.de Vries@Gmail.com", "Description": ""}],
        "MobilePhones": [{"Value": "+31 (0)6 1234 5678"}],
        "UserDefinedFields": {"SuperOffice:40": "eigen veld", "SuperOffice:7:DisplayText": "Samenwerking"},
        "Extra": [1],
    }
    so = start_sandboxes_fixture({"superoffice": {"customers": [messy]}})
    stored = so.customer("superoffice", "5")
    assert stored["Emails"][0]["Value"] == "  J.de Vries@Gmail.com" and stored["Extra"] == [1]
    assert stored["UserDefinedFields"]["SuperOffice:40"] == "eigen veld"
    row = get(so, "/Person", **{"$select": "personMobilePhone/formattedNumber,personUdef/SuperOffice:40"}).json()
    assert row["value"][0]["personMobilePhone/formattedNumber"] == "+31 (0)6 1234 5678"
    assert row["value"][0]["personUdef/SuperOffice:40"] == "eigen veld"
