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
in `GET /metainfo/update/KnPerson`.

`check` proves, reading only metainfo: the token (`GET /metainfo`; a 401 there is a wrong or
expired token), which connectors the app connector holds (the same reply lists only those), the
columns crmsync pages, filters and reads back on (`GET /metainfo/get/<id>`), and, with write-back
on, that KnPerson's free fields named by the settings exist as text long enough
(`GET /metainfo/update/KnPerson`). A connector the app connector lacks answers 401 with an empty
body, like a wrong token, so only the first call can tell the two apart.

A 500 carrying a Profit message is a refused record, except the messages that mean "try again"
(unexpected error, timeout, a record locked by a user); a 503 is AFAS's "come back later", with a
`retry_after` hint in the body.
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
from connectors.auth import HeaderAuth
from connectors.base import Capabilities, CheckReport, Connector, Page, Permission, confirm_short, read_since
from connectors.errors import ApiError, AuthError, RejectedRecord
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
APP_CONNECTORS = "Profit: Algemeen > Beheer > App connectoren"
# (assumed) The shortest free fields that hold what crmsync writes: the built-in segment names
# alone ("acquaintances,lifecycle-at-risk,tier-...") take about 50 characters, rule segments more;
# a tier name is a short word. A length of 0 in the metainfo is taken as "no fixed maximum" (memo).
MIN_LENGTH = {"segments": 100, "tier": 20}

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
    api_name = "AFAS Profit REST API"
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
        token = SecretStr(token_header(self.settings.token.get_secret_value()))
        return self.api_client(
            auth=HeaderAuth({"Authorization": token}), headers={"Accept-Language": self.settings.language}
        )

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
    def check(self) -> CheckReport:
        """What the token and its app connector let crmsync do, proven from Profit's metainfo (no
        data call, nothing written). A wrong or expired token raises AuthError."""
        listing = self.client.request("GET", f"{API}/metainfo").body
        gets, updates = _listed(listing, "getConnectors"), _listed(listing, "updateConnectors")
        if gets is None or updates is None:
            raise ApiError(self.name, f"GET {API}/metainfo: expected {{updateConnectors, getConnectors, info}}")
        settings = self.settings
        writes = settings.writeback
        permissions: list[Permission] = []
        warnings: list[str] = []
        # The persons columns showing crmsync's free fields, and the setting naming each.
        owned = {self._column(n) or n: f"{kind}_column" for kind, n in self._owned_settings()} if writes else {}
        readable: dict[str, bool] = {}
        incremental: dict[str, bool] = {}
        for role, connector, key, extra in (
            ("persons", settings.contacts_connector, PERSON_KEY, owned),
            ("sales invoices", settings.orders_connector, INVOICE_KEY, {}),
        ):
            columns = self._get_connector_columns(connector) if connector in gets else None
            permissions.append(
                Permission(
                    f"getconnector {connector}",
                    columns is not None,
                    f"add GetConnector {connector} (the {role}) to the app connector in {APP_CONNECTORS}",
                )
            )
            if columns is None:
                readable[connector] = incremental[connector] = False
                continue
            missing = [c for c in (key, settings.modified_field, *extra) if c not in columns]
            for column in missing:
                fix = f"add the column {column} to GetConnector {connector} in Profit"
                if column in extra:
                    fix += f" (crmsync reads back what it wrote there), or set {extra[column]} to the column showing it"
                else:
                    fix += " (crmsync pages and filters on it)"
                permissions.append(Permission(f"column {connector}.{column}", False, fix))
            readable[connector] = key in columns
            incremental[connector] = settings.modified_field in columns
        written = False
        if writes:
            fields = self._knperson_metainfo() if UPDATE_CONNECTOR in updates else None
            fix = f"add UpdateConnector {UPDATE_CONNECTOR} to the app connector in {APP_CONNECTORS}"
            permissions.append(Permission(f"updateconnector {UPDATE_CONNECTOR}", fields is not None, fix))
            if fields is None:
                warnings.append(f"the free fields were not checked: UpdateConnector {UPDATE_CONNECTOR} is not usable")
            else:
                proven = [self._field_permission(fields, kind, n) for kind, n in self._owned_settings()]
                permissions += proven
                written = all(p.ok for p in proven)
        reads_contacts = readable[settings.contacts_connector]
        reads_orders = readable[settings.orders_connector]
        capabilities = Capabilities(
            read_contacts=reads_contacts,
            read_orders=reads_orders,
            incremental=reads_contacts
            and incremental[settings.contacts_connector]
            and (not reads_orders or incremental[settings.orders_connector]),
            write_tags=False,
            write_fields=written,
        )
        return CheckReport(capabilities, permissions, warnings)

    def _owned_settings(self) -> list[tuple[str, str]]:
        return [(kind, name) for kind, name in (("segments", self.segments_field), ("tier", self.tier_field)) if name]

    def _get_connector_columns(self, connector: str) -> set[str] | None:
        """The column ids of a GetConnector (`GET /metainfo/get/<id>`); None when Profit refuses it."""
        try:
            body = self.client.request("GET", f"{API}/metainfo/get/{connector}").body
        except AuthError:
            return None  # 401 after /metainfo proved the token: the connector is not usable
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, list):
            raise ApiError(self.name, f"GET {API}/metainfo/get/{connector}: expected {{name, description, fields}}")
        return {str(f["id"]) for f in fields if isinstance(f, dict) and f.get("id") is not None}

    def _knperson_metainfo(self) -> list[dict[str, Any]] | None:
        """KnPerson's fields, free fields included; None when Profit refuses the UpdateConnector:
        401 as documented, or (seen by a third party) a 500 with a Profit message."""
        try:
            response = self.client.request("GET", f"{API}/metainfo/update/{UPDATE_CONNECTOR}")
        except AuthError:
            return None
        except ApiError as exc:
            if exc.status == 500:
                return None
            raise
        return _update_fields(response.body)

    def _field_permission(self, fields: Sequence[Mapping[str, Any]], kind: str, name: str) -> Permission:
        """One configured free field: there once, as text, long enough for what crmsync writes."""
        setting = f"{kind}_field"
        least = MIN_LENGTH[kind]
        create = (
            f"create it as a free field on Persoon in Profit (type text, at least {least} characters) and set "
            f"{setting} to its label or id"
        )
        found = free_field_matches(fields, name)
        if not found:
            return Permission(f"field {name}", False, f"KnPerson has no field {name!r}: {create}")
        if len(found) > 1:
            return Permission(
                f"field {name}",
                False,
                f"more than one KnPerson field is labelled {name!r}: set {setting} to the free field's id "
                "(U + 32 hex digits, shown in Profit's metainfo)",
            )
        field = found[0]
        data_type = str(field.get("dataType", ""))
        length = field.get("length")
        if data_type.casefold() != "string":
            return Permission(f"field {name}", False, f"KnPerson field {name!r} is of type {data_type!r}: {create}")
        if isinstance(length, int) and not isinstance(length, bool) and 0 < length < least:
            return Permission(
                f"field {name}", False, f"KnPerson field {name!r} holds {length} characters, too few: {create}"
            )
        return Permission(f"field {name}", True)

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
            known = _update_fields(response.body)
            for label in labels:
                found = [str(f["fieldId"]) for f in free_field_matches(known, label)]
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


def free_field_matches(fields: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The KnPerson fields a setting names, found the way the writer finds them: a free-field id
    (U + 32 hex digits) by `fieldId`, anything else by `label` (any case) or by `fieldId`."""
    if FREE_FIELD_ID.match(name):
        return [f for f in fields if str(f.get("fieldId", "")).upper() == name.upper()]
    return [
        f
        for f in fields
        if f.get("fieldId") is not None
        and (str(f.get("label", "")).casefold() == name.casefold() or f.get("fieldId") == name)
    ]


def _update_fields(body: Any) -> list[dict[str, Any]]:
    """The top-level fields of an UpdateConnector's metainfo (`{name, description, fields,
    objects}`); KnPerson's own free fields are among them, sub-objects' fields are not."""
    fields = body.get("fields") if isinstance(body, dict) else body
    return [f for f in fields if isinstance(f, dict)] if isinstance(fields, list) else []


def _listed(listing: Any, key: str) -> set[str] | None:
    """The connector ids `GET /metainfo` lists under `key`; None when the reply has no such list."""
    items = listing.get(key) if isinstance(listing, dict) else None
    if not isinstance(items, list):
        return None
    return {str(item["id"]) for item in items if isinstance(item, dict) and item.get("id") is not None}


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
