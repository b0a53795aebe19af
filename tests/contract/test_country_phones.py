"""A phone number is read in the format of its contact's country, for every vendor that holds one.

Mannheim's `0621 123456` is a German landline; read as Dutch it is `+31 6 21123456`, a mobile, and
a mobile joins profiles (a household's or an office's shared line would join its people). Each
vendor's person, in the vendor's own shape (the demo generator's record, its country and phone set),
is read over HTTP from the emulator and mapped by the connector's field map; for AFAS and efficy,
whose lists the administrator builds, with the `fields` line their setup guides give."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.registry import fixtures_function
from connectors.sandbox.people import Person
from mapping.model import Contact, Kind, SourceRecord
from sync.drift import DriftDetected, DriftGuard
from sync.mapper import make_mapper
from tests.kit import Sandboxes, make_connector

MANNHEIM = "0621 123456"
GERMAN = ("+49621123456", "landline")
DUTCH = ("+31621123456", "mobile")

# Per vendor: the keys that make a record German (its country and the number), the keys that give
# a Dutch record the same digits, and the connector settings the setup guide asks for.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "lightspeed": (
        {"phone": MANNHEIM, "addressBillingCountry": {"id": 80, "code": "de", "code3": "deu", "title": "Duitsland"}},
        {"phone": MANNHEIM, "addressBillingCountry": False},  # unset, as Lightspeed sends it
        {},
    ),
    "superoffice": (
        {
            "MobilePhones": [{"Value": MANNHEIM, "Description": ""}],
            "Country": {"CountryId": 276, "Name": "Duitsland", "EnglishName": "Germany", "TwoLetterISOCountry": "DE"},
        },
        {"MobilePhones": [{"Value": MANNHEIM, "Description": ""}]},
        {},
    ),
    "silvasoft": ({"Phone": MANNHEIM, "Address_CountryCode": "DE"}, {"Phone": MANNHEIM}, {}),
    "afas": (
        {"Mobile": MANNHEIM, "CountryId": "DE"},
        {"Mobile": MANNHEIM},
        {"fields": {"country": {"path": "CountryId", "normaliser": "country"}}},
    ),
    "efficy": (
        {"MOBILE": MANNHEIM, "COUNTRY": "Duitsland"},
        {"MOBILE": MANNHEIM},
        {"fields": {"country": {"path": "COUNTRY", "normaliser": "country"}}},
    ),
}


def person(index: int, system: str) -> Person:
    return Person(
        index, f"Klant{index}", "Müller", f"klant{index}@example.de", MANNHEIM, "Q1 1", "68161", "Mannheim", (system,)
    )


def phones(sandboxes: Sandboxes, system: str, settings: dict[str, Any]) -> dict[str, tuple[str | None, str | None]]:
    """The mapped phone (E.164, kind) of every contact the connector reads, by given name."""
    connector = make_connector(sandboxes, system, **settings)
    mapper = make_mapper(connector, Kind.CONTACT, {system: connector})
    found = {}
    for page in connector.read_contacts(None):
        for record in page.records:
            contact = mapper(record)
            assert isinstance(contact, Contact), contact
            found[contact.given_name or ""] = (contact.phone, contact.phone_kind)
    return found


@pytest.mark.parametrize("system", sorted(CASES))
def test_a_phone_is_read_in_its_contacts_country(
    system: str, start_sandboxes_fixture: Callable[..., Sandboxes]
) -> None:
    german, dutch, settings = CASES[system]
    data = fixtures_function(system)([person(1, system), person(2, system)])
    data["customers"][0].update(german)
    data["customers"][1].update(dutch)
    sandboxes = start_sandboxes_fixture({system: data})
    assert phones(sandboxes, system, settings) == {"Klant1": GERMAN, "Klant2": DUTCH}


@pytest.mark.parametrize("system", ["afas", "efficy"])
def test_without_a_mapped_country_the_number_is_read_as_the_default_countrys(
    system: str, start_sandboxes_fixture: Callable[..., Sandboxes]
) -> None:
    """The lists these systems' administrators build need not hold a country: it is opt-in, and
    without it every number is read as `default_country`'s (what the setup guides warn about)."""
    german, _, _ = CASES[system]
    data = fixtures_function(system)([person(1, system)])
    data["customers"][0].update(german)
    sandboxes = start_sandboxes_fixture({system: data})
    assert phones(sandboxes, system, {}) == {"Klant1": DUTCH}


NOW = datetime(2026, 6, 1, tzinfo=UTC)


def guard(connector: Any) -> DriftGuard:
    return DriftGuard(connector.name, "contacts", connector.api_name, connector.drift_paths("contacts", Kind.CONTACT))


def page(system: str, payloads: list[dict[str, Any]]) -> list[SourceRecord]:
    return [SourceRecord(system, Kind.CONTACT, str(n), NOW, payload) for n, payload in enumerate(payloads)]


def test_a_page_of_customers_without_a_country_is_not_drift(sandboxes: Sandboxes) -> None:
    """Lightspeed sends `false` for an unset country, and Silvasoft's list replies may not carry
    the country at all (documented for updates only): a page of them is no renamed field. A page
    without the fields crmsync cannot do without still stops the stream."""
    lightspeed = make_connector(sandboxes, "lightspeed")
    unset = [{**_customer(n), "addressBillingCountry": False} for n in range(60)]
    guard(lightspeed).check_page(page("lightspeed", unset), 1)

    silvasoft = make_connector(sandboxes, "silvasoft")
    relations = [{"CustomerNumber": n, "Email": "", "Phone": "", "Relation_Contact": []} for n in range(60)]
    guard(silvasoft).check_page(page("silvasoft", relations), 1)
    without_email = [{k: v for k, v in r.items() if k != "Email"} for r in relations]
    with pytest.raises(DriftDetected, match="no field 'Email'"):
        guard(silvasoft).check_page(page("silvasoft", without_email), 1)


def _customer(n: int) -> dict[str, Any]:
    return {"id": n, "email": f"k{n}@example.nl", "firstname": "K", "lastname": "V", "phone": "", "birthDate": False}
