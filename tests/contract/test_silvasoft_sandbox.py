"""The Silvasoft sandbox follows the REST contract, refusals included (each proven here)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests

from connectors.ratelimit import SlidingWindowLimiter, Window
from connectors.sandbox import FixtureError
from connectors.silvasoft.sandbox import DEFAULT_API_KEY, DEFAULT_USERNAME
from tests.kit import Sandboxes, wait_until

HEADERS = {"ApiKey": DEFAULT_API_KEY, "Username": DEFAULT_USERNAME}
RATE_LIMITED = {"errorCode": "UNAUTHORIZED", "errorMessage": "Ratelimit exceeded"}
BAD_CREDENTIALS = {"errorCode": "UNAUTHORIZED", "errorMessage": "Invalid authentication credentials"}
RELATIONS = "/rest/listrelations/"
CREATED = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
INVOICES = "/rest/listsalesinvoices/"


def relations(n: int, first_number: int = 1001) -> list[dict[str, Any]]:
    """Private customers created one minute apart, GUIDs deliberately out of creation order."""
    return [
        {
            "RelationGUID": 900_000 + (i * 7919) % 10_007,
            "CustomerNumber": first_number + i,
            "Relation_Contact": [
                {
                    "FirstName": f"Klant{i}",
                    "LastName": "de Vries",
                    "Email": f"klant{i}@example.nl",
                    "Phone": "0612345678",
                }
            ],
            "IsSupplier": i == 2,
            "SupplierNumber": 5002 if i == 2 else 0,
            "createdOn": (CREATED + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for i in range(n)
    ]


def invoices(n: int, customer: int = 1001, every_days: int = 3) -> list[dict[str, Any]]:
    """Invoices numbered in date order: number 2026001 on 01-01-2026, then every `every_days`."""
    return [
        {
            "InvoiceNumber": 2_026_001 + i,
            "InvoiceDate": (date(2026, 1, 1) + timedelta(days=every_days * i)).strftime("%d-%m-%Y"),
            "CustomerNumber": customer,
            "TotalAmountInclTax": 121.0,
            "TotalAmountExclTax": 100.0,
            "InvoiceStatus": "Credited" if i == 1 else "Paid",
            "Invoice_InvoiceLine": [{"ProductNumber": "A1", "Quantity": 1, "UnitPriceExclTax": 100.0, "TaxPc": 21}],
        }
        for i in range(n)
    ]


UNLIMITED: dict[str, dict[str, Any]] = {
    "silvasoft": {"rate_limits": []}
}  # contract tests of everything but the rate limit


@pytest.fixture
def silva(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture(
        {"silvasoft": {"customers": relations(25), "orders": invoices(12)}}, options=UNLIMITED
    )


def get(sandboxes: Sandboxes, path: str, headers: dict[str, str] | None = None, **params: Any) -> requests.Response:
    return requests.get(sandboxes.url("silvasoft") + path, params=params, headers=headers or HEADERS, timeout=5)


def put(sandboxes: Sandboxes, body: Any) -> requests.Response:
    return requests.put(sandboxes.url("silvasoft") + "/rest/updaterelation/", json=body, headers=HEADERS, timeout=5)


# ----- auth and error shapes ----------------------------------------------------------------------
def test_both_headers_are_required_and_refusals_are_401_in_the_vendor_shape(silva: Sandboxes) -> None:
    for headers in ({}, {"ApiKey": DEFAULT_API_KEY}, {"Username": DEFAULT_USERNAME}):
        missing = requests.get(silva.url("silvasoft") + RELATIONS, headers=headers, timeout=5)
        assert (missing.status_code, missing.json()) == (401, BAD_CREDENTIALS)
    wrong_key = get(silva, RELATIONS, {"ApiKey": "nope", "Username": DEFAULT_USERNAME})
    assert (wrong_key.status_code, wrong_key.json()) == (401, BAD_CREDENTIALS)
    wrong_user = get(silva, RELATIONS, {"ApiKey": DEFAULT_API_KEY, "Username": "someone@else.nl"})
    assert (wrong_user.status_code, wrong_user.json()) == (401, BAD_CREDENTIALS)
    # the username is an e-mail address: its case does not matter
    assert get(silva, RELATIONS, {"ApiKey": DEFAULT_API_KEY, "Username": DEFAULT_USERNAME.upper()}).status_code == 200
    assert silva.stats("silvasoft")["throttled"] == 0  # a credentials refusal is not a throttle


def test_limit_above_200_and_other_bad_parameters_are_refused(silva: Sandboxes) -> None:
    too_many = get(silva, RELATIONS, Limit=201)
    assert (too_many.status_code, too_many.json()) == (
        400,
        {"errorCode": "INVALID_PARAMETER", "errorMessage": "Limit must be between 1 and 200"},
    )
    assert get(silva, RELATIONS, Limit=200).status_code == 200
    for params in ({"Limit": 0}, {"Limit": "ten"}, {"Offset": -1}, {"RelationType": "Everyone"}, {"SortDir": "DESC"}):
        refused = get(silva, RELATIONS, **params)
        assert (refused.status_code, refused.json()["errorCode"]) == (400, "INVALID_PARAMETER"), params
    assert get(silva, RELATIONS, Sorting="modifiedDate").json()["errorCode"] == "INVALID_PARAMETER"


def test_unknown_endpoint_and_wrong_method(silva: Sandboxes) -> None:
    unknown = get(silva, "/rest/listcontacts/")
    assert (unknown.status_code, unknown.json()["errorCode"]) == (404, "NOT_FOUND")
    wrong = requests.post(silva.url("silvasoft") + RELATIONS, json={}, headers=HEADERS, timeout=5)
    assert (wrong.status_code, set(wrong.json())) == (405, {"errorCode", "errorMessage"})


def test_parameter_names_are_case_sensitive_so_a_misspelt_one_is_ignored(silva: Sandboxes) -> None:
    assert len(get(silva, RELATIONS, Limit=5).json()) == 5
    assert len(get(silva, RELATIONS, limit=5).json()) == 25  # "limit" is not "Limit": the default applies


# ----- relations --------------------------------------------------------------------------------
def test_limit_offset_paging_in_creation_order_and_an_empty_page_past_the_end(silva: Sandboxes) -> None:
    params: dict[str, Any] = {"RelationType": "Customer", "Sorting": "createdDate", "SortDir": "ASC", "Limit": 10}
    pages = [get(silva, RELATIONS, None, Offset=offset, **params).json() for offset in (0, 10, 20, 30)]
    assert [len(p) for p in pages] == [10, 10, 5, 0]  # no totals and no next link: a short page is the last
    numbers = [r["CustomerNumber"] for p in pages for r in p]
    assert numbers == list(range(1001, 1026))
    newest_first = get(silva, RELATIONS, Sorting="createdDate", SortDir="DEC", Limit=3).json()
    assert [r["CustomerNumber"] for r in newest_first] == [1025, 1024, 1023]
    past = get(silva, RELATIONS, Offset=500)
    assert (past.status_code, past.json()) == (200, [])  # nothing found is 200 with an empty list


def test_filters_and_search_operand(silva: Sandboxes) -> None:
    by_email = get(silva, RELATIONS, RelationEmail="KLANT3@example.nl").json()
    assert [r["CustomerNumber"] for r in by_email] == [1004]
    both = get(silva, RELATIONS, RelationNumber="1005", RelationEmail="klant3@example.nl").json()
    assert both == []  # AND by default
    either = get(silva, RELATIONS, RelationNumber="1005", RelationEmail="klant3@example.nl", SearchOperand="OR").json()
    assert sorted(r["CustomerNumber"] for r in either) == [1004, 1005]
    guid = by_email[0]["RelationGUID"]
    assert [r["CustomerNumber"] for r in get(silva, RELATIONS, RelationGUID=guid).json()] == [1004]
    suppliers = get(silva, RELATIONS, RelationType="Supplier").json()
    assert [r["SupplierNumber"] for r in suppliers] == [5002]
    # documented: sorting on a number puts the zeros first
    by_supplier = get(silva, RELATIONS, Sorting="SupplierNumber", SortDir="ASC").json()
    assert by_supplier[-1]["SupplierNumber"] == 5002 and by_supplier[0]["SupplierNumber"] == 0


def test_fields_silvasoft_derives_from_the_main_contact(silva: Sandboxes) -> None:
    first = get(silva, RELATIONS, RelationNumber="1001").json()[0]
    assert first["Name"] == "Klant0 de Vries"
    assert (first["Email"], first["Phone"]) == ("klant0@example.nl", "0612345678")
    assert (first["IsCustomer"], first["IsSupplier"], first["IsOther"]) == (True, False, False)


# ----- updaterelation -----------------------------------------------------------------------------
def test_update_refuses_unknown_fields_so_nothing_can_rely_on_custom_fields(silva: Sandboxes) -> None:
    before = silva.customer("silvasoft", "1001")
    guid = before["RelationGUID"]
    custom = put(silva, {"RelationGUID": guid, "CustomFields": [{"Name": "Segment", "Value": "friends"}]})
    assert (custom.status_code, custom.json()) == (
        400,
        {"errorCode": "INVALID_PARAMETER", "errorMessage": "Unknown parameter(s): CustomFields"},
    )
    assert put(silva, {"Email": "x@example.nl"}).json()["errorCode"] == "INVALID_PARAMETER"  # no RelationGUID
    assert put(silva, {"RelationGUID": 1, "Email": "x@example.nl"}).status_code == 400  # no such relation
    two_contacts = put(silva, {"RelationGUID": guid, "Relation_Contact": [{}, {}]})
    assert two_contacts.json()["errorCode"] == "INVALID_PARAMETER"
    bad_json = requests.put(silva.url("silvasoft") + "/rest/updaterelation/", data=b"{nope", headers=HEADERS, timeout=5)
    assert (bad_json.status_code, bad_json.json()["errorCode"]) == (400, "INVALID_JSON")
    taken = put(silva, {"RelationGUID": guid, "CustomerNumber": 1002})
    assert taken.json() == {"errorCode": "INVALID_PARAMETER", "errorMessage": "CustomerNumber 1002 is already in use"}
    assert silva.customer("silvasoft", "1001") == before  # every refusal left the relation as it was


def test_update_changes_only_the_named_fields_and_an_unchanged_one_answers_empty(silva: Sandboxes) -> None:
    before = silva.customer("silvasoft", "1003")
    body = {
        "RelationGUID": before["RelationGUID"],
        "Phone": "020-1234567",
        "Relation_Contact": [{"LastName": "Bakker"}],
    }
    updated = put(silva, body)
    assert updated.status_code == 200 and updated.json()["Phone"] == "020-1234567"
    after = silva.customer("silvasoft", "1003")
    assert after["Relation_Contact"][0] == {**before["Relation_Contact"][0], "LastName": "Bakker"}
    assert {k: v for k, v in after.items() if k not in ("Phone", "Relation_Contact")} == {
        k: v for k, v in before.items() if k not in ("Phone", "Relation_Contact")
    }
    again = put(silva, body)
    assert (again.status_code, again.json()) == (200, {})  # documented: {} when nothing was updated
    assert silva.stats("silvasoft")["writes"] == 2


# ----- sales invoices -----------------------------------------------------------------------------
def test_invoices_newest_number_first_with_a_date_window(silva: Sandboxes) -> None:
    listed = get(silva, INVOICES).json()
    assert [i["InvoiceNumber"] for i in listed] == list(range(2_026_012, 2_026_000, -1))
    assert "Invoice_InvoiceLine" not in listed[0]  # lines only when asked for
    assert listed[0]["CustomerName"] == "Klant0 de Vries"  # filled in from the relation
    window = get(silva, INVOICES, DateFrom="04-01-2026", DateTill="10-01-2026").json()
    assert [i["InvoiceNumber"] for i in window] == [2_026_004, 2_026_003, 2_026_002]  # both ends inclusive
    single = get(silva, INVOICES, InvoiceNumber=2_026_005, IncludeInvoiceLinesInResponse="true").json()
    assert [i["InvoiceNumber"] for i in single] == [2_026_005] and single[0]["Invoice_InvoiceLine"]
    assert single[0]["TotalAmountInclTax"] == 121.0


def test_invoice_limits_depend_on_what_is_included(silva: Sandboxes) -> None:
    assert get(silva, INVOICES, Limit=100).status_code == 200
    assert get(silva, INVOICES, Limit=101).json() == {
        "errorCode": "INVALID_PARAMETER",
        "errorMessage": "Limit must be between 1 and 100",
    }
    assert get(silva, INVOICES, Limit=51, IncludeInvoiceLinesInResponse="true").status_code == 400
    assert get(silva, INVOICES, Limit=50, InlcudeInvoiceLinesInResponse="true").status_code == 200  # docs' spelling
    assert get(silva, INVOICES, Limit=16, IncludeBase64PDF="true").status_code == 400
    assert get(silva, INVOICES, DateFrom="2026-01-04").json()["errorCode"] == "INVALID_PARAMETER"


# ----- rate limits --------------------------------------------------------------------------------
def test_the_per_second_window_answers_401_ratelimit_exceeded_without_a_retry_hint(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    silva = start_sandboxes_fixture({"silvasoft": {"customers": relations(3)}})  # real time: 2/s and 50/min
    answers = [get(silva, RELATIONS) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 401]
    assert answers[2].json() == RATE_LIMITED and "Retry-After" not in answers[2].headers
    assert silva.stats("silvasoft")["throttled"] == 1
    assert wait_until(lambda: get(silva, RELATIONS).status_code == 200, timeout=3)  # the second is over


def test_the_per_minute_window_holds_when_the_per_second_one_is_respected(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    # Time scale 20: 2 requests per 50 ms and 50 per 3 s. Sixty requests paced to the short window
    # take about 1.5 s, well inside one long window: exactly 50 get through.
    silva = start_sandboxes_fixture({"silvasoft": {"customers": relations(3)}}, time_scale=20)
    pause = threading.Event()

    def wait(seconds: float) -> None:
        pause.wait(seconds)

    pacer = SlidingWindowLimiter([Window(2, 0.05)], margin=0.01, sleep=wait)
    statuses = []
    for _ in range(60):
        pacer.acquire()
        response = get(silva, RELATIONS, Limit=1)
        statuses.append(response.status_code)
        if response.status_code != 200:
            assert response.json() == RATE_LIMITED
    assert statuses.count(200) == 50
    assert silva.stats("silvasoft")["throttled"] == 10


def test_client_settings_match_the_scaled_limits(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    silva = start_sandboxes_fixture({"silvasoft": {}}, time_scale=60)
    assert silva.app("silvasoft").client_settings() == {
        "api_key": DEFAULT_API_KEY,
        "username": DEFAULT_USERNAME,
        "rate_limit": [{"requests": 2, "per_seconds": round(1 / 60, 6)}, {"requests": 50, "per_seconds": 1.0}],
        "ratelimit_wait": 1.0,
    }


def test_faults_speak_silvasoft(silva: Sandboxes) -> None:
    silva.fault("silvasoft", match="reads", fault="vendor-throttle", times=1)
    silva.fault("silvasoft", match="reads", fault="auth", times=1)
    silva.fault("silvasoft", match="reads", fault="500", times=1)
    throttled, refused, broken = (get(silva, RELATIONS) for _ in range(3))
    assert (throttled.status_code, throttled.json()) == (401, RATE_LIMITED)
    assert (refused.status_code, refused.json()) == (401, BAD_CREDENTIALS)
    assert (broken.status_code, broken.json()["errorCode"]) == (500, "TECHNICAL_ERROR")
    stats = silva.stats("silvasoft")
    assert (stats["throttled"], stats["errors"]) == (1, 2)


# ----- fixtures and test routes -------------------------------------------------------------------
def test_test_routes_find_a_relation_by_customer_number_or_guid(silva: Sandboxes) -> None:
    by_number = silva.customer("silvasoft", "1005")
    assert silva.customer("silvasoft", str(by_number["RelationGUID"])) == by_number
    assert requests.get(silva.url("silvasoft") + "/_sandbox/customers/424242", timeout=5).status_code == 404
    patched = silva.patch_customer(
        "silvasoft", "1005", {"Phone": "+31 20 555 0000", "Relation_Contact": [{"Sex": "Woman"}]}
    )
    assert patched["Phone"] == "+31 20 555 0000"
    assert patched["Relation_Contact"][0] == {**by_number["Relation_Contact"][0], "Sex": "Woman"}
    assert silva.stats("silvasoft")["requests"] == {}  # test routes are not counted


def test_fixture_with_wrong_structure_names_file_and_item(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    cases = [
        ({"customers": [{"RelationGUID": "12"}]}, r"silvasoft/customers\.json item 0: RelationGUID must be"),
        ({"customers": [{"RelationGUID": 1, "Relation_Contact": {"FirstName": "A"}}]}, r"item 0: Relation_Contact"),
        ({"customers": [{"RelationGUID": 1, "CustomerNumber": 7}, {"RelationGUID": 2, "CustomerNumber": 7}]}, "item 1"),
        (
            {"orders": [{"InvoiceNumber": 1, "InvoiceDate": "2026-01-31"}]},
            r"silvasoft/orders\.json item 0: InvoiceDate",
        ),
        ({"orders": [{"InvoiceNumber": 1, "InvoiceDate": "31-01-2026"}]}, r"orders\.json item 0: TotalAmountInclTax"),
        (
            {"orders": [{"InvoiceNumber": 1, "InvoiceDate": "31-01-2026", "TotalAmountInclTax": None}]},
            r"item 0: TotalAmountInclTax must be an amount",
        ),
    ]
    for data, message in cases:
        with pytest.raises(FixtureError, match=message):
            start_sandboxes_fixture({"silvasoft": data})


def test_messy_but_well_typed_data_loads_as_it_is(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    messy = {
        "RelationGUID": 77,
        "CustomerNumber": 12,
        "Email": "  J.de Vries@Gmail.com",
        "Phone": "+31 (0)6 1234 5678",
        "Relation_Contact": [],
        "Remarks": ["kept"],
    }
    lines = [{"Quantity": 2, "UnitPriceExclTax": 10, "TaxPc": 9}]
    silva = start_sandboxes_fixture(
        {
            "silvasoft": {
                "customers": [messy],
                "orders": [
                    {"InvoiceNumber": 5, "InvoiceDate": "1-2-2026", "CustomerNumber": 12, "Invoice_InvoiceLine": lines}
                ],
            }
        }
    )
    stored = silva.customer("silvasoft", "12")
    assert (stored["Email"], stored["Phone"], stored["Remarks"]) == (
        "  J.de Vries@Gmail.com",
        "+31 (0)6 1234 5678",
        ["kept"],
    )
    invoice = get(silva, INVOICES).json()[0]
    assert invoice["TotalAmountInclTax"] == 21.8  # Silvasoft adds up the lines when the total is left out
