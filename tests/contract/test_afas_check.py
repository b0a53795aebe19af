"""`check` for AFAS Profit against its sandbox, over real HTTP: what the token's app connector holds
and KnPerson's free fields, proven from Profit's metainfo without reading or writing data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.afas.client import AfasConnector
from connectors.afas.sandbox import DEFAULT_FREE_FIELDS, INVOICES, PERSONS, FreeField, free_field_id
from connectors.base import CheckReport
from connectors.errors import AuthError
from sync.checking import check_failed, check_system
from tests.contract.test_afas_sandbox import invoices, persons
from tests.kit import Sandboxes, make_connector

KNPERSON_FIX = "add UpdateConnector KnPerson to the app connector in Profit: Algemeen > Beheer > App connectoren"
METAINFO = "GET /ProfitRestServices/metainfo"


@pytest.fixture
def afas(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"afas": {"customers": persons(5), "orders": invoices(3)}})


def connector(sb: Sandboxes, **overrides: Any) -> AfasConnector:
    made: AfasConnector = make_connector(sb, "afas", **overrides)
    return made


def app_connector(sb: Sandboxes, **contents: list[str]) -> dict[str, Any]:
    response = requests.patch(f"{sb.url('afas')}/_sandbox/app", json=contents, timeout=5)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def by_name(report: CheckReport) -> dict[str, tuple[bool, str | None]]:
    """Each permission as `check --json` shows it: whether it is there, and the fix when it is not."""
    return {p.name: (p.ok, p.to_json()["fix"]) for p in report.permissions}


def test_everything_in_place_is_proven_from_metainfo_alone(afas: Sandboxes) -> None:
    report = connector(afas).check()
    assert by_name(report) == {
        f"getconnector {PERSONS}": (True, None),
        f"getconnector {INVOICES}": (True, None),
        "updateconnector KnPerson": (True, None),
        "field crmsync_segments": (True, None),
        "field crmsync_loyalty_tier": (True, None),
    }
    assert report.capabilities.to_json() == {
        "read_contacts": True,
        "read_orders": True,
        "incremental": True,
        "write_tags": False,
        "write_fields": True,
    }
    assert report.missing == [] and report.warnings == []
    stats = afas.stats("afas")
    assert stats["requests"] == {
        METAINFO: 1,
        "GET /ProfitRestServices/metainfo/get/<name>": 2,
        "GET /ProfitRestServices/metainfo/update/<name>": 1,
    }  # no data call: nothing read from the GetConnectors, nothing written
    assert stats["writes"] == 0
    # free fields named by their id (hex digits in any case) are found by fieldId, as the writer uses them
    by_id = connector(
        afas,
        segments_field="U" + free_field_id("crmsync_segments")[1:].lower(),
        tier_field=free_field_id("crmsync_loyalty_tier"),
        segments_column="crmsync_segments",
        tier_column="crmsync_loyalty_tier",
    ).check()
    assert by_id.missing == [] and by_id.capabilities.write_fields


def test_knperson_outside_the_app_connector_is_a_missing_permission_with_its_fix(afas: Sandboxes) -> None:
    assert app_connector(afas, update_connectors=[])["update_connectors"] == []
    report = connector(afas).check()
    assert by_name(report)["updateconnector KnPerson"] == (False, KNPERSON_FIX)
    assert [p.name for p in report.missing] == ["updateconnector KnPerson"]
    assert not any(name.startswith("field ") for name in by_name(report))  # not provable without it
    assert report.warnings == ["the free fields were not checked: UpdateConnector KnPerson is not usable"]
    caps = report.capabilities
    assert (caps.read_contacts, caps.read_orders, caps.write_fields) == (True, True, False)
    # `crmsync check` reads this as "auth ok, a needed permission missing": exit 3, the fix named
    result = check_system("afas", connector(afas))
    assert result["auth"] == "ok" and check_failed(result)
    assert result["error"] == f"updateconnector KnPerson missing: {KNPERSON_FIX}"
    # without write-back KnPerson is not needed at all
    reader = connector(afas, writeback=False).check()
    assert reader.missing == [] and "updateconnector KnPerson" not in by_name(reader)
    assert afas.stats("afas")["writes"] == 0


def test_a_getconnector_outside_the_app_connector_means_that_stream_cannot_be_read(afas: Sandboxes) -> None:
    app_connector(afas, get_connectors=[PERSONS])
    report = connector(afas).check()
    ok, fix = by_name(report)[f"getconnector {INVOICES}"]
    assert not ok and fix == (
        f"add GetConnector {INVOICES} (the sales invoices) to the app connector in Profit: "
        "Algemeen > Beheer > App connectoren"
    )
    assert (report.capabilities.read_contacts, report.capabilities.read_orders) == (True, False)
    # its metainfo was not even asked for: /metainfo already said it is not there
    assert afas.stats("afas")["requests"]["GET /ProfitRestServices/metainfo/get/<name>"] == 1


@pytest.mark.parametrize(
    ("free_fields", "overrides", "problem"),
    [
        # the tier field was never created in this environment
        (
            DEFAULT_FREE_FIELDS,
            {"tier_field": "Klantstatus", "tier_column": "crmsync_loyalty_tier"},
            "has no free field",
        ),
        # it exists, but as a 10-character field: most tier names would be refused
        (
            [DEFAULT_FREE_FIELDS[0], FreeField("crmsync_loyalty_tier", "crmsync_loyalty_tier", 10)],
            {},
            "holds 10 characters, too few",
        ),
        # a free field of another type carries the label
        (
            [DEFAULT_FREE_FIELDS[0], FreeField("crmsync_loyalty_tier", "crmsync_loyalty_tier", 0, "date")],
            {},
            "of type 'date'",
        ),
        # a free field linked to a table (custom-fields.md: "primary key validation"): only its codes pass
        (
            [DEFAULT_FREE_FIELDS[0], FreeField("crmsync_loyalty_tier", "crmsync_loyalty_tier", 40, values=("G", "Z"))],
            {},
            "takes only the codes of a table",
        ),
        # KnPerson's own fields hold the merchant's data: never crmsync's, by label or by id
        (DEFAULT_FREE_FIELDS, {"tier_field": "Remark", "tier_column": "crmsync_loyalty_tier"}, "has no free field"),
        (DEFAULT_FREE_FIELDS, {"tier_field": "Re", "tier_column": "crmsync_loyalty_tier"}, "has no free field"),
    ],
)
def test_a_configured_free_field_that_is_not_usable_text_is_missing_with_its_fix(
    start_sandboxes_fixture: Callable[..., Sandboxes],
    free_fields: list[FreeField],
    overrides: dict[str, str],
    problem: str,
) -> None:
    afas = start_sandboxes_fixture(
        {"afas": {"customers": persons(3)}}, options={"afas": {"free_fields": tuple(free_fields)}}
    )
    crm = connector(afas, **overrides)
    report = crm.check()
    assert [p.name for p in report.missing] == [f"field {crm.tier_field}"]
    fix = report.missing[0].fix or ""
    assert problem in fix
    assert "create it as a free field on Persoon in Profit (type text, at least 20 characters)" in fix
    assert "tier_field" in fix
    assert by_name(report)["field crmsync_segments"] == (True, None)
    assert report.capabilities.write_fields is False and report.capabilities.read_contacts is True


def test_a_free_field_missing_from_the_persons_view_is_named_as_a_column(
    start_sandboxes_fixture: Callable[..., Sandboxes],
) -> None:
    """The field exists on KnPerson, but the persons GetConnector does not show it: crmsync could
    write it and never see what it wrote."""
    afas = start_sandboxes_fixture({"afas": {"customers": persons(3)}})
    report = connector(afas, tier_column="Loyaliteit").check()
    assert [p.name for p in report.missing] == [f"column {PERSONS}.Loyaliteit"]
    assert "or set tier_column to the column showing it" in (report.missing[0].fix or "")


def test_a_wrong_token_is_an_auth_error_on_the_first_call(afas: Sandboxes) -> None:
    with pytest.raises(AuthError, match=r"afas: GET /ProfitRestServices/metainfo: credentials refused \(HTTP 401\)"):
        connector(afas, token="00FF00FF").check()
    assert afas.stats("afas")["requests"] == {METAINFO: 1}  # refused once, not retried, nothing more asked
    result = check_system("afas", connector(afas, token="00FF00FF"))
    assert (result["reachable"], result["auth"]) == (True, "refused") and check_failed(result)


def test_a_refused_token_names_the_environment_as_a_suspect(afas: Sandboxes) -> None:
    """A token belongs to one environment and AFAS answers a URL of another with a 401 like any
    wrong token (help.afas.nl 120612): the first call's refusal names base_url's environment, and
    no connector, which /metainfo does not need."""
    with pytest.raises(AuthError) as refused:
        connector(afas, token="00FF00FF").check()
    message = str(refused.value)
    assert "wrong or expired token" in message and "base_url" in message and ".resttest." in message
    assert "not in the app connector" not in message
