"""Silvasoft REST API emulator (`https://rest-api.silvasoft.nl/rest/<endpoint>/`) for tests and the demo.

Follows ../shared/api-notes/silvasoft.md and developers.silvasoft.nl: every request carries the
`ApiKey` and `Username` headers; parameter names are case-sensitive (a misspelt one is ignored, as
the API ignores it); errors are `{"errorCode", "errorMessage"}` with 401 for bad credentials *and*
for the rate limit ("Ratelimit exceeded", no Retry-After), 400 for bad input (`INVALID_JSON`,
`INVALID_PARAMETER`), 500 for technical errors; a GET that finds nothing answers 200 with an empty
list. Endpoints:
- `GET listrelations/`: `Limit` (at most 200) / `Offset`, the `RelationType`, `RelationNumber`,
  `RelationName`, `RelationEmail`, `RelationVAT`, `RelationGUID` filters joined by `SearchOperand`,
  `Sorting` (`createdDate`, `RelationGUID`, `CustomerNumber`, `SupplierNumber`; zero numbers sort
  first) and `SortDir` (`ASC`/`DEC`). A bare JSON array, no totals: a short page is the last one.
- `PUT updaterelation/`: `RelationGUID` plus the documented fields only; 200 with the relation,
  or 200 with `{}` when nothing changed. There is no tag, category or custom field to write.
- `GET listsalesinvoices/`: newest invoice number first, `Limit` at most 100 (50 with invoice
  lines, 15 with PDFs), `Offset`, `InvoiceNumber`, `DateFrom`/`DateTill` (`dd-MM-yyyy`, inclusive).
Rate limits: 2 requests per second and 50 per minute, both enforced (divided by `time_scale`).

Assumed where the vendor documents nothing (see the notes): the relation fields in list replies
(the documented update fields plus `RelationGUID` and `createdOn` as ISO-8601), the invoice fields,
the exact error codes for parameter problems, `Limit` above the maximum being refused rather than
capped, the default `Limit` being the maximum, and `IsCustomer=true` filtering customers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from werkzeug.wrappers import Request, Response

from connectors.ratelimit import Window
from connectors.sandbox import FixtureError, Route, SandboxApp, VendorError, json_response, utcnow
from connectors.sandbox.faults import FaultRule
from connectors.sandbox.store import FixtureStore, Record, int_param, page
from mapping.model import parse_timestamp
from mapping.normalize.dates import normalise_date_dmy

API = "/rest"
MAX_RELATIONS = 200
MAX_INVOICES = 100
MAX_INVOICES_WITH_LINES = 50
MAX_INVOICES_WITH_PDF = 15
DEFAULT_API_KEY = "silvasoft-sandbox-apikey-7f3c9a1e5b"
DEFAULT_USERNAME = "api@silvasoft-sandbox.example"
RATE_LIMITED = "Ratelimit exceeded"
BAD_CREDENTIALS = "Invalid authentication credentials"
RELATION_TYPES = ("All", "Supplier", "Customer")
SORT_DIRECTIONS = ("ASC", "DEC")
STRING_FIELDS = (
    "Name",
    "Email",
    "Phone",
    "RegistrationNumber",
    "TaxIdentificationNumber",
    "Address_Street",
    "Address_Unit",
    "Address_UnitAppendix",
    "Address_PostalCode",
    "Address_City",
    "Address_CountryCode",
)
NUMBER_FIELDS = ("CustomerNumber", "SupplierNumber")
FLAG_FIELDS = ("IsCustomer", "IsSupplier", "IsOther")
CONTACT_FIELDS = ("FirstName", "LastName", "Email", "Phone", "Sex")
# What `updaterelation` accepts (developers.silvasoft.nl/documentation/updaterelation/).
UPDATABLE = frozenset({"RelationGUID", *STRING_FIELDS, *NUMBER_FIELDS, *FLAG_FIELDS, "Relation_Contact"})
# The kit answers routing problems and injected faults with its own codes; Silvasoft's words for them.
KIT_CODES = {
    "rest_no_route": ("NOT_FOUND", "The requested endpoint does not exist"),
    "method_not_allowed": ("METHOD_NOT_ALLOWED", "HTTP method not allowed for this endpoint"),
}


def invalid(message: str) -> VendorError:
    return VendorError(400, "INVALID_PARAMETER", message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sort_key(field: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if field == "createdDate":
        return lambda r: (_created(r), r["RelationGUID"])
    if field == "RelationGUID":
        return lambda r: (r["RelationGUID"],)
    # Documented: sorting on a number puts zeros (relations without one) first.
    return lambda r: (r.get(field) or 0, r["RelationGUID"])


SORTINGS = ("createdDate", "RelationGUID", "CustomerNumber", "SupplierNumber")


class SilvasoftSandbox(SandboxApp):
    type = "silvasoft"
    # developers.silvasoft.nl: at most 2 requests per second and 50 per minute.
    rate_limits = (Window(2, 1.0), Window(50, 60.0))

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        username: str = DEFAULT_USERNAME,
        **kwargs: Any,
    ) -> None:
        self.api_key = api_key
        self.username = username
        self.relation_store = FixtureStore(
            "silvasoft/customers.json",
            key="RelationGUID",
            id_of=self._relation_key,
            fixed=("RelationGUID", "createdOn"),
        )
        self.invoice_store = FixtureStore("silvasoft/orders.json", key="InvoiceNumber")
        # The stores' own dicts, by RelationGUID and InvoiceNumber: the tests and the chaos lab
        # (vendor.py names them) edit records there directly.
        self.relations = self.relation_store.records
        self.invoices = self.invoice_store.records
        super().__init__(data, **kwargs)

    # ----- routes and hooks -------------------------------------------------------------------
    def routes(self) -> Sequence[Route]:
        return [
            Route(f"{API}/listrelations/", ("GET",), self.list_relations, lists=True),
            Route(f"{API}/updaterelation/", ("PUT",), self.update_relation),
            Route(f"{API}/listsalesinvoices/", ("GET",), self.list_sales_invoices, lists=True),
        ]

    def client_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"api_key": self.api_key, "username": self.username}
        if self.limiter is None:
            # The connector paces to the documented limits by default; this emulator has none.
            return {**settings, "rate_limit": []}
        # Silvasoft says nothing about when to come back; the longest window is always enough.
        wait = round(max(w.per_seconds for w in self.limiter.windows), 6)
        return {**settings, **super().client_settings(), "ratelimit_wait": wait}

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        code, message = KIT_CODES.get(code, (code, message))
        if code.startswith("http_5"):
            code = "TECHNICAL_ERROR"
        return json_response({"errorCode": code, "errorMessage": message, **extra}, status)

    def auth_failure(self) -> Response:
        return self.error(401, "UNAUTHORIZED", BAD_CREDENTIALS)

    def throttled(self, retry_after: float | None) -> Response:
        # A 401, not a 429, and no hint of when to come back (documented).
        return self.error(401, "UNAUTHORIZED", RATE_LIMITED)

    def vendor_throttle(self, rule: FaultRule) -> Response:
        return self.throttled(None)

    def looks_throttled(self, response: Response) -> bool:
        if response.status_code != 401:
            return False
        try:
            body = json.loads(response.get_data())
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("errorMessage") == RATE_LIMITED

    def authenticate(self, request: Request) -> Response | None:
        key = request.headers.get("ApiKey")
        user = request.headers.get("Username")
        if key != self.api_key or not user or user.casefold() != self.username.casefold():
            return self.auth_failure()
        return None

    def is_write(self, request: Request, route: Route | None) -> bool:
        return request.method in ("POST", "PUT", "DELETE")

    # ----- fixtures ---------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        self.relation_store.load(data.get("customers"), self._relation, unique=True)
        self.invoice_store.load(data.get("orders"), self._invoice, unique=True)

    def _relation(self, where: str, item: Any) -> Record:
        relation = _checked_relation(where, item)
        number = relation["CustomerNumber"]
        if number and self._by_customer_number(number) is not None:
            raise FixtureError(f"{where}: CustomerNumber {number} appears twice (it is unique per administration)")
        relation.setdefault("createdOn", _iso(utcnow()))
        _derive_relation_fields(relation)
        return relation

    def _invoice(self, where: str, item: Any) -> Record:
        invoice = _checked_invoice(where, item)
        relation = self._by_customer_number(invoice["CustomerNumber"])
        if relation is not None:
            # Silvasoft fills the customer's name and address on the invoice from the relation.
            invoice.setdefault("CustomerName", relation.get("Name", ""))
            invoice.setdefault("CustomerEmail", relation.get("Email", ""))
        return invoice

    def _by_customer_number(self, number: int) -> Record | None:
        return next((r for r in self.relation_store if number and r["CustomerNumber"] == number), None)

    def _relation_key(self, customer_id: str) -> int | None:
        """The RelationGUID of the relation a test route names: by customer number (crmsync's
        record id), else the number is taken as the GUID."""
        if not customer_id.isdigit():
            return None
        number = int(customer_id)
        relation = self._by_customer_number(number)
        return number if relation is None else int(relation["RelationGUID"])

    def customer_fixture(self, customer_id: str) -> Record | None:
        return self.relation_store.find(customer_id)

    def delete_customer(self, customer_id: str) -> Record | None:
        return self.relation_store.remove(customer_id)

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> Record | None:
        return self.relation_store.patch(customer_id, partial, _edit_contact)

    # ----- relations --------------------------------------------------------------------------
    def list_relations(self, request: Request) -> Response:
        limit = int_param(request, "Limit", MAX_RELATIONS, invalid=invalid, low=1, high=MAX_RELATIONS)
        offset = int_param(request, "Offset", 0, invalid=invalid, low=0)
        relation_type = _choice(request, "RelationType", "All", RELATION_TYPES)
        sorting = _choice(request, "Sorting", "RelationGUID", SORTINGS)
        direction = _choice(request, "SortDir", "ASC", SORT_DIRECTIONS)
        matches = _relation_filter(request)
        with self.lock:
            found = [r for r in self.relation_store if _of_type(r, relation_type, request) and matches(r)]
            found.sort(key=_sort_key(sorting), reverse=direction == "DEC")
            items = page(found, offset, limit)
        return json_response(self.apply_item_fault(request, items))

    def update_relation(self, request: Request) -> Response:
        body = _json_body(request)
        if not isinstance(body, dict):
            raise VendorError(400, "INVALID_JSON", "JSON is incorrect: expected an object")
        unknown = sorted(set(body) - UPDATABLE)
        if unknown:
            raise invalid(f"Unknown parameter(s): {', '.join(unknown)}")
        guid = body.get("RelationGUID")
        if not isinstance(guid, int) or isinstance(guid, bool):
            raise invalid("RelationGUID is mandatory and must be a number")
        with self.lock:
            relation = self.relation_store.get(guid)
            if relation is None:
                raise invalid(f"No relation found with RelationGUID {guid}")
            changes = _checked_update(body)
            number = changes.get("CustomerNumber")
            if number and (other := self._by_customer_number(number)) is not None and other is not relation:
                raise invalid(f"CustomerNumber {number} is already in use")
            changed = _apply_update(relation, changes)
            return json_response(copy.deepcopy(relation) if changed else {})

    # ----- sales invoices ---------------------------------------------------------------------
    def list_sales_invoices(self, request: Request) -> Response:
        # The parameter table spells it "InlcudeInvoiceLinesInResponse", the notes above it
        # "IncludeInvoiceLinesInResponse"; clients send either, so both are honoured.
        with_lines = any(_flag(request, n) for n in ("IncludeInvoiceLinesInResponse", "InlcudeInvoiceLinesInResponse"))
        with_pdf = _flag(request, "IncludeBase64PDF")
        maximum = MAX_INVOICES_WITH_PDF if with_pdf else MAX_INVOICES_WITH_LINES if with_lines else MAX_INVOICES
        limit = int_param(request, "Limit", maximum, invalid=invalid, low=1, high=maximum)
        offset = int_param(request, "Offset", 0, invalid=invalid, low=0)
        number = _number_param(request, "InvoiceNumber")
        date_from, date_till = _date_param(request, "DateFrom"), _date_param(request, "DateTill")
        with self.lock:
            found = [
                i
                for i in self.invoice_store
                if (number is None or i["InvoiceNumber"] == number)
                and (date_from is None or _invoice_date(i) >= date_from)
                and (date_till is None or _invoice_date(i) <= date_till)
            ]
            found.sort(key=lambda i: i["InvoiceNumber"], reverse=True)
            items = [_invoice_reply(i, with_lines, with_pdf) for i in page(found, offset, limit)]
        return json_response(self.apply_item_fault(request, items))


# ----- fixture checks -------------------------------------------------------------------------
def _checked_relation(where: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise FixtureError(f"{where}: expected a relation object")
    relation = copy.deepcopy(item)
    if not _is_int(relation.get("RelationGUID")) or relation["RelationGUID"] <= 0:
        raise FixtureError(f"{where}: RelationGUID must be a positive integer")
    for name in NUMBER_FIELDS:
        relation.setdefault(name, 0)
        if not _is_int(relation[name]) or relation[name] < 0:
            raise FixtureError(f"{where}: {name} must be a whole number (0 when empty)")
    for name in STRING_FIELDS:
        if relation.get(name) is not None and not isinstance(relation[name], str):
            raise FixtureError(f"{where}: {name} must be text")
    for name in FLAG_FIELDS:
        if name in relation and not isinstance(relation[name], bool):
            raise FixtureError(f"{where}: {name} must be true or false")
    contacts = relation.setdefault("Relation_Contact", [])
    if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
        raise FixtureError(f"{where}: Relation_Contact must be a list of contact objects")
    created = relation.get("createdOn")
    if created is not None:
        try:
            parse_timestamp(str(created))
        except ValueError:
            raise FixtureError(f"{where}: createdOn must be an ISO-8601 timestamp") from None
    return relation


def _derive_relation_fields(relation: dict[str, Any]) -> None:
    """What Silvasoft fills in itself: a private relation's name, e-mail and phone come from its
    (main) contact, and the customer/supplier flags follow the numbers."""
    contact = relation["Relation_Contact"][0] if relation["Relation_Contact"] else {}
    if not relation.get("Name"):
        relation["Name"] = " ".join(str(contact.get(k) or "") for k in ("FirstName", "LastName")).strip()
    for name in ("Email", "Phone"):
        if relation.get(name) is None:
            relation[name] = contact.get(name) or ""
    relation.setdefault("IsCustomer", relation["CustomerNumber"] > 0)
    relation.setdefault("IsSupplier", relation["SupplierNumber"] > 0)
    relation.setdefault("IsOther", False)


def _checked_invoice(where: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise FixtureError(f"{where}: expected an invoice object")
    invoice = copy.deepcopy(item)
    if not _is_int(invoice.get("InvoiceNumber")) or invoice["InvoiceNumber"] <= 0:
        raise FixtureError(f"{where}: InvoiceNumber must be a positive integer")
    if not isinstance(invoice.get("InvoiceDate"), str) or not isinstance(
        normalise_date_dmy(invoice["InvoiceDate"]), datetime
    ):
        raise FixtureError(f'{where}: InvoiceDate must be a date written dd-MM-yyyy, like "31-01-2026"')
    invoice.setdefault("CustomerNumber", 0)
    if not _is_int(invoice["CustomerNumber"]) or invoice["CustomerNumber"] < 0:
        raise FixtureError(f"{where}: CustomerNumber must be a whole number")
    lines = invoice.setdefault("Invoice_InvoiceLine", [])
    if not isinstance(lines, list) or not all(isinstance(line, dict) for line in lines):
        raise FixtureError(f"{where}: Invoice_InvoiceLine must be a list of line objects")
    if "TotalAmountInclTax" not in invoice:
        invoice["TotalAmountInclTax"] = _lines_total(where, lines)
    for name in ("TotalAmountInclTax", "TotalAmountExclTax", "TotalTax"):
        if name in invoice and not _is_amount(invoice[name]):
            raise FixtureError(f"{where}: {name} must be an amount")
    invoice.setdefault("Currency", "EUR")
    invoice.setdefault("InvoiceStatus", "Open")
    return invoice


def _lines_total(where: str, lines: list[dict[str, Any]]) -> float:
    """The invoice total Silvasoft computes when a fixture leaves it out."""
    if not lines:
        raise FixtureError(f"{where}: TotalAmountInclTax missing and no invoice lines to add up")
    total = Decimal(0)
    for line in lines:
        try:
            if "SubTotalInclTax" in line:
                total += Decimal(str(line["SubTotalInclTax"]))
            else:
                net = Decimal(str(line["Quantity"])) * Decimal(str(line["UnitPriceExclTax"]))
                total += net * (1 + Decimal(str(line.get("TaxPc", 21))) / 100)
        except (KeyError, InvalidOperation):
            raise FixtureError(f"{where}: TotalAmountInclTax missing and the lines do not add up to one") from None
    return float(round(total, 2))


def _is_amount(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        return isinstance(value, str) and Decimal(value).is_finite()
    except InvalidOperation:
        return False


def _invoice_date(invoice: Mapping[str, Any]) -> datetime:
    parsed = normalise_date_dmy(invoice["InvoiceDate"])
    assert isinstance(parsed, datetime)  # checked when loaded
    return parsed


def _invoice_reply(reply: Record, with_lines: bool, with_pdf: bool) -> Record:
    """A page's copy of an invoice, in the shape asked for."""
    if not with_lines:
        reply.pop("Invoice_InvoiceLine", None)
    if with_pdf:
        reply["Base64PDF"] = ""  # the emulator renders no PDFs
    return reply


# ----- updates ----------------------------------------------------------------------------------
def _checked_update(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an updaterelation body, type-checked the way Silvasoft validates them."""
    changes = {k: v for k, v in body.items() if k != "RelationGUID"}
    for name in STRING_FIELDS:
        if name in changes and not isinstance(changes[name], str):
            raise invalid(f"{name} must be a string")
    for name in NUMBER_FIELDS:
        if name in changes and (not _is_int(changes[name]) or changes[name] < 0):
            raise invalid(f"{name} must be a positive number")
    for name in FLAG_FIELDS:
        if name in changes and not isinstance(changes[name], bool):
            raise invalid(f"{name} must be true or false")
    contacts = changes.get("Relation_Contact")
    if contacts is not None:
        if not isinstance(contacts, list) or len(contacts) > 1 or not all(isinstance(c, dict) for c in contacts):
            raise invalid("Relation_Contact must be an array with at most one contact")
        unknown = sorted({k for c in contacts for k in c} - set(CONTACT_FIELDS))
        if unknown:
            raise invalid(f"Unknown parameter(s) in Relation_Contact: {', '.join(unknown)}")
    return changes


def _apply_update(relation: dict[str, Any], changes: Mapping[str, Any]) -> bool:
    changed = False
    for key, value in changes.items():
        if key == "Relation_Contact":
            changed = _merge_contacts(relation, value) or changed
        elif relation.get(key) != value:
            relation[key] = value
            changed = True
    return changed


def _edit_contact(relation: Record, key: str, value: Any) -> bool:
    """A hand edit of the contacts merges into the main contact, as an update does."""
    if key == "Relation_Contact" and isinstance(value, list):
        _merge_contacts(relation, value)
        return True
    return False


def _merge_contacts(relation: dict[str, Any], contacts: list[Any]) -> bool:
    """Only the main contact can be edited (documented); its other keys stay as they are."""
    if not contacts or not isinstance(contacts[0], dict):
        return False
    current: list[dict[str, Any]] = relation.setdefault("Relation_Contact", [])
    if not current:
        current.append({})
    before = dict(current[0])
    current[0].update(copy.deepcopy(contacts[0]))
    return before != current[0]


# ----- request parameters -----------------------------------------------------------------------
def _number_param(request: Request, name: str) -> int | None:
    """A filter on a positive number; present but empty, it is 0 and matches nothing."""
    return int_param(request, name, 0, invalid=invalid, low=1) if name in request.args else None


def _choice(request: Request, name: str, default: str, allowed: Sequence[str]) -> str:
    value = request.args.get(name) or default
    if value not in allowed:
        raise invalid(f"{name} must be one of {', '.join(allowed)}")
    return value


def _flag(request: Request, name: str) -> bool:
    return (request.args.get(name) or "").lower() == "true"


def _date_param(request: Request, name: str) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        return None
    parsed = normalise_date_dmy(raw)
    if not isinstance(parsed, datetime):
        raise invalid(f"{name} must be a date in the format dd-MM-yyyy")
    return parsed


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.get_data() or b"null")
    except ValueError:
        raise VendorError(400, "INVALID_JSON", "JSON is incorrect") from None


def _of_type(relation: Mapping[str, Any], relation_type: str, request: Request) -> bool:
    if request.args.get("IsCustomer", "").lower() == "true" and not relation.get("IsCustomer"):
        return False
    if relation_type == "Customer":
        return bool(relation.get("IsCustomer"))
    if relation_type == "Supplier":
        return bool(relation.get("IsSupplier"))
    return True


def _relation_filter(request: Request) -> Callable[[Mapping[str, Any]], bool]:
    """RelationGUID always narrows; Number, Name, Email and VAT combine by `SearchOperand`."""
    operand = _choice(request, "SearchOperand", "AND", ("AND", "OR"))
    guid = _number_param(request, "RelationGUID")
    tests: list[Callable[[Mapping[str, Any]], bool]] = []
    if number := request.args.get("RelationNumber"):
        tests.append(lambda r: number in (str(r.get("CustomerNumber")), str(r.get("SupplierNumber"))))
    if name := (request.args.get("RelationName") or "").casefold():
        tests.append(lambda r: name in str(r.get("Name") or "").casefold())
    if email := (request.args.get("RelationEmail") or "").casefold():
        tests.append(lambda r: email in _emails(r))
    if vat := request.args.get("RelationVAT"):
        tests.append(lambda r: r.get("TaxIdentificationNumber") == vat)
    combine = all if operand == "AND" else any

    def matches(relation: Mapping[str, Any]) -> bool:
        if guid is not None and relation["RelationGUID"] != guid:
            return False
        return not tests or combine(test(relation) for test in tests)

    return matches


def _emails(relation: Mapping[str, Any]) -> set[str]:
    found = {str(relation.get("Email") or "").casefold()}
    found.update(str(c.get("Email") or "").casefold() for c in relation.get("Relation_Contact") or [])
    return found - {""}


@lru_cache(maxsize=65536)
def _parsed(stamp: str) -> datetime:
    return parse_timestamp(stamp)


def _created(relation: Mapping[str, Any]) -> datetime:
    # Sorting thousands of relations per request: parse each distinct timestamp once.
    return _parsed(str(relation["createdOn"]))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


SANDBOX = SilvasoftSandbox
