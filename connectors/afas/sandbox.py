"""AFAS Profit App Connector REST API emulator (`/ProfitRestServices`) for tests and the demo.

Follows ../shared/api-notes/afas-profit.md and AFAS's own developer pages (github.com/
AFASSoftware/OASContent: `get-connector.md`, `update-connector.md`, `custom-fields.md`,
`authentication.md`, `troubleshooting.md`, and the OpenAPI file `Organisaties en personen.json`):

- Auth: `Authorization: AfasToken <base64 of <token><version>1</version><data>HEX</data></token>>`;
  anything else is a 401 with an empty body.
- GetConnectors `GET /connectors/<id>`: `skip`/`take` (default 0/100, -1/-1 = everything, other
  non-positive takes or a negative skip = 500 "unexpected error"), `orderbyfieldids` (`-` for
  descending; without it the order changes between calls, as the database picks it),
  `filterfieldids`/`filtervalues`/`operatortypes` (`,` = AND, `;` = OR, operators 1-15) or
  `filterjson`; unknown fields = 500 "Connector field 'X' not found"; a query string over 2049
  characters = 404; too much data in one reply = 500 "Out of memory"; replies `{skip, take, rows}`
  with nulls for empty fields and Amsterdam wall times with a fake `Z`.
- The app connector: which GetConnectors and UpdateConnectors the token may use (constructor
  `get_connectors` / `update_connectors`, or `PATCH /_sandbox/app` with the same keys; default:
  everything the emulator serves). `GET /metainfo` lists only those, as
  `{"updateConnectors": [{id, description}], "getConnectors": [...], "info": {...}}`; any other
  connector, its data call or its metainfo alike, answers 401 with an empty body (help.afas.nl
  120612: "GetConnector of UpdateConnector is niet toegevoegd aan de AppConnector").
- `GET /metainfo/get/<id>` (columns), `GET /metainfo/update/KnPerson`: `{name, description,
  fields, objects}`, KnPerson's own fields and its free fields (`fieldId` `U` + 32 hex digits,
  `label`, `dataType`, `length`, ... as custom-fields.md quotes them).
- UpdateConnector `PUT /connectors/KnPerson`: one `Element` with `Fields`, checked against the
  published `KnPerson_PUT` schema (knperson.py) plus the environment's free fields; the person is
  found by `MatchPer` 0 + `BcCo` (or `BcId`); only the fields sent change, `""` clears one; the
  whole element is validated before anything is written. Refusals are 500s with `externalMessage`,
  `errorNumber` and `profitLogReference`; a body over 75 MB is a 413.
- Capacity: at most 8 calls at once (troubleshooting.md); beyond that, and beyond the emulated
  fair-use rate below, a 503 with `{"error": {...}, "retry_after": s}` (the documented maintenance
  reply) and a `Retry-After` header.

(assumed) AFAS documents no request quota. The emulator enforces 100 requests a minute as a
fair-use limit, answered the way AFAS answers "no capacity now" (503 + retry_after); the wording of
refusal messages other than the documented ones is ours; the persons and invoices GetConnectors
(`Profit_CRM_Persons`, `Profit_CRM_SalesInvoices`) and their columns are the notes' proposal.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import itertools
import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from werkzeug.wrappers import Request, Response

from connectors.afas.knperson import FIELDS as KNPERSON_FIELDS
from connectors.afas.knperson import FieldRule
from connectors.afas.profit_time import format_profit, now_wall, parse_wall
from connectors.ratelimit import Window
from connectors.sandbox import FixtureError, Route, SandboxApp, VendorError, json_response
from connectors.sandbox.faults import FaultRule

PREFIX = "/ProfitRestServices"
PERSONS = "Profit_CRM_Persons"
INVOICES = "Profit_CRM_SalesInvoices"
KNPERSON = "KnPerson"
UPDATE_CONNECTORS = {KNPERSON: "Persoon"}  # the UpdateConnectors this emulator serves
ENVIRONMENT_ID = "O12345AA"  # (assumed) the shape of an environment id, for `info.envid`
DEFAULT_TOKEN = "6A1F3C9E0B7D4E2F8A5C1B3D9E7F0A2C4B6D8E1F3A5C7E9B0D2F4A6C8E0B1D3F"
MAX_QUERY_STRING = 2049  # characters after the path, "?" included (get-connector.md)
MAX_PARALLEL = 8  # troubleshooting.md: "A maximum of 8 parallel calls are allowed"
MAX_BODY_BYTES = 75 * 1024 * 1024  # "De totale omvang van een API-call is maximaal 75 MB"
MAX_CELLS = 1_500_000  # (assumed) rows x columns in one reply before "Out of memory"
FAIR_USE = (Window(100, 60.0),)  # (assumed) see the module docstring
UNEXPECTED = "Er is een onverwachte fout opgetreden."
ERROR_NUMBER = -2147220469  # Profit's usual generic number; clients must not branch on it
CROWDED_RETRY_AFTER = 1.0
AUTH_SCHEME = "AfasToken"
TOKEN_XML = re.compile(r"^<token><version>1</version><data>([0-9A-Fa-f]+)</data></token>$")
FREE_FIELD_ID = re.compile(r"^U[0-9A-F]{32}$")
_CASE_FOLDED_PREFIX = re.compile(r"^/profitrestservices(?=/|$)", re.IGNORECASE)
_CASE_FOLDED_META = re.compile(r"^/ProfitRestServices/metainfo(?=/|$)", re.IGNORECASE)

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
# KnPerson fields that the persons GetConnector shows, by UpdateConnector field id.
UPDATE_TO_COLUMN = {
    "FiNm": "FirstName",
    "In": "Initials",
    "Is": "Prefix",
    "LaNm": "LastName",
    "EmAd": "Email",
    "TeNr": "Phone",
    "MbNr": "Mobile",
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
    """One GetConnector: its columns (with types) and its rows by key."""

    name: str
    description: str
    key: str
    columns: dict[str, str]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)


def profit_error(message: str) -> VendorError:
    """A refusal the way Profit gives it: HTTP 500 with `externalMessage`."""
    return VendorError(500, "profit", message)


def field_not_found(name: str) -> VendorError:
    return profit_error(f"Connector field '{name}' not found")


class AfasSandbox(SandboxApp):
    type = "afas"
    rate_limits = FAIR_USE

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        token: str = DEFAULT_TOKEN,
        free_fields: Sequence[FreeField] = DEFAULT_FREE_FIELDS,
        max_parallel: int = MAX_PARALLEL,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_cells: int = MAX_CELLS,
        get_connectors: Sequence[str] | None = None,
        update_connectors: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.token = token
        self.free_fields = {f.field_id: f for f in free_fields}
        self.max_parallel = max_parallel
        self.max_body_bytes = max_body_bytes
        self.max_cells = max_cells
        person_columns = {**PERSON_COLUMNS, **{f.column: "string" for f in free_fields}}
        self.persons = Table(PERSONS, "Personen (crmsync)", "PersonId", person_columns)
        self.invoices = Table(INVOICES, "Verkoopfacturen (crmsync)", "InvoiceId", dict(INVOICE_COLUMNS))
        self.tables = {t.name: t for t in (self.persons, self.invoices)}
        # The app connector's contents: what the token may use (default: everything served here).
        try:
            self.get_connectors = self._connector_list("get_connectors", get_connectors, self.tables)
            self.update_connectors = self._connector_list("update_connectors", update_connectors, UPDATE_CONNECTORS)
        except VendorError as exc:
            raise ValueError(exc.message) from None
        self.internal_ids: dict[str, int] = {}  # BcCo -> BcId
        self.hidden: dict[str, dict[str, Any]] = {}  # KnPerson fields no GetConnector column shows
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._unsorted_calls = itertools.count()
        super().__init__(data, **kwargs)

    # ----- the app connector (GET/PATCH /_sandbox/app) ------------------------------------------------
    @staticmethod
    def _connector_list(key: str, value: Any, served: Mapping[str, Any]) -> list[str]:
        if value is None:
            return list(served)
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
            raise VendorError(400, "bad_request", f"{key} is a list of connector ids")
        unknown = sorted(set(value) - set(served))
        if unknown:
            raise VendorError(400, "bad_request", f"{key}: the sandbox serves no connector {', '.join(unknown)}")
        return [name for name in served if name in value]

    def app_settings(self) -> dict[str, Any]:
        return {
            **super().app_settings(),
            "get_connectors": list(self.get_connectors),
            "update_connectors": list(self.update_connectors),
        }

    def change_app(self, partial: Mapping[str, Any]) -> None:
        rest = dict(partial)
        lists = {
            key: self._connector_list(key, rest.pop(key), served)
            for key, served in (("get_connectors", self.tables), ("update_connectors", UPDATE_CONNECTORS))
            if key in rest
        }
        super().change_app(rest)  # checks the other keys before anything changes
        self.get_connectors = lists.get("get_connectors", self.get_connectors)
        self.update_connectors = lists.get("update_connectors", self.update_connectors)

    # ----- routes and hooks -----------------------------------------------------------------------
    def client_settings(self) -> dict[str, Any]:
        return {"token": self.token, **super().client_settings()}

    def routes(self) -> Sequence[Route]:
        # One route per GetConnector, so the request statistics tell them apart.
        reads = [
            Route(f"{PREFIX}/connectors/{name}", ("GET",), functools.partial(self.get_connector, name=name), lists=True)
            for name in self.tables
        ]
        return [
            *reads,
            Route(f"{PREFIX}/connectors/<name>", ("GET",), self.get_connector, lists=True),
            Route(f"{PREFIX}/connectors/KnPerson", ("PUT", "POST", "DELETE"), self.update_knperson),
            Route(f"{PREFIX}/connectors/<name>", ("PUT", "POST", "DELETE"), self.update_connector),
            Route(f"{PREFIX}/metainfo", ("GET",), self.metainfo),
            Route(f"{PREFIX}/metainfo/get/<name>", ("GET",), self.metainfo_get),
            Route(f"{PREFIX}/metainfo/update/<name>", ("GET",), self.metainfo_update),
        ]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # Profit's path is case-insensitive in practice (clients write "profitrestservices").
        path = _CASE_FOLDED_PREFIX.sub(PREFIX, environ.get("PATH_INFO", ""))
        environ["PATH_INFO"] = _CASE_FOLDED_META.sub(f"{PREFIX}/metainfo", path)
        return super().__call__(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_sandbox/"):
            return super().dispatch(request)
        with self._busy_lock:
            self._busy += 1
            crowded = self._busy > self.max_parallel
        try:
            if crowded:
                return self.record(request, None, self.throttled(CROWDED_RETRY_AFTER), throttled=True)
            return super().dispatch(request)
        finally:
            with self._busy_lock:
                self._busy -= 1

    def authenticate(self, request: Request) -> Response | None:
        scheme, _, encoded = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme != AUTH_SCHEME or not encoded:
            return self.auth_failure()
        try:
            envelope = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return self.auth_failure()
        match = TOKEN_XML.match(envelope.strip())
        if match is None or match.group(1) != self.token:
            return self.auth_failure()
        return None

    def auth_failure(self) -> Response:
        return Response(b"", status=401)

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        if status == 500:
            text = UNEXPECTED if code.startswith("http_") else message
            return json_response(
                {"externalMessage": text, "errorNumber": ERROR_NUMBER, "profitLogReference": uuid.uuid4().hex.upper()},
                500,
            )
        if status == 503:
            body: dict[str, Any] = {"error": {"code": "503", "message": "Service temporarily unavailable."}}
            if extra.get("retry_after") is not None:
                body["retry_after"] = extra["retry_after"]
            return json_response(body, 503)
        # Profit answers 4xx (and proxy errors) with an empty body.
        return Response(b"", status=status)

    def throttled(self, retry_after: float | None) -> Response:
        seconds = round(retry_after if retry_after is not None else 1.0, 3)
        response = self.error(503, "capacity", "no capacity", retry_after=seconds)
        response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
        return response

    def vendor_throttle(self, rule: FaultRule) -> Response:
        """Maintenance: troubleshooting.md's 503 with `retry_after` in the body."""
        response = self.throttled(rule.retry_after if rule.retry_after is not None else 1.0)
        body = json.loads(response.get_data())
        body["error"]["message"] = (
            "Service temporarily unavailable due to scheduled maintenance. Please check afasstatus.nl for details."
        )
        response.set_data(json.dumps(body))
        return response

    def looks_throttled(self, response: Response) -> bool:
        if response.status_code != 503:
            return False
        try:
            return "retry_after" in json.loads(response.get_data() or b"{}")
        except ValueError:
            return False

    # ----- fixtures ---------------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        for index, item in enumerate(data.get("customers") or []):
            self._load_row(self.persons, f"afas/customers.json item {index}", item)
        for index, item in enumerate(data.get("orders") or []):
            self._load_row(self.invoices, f"afas/orders.json item {index}", item)
        for number, key in enumerate(self.persons.rows, start=1):
            self.internal_ids.setdefault(key, number)

    def _load_row(self, table: Table, where: str, item: Any) -> None:
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected an object (one GetConnector row)")
        key = item.get(table.key)
        if isinstance(key, bool) or not isinstance(key, str | int) or str(key).strip() == "":
            raise FixtureError(f"{where}: {table.key} must be a non-empty string or integer")
        if str(key) in table.rows:
            raise FixtureError(f"{where}: {table.key} {key!r} appears twice")
        row = copy.deepcopy(item)
        for column, kind in table.columns.items():
            if kind != "any":
                _check_type(where, column, kind, row.get(column))
        for column in [c for c in row if c not in table.columns]:
            table.columns[column] = "any"  # a real export may hold more columns: kept as they are
            for other in table.rows.values():
                other[column] = None
        for column in table.columns:
            row.setdefault(column, None)  # every row has every column; an empty one is null
        self._normalise_dates(row)
        table.rows[str(key)] = row

    def _normalise_dates(self, row: dict[str, Any]) -> None:
        """Profit writes `YYYY-MM-DDTHH:MM:SSZ`; the audit dates are always filled."""
        for column in ("CreateDate", "ModifiedDate", "InvoiceDate"):
            if isinstance(row.get(column), str):
                row[column] = format_profit(parse_wall(row[column]))
        if "ModifiedDate" in row:
            row["CreateDate"] = row.get("CreateDate") or row.get("ModifiedDate") or format_profit(now_wall())
            row["ModifiedDate"] = row.get("ModifiedDate") or row["CreateDate"]
        if "InvoiceDate" in row and row["InvoiceDate"] is None:
            row["InvoiceDate"] = row["CreateDate"]

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        row = self.persons.rows.get(customer_id)
        return copy.deepcopy(row) if row is not None else None

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        row = self.persons.rows.get(customer_id)
        if row is None:
            return None
        for column, value in partial.items():
            if column not in (self.persons.key, "CreateDate", "ModifiedDate"):
                self.persons.columns.setdefault(column, "string")
                row[column] = copy.deepcopy(value)
        row["ModifiedDate"] = format_profit(now_wall())
        return copy.deepcopy(row)

    # ----- GetConnectors ------------------------------------------------------------------------------
    def get_connector(self, request: Request, name: str) -> Response:
        table = self.tables.get(name) if name in self.get_connectors else None
        if table is None:
            # "GetConnector not supported for this app": the token has no access to it.
            return self.auth_failure()
        if len(request.query_string) + 1 > MAX_QUERY_STRING:
            return self.error(404, "too_long", "query string too long")
        skip, take = _paging(request)
        with self.lock:
            conditions = _filters(request, table)
            rows = [row for row in table.rows.values() if _matches(row, table, conditions)]
            order = _order(request, table)
            if order:
                rows = _sorted(rows, table, order)
            else:
                # The database picks an order, and not the same one every time (get-connector.md).
                call = next(self._unsorted_calls)
                rows.sort(key=lambda r: hashlib.sha1(f"{call}/{r[table.key]}".encode()).digest())
            page = rows if skip == -1 else rows[skip : skip + take]
            if len(page) * len(table.columns) > self.max_cells:
                raise profit_error("Out of memory")
            page = self.apply_item_fault(request, [copy.deepcopy(row) for row in page])
        return json_response({"skip": skip, "take": take, "rows": page})

    # ----- UpdateConnector KnPerson -----------------------------------------------------------------
    def update_connector(self, request: Request, name: str) -> Response:
        return self.auth_failure()  # an UpdateConnector this app connector does not include

    def update_knperson(self, request: Request) -> Response:
        if KNPERSON not in self.update_connectors:
            return self.auth_failure()
        if request.method != "PUT":
            raise profit_error(f"De sandbox emuleert alleen PUT op KnPerson, geen {request.method}.")
        if (request.content_length or 0) > self.max_body_bytes:
            return self.error(413, "too_large", "request body too large")
        try:
            body = json.loads(request.get_data() or b"")
        except ValueError:
            return self.error(400, "bad_json", "not JSON")
        fields = _element_fields(body)
        with self.lock:
            key = self._locate(fields)
            changes = [self._check_field(name, value) for name, value in fields.items() if name not in _LOCATORS]
            row = self.persons.rows[key]
            changed = False
            for column, value in changes:
                target = row if column in row else self.hidden.setdefault(key, {})
                if target.get(column) != value:
                    target[column] = value
                    changed = True
            if changed:
                row["ModifiedDate"] = format_profit(now_wall())
            result = {"BcCo": key, "BcId": self.internal_ids[key]}
        return json_response({"results": {"KnPerson": result}}, 201)

    def _locate(self, fields: Mapping[str, Any]) -> str:
        """The person an element is about: by `BcId`, or by `BcCo` when `MatchPer` is 0."""
        for name in _LOCATORS:
            if name in fields:
                _check_value(name, KNPERSON_FIELDS[name], fields[name])
        if fields.get("BcId") not in (None, ""):
            for key, internal in self.internal_ids.items():
                if str(internal) == str(fields["BcId"]):
                    return key
            raise profit_error(f"Persoon met intern nummer {fields['BcId']} bestaat niet.")
        match = str(fields.get("MatchPer", "0"))
        if match != "0":
            raise profit_error(f"MatchPer {match} wordt niet door de sandbox geëmuleerd; gebruik 0 (zoek op BcCo).")
        code = fields.get("BcCo")
        if code in (None, ""):
            raise profit_error("Bij 'Persoon vergelijken op' 0 is het veld 'Nummer' (BcCo) verplicht.")
        key = str(code)
        if key not in self.persons.rows:
            raise profit_error(f"De ingevulde waarde bij 'Nummer' ({key}) bestaat niet.")
        return key

    def _check_field(self, name: str, value: Any) -> tuple[str, Any]:
        """Validate one KnPerson field; returns the row column it lands in and its stored value."""
        free = self.free_fields.get(name)
        if free is not None:
            rule = FieldRule("string", free.length, None, free.label)
            _check_value(name, rule, value)
            return free.column, None if value in (None, "") else str(value)
        rule_or_none = KNPERSON_FIELDS.get(name)
        if rule_or_none is None:
            raise profit_error(f"Het veld '{name}' bestaat niet in UpdateConnector 'KnPerson'.")
        _check_value(name, rule_or_none, value)
        stored = None if value in (None, "") else value
        return UPDATE_TO_COLUMN.get(name, name), stored

    # ----- metainfo -----------------------------------------------------------------------------------
    def metainfo(self, request: Request) -> Response:
        """Only what the app connector holds ("haalt de GetConnectoren op die geautoriseerd zijn")."""
        return json_response(
            {
                "updateConnectors": [
                    {"id": name, "description": UPDATE_CONNECTORS[name]} for name in self.update_connectors
                ],
                "getConnectors": [
                    {"id": name, "description": self.tables[name].description} for name in self.get_connectors
                ],
                "info": {
                    "envid": ENVIRONMENT_ID,
                    "appName": "crmsync",
                    "group": "AuthorizationGroup 101 (12345.CRMSYNC)",
                    "tokenExpiry": "0",
                },
            }
        )

    def metainfo_get(self, request: Request, name: str) -> Response:
        table = self.tables.get(name) if name in self.get_connectors else None
        if table is None:
            return self.auth_failure()
        fields = [
            {
                "id": column,
                "fieldId": f"U{index:03d}",
                "dataType": kind,
                "label": column,
                "length": 0 if kind in ("date", "boolean") else 255,
                "controlType": 1,
                "decimals": 2 if kind == "decimal" else 0,
                "decimalsFieldId": "",
            }
            for index, (column, kind) in enumerate(table.columns.items(), start=1)
        ]
        return json_response({"name": table.name, "description": table.description, "fields": fields})

    def metainfo_update(self, request: Request, name: str) -> Response:
        if name != KNPERSON or KNPERSON not in self.update_connectors:
            return self.auth_failure()
        fields = [_update_meta(field_id, rule) for field_id, rule in KNPERSON_FIELDS.items()]
        fields += [
            _update_meta(f.field_id, FieldRule("string", f.length, None, f.label)) for f in self.free_fields.values()
        ]
        return json_response({"name": "KnPerson", "description": "Persoon", "fields": fields, "objects": []})


_LOCATORS = ("MatchPer", "BcCo", "BcId")


def _update_meta(field_id: str, rule: FieldRule) -> dict[str, Any]:
    return {
        "fieldId": field_id,
        "primaryKey": field_id == "BcId",
        "dataType": rule.data_type,
        "label": rule.label,
        "mandatory": False,
        "length": rule.max_length or 0,
        "decimals": 0,
        "decimalFieldId": "",
        "notzero": False,
        "controlType": 1,
        "values": [{"id": v, "description": v} for v in rule.values] if rule.values else None,
    }


def _element_fields(body: Any) -> dict[str, Any]:
    """`{"KnPerson": {"Element": {"Fields": {...}}}}`: the published schema has one Element object."""
    element = body.get("KnPerson", {}).get("Element") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("KnPerson"), dict) and isinstance(element, list):
        raise profit_error("Ongeldig bericht: 'Element' van KnPerson is één object, geen lijst.")
    if not isinstance(element, dict) or not isinstance(element.get("Fields"), dict):
        raise profit_error('Ongeldig bericht: verwacht {"KnPerson": {"Element": {"Fields": {...}}}}.')
    return dict(element["Fields"])


def _check_value(name: str, rule: FieldRule, value: Any) -> None:
    if value is None or value == "":
        return  # empty clears the field
    if rule.data_type == "boolean":
        if not (isinstance(value, bool) or str(value).lower() in ("0", "1", "true", "false")):
            raise profit_error(f"De waarde '{value}' bij '{rule.label}' is geen ja/nee-waarde.")
        return
    if rule.data_type == "integer":
        if isinstance(value, bool) or not str(value).lstrip("-").isdigit():
            raise profit_error(f"De waarde '{value}' bij '{rule.label}' is geen geheel getal.")
        return
    if isinstance(value, dict | list | bool):
        raise profit_error(f"De waarde bij '{rule.label}' ({name}) heeft een ongeldig type.")
    text = str(value)
    if rule.data_type == "date":
        try:
            parse_wall(text)
        except ValueError:
            raise profit_error(f"De waarde '{text}' bij '{rule.label}' is geen geldige datum.") from None
    if rule.max_length is not None and len(text) > rule.max_length:
        raise profit_error(f"De waarde bij '{rule.label}' is te lang (maximaal {rule.max_length} tekens).")
    if rule.values is not None and text not in rule.values:
        raise profit_error(f"De ingevulde waarde bij '{rule.label}' bestaat niet.")


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


# ----- GetConnector query parameters -------------------------------------------------------------
Condition = tuple[str, int, str]  # column, operator type, value


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise profit_error(UNEXPECTED) from None


def _paging(request: Request) -> tuple[int, int]:
    skip, take = _int_param(request, "skip", 0), _int_param(request, "take", 100)
    if (skip, take) == (-1, -1):
        return skip, take  # "get all": allowed, and strongly discouraged
    if skip < 0 or take <= 0:
        # get-connector.md: e.g. skip=2&take=-1 is "An unexpected error has occurred."
        raise profit_error(UNEXPECTED)
    return skip, take


def _filters(request: Request, table: Table) -> list[list[Condition]]:
    """OR-groups of AND-ed conditions, from `filterjson` or the three parallel lists."""
    if request.args.get("filterjson"):
        return _json_filters(request.args["filterjson"], table)
    names = request.args.get("filterfieldids")
    if not names:
        return []
    values = request.args.get("filtervalues", "")
    operators = request.args.get("operatortypes", "")
    name_groups, value_groups, op_groups = names.split(";"), values.split(";"), operators.split(";")
    if not len(name_groups) == len(value_groups) == len(op_groups):
        raise profit_error(UNEXPECTED)
    groups: list[list[Condition]] = []
    for group_names, group_values, group_ops in zip(name_groups, value_groups, op_groups, strict=True):
        fields, vals, ops = group_names.split(","), group_values.split(","), group_ops.split(",")
        if not (len(fields) == len(vals) == len(ops)):
            raise profit_error(UNEXPECTED)
        groups.append([_condition(table, f, o, v) for f, o, v in zip(fields, ops, vals, strict=True)])
    return groups


def _json_filters(raw: str, table: Table) -> list[list[Condition]]:
    try:
        filters = json.loads(raw)["Filters"]["Filter"]
        filters = filters if isinstance(filters, list) else [filters]
        groups = []
        for one in filters:
            items = one["Field"] if isinstance(one["Field"], list) else [one["Field"]]
            groups.append(
                [_condition(table, str(i["@FieldId"]), str(i["@OperatorType"]), str(i.get("#text", ""))) for i in items]
            )
        return groups
    except (ValueError, KeyError, TypeError):
        raise profit_error(UNEXPECTED) from None


def _condition(table: Table, column: str, operator: str, value: str) -> Condition:
    column = column.strip()
    if column not in table.columns:
        raise field_not_found(column)
    try:
        op = int(operator)
    except ValueError:
        raise profit_error(UNEXPECTED) from None
    if not 1 <= op <= 15:
        raise profit_error(UNEXPECTED)
    return column, op, value


def _order(request: Request, table: Table) -> list[tuple[str, bool]]:
    raw = request.args.get("orderbyfieldids", "")
    order = []
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        descending = part.startswith("-")
        column = part.lstrip("-")
        if column not in table.columns:
            raise field_not_found(column)
        order.append((column, descending))
    return order


def _typed(kind: str, value: Any) -> Any:
    """A value comparable within its column type ("any": extra fixture columns, as text); None stays None."""
    if value is None or value == "":
        return None
    if kind == "date":
        return parse_wall(str(value))
    if kind in ("decimal", "integer"):
        return Decimal(str(value))
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true")
    return str(value).casefold()


def _sorted(rows: list[dict[str, Any]], table: Table, order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    # Stable sorts from the last key to the first; nulls sort first, as in SQL Server.
    result = list(rows)
    for column, descending in reversed(order):
        kind = table.columns[column]

        def key(row: Mapping[str, Any], column: str = column, kind: str = kind) -> tuple[int, Any]:
            return _sort_key(_typed(kind, row.get(column)))

        result.sort(key=key, reverse=descending)
    return result


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)


def _matches(row: Mapping[str, Any], table: Table, groups: Iterable[list[Condition]]) -> bool:
    groups = list(groups)
    if not groups:
        return True
    return any(all(_holds(row, table, c) for c in group) for group in groups)


def _holds(row: Mapping[str, Any], table: Table, condition: Condition) -> bool:
    column, op, raw = condition
    kind = table.columns[column]
    value = row.get(column)
    if op == 8:
        return value in (None, "")
    if op == 9:
        return value not in (None, "")
    if op in (6, 10, 11, 12, 13, 14, 15):
        text, needle = ("" if value is None else str(value)).casefold(), raw.casefold()
        return {
            6: needle in text,
            15: needle in text,
            10: text.startswith(needle),
            11: needle not in text,
            12: not text.startswith(needle),
            13: text.endswith(needle),
            14: not text.endswith(needle),
        }[op]
    have = _typed(kind, value)
    try:
        want = _typed(kind, raw)
    except (ValueError, InvalidOperation):
        raise profit_error(UNEXPECTED) from None
    if have is None or want is None:
        return False  # a comparison with null is never true, as in SQL
    return bool(
        {1: have == want, 7: have != want, 2: have >= want, 3: have <= want, 4: have > want, 5: have < want}[op]
    )


SANDBOX = AfasSandbox
