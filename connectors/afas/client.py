"""AFAS Profit connector: App Connector REST API (`/ProfitRestServices`).

Profit has no fixed "contacts" endpoint: an administrator builds GetConnectors (named views) and
adds them to the app connector whose token crmsync uses. crmsync reads a persons GetConnector and
a sales-invoices GetConnector (names configurable) whose columns follow the layout below, and
writes its verdict into two free fields (vrije velden) on KnPerson through the UpdateConnector.

Reads page with `take` and `orderbyfieldids=<key column>`, filtering on the modified-date audit
column for incremental reads. Instead of walking `skip` (an insert or delete between two calls
shifts every later row by one, and AFAS says `skip` gets slow past 100,000), every next page
filters `key > last key seen` with `skip=0` (keyset paging; AFAS's advice for large sets is to
split by filter). A short or empty page ends the read, once it has been asked for a second time
(`confirm_short`: a reply that lost a row on the way must not end it early). The filter on the
modified date stays fixed during a pass, so a record changed mid-read is either read now or on the
next cycle: the cursor stored at the end never passes the moment the pass started.

Writes: `PUT /connectors/KnPerson` with `MatchPer` 0 (find the person by number) and only
crmsync's two free fields, one person per call (the published KnPerson schema has one `Element`).
Free fields are named by their id (`U` + 32 hex digits) or by their label, which is looked up once
in `GET /metainfo/update/KnPerson`. A 500 carrying a Profit message is a refused record, except
the messages that mean "try again" (unexpected error, timeout, a record locked by a user); a 503
is AFAS's "come back later", with a `retry_after` hint in the body.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from pydantic import Field, SecretStr

from connectors.afas.profit_time import filter_value, parse_profit
from connectors.base import Capabilities, Connector, Page, confirm_short, read_since
from connectors.errors import ApiError, RejectedRecord
from connectors.http import ApiClient, ApiResponse, Verdict, default_classify, parse_retry_after
from connectors.settings import SystemSettings
from mapping.model import FieldSpec, Kind, SourceRecord, WriteBack, WriteResult, parse_timestamp

API = "/ProfitRestServices"
UPDATE_CONNECTOR = "KnPerson"
MAX_TAKE = 10_000  # (assumed) no maximum is documented; far above this Profit runs out of memory
DEFAULT_TAKE = 500  # AFAS: columns x rows below ~150,000 per call; the persons view has ~25 columns
PERSON_KEY = "PersonId"
INVOICE_KEY = "InvoiceId"
CONNECTOR_NAME = r"^[A-Za-z0-9_]+$"
FIELD_NAME = r"^[A-Za-z0-9_ ]+$"
FREE_FIELD_ID = re.compile(r"^U[0-9A-Fa-f]{32}$")
MAX_CODE_LENGTH = 15  # KnPerson.BcCo, the person number

# A 500 from Profit always carries a message; these mean the server failed, not the data:
# "unexpected error" (documented for bad parameters too, which crmsync never sends), the 15-minute
# timeout, and a record or layout locked by someone working in Profit (AFAS: retry those).
TRANSIENT_MESSAGES = (
    "onverwachte fout",
    "unexpected error",
    "maximale tijdsduur",
    "maximum duration",
    "blocked by another user",
    "geblokkeerd door een andere gebruiker",
    "in gebruik door een andere gebruiker",
    "locked",
)


class AfasSettings(SystemSettings):
    type: Literal["afas"]
    token: SecretStr = Field(
        description="the app connector token: its data part, or the whole <token>...</token> as Profit shows it"
    )
    contacts_connector: str = Field(default="Profit_CRM_Persons", pattern=CONNECTOR_NAME)
    orders_connector: str = Field(default="Profit_CRM_SalesInvoices", pattern=CONNECTOR_NAME)
    modified_field: str = Field(
        default="ModifiedDate", pattern=FIELD_NAME, description="the audit column both GetConnectors filter on"
    )
    segments_field: str = Field(
        default="crmsync_segments", pattern=FIELD_NAME, description="KnPerson free field: its id or its label"
    )
    tier_field: str = Field(default="crmsync_loyalty_tier", pattern=FIELD_NAME)
    segments_column: str | None = Field(
        default=None, pattern=FIELD_NAME, description="persons GetConnector column showing it (default: the same)"
    )
    tier_column: str | None = Field(default=None, pattern=FIELD_NAME)
    language: str = Field(default="nl-nl", description="Accept-Language: the language of Profit's messages")
    page_size: int | None = Field(default=None, ge=1, le=MAX_TAKE)


def token_header(token: str) -> str:
    """`AfasToken ` + base64 of the whole XML envelope (mandatory since Profit 7)."""
    envelope = token.strip()
    if not envelope.startswith("<token>"):
        envelope = f"<token><version>1</version><data>{envelope}</data></token>"
    return "AfasToken " + base64.b64encode(envelope.encode("utf-8")).decode("ascii")


def profit_message(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("externalMessage"), str):
        reference = body.get("profitLogReference")
        message = str(body["externalMessage"])
        return f"{message} (Profit log {reference})" if isinstance(reference, str) and reference else message
    return None


class AfasConnector(Connector):
    type = "afas"
    settings_class = AfasSettings
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=False, write_fields=True
    )
    # Columns of the persons and invoices GetConnectors the administrator builds (see the config).
    contact_fields = {
        "email": FieldSpec("Email", "email"),
        "phone": FieldSpec("Mobile", "phone"),
        "first_name": FieldSpec("FirstName"),
        "last_name": FieldSpec("LastName"),
    }
    order_fields = {
        "customer_id": FieldSpec("PersonId", "id"),
        "amount": FieldSpec("AmountInclVat", "money"),
        "currency": FieldSpec("Currency", "currency"),
        # Profit's fake "Z" makes this read as UTC: an invoice time is off by the Amsterdam offset
        # (one or two hours); traits count days, so at worst an invoice moves across midnight.
        "created_at": FieldSpec("InvoiceDate", "datetime"),
    }
    max_write_batch = 1
    # GetConnectors show an empty free field as null, and PUT "" clears one: "" is "nothing of ours".
    empty_field_value = ""

    settings: AfasSettings

    def make_client(self) -> ApiClient:
        self._field_ids: dict[str, str] | None = None
        headers = {
            "Authorization": token_header(self.settings.token.get_secret_value()),
            "Accept-Language": self.settings.language,
        }
        return self.api_client(headers=headers)

    @property
    def page_size(self) -> int:
        return self.settings.page_size or DEFAULT_TAKE

    # ----- what replies mean ---------------------------------------------------------------------
    def classify(self, response: ApiResponse) -> Verdict:
        status = response.status
        if status == 503:
            hint = response.body.get("retry_after") if isinstance(response.body, dict) else None
            wait = float(hint) if isinstance(hint, int | float) else parse_retry_after(response.header("Retry-After"))
            error = response.body.get("error") if isinstance(response.body, dict) else None
            said = error.get("message") if isinstance(error, dict) else None
            return Verdict("throttled", said if isinstance(said, str) and said else "Profit is unavailable", wait)
        if status == 500:
            return self._classify_500(response)
        if status == 401:
            return Verdict("auth", "token refused, or the connector is not in the app connector")
        if status == 403:
            return Verdict("auth", "refused by the app connector's IP restriction")
        if status == 404:
            return Verdict("fatal", "not found: a wrong URL, or a query string over 2049 characters")
        if status == 400 and response.method == "GET":
            return Verdict("fatal", "Profit refused the request as malformed (HTTP 400)")
        return default_classify(response)

    def _classify_500(self, response: ApiResponse) -> Verdict:
        message = profit_message(response.body)
        if message is None:
            return Verdict("retry", "HTTP 500 without a Profit message")
        if any(marker in message.casefold() for marker in TRANSIENT_MESSAGES):
            return Verdict("retry", message)
        if response.method != "GET":
            return Verdict("rejected", message)  # a validation error: this record, as sent, is refused
        # On a read it is the GetConnector set-up (unknown field, blocked definition, too much data).
        hint = " (lower page_size)" if "out of" in message.casefold() else ""
        return Verdict("fatal", message + hint)

    # ----- reads --------------------------------------------------------------------------------
    def check(self) -> None:
        self._rows(self.settings.contacts_connector, PERSON_KEY, [], take=1)  # raises unless {skip, take, rows}

    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        return self._read(Kind.CONTACT, self.settings.contacts_connector, PERSON_KEY, checkpoint)

    def read_orders(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        return self._read(Kind.ORDER, self.settings.orders_connector, INVOICE_KEY, checkpoint)

    def _read(self, kind: Kind, connector: str, key: str, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        """One pass over the rows changed since the cursor (all rows without one), by key.

        Mid-pass the checkpoint keeps the previous cursor and a `scan` saying where to resume;
        the last page's checkpoint is the new cursor."""
        previous = {"cursor": checkpoint["cursor"]} if checkpoint and checkpoint.get("cursor") else {}
        scan = Scan.resume(checkpoint) or Scan.start(read_since(checkpoint, self.settings.lookback))
        number = 0
        while True:
            filters = scan.filters(self.settings.modified_field, key)
            rows = confirm_short(partial(self._rows, connector, key, filters, self.page_size), len, self.page_size)
            records = [self._record(kind, key, row) for row in rows]
            last_key = rows[-1].get(key) if rows and isinstance(rows[-1], dict) else None
            if rows and (last_key is None or last_key == scan.after):
                # No way forward: the rows lack the key column, or the filter on it was ignored.
                raise ApiError(self.name, f"GET {connector}: cannot page on {key!r} (missing or not filterable)")
            scan.saw(records, last_key)
            number += 1
            if len(rows) < self.page_size:
                yield Page(records, scan.finish(previous), number)
                return
            yield Page(records, {**previous, "scan": scan.to_json()}, number)

    def _rows(self, connector: str, key: str, filters: list[tuple[str, int, str]], take: int) -> list[Any]:
        params: dict[str, Any] = {"skip": 0, "take": take, "orderbyfieldids": key}
        params.update(filter_params(filters))
        response = self.client.request("GET", f"{API}/connectors/{connector}", params=params)
        rows = response.body.get("rows") if isinstance(response.body, dict) else None
        if not isinstance(rows, list):
            raise ApiError(self.name, f"GET {connector}: expected {{skip, take, rows}}")
        return rows

    def _record(self, kind: Kind, key: str, row: Any) -> SourceRecord:
        if not isinstance(row, dict):
            return SourceRecord(self.name, kind, "", None, row)
        stamp = row.get(self.settings.modified_field)
        try:
            updated_at = parse_profit(stamp) if isinstance(stamp, str) and stamp else None
        except ValueError:
            updated_at = None
        record_id = row.get(key)
        return SourceRecord(self.name, kind, "" if record_id is None else str(record_id), updated_at, row)

    # ----- mapping hooks ------------------------------------------------------------------------
    def canonical_id(self, raw: str) -> str | None:
        text = raw.strip()
        return text if text and len(text) <= MAX_CODE_LENGTH else None

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        column = self._column(name)
        value = payload.get(column) if column else None
        if value is None or isinstance(value, str):
            return value
        return str(value)

    def _column(self, name: str) -> str | None:
        if name == self.segments_field:
            return self.settings.segments_column or name
        if name == self.tier_field:
            return self.settings.tier_column or name
        return None

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("Credited") is not True

    # ----- writes -------------------------------------------------------------------------------
    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        ids = self._free_field_ids()
        results = []
        for change in changes:
            fields: dict[str, Any] = {"MatchPer": "0", "BcCo": change.record_id}
            fields.update({ids[name]: value or "" for name, value in sorted(change.set_fields.items())})
            body = {UPDATE_CONNECTOR: {"Element": {"Fields": fields}}}
            try:
                self.client.request("PUT", f"{API}/connectors/{UPDATE_CONNECTOR}", json_body=body, expect_json=False)
            except RejectedRecord as exc:
                results.append(WriteResult(change.record_id, False, exc.message))
            else:
                results.append(WriteResult(change.record_id, True))
        return results

    def _free_field_ids(self) -> dict[str, str]:
        """Setting name -> KnPerson field id; a label is looked up once in the metainfo."""
        if self._field_ids is not None:
            return self._field_ids
        names = [n for n in (self.segments_field, self.tier_field) if n]
        ids = {n: n.upper() for n in names if FREE_FIELD_ID.match(n)}
        labels = [n for n in names if n not in ids]
        if labels:
            response = self.client.request("GET", f"{API}/metainfo/update/{UPDATE_CONNECTOR}")
            body = response.body
            fields = body.get("fields") if isinstance(body, dict) else body
            known = [f for f in fields if isinstance(f, dict)] if isinstance(fields, list) else []
            for label in labels:
                found = [
                    str(f["fieldId"])
                    for f in known
                    if str(f.get("label", "")).casefold() == label.casefold() or f.get("fieldId") == label
                ]
                if len(found) != 1:
                    problem = "no" if not found else "more than one"
                    raise ApiError(
                        self.name,
                        f"KnPerson has {problem} free field labelled {label!r}: create it in Profit, "
                        "or set the field's id (U + 32 hex digits) in the config",
                    )
                ids[label] = found[0]
        self._field_ids = ids
        return ids


class Scan:
    """Where one pass over a GetConnector stands: its fixed lower bound on the modified date, the
    last key read, when the pass started, and the newest modification seen so far."""

    def __init__(self, since: datetime | None, after: Any, started: datetime, newest: datetime | None) -> None:
        self.since, self.after, self.started, self.newest = since, after, started, newest

    @classmethod
    def start(cls, since: datetime | None) -> Scan:
        return cls(since, None, datetime.now(UTC), None)

    @classmethod
    def resume(cls, checkpoint: Mapping[str, Any] | None) -> Scan | None:
        state = checkpoint.get("scan") if checkpoint else None
        if not isinstance(state, dict):
            return None
        return cls(
            _moment(state.get("since")),
            state.get("after"),
            _moment(state.get("started")) or datetime.now(UTC),
            _moment(state.get("newest")),
        )

    def filters(self, modified_field: str, key: str) -> list[tuple[str, int, str]]:
        filters = []
        if self.since is not None:
            filters.append((modified_field, 2, filter_value(self.since)))  # 2: >=
        if self.after is not None:
            filters.append((key, 4, str(self.after)))  # 4: >
        return filters

    def saw(self, records: Sequence[SourceRecord], last_key: Any) -> None:
        for record in records:
            if record.updated_at is not None and (self.newest is None or record.updated_at > self.newest):
                self.newest = record.updated_at
        if last_key is not None:
            self.after = last_key

    def finish(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        """The cursor after a complete pass: the newest change seen, but never later than the start
        of the pass (a record changed mid-pass behind the keyset position is read next time)."""
        if self.newest is None:
            return dict(previous)
        cursor = min(self.newest, self.started)
        before = _moment(previous.get("cursor"))
        if before is not None and before > cursor:
            cursor = before
        return {"cursor": cursor.isoformat()}

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "after": self.after,
            "started": self.started.isoformat(),
            "newest": self.newest.isoformat() if self.newest else None,
        }


def _moment(value: Any) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) and value else None


def filter_params(filters: Sequence[tuple[str, int, str]]) -> dict[str, str]:
    """AND-ed conditions as the three parallel lists; as `filterjson` when a value holds one of the
    list separators (`,` AND, `;` OR), which the plain form cannot carry."""
    if not filters:
        return {}
    if any("," in value or ";" in value for _, _, value in filters):
        fields = [{"@FieldId": f, "@OperatorType": str(op), "#text": v} for f, op, v in filters]
        return {"filterjson": json.dumps({"Filters": {"Filter": [{"@FilterId": "Filter 1", "Field": fields}]}})}
    return {
        "filterfieldids": ",".join(f for f, _, _ in filters),
        "filtervalues": ",".join(v for _, _, v in filters),
        "operatortypes": ",".join(str(op) for _, op, _ in filters),
    }


CONNECTOR = AfasConnector
