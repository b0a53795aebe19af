"""A changed field map or mapping rule reaches the records already stored, at the next cycle.

The records are not read again (nothing changed at the vendor, and reads are incremental): the
stored raw payloads are mapped again because what maps them changed. Before, a `country` added to
an AFAS `fields` line, or a `default_country` set, reached only the records the vendor changed
afterwards."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from connectors.afas.fixtures import demo_fixtures
from connectors.registry import fixtures_function
from connectors.sandbox.people import Person
from tests.kit import Sandboxes, run_crmsync

COUNTRY = 'fields = { country = { path = "CountryId", normaliser = "country" } }'


def stored_phones(folder: Path) -> dict[str, tuple[str, str]]:
    with closing(sqlite3.connect(folder / "crmsync.db")) as db:
        return {
            rid: (phone, kind) for rid, phone, kind in db.execute("SELECT record_id, phone, phone_kind FROM contacts")
        }


def sync(config: Path) -> None:
    result = run_crmsync("sync", "-c", str(config), "--json", "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_changed_field_map_or_default_country_maps_the_stored_records_again(
    start_sandboxes_fixture: Callable[..., Sandboxes], tmp_path: Path
) -> None:
    people = [
        Person(i, f"Klant{i}", "Müller", f"k{i}@example.de", "0621 123456", "Q1 1", "68161", "Mannheim", ("afas",))
        for i in (1, 2)
    ]
    data = demo_fixtures(people)
    data["customers"][0].update({"Mobile": "0621 123456", "CountryId": "DE"})
    data["customers"][1].update({"Mobile": "0621 123456", "CountryId": None})
    german, unknown = (row["PersonId"] for row in data["customers"])
    sandboxes = start_sandboxes_fixture({"afas": data})

    sync(sandboxes.config(tmp_path))
    assert stored_phones(tmp_path) == {german: ("+31621123456", "mobile"), unknown: ("+31621123456", "mobile")}

    sync(sandboxes.config(tmp_path, afas=COUNTRY))  # the setup guide's line, added
    assert stored_phones(tmp_path) == {german: ("+49621123456", "landline"), unknown: ("+31621123456", "mobile")}

    # A rule of the mapping, too: the record without a country is read as the new default's.
    sync(sandboxes.config(tmp_path, extra='\n[identity]\ndefault_country = "DE"\n', afas=COUNTRY))
    assert stored_phones(tmp_path) == {german: ("+49621123456", "landline"), unknown: ("+49621123456", "landline")}

    # Unchanged configuration, unchanged records: nothing is mapped again (the log would say so).
    again = run_crmsync(
        "sync",
        "-c",
        str(sandboxes.config(tmp_path, extra='\n[identity]\ndefault_country = "DE"\n', afas=COUNTRY)),
        "--json",
        "--dry-run",
        "--log-json",
    )
    assert again.returncode == 0 and "mapping stored records again" not in again.stderr
    assert (
        "mapping stored records again"
        in run_crmsync(
            "sync", "-c", str(sandboxes.config(tmp_path, afas=COUNTRY)), "--json", "--dry-run", "--log-json"
        ).stderr
    )


def test_a_field_mapped_from_a_column_not_read_before_reads_superoffice_in_full(
    start_sandboxes_fixture: Callable[..., Sandboxes], tmp_path: Path
) -> None:
    """An archive answers only the columns asked for: the persons stored before `company` was
    mapped hold no `personContact/name`, so mapping them again cannot find it. The next cycle
    reads SuperOffice in full instead (the records unchanged at the vendor included)."""
    people = [
        Person(
            i,
            f"Klant{i}",
            "Jansen",
            f"k{i}@example.nl",
            "0612345678",
            "Dam 1",
            "1012 JS",
            "Amsterdam",
            ("superoffice",),
        )
        for i in range(1, 9)
    ]
    data = fixtures_function("superoffice")(people)
    companies = {str(p["PersonId"]): p["Contact"]["Name"] for p in data["customers"] if p.get("Contact")}
    assert companies  # some persons work at a company
    sandboxes = start_sandboxes_fixture({"superoffice": data})

    sync(sandboxes.config(tmp_path))
    assert stored_companies(tmp_path) == {}
    sync(sandboxes.config(tmp_path, superoffice='fields = { company = "personContact/name" }'))
    assert stored_companies(tmp_path) == companies


def stored_companies(folder: Path) -> dict[str, str]:
    with closing(sqlite3.connect(folder / "crmsync.db")) as db:
        rows = db.execute("SELECT record_id, details FROM contacts").fetchall()
    return {rid: company for rid, details in rows if (company := json.loads(details).get("company"))}
