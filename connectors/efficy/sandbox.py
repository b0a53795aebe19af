"""efficy Enterprise JSON RPC emulator (`POST /crm/json`) for tests and the demo.

Follows what efficy's own n8n node and its employee's client library show (see
../shared/api-notes/efficy.md): one endpoint taking a JSON array of contexts (`api`, `consult`,
`edit`), each echoed back with `#result` datasets (`{"#class": "dataset", "#data": [...]}`) or
`#error` added; the `X-Efficy-Apikey` header; saved queries run with `query` (`key`,
`queryparams` joined by `|`, `recordcount`); `consult` with `master` / `category` functions;
`edit` with `activateCategory` and `update` (into a category, or the main table with
`tableview: 0`), applied on `commit`. Errors arrive inside an HTTP 200: on a function, on a
context, or as a top-level `{"#error": {...}}` object for the whole request. A request in which
something failed also ends with an `{"@name": "exception", "#error": {...}}` node carrying the first
failure: that node is where efficy's employee's clients read a failure (efficy-enterprise-api
`remote-api.mjs` `getRpcException`, efficy-u-rpc-api `crm-fetch.ts` `getCrmException`, whose live
test expects the message composed from it, `tests/bundle.ts`), and it does not say which context
failed. With the app's `context_errors` off, it is the only sign: the contexts carry no `#error`
(what those clients' readers allow); on (the default), both, as efficy's n8n node reads them.

The JSON RPC is case sensitive ("lowercase properties are required for the case sensitive JSON
RPC", efficy-enterprise-api `consult.mjs`/`edit.mjs`): a parameter key spelt in another case is
unknown and ignored, as efficy's own client found when its camelCase `recordCount` was ignored and
a whole query came back (efficy-u-rpc-api commit bcaa824). So `recordCount` is not `recordcount`
here either: the page size falls back to the whole query. A category the API user has no rights
on (`unavailable_categories`, also `PATCH /_sandbox/app`) comes back from `consult` as a null
dataset ("can be null when the category is not available to the current user",
efficy-enterprise-api `dataset/list.mjs`), and `activateCategory` on it throws.

A record refused (one that does not exist, is being edited, or a category without rights) is
refused the way efficy raises its errors: `errorcode` "EEfficyException", the message in
`errorstring`, a reference in `detail` (see EFFICY_EXCEPTION). `consultmanyex` finds the contacts
whose fields hold the values given.

Assumed where nothing public says (each marked in the notes): the saved queries' keyset parameters
(`D_CHANGE` then the record key, see `_SavedQuery`), at most 1000 rows per query and 100 contexts
per request, the record refusals' texts and references, the other error codes (ER_...), a missing
key refused with HTTP 401, a wrong key and the rate limit (10 requests a second, 1000 an hour per
key) answered inside an HTTP 200, and records being edited by a user refusing other edits.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from connectors.ratelimit import Window
from connectors.sandbox import FixtureError, Route, SandboxApp, VendorError, json_response, utcnow
from connectors.sandbox.store import FixtureStore, Record, page

ENDPOINT = "/crm/json"
DEFAULT_API_KEY = "5A4DB0C1E2F34A5B8C9D0E1F2A3B4C5D"
CONTACTS_QUERY = 10001
OPPORTUNITIES_QUERY = 10002
MAX_CONTEXTS = 100
MAX_ROWS = 1000
TEXT_LENGTH = 255
THROTTLE_CODE = "ER_TOO_MANY_REQUESTS"
# How efficy reports a failure it raised: the server's exception class as the code, its message
# as the text and efficy's own reference in `detail` ("EEfficyException - Invalid Entity \"dummy\"
# - TAGS-2108", efficy-u-rpc-api tests/bundle.ts). The record refusals below use it; their texts
# and references are the sandbox's own (efficy's are not public), except the refused right's text
# ("You do not have the right to perform this operation", efficy-u-rpc-api src/crm-fetch.ts). The
# SANDBOX- references are no efficy's: a client must not know a refusal by them.
EFFICY_EXCEPTION = "EEfficyException"
NOT_FOUND_DETAIL = "SANDBOX-RECORD-NOT-FOUND"
LOCKED_DETAIL = "SANDBOX-RECORD-LOCKED"
NO_RIGHTS_DETAIL = "SANDBOX-NO-RIGHTS"
NO_RIGHTS = "You do not have the right to perform this operation"
# crmsync's own category in the demo; any category a fixture holds is known as well.
DEFAULT_CATEGORIES: dict[str, dict[str, int]] = {"CONT$CRMSYNC": {"SEGMENTS": TEXT_LENGTH, "LOYALTY_TIER": 40}}
READ_ONLY = frozenset({"K_CONTACT", "D_CHANGE", "D_CREATE"})
CONTACT_TEXT_FIELDS = ("FIRSTNAME", "NAME", "EMAIL1", "MOBILE", "PHONE1", "CITY", "POSTCODE", "COUNTRY")
# Functions efficy documents that this emulator does not answer: refused as such, not as unknown.
NOT_EMULATED = frozenset({"delete", "addlink", "deletelink", "getlookupdata", "executesqlquery", "sendnotification"})
MUTATING_FUNCTIONS = frozenset({"delete", "addlink", "deletelink", "sendnotification"})


class RpcError(Exception):
    """An efficy error attached to the function or context being answered."""

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.body = {"errorcode": code, "errorstring": message, "detail": detail}


def efficy_time(moment: datetime, fraction: bool = False) -> str:
    """efficy's timestamps: ISO 8601 without a zone (the emulator runs on UTC), in whole seconds,
    or with `fraction` the milliseconds too where there are any. Which one efficy sends is not
    documented (api-notes/efficy.md): the emulator stamps edits in seconds unless the app's
    `change_millis` is set, and keeps a fixture's or a parameter's fraction; texts of both forms
    sort as their times do (a whole second before its own fractions)."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}" if fraction and moment.microsecond >= 1000 else text


def parse_efficy_time(text: str) -> str:
    """Any ISO 8601 form, normalised to efficy's (milliseconds kept); ValueError when it is not a
    timestamp."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    return efficy_time(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC), fraction=True)


@dataclass(frozen=True)
class _SavedQuery:
    """A saved query the admin built for crmsync: rows of one table changed after a keyset
    position, in (D_CHANGE, key) order. Parameter 1 is a timestamp, parameter 2 a key: a row is
    returned when D_CHANGE > p1, or D_CHANGE = p1 and key > p2."""

    store: FixtureStore

    def rows(self, since: str, after: int) -> list[dict[str, Any]]:
        key = self.store.key
        found = [r for r in self.store if (r["D_CHANGE"], r[key]) > (since, after)]
        found.sort(key=lambda r: (r["D_CHANGE"], r[key]))
        return found


class EfficySandbox(SandboxApp):
    type = "efficy"
    rate_limits = (Window(10, 1.0), Window(1000, 3600.0))

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        api_key: str = DEFAULT_API_KEY,
        unavailable_categories: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        self.api_key = api_key
        # Categories the API key's user has no rights on (the admin did not grant them).
        try:
            self.unavailable: set[str] = set(_category_names("unavailable_categories", unavailable_categories))
        except VendorError as exc:
            raise ValueError(exc.message) from None
        self.change_millis = False  # edits stamp D_CHANGE in whole seconds (see efficy_time)
        self.context_errors = True  # a failed context carries its #error as well as the exception node
        self.contact_store = FixtureStore(
            "contacts",
            key="K_CONTACT",
            id_of=_int_or_zero,
            touch=lambda contact: _touch(contact, self.change_millis),
            fixed=sorted(READ_ONLY),
        )
        self.opportunity_store = FixtureStore("opportunities", key="K_OPPORTUNITY", id_of=_int_or_zero)
        # The stores' records by key, where the chaos tests edit them by hand (see vendor.py).
        self.contacts: dict[Any, Record] = self.contact_store.records
        self.opportunities: dict[Any, Record] = self.opportunity_store.records
        self.categories: dict[str, dict[str, int]] = copy.deepcopy(DEFAULT_CATEGORIES)
        self.main_fields: set[str] = {"K_CONTACT", "D_CHANGE", "D_CREATE", *CONTACT_TEXT_FIELDS}
        # Records a user has open in edit mode (key -> user code): other edits are refused.
        self.locks: dict[int, str] = {}
        self.queries = {
            CONTACTS_QUERY: _SavedQuery(self.contact_store),
            OPPORTUNITIES_QUERY: _SavedQuery(self.opportunity_store),
        }
        super().__init__(data, **kwargs)

    # ----- routes and hooks -------------------------------------------------------------------
    def routes(self) -> Sequence[Route]:
        return [Route(ENDPOINT, ("POST",), self.json_endpoint, lists=True)]

    def client_settings(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "contacts_query": CONTACTS_QUERY,
            "orders_query": OPPORTUNITIES_QUERY,
            **super().client_settings(),
        }

    def app_settings(self) -> dict[str, Any]:
        return {
            **super().app_settings(),
            "unavailable_categories": sorted(self.unavailable),
            "change_millis": self.change_millis,
            "context_errors": self.context_errors,
        }

    def change_app(self, partial: Mapping[str, Any]) -> None:
        rest = dict(partial)
        millis = rest.pop("change_millis", None)
        if millis is not None and not isinstance(millis, bool):
            raise VendorError(400, "ER_ARGUMENT", "change_millis is true or false")
        marks = rest.pop("context_errors", None)
        if marks is not None and not isinstance(marks, bool):
            raise VendorError(400, "ER_ARGUMENT", "context_errors is true or false")
        hidden = rest.pop("unavailable_categories", None)
        names = _category_names("unavailable_categories", hidden) if hidden is not None else None
        super().change_app(rest)  # refuses an unknown key before anything below changes
        if names is not None:
            self.unavailable = set(names)
        if millis is not None:
            self.change_millis = millis
        if marks is not None:
            self.context_errors = marks

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        return json_response({"#error": {"errorcode": code, "errorstring": message, **extra}}, status)

    def auth_failure(self) -> Response:
        return self.error(401, "ER_LOGON", "Please logon to database: no credentials were given")

    def authenticate(self, request: Request) -> Response | None:
        key = request.headers.get("X-Efficy-Apikey")
        if not key:
            return self.auth_failure()
        if key != self.api_key:
            # The server took the request and failed the logon: reported like every efficy error.
            return self.error(200, "ER_LOGON", "Invalid User: the API key is not valid", detail="X-Efficy-Apikey")
        return None

    def throttled(self, retry_after: float | None) -> Response:
        """efficy's slow-down signal, for its rate limit and the `vendor-throttle` fault alike."""
        wait = retry_after if retry_after is not None else 1.0
        return self.error(
            200,
            THROTTLE_CODE,
            "Too many requests for this API key, slow down",
            detail=f"retry after {wait:.3f} seconds",
        )

    def looks_throttled(self, response: Response) -> bool:
        return response.status_code == 429 or THROTTLE_CODE.encode() in response.get_data()[:200]

    def looks_failed(self, response: Response) -> bool:
        # `"#error":` with a bare closing quote cannot occur inside a JSON string value.
        return response.status_code == 200 and b'"#error":' in response.get_data()

    def _contexts(self, request: Request) -> list[Any] | None:
        cached = request.environ.get("efficy.contexts", False)
        if cached is not False:
            return cached  # type: ignore[no-any-return]
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            body = None
        contexts = body if isinstance(body, list) else None
        request.environ["efficy.contexts"] = contexts
        return contexts

    def _functions(self, request: Request) -> list[tuple[str, str]]:
        """(context name, function name) of every function in the request."""
        found = []
        for context in self._contexts(request) or []:
            if isinstance(context, dict):
                for func in context.get("@func") or []:
                    if isinstance(func, dict):
                        found.append((str(context.get("@name")), str(func.get("@name"))))
        return found

    def is_write(self, request: Request, route: Route | None) -> bool:
        if route is None:
            return False
        edits = any(isinstance(c, dict) and c.get("@name") == "edit" for c in self._contexts(request) or [])
        return edits or any(ctx == "api" and name in MUTATING_FUNCTIONS for ctx, name in self._functions(request))

    def is_list(self, request: Request, route: Route | None) -> bool:
        return not self.is_write(request, route) and ("api", "query") in self._functions(request)

    # ----- fixtures ---------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        self.contact_store.load(data.get("customers"), self._contact_from_fixture, "efficy/customers.json")
        self.opportunity_store.load(data.get("orders"), self._opportunity_from_fixture, "efficy/orders.json")

    def _contact_from_fixture(self, where: str, item: Any) -> dict[str, Any]:
        record = _record_with_key(where, item, "K_CONTACT")
        for name in CONTACT_TEXT_FIELDS:
            if record.get(name) is not None and not isinstance(record[name], str):
                raise FixtureError(f"{where}: {name} must be text or null")
        categories = record.get("categories", {})
        if not isinstance(categories, dict) or not all(
            isinstance(fields, dict) and all(_is_scalar(v) for v in fields.values()) for fields in categories.values()
        ):
            raise FixtureError(f"{where}: categories must map a category name to an object of field values")
        for category, fields in categories.items():
            self._learn_category(category, fields)
        record["categories"] = categories
        _stamp(where, record)
        self.main_fields.update(k for k in record if k != "categories")
        return record

    def _opportunity_from_fixture(self, where: str, item: Any) -> dict[str, Any]:
        record = _record_with_key(where, item, "K_OPPORTUNITY")
        amount = record.get("AMOUNT")
        if isinstance(amount, bool) or not isinstance(amount, int | float | str):
            raise FixtureError(f"{where}: AMOUNT must be a number")
        contact = record.get("K_CONTACT")
        if contact is not None and (isinstance(contact, bool) or not isinstance(contact, int)):
            raise FixtureError(f"{where}: K_CONTACT must be a contact key (integer) or null")
        record.setdefault("CURRENCY", "EUR")
        record.setdefault("STATUS", "OPEN")
        _stamp(where, record, "D_CLOSE")
        return record

    def _learn_category(self, category: str, fields: Mapping[str, Any]) -> None:
        schema = self.categories.setdefault(category, {})
        for name in fields:
            schema.setdefault(name, TEXT_LENGTH)

    def stamp_customer(self, customer_id: str, moment: datetime) -> None:
        """Sets a customer's modification time as the vendor would have written it (a test moves
        records onto a read's boundary)."""
        self.contacts[int(customer_id)]["D_CHANGE"] = efficy_time(moment, self.change_millis)

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        return self.contact_store.find(customer_id)

    def delete_customer(self, customer_id: str) -> dict[str, Any] | None:
        return self.contact_store.remove(customer_id)

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.contact_store.patch(customer_id, partial, self._merge_contact)

    def _merge_contact(self, contact: Record, key: str, value: Any) -> bool:
        """A hand edit the efficy way: categories are merged category by category (and become
        known), a main-table field becomes a column of the table and is replaced whole, an
        object too; the store sets the rest and keeps the read-only fields."""
        if key == "categories" and isinstance(value, dict):
            for category, fields in value.items():
                if isinstance(fields, dict):
                    self._learn_category(category, fields)
                    contact["categories"].setdefault(category, {}).update(copy.deepcopy(fields))
            return True
        if key in READ_ONLY:
            return False
        self.main_fields.add(key)
        if isinstance(value, dict):
            contact[key] = copy.deepcopy(value)
            return True
        return False

    # ----- the endpoint -----------------------------------------------------------------------
    def json_endpoint(self, request: Request) -> Response:
        contexts = self._contexts(request)
        if contexts is None:
            raise VendorError(200, "ER_INVALID_REQUEST", "The request must be a JSON array of contexts")
        if len(contexts) > MAX_CONTEXTS:
            raise VendorError(
                200, "ER_TOO_MANY_CONTEXTS", f"A request holds at most {MAX_CONTEXTS} contexts, got {len(contexts)}"
            )
        with self.lock:
            reply = [self._answer(context, request) for context in contexts]
        failure = next((found for found in map(_first_failure, reply) if found is not None), None)
        if failure is not None:
            if not self.context_errors:
                reply = [_unmarked(answer) for answer in reply]
            reply.append({"@name": "exception", "#error": failure})
        return json_response(reply)

    def _answer(self, context: Any, request: Request) -> Any:
        if not isinstance(context, dict):
            return {"#error": RpcError("ER_INVALID_CONTEXT", "A context must be an object").body}
        answer = copy.deepcopy(context)
        handler = {"api": self._api, "consult": self._consult, "edit": self._edit}.get(str(context.get("@name")))
        try:
            if handler is None:
                raise RpcError("ER_UNKNOWN_CONTEXT", f"Unknown context {context.get('@name')!r}", "api, consult, edit")
            handler(answer, request)
        except RpcError as exc:
            answer["#error"] = exc.body
        return answer

    def _each_function(self, context: dict[str, Any], answer_one: Callable[[dict[str, Any]], None]) -> bool:
        """Answer every function of a context; True when all of them succeeded."""
        funcs = context.get("@func")
        if not isinstance(funcs, list) or not all(isinstance(f, dict) for f in funcs):
            raise RpcError("ER_INVALID_CONTEXT", "@func must be a list of function objects")
        for func in funcs:
            try:
                answer_one(func)
            except RpcError as exc:
                func["#error"] = exc.body
                context["#error"] = True
        return "#error" not in context

    # ----- api context -------------------------------------------------------------------------
    def _api(self, context: dict[str, Any], request: Request) -> None:
        def answer(func: dict[str, Any]) -> None:
            name = str(func.get("@name"))
            if name == "query":
                func["#result"] = _dataset(self.apply_item_fault(request, self._run_query(func)))
            elif name == "consultmanyex":
                func["#result"] = _dataset(self._consult_many(func))
            elif name == "currentuserfullname":
                func["#result"] = "crmsync API user"
            elif name == "currentusername":
                func["#result"] = "CRMSYNC"
            elif name in NOT_EMULATED:
                raise RpcError("ER_NOT_EMULATED", f"The sandbox does not emulate {name}")
            else:
                raise RpcError("ER_UNKNOWN_FUNCTION", f"Unknown function {name!r} in an api context")

        self._each_function(context, answer)

    def _run_query(self, func: Mapping[str, Any]) -> list[dict[str, Any]]:
        query = self.queries.get(_int_or_zero(func.get("key")))
        if query is None:
            raise RpcError("ER_QUERY_NOT_FOUND", f"Query {func.get('key')!r} does not exist or is not shared with you")
        # Case sensitive: only `recordcount` is the page size; `recordCount` is an unknown key.
        count = func.get("recordcount", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise RpcError("ER_RECORDCOUNT", "recordcount must be a whole number >= 0")
        if count > MAX_ROWS:
            raise RpcError("ER_RECORDCOUNT", f"recordcount {count} exceeds the maximum of {MAX_ROWS} rows")
        params = str(func.get("queryparams", "")).split("|")
        if len(params) != 2:
            raise RpcError("ER_QUERY_PARAMS", f"The query expects 2 parameters, got {len(params)}", "D_CHANGE|key")
        try:
            since, after = parse_efficy_time(params[0]), int(params[1])
        except ValueError:
            raise RpcError("ER_QUERY_PARAMS", f"Invalid query parameters {params!r}", "D_CHANGE|key") from None
        return [_main_row(r) for r in page(query.rows(since, after), 0, count or MAX_ROWS)]

    def _consult_many(self, func: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The main rows of the contacts whose fields hold the values given: `findfield` and `keys`
        are lists joined by `separator`, field by value, every pair met (efficy-enterprise-api
        `consult-many-ex.mjs`, efficy's n8n node). Only Cont is emulated; no row is no error."""
        entity = str(func.get("entity", ""))
        if entity.lower() != "cont":
            raise RpcError("ER_ENTITY_UNKNOWN", f"The sandbox knows the entity Cont, not {entity!r}")
        separator = str(func.get("separator") or ";")
        fields = str(func.get("findfield", "")).split(separator)
        values = str(func.get("keys", "")).split(separator)
        if len(fields) != len(values) or not all(fields):
            raise RpcError("ER_INVALID_DATA", "consultmanyex needs one value in keys per field in findfield")
        unknown = [field for field in fields if field not in self.main_fields]
        if unknown:
            raise RpcError("ER_FIELD_UNKNOWN", f"Unknown field {unknown[0]}", unknown[0])
        pairs = list(zip(fields, values, strict=True))
        found = [r for r in self.contact_store if all(_text(r.get(f)) == v for f, v in pairs)]
        return [_main_row(r) for r in sorted(found, key=lambda r: int(r["K_CONTACT"]))]

    # ----- consult context ---------------------------------------------------------------------
    def _consult(self, context: dict[str, Any], request: Request) -> None:
        contact = self._contact_of(context)

        def answer(func: dict[str, Any]) -> None:
            name = str(func.get("@name"))
            if name == "master":
                # Every column of the main table, empty ones as null (a query row has its own columns).
                func["#result"] = _dataset([{**dict.fromkeys(sorted(self.main_fields)), **_main_row(contact)}])
            elif name == "category":
                category = self._known_category(func.get("category"))
                if category in self.unavailable:
                    func["#result"] = None  # no rights on the category: a null dataset, not an error
                    return
                fields = contact["categories"].get(category)
                row = {f: fields.get(f) for f in self.categories[category]} if fields is not None else None
                # An inactive category answers an empty dataset, not an error.
                func["#result"] = _dataset([{"K_CONTACT": contact["K_CONTACT"], **row}] if row is not None else [])
            else:
                raise RpcError("ER_UNKNOWN_FUNCTION", f"Unknown function {name!r} in a consult context")

        self._each_function(context, answer)

    def _contact_of(self, context: Mapping[str, Any]) -> dict[str, Any]:
        entity = str(context.get("entity", ""))
        if entity.lower() != "cont":
            raise RpcError("ER_ENTITY_UNKNOWN", f"The sandbox knows the entity Cont, not {entity!r}")
        contact = self.contact_store.get(_int_or_zero(context.get("key")))
        if contact is None:
            raise RpcError(
                EFFICY_EXCEPTION, f"Record {context.get('key')!r} of entity Cont not found", NOT_FOUND_DETAIL
            )
        return contact

    def _known_category(self, category: Any) -> str:
        if not isinstance(category, str) or category not in self.categories:
            raise RpcError("ER_CATEGORY_UNKNOWN", f"Unknown category {category!r} for Cont")
        return category

    # ----- edit context ------------------------------------------------------------------------
    def _edit(self, context: dict[str, Any], request: Request) -> None:
        if _int_or_zero(context.get("key")) == 0 and str(context.get("entity", "")).lower() == "cont":
            raise RpcError("ER_NOT_EMULATED", "The sandbox does not create contacts (edit with key 0)")
        contact = self._contact_of(context)
        user = self.locks.get(contact["K_CONTACT"])
        if user is not None:
            raise RpcError(EFFICY_EXCEPTION, f"The record is being edited by {user}", LOCKED_DETAIL)
        draft = copy.deepcopy(contact)

        def answer(func: dict[str, Any]) -> None:
            name = str(func.get("@name"))
            if name == "activateCategory":
                category = self._known_category(func.get("category"))
                if category in self.unavailable:
                    raise RpcError(EFFICY_EXCEPTION, NO_RIGHTS, NO_RIGHTS_DETAIL)
                draft["categories"].setdefault(category, {})
            elif name == "update":
                self._update(draft, func)
            else:
                raise RpcError("ER_UNKNOWN_FUNCTION", f"Unknown function {name!r} in an edit context")

        # An edit context commits all of its changes or none of them.
        if self._each_function(context, answer) and context.get("commit") is True and draft != contact:
            draft["D_CHANGE"] = efficy_time(utcnow(), self.change_millis)
            self.contact_store.add(draft)
        context["edithandle"] = 0 if context.get("closecontext") else contact["K_CONTACT"]

    def _update(self, draft: dict[str, Any], func: Mapping[str, Any]) -> None:
        data = func.get("@data")
        if not isinstance(data, dict):
            raise RpcError("ER_INVALID_DATA", "update needs @data: an object of field values")
        category = func.get("category")
        if category is None:
            target, schema = draft, {name: TEXT_LENGTH for name in self.main_fields - READ_ONLY}
            readonly = READ_ONLY
        else:
            category = self._known_category(category)
            if category in self.unavailable:
                raise RpcError(EFFICY_EXCEPTION, NO_RIGHTS, NO_RIGHTS_DETAIL)
            if category not in draft["categories"]:
                raise RpcError("ER_CATEGORY_INACTIVE", f"Category {category} is not active on this record", category)
            target, schema, readonly = draft["categories"][category], self.categories[category], frozenset()
        for field, value in data.items():
            _check_value(field, value, schema, readonly)
            target[field] = value


def _first_failure(answer: Any) -> dict[str, Any] | None:
    """The error of a failed context: its own, or that of its first function that failed."""
    if not isinstance(answer, dict):
        return None
    if isinstance(answer.get("#error"), dict):
        return dict(answer["#error"])
    funcs = answer.get("@func") if answer.get("#error") is True else None
    for func in funcs if isinstance(funcs, list) else []:
        if isinstance(func, dict) and isinstance(func.get("#error"), dict):
            return dict(func["#error"])
    return None


def _unmarked(answer: Any) -> Any:
    """A context as echoed without its `#error` marks (nor its functions')."""
    if not isinstance(answer, dict):
        return answer
    bare = {k: v for k, v in answer.items() if k != "#error"}
    if isinstance(bare.get("@func"), list):
        bare["@func"] = [
            {k: v for k, v in func.items() if k != "#error"} if isinstance(func, dict) else func
            for func in bare["@func"]
        ]
    return bare


def _category_names(key: str, value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise VendorError(400, "bad_request", f"{key} is a list of category names like CONT$CRMSYNC")
    return list(value)


def _check_value(field: str, value: Any, schema: Mapping[str, int], readonly: frozenset[str]) -> None:
    if field in readonly:
        raise RpcError("ER_FIELD_READONLY", f"Field {field} cannot be changed", field)
    if field not in schema:
        raise RpcError("ER_FIELD_UNKNOWN", f"Unknown field {field}", field)
    if not _is_scalar(value):
        raise RpcError("ER_FIELD_TYPE", f"Field {field} takes text or a number", field)
    if isinstance(value, str) and len(value) > schema[field]:
        raise RpcError("ER_FIELD_LENGTH", f"Value for {field} is longer than {schema[field]} characters", field)


def _record_with_key(where: str, item: Any, key_field: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise FixtureError(f"{where}: expected an object")
    key = item.get(key_field)
    if isinstance(key, bool) or not isinstance(key, int) or key <= 0:
        raise FixtureError(f"{where}: {key_field} must be a positive integer")
    return copy.deepcopy(item)


def _stamp(where: str, record: dict[str, Any], *more: str) -> None:
    """Normalise the timestamps a fixture gives and derive D_CREATE / D_CHANGE where it gives none."""
    for name in ("D_CREATE", "D_CHANGE", *more):
        value = record.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise FixtureError(f"{where}: {name} must be an ISO 8601 timestamp")
        try:
            record[name] = parse_efficy_time(value)
        except ValueError:
            raise FixtureError(f"{where}: {name} is not an ISO 8601 timestamp") from None
    now = efficy_time(utcnow())
    record["D_CREATE"] = record.get("D_CREATE") or record.get("D_CHANGE") or now
    record["D_CHANGE"] = record.get("D_CHANGE") or record["D_CREATE"]


def _touch(contact: Record, fraction: bool = False) -> None:
    """An edit moves D_CHANGE, which is what makes the saved queries return the contact again."""
    contact["D_CHANGE"] = efficy_time(utcnow(), fraction)


def _main_row(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in record.items() if k != "categories"}


def _dataset(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"#class": "dataset", "#data": rows}


def _text(value: Any) -> str:
    """A field's value as consultmanyex compares it with a key given as text."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _int_or_zero(value: Any) -> int:
    try:
        return int(str(value).strip()) if not isinstance(value, bool) else 0
    except ValueError:
        return 0


SANDBOX = EfficySandbox
