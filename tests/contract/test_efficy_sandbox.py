"""The efficy sandbox follows the JSON RPC contract, refusals included (each proven here): errors
come inside HTTP 200 replies, on the function, the context or the whole request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.efficy.sandbox import CONTACTS_QUERY, DEFAULT_API_KEY, OPPORTUNITIES_QUERY
from connectors.ratelimit import Window
from connectors.sandbox import FixtureError
from tests.kit import Sandboxes, requests_ended, send_half_a_body, wait_until

ENDPOINT = "/crm/json"


def contacts(n: int) -> list[dict[str, Any]]:
    """Contacts 1..n, one second apart; every one holds a marketing category of its own."""
    return [
        {
            "K_CONTACT": i,
            "FIRSTNAME": f"Klant{i}",
            "NAME": "de Vries",
            "EMAIL1": f"klant{i}@example.nl",
            "MOBILE": f"06{10000000 + i}",
            "D_CREATE": "2025-06-01T08:00:00",
            "D_CHANGE": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}",
            "categories": {"CONT$MARKETING": {"NEWSLETTER": "1", "SOURCE": "beurs"}},
        }
        for i in range(1, n + 1)
    ]


def opportunities(n: int) -> list[dict[str, Any]]:
    return [
        {
            "K_OPPORTUNITY": 500 + i,
            "NAME": f"Offerte {i}",
            "K_CONTACT": 1 + i % 3,
            "AMOUNT": 100.5,
            "CURRENCY": "EUR",
            "STATUS": "LOST" if i == 2 else "WON",
            "D_CLOSE": "2026-02-01T12:00:00",
            "D_CHANGE": f"2026-02-01T12:00:{i:02d}",
        }
        for i in range(1, n + 1)
    ]


@pytest.fixture
def efficy(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"efficy": {"customers": contacts(12), "orders": opportunities(4)}})


def rpc(sandboxes: Sandboxes, body: Any, key: str | None = DEFAULT_API_KEY) -> requests.Response:
    headers = {"X-Efficy-Apikey": key} if key is not None else {}
    return requests.post(sandboxes.url("efficy") + ENDPOINT, json=body, headers=headers, timeout=5)


def query(key: int, params: str, count: int = 100) -> dict[str, Any]:
    return {"@name": "api", "@func": [{"@name": "query", "key": key, "queryparams": params, "recordcount": count}]}


def rows(context: dict[str, Any]) -> list[dict[str, Any]]:
    return context["@func"][0]["#result"]["#data"]  # type: ignore[no-any-return]


def edit(key: int, *funcs: dict[str, Any], commit: bool = True) -> dict[str, Any]:
    return {"@name": "edit", "entity": "Cont", "key": key, "commit": commit, "closecontext": True, "@func": list(funcs)}


def update(data: dict[str, Any], category: str | None = "CONT$CRMSYNC") -> dict[str, Any]:
    target: dict[str, Any] = {"category": category} if category else {"tableview": 0}
    return {"@name": "update", **target, "@data": data}


ACTIVATE = {"@name": "activateCategory", "category": "CONT$CRMSYNC"}


def test_a_missing_key_is_refused_with_401_and_a_wrong_one_inside_a_200(efficy: Sandboxes) -> None:
    missing = rpc(efficy, [query(CONTACTS_QUERY, "1900-01-01T00:00:00|0")], key=None)
    assert missing.status_code == 401
    assert missing.json()["#error"]["errorcode"] == "ER_LOGON"
    wrong = rpc(efficy, [query(CONTACTS_QUERY, "1900-01-01T00:00:00|0")], key="0000")
    assert wrong.status_code == 200
    assert wrong.json() == {
        "#error": {
            "errorcode": "ER_LOGON",
            "errorstring": "Invalid User: the API key is not valid",
            "detail": "X-Efficy-Apikey",
        }
    }
    assert efficy.stats("efficy")["errors"] == 2  # the 200 with an #error counts as the failure it is


def test_the_body_must_be_a_list_of_at_most_100_contexts(efficy: Sandboxes) -> None:
    not_a_list = rpc(efficy, {"@name": "api"})
    assert (not_a_list.status_code, not_a_list.json()["#error"]["errorcode"]) == (200, "ER_INVALID_REQUEST")
    too_many = rpc(efficy, [{"@name": "api", "@func": [{"@name": "currentusername"}]}] * 101)
    assert too_many.json()["#error"]["errorcode"] == "ER_TOO_MANY_CONTEXTS"
    hundred = rpc(efficy, [{"@name": "api", "@func": [{"@name": "currentusername"}]}] * 100).json()
    assert len(hundred) == 100 and hundred[0]["@func"][0]["#result"] == "CRMSYNC"


def test_errors_sit_on_the_function_and_its_context_and_spare_the_other_contexts(efficy: Sandboxes) -> None:
    reply = rpc(
        efficy,
        [
            query(CONTACTS_QUERY, "1900-01-01T00:00:00|0", count=1001),
            {"@name": "api", "#id": "who", "@func": [{"@name": "currentuserfullname"}]},
            query(424242, "1900-01-01T00:00:00|0"),
            query(CONTACTS_QUERY, "2026-01-01"),
            {"@name": "api", "@func": [{"@name": "frobnicate"}]},
            {"@name": "report", "@func": []},
        ],
    ).json()
    too_many_rows, who, unknown_query, one_param, unknown_function, unknown_context, exception = reply
    # the reply ends with the node efficy's employee's clients read failures from: the first one
    assert exception == {"@name": "exception", "#error": too_many_rows["@func"][0]["#error"]}
    assert too_many_rows["#error"] is True
    assert too_many_rows["@func"][0]["#error"] == {
        "errorcode": "ER_RECORDCOUNT",
        "errorstring": "recordcount 1001 exceeds the maximum of 1000 rows",
        "detail": "",
    }
    assert who == {
        "@name": "api",
        "#id": "who",
        "@func": [{"@name": "currentuserfullname", "#result": "crmsync API user"}],
    }
    assert unknown_query["@func"][0]["#error"]["errorcode"] == "ER_QUERY_NOT_FOUND"
    assert one_param["@func"][0]["#error"]["errorcode"] == "ER_QUERY_PARAMS"
    assert unknown_function["@func"][0]["#error"]["errorcode"] == "ER_UNKNOWN_FUNCTION"
    assert unknown_context["#error"]["errorcode"] == "ER_UNKNOWN_CONTEXT"


def test_saved_queries_page_by_keyset_in_change_order(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    people = contacts(6)
    for person in people[3:]:
        person["D_CHANGE"] = "2026-01-01T00:00:02"  # three share contact 2's second: the key breaks the tie
    efficy = start_sandboxes_fixture({"efficy": {"customers": people}})
    first = rows(rpc(efficy, [query(CONTACTS_QUERY, "1900-01-01T00:00:00|0", count=3)]).json()[0])
    assert [r["K_CONTACT"] for r in first] == [1, 2, 4]
    assert "categories" not in first[0]  # a query returns main-table rows
    last = first[-1]
    rest = rows(rpc(efficy, [query(CONTACTS_QUERY, f"{last['D_CHANGE']}|{last['K_CONTACT']}", count=3)]).json()[0])
    assert [r["K_CONTACT"] for r in rest] == [5, 6, 3]
    # the timestamp may carry a zone: efficy's own form is the same instant without one
    since = rows(rpc(efficy, [query(CONTACTS_QUERY, "2026-01-01T01:00:03+01:00|0")]).json()[0])
    assert [r["K_CONTACT"] for r in since] == [3]
    everything = rows(rpc(efficy, [query(CONTACTS_QUERY, "1900-01-01T00:00:00|0", count=0)]).json()[0])
    assert len(everything) == 6  # recordcount 0: all rows
    deals = rows(rpc(efficy, [query(OPPORTUNITIES_QUERY, "1900-01-01T00:00:00|0")]).json()[0])
    assert deals == []


def test_parameter_keys_are_case_sensitive_so_recordCount_is_ignored(efficy: Sandboxes) -> None:
    """efficy's own client sent `recordCount` and got the whole query back (efficy-u-rpc-api commit
    bcaa824); only the lowercase `recordcount` is the page size."""
    lower = query(CONTACTS_QUERY, "1900-01-01T00:00:00|0", count=3)
    camel = query(CONTACTS_QUERY, "1900-01-01T00:00:00|0", count=3)
    camel["@func"][0]["recordCount"] = camel["@func"][0].pop("recordcount")
    upper = query(CONTACTS_QUERY, "1900-01-01T00:00:00|0", count=3)
    upper["@func"][0]["RECORDCOUNT"] = upper["@func"][0].pop("recordcount")
    three, everything, also_everything = rpc(efficy, [lower, camel, upper]).json()
    assert len(rows(three)) == 3
    assert len(rows(everything)) == len(rows(also_everything)) == 12  # an unknown key: ignored, no error
    assert "#error" not in everything and "#error" not in also_everything
    wrong_params = query(CONTACTS_QUERY, "1900-01-01T00:00:00|0")
    wrong_params["@func"][0]["queryParams"] = wrong_params["@func"][0].pop("queryparams")
    assert rpc(efficy, [wrong_params]).json()[0]["@func"][0]["#error"]["errorcode"] == "ER_QUERY_PARAMS"


def test_a_category_without_rights_is_a_null_dataset_and_cannot_be_activated(efficy: Sandboxes) -> None:
    app = efficy.url("efficy") + "/_sandbox/app"
    patched = requests.patch(app, json={"unavailable_categories": ["CONT$MARKETING"]}, timeout=5)
    assert patched.json()["unavailable_categories"] == ["CONT$MARKETING"]
    consult = {
        "@name": "consult",
        "entity": "Cont",
        "key": 3,
        "closecontext": True,
        "@func": [{"@name": "category", "category": "CONT$MARKETING"}],
    }
    answer = rpc(efficy, [consult]).json()[0]
    assert answer["@func"][0]["#result"] is None and "#error" not in answer
    before = efficy.customer("efficy", "3")
    refused = rpc(efficy, [edit(3, {"@name": "activateCategory", "category": "CONT$MARKETING"})]).json()[0]
    assert refused["@func"][0]["#error"] == {
        "errorcode": "EEfficyException",
        "errorstring": "You do not have the right to perform this operation",
        "detail": "SANDBOX-NO-RIGHTS",
    }
    assert efficy.customer("efficy", "3") == before
    assert requests.patch(app, json={"unavailable_categories": "CONT$MARKETING"}, timeout=5).status_code == 400
    requests.patch(app, json={"unavailable_categories": []}, timeout=5).raise_for_status()
    assert rows(rpc(efficy, [consult]).json()[0])[0]["SOURCE"] == "beurs"


def test_consultmanyex_finds_contacts_by_field_values_and_none_is_no_error(efficy: Sandboxes) -> None:
    def many(findfield: str, keys: str, **more: Any) -> Any:
        func = {"@name": "consultmanyex", "entity": "Cont", "findfield": findfield, "keys": keys, **more}
        return rpc(efficy, [{"@name": "api", "#id": "x", "@func": [func]}]).json()[0]

    assert [r["K_CONTACT"] for r in rows(many("K_CONTACT", "4"))] == [4]
    assert "categories" not in rows(many("K_CONTACT", "4"))[0]  # the main table's row
    assert rows(many("K_CONTACT", "999")) == [] and "#error" not in many("K_CONTACT", "999")
    # field by value, every pair met
    assert [r["K_CONTACT"] for r in rows(many("NAME|FIRSTNAME", "de Vries|Klant7", separator="|"))] == [7]
    assert many("K_CONTACT", "4")["#id"] == "x"  # the context comes back with its #id
    assert many("K_CONTACT;NAME", "4")["@func"][0]["#error"]["errorcode"] == "ER_INVALID_DATA"
    assert many("NOPE", "4")["@func"][0]["#error"]["errorcode"] == "ER_FIELD_UNKNOWN"


def test_consult_reads_categories_and_an_inactive_one_is_empty(efficy: Sandboxes) -> None:
    consult = {
        "@name": "consult",
        "entity": "Cont",
        "key": 3,
        "closecontext": True,
        "@func": [
            {"@name": "category", "category": "CONT$MARKETING"},
            {"@name": "category", "category": "CONT$CRMSYNC"},
            {"@name": "master", "tableview": 0},
        ],
    }
    marketing, crmsync, master = rpc(efficy, [consult]).json()[0]["@func"]
    assert marketing["#result"]["#data"] == [{"K_CONTACT": 3, "NEWSLETTER": "1", "SOURCE": "beurs"}]
    assert crmsync["#result"] == {"#class": "dataset", "#data": []}
    assert master["#result"]["#data"][0]["EMAIL1"] == "klant3@example.nl"
    assert master["#result"]["#data"][0]["PHONE1"] is None  # every main-table column, an empty one as null
    missing = rpc(efficy, [{**consult, "key": 999}]).json()[0]
    # refused as efficy raises its errors: its exception class, the text, a reference in detail
    assert missing["#error"] == {
        "errorcode": "EEfficyException",
        "errorstring": "Record 999 of entity Cont not found",
        "detail": "SANDBOX-RECORD-NOT-FOUND",
    }
    bad = rpc(efficy, [{**consult, "@func": [{"@name": "category", "category": "CONT$NOPE"}]}]).json()[0]
    assert bad["@func"][0]["#error"]["errorcode"] == "ER_CATEGORY_UNKNOWN"


def test_an_edit_commits_only_the_named_fields_of_an_activated_category(efficy: Sandboxes) -> None:
    before = efficy.customer("efficy", "4")
    reply = rpc(efficy, [edit(4, ACTIVATE, update({"SEGMENTS": "friends", "LOYALTY_TIER": "gold"}))]).json()
    assert "#error" not in reply[0]
    after = efficy.customer("efficy", "4")
    assert after["categories"]["CONT$CRMSYNC"] == {"SEGMENTS": "friends", "LOYALTY_TIER": "gold"}
    assert after["categories"]["CONT$MARKETING"] == before["categories"]["CONT$MARKETING"]
    assert {k: v for k, v in after.items() if k not in ("categories", "D_CHANGE")} == {
        k: v for k, v in before.items() if k not in ("categories", "D_CHANGE")
    }
    assert after["D_CHANGE"] > before["D_CHANGE"]
    assert efficy.stats("efficy")["writes"] == 1
    # the same values again change nothing, not even the modification time
    rpc(efficy, [edit(4, ACTIVATE, update({"SEGMENTS": "friends"}))])
    assert efficy.customer("efficy", "4") == after


def test_edit_refusals_commit_nothing(efficy: Sandboxes) -> None:
    before = efficy.customer("efficy", "5")
    app = efficy.app("efficy")
    with app.lock:
        app.locks[6] = "JDE"
    inactive, unknown_field, too_long, read_only, locked, missing, create, uncommitted, exception = rpc(
        efficy,
        [
            edit(5, update({"SEGMENTS": "friends"})),  # the category is not active on contact 5
            edit(5, ACTIVATE, update({"SEGMENTS": "x"}), update({"SEGMENT": "x"})),
            edit(5, ACTIVATE, update({"SEGMENTS": "x" * 256})),
            edit(5, update({"K_CONTACT": 7}, category=None)),
            edit(6, ACTIVATE, update({"SEGMENTS": "friends"})),
            edit(999, ACTIVATE, update({"SEGMENTS": "friends"})),
            edit(0, update({"NAME": "Nieuw"}, category=None)),
            edit(5, ACTIVATE, update({"SEGMENTS": "friends"}), commit=False),
        ],
    ).json()
    assert inactive["@func"][0]["#error"]["errorcode"] == "ER_CATEGORY_INACTIVE"
    assert unknown_field["#error"] is True and unknown_field["@func"][2]["#error"] == {
        "errorcode": "ER_FIELD_UNKNOWN",
        "errorstring": "Unknown field SEGMENT",
        "detail": "SEGMENT",
    }
    assert "#error" not in unknown_field["@func"][1]  # that update was fine, but the context failed
    assert too_long["@func"][1]["#error"]["errorcode"] == "ER_FIELD_LENGTH"
    assert read_only["@func"][0]["#error"]["errorcode"] == "ER_FIELD_READONLY"
    assert locked["#error"]["errorstring"] == "The record is being edited by JDE"
    assert missing["#error"]["errorcode"] == "EEfficyException"
    assert locked["#error"]["errorcode"] == "EEfficyException"
    assert create["#error"]["errorcode"] == "ER_NOT_EMULATED"
    assert "#error" not in uncommitted
    assert exception == {"@name": "exception", "#error": inactive["@func"][0]["#error"]}
    assert efficy.customer("efficy", "5") == before  # all or nothing per context; no commit, no change
    assert "CONT$CRMSYNC" not in efficy.customer("efficy", "6")["categories"]


def test_without_context_errors_only_the_exception_node_says_an_edit_failed(efficy: Sandboxes) -> None:
    """How efficy's employee's clients read a reply: a failure is the `exception` node that ends
    it, which names no context; the contexts are echoed unmarked, and the others still commit."""
    app = efficy.url("efficy") + "/_sandbox/app"
    assert requests.patch(app, json={"context_errors": "no"}, timeout=5).status_code == 400
    assert requests.patch(app, json={"context_errors": False}, timeout=5).json()["context_errors"] is False
    with efficy.app("efficy").lock:
        efficy.app("efficy").locks[6] = "JDE"
    fine, locked, exception = rpc(
        efficy, [edit(5, ACTIVATE, update({"SEGMENTS": "friends"})), edit(6, ACTIVATE, update({"SEGMENTS": "x"}))]
    ).json()
    assert "#error" not in fine and "#error" not in locked and all("#error" not in f for f in locked["@func"])
    assert exception["#error"] == {
        "errorcode": "EEfficyException",
        "errorstring": "The record is being edited by JDE",
        "detail": "SANDBOX-RECORD-LOCKED",
    }
    assert efficy.customer("efficy", "5")["categories"]["CONT$CRMSYNC"]["SEGMENTS"] == "friends"
    assert "CONT$CRMSYNC" not in efficy.customer("efficy", "6")["categories"]
    assert len(rpc(efficy, [edit(5, ACTIVATE, update({"SEGMENTS": "friends"}))]).json()) == 1  # no failure, no node


def test_main_table_fields_are_updated_with_table_view_0(efficy: Sandboxes) -> None:
    rpc(efficy, [edit(7, update({"MOBILE": "+31612345678"}, category=None))])
    assert efficy.customer("efficy", "7")["MOBILE"] == "+31612345678"
    unknown = rpc(efficy, [edit(7, update({"CRMSYNC_TIER": "gold"}, category=None))]).json()[0]
    assert unknown["@func"][0]["#error"]["errorcode"] == "ER_FIELD_UNKNOWN"


def test_rate_limit_is_answered_inside_a_200_with_a_retry_hint(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    efficy = start_sandboxes_fixture(
        {"efficy": {"customers": contacts(2)}},
        time_scale=10,
        options={"efficy": {"rate_limits": [Window(3, 10.0)]}},  # 3 per second once scaled
    )
    answers = [rpc(efficy, [{"@name": "api", "@func": [{"@name": "currentusername"}]}]) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    refusal = answers[3].json()["#error"]
    assert refusal["errorcode"] == "ER_TOO_MANY_REQUESTS"
    wait = float(refusal["detail"].split()[2])
    assert 0 < wait <= 1.0
    stats = efficy.stats("efficy")
    assert (stats["throttled"], stats["errors"]) == (1, 0)
    assert wait_until(lambda: rpc(efficy, [{"@name": "api", "@func": [{"@name": "currentusername"}]}]).ok, 3)
    assert efficy.app("efficy").client_settings()["rate_limit"] == [{"requests": 3, "per_seconds": 1.0}]


def test_faults_the_vendor_way(efficy: Sandboxes) -> None:
    efficy.fault("efficy", match="POST /crm/json", fault="vendor-throttle", retry_after=0.5)
    throttled = rpc(efficy, [query(CONTACTS_QUERY, "1900-01-01T00:00:00|0")])
    assert throttled.status_code == 200
    assert throttled.json()["#error"]["detail"] == "retry after 0.500 seconds"
    efficy.fault("efficy", match="reads", fault="repeat-item")
    repeated = rows(rpc(efficy, [query(CONTACTS_QUERY, "1900-01-01T00:00:00|0", count=3)]).json()[0])
    assert [r["K_CONTACT"] for r in repeated] == [1, 1, 2, 3]
    efficy.fault("efficy", match="writes", fault="auth")
    assert rpc(efficy, [edit(1, ACTIVATE, update({"SEGMENTS": "a"}))]).status_code == 401
    stats = efficy.stats("efficy")
    assert (stats["throttled"], stats["writes"], stats["errors"]) == (1, 1, 1)


def test_test_routes_show_and_patch_a_contact_in_fixture_shape(efficy: Sandboxes) -> None:
    patched = efficy.patch_customer(
        "efficy", "8", {"NAME": "Jansen", "categories": {"CONT$MARKETING": {"SOURCE": "x"}}}
    )
    assert patched["NAME"] == "Jansen"
    assert patched["categories"]["CONT$MARKETING"] == {"NEWSLETTER": "1", "SOURCE": "x"}
    assert patched["D_CHANGE"] > "2026-01-01T00:00:08"
    assert requests.get(efficy.url("efficy") + "/_sandbox/customers/999", timeout=5).status_code == 404
    assert efficy.stats("efficy")["requests"] == {}  # test routes are not counted


def test_fixture_with_wrong_structure_names_file_and_item(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    with pytest.raises(FixtureError, match=r"efficy/customers.json item 1: K_CONTACT must be a positive integer"):
        start_sandboxes_fixture({"efficy": {"customers": [{"K_CONTACT": 1}, {"K_CONTACT": "2"}]}})
    with pytest.raises(FixtureError, match=r"efficy/customers.json item 0: categories must map"):
        start_sandboxes_fixture({"efficy": {"customers": [{"K_CONTACT": 1, "categories": {"CONT$X": [1]}}]}})
    with pytest.raises(FixtureError, match=r"efficy/customers.json item 0: D_CHANGE is not an ISO 8601"):
        start_sandboxes_fixture({"efficy": {"customers": [{"K_CONTACT": 1, "D_CHANGE": "gisteren"}]}})
    with pytest.raises(FixtureError, match=r"efficy/orders.json item 0: AMOUNT must be a number"):
        start_sandboxes_fixture({"efficy": {"orders": [{"K_OPPORTUNITY": 1, "AMOUNT": None}]}})


def test_messy_but_well_typed_data_loads_as_it_is(start_sandboxes_fixture: Callable[..., Sandboxes]) -> None:
    messy = {"K_CONTACT": 9, "EMAIL1": "  J.de Vries@Gmail.COM", "MOBILE": "+31 (0)6 1234 5678", "EXTRA": [1]}
    efficy = start_sandboxes_fixture({"efficy": {"customers": [messy]}})
    stored = efficy.customer("efficy", "9")
    assert stored["EMAIL1"] == "  J.de Vries@Gmail.COM" and stored["MOBILE"] == "+31 (0)6 1234 5678"
    assert stored["EXTRA"] == [1] and stored["categories"] == {}
    assert stored["D_CHANGE"] == stored["D_CREATE"]  # derived where the fixture gives none


def test_a_client_gone_mid_body_ends_its_request_in_the_log(efficy: Sandboxes) -> None:
    """efficy's sandbox reads the body before the handler (to tell a write from a read): a client
    gone mid-body there too leaves no request in flight."""
    headers = {"X-Efficy-Apikey": DEFAULT_API_KEY, "Content-Type": "application/json"}
    send_half_a_body(efficy.url("efficy"), ENDPOINT, headers, b'[{"@name": "edit", "entity": "cont')
    app = efficy.app("efficy")
    assert wait_until(lambda: bool(app.stats.log) and requests_ended(app), timeout=10)
    assert app.stats.log[-1]["status"] == 400
