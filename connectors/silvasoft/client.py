"""Silvasoft connector: REST API (`https://rest-api.silvasoft.nl/rest/<endpoint>/`), read-only.

Relations (`listrelations`) have no modified-since filter, so every cycle scans the customers in
creation order with `Limit`/`Offset` (at most 200 per call); the API gives no totals, so a page
shorter than asked for (asked for a second time, in case a reply lost an item on the way) is the
last one, and an exactly full page costs one more request. The scan is cheap downstream:
unchanged relations hash the same and are skipped. Customer value comes from
sales invoices (`listsalesinvoices`, newest number first, at most 100 per call), read from the
last invoice date seen minus the look-back with the documented `DateFrom` filter.

A relation's record id is its customer number: that is what invoices name, what people see in
Silvasoft, and what web-shop plugins often fill with the shop's own customer number (configure
`links = { <shop> = "CustomerNumber" }` then).

Silvasoft documents no tag, category or custom field on a relation, so crmsync writes nothing
here: `capabilities` say so, the planner plans nothing, and `crmsync check` (which proves the two
reads, relations and sales invoices, with one item each) says it in a warning.

The vendor signals its rate limit (2/s and 50/min advised, plus an hourly plan quota) with
**HTTP 401** "Ratelimit exceeded" and no Retry-After; `classify` tells that apart from a 401 for
wrong credentials and waits `ratelimit_wait` before trying again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from pydantic import Field, SecretStr

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
from connectors.errors import ApiError
from connectors.http import ApiClient, ApiResponse, Verdict, default_classify
from connectors.settings import Duration, RateWindow, SystemSettings
from mapping.model import FieldSpec, Kind, SourceRecord
from mapping.normalize.dates import normalise_date_dmy

API = "/rest"
MAX_RELATIONS = 200
MAX_INVOICES = 100
# Credited and cancelled invoices never count toward a customer's value; concepts were never sent.
NOT_COUNTED_STATUSES = frozenset({"credited", "cancelled", "concept"})
READ_ONLY = (
    "read-only: crmsync writes nothing to Silvasoft, because its API documents no tag, category or custom "
    "field on a relation that could hold segments or a loyalty tier; its customers and invoices still count "
    "toward profiles and segments"
)


def _documented_limits() -> list[RateWindow]:
    # developers.silvasoft.nl: "maximum 50 requests per minute, maximum 2 requests per second".
    return [RateWindow(requests=2, per_seconds=1), RateWindow(requests=50, per_seconds=60)]


class SilvasoftSettings(SystemSettings):
    type: Literal["silvasoft"]
    api_key: SecretStr
    # The Silvasoft user's e-mail address: it names the account, the API key is the secret.
    username: str = Field(min_length=3)
    rate_limit: list[RateWindow] = Field(default_factory=_documented_limits)
    ratelimit_wait: Duration = Field(
        default=60.0, gt=0, description="wait after a 401 'Ratelimit exceeded' (Silvasoft sends no Retry-After)"
    )
    page_size: int | None = Field(default=None, ge=1, le=MAX_RELATIONS)
    # Offset paging needs a stable order. Silvasoft advises creation date or GUID; the GUID is
    # unique, which matters when a bulk import gave many relations the same creation time.
    relation_sorting: Literal["createdDate", "RelationGUID"] = "createdDate"


class SilvasoftConnector(Connector):
    type = "silvasoft"
    settings_class = SilvasoftSettings
    api_name = "Silvasoft REST API"
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=False, write_fields=False
    )
    contact_fields = {
        "email": FieldSpec("Email", "email"),
        "phone": FieldSpec("Phone", "phone"),
        "first_name": FieldSpec("Relation_Contact.0.FirstName"),
        "last_name": FieldSpec("Relation_Contact.0.LastName"),
    }
    order_fields = {
        "customer_id": FieldSpec("CustomerNumber", "id"),
        "email": FieldSpec("CustomerEmail", "email"),
        "amount": FieldSpec("TotalAmountInclTax", "money"),
        "currency": FieldSpec("Currency", "currency"),
        "created_at": FieldSpec("InvoiceDate", "date_dmy"),
    }

    settings: SilvasoftSettings

    def make_client(self) -> ApiClient:
        return self.api_client(auth=HeaderAuth({"ApiKey": self.settings.api_key, "Username": self.settings.username}))

    # ----- what replies mean ---------------------------------------------------------------------
    def classify(self, response: ApiResponse) -> Verdict:
        if 200 <= response.status < 300:
            return Verdict.ok()
        message = _error_text(response)
        if response.status == 401:
            if _is_rate_limit(message):
                return Verdict("throttled", message, self.settings.ratelimit_wait)
            return Verdict("auth", message)
        if response.status == 400:
            # crmsync only reads here: a refused request is our mistake, and retrying repeats it.
            return Verdict("fatal", message)
        if response.status == 404:
            return Verdict("fatal", f"{message} (is base_url https://rest-api.silvasoft.nl ?)")
        verdict = default_classify(response)
        return Verdict(verdict.kind, message, verdict.retry_after)

    def get(self, endpoint: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One list call; Silvasoft answers "nothing found" with 200 and an empty body, `{}` or `[]`."""
        body = self.client.request("GET", f"{API}/{endpoint}/", params=dict(params)).body
        if body is None or body == {} or body == []:
            return []
        if not isinstance(body, list):
            raise ApiError(self.name, f"GET {API}/{endpoint}/: expected a JSON list, got {type(body).__name__}")
        return [item for item in body if isinstance(item, dict)]

    def check(self) -> CheckReport:
        """Proves the credentials and both reads, one item each; a 401 for wrong credentials
        raises AuthError. Nothing is written, and nothing can be: the warning says so."""
        self.get("listrelations", {"RelationType": "Customer", "Limit": 1})
        self.get("listsalesinvoices", {"Limit": 1})
        capabilities = Capabilities(
            read_contacts=True,
            read_orders=True,
            incremental=True,  # invoices are read from a date on (DateFrom)
            write_tags=False,
            write_fields=False,
        )
        permissions = [Permission("read_relations", True), Permission("read_sales_invoices", True)]
        return CheckReport(capabilities, permissions, [READ_ONLY])

    # ----- reads --------------------------------------------------------------------------------
    @property
    def relations_page(self) -> int:
        return min(self.settings.page_size or MAX_RELATIONS, MAX_RELATIONS)

    @property
    def invoices_page(self) -> int:
        return min(self.settings.page_size or MAX_INVOICES, MAX_INVOICES)

    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        """A full scan, oldest first: relations added meanwhile come at the end, so the offsets
        of the pages already read stay valid. Checkpoint `{"offset": n}` mid-scan, `{}`
        when done (the next cycle scans from the start)."""
        size = self.relations_page
        offset = int((checkpoint or {}).get("offset", 0))
        number = offset // size
        while True:
            params = {"RelationType": "Customer", "Sorting": self.settings.relation_sorting, "SortDir": "ASC"}
            page = {**params, "Limit": size, "Offset": offset}
            items = confirm_short(partial(self.get, "listrelations", page), len, size)
            offset += size
            number += 1
            done = len(items) < size
            yield Page([self._relation(item) for item in items], {} if done else {"offset": offset}, number)
            if done:
                return

    def read_orders(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        """Sales invoices dated from the cursor on (newest number first). `DateFrom` has day
        resolution and Silvasoft does not say whether it is inclusive: start a day earlier.
        Mid-read the checkpoint keeps the window and the offset, so a resumed read pages the
        same list; at the end it is `{"cursor": <latest invoice date>}`."""
        state = dict(checkpoint or {})
        cursor: dict[str, Any] = {"cursor": state["cursor"]} if state.get("cursor") else {}
        if "offset" in state:
            date_from, offset = state.get("from"), int(state["offset"])
        else:
            since = read_since(checkpoint, self.settings.lookback)
            date_from, offset = (since - timedelta(days=1)).strftime("%d-%m-%Y") if since else None, 0
        size = self.invoices_page
        number = offset // size
        while True:
            params: dict[str, Any] = {"Limit": size, "Offset": offset}
            if date_from:
                params["DateFrom"] = date_from
            items = confirm_short(partial(self.get, "listsalesinvoices", params), len, size)
            records = [self._invoice(item) for item in items]
            cursor = advance_cursor(cursor, records)
            offset += size
            number += 1
            done = len(items) < size
            yield Page(records, cursor if done else {**cursor, "offset": offset, "from": date_from}, number)
            if done:
                return

    def _relation(self, item: dict[str, Any]) -> SourceRecord:
        # A customer always has a number; one without gets no id and is quarantined as such.
        number = item.get("CustomerNumber")
        record_id = str(number) if isinstance(number, int) and not isinstance(number, bool) and number > 0 else ""
        # Relations carry no modification time: the content hash tells what changed.
        return SourceRecord(self.name, Kind.CONTACT, record_id, None, item)

    def _invoice(self, item: dict[str, Any]) -> SourceRecord:
        number = item.get("InvoiceNumber")
        dated = normalise_date_dmy(item.get("InvoiceDate"))
        updated_at = dated if isinstance(dated, datetime) else None
        return SourceRecord(self.name, Kind.ORDER, "" if number is None else str(number), updated_at, item)

    # ----- mapping hooks ------------------------------------------------------------------------
    def canonical_id(self, raw: str) -> str | None:
        text = raw.strip()
        return str(int(text)) if text.isdigit() and int(text) > 0 else None

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        return str(payload.get("InvoiceStatus") or "").casefold() not in NOT_COUNTED_STATUSES


def _error_text(response: ApiResponse) -> str:
    """`errorCode: errorMessage`, the pair Silvasoft's own plugins show."""
    body = response.body
    if isinstance(body, dict) and (body.get("errorCode") or body.get("errorMessage")):
        return f"{body.get('errorCode') or 'ERROR'}: {body.get('errorMessage') or ''}".strip()
    return response.text.strip()[:300] or f"HTTP {response.status}"


def _is_rate_limit(message: str) -> bool:
    """ "Ratelimit exceeded", however it is spelt; anything else in a 401 is about credentials."""
    return "ratelimit" in message.casefold().replace(" ", "").replace("-", "")


CONNECTOR = SilvasoftConnector
