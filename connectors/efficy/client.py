"""efficy Enterprise connector: the JSON RPC endpoint `POST /crm/json`.

Everything is one POST of a list of contexts. Contacts and opportunities are read with saved
queries the admin creates for crmsync (`query` with `key`, `queryparams`, `recordcount`): each
takes a keyset position (a D_CHANGE timestamp and a record key) and returns the rows after it in
(D_CHANGE, key) order, so pages never shift under concurrent edits and a read resumes from the
highest D_CHANGE stored. crmsync's own fields live in a category of the contact (default
`CONT$CRMSYNC`) or in the main table; a page of contacts is followed by one request of `consult`
contexts that fetches them, so the stored payload shows what crmsync owns. Writes are `edit`
contexts, one per contact and up to 100 per request, each activating the category and updating
only crmsync's fields; efficy answers each context on its own, so one refused contact never sinks
the others.

`check` changes nothing: one request proves the key (`currentuserfullname`, as efficy's own n8n
credential test does) and runs each saved query for a few rows; a second one consults the first
contacts with crmsync's category datasets (and the main table when a field lives there) and looks
at the keys of the rows: a field that is not among them does not exist or cannot be read. A
category dataset comes back null when the user has no rights on the category, and empty on a
contact where the category is not active, which proves nothing about its fields.

Parameter keys go in lowercase (`recordcount`, `queryparams`): the JSON RPC is case sensitive and
ignores a key spelt otherwise (efficy's own client sent `recordCount` and got the whole query).

efficy reports its errors inside HTTP 200 replies (`#error` on a function, a context or the whole
request); `classify` turns the request-wide ones into real verdicts (slow down, credentials, a
server hiccup), and the readers and `write` turn per-context ones into errors or rejections.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from connectors.auth import HeaderAuth
from connectors.base import (
    Capabilities,
    CheckReport,
    Connector,
    Page,
    Permission,
    advance_cursor,
    confirm_short,
    read_since,
)
from connectors.errors import ApiError, AuthError, RejectedRecord
from connectors.http import ApiClient, ApiResponse, Verdict, default_classify
from connectors.settings import Duration, SystemSettings
from mapping.model import FieldSpec, Kind, SourceRecord, WriteBack, WriteResult, parse_timestamp

MAX_PAGE = 1000
MAX_CONTEXTS = 100
DEFAULT_PAGE = 100
# The keyset position before any record: every row has a later D_CHANGE.
START = ("1900-01-01T00:00:00", 0)
CONTACT_KEY = "K_CONTACT"
OPPORTUNITY_KEY = "K_OPPORTUNITY"
CHANGED = "D_CHANGE"
# Contacts `check` consults to see crmsync's fields: a category shows its fields only on a contact
# where it is active, so one contact is too few (one request, a fraction of MAX_CONTEXTS).
PROBE_CONTACTS = 25
NOT_FOUND = "ER_RECORD_NOT_FOUND"

THROTTLE_CODE = "ER_TOO_MANY_REQUESTS"
LOGON_CODE = "ER_LOGON"
# efficy's logon and session failures, as its employee's client library recognises them by text
# (it leaves out "no right to perform this operation": that is one record's security, not the key).
AUTH_PHRASES = (
    "invalid user",
    "please logon",
    "logon to database",
    "session is not valid",
    "session timeout",
    "crm session is not active",
)
_RETRY_HINT = re.compile(r"retry (?:after|in) (\d+(?:\.\d+)?)", re.IGNORECASE)
_FIELD = re.compile(r"^(?:(CONT\$[A-Z0-9_]+)\.)?([A-Z_][A-Z0-9_]*)$")
_KEY = re.compile(r"^\d+(?:\.0+)?$")


class EfficySettings(SystemSettings):
    type: Literal["efficy"]
    api_key: SecretStr
    customer: str | None = Field(default=None, description="X-Efficy-Customer, when several customers share one URL")
    language: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="X-Efficy-Lang, e.g. NL")
    contacts_query: int = Field(ge=1, description="K_QUERY of the saved contacts query")
    orders_query: int | None = Field(default=None, ge=1, description="K_QUERY of the saved opportunities query")
    counted_statuses: list[str] = Field(default_factory=lambda: ["WON"], min_length=1)
    segments_field: str | None = None
    tier_field: str | None = None
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE)
    # D_CHANGE is the server's local time: an hour and five minutes covers the repeated hour when
    # the clocks go back, and re-reading it costs nothing (unchanged records hash the same).
    lookback: Duration = Field(default=3900.0, description="how far before the cursor each read starts")

    @field_validator("segments_field", "tier_field")
    @classmethod
    def _efficy_field(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().upper()
        if not _FIELD.match(name):
            raise ValueError("expected FIELD (main table) or CONT$CATEGORY.FIELD, e.g. CONT$CRMSYNC.SEGMENTS")
        return name


def split_field(name: str) -> tuple[str | None, str]:
    """`CONT$CRMSYNC.SEGMENTS` -> ("CONT$CRMSYNC", "SEGMENTS"); `SEGMENTS` -> (None, "SEGMENTS")."""
    category, dot, field = name.rpartition(".")
    return (category, field) if dot else (None, name)


def efficy_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


# ----- reading efficy's replies ---------------------------------------------------------------------
def error_of(node: Any) -> Mapping[str, Any] | None:
    """The `#error` of a reply node as an object, or None. efficy writes it as an object
    ({errorcode, errorstring, detail}), a string, or `true` with the message in `#message`."""
    if not isinstance(node, Mapping):
        return None
    error = node.get("#error")
    if isinstance(error, Mapping):
        return error
    if isinstance(error, str) and error:
        return {"errorstring": error}
    if error is True:
        return {"errorstring": str(node.get("#message") or "error")}
    if node.get("error") is True:  # the newer {error, code, message} form
        return {"errorcode": node.get("code"), "errorstring": node.get("message")}
    return None


def request_error(body: Any) -> Mapping[str, Any] | None:
    """An error about the whole request: a top-level `#error` object or an `exception` context."""
    if isinstance(body, Mapping):
        return error_of(body)
    if isinstance(body, list):
        for node in body:
            if isinstance(node, Mapping) and node.get("@name") == "exception":
                return error_of(node) or {"errorstring": "exception"}
    return None


def context_error(context: Any) -> Mapping[str, Any] | None:
    """The error of a context, or of its first function that failed: when a function fails,
    efficy flags the context with `#error: true` and the function holds the message."""
    own = error_of(context)
    if own is not None and context.get("#error") is not True:
        return own
    funcs = context.get("@func") if isinstance(context, Mapping) else None
    for func in funcs if isinstance(funcs, list) else []:
        if (inner := error_of(func)) is not None:
            return inner
    return own


def describe(error: Mapping[str, Any]) -> str:
    code, text, detail = (str(error.get(k) or "").strip() for k in ("errorcode", "errorstring", "detail"))
    message = f"{code}: {text}" if code and text else code or text or "unspecified error"
    return f"{message} ({detail})" if detail else message


def verdict_for(error: Mapping[str, Any]) -> Verdict:
    code = str(error.get("errorcode") or "").upper()
    text = f"{error.get('errorstring') or ''} {error.get('detail') or ''}"
    message = describe(error)
    if code == THROTTLE_CODE or "too many requests" in text.lower():
        hint = _RETRY_HINT.search(text)
        return Verdict("throttled", message, float(hint.group(1)) if hint else None)
    if code == LOGON_CODE or any(phrase in text.lower() for phrase in AUTH_PHRASES):
        return Verdict("auth", message)
    if "deadlock" in text.lower():  # the database chose this request as the victim: run it again
        return Verdict("retry", message)
    return Verdict("fatal", message)


def dataset_rows(func: Mapping[str, Any]) -> list[Any] | None:
    """The rows of a function's dataset result (`#result: {"#class": "dataset", "#data": [...]}`)."""
    result = func.get("#result")
    if isinstance(result, Mapping) and isinstance(result.get("#data"), list):
        return list(result["#data"])
    return None


def function_of(context: Any, name: str) -> Mapping[str, Any] | None:
    funcs = context.get("@func") if isinstance(context, Mapping) else None
    for func in funcs if isinstance(funcs, list) else []:
        if isinstance(func, Mapping) and func.get("@name") == name:
            return func
    return None


def key_text(value: Any) -> str | None:
    """An efficy record key as crmsync writes ids: `40001`, also from 40001.0 or "40001"."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    text = str(value).strip()
    if not _KEY.match(text):
        return None
    number = int(text.split(".")[0])
    return str(number) if number > 0 else None


class EfficyConnector(Connector):
    type = "efficy"
    settings_class = EfficySettings
    api_name = "efficy JSON RPC"
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=False, write_fields=True
    )
    contact_fields = {
        "email": FieldSpec("EMAIL1", "email"),
        "phone": FieldSpec("MOBILE", "phone"),
        "first_name": FieldSpec("FIRSTNAME"),
        "last_name": FieldSpec("NAME"),
    }
    order_fields = {
        "customer_id": FieldSpec(CONTACT_KEY, "id"),
        "amount": FieldSpec("AMOUNT", "money"),
        "currency": FieldSpec("CURRENCY", "currency"),
        "created_at": FieldSpec("D_CLOSE", "datetime"),
    }
    max_write_batch = MAX_CONTEXTS
    default_segments_field = "CONT$CRMSYNC.SEGMENTS"
    default_tier_field = "CONT$CRMSYNC.LOYALTY_TIER"
    # efficy has no "absent" for a field: an empty text is the closest.
    empty_field_value = ""

    settings: EfficySettings

    def make_client(self) -> ApiClient:
        settings = self.settings
        # Logoff after every call: crmsync is stateless, and open server sessions cost the tenant.
        headers = {"X-Efficy-Logoff": "true"}
        if settings.customer:
            headers["X-Efficy-Customer"] = settings.customer
        if settings.language:
            headers["X-Efficy-Lang"] = settings.language
        self.endpoint = "/json" if settings.base_url.endswith("/crm") else "/crm/json"
        return self.api_client(auth=HeaderAuth({"X-Efficy-Apikey": settings.api_key}), headers=headers)

    @property
    def page_size(self) -> int:
        return self.settings.page_size or DEFAULT_PAGE

    @property
    def owned_fields(self) -> list[str]:
        return [name for name in (self.segments_field, self.tier_field) if name]

    # ----- what replies mean ---------------------------------------------------------------------
    def classify(self, response: ApiResponse) -> Verdict:
        error = request_error(response.body)
        if response.status != 200:
            verdict = default_classify(response)
            return Verdict(verdict.kind, describe(error) if error else verdict.message, verdict.retry_after)
        return verdict_for(error) if error is not None else Verdict.ok()

    def rpc(self, contexts: list[dict[str, Any]], *, mutating: bool) -> list[Any]:
        response = self.client.request("POST", self.endpoint, json_body=contexts, mutating=mutating)
        if not isinstance(response.body, list):
            raise ApiError(self.name, f"POST {self.endpoint}: expected a list of contexts in the reply")
        return response.body

    def _fail(self, what: str, error: Mapping[str, Any]) -> Exception:
        """The error to raise for a failed read: credentials problems are AuthErrors."""
        verdict = verdict_for(error)
        message = f"POST {self.endpoint}: {what}: {verdict.message}"
        return AuthError(self.name, message) if verdict.kind == "auth" else ApiError(self.name, message)

    def check(self) -> CheckReport:
        """Proves the key, the saved queries and crmsync's fields with reads only (two requests)."""
        settings = self.settings
        queries = [("contacts", settings.contacts_query, CONTACT_KEY, PROBE_CONTACTS)]
        if settings.orders_query is not None:
            queries.append(("orders", settings.orders_query, OPPORTUNITY_KEY, 1))
        who = {"@name": "api", "@func": [{"@name": "currentuserfullname"}]}
        reply = self.rpc([who, *(self._query_context(q, START, n) for _, q, _, n in queries)], mutating=False)
        if len(reply) != 1 + len(queries):
            raise ApiError(self.name, "check: expected one answer per context")
        if (error := context_error(reply[0])) is not None:
            raise self._fail("check", error)
        user = function_of(reply[0], "currentuserfullname")
        if user is None or not isinstance(user.get("#result"), str):
            raise ApiError(self.name, "unexpected reply to currentuserfullname")
        permissions: list[Permission] = []
        warnings: list[str] = []
        rows: dict[str, list[Any] | None] = {}
        for (role, query, key_field, _), context in zip(queries, reply[1:], strict=True):
            permission, rows[role] = self._query_permission(role, query, key_field, context)
            permissions.append(permission)
        if settings.orders_query is None:
            warnings.append("orders_query is not set: no opportunities are read from efficy")
        contacts = rows["contacts"]
        written = False
        if settings.writeback and self.owned_fields:
            keys = [k for k in (key_text(r.get(CONTACT_KEY)) for r in contacts or [] if isinstance(r, dict)) if k]
            if contacts is None:
                warnings.append("crmsync's fields were not checked: the contacts query did not run")
            elif not keys:
                warnings.append(f"no contact to consult: {', '.join(self.owned_fields)} could not be checked")
            else:
                proven, unproven = self._field_permissions(keys)
                permissions += proven
                warnings += unproven
                written = all(p.ok for p in proven)
        capabilities = Capabilities(
            read_contacts=contacts is not None,
            read_orders=rows.get("orders") is not None,
            incremental=contacts is not None,  # the query pages by D_CHANGE: proven with its rows
            write_tags=False,
            write_fields=written,
        )
        return CheckReport(capabilities, permissions, warnings)

    def _query_permission(
        self, role: str, query: int, key_field: str, context: Any
    ) -> tuple[Permission, list[Any] | None]:
        """Whether a saved query runs for this key and returns the columns crmsync pages on; the
        rows it returned when it does."""
        name = f"query {query} ({role})"
        if (error := context_error(context)) is not None:
            if verdict_for(error).kind != "fatal":
                raise self._fail(f"query {query}", error)
            fix = (
                f"create the saved {role} query for crmsync, share it with the API key's user and set "
                f"{role}_query to its K_QUERY (efficy said: {describe(error)})"
            )
            return Permission(name, False, fix), None
        func = function_of(context, "query")
        found = dataset_rows(func) if func is not None else None
        if found is None:
            raise ApiError(self.name, f"query {query}: the reply holds no dataset")
        lacking = [c for c in (CHANGED, key_field) if any(isinstance(r, dict) and c not in r for r in found)]
        if lacking:
            fix = f"the saved {role} query must return {CHANGED} and {key_field} in every row; it lacks {lacking[0]}"
            return Permission(name, False, fix), None
        return Permission(name, True), found

    def _field_permissions(self, keys: Sequence[str]) -> tuple[list[Permission], list[str]]:
        """crmsync's fields, seen in the rows of contacts consulted with its category datasets
        (and the main table's, for a main-table field); a field not proven is not assumed."""
        owned = [(name, *split_field(name)) for name in self.owned_fields]
        categories = sorted({category for _, category, _ in owned if category})
        funcs: list[dict[str, Any]] = [{"@name": "category", "category": c} for c in categories]
        if any(category is None for _, category, _ in owned):
            funcs.append({"@name": "master", "tableview": 0})
        reply = self.rpc(
            [_consult_context(str(i), {CONTACT_KEY: k}, funcs) for i, k in enumerate(keys)], mutating=False
        )
        seen: dict[str | None, set[str]] = {}  # category (None: the main table) -> fields in its rows
        available: set[str] = set()  # categories answered with a dataset, rows or none
        refused: dict[str, str] = {}  # category -> what efficy said
        consulted = 0
        for answer in reply:
            own = error_of(answer)
            if own is not None and answer.get("#error") is not True:  # the contact itself
                if str(own.get("errorcode")) == NOT_FOUND:
                    continue  # deleted since the query ran
                raise self._fail("consult contact", own)
            consulted += 1
            for func in answer.get("@func") or []:
                if not isinstance(func, dict):
                    continue
                error = error_of(func)
                target = func.get("category") if func.get("@name") == "category" else None
                if error is not None:
                    if target is None or verdict_for(error).kind != "fatal":
                        raise self._fail("consult contact", error)
                    refused[str(target)] = describe(error)
                    continue
                if target is not None and func.get("#result") is None:
                    continue  # a null dataset: the category is not available to this user
                if target is not None:
                    available.add(str(target))
                for row in (dataset_rows(func) or [])[:1]:
                    if isinstance(row, dict):
                        seen.setdefault(target, set()).update(row)
        if consulted == 0:
            return [], [f"no contact to consult: {', '.join(self.owned_fields)} could not be checked"]
        permissions: list[Permission] = []
        warnings: list[str] = []
        for name, category, field in owned:
            setting = "segments_field" if name == self.segments_field else "tier_field"
            or_correct = f", or correct {setting}"
            if category is None:
                fix = f"contacts have no field {field}: create it as a text field on the contact table (Cont)"
                ok = field in seen.get(None, set())
                permissions.append(Permission(f"field {name}", ok, f"{fix} in efficy's customisation{or_correct}"))
            elif category in refused:
                fix = (
                    f"efficy refused category {category}: create it on contacts with a text field {field} in "
                    f"efficy's customisation{or_correct} (efficy said: {refused[category]})"
                )
                permissions.append(Permission(f"field {name}", False, fix))
            elif category not in available:
                fix = (
                    f"category {category} is not available to the API key's user: grant the user rights on it in "
                    f"efficy (it must hold a text field {field}){or_correct}"
                )
                permissions.append(Permission(f"field {name}", False, fix))
            elif category in seen:
                fix = f"category {category} has no field {field}: add it as a text field in efficy's customisation"
                permissions.append(Permission(f"field {name}", field in seen[category], fix + or_correct))
            else:
                # Available, but active on none of the contacts consulted: its fields cannot be seen.
                fix = f"make sure category {category} on contacts has a text field {field}"
                permissions.append(Permission(f"field {name}", False, fix, needed=False))
                warnings.append(
                    f"{name} not proven: category {category} is active on none of the {consulted} contacts "
                    "consulted, so its fields could not be seen (crmsync activates it on its first write)"
                )
        return permissions, warnings

    # ----- reads --------------------------------------------------------------------------------
    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        return self._read(Kind.CONTACT, self.settings.contacts_query, CONTACT_KEY, checkpoint)

    def read_orders(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        if self.settings.orders_query is None:
            return iter(())
        return self._read(Kind.ORDER, self.settings.orders_query, OPPORTUNITY_KEY, checkpoint)

    def _read(self, kind: Kind, query: int, key_field: str, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        since = read_since(checkpoint, self.settings.lookback)
        position = (efficy_time(since), 0) if since else START
        state = dict(checkpoint or {})
        number = 0
        while True:
            answered = confirm_short(partial(self._query, query, position), len, self.page_size)
            rows = [row for row in answered if isinstance(row, dict)]
            if kind is Kind.CONTACT and rows and self.settings.writeback:
                rows = self._with_owned_fields(rows)
            records = [self._record(kind, key_field, row) for row in rows]
            number += 1
            state = advance_cursor(state, records)
            yield Page(records, state, number)
            # A short page (asked for twice) is the last one; the keyset carries on after the last
            # row efficy sent.
            if len(answered) < self.page_size:
                return
            position = self._next_position(answered[-1], key_field, position)

    def _query_context(self, query: int, position: tuple[str, int], count: int) -> dict[str, Any]:
        func = {"@name": "query", "key": query, "queryparams": f"{position[0]}|{position[1]}", "recordcount": count}
        return {"@name": "api", "@func": [func]}

    def _query(self, query: int, position: tuple[str, int]) -> list[Any]:
        reply = self.rpc([self._query_context(query, position, self.page_size)], mutating=False)
        if (error := context_error(reply[0] if reply else None)) is not None:
            raise self._fail(f"query {query}", error)
        func = function_of(reply[0], "query") if reply else None
        rows = dataset_rows(func) if func is not None else None
        if rows is None:
            raise ApiError(self.name, f"query {query}: the reply holds no dataset")
        return rows

    def _next_position(self, last: Mapping[str, Any], key_field: str, position: tuple[str, int]) -> tuple[str, int]:
        """Where the next page starts: after the last row. A saved query that does not move on
        (missing columns, parameters ignored) would page forever, so that is an error."""
        key = key_text(last.get(key_field))
        try:
            changed = efficy_time(parse_timestamp(str(last[CHANGED])))
        except (KeyError, ValueError):
            changed = None
        if key is None or changed is None:
            raise ApiError(self.name, f"the saved query must return {CHANGED} and {key_field} in every row")
        following = (changed, int(key))
        if following <= position:
            raise ApiError(self.name, f"the saved query does not page: rows must come after {position} in order")
        return following

    def _record(self, kind: Kind, key_field: str, row: dict[str, Any]) -> SourceRecord:
        stamp = row.get(CHANGED)
        try:
            updated_at = parse_timestamp(stamp) if isinstance(stamp, str) and stamp else None
        except ValueError:
            updated_at = None
        return SourceRecord(self.name, kind, key_text(row.get(key_field)) or "", updated_at, row)

    def _with_owned_fields(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows with crmsync's fields attached (`categories.<CAT>.<FIELD>`, or the main-table
        field), fetched with one consult context per contact. A contact deleted since the query
        ran is left out; any other refusal means the fields are misconfigured. A row without a
        key is passed on as it is, to be quarantined with its reason instead of vanishing."""
        owned = [split_field(name) for name in self.owned_fields]
        categories = sorted({category for category, _ in owned if category})
        master_fields = [field for category, field in owned if category is None]
        funcs: list[dict[str, Any]] = [{"@name": "category", "category": c} for c in categories]
        if master_fields:
            funcs.append({"@name": "master", "tableview": 0})
        kept = [row for row in rows if key_text(row.get(CONTACT_KEY)) is None]
        keyed = [row for row in rows if key_text(row.get(CONTACT_KEY)) is not None]
        for start in range(0, len(keyed), MAX_CONTEXTS):
            chunk = keyed[start : start + MAX_CONTEXTS]
            contexts = [_consult_context(str(i), row, funcs) for i, row in enumerate(chunk)]
            answers = {str(c.get("#id")): c for c in self.rpc(contexts, mutating=False) if isinstance(c, dict)}
            for i, row in enumerate(chunk):
                answer = answers.get(str(i), {"#error": "no answer for this contact"})
                error = context_error(answer)
                if error is None:
                    kept.append(_attach(row, answer, categories, master_fields))
                elif str(error.get("errorcode")) != "ER_RECORD_NOT_FOUND":
                    raise self._fail(f"consult contact {row.get(CONTACT_KEY)}", error)
        return kept

    # ----- mapping hooks ------------------------------------------------------------------------
    def canonical_id(self, raw: str) -> str | None:
        return key_text(raw)

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        category, field = split_field(name)
        source = payload.get("categories", {}).get(category) if category else payload
        value = source.get(field) if isinstance(source, Mapping) else None
        return value if isinstance(value, str) or value is None else str(value)

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        counted = {status.upper() for status in self.settings.counted_statuses}
        return str(payload.get("STATUS", "")).upper() in counted

    # ----- writes -------------------------------------------------------------------------------
    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        results = [WriteResult(c.record_id, False, "not an efficy contact key") for c in changes if not _key(c)]
        valid = [change for change in changes if _key(change)]
        if not valid:
            return results
        try:
            reply = self.rpc([self._edit_context(change) for change in valid], mutating=True)
        except RejectedRecord as exc:
            return results + [WriteResult(c.record_id, False, exc.message) for c in valid]
        answers = {str(c.get("#id")): c for c in reply if isinstance(c, dict)}
        for change in valid:
            answer = answers.get(change.record_id)
            error = context_error(answer) if answer is not None else {"errorstring": "no answer for this contact"}
            results.append(WriteResult(change.record_id, error is None, describe(error) if error else ""))
        return results

    def _edit_context(self, change: WriteBack) -> dict[str, Any]:
        """One contact's edit: per category, activate it (a no-op when active) and update only
        crmsync's fields; main-table fields go to table view 0. Committed and closed at once."""
        grouped: dict[str | None, dict[str, str]] = {}
        for name, value in change.set_fields.items():
            category, field = split_field(name)
            grouped.setdefault(category, {})[field] = value or ""
        funcs: list[dict[str, Any]] = []
        for category, data in grouped.items():
            if category is None:
                funcs.append({"@name": "update", "tableview": 0, "@data": data})
            else:
                funcs.append({"@name": "activateCategory", "category": category})
                funcs.append({"@name": "update", "category": category, "@data": data})
        return {
            "@name": "edit",
            "#id": change.record_id,
            "entity": "Cont",
            "key": int(change.record_id),
            "commit": True,
            "closecontext": True,
            "@func": funcs,
        }


def _key(change: WriteBack) -> bool:
    return key_text(change.record_id) == change.record_id


def _consult_context(ref: str, row: Mapping[str, Any], funcs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "@name": "consult",
        "#id": ref,
        "entity": "Cont",
        "key": int(key_text(row.get(CONTACT_KEY)) or 0),
        "closecontext": True,
        "@func": [dict(f) for f in funcs],
    }


def _attach(
    row: dict[str, Any], answer: Mapping[str, Any], categories: Sequence[str], master_fields: Sequence[str]
) -> dict[str, Any]:
    """The query row plus the consulted category rows (an inactive category is an empty object)."""
    payload = dict(row)
    payload["categories"] = {}
    for category in categories:
        func = next((f for f in answer.get("@func") or [] if isinstance(f, dict) and f.get("category") == category), {})
        rows = dataset_rows(func) or []
        first = rows[0] if rows and isinstance(rows[0], dict) else {}
        payload["categories"][category] = {k: v for k, v in first.items() if k != CONTACT_KEY}
    master = dataset_rows(function_of(answer, "master") or {}) or []
    if master and isinstance(master[0], dict):
        payload.update({field: master[0].get(field) for field in master_fields})
    return payload


CONNECTOR = EfficyConnector
