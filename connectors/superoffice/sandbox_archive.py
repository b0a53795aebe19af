"""The archive lists of the SuperOffice emulator: `/Person`, `/Sale` and `/Archive/{provider}`.

Column names and types of the Person and Sale providers follow SuperOffice's own reference
(SuperOfficeDocs/superoffice-docs, docs/en/api/archive-providers/reference/person.md, sale.md:
`personUpdatedDate`, `email/emailAddress`, `personUdef/SuperOffice:1`, `personExtra/x_...`,
`personInterestIds`); the query language is archive.py's. Display values follow the request's
language (`SO-Language`, else `Accept-Language`, else the tenant's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from connectors.sandbox import SandboxApp, VendorError, json_response
from connectors.superoffice.archive import ArchiveError, Column, ColumnKind, Provider, parse_query, run_query
from connectors.superoffice.sandbox_persons import FieldDef

SALE_STATUSES = ("Unknown", "Open", "Sold", "Lost", "Stalled")
# The salestatus list's display names per language (English from the MDO list; Dutch assumed).
STATUS_NAMES = {
    "en": {"Unknown": "Unknown", "Open": "Open", "Sold": "Sold", "Lost": "Lost", "Stalled": "Stalled"},
    "nl": {"Unknown": "Onbekend", "Open": "Open", "Sold": "Verkocht", "Lost": "Verloren", "Stalled": "Gestopt"},
}


def _first_value(entity: Mapping[str, Any], key: str) -> Any:
    items = entity.get(key)
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0].get("Value")
    return None


def _nested(entity: Mapping[str, Any], key: str, inner: str) -> Any:
    value = entity.get(key)
    return value.get(inner) if isinstance(value, dict) else None


class ArchiveRoutes(SandboxApp):
    """The archive providers over the sandbox's persons and sales."""

    tenant: str
    language: str
    next_link: bool
    persons: dict[int, dict[str, Any]]
    sales: dict[int, dict[str, Any]]
    selected: dict[int, set[int]]
    fields: dict[str, FieldDef]
    _display_language: str

    def _person_column(self, name: str) -> Column | None:
        simple: dict[str, Column] = {
            "personId": Column("int", lambda p: p["PersonId"]),
            "firstName": Column("string", lambda p: p.get("Firstname")),
            "middleName": Column("string", lambda p: p.get("MiddleName")),
            "lastName": Column("string", lambda p: p.get("Lastname")),
            "fullName": Column("string", lambda p: self._render_name(p)),
            "title": Column("string", lambda p: p.get("Title")),
            "personNumber": Column("string", lambda p: p.get("PersonNumber")),
            "contactId": Column("int", lambda p: _nested(p, "Contact", "ContactId")),
            "personContact/name": Column("string", lambda p: _nested(p, "Contact", "Name")),
            "personUpdatedDate": Column("date", lambda p: p.get("UpdatedDate")),
            "personRegisteredDate": Column("date", lambda p: p.get("CreatedDate")),
            "email/emailAddress": Column("string", lambda p: _first_value(p, "Emails")),
            "personMobilePhone/formattedNumber": Column("string", lambda p: _first_value(p, "MobilePhones"), False),
            "personDirectPhone/formattedNumber": Column("string", lambda p: _first_value(p, "OfficePhones"), False),
            "personPrivate/formattedNumber": Column("string", lambda p: _first_value(p, "PrivatePhones"), False),
            "personNoMail": Column("bool", lambda p: bool(p.get("NoMailing"))),
            "retired": Column("bool", lambda p: bool(p.get("Retired"))),
            "personCountry": Column("string", self._country_name),
            "personInterestIds": Column("ids", lambda p: self.selected.get(p["PersonId"], set()), False),
        }
        if name in simple:
            return simple[name]
        bucket, _, field = name.partition("/")
        definition = self.fields.get(field)
        if definition is None or bucket != ("personExtra" if definition.is_extra else "personUdef"):
            return None
        kind: ColumnKind = "int" if definition.kind == "Integer" else "string"
        return Column(kind, lambda p: _custom_value(p["CustomFields"].get(field), definition))

    @staticmethod
    def _render_name(person: Mapping[str, Any]) -> str:
        parts = (person.get("Firstname"), person.get("MiddleName"), person.get("Lastname"))
        return str(person.get("FullName") or " ".join(p for p in parts if p))

    def _sale_column(self, name: str) -> Column | None:
        def person_email(sale: Mapping[str, Any]) -> Any:
            person = self.persons.get(_nested(sale, "Person", "PersonId") or -1)
            return _first_value(person, "Emails") if person else None

        columns: dict[str, Column] = {
            "saleId": Column("int", lambda s: s["SaleId"]),
            "heading": Column("string", lambda s: s.get("Heading")),
            "saleNumber": Column("string", lambda s: s.get("Number")),
            "amount": Column("decimal", lambda s: s.get("Amount")),
            "currency": Column("string", lambda s: _currency(s.get("Currency"))),
            "date": Column("date", lambda s: s.get("Saledate")),
            "saleStatus": Column("string", lambda s: self._status_name(s.get("Status"))),
            "personId": Column("int", lambda s: _nested(s, "Person", "PersonId")),
            "person/personId": Column("int", lambda s: _nested(s, "Person", "PersonId")),
            "person/email/emailAddress": Column("string", person_email),
            "contactId": Column("int", lambda s: _nested(s, "Contact", "ContactId")),
            "updatedDate": Column("date", lambda s: s.get("UpdatedDate")),
            "registeredDate": Column("date", lambda s: s.get("CreatedDate")),
        }
        return columns.get(name)

    def _status_name(self, status: Any) -> Any:
        """A list column shows the item's name in the request's language (`_display_language`)."""
        names = STATUS_NAMES.get(self._display_language, STATUS_NAMES["en"])
        return names.get(str(status), status)

    def _country_name(self, person: Mapping[str, Any]) -> Any:
        """A list column: the country's name in the request's language (the country table keeps
        `name` in the installed language and `english_name`, documented: tables/country.md)."""
        english = _nested(person, "Country", "EnglishName") if self._display_language == "en" else None
        return english or _nested(person, "Country", "Name")

    def _request_language(self, request: Request) -> str:
        for header in ("SO-Language", "Accept-Language"):
            value = request.headers.get(header, "").strip()[:2].lower()
            if value in STATUS_NAMES:
                return value
        return self.language

    def _provider(self, name: str) -> tuple[Provider, list[dict[str, Any]]]:
        if name.lower() == "person":
            key = lambda p: int(p["PersonId"])  # noqa: E731
            provider = Provider("Person", "person", key, self._person_column, ("personId", "fullName"))
            return provider, list(self.persons.values())
        if name.lower() == "sale":
            provider = Provider("Sale", "sale", lambda s: s["SaleId"], self._sale_column, ("saleId", "heading"))
            return provider, list(self.sales.values())
        raise VendorError(400, "ArgumentException", f"Unknown archive provider '{name}'")

    def _archive(self, request: Request, provider_name: str) -> Response:
        with self.lock:
            self._display_language = self._request_language(request)
            provider, rows = self._provider(provider_name)
            try:
                query = parse_query(request.args, provider)
                page, more = run_query(query, provider, rows)
            except ArchiveError as exc:
                raise VendorError(400, exc.error_type, str(exc)) from None
        page = self.apply_item_fault(request, page)
        origin = request.host_url.rstrip("/")
        body: dict[str, Any] = {"odata.metadata": f"{origin}/{self.tenant}/api/v1/archive$metadata"}
        if more and self.next_link:
            args = {k: v for k, v in request.args.items() if k.lower() != "$skip"}
            body["odata.nextLink"] = f"{request.base_url}?{urlencode({**args, '$skip': query.skip + query.top})}"
        body["value"] = page
        return json_response(body)

    def list_persons(self, request: Request, tenant: str) -> Response:
        return self._archive(request, "Person")

    def list_sales(self, request: Request, tenant: str) -> Response:
        return self._archive(request, "Sale")

    def list_archive(self, request: Request, tenant: str, provider: str) -> Response:
        return self._archive(request, provider)


def _custom_value(value: Any, definition: FieldDef) -> Any:
    """A custom field as an archive column shows it: integers as numbers (stored `[I:5]`)."""
    if definition.kind == "Integer" and isinstance(value, str):
        match = re.match(r"^\[I:(-?\d+)\]$", value)
        return int(match.group(1)) if match else None
    return value


def _currency(value: Any) -> Any:
    return value.get("Value") if isinstance(value, dict) else value
