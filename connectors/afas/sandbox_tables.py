"""The AFAS sandbox's data: the emulated GetConnectors (their columns, with types, and their rows
in a FixtureStore), KnPerson's free fields, and fixture rows checked and filled in as Profit
would serve them (nulls for empty fields, the audit dates always filled, in Profit's format).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.afas.profit_time import format_profit, now_wall, parse_wall
from connectors.sandbox import FixtureError, VendorError
from connectors.sandbox.store import FixtureStore, Record

UNEXPECTED = "Er is een onverwachte fout opgetreden."
ERROR_NUMBER = -2147220469  # Profit's usual generic number; clients must not branch on it
AUDIT_DATES = ("CreateDate", "ModifiedDate")

# Column types of the emulated GetConnectors: string | integer | decimal | boolean | date.
PERSON_COLUMNS: dict[str, str] = {
    "PersonId": "string",
    "FirstName": "string",
    "Initials": "string",
    "Prefix": "string",
    "LastName": "string",
    "Email": "string",
    "Phone": "string",
    "Mobile": "string",
    "Street": "string",
    "HouseNumber": "integer",
    "HouseNumberAdd": "string",
    "ZipCode": "string",
    "City": "string",
    "CountryId": "string",
    "OrganisationId": "string",
    "OrganisationName": "string",
    "DebtorId": "string",
    "CreateDate": "date",
    "ModifiedDate": "date",
}
INVOICE_COLUMNS: dict[str, str] = {
    "InvoiceId": "string",
    "InvoiceDate": "date",
    "DebtorId": "string",
    "PersonId": "string",
    "OrganisationId": "string",
    "AmountExclVat": "decimal",
    "AmountInclVat": "decimal",
    "Currency": "string",
    "Credited": "boolean",
    "CreateDate": "date",
    "ModifiedDate": "date",
}


def free_field_id(label: str) -> str:
    """A stable GUID-like free-field id for a label (Profit makes them random per environment)."""
    return "U" + hashlib.md5(label.encode(), usedforsecurity=False).hexdigest().upper()


@dataclass(frozen=True)
class FreeField:
    """A free field (vrij veld) on KnPerson: its UpdateConnector id, its label, and the column the
    persons GetConnector shows it in."""

    label: str
    column: str
    length: int = 255
    data_type: str = "string"
    # A field linked to a table: only these codes pass ("primary key validation", custom-fields.md).
    values: tuple[str, ...] | None = None

    @property
    def field_id(self) -> str:
        return free_field_id(self.label)


DEFAULT_FREE_FIELDS = (
    FreeField("crmsync_segments", "crmsync_segments"),
    FreeField("crmsync_loyalty_tier", "crmsync_loyalty_tier", 40),
    FreeField("Webshop klantnummer", "Webshop_klantnummer", 20),
    FreeField("Voorkeurswinkel", "Voorkeurswinkel", 80),
)


@dataclass
class Table:
    """One GetConnector: its columns (with types) and its rows, by key as text (a fixture's
    PersonId 7 is the row "7"), in a FixtureStore that finds them as a client writes the key."""

    name: str
    description: str
    key: str
    columns: dict[str, str]
    store: FixtureStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = FixtureStore(self.name, key=self.key, id_of=str, touch=touch, fixed=(self.key, *AUDIT_DATES))

    @property
    def rows(self) -> dict[str, Record]:
        """The live rows by key (the chaos tests stamp and edit them here)."""
        return self.store.records

    def patch(self, key: str, partial: Mapping[str, Any]) -> Record | None:
        """A user editing the row in Profit: every column but the key and the audit dates is
        replaced whole (a row is flat), a new one becomes a text column; the row is touched."""
        return self.store.patch(key, partial, merge=self._set_column)

    def _set_column(self, row: Record, column: str, value: Any) -> bool:
        if column not in self.store.fixed:
            self.columns.setdefault(column, "string")
            row[column] = copy.deepcopy(value)
        return True

    def load(self, items: Any, where: str) -> None:
        """Fixture rows, each checked and completed (`where` names the file in messages)."""
        for index, item in enumerate(items or []):
            self._load_row(f"{where} item {index}", item)

    def _load_row(self, where: str, item: Any) -> None:
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected an object (one GetConnector row)")
        key = item.get(self.key)
        if isinstance(key, bool) or not isinstance(key, str | int) or str(key).strip() == "":
            raise FixtureError(f"{where}: {self.key} must be a non-empty string or integer")
        if str(key) in self.rows:
            raise FixtureError(f"{where}: {self.key} {key!r} appears twice")
        row = copy.deepcopy(item)
        for column, kind in self.columns.items():
            if kind != "any":
                _check_type(where, column, kind, row.get(column))
        for column in [c for c in row if c not in self.columns]:
            self.columns[column] = "any"  # a real export may hold more columns: kept as they are
            for other in self.rows.values():
                other[column] = None
        for column in self.columns:
            row.setdefault(column, None)  # every row has every column; an empty one is null
        _normalise_dates(row)
        self.rows[str(key)] = row


def touch(row: Record) -> None:
    """A change moves the row's audit date, which is what an incremental read filters on."""
    row["ModifiedDate"] = format_profit(now_wall())


def _normalise_dates(row: dict[str, Any]) -> None:
    """Profit writes `YYYY-MM-DDTHH:MM:SSZ`; the audit dates are always filled."""
    for column in ("CreateDate", "ModifiedDate", "InvoiceDate"):
        if isinstance(row.get(column), str):
            row[column] = format_profit(parse_wall(row[column]))
    if "ModifiedDate" in row:
        row["CreateDate"] = row.get("CreateDate") or row.get("ModifiedDate") or format_profit(now_wall())
        row["ModifiedDate"] = row.get("ModifiedDate") or row["CreateDate"]
    if "InvoiceDate" in row and row["InvoiceDate"] is None:
        row["InvoiceDate"] = row["CreateDate"]


def profit_error(message: str) -> VendorError:
    """A refusal the way Profit gives it: HTTP 500 with `externalMessage`."""
    return VendorError(500, "profit", message)


def field_not_found(name: str) -> VendorError:
    return profit_error(f"Connector field '{name}' not found")


def _check_type(where: str, column: str, kind: str, value: Any) -> None:
    """Fixtures may be messy, but a column must hold what its type says (or null)."""
    if value is None:
        return
    ok = {
        "string": isinstance(value, str | int | float) and not isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "decimal": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "date": isinstance(value, str),
    }[kind]
    if kind == "date" and ok:
        try:
            parse_wall(value)
        except ValueError:
            ok = False
    if not ok:
        expected = {
            "date": "a date-time like 2025-03-01T10:00:00Z",
            "decimal": "a number",
            "integer": "an integer",
            "boolean": "true or false",
        }.get(kind, "text")
        raise FixtureError(f"{where}: {column} must be {expected} or null")
