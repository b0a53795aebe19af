"""`check` for efficy against its sandbox, over real HTTP: the key, the saved queries and crmsync's
fields, proven with reads only (the fields from the rows of consulted contacts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.base import CheckReport
from connectors.efficy.client import EfficyConnector
from connectors.errors import AuthError
from sync.checking import check_failed, check_system
from tests.contract.test_efficy_sandbox import contacts, opportunities
from tests.kit import Sandboxes, make_connector

SEGMENTS, TIER = "CONT$CRMSYNC.SEGMENTS", "CONT$CRMSYNC.LOYALTY_TIER"
ENDPOINT = "POST /crm/json"


def people(n: int, active: tuple[int, ...] = (3,)) -> list[dict[str, Any]]:
    """Contacts 1..n; crmsync's category is active only on the ones in `active` (an earlier run)."""
    found = contacts(n)
    for key in active:
        found[key - 1]["categories"]["CONT$CRMSYNC"] = {"SEGMENTS": "friends", "LOYALTY_TIER": "gold"}
    return found


@pytest.fixture
def efficy(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"efficy": {"customers": people(12), "orders": opportunities(3)}})


def connector(sb: Sandboxes, **overrides: Any) -> EfficyConnector:
    made: EfficyConnector = make_connector(sb, "efficy", **overrides)
    return made


def by_name(report: CheckReport) -> dict[str, tuple[bool, str | None]]:
    """Each permission as `check --json` shows it: whether it is there, and the fix when it is not."""
    return {p.name: (p.ok, p.to_json()["fix"]) for p in report.permissions}


def test_everything_in_place_is_proven_and_nothing_changes(efficy: Sandboxes) -> None:
    before = [efficy.customer("efficy", str(key)) for key in range(1, 13)]
    report = connector(efficy).check()
    assert by_name(report) == {
        "query 10001 (contacts)": (True, None),
        "query 10002 (orders)": (True, None),
        f"field {SEGMENTS}": (True, None),
        f"field {TIER}": (True, None),
    }
    assert report.capabilities.to_json() == {
        "read_contacts": True,
        "read_orders": True,
        "incremental": True,
        "write_tags": False,
        "write_fields": True,
    }
    assert report.warnings == []
    stats = efficy.stats("efficy")
    assert (stats["requests"][ENDPOINT], stats["writes"]) == (2, 0)
    assert [efficy.customer("efficy", str(key)) for key in range(1, 13)] == before
    # a main-table field added for crmsync is proven from the contact's own row
    for key in range(1, 13):
        efficy.patch_customer("efficy", str(key), {"CRMSYNC_TIER": ""})
    assert by_name(connector(efficy, tier_field="CRMSYNC_TIER").check())["field CRMSYNC_TIER"] == (True, None)


@pytest.mark.parametrize(
    ("overrides", "name", "fix"),
    [
        (
            {"tier_field": "CONT$CRMSYNC.TIER"},
            "field CONT$CRMSYNC.TIER",
            "category CONT$CRMSYNC has no field TIER: add it as a text field in efficy's customisation, "
            "or correct tier_field",
        ),
        (
            {"tier_field": "CRMSYNC_TIER"},
            "field CRMSYNC_TIER",
            "contacts have no field CRMSYNC_TIER: create it as a text field on the contact table (Cont) in "
            "efficy's customisation, or correct tier_field",
        ),
        (
            {"segments_field": "CONT$LOYALTY.SEGMENT"},
            "field CONT$LOYALTY.SEGMENT",
            "efficy refused category CONT$LOYALTY: create it on contacts with a text field SEGMENT in efficy's "
            "customisation, or correct segments_field (efficy said: ER_CATEGORY_UNKNOWN: Unknown category "
            "'CONT$LOYALTY' for Cont)",
        ),
    ],
)
def test_a_configured_field_that_does_not_exist_is_missing_with_its_fix(
    efficy: Sandboxes, overrides: dict[str, str], name: str, fix: str
) -> None:
    report = connector(efficy, **overrides).check()
    assert [(p.name, p.fix) for p in report.missing] == [(name, fix)]
    assert report.capabilities.write_fields is False
    assert report.capabilities.read_contacts is True
    result = check_system("efficy", connector(efficy, **overrides))
    assert result["auth"] == "ok" and check_failed(result)  # `crmsync check` exits 3
    assert result["error"] == f"{name} missing: {fix}"
    assert efficy.stats("efficy")["writes"] == 0


def test_a_category_the_user_has_no_rights_on_is_missing(efficy: Sandboxes) -> None:
    app = efficy.url("efficy") + "/_sandbox/app"
    requests.patch(app, json={"unavailable_categories": ["CONT$CRMSYNC"]}, timeout=5).raise_for_status()
    report = connector(efficy).check()
    assert [p.name for p in report.missing] == [f"field {SEGMENTS}", f"field {TIER}"]
    assert (report.missing[0].fix or "").startswith(
        "category CONT$CRMSYNC is not available to the API key's user: grant the user rights on it"
    )


def test_a_category_active_on_no_consulted_contact_is_a_warning_not_a_failure(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """A fresh category is active on no contact yet: its fields cannot be seen, so they are not
    proven (and not write_fields), but that is no reason to refuse the system."""
    efficy = start_sandboxes_fixture({"efficy": {"customers": people(4, active=())}})
    report = connector(efficy).check()
    assert report.missing == []
    assert by_name(report)[f"field {SEGMENTS}"] == (
        False,
        "make sure category CONT$CRMSYNC on contacts has a text field SEGMENTS",
    )
    assert report.warnings[-1].startswith(f"{TIER} not proven: category CONT$CRMSYNC is active on none of the 4")
    assert report.capabilities.write_fields is False and not check_failed(check_system("efficy", connector(efficy)))


def test_a_contact_deleted_before_its_consult_is_passed_over(efficy: Sandboxes) -> None:
    """efficy refuses the consult of a contact deleted since the query listed it (in words that are
    not public): asked by its key, efficy no longer has it, so the check goes on without it."""
    made = connector(efficy)
    sent = made.rpc

    def rpc(contexts: list[dict[str, Any]], *, mutating: bool) -> list[Any]:
        if any(c.get("@name") == "consult" for c in contexts):
            app = efficy.app("efficy")
            with app.lock:
                app.contacts.pop(3, None)  # the one contact crmsync's category is active on
        return sent(contexts, mutating=mutating)

    made.rpc = rpc  # type: ignore[method-assign]
    report = made.check()
    assert report.missing == [] and by_name(report)[f"field {SEGMENTS}"][0] is False
    assert report.warnings[-1].startswith(f"{TIER} not proven: category CONT$CRMSYNC is active on none of the 11")


def test_without_a_contact_to_consult_the_fields_are_a_warning(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    efficy = start_sandboxes_fixture({"efficy": {"customers": []}})
    report = connector(efficy).check()
    assert report.missing == [] and report.capabilities.write_fields is False
    assert report.warnings == [f"no contact to consult: {SEGMENTS}, {TIER} could not be checked"]
    assert efficy.stats("efficy")["requests"][ENDPOINT] == 1  # nothing to consult: no second request


def test_wrong_credentials_are_an_auth_error_on_the_first_call(efficy: Sandboxes) -> None:
    with pytest.raises(AuthError, match=r"efficy: POST /crm/json: credentials refused \(HTTP 200\): ER_LOGON"):
        connector(efficy, api_key="0000").check()
    assert efficy.stats("efficy")["requests"][ENDPOINT] == 1  # refused once, not retried, nothing more asked
    result = check_system("efficy", connector(efficy, api_key="0000"))
    assert (result["reachable"], result["auth"]) == (True, "refused") and check_failed(result)
