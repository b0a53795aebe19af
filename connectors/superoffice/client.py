"""SuperOffice CRM Online connector: WebAPI REST v1 (`https://<env>.superoffice.com/<tenant>/api/v1`).

Reads persons from the Person archive (`GET /api/v1/Person` with `$select`, `$filter`,
`$orderBy`, `$top`) and sales from the Sale archive, a page at a time by id: each next page asks
for `personId gt <last id>` until a page comes back shorter than `$top` (asked for twice, the
longer answer winning). `odata.nextLink` is not followed: the documentation does not say when it is
given, and replies without it are seen, so a read that stopped where the link stopped could move
the cursor after one page. Rows are ordered by their id, not by their update time: an edit during
the read then leaves every row where it was, where ordering by `personUpdatedDate` would move the
edited row to the end and shift the page boundaries past a row nobody read. The update-time
filter still makes each cycle incremental (`personUpdatedDate after '<cursor - lookback>'`); the
checkpoint mid-read remembers the last id, so a resumed read continues under the same filter.

A sale counts when its status is Sold. The archive shows list values as display text in the
request's language (else the tenant's: "Verkocht" in a Dutch tenant), so crmsync asks for English
(`SO-Language: en`) and quarantines a sale whose status it does not recognise rather than guess.

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
from functools import partial
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from connectors.auth import (
    Authenticator,
    ExpiringTokenAuth,
    HeaderAuth,
    RefreshTokenGrant,
    TokenSource,
    token_classify,
)
from connectors.base import Capabilities, CheckReport, Connector, Page, Permission, confirm_short, read_since
from connectors.errors import ApiError, RejectedRecord, TransientError
from connectors.http import ApiClient, ApiResponse, Verdict, check_base_url, default_classify
from connectors.settings import Duration, SystemSettings
from connectors.superoffice.auth import TICKET_LIFETIME, SystemUserTicket
from mapping.model import FieldSpec, Kind, RecordProblem, SourceRecord, WriteBack, WriteResult, parse_timestamp

OIDC_TOKEN_PATH = "/login/common/oauth/tokens"
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
# The salestatus list (docs: mdo-providers/reference/salestatus.md) by its English names.
SALE_STATUSES = frozenset({"Unknown", "Open", "Sold", "Lost", "Stalled"})
ATTEMPTS_ON_CONFLICT = 3
# A UDF key (ProgId, or "SuperOffice:<n>" when the ProgId is empty) or an extra field (x_...).
FIELD_NAME = r"^(SuperOffice:\d+|[A-Za-z_][\w.-]*)$"
_ENTITY_PATH = re.compile(r"/Person/\d+$")


class SuperOfficeSettings(SystemSettings):
    type: Literal["superoffice"]
    tenant: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="context identifier, e.g. Cust12345")
    # How crmsync signs in (docs/setup/superoffice.md): "system_user" (server to server: a ticket
    # from the system user token signed with the app's private key), "oidc" (an access token
    # renewed with a user's refresh token), or "ticket" (a fixed token or ticket, as before).
    auth: Literal["system_user", "oidc", "ticket"] = "ticket"
    login_url: str | None = Field(
        default=None, description="the environment's login host (https://sod.superoffice.com); default from base_url"
    )
    app_token: SecretStr | None = Field(default=None, description="the application's client secret (SO-AppToken)")
    access_token: SecretStr | None = None
    auth_scheme: Literal["Bearer", "SOTicket"] = "Bearer"
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    private_key: SecretStr | None = None
    system_user_token: SecretStr | None = None
    context_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]+$", description="default: tenant")
    token_renew_margin: Duration = Field(default=300.0, description="renew a token this long before it expires")
    segments_field: str | None = Field(default=None, pattern=FIELD_NAME)
    tier_field: str | None = Field(default=None, pattern=FIELD_NAME)
    segments_as: Literal["field", "interests"] = "field"
    orders_archive: str = Field(default="Sale", pattern=r"^[A-Za-z][A-Za-z0-9]*$")
    orders_filter: str | None = Field(default=None, description="extra $filter for the orders archive, and-ed")
    page_size: int | None = Field(default=None, ge=1, le=MAX_TOP)

    @model_validator(mode="after")
    def _credentials_of_the_flow(self) -> Self:
        needed = {
            "system_user": ("app_token", "private_key", "system_user_token"),
            "oidc": ("client_id", "client_secret", "refresh_token"),
            "ticket": ("access_token", "app_token"),
        }[self.auth]
        for key in needed:
            if getattr(self, key) is None:
                raise ValueError(f"{key}: field required (auth = {self.auth!r})")
        if self.login_url is not None:
            check_base_url(self.login_url)
        return self

    @property
    def login_origin(self) -> str:
        """Where tokens and tickets come from: SuperOffice signs in on the environment's root host
        (sod, online, qaonline) while the API answers on the tenant's numbered one (sod2, online3)."""
        if self.login_url:
            return self.login_url.rstrip("/")
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        match = re.match(r"^(sod|online|qaonline|stage)\d*\.superoffice\.com$", host)
        return f"{parts.scheme}://{match.group(1)}.superoffice.com" if match else self.base_url

    @property
    def application_secret(self) -> SecretStr:
        """SO-AppToken: the client secret, whichever key holds it."""
        secret = self.app_token or self.client_secret
        assert secret is not None
        return secret

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


def _sign(request: Any, authorization: str, app_token: SecretStr) -> None:
    request.headers["Authorization"] = authorization
    request.headers["SO-AppToken"] = app_token.get_secret_value()


def field_column(name: str) -> str:
    """The Person archive column of a custom field: extra fields are `personExtra/x_...`."""
    return f"personExtra/{name}" if name.startswith("x_") else f"personUdef/{name}"


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


class SuperOfficeConnector(Connector):
    type = "superoffice"
    settings_class = SuperOfficeSettings
    api_name = "SuperOffice WebAPI REST"
    api_version = "v1"
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
        # Display values (a sale's status above all) come in the language asked for, else in the
        # tenant's: crmsync always asks for English, so "Sold" means sold in every tenant.
        return self.api_client(auth=self.authenticator(), headers={"SO-Language": "en", "Accept-Language": "en"})

    def authenticator(self) -> Authenticator:
        settings = self.settings
        app_token = {"SO-AppToken": settings.application_secret}
        if settings.auth == "ticket":
            assert settings.access_token is not None
            fixed = SecretStr(f"{settings.auth_scheme} {settings.access_token.get_secret_value()}")
            return HeaderAuth({"Authorization": fixed, **app_token})
        self.token_client = self.api_client(base_url=settings.login_origin, classify=token_classify, paced=False)
        if settings.auth == "oidc":
            assert settings.client_id and settings.client_secret and settings.refresh_token
            source: TokenSource = RefreshTokenGrant(
                self.name,
                self.token_client,
                OIDC_TOKEN_PATH,
                {"client_id": settings.client_id, "client_secret": settings.client_secret},
                settings.refresh_token,
                fix="the refresh token was refused (consent revoked, or the application's lifetime ended): "
                "sign in again to get a new refresh token (docs/setup/superoffice.md)",
                what="token refresh",
            )
            return ExpiringTokenAuth(
                self.name,
                source,
                lambda request, token: _sign(request, f"Bearer {token.value}", settings.application_secret),
                margin=settings.token_renew_margin,
            )
        assert settings.private_key and settings.system_user_token
        source = SystemUserTicket(
            self.name,
            self.token_client,
            application_token=settings.application_secret,
            private_key=settings.private_key,
            system_user_token=settings.system_user_token,
            context_id=settings.context_id or settings.tenant,
        )
        return ExpiringTokenAuth(
            self.name,
            source,
            lambda request, token: _sign(request, f"SOTicket {token.value}", settings.application_secret),
            margin=settings.token_renew_margin,
            sliding=TICKET_LIFETIME,
        )

    def close(self) -> None:
        super().close()
        if getattr(self, "token_client", None) is not None:
            self.token_client.close()

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
        if response.status == 403:
            # Sentry: the signed-in user's role lacks the right; a new ticket would not change that.
            return Verdict("denied", verdict.message)
        if response.status == 404 and _ENTITY_PATH.search(response.path):
            # A person deleted in SuperOffice since it was read: that record fails, not the system.
            return Verdict("rejected", verdict.message)
        return verdict

    def check(self) -> CheckReport:
        """Proves the credentials and read rights (one person and one sale), and for write-back the
        role's right to update persons (`TableRight` of a person as the API shows it to this user),
        each configured field (published on the person card and not read-only) or the Interests
        list."""
        persons = _rows(self.name, self.client.request("GET", f"{self.api}/Person", params=_first("personId")))
        _rows(self.name, self.client.request("GET", f"{self.api}/Sale", params=_first("saleId")))
        permissions: list[Permission] = []
        warnings: list[str] = []
        writes = self.settings.writeback
        if writes and persons:
            person_id = persons[0].get("personId")
            entity = self.client.request("GET", f"{self.api}/Person/{person_id}", params={"$select": "TableRight"})
            right = entity.body.get("TableRight") if isinstance(entity.body, dict) else None
            mask = str(right.get("Mask") or "") if isinstance(right, dict) else ""
            permissions.append(
                Permission(
                    "update persons",
                    "Update" in mask.replace(" ", "").split(","),
                    "give the user crmsync signs in as a role with the right to update persons (SuperOffice "
                    f"Settings and maintenance > Roles); it has {mask or 'no rights'} on person {person_id}",
                )
            )
        elif writes:
            warnings.append("no person to read the update rights from: the first sync's writes will show them")
        if writes and self.writes_tags:
            interests = self.client.request("GET", f"{self.api}/List/PersonInterest/Items").body
            permissions.append(
                Permission(
                    "interests list",
                    isinstance(interests, list),
                    "the PersonInterest list (persint) must be readable to the user crmsync signs in as",
                )
            )
        if writes and (self.segments_field or self.tier_field):
            response = self.client.request("GET", f"{self.api}/Person/CustomField")
            if not isinstance(response.body, list):
                raise ApiError(self.name, "unexpected reply to GET Person/CustomField")
            published = {item.get("FieldName"): item for item in response.body if isinstance(item, dict)}
            for name in (self.segments_field, self.tier_field):
                if name is None:
                    continue
                found = published.get(name)
                fix = (
                    f"create {name!r} on the person card (Settings and maintenance > Preferences > User-defined "
                    "fields > Person: a text field, published; or an extra field x_...)"
                    if found is None
                    else f"{name!r} ({found.get('DisplayName')}) is read-only: crmsync needs a writable text field"
                )
                permissions.append(Permission(f"field {name}", found is not None and not found.get("IsReadOnly"), fix))
        granted = {p.name for p in permissions if p.ok}
        caps = self.current_capabilities()
        writable = writes and ("update persons" in granted or not persons)
        return CheckReport(
            Capabilities(
                read_contacts=True,
                read_orders=True,
                incremental=True,
                write_tags=writable and caps.write_tags and "interests list" in granted,
                write_fields=writable
                and caps.write_fields
                and all(f"field {n}" in granted for n in (self.segments_field, self.tier_field) if n),
            ),
            permissions,
            warnings,
        )

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
        window = []
        if since is not None:
            # `after` is exclusive and the column has whole seconds: start one second earlier.
            window.append(f"{stamp} after '{(since - timedelta(seconds=1)):%Y-%m-%dT%H:%M:%S}'")
        if extra_filter:
            window.append(extra_filter)
        after_id = int(state["after_id"]) if state.get("after_id") else None
        high = str(state["high"]) if state.get("high") else None
        number = 0
        while True:
            conditions = [*window, *([f"{key} gt {after_id}"] if after_id is not None else [])]
            params = {"$select": ",".join(columns), "$orderBy": f"{key} asc", "$top": str(self.page_size)}
            if conditions:
                params["$filter"] = " and ".join(conditions)
            rows = confirm_short(partial(self._rows_of, path, params), len, self.page_size)
            records = list({r.id: r for r in (self._record(kind, row, stamp, key) for row in rows)}.values())
            high = _latest(high, records)
            number += 1
            if len(rows) < self.page_size:
                yield Page(records, _finished(state.get("cursor"), high), number)
                return
            last = rows[-1].get(key)
            if not isinstance(last, int) or (after_id is not None and last <= after_id):
                # The filter on the key was ignored, or rows are not in key order: paging would loop.
                raise ApiError(self.name, f"GET {path}: cannot page on {key!r} (rows not after {after_id})")
            after_id = last
            yield Page(records, {**_window(state), "after_id": after_id, "high": high}, number)

    def _rows_of(self, path: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        return _rows(self.name, self.client.request("GET", path, params=params))

    def _record(self, kind: Kind, row: Mapping[str, Any], stamp: str, key: str) -> SourceRecord:
        raw_id = row.get(key, row.get("PrimaryKey"))
        value = row.get(stamp)
        try:
            updated_at = parse_timestamp(value) if isinstance(value, str) and value else None
        except ValueError:
            updated_at = None
        return SourceRecord(self.name, kind, str(raw_id) if raw_id is not None else "", updated_at, dict(row))

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
        """Only sold sales are revenue; open, lost and stalled ones are not. A status that is none
        of the English names crmsync asked for cannot be read safely: the sale is quarantined."""
        status = payload.get("saleStatus", payload.get("Status"))
        if status not in SALE_STATUSES:
            raise RecordProblem(
                "unknown_sale_status",
                f"saleStatus {status!r} is none of {', '.join(sorted(SALE_STATUSES))} (crmsync asks for "
                "English display values with SO-Language: en)",
            )
        return status in COUNTED_SALE_STATUSES

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


def _first(key: str) -> dict[str, str]:
    return {"$select": key, "$orderBy": f"{key} asc", "$top": "1"}


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
