"""SuperOffice CRM Online connector: WebAPI REST v1 (`https://<env>.superoffice.com/<tenant>/api/v1`).

Reads persons from the Person archive (`GET /api/v1/Person` with `$select`, `$filter`,
`$orderBy`, `$top`) and sales from the Sale archive, following `odata.nextLink` to the end. Rows
are ordered by their id, not by their update time: an edit during the read then leaves every row
where it was, where ordering by `personUpdatedDate` would move the edited row to the end and shift
the page boundaries past a row nobody read. The update-time filter still makes each cycle
incremental (`personUpdatedDate after '<cursor - lookback>'`); the checkpoint mid-read remembers
the last id, so a resumed read continues with `personId gt <id>` under the same filter.

Write-back goes into the custom fields named by `segments_field` / `tier_field` (a UDF by ProgId
or `SuperOffice:<n>`, or an extra field `x_...`) with a JSON Merge Patch that names only those
keys, so every other UDF stays as it is; or, with `segments_as = "interests"`, into Interests
named `<prefix><segment>`: the person's current interests are read, crmsync's are switched on or
off, the rest are sent back as they were, guarded by `If-Unmodified-Since` so an edit made in
between is never overwritten (412: read again, try again).
"""

from __future__ import annotations

import email.utils
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from connectors.base import Capabilities, Connector, Page, read_since
from connectors.errors import ApiError, RejectedRecord, TransientError
from connectors.http import ApiClient, ApiResponse, Verdict, default_classify
from connectors.settings import SystemSettings
from mapping.model import FieldSpec, Kind, SourceRecord, WriteBack, WriteResult, parse_timestamp

MAX_TOP = 5000  # (assumed) no documented maximum; the sandbox refuses more
DEFAULT_PAGE = 200
PERSON_COLUMNS = (
    "personId",
    "firstName",
    "middleName",
    "lastName",
    "email/emailAddress",
    "personMobilePhone/formattedNumber",
    "personUpdatedDate",
)
SALE_COLUMNS = (
    "saleId",
    "heading",
    "amount",
    "currency",
    "date",
    "saleStatus",
    "person/personId",
    "person/email/emailAddress",
    "updatedDate",
)
INTERESTS_COLUMN = "personInterestIds"
COUNTED_SALE_STATUSES = frozenset({"Sold"})
ATTEMPTS_ON_CONFLICT = 3
# A UDF key (ProgId, or "SuperOffice:<n>" when the ProgId is empty) or an extra field (x_...).
FIELD_NAME = r"^(SuperOffice:\d+|[A-Za-z_][\w.-]*)$"
_ENTITY_PATH = re.compile(r"/Person/\d+$")


class SuperOfficeSettings(SystemSettings):
    type: Literal["superoffice"]
    tenant: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="context identifier, e.g. Cust12345")
    access_token: SecretStr
    app_token: SecretStr = Field(description="the application secret, sent as SO-AppToken")
    auth_scheme: Literal["Bearer", "SOTicket"] = "Bearer"
    segments_field: str | None = Field(default=None, pattern=FIELD_NAME)
    tier_field: str | None = Field(default=None, pattern=FIELD_NAME)
    segments_as: Literal["field", "interests"] = "field"
    orders_archive: str = Field(default="Sale", pattern=r"^[A-Za-z][A-Za-z0-9]*$")
    orders_filter: str | None = Field(default=None, description="extra $filter for the orders archive, and-ed")
    page_size: int | None = Field(default=None, ge=1, le=MAX_TOP)

    @model_validator(mode="after")
    def _somewhere_to_write(self) -> Self:
        if self.segments_as == "interests" and self.segments_field:
            raise ValueError("segments_field and segments_as = 'interests' exclude each other: choose one")
        if self.segments_field and self.segments_field == self.tier_field:
            raise ValueError("segments_field and tier_field must be different fields")
        if self.writeback and not (self.segments_field or self.tier_field or self.segments_as == "interests"):
            raise ValueError(
                "nothing to write to: set segments_field and/or tier_field (UDF ProgId, 'SuperOffice:<n>' "
                "or extra field 'x_...'), or segments_as = 'interests', or writeback = false"
            )
        return self


def field_column(name: str) -> str:
    """The Person archive column of a custom field: extra fields are `personExtra/x_...`."""
    return f"personExtra/{name}" if name.startswith("x_") else f"personUdef/{name}"


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


class SuperOfficeConnector(Connector):
    type = "superoffice"
    settings_class = SuperOfficeSettings
    # Tags are Interests and fields are UDFs / extra fields; which of them a tenant uses is a setting.
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=True, write_fields=True
    )
    contact_fields = {
        "email": FieldSpec("email/emailAddress", "email"),
        "phone": FieldSpec("personMobilePhone/formattedNumber", "phone"),
        "first_name": FieldSpec("firstName"),
        "last_name": FieldSpec("lastName"),
    }
    order_fields = {
        "customer_id": FieldSpec("person/personId", "id"),
        "email": FieldSpec("person/email/emailAddress", "email"),
        "amount": FieldSpec("amount", "money"),
        "currency": FieldSpec("currency", "currency"),
        "created_at": FieldSpec("date", "datetime"),
    }
    # One person per PATCH: the REST API has no batch update for entities.
    max_write_batch = 1
    # A UDF cannot be deleted, only emptied.
    empty_field_value = ""

    settings: SuperOfficeSettings

    def make_client(self) -> ApiClient:
        self._interest_ids: dict[str, int] = {}  # casefolded name -> list item id
        self._interest_names: dict[int, str] = {}
        self._lost_creates: set[str] = set()  # names whose POST lost its reply in this cycle
        self._uncertain = False  # the current write left out an interest whose creation is in doubt
        settings = self.settings
        return self.api_client(
            headers={
                "Authorization": f"{settings.auth_scheme} {settings.access_token.get_secret_value()}",
                "SO-AppToken": settings.app_token.get_secret_value(),
            }
        )

    @property
    def api(self) -> str:
        return f"/{self.settings.tenant}/api/v1"

    @property
    def page_size(self) -> int:
        return self.settings.page_size or DEFAULT_PAGE

    @property
    def writes_tags(self) -> bool:
        return self.settings.segments_as == "interests"

    # ----- what replies mean ---------------------------------------------------------------------
    def classify(self, response: ApiResponse) -> Verdict:
        if response.status == 412:
            return Verdict.ok()  # If-Unmodified-Since lost a race: the writer reads again
        verdict = default_classify(response)
        if verdict.kind == "ok":
            return verdict
        body = response.body
        if isinstance(body, dict) and body.get("ErrorMessage"):
            verdict = Verdict(verdict.kind, f"{body.get('ErrorType')}: {body['ErrorMessage']}", verdict.retry_after)
        if response.status == 404 and _ENTITY_PATH.search(response.path):
            # A person deleted in SuperOffice since it was read: that record fails, not the system.
            return Verdict("rejected", verdict.message)
        return verdict

    def check(self) -> None:
        response = self.client.request("GET", f"{self.api}/Person/CustomField")
        if not isinstance(response.body, list):
            raise ApiError(self.name, "unexpected reply to GET Person/CustomField")
        published = {item.get("FieldName"): item for item in response.body if isinstance(item, dict)}
        if not self.settings.writeback:
            return
        for name in (self.segments_field, self.tier_field):
            if name is None:
                continue
            if name not in published:
                raise ApiError(self.name, f"custom field {name!r} is not published on the person card")
            if published[name].get("IsReadOnly"):
                raise ApiError(self.name, f"custom field {name!r} is read-only")

    # ----- reads --------------------------------------------------------------------------------
    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        columns = list(PERSON_COLUMNS)
        columns += [field_column(n) for n in (self.segments_field, self.tier_field) if n]
        columns += [path for path in self.settings.links.values() if path not in columns]
        if self.writes_tags:
            self._load_interests()
            columns.append(INTERESTS_COLUMN)
        return self._read(Kind.CONTACT, f"{self.api}/Person", columns, "personUpdatedDate", "personId", checkpoint)

    def read_orders(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        archive = self.settings.orders_archive
        path = f"{self.api}/Sale" if archive.lower() == "sale" else f"{self.api}/Archive/{archive}"
        extra = self.settings.orders_filter
        return self._read(Kind.ORDER, path, list(SALE_COLUMNS), "updatedDate", "saleId", checkpoint, extra)

    def _read(
        self,
        kind: Kind,
        path: str,
        columns: Sequence[str],
        stamp: str,
        key: str,
        checkpoint: Mapping[str, Any] | None,
        extra_filter: str | None = None,
    ) -> Iterator[Page]:
        state = dict(checkpoint or {})
        since = read_since(state, self.settings.lookback)
        conditions = []
        if since is not None:
            # `after` is exclusive and the column has whole seconds: start one second earlier.
            conditions.append(f"{stamp} after '{(since - timedelta(seconds=1)):%Y-%m-%dT%H:%M:%S}'")
        if state.get("after_id"):
            conditions.append(f"{key} gt {int(state['after_id'])}")
        if extra_filter:
            conditions.append(extra_filter)
        params = {"$select": ",".join(columns), "$orderBy": f"{key} asc", "$top": str(self.page_size)}
        if conditions:
            params["$filter"] = " and ".join(conditions)
        high = str(state["high"]) if state.get("high") else None
        response = self._page(path, params)
        number = 0
        while True:
            rows = _rows(self.name, response)
            records = list({r.id: r for r in (self._record(kind, row, stamp, key) for row in rows)}.values())
            high = _latest(high, records)
            number += 1
            next_link = response.body.get("odata.nextLink") if rows else None
            if not next_link:
                yield Page(records, _finished(state.get("cursor"), high), number)
                return
            last_id = rows[-1].get(key)
            yield Page(records, {**_window(state), "after_id": last_id, "high": high}, number)
            response = self._page(self._relative(str(next_link)))

    def _page(self, path: str, params: Mapping[str, str] | None = None) -> ApiResponse:
        """One archive page. A page shorter than `$top` that still links to a next one lost a row
        on the way: it is asked for again (up to twice) rather than skipping a person for good. A
        short last page is asked for once more too; the longest answer wins."""
        best: ApiResponse | None = None
        for attempt in range(3):
            response = self.client.request("GET", path, params=params)
            body = response.body
            rows = len(body.get("value") or []) if isinstance(body, dict) else 0
            if best is None or rows > len(best.body.get("value") or []):
                best = response
            if rows >= self.page_size:
                break
            if attempt >= 1 and not (isinstance(body, dict) and body.get("odata.nextLink")):
                break
        assert best is not None
        return best

    def _record(self, kind: Kind, row: Mapping[str, Any], stamp: str, key: str) -> SourceRecord:
        raw_id = row.get(key, row.get("PrimaryKey"))
        value = row.get(stamp)
        try:
            updated_at = parse_timestamp(value) if isinstance(value, str) and value else None
        except ValueError:
            updated_at = None
        return SourceRecord(self.name, kind, str(raw_id) if raw_id is not None else "", updated_at, dict(row))

    def _relative(self, link: str) -> str:
        """odata.nextLink is absolute; it must point back at the configured host, or the token
        would go with it to wherever it points."""
        parts, base = urlsplit(link), urlsplit(self.settings.base_url)
        if parts.scheme and (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise ApiError(self.name, f"odata.nextLink points to another host ({parts.netloc}); not following it")
        path = parts.path[len(base.path) :] if base.path and parts.path.startswith(base.path) else parts.path
        return path + (f"?{parts.query}" if parts.query else "")

    # ----- interests (the persint list) -----------------------------------------------------------
    def _load_interests(self) -> None:
        response = self.client.request("GET", f"{self.api}/List/PersonInterest/Items")
        items = response.body if isinstance(response.body, list) else []
        valid = [i for i in items if isinstance(i, dict) and isinstance(i.get("Id"), int)]
        self._interest_names = {int(i["Id"]): str(i.get("Name") or "") for i in valid}
        self._interest_ids = {}
        for item_id, name in sorted(self._interest_names.items()):
            self._interest_ids.setdefault(name.casefold(), item_id)

    def _interest_name(self, item_id: int) -> str | None:
        if item_id not in self._interest_names:
            self._load_interests()  # created by someone since the list was read
        return self._interest_names.get(item_id)

    def _ensure_interests(self, names: Sequence[str]) -> dict[str, int]:
        """The list item of every name, looked up first and created only when missing (a POST
        always adds an item, even one with a name that exists). A POST whose reply was lost is
        never sent again in the same cycle: the server may still carry it out, and a second POST
        would leave two items of one name. The name is left out of this write (reported
        unconfirmed), and the next cycle finds the item or creates it then."""
        if any(n.casefold() not in self._interest_ids for n in names):
            self._load_interests()
        for name in names:
            if name.casefold() not in self._interest_ids and name.casefold() not in self._lost_creates:
                self._create_interest(name)
        if any(n.casefold() not in self._interest_ids for n in names):
            self._uncertain = True
        return {name: self._interest_ids[name.casefold()] for name in names if name.casefold() in self._interest_ids}

    def _create_interest(self, name: str) -> None:
        body = {"Name": name, "Tooltip": "crmsync segment: set and cleared by crmsync"}
        try:
            created = self.client.request(
                "POST", f"{self.api}/List/PersonInterest/Items", json_body=body, idempotent=False
            ).body
        except TransientError:
            self._load_interests()  # the reply was lost, not necessarily the item
            if name.casefold() not in self._interest_ids:
                self._lost_creates.add(name.casefold())
            return
        if not isinstance(created, dict) or not isinstance(created.get("Id"), int):
            raise ApiError(self.name, "creating an interest answered without an Id")
        self._interest_ids[name.casefold()] = created["Id"]
        self._interest_names[created["Id"]] = name

    # ----- mapping hooks ------------------------------------------------------------------------
    def canonical_id(self, raw: str) -> str | None:
        text = raw.strip()
        return str(int(text)) if text.isdigit() and int(text) > 0 else None

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        if field_column(name) in payload:  # an archive row
            value = payload[field_column(name)]
        else:  # a PersonEntity
            buckets = [payload.get(b) for b in ("CustomFields", "UserDefinedFields", "ExtraFields")]
            value = next((b[name] for b in buckets if isinstance(b, dict) and name in b), None)
        return value if isinstance(value, str) or value is None else str(value)

    def payload_tags(self, payload: Mapping[str, Any]) -> list[str]:
        interests = payload.get("Interests")
        if isinstance(interests, list):  # a PersonEntity: the whole list, with Selected flags
            return [str(i.get("Name")) for i in interests if isinstance(i, dict) and i.get("Selected")]
        raw = payload.get(INTERESTS_COLUMN)
        if not isinstance(raw, str) or not raw.strip():
            return []
        ids = [int(part) for part in raw.split(",") if part.strip().isdigit()]
        return [name for name in (self._interest_name(i) for i in ids) if name]

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        """Only sold sales are revenue; open, lost and stalled ones are not."""
        return payload.get("saleStatus", payload.get("Status")) in COUNTED_SALE_STATUSES

    # ----- writes -------------------------------------------------------------------------------
    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        results = []
        for change in changes:
            self._uncertain = False
            try:
                self._write_one(change)
                results.append(WriteResult(change.record_id, True, confirmed=not self._uncertain))
            except RejectedRecord as exc:
                results.append(WriteResult(change.record_id, False, exc.message))
        return results

    def _write_one(self, change: WriteBack) -> None:
        person_id = self.canonical_id(change.record_id)
        if person_id is None:
            raise RejectedRecord(self.name, f"{change.record_id!r} is not a person id", change.record_id)
        body: dict[str, Any] = {}
        if change.set_fields:
            # Merge patch semantics: only the keys named here change; every other UDF stays.
            body["CustomFields"] = {name: value or "" for name, value in sorted(change.set_fields.items())}
        if change.add_tags or change.remove_tags:
            self._write_interests(person_id, change, body)
        elif body:
            self._patch(person_id, body)

    def _write_interests(self, person_id: str, change: WriteBack, body: dict[str, Any]) -> None:
        adding = self._ensure_interests(change.add_tags)
        removing = {tag.casefold() for tag in change.remove_tags}
        for _ in range(ATTEMPTS_ON_CONFLICT):
            entity = self.client.request(
                "GET", f"{self.api}/Person/{person_id}", params={"$select": "Interests,UpdatedDate"}
            ).body
            current = entity.get("Interests") if isinstance(entity, dict) else None
            if not isinstance(current, list) or not isinstance(entity.get("UpdatedDate"), str):
                raise ApiError(self.name, f"GET Person/{person_id} answered without Interests")
            body["Interests"] = _switch_interests(current, set(adding.values()), removing)
            unmodified = http_date(parse_timestamp(entity["UpdatedDate"]))
            if self._patch(person_id, body, unmodified).status != 412:
                return
        raise RejectedRecord(self.name, f"person {person_id} kept changing while crmsync wrote its interests")

    def _patch(self, person_id: str, body: Mapping[str, Any], unmodified_since: str | None = None) -> ApiResponse:
        headers = {"Content-Type": "application/merge-patch+json"}
        if unmodified_since:
            headers["If-Unmodified-Since"] = unmodified_since
        return self.client.request(
            "PATCH",
            f"{self.api}/Person/{person_id}",
            params={"$select": "PersonId,UpdatedDate"},
            data=json.dumps(body).encode(),
            headers=headers,
        )


def _switch_interests(current: Sequence[Any], add_ids: set[int], remove_names: set[str]) -> list[dict[str, Any]]:
    """The whole interest list back, with only crmsync's items switched: on for `add_ids`, off for
    the names in `remove_names`; every other item keeps its `Selected` exactly as read."""
    items = []
    seen = set()
    for item in current:
        if not isinstance(item, dict):
            continue
        seen.add(item.get("Id"))
        selected = bool(item.get("Selected"))
        if item.get("Id") in add_ids:
            selected = True
        elif str(item.get("Name", "")).casefold() in remove_names:
            selected = False
        items.append({**item, "Selected": selected})
    items += [{"Id": item_id, "Selected": True} for item_id in sorted(add_ids - seen)]
    return items


def _rows(system: str, response: ApiResponse) -> list[dict[str, Any]]:
    body = response.body
    rows = body.get("value") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise ApiError(system, f"GET {response.path}: expected an OData reply with 'value'")
    return [row for row in rows if isinstance(row, dict)]


def _latest(high: str | None, records: Sequence[SourceRecord]) -> str | None:
    stamps = [r.updated_at for r in records if r.updated_at is not None]
    if high:
        stamps.append(parse_timestamp(high))
    return max(stamps).isoformat() if stamps else None


def _window(state: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a checkpoint that fixes the filter window, so a resumed read uses the same one."""
    return {"cursor": state["cursor"]} if state.get("cursor") else {}


def _finished(cursor: Any, high: str | None) -> dict[str, Any]:
    """After the last page: the newest update time seen, never earlier than where we started."""
    stamps = [parse_timestamp(str(c)) for c in (cursor, high) if c]
    return {"cursor": max(stamps).isoformat()} if stamps else {}


CONNECTOR = SuperOfficeConnector
