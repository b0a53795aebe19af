"""efficy Enterprise connector: the JSON RPC endpoint `POST /crm/json`.

Everything is one POST of a list of contexts (see rpc.py). Contacts and opportunities are read
with saved queries the admin creates for crmsync (`query` with `key`, `queryparams`,
`recordcount`): each takes a keyset position (a D_CHANGE timestamp and a record key) and returns
the rows after it in (D_CHANGE, key) order, so pages never shift under concurrent edits and a read
resumes from the highest D_CHANGE stored. crmsync's own fields live in a category of the contact
(default `CONT$CRMSYNC`) or in the main table; a page of contacts is followed by one request of
`consult` contexts that fetches them, so the stored payload shows what crmsync owns. Writes are
`edit` contexts, up to 100 per request (writes.py); `check` changes nothing (check.py).

efficy reports its errors inside HTTP 200 replies (`#error` on a function, a context or the whole
request); `classify` turns the request-wide ones into real verdicts by `RULES` (rules.py), and the
readers and `write` turn per-context ones into errors or rejections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import structlog

from connectors.auth import HeaderAuth
from connectors.base import Capabilities, CheckReport, Connector
from connectors.efficy.check import check as run_check
from connectors.efficy.rpc import (
    CONTACTS,
    OPPORTUNITIES,
    attach,
    consult_context,
    context_error,
    dataset_rows,
    describe,
    function_of,
    is_exception,
    key_text,
    owned_functions,
    query_context,
    request_error,
)
from connectors.efficy.rules import RULES, verdict_for
from connectors.efficy.settings import (
    CHANGED,
    CONTACT_KEY,
    DEFAULT_PAGE,
    MAX_CONTEXTS,
    START,
    efficy_time,
    split_field,
)
from connectors.efficy.settings import EfficySettings as EfficySettings  # tests import it from here
from connectors.efficy.writes import edit_context, is_key
from connectors.errors import ApiError, AuthError, RejectedRecord
from connectors.http import ApiClient, ApiResponse, Verdict, default_classify
from connectors.paging import KeysetPaginator, Reply
from connectors.streams import RecordSpec, Stream
from connectors.telemetry import TELEMETRY
from connectors.window import Window
from mapping.model import FieldSpec, Kind, SourceRecord, WriteBack, WriteResult, parse_timestamp

log = structlog.get_logger("crmsync.efficy")

# A stream's step over a page's records (contacts get crmsync's fields).
Refine = Callable[[list[SourceRecord]], list[SourceRecord]]


class EfficyConnector(Connector):
    type = "efficy"
    gone_per_read = 5_000  # 50 calls a read
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
    rules = RULES

    settings: EfficySettings
    # Contacts the saved query listed that efficy no longer had when they were consulted.
    records_gone: int = 0
    # The words of a batch refusal whose every contact, sent alone, was refused alike (`write`).
    refused_alike: str | None = None

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
        """A reply is read the HTTP way unless it carries an error about the whole request, which
        `RULES` read (an error inside a 200 body is beyond a rule's reach: it is found here)."""
        error = request_error(response.body)
        return default_classify(response) if error is None else verdict_for(error, response)

    def rpc(self, contexts: list[dict[str, Any]], *, mutating: bool) -> list[Any]:
        response = self.client.request("POST", self.endpoint, json_body=contexts, mutating=mutating)
        if not isinstance(response.body, list):
            raise ApiError(self.name, f"POST {self.endpoint}: expected a list of contexts in the reply")
        # The answers to the contexts sent; an `exception` node was read by `classify`.
        return [node for node in response.body if not is_exception(node)]

    def fail(self, what: str, error: Mapping[str, Any]) -> Exception:
        """The error to raise for a failed read: credentials problems are AuthErrors."""
        verdict = verdict_for(error)
        message = f"POST {self.endpoint}: {what}: {verdict.message}"
        return AuthError(self.name, message) if verdict.kind == "auth" else ApiError(self.name, message)

    def check(self) -> CheckReport:
        return run_check(self)

    # ----- reads --------------------------------------------------------------------------------
    def contacts_stream(self) -> Stream:
        refine = self._owned_fields_of if self.settings.writeback else None
        return self._stream(Kind.CONTACT, self.settings.contacts_query, CONTACTS, refine)

    def orders_stream(self) -> Stream | None:
        query = self.settings.orders_query
        return None if query is None else self._stream(Kind.ORDER, query, OPPORTUNITIES, None)

    def _stream(self, kind: Kind, query: int, records: RecordSpec, refine: Refine | None) -> Stream:
        """A saved query, paged by keyset: a short page (asked for twice) is the last one, and the
        next page starts after the last row efficy sent."""
        after = partial(self._after, records.id_key)
        return self.stream(
            kind,
            partial(self._query, query),
            lambda at: KeysetPaginator(self.name, self.page_size, after, at),
            records,
            refine=refine,
        )

    def _query(self, query: int, at: Sequence[Any] | None, window: Window) -> Reply:
        """The rows after keyset position `at`; a pass starts at its lower bound (the first change
        it reads) or, without one, before every record."""
        position = at if at is not None else ((efficy_time(window.since), 0) if window.since else START)
        reply = self.rpc([query_context(query, position, self.page_size)], mutating=False)
        if (error := context_error(reply[0] if reply else None)) is not None:
            raise self.fail(f"query {query}", error)
        func = function_of(reply[0], "query") if reply else None
        rows = dataset_rows(func) if func is not None else None
        if rows is None:
            raise ApiError(self.name, f"query {query}: the reply holds no dataset")
        return Reply(rows)

    def _after(self, key_field: str, reply: Reply, position: Any) -> tuple[str, int]:
        """Where the next page starts: after the last row. A saved query that does not return the
        columns it pages on cannot page, so that is an error (as is one that does not move on: the
        paginator refuses a position that does not come after the last)."""
        last = reply.items[-1]
        key = key_text(last.get(key_field)) if isinstance(last, Mapping) else None
        # The row's own D_CHANGE text, as efficy wrote it: whatever fraction of a second it carries
        # (not documented) goes back unchanged, where one cut or re-formatted could name a time
        # before the row and read the same page again and again. Checked to be a time first.
        changed: str | None = None
        try:
            text = str(last[CHANGED]).strip()
            parse_timestamp(text)
            changed = text
        except (KeyError, TypeError, ValueError):
            pass
        if key is None or changed is None:
            raise ApiError(self.name, f"the saved query must return {CHANGED} and {key_field} in every row")
        return (changed, int(key))

    def _owned_fields_of(self, records: list[SourceRecord]) -> list[SourceRecord]:
        """A page of contacts with crmsync's fields attached (what is no row is passed on)."""
        rows = [r.payload for r in records if isinstance(r.payload, dict)]
        if not rows:
            return records
        kept = [r for r in records if not isinstance(r.payload, dict)]
        return kept + [CONTACTS.parse(self.name, Kind.CONTACT, row) for row in self._with_owned_fields(rows)]

    def _with_owned_fields(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows with crmsync's fields attached (`categories.<CAT>.<FIELD>`, or the main-table
        field), fetched with one consult context per contact. A row without a key is passed on as
        it is, to be quarantined with its reason instead of vanishing."""
        owned = [split_field(name) for name in self.owned_fields]
        categories, funcs = owned_functions(owned)
        master_fields = [field for category, field in owned if category is None]
        kept = [row for row in rows if key_text(row.get(CONTACT_KEY)) is None]
        keyed = [row for row in rows if key_text(row.get(CONTACT_KEY)) is not None]
        for start in range(0, len(keyed), MAX_CONTEXTS):
            answers = self._consulted(keyed[start : start + MAX_CONTEXTS], funcs)
            kept += [attach(row, answer, categories, master_fields) for row, answer in answers]
        return kept

    def _consulted(
        self, rows: list[dict[str, Any]], funcs: Sequence[Mapping[str, Any]]
    ) -> list[tuple[dict[str, Any], Mapping[str, Any]]]:
        """Each row with its consult's answer. A contact deleted since the query ran is left out;
        efficy's words for that are not public (api-notes/efficy.md), so a refused consult is never
        read as a deletion by its words: efficy is asked by the contact's key whether it still has
        it (`gone_contacts`). A refusal of a contact it still has (crmsync's fields misconfigured,
        say), or one that cannot be told, stops the read: when in doubt, nothing is left out."""
        pending = list(rows)
        while pending:
            contexts = [consult_context(str(i), row, funcs) for i, row in enumerate(pending)]
            try:
                reply = self.rpc(contexts, mutating=False)
            except ApiError as exc:
                # Refused as a whole (the `exception` node alone names no contact): the request goes
                # again without the contacts efficy no longer has, if it has lost any.
                if exc.status != 200:
                    raise
                gone = self.gone_contacts([self._key(row) for row in pending])
                if not gone:
                    raise
                self._left_out(gone)
                pending = [row for row in pending if self._key(row) not in gone]
                continue
            answers = {str(c.get("#id")): c for c in reply if isinstance(c, dict)}
            refused: dict[str, Mapping[str, Any]] = {}
            found: list[tuple[dict[str, Any], Mapping[str, Any]]] = []
            for i, row in enumerate(pending):
                answer = answers.get(str(i), {"#error": "no answer for this contact"})
                error = context_error(answer)
                if error is None:
                    found.append((row, answer))
                else:
                    refused[self._key(row)] = error
            if refused:
                gone = self.gone_contacts(list(refused))
                for key, error in refused.items():
                    if key not in gone:
                        raise self.fail(f"consult contact {key}", error)
                self._left_out(gone)
            return found
        return []

    @staticmethod
    def _key(row: Mapping[str, Any]) -> str:
        return key_text(row.get(CONTACT_KEY)) or ""

    def gone_contacts(self, keys: Sequence[str]) -> set[str]:
        """Of these contact keys, those efficy no longer has: each one looked up by its key with
        `consultmanyex` (no row: no such contact). Anything else (a refusal, an answer missing,
        a key that is no key) raises, so that nothing is taken for deleted unproven."""
        gone: set[str] = set()
        for start in range(0, len(keys), MAX_CONTEXTS):
            chunk = list(keys[start : start + MAX_CONTEXTS])
            if any(key_text(key) != key for key in chunk):
                raise ApiError(self.name, f"cannot look up contacts {', '.join(chunk)}: not all are contact keys")
            contexts = [
                {
                    "@name": "api",
                    "#id": key,
                    "@func": [
                        {
                            "@name": "consultmanyex",
                            "entity": "Cont",
                            "findfield": CONTACT_KEY,
                            "keys": key,
                            "separator": ";",
                        }
                    ],
                }
                for key in chunk
            ]
            answers = {str(c.get("#id")): c for c in self.rpc(contexts, mutating=False) if isinstance(c, dict)}
            for key in chunk:
                answer = answers.get(key)
                if (error := context_error(answer) if answer is not None else None) is not None:
                    raise self.fail(f"look up contact {key}", error)
                rows = dataset_rows(function_of(answer, "consultmanyex") or {}) if answer is not None else None
                if rows is None:
                    raise ApiError(self.name, f"look up contact {key}: the reply holds no dataset")
                if not any(isinstance(r, Mapping) and key_text(r.get(CONTACT_KEY)) == key for r in rows):
                    gone.add(key)
        return gone

    def _left_out(self, keys: set[str]) -> None:
        for key in sorted(keys, key=int):
            log.warning("contact deleted since the query; left out of the read", system=self.name, record_id=key)
        self.records_gone += len(keys)
        TELEMETRY.records_gone(self.name, len(keys))

    # ----- mapping hooks ------------------------------------------------------------------------
    def canonical_id(self, raw: str) -> str | None:
        # Not `numeric_ids`: efficy's JSON may give a key as a float (40001.0), the same key.
        return key_text(raw)

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        category, field = split_field(name)
        source = payload.get("categories", {}).get(category) if category else payload
        value = source.get(field) if isinstance(source, Mapping) else None
        return value if isinstance(value, str) or value is None else str(value)

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        counted = {status.upper() for status in self.settings.counted_statuses}
        return str(payload.get("STATUS", "")).upper() in counted

    # ----- writes: many contacts in one request, so the batch `write` stays -----------------------
    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        results = [WriteResult(c.record_id, False, "not an efficy contact key") for c in changes if not is_key(c)]
        valid = [change for change in changes if is_key(change)]
        if not valid:
            return results
        try:
            reply = self.rpc([edit_context(change) for change in valid], mutating=True)
        except RejectedRecord as exc:
            return results + [WriteResult(c.record_id, False, exc.message) for c in valid]
        except ApiError as exc:
            if exc.status != 200:
                raise
            # efficy refused the request without naming a context (an `exception` node alone, as
            # its employee's clients read failures): alone, a contact's refusal is its own; in a
            # batch, each contact is sent alone to find it (one committed already: the same values
            # again change nothing).
            if len(valid) == 1 or exc.message == self.refused_alike:
                # Alone, the refusal is the contact's. Or a batch before was refused in these very
                # words and each of its contacts, sent alone, too (a category the key may not use,
                # or one user holding them all open): each contact of this one is refused with it,
                # not sent alone again, a request per contact of the merchant. Refused, they are
                # written again next cycle.
                return results + [WriteResult(c.record_id, False, exc.message) for c in valid]
            alone = [result for single in valid for result in self.write([single])]
            if len({r.message for r in alone}) == 1 and not any(r.ok for r in alone):
                self.refused_alike = exc.message
            return results + alone
        answers = {str(c.get("#id")): c for c in reply if isinstance(c, dict)}
        for change in valid:
            answer = answers.get(change.record_id)
            error = context_error(answer) if answer is not None else {"errorstring": "no answer for this contact"}
            results.append(WriteResult(change.record_id, error is None, describe(error) if error else ""))
        return results


CONNECTOR = EfficyConnector
