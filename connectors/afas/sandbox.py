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

The GetConnectors' tables and fixture rows are in sandbox_tables.py, their query parameters in
sandbox_query.py, KnPerson's field checks and metainfo in sandbox_knperson.py.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import itertools
import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from connectors.afas.knperson import FIELDS as KNPERSON_FIELDS
from connectors.afas.knperson import FieldRule
from connectors.afas.profit_time import format_profit, utc_to_wall
from connectors.afas.sandbox_knperson import LOCATORS, UPDATE_TO_COLUMN, check_value, element_fields, update_meta
from connectors.afas.sandbox_query import conditions, matches, order, paging, sort_rows
from connectors.afas.sandbox_tables import DEFAULT_FREE_FIELDS as DEFAULT_FREE_FIELDS
from connectors.afas.sandbox_tables import (
    ERROR_NUMBER,
    INVOICE_COLUMNS,
    PERSON_COLUMNS,
    UNEXPECTED,
    Table,
    profit_error,
)
from connectors.afas.sandbox_tables import FreeField as FreeField
from connectors.afas.sandbox_tables import free_field_id as free_field_id
from connectors.ratelimit import Window
from connectors.sandbox import Route, SandboxApp, VendorError, json_response
from connectors.sandbox.faults import FaultRule
from connectors.sandbox.store import page

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
CROWDED_RETRY_AFTER = 1.0
AUTH_SCHEME = "AfasToken"
TOKEN_XML = re.compile(r"^<token><version>1</version><data>([0-9A-Fa-f]+)</data></token>$")
_CASE_FOLDED_PREFIX = re.compile(r"^/profitrestservices(?=/|$)", re.IGNORECASE)
_CASE_FOLDED_META = re.compile(r"^/ProfitRestServices/metainfo(?=/|$)", re.IGNORECASE)


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
        self.persons.load(data.get("customers"), "afas/customers.json")
        self.invoices.load(data.get("orders"), "afas/orders.json")
        for number, key in enumerate(self.persons.rows, start=1):
            self.internal_ids.setdefault(key, number)

    def stamp_customer(self, customer_id: str, moment: datetime) -> None:
        """Sets a customer's modification time as the vendor would have written it (a test moves
        records onto a read's boundary)."""
        self.persons.rows[customer_id]["ModifiedDate"] = format_profit(utc_to_wall(moment).replace(microsecond=0))

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        return self.persons.store.find(customer_id)

    def delete_customer(self, customer_id: str) -> dict[str, Any] | None:
        return self.persons.store.remove(customer_id)

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.persons.patch(customer_id, partial)

    # ----- GetConnectors ------------------------------------------------------------------------------
    def get_connector(self, request: Request, name: str) -> Response:
        table = self.tables.get(name) if name in self.get_connectors else None
        if table is None:
            # "GetConnector not supported for this app": the token has no access to it.
            return self.auth_failure()
        if len(request.query_string) + 1 > MAX_QUERY_STRING:
            return self.error(404, "too_long", "query string too long")
        skip, take = paging(request)
        with self.lock:
            groups = conditions(request, table)
            rows = [row for row in table.rows.values() if matches(row, table, groups)]
            sort = order(request, table)
            if sort:
                rows = sort_rows(rows, table, sort)
            else:
                # The database picks an order, and not the same one every time (get-connector.md).
                call = next(self._unsorted_calls)
                rows.sort(key=lambda r: hashlib.sha1(f"{call}/{r[table.key]}".encode()).digest())
            start, count = (0, len(rows)) if skip == -1 else (skip, take)  # -1/-1: everything
            served = page(rows, start, count)
            if len(served) * len(table.columns) > self.max_cells:
                raise profit_error("Out of memory")
            served = self.apply_item_fault(request, served)
        return json_response({"skip": skip, "take": take, "rows": served})

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
        fields = element_fields(body)
        with self.lock:
            key = self._locate(fields)
            changes = [self._check_field(name, value) for name, value in fields.items() if name not in LOCATORS]
            row = self.persons.rows[key]
            changed = False
            for column, value in changes:
                target = row if column in row else self.hidden.setdefault(key, {})
                if target.get(column) != value:
                    target[column] = value
                    changed = True
            if changed:
                self.persons.store.touch(row)
            result = {"BcCo": key, "BcId": self.internal_ids[key]}
        return json_response({"results": {"KnPerson": result}}, 201)

    def _locate(self, fields: Mapping[str, Any]) -> str:
        """The person an element is about: by `BcId`, or by `BcCo` when `MatchPer` is 0."""
        for name in LOCATORS:
            if name in fields:
                check_value(name, KNPERSON_FIELDS[name], fields[name])
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
            rule = FieldRule("string", free.length, free.values, free.label)
            check_value(name, rule, value)
            return free.column, None if value in (None, "") else str(value)
        rule_or_none = KNPERSON_FIELDS.get(name)
        if rule_or_none is None:
            raise profit_error(f"Het veld '{name}' bestaat niet in UpdateConnector 'KnPerson'.")
        check_value(name, rule_or_none, value)
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
        fields = [update_meta(field_id, rule) for field_id, rule in KNPERSON_FIELDS.items()]
        fields += [
            update_meta(f.field_id, FieldRule(f.data_type, f.length, f.values, f.label))
            for f in self.free_fields.values()
        ]
        return json_response({"name": "KnPerson", "description": "Persoon", "fields": fields, "objects": []})


SANDBOX = AfasSandbox
