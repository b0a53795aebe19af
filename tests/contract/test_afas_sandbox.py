"""The AFAS Profit sandbox follows the App Connector REST contract, refusals included (each proven
here, in Profit's own shapes: empty 4xx bodies, 500 with externalMessage, 503 with retry_after)."""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from connectors.afas.sandbox import (
    DEFAULT_FREE_FIELDS,
    DEFAULT_TOKEN,
    INVOICES,
    PERSONS,
    AfasSandbox,
    FreeField,
    free_field_id,
)
from connectors.ratelimit import Window
from connectors.sandbox import FixtureError
from tests.kit import Sandboxes, wait_until

API = "/ProfitRestServices"
ENVELOPE = f"<token><version>1</version><data>{DEFAULT_TOKEN}</data></token>"
AUTH = {"Authorization": "AfasToken " + base64.b64encode(ENVELOPE.encode()).decode()}
SEGMENTS = free_field_id("crmsync_segments")
TIER = free_field_id("crmsync_loyalty_tier")
UNEXPECTED = "Er is een onverwachte fout opgetreden."


def persons(n: int) -> list[dict[str, Any]]:
    return [
        {
            "PersonId": str(100_000 + i),
            "FirstName": f"Klant{i}",
            "LastName": "Jansen",
            "Email": f"klant{i}@example.nl",
            "ModifiedDate": (datetime(2026, 1, 1) + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Voorkeurswinkel": "Utrecht" if i % 3 == 0 else None,
        }
        for i in range(1, n + 1)
    ]


def invoices(n: int) -> list[dict[str, Any]]:
    return [
        {
            "InvoiceId": str(25_000_000 + i),
            "InvoiceDate": "2026-02-01T10:00:00Z",
            "PersonId": str(100_000 + 1 + i % 5),
            "AmountInclVat": 24.95,
            "Currency": "EUR",
            "Credited": i == 3,
            "ModifiedDate": f"2026-02-01T10:{i:02d}:00Z",
        }
        for i in range(1, n + 1)
    ]


@pytest.fixture
def afas(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"afas": {"customers": persons(120), "orders": invoices(12)}})


def get(sb: Sandboxes, path: str, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
    return requests.get(
        sb.url("afas") + API + path, params=params, headers=AUTH if headers is None else headers, timeout=5
    )


def put_person(sb: Sandboxes, fields: dict[str, Any]) -> requests.Response:
    body = {"KnPerson": {"Element": {"Fields": fields}}}
    return requests.put(sb.url("afas") + API + "/connectors/KnPerson", json=body, headers=AUTH, timeout=5)


def assert_profit_error(response: requests.Response, message: str) -> None:
    """Profit's 500: a short message, a generic error number and a 32-hex log reference."""
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"externalMessage", "errorNumber", "profitLogReference"}
    assert message in body["externalMessage"], body["externalMessage"]
    assert isinstance(body["errorNumber"], int)
    assert re.fullmatch(r"[0-9A-F]{32}", body["profitLogReference"])


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "header",
    [
        None,
        f"AfasToken {ENVELOPE}",  # the XML itself: Profit 7 requires base64
        f"AfasToken {b64(DEFAULT_TOKEN)}",  # base64 of the bare data, without the envelope
        f"Bearer {b64(ENVELOPE)}",
        f"AfasToken {b64(ENVELOPE.replace(DEFAULT_TOKEN, 'ABCDEF0123456789'))}",
        "AfasToken not-base64!",
    ],
)
def test_the_token_must_be_the_base64_of_the_whole_token_xml(afas: Sandboxes, header: str | None) -> None:
    response = get(afas, f"/connectors/{PERSONS}", headers={"Authorization": header} if header else {})
    assert (response.status_code, response.content) == (401, b"")  # Profit's 401 has no body


def test_a_page_is_skip_take_rows_with_defaults_0_and_100(afas: Sandboxes) -> None:
    response = get(afas, f"/connectors/{PERSONS}", orderbyfieldids="PersonId")
    assert response.status_code == 200
    body = response.json()
    assert (set(body), body["skip"], body["take"], len(body["rows"])) == ({"skip", "take", "rows"}, 0, 100, 100)
    row = body["rows"][0]
    assert row["PersonId"] == "100001" and row["Prefix"] is None  # empty fields come back as null
    assert row["ModifiedDate"] == "2026-01-01T00:01:00Z"  # Amsterdam wall time with Profit's fake Z
    past = get(afas, f"/connectors/{PERSONS}", skip=120, take=50, orderbyfieldids="PersonId").json()
    assert past == {"skip": 120, "take": 50, "rows": []}  # past the end: an empty page, not an error
    everything = get(afas, f"/connectors/{PERSONS}", skip=-1, take=-1).json()
    assert len(everything["rows"]) == 120  # "get all" is allowed (and discouraged)


@pytest.mark.parametrize(("skip", "take"), [(2, -1), (0, 0), (-3, 10), (0, "veel")])
def test_bad_skip_take_is_profits_unexpected_error(afas: Sandboxes, skip: int, take: Any) -> None:
    assert_profit_error(get(afas, f"/connectors/{PERSONS}", skip=skip, take=take), UNEXPECTED)


def test_unknown_sort_or_filter_fields_are_named(afas: Sandboxes) -> None:
    assert_profit_error(
        get(afas, f"/connectors/{PERSONS}", orderbyfieldids="Klantnummer"), "Connector field 'Klantnummer' not found"
    )
    response = get(
        afas, f"/connectors/{PERSONS}", filterfieldids="Gewijzigd", filtervalues="2026-01-01", operatortypes=2
    )
    assert_profit_error(response, "Connector field 'Gewijzigd' not found")
    mismatched = get(afas, f"/connectors/{PERSONS}", filterfieldids="City,Email", filtervalues="x", operatortypes="1,1")
    assert_profit_error(mismatched, UNEXPECTED)
    assert_profit_error(
        get(afas, f"/connectors/{PERSONS}", filterfieldids="City", filtervalues="x", operatortypes=16), UNEXPECTED
    )


def test_connectors_outside_the_app_connector_are_refused_with_401(afas: Sandboxes) -> None:
    assert (
        get(afas, "/connectors/Profit_Employees").status_code,
        get(afas, "/connectors/Profit_Employees").content,
    ) == (401, b"")
    other = requests.put(afas.url("afas") + API + "/connectors/KnOrganisation", json={}, headers=AUTH, timeout=5)
    assert (other.status_code, other.content) == (401, b"")


def test_the_app_connector_decides_what_metainfo_lists_and_what_answers(afas: Sandboxes) -> None:
    app = afas.url("afas") + "/_sandbox/app"
    assert {k: v for k, v in requests.get(app, timeout=5).json().items() if k.endswith("_connectors")} == {
        "get_connectors": [PERSONS, INVOICES],
        "update_connectors": ["KnPerson"],
    }
    listing = get(afas, "/metainfo").json()
    assert set(listing) == {"updateConnectors", "getConnectors", "info"}
    assert listing["updateConnectors"] == [{"id": "KnPerson", "description": "Persoon"}]
    assert set(listing["info"]) == {"envid", "appName", "group", "tokenExpiry"}
    patched = requests.patch(app, json={"get_connectors": [PERSONS], "update_connectors": []}, timeout=5)
    assert (patched.json()["get_connectors"], patched.json()["update_connectors"]) == ([PERSONS], [])
    listing = get(afas, "/metainfo").json()
    assert (listing["getConnectors"], listing["updateConnectors"]) == (
        [{"id": PERSONS, "description": "Personen (crmsync)"}],
        [],
    )
    # left out of the app connector: the data call and its metainfo are a 401 with an empty body
    for refused in (
        get(afas, f"/connectors/{INVOICES}"),
        get(afas, f"/metainfo/get/{INVOICES}"),
        get(afas, "/metainfo/update/KnPerson"),
        put_person(afas, {"MatchPer": "0", "BcCo": "100001", SEGMENTS: "friends"}),
    ):
        assert (refused.status_code, refused.content) == (401, b"")
    assert afas.customer("afas", "100001")["crmsync_segments"] is None
    assert get(afas, f"/connectors/{PERSONS}").status_code == 200
    for bad in ({"get_connectors": ["Profit_Employees"]}, {"update_connectors": "KnPerson"}, {"scopes": []}):
        assert requests.patch(app, json=bad, timeout=5).status_code == 400
    assert requests.get(app, timeout=5).json()["get_connectors"] == [PERSONS]  # a refused PATCH changes nothing
    with pytest.raises(ValueError, match="serves no connector KnOrganisation"):
        AfasSandbox(update_connectors=["KnOrganisation"])


def test_knperson_metainfo_shows_free_fields_in_the_documented_shape(afas: Sandboxes) -> None:
    update = get(afas, "/metainfo/update/KnPerson").json()
    assert set(update) == {"name", "description", "fields", "objects"}
    segments = next(f for f in update["fields"] if f["label"] == "crmsync_segments")
    assert set(segments) == {
        "fieldId",
        "primaryKey",
        "dataType",
        "label",
        "mandatory",
        "length",
        "decimals",
        "decimalFieldId",
        "notzero",
        "controlType",
        "values",
    }  # custom-fields.md: no `id`, and `decimalFieldId` (GetConnector metainfo says `decimalsFieldId`)
    assert re.fullmatch(r"U[0-9A-F]{32}", segments["fieldId"])
    assert (segments["dataType"], segments["length"]) == ("string", 255)


def test_a_query_string_over_2049_characters_is_a_404(afas: Sandboxes) -> None:
    params = {"filterfieldids": "City", "operatortypes": "6"}
    fits = "x" * (2049 - len("?filterfieldids=City&operatortypes=6&filtervalues="))
    assert get(afas, f"/connectors/{PERSONS}", **params, filtervalues=fits).status_code == 200
    too_long = get(afas, f"/connectors/{PERSONS}", **params, filtervalues=fits + "x")
    assert (too_long.status_code, too_long.content) == (404, b"")


def test_without_orderbyfieldids_the_order_is_not_stable_between_calls(afas: Sandboxes) -> None:
    def ids(**params: Any) -> list[str]:
        return [r["PersonId"] for r in get(afas, f"/connectors/{PERSONS}", take=120, **params).json()["rows"]]

    assert ids() != ids()  # the database picks an order, and not the same one twice
    assert ids(orderbyfieldids="PersonId") == ids(orderbyfieldids="PersonId") == sorted(ids())
    assert ids(orderbyfieldids="-PersonId") == sorted(ids(), reverse=True)


def test_filters_and_or_json_and_amsterdam_dates(afas: Sandboxes) -> None:
    def ids(**params: Any) -> list[str]:
        rows = get(afas, f"/connectors/{PERSONS}", take=200, orderbyfieldids="PersonId", **params).json()["rows"]
        return [r["PersonId"] for r in rows]

    since = {"filterfieldids": "ModifiedDate", "operatortypes": "2"}
    assert ids(**since, filtervalues="2026-01-01T01:58:00") == ["100118", "100119", "100120"]
    assert ids(**since, filtervalues="2026-01-01T01:58:00Z") == ids(**since, filtervalues="2026-01-01T01:58:00")
    # "," is AND, ";" is OR
    assert ids(
        filterfieldids="ModifiedDate,PersonId", filtervalues="2026-01-01T01:58:00,100118", operatortypes="2,4"
    ) == [
        "100119",
        "100120",
    ]
    assert ids(filterfieldids="PersonId;PersonId", filtervalues="100002;100005", operatortypes="1;1") == [
        "100002",
        "100005",
    ]
    assert ids(filterfieldids="Email", filtervalues="KLANT11@", operatortypes="10") == [
        "100011"
    ]  # starts with, any case
    assert len(ids(filterfieldids="Voorkeurswinkel", filtervalues="", operatortypes="9")) == 40  # not empty
    json_filter = {
        "Filters": {
            "Filter": [
                {"@FilterId": "Filter 1", "Field": [{"@FieldId": "PersonId", "@OperatorType": "1", "#text": "100003"}]},
                {
                    "@FilterId": "Filter 2",
                    "Field": [
                        {"@FieldId": "PersonId", "@OperatorType": "5", "#text": "100003"},
                        {"@FieldId": "Voorkeurswinkel", "@OperatorType": "8", "#text": ""},
                    ],
                },
            ]
        }
    }
    assert ids(filterjson=json.dumps(json_filter)) == ["100001", "100002", "100003"]


def test_too_much_data_in_one_reply_runs_out_of_memory(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    afas = start_sandboxes_fixture({"afas": {"customers": persons(30)}}, options={"afas": {"max_cells": 240}})
    columns = len(get(afas, f"/metainfo/get/{PERSONS}").json()["fields"])
    fits = 240 // columns
    assert len(get(afas, f"/connectors/{PERSONS}", take=fits, orderbyfieldids="PersonId").json()["rows"]) == fits
    assert_profit_error(get(afas, f"/connectors/{PERSONS}", take=fits + 1, orderbyfieldids="PersonId"), "Out of memory")


def test_metainfo_lists_columns_and_the_free_fields_with_their_ids(afas: Sandboxes) -> None:
    columns = get(afas, f"/metainfo/get/{PERSONS}").json()
    assert columns["name"] == PERSONS
    assert {"id": "ModifiedDate", "dataType": "date"}.items() <= next(
        f for f in columns["fields"] if f["id"] == "ModifiedDate"
    ).items()
    update = get(afas, "/metainfo/update/KnPerson").json()
    by_label = {f["label"]: f for f in update["fields"]}
    assert by_label["crmsync_segments"]["fieldId"] == SEGMENTS and re.fullmatch(r"U[0-9A-F]{32}", SEGMENTS)
    assert by_label["crmsync_loyalty_tier"]["length"] == 40
    assert next(f for f in update["fields"] if f["fieldId"] == "MatchPer")["values"][0] == {
        "id": "0",
        "description": "0",
    }
    listing = get(afas, "/metainfo").json()
    assert {c["id"] for c in listing["getConnectors"]} == {PERSONS, INVOICES}


def test_put_knperson_changes_only_the_fields_sent_and_an_empty_value_clears(afas: Sandboxes) -> None:
    before = afas.customer("afas", "100003")
    response = put_person(afas, {"MatchPer": "0", "BcCo": "100003", SEGMENTS: "friends,tier-gold", TIER: "gold"})
    assert response.status_code == 201
    assert response.json() == {"results": {"KnPerson": {"BcCo": "100003", "BcId": 3}}}
    after = afas.customer("afas", "100003")
    assert (after["crmsync_segments"], after["crmsync_loyalty_tier"]) == ("friends,tier-gold", "gold")
    assert after["ModifiedDate"] > before["ModifiedDate"]  # the audit field moves
    untouched = {
        k: v for k, v in after.items() if k not in ("crmsync_segments", "crmsync_loyalty_tier", "ModifiedDate")
    }
    assert untouched == {k: v for k, v in before.items() if k in untouched}
    assert put_person(afas, {"MatchPer": "0", "BcCo": "100003", TIER: ""}).status_code == 201
    cleared = afas.customer("afas", "100003")
    assert cleared["crmsync_loyalty_tier"] is None and cleared["crmsync_segments"] == "friends,tier-gold"
    # standard fields land in their columns, by the published field ids
    put_person(afas, {"MatchPer": "0", "BcCo": "100003", "LaNm": "Jansen-de Boer", "ViGe": "V"})
    assert afas.customer("afas", "100003")["LastName"] == "Jansen-de Boer"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"MatchPer": "0", "BcCo": "100003", "UFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF": "x"},
            "bestaat niet in UpdateConnector",
        ),
        ({"MatchPer": "0", "BcCo": "100003", "Klantkaart": "x"}, "Het veld 'Klantkaart' bestaat niet"),
        ({"MatchPer": "0", "BcCo": "999999", SEGMENTS: "friends"}, "'Nummer' (999999) bestaat niet"),
        ({"MatchPer": "0", SEGMENTS: "friends"}, "verplicht"),
        ({"MatchPer": "9", "BcCo": "100003"}, "bij 'Persoon vergelijken op' bestaat niet"),
        ({"MatchPer": "0", "BcCo": "100003", TIER: "g" * 41}, "te lang (maximaal 40 tekens)"),
        ({"MatchPer": "0", "BcCo": "100003", "FiNm": "x" * 51}, "te lang (maximaal 50 tekens)"),
        ({"MatchPer": "0", "BcCo": "100003", "ViGe": "Q"}, "bestaat niet"),
        ({"MatchPer": "0", "BcCo": "100003", "DaBi": "gisteren"}, "geen geldige datum"),
        ({"MatchPer": "0", "BcCo": "100003", "AddToPortal": "misschien"}, "geen ja/nee-waarde"),
    ],
)
def test_knperson_refusals_are_profit_500s_and_change_nothing(
    afas: Sandboxes, fields: dict[str, Any], message: str
) -> None:
    before = afas.customer("afas", "100003")
    # The valid segments value rides along: one bad field refuses the whole element.
    assert_profit_error(put_person(afas, {SEGMENTS: "friends", **fields}), message)
    assert afas.customer("afas", "100003") == before


def test_a_free_field_linked_to_a_table_takes_only_its_codes(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    """custom-fields.md: a free field linked to a table gets "a primary key validation"."""
    linked = FreeField("Klantstatus", "Klantstatus", 10, values=("G", "Z"))
    options = {"afas": {"free_fields": (*DEFAULT_FREE_FIELDS, linked)}}
    afas = start_sandboxes_fixture({"afas": {"customers": persons(3)}}, options=options)
    meta = get(afas, "/metainfo/update/KnPerson").json()["fields"]
    assert next(f for f in meta if f["fieldId"] == linked.field_id)["values"] == [
        {"id": "G", "description": "G"},
        {"id": "Z", "description": "Z"},
    ]
    assert_profit_error(put_person(afas, {"MatchPer": "0", "BcCo": "100003", linked.field_id: "gold"}), "bestaat niet")
    assert put_person(afas, {"MatchPer": "0", "BcCo": "100003", linked.field_id: "G"}).status_code == 201


def test_knperson_takes_one_element_object_as_published(afas: Sandboxes) -> None:
    element = {"Fields": {"MatchPer": "0", "BcCo": "100003", SEGMENTS: "friends"}}
    url = afas.url("afas") + API + "/connectors/KnPerson"
    as_list = requests.put(url, json={"KnPerson": {"Element": [element, element]}}, headers=AUTH, timeout=5)
    assert_profit_error(as_list, "één object, geen lijst")
    assert_profit_error(requests.put(url, json={"KnPerson": {}}, headers=AUTH, timeout=5), "Ongeldig bericht")
    not_json = requests.put(url, data=b"<KnPerson/>", headers=AUTH, timeout=5)
    assert (not_json.status_code, not_json.content) == (400, b"")


def test_a_body_over_the_size_limit_is_a_413(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    afas = start_sandboxes_fixture({"afas": {"customers": persons(3)}}, options={"afas": {"max_body_bytes": 2000}})
    fields = {"MatchPer": "0", "BcCo": "100001", "Re": "x" * 3000}
    response = put_person(afas, fields)
    assert (response.status_code, response.content) == (413, b"")
    assert afas.customer("afas", "100001").get("Re") is None


def test_maintenance_is_a_503_with_retry_after_in_the_body(afas: Sandboxes) -> None:
    afas.fault("afas", match="*", fault="vendor-throttle", retry_after=7200)
    response = get(afas, f"/connectors/{PERSONS}")
    assert response.status_code == 503
    body = response.json()
    assert body["retry_after"] == 7200 and body["error"]["code"] == "503"
    assert "maintenance" in body["error"]["message"]
    assert response.headers["Retry-After"] == "7200"
    assert afas.stats("afas")["throttled"] == 1
    assert get(afas, f"/connectors/{PERSONS}").status_code == 200


def test_more_than_eight_calls_at_once_are_turned_away(afas: Sandboxes) -> None:
    afas.fault("afas", match=f"GET {API}/connectors/{PERSONS}", fault="slow", seconds=1.5, times=8)
    replies: list[int] = []
    threads = [
        threading.Thread(target=lambda: replies.append(get(afas, f"/connectors/{PERSONS}", take=1).status_code))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    in_flight = lambda: sum(1 for e in afas.request_log("afas") if e["status"] is None) == 8  # noqa: E731
    assert wait_until(in_flight, timeout=5)
    ninth = get(afas, f"/connectors/{INVOICES}")
    assert ninth.status_code == 503 and ninth.json()["retry_after"] > 0
    for thread in threads:
        thread.join(timeout=10)
    assert replies == [200] * 8
    assert afas.stats("afas")["throttled"] == 1


def test_the_fair_use_rate_is_enforced_with_a_503_and_scaled_by_time_scale(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    assert AfasSandbox(time_scale=60).client_settings()["rate_limit"] == [{"requests": 100, "per_seconds": 1.0}]
    afas = start_sandboxes_fixture(
        {"afas": {"customers": persons(3)}}, options={"afas": {"rate_limits": [Window(3, 60)]}}
    )
    assert [get(afas, f"/connectors/{PERSONS}").status_code for _ in range(3)] == [200, 200, 200]
    refused = get(afas, f"/connectors/{PERSONS}")
    assert refused.status_code == 503 and 50 < refused.json()["retry_after"] <= 60
    assert afas.stats("afas")["throttled"] == 1


def test_paths_are_case_insensitive_like_profits(afas: Sandboxes) -> None:
    url = afas.url("afas") + f"/profitrestservices/connectors/{PERSONS}"
    assert requests.get(url, params={"take": 1}, headers=AUTH, timeout=5).json()["take"] == 1
    assert requests.get(afas.url("afas") + "/ProfitRestServices/MetaInfo", headers=AUTH, timeout=5).status_code == 200


def test_test_routes_show_and_edit_a_person_like_a_user_in_profit(afas: Sandboxes) -> None:
    before = afas.customer("afas", "100004")
    patched = afas.patch_customer("afas", "100004", {"City": "Zwolle", "PersonId": "1"})
    assert patched["City"] == "Zwolle" and patched["PersonId"] == "100004"  # the number is not editable
    assert patched["ModifiedDate"] > before["ModifiedDate"]
    assert requests.get(afas.url("afas") + "/_sandbox/customers/424242", timeout=5).status_code == 404


def test_fixtures_with_the_wrong_structure_name_file_and_item(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    cases = [
        ({"customers": [{"PersonId": ""}]}, r"afas/customers.json item 0: PersonId must be a non-empty"),
        ({"customers": [*persons(2), persons(1)[0]]}, r"afas/customers.json item 2: PersonId '100001' appears twice"),
        ({"customers": [{"PersonId": "1", "ModifiedDate": "gisteren"}]}, r"item 0: ModifiedDate must be a date-time"),
        ({"customers": [{"PersonId": "1", "HouseNumber": "12a"}]}, r"item 0: HouseNumber must be an integer"),
        (
            {"orders": [{"InvoiceId": "F1", "AmountInclVat": "12,50"}]},
            r"afas/orders.json item 0: AmountInclVat must be a number",
        ),
        ({"orders": [["F1"]]}, r"afas/orders.json item 0: expected an object"),
    ]
    for data, pattern in cases:
        with pytest.raises(FixtureError, match=pattern):
            start_sandboxes_fixture({"afas": data})


def test_messy_but_well_typed_data_loads_as_it_is(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    messy = {
        "PersonId": 7,
        "Email": "  J.de Vries@Gmail.com",
        "Mobile": "+31 (0)6 1234 5678",
        "CreateDate": "2024-03-01T09:00:00",
        "Extra": [1, {"a": None}],
    }
    afas = start_sandboxes_fixture({"afas": {"customers": [messy]}})
    stored = afas.customer("afas", "7")
    assert stored["Email"] == "  J.de Vries@Gmail.com" and stored["Mobile"] == "+31 (0)6 1234 5678"
    assert stored["Extra"] == [1, {"a": None}] and stored["PersonId"] == 7
    # the audit fields Profit always fills are derived, in Profit's format
    assert stored["CreateDate"] == stored["ModifiedDate"] == "2024-03-01T09:00:00Z"
