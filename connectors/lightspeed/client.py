"""Lightspeed eCom (C-Series) connector: REST API `/{lang}/<resource>.json` with HTTP Basic auth.

Reads customers and orders with `page`/`limit` (at most 250) under a fixed `updated_at_min` filter.
The list order is not documented, so the cursor only moves when a read is complete: mid-read the
checkpoint names the next page and keeps the old cursor, and the new cursor is never later than the
moment the read began (a record changed during the read may have slipped onto a page already read).
Filter times are sent in the shop's wall-clock time, taken from the offset of the cursor's own
timestamp (the API writes `+01:00`/`+02:00` and reads filters in the same zone).

Customers have no tags, so crmsync's verdict lives in two customer metafields, `crmsync_segments`
and `crmsync_loyalty_tier`, one row per key. The customer list does not carry metafields, and asking
for them customer by customer would cost one request per customer of a budget of 12,000 a day (a
first read of 20,000 customers: 20,082 requests, over a day, instead of 82). So a read does not ask:
its records' owned state is unknown (`reads_owned_state = False`), the pushed-state ledger says what
crmsync wrote, and each cycle `verify_owned` looks at the metafields of a budgeted share of the
customers (`verify_per_day`), so a hand edit of crmsync's rows is seen and repaired in turn. The
write-back looks at a customer's rows before it writes (or uses the rows the verification of this
cycle just saw) and sends only what differs. A POST always adds a row, so a value is created only
after a look-up found no row of that key, and a POST whose reply was lost is followed by a look-up,
not a blind retry. Other metafields and the merchant's `memo` note are never written.

Every reply reports three fixed windows (5 minutes, hour, day) in `X-RateLimit-*` headers; besides
the configured sliding-window pacing, crmsync holds back when a window is used up (by an earlier
cycle, another process or another app on the key) and waits for the window the headers name; an
hour or day used up for longer than `retry.max_retry_after` ends the cycle with an error instead.
Lightspeed also allows at most 20 requests a second per key (announced by Lightspeed staff, Nov
2021); that window is in the default pacing, and the headers do not report it.

`check` proves the credentials and the read rights (Customers and Orders are separate areas of an
API key) with the two count requests. The right to write customer metafields cannot be proven
without writing, so `check` says so in a warning and does not claim `write_fields`.
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Literal

import structlog
from pydantic import Field, SecretStr

from connectors.auth import BasicAuth
from connectors.base import Capabilities, CheckReport, Connector, Page, Permission, confirm_short, id_text
from connectors.errors import ApiError, AuthError, PermissionDenied, RejectedRecord, RetriesExhausted, TransientError
from connectors.http import ApiClient, ApiResponse, Verdict, parse_retry_after, vendor_message
from connectors.lightspeed.budget import Exhausted, HeaderBudget, exhausted_in
from connectors.settings import RateWindow, SystemSettings
from mapping.model import FieldSpec, Kind, RemoteState, SourceRecord, WriteBack, WriteResult, parse_timestamp

MAX_PAGE = 250
SEGMENTS_KEY = "crmsync_segments"
TIER_KEY = "crmsync_loyalty_tier"
# The metafields list's envelope key; a payload holding rows under it (a fixture's, a test's) shows
# crmsync's owned state, one without (the customer list's) does not.
METAFIELDS = "customerMetafields"
# Customers whose metafields the rolling verification looks at per day, by default: 2,400 requests,
# a fifth of the 12,000 a day an API key gets. A day of 15-minute cycles reads ~500 (two list
# requests per stream and the shop), a daily full read of 20,000 customers and 100,000 orders
# ~500, and a busy day's write-back of ~1,000 changed customers (a look-up, which the verification
# of the same cycle saves, and one or two writes each) ~3,000: all together under half the budget,
# leaving the rest to a first write-back and to other apps on the same key. At 100 an hour a shop of
# 20,000 customers is looked at in full every 8 to 9 days.
VERIFY_PER_DAY = 2400
FILTER_FORMAT = "%Y-%m-%d %H:%M:%S"
NOT_FOUND = "not found"
NOT_COUNTED = frozenset({"cancelled"})  # as order status and as payment status
DUPLICATES = " | "  # joins the values of a key that has more than one row
CACHED_CUSTOMERS = 10_000
_PER_CUSTOMER = re.compile(r"^/[^/]+/customers/\d+[/.]")
KEY_RIGHTS = "the shop's back office: Settings > Developers > API keys > this key > Permissions"

log = structlog.get_logger("crmsync.lightspeed")


def published_limits() -> list[RateWindow]:
    """Per API key: 300 requests per 5 minutes, 3000 per hour, 12000 per day (the windows the
    `X-RateLimit-*` headers report, in that order), and 20 per second (Lightspeed staff on the
    community forum, "Changes to eCom API rate Limits", effective 22 Nov 2021)."""
    return [
        RateWindow(requests=300, per_seconds=300),
        RateWindow(requests=3000, per_seconds=3600),
        RateWindow(requests=12000, per_seconds=86400),
        RateWindow(requests=20, per_seconds=1),
    ]


class LightspeedSettings(SystemSettings):
    type: Literal["lightspeed"]
    api_key: SecretStr
    api_secret: SecretStr
    language: str = Field(
        default="nl", pattern=r"^[a-z]{2}$", description="one of the shop's languages; every path starts with it"
    )
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE)
    rate_limit: list[RateWindow] = Field(default_factory=published_limits)
    verify_per_day: int = Field(
        default=VERIFY_PER_DAY,
        ge=0,
        description=(
            "customers a day whose metafields are looked at (one request each) to see hand edits of "
            "crmsync's; the list carries none. 2400 is a fifth of the 12000 requests a day: with reads and a "
            "busy day's write-back under half of it. 0: never"
        ),
    )


@dataclass
class _ReadState:
    """Where an incremental read stands; see the module docstring for why the cursor waits."""

    cursor: datetime | None  # aware, in the offset the shop wrote it with
    page: int = 1
    seen: datetime | None = None
    started: datetime | None = None

    @classmethod
    def resume(cls, checkpoint: Mapping[str, Any] | None) -> _ReadState:
        data = checkpoint or {}
        return cls(
            _stamp(data.get("cursor")), int(data.get("page", 1)), _stamp(data.get("seen")), _stamp(data.get("started"))
        )

    def filter(self, lookback: float) -> dict[str, str]:
        if self.cursor is None:
            return {}
        return {"updated_at_min": (self.cursor - timedelta(seconds=lookback)).strftime(FILTER_FORMAT)}

    def note_start(self, date_header: str | None) -> None:
        if self.started is None and date_header:
            with contextlib.suppress(TypeError, ValueError):
                self.started = parsedate_to_datetime(date_header).astimezone(UTC)

    def see(self, items: Sequence[Mapping[str, Any]]) -> None:
        for item in items:
            stamp = _stamp(item.get("updatedAt"))
            if stamp is not None and (self.seen is None or stamp > self.seen):
                self.seen = stamp

    def mid(self, next_page: int) -> dict[str, Any]:
        state: dict[str, Any] = {"page": next_page}
        for name in ("cursor", "seen", "started"):
            value = getattr(self, name)
            if value is not None:
                state[name] = value.isoformat()
        return state

    def final(self) -> dict[str, Any]:
        reached = self.seen
        if reached is not None and self.started is not None and self.started < reached:
            reached = self.started.astimezone(reached.tzinfo)
        if self.cursor is not None and (reached is None or reached < self.cursor):
            reached = self.cursor
        return {"cursor": reached.isoformat()} if reached is not None else {}


def _stamp(value: Any) -> datetime | None:
    """An ISO-8601 timestamp, keeping its offset (a naive one is UTC); None when unusable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class LightspeedConnector(Connector):
    type = "lightspeed"
    settings_class = LightspeedSettings
    api_name = "Lightspeed eCom REST API"
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=False, write_fields=True
    )
    contact_fields = {
        "email": FieldSpec("email", "email"),
        "phone": FieldSpec("phone", "phone"),
        "first_name": FieldSpec("firstname"),
        "last_name": FieldSpec("lastname"),
    }
    order_fields = {
        "customer_id": FieldSpec("customer.resource.id", "id"),
        "email": FieldSpec("email", "email"),
        "amount": FieldSpec("priceIncl", "money"),
        "currency": FieldSpec("currency", "currency"),
        "created_at": FieldSpec("createdAt", "datetime"),
    }
    # No batch endpoint: every metafield is its own request, so one customer per write call keeps
    # the ledger as close to the shop as it can be and a stop request is honoured at once.
    max_write_batch = 1
    default_segments_field = SEGMENTS_KEY
    default_tier_field = TIER_KEY
    # "Nothing of ours" is no row at all: an empty value is written by deleting our row.
    empty_field_value = ""
    # The customer list carries no metafields (see the module docstring): `verify_owned` looks.
    reads_owned_state = False

    settings: LightspeedSettings

    def make_client(self) -> ApiClient:
        self.budget = HeaderBudget(margin=self.settings.pace_margin)
        # Our own rows per customer as the last verification saw them (bounded; a miss means a look-up).
        self._rows: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._currency: str | None = None
        self._shop_read = False
        self._uncertain = False  # the current write lost a reply that may still be carried out
        return self.api_client(auth=BasicAuth(self.settings.api_key, self.settings.api_secret))

    @property
    def page_size(self) -> int:
        return self.settings.page_size or MAX_PAGE

    def used_up(self, exhausted: Exhausted) -> bool:
        """Waiting for the 5-minute window is pacing. When the hour or the day is used up and
        resets later than `retry.max_retry_after`, the cycle ends with a clear error instead of
        hanging; the next cycle resumes from the checkpoint."""
        return exhausted.index > 0 and exhausted.seconds > self.settings.retry.max_retry_after

    # ----- what replies mean ---------------------------------------------------------------------
    def classify(self, response: ApiResponse) -> Verdict:
        self.budget.observe(response.headers)
        error = response.body.get("error") if isinstance(response.body, dict) else None
        status = response.status
        if 200 <= status < 300:
            if error is None:
                return Verdict.ok()
            # The vendor's own client treats an `error` member in any reply as a failure.
            code = error.get("code") if isinstance(error, dict) else None
            status = code if isinstance(code, int) and code >= 400 else 400
        message = vendor_message(response.body, response.text) or f"HTTP {status}"
        if status == 429:
            return self._throttled(response, message)
        if status == 404 and _PER_CUSTOMER.match(response.path):
            return Verdict("rejected", f"{NOT_FOUND}: {message}")
        if status == 401:
            return Verdict("auth", message)
        if status == 403:
            # Right key and secret; the key lacks the permission for this area (customers,
            # orders, settings, ...): a missing right, not wrong credentials.
            return Verdict("denied", message)
        if status == 408 or status >= 500:
            return Verdict("retry", message, parse_retry_after(response.header("Retry-After")))
        if status in (400, 409, 413, 422):
            return Verdict("rejected", message)
        return Verdict("fatal", message)

    def _throttled(self, response: ApiResponse, message: str) -> Verdict:
        empty = exhausted_in(response.headers)
        if empty is None:
            return Verdict("throttled", message, parse_retry_after(response.header("Retry-After")))
        if self.used_up(empty):
            return Verdict("fatal", f"the {empty.window} request budget is used up; it resets in {empty.seconds:.0f} s")
        return Verdict("throttled", message, empty.seconds + self.settings.pace_margin)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool = True,
    ) -> ApiResponse:
        held = self.budget.wait()
        if held is not None and held.seconds > 0:
            if self.used_up(held):
                raise ApiError(
                    self.name, f"the {held.window} request budget is used up; it resets in {held.seconds:.0f} s"
                )
            self.client.sleep(held.seconds)
        self.budget.spend()
        return self.client.request(
            method, f"/{self.settings.language}{path}", params=params, json_body=body, idempotent=idempotent
        )

    def check(self) -> CheckReport:
        """Proves the credentials and the read rights of the key, one count per area (an API key
        has rights per area). Nothing proves the write right without writing a metafield."""
        customers = self._read_right("customers")
        orders = self._read_right("orders")
        permissions = [
            Permission("read_customers", customers is None, customers),
            Permission("read_orders", orders is None, orders),
        ]
        warnings = []
        if self.settings.writeback and (self.segments_field or self.tier_field):
            fields = " and ".join(f for f in (self.segments_field, self.tier_field) if f)
            warnings.append(
                f"write rights not proven: crmsync writes the customer metafields {fields}, and Lightspeed "
                "offers no way to prove the right to write them without writing one; make sure the API key "
                f"has Customers: Read/Write ({KEY_RIGHTS}), or the first write-back fails with HTTP 403"
            )
        capabilities = Capabilities(
            read_contacts=customers is None,
            read_orders=orders is None,
            incremental=customers is None or orders is None,  # both lists filter on updated_at_min
            write_tags=False,
            write_fields=False,  # not proven (see the warning)
        )
        return CheckReport(capabilities, permissions, warnings)

    def _read_right(self, area: str) -> str | None:
        """None when the key may read `area` (its count answers), else what to fix. Wrong
        credentials raise AuthError (401)."""
        path = f"/{area}/count.json"
        try:
            count = self._call("GET", path).body
        except PermissionDenied:
            return f"the API key may not read {area}: give it {area.capitalize()}: Read in {KEY_RIGHTS}"
        if not isinstance(count, dict) or not isinstance(count.get("count"), int):
            raise ApiError(self.name, f"unexpected reply to GET {area}/count.json")
        return None

    def _shop_currency(self) -> str | None:
        """The shop's currency (orders carry none); None when the key may not read the shop's
        settings, and then the orders count in the base currency."""
        try:
            shop = self._call("GET", "/shop.json").body
        except AuthError as exc:
            log.warning("shop currency unknown; orders taken to be in the base currency", error=exc.message)
            return None
        shop = shop.get("shop") if isinstance(shop, dict) else None
        currency = shop.get("currency") if isinstance(shop, dict) else None
        code = currency.get("shortcode") if isinstance(currency, dict) else None
        return code if isinstance(code, str) and code else None

    # ----- reads --------------------------------------------------------------------------------
    def _pages(
        self, path: str, key: str, checkpoint: Mapping[str, Any] | None
    ) -> Iterator[tuple[int, list[dict[str, Any]], dict[str, Any]]]:
        """(page number, raw items, the checkpoint that resumes after them); the last page is the
        first one shorter than the limit, asked for twice (an exact multiple costs one empty page)."""
        state = _ReadState.resume(checkpoint)
        page = state.page
        while True:
            params = {"page": page, "limit": self.page_size, **state.filter(self.settings.lookback)}
            response = confirm_short(
                partial(self._call, "GET", path, params=params),
                lambda reply: len(_items(reply, key, self.name)),
                self.page_size,
            )
            state.note_start(response.header("Date"))
            items = _items(response, key, self.name)
            state.see(items)
            done = len(items) < self.page_size
            yield page, _unique(items), state.final() if done else state.mid(page + 1)
            if done:
                return
            page += 1

    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        # The list pages only: no customer's metafields are asked for (see `verify_owned`).
        for number, customers, state in self._pages("/customers.json", "customers", checkpoint):
            yield Page([self._record(Kind.CONTACT, c) for c in customers], state, number)

    def read_orders(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        if not self._shop_read:
            self._currency, self._shop_read = self._shop_currency(), True
        for number, orders, state in self._pages("/orders.json", "orders", checkpoint):
            yield Page([self._record(Kind.ORDER, self._with_currency(o)) for o in orders], state, number)

    def _with_currency(self, order: dict[str, Any]) -> dict[str, Any]:
        # Orders carry no currency: their amounts are in the shop's (GET shop.json).
        if "currency" in order or self._currency is None:
            return order
        return {**order, "currency": self._currency}

    def _metafield_rows(self, customer_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self._call(
                "GET", f"/customers/{customer_id}/metafields.json", params={"page": page, "limit": MAX_PAGE}
            )
            items = _items(response, METAFIELDS, self.name)
            rows.extend(items)
            if len(items) < MAX_PAGE:
                return rows
            page += 1

    def _record(self, kind: Kind, item: Mapping[str, Any]) -> SourceRecord:
        stamp = item.get("updatedAt") or item.get("createdAt")
        try:
            updated_at = parse_timestamp(stamp) if isinstance(stamp, str) and stamp else None
        except ValueError:
            updated_at = None
        return SourceRecord(self.name, kind, id_text(item.get("id")), updated_at, item)

    # ----- what crmsync's metafields hold ---------------------------------------------------------
    def verify_owned(self, record_ids: Sequence[str]) -> dict[str, RemoteState]:
        """crmsync's metafields on these customers, one request each; a customer deleted since (or
        an id that can be no customer's) is left out. The rows are remembered, so a write in the
        same cycle needs no second look-up."""
        states: dict[str, RemoteState] = {}
        for customer_id in record_ids:
            if self.canonical_id(customer_id) != customer_id:
                continue
            try:
                rows = self._metafield_rows(customer_id)
            except RejectedRecord as exc:
                if not exc.message.startswith(NOT_FOUND):
                    log.warning("metafields not verified", customer=customer_id, error=exc.message)
                continue
            self._remember(customer_id, rows)
            states[customer_id] = self.owned_state({METAFIELDS: rows})
        return states

    def verify_budget(self) -> float:
        return float(self.settings.verify_per_day)

    # ----- mapping hooks ------------------------------------------------------------------------
    def canonical_id(self, raw: str) -> str | None:
        text = raw.strip()
        return str(int(text)) if text.isdigit() and int(text) > 0 else None

    def owned_state(self, payload: Mapping[str, Any]) -> RemoteState:
        """Unknown for a customer as the list gives it (no metafield rows in it); from the rows
        where a payload holds them (`verify_owned`'s, a fixture's)."""
        if not isinstance(payload.get(METAFIELDS), list):
            return RemoteState.unknown()
        return super().owned_state(payload)

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        mine = _rows_of(payload.get(METAFIELDS), name)
        values = [row.get("value") for row in mine]
        if len(values) > 1:
            # Two rows of one key (a create whose reply was lost and that the shop carried out
            # late, another tool): the values joined can never equal a verdict, so the planner
            # writes this field and `_set` removes the extra rows.
            return DUPLICATES.join(v if isinstance(v, str) else "" for v in values)
        return values[0] if values and isinstance(values[0], str) else None

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("status") not in NOT_COUNTED and payload.get("paymentStatus") not in NOT_COUNTED

    # ----- writes -------------------------------------------------------------------------------
    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        results = []
        for change in changes:
            self._uncertain = False
            try:
                self._write_one(change)
            except RejectedRecord as exc:
                results.append(WriteResult(change.record_id, False, exc.message))
            else:
                results.append(WriteResult(change.record_id, True, confirmed=not self._uncertain))
        return results

    def _write_one(self, change: WriteBack) -> None:
        """Looks at the customer's rows (or takes those this cycle's verification just saw) and
        writes only what differs: nothing for a value already there, no POST where a row of that
        key exists."""
        customer_id = change.record_id
        seen = self._rows.pop(customer_id, None)
        try:
            self._apply(customer_id, change.set_fields, seen if seen is not None else self._own_rows(customer_id))
        except RejectedRecord as exc:
            if seen is None or not exc.message.startswith(NOT_FOUND):
                raise
            # A row the verification saw has gone since: look again, once.
            self._apply(customer_id, change.set_fields, self._own_rows(customer_id))

    def _own_rows(self, customer_id: str) -> list[dict[str, Any]]:
        owned = (self.segments_field, self.tier_field)
        return [row for row in self._metafield_rows(customer_id) if row.get("key") in owned]

    def _remember(self, customer_id: str, rows: list[dict[str, Any]]) -> None:
        owned = (self.segments_field, self.tier_field)
        self._rows[customer_id] = [row for row in rows if row.get("key") in owned]
        self._rows.move_to_end(customer_id)
        while len(self._rows) > CACHED_CUSTOMERS:
            self._rows.popitem(last=False)

    def _apply(self, customer_id: str, fields: Mapping[str, str | None], rows: list[dict[str, Any]]) -> None:
        for key, value in sorted(fields.items()):
            self._set(customer_id, key, value or "", _rows_of(rows, key))

    def _set(self, customer_id: str, key: str, value: str, mine: list[dict[str, Any]]) -> None:
        """One row of `key` holding `value` (none when `value` is empty). Rows of our key beyond the
        first (however they came about) are ours to remove: one row per key."""
        keep, extra = (mine[0], mine[1:]) if mine else (None, [])
        for row in extra:
            self._delete(customer_id, row)
        if not value:
            if keep is not None:
                self._delete(customer_id, keep)
        elif keep is None:
            self._create(customer_id, key, value)
        elif keep.get("value") != value:
            self._call(
                "PUT",
                f"/customers/{customer_id}/metafields/{keep['id']}.json",
                body={"customerMetafield": {"value": value}},
            )

    def _delete(self, customer_id: str, row: Mapping[str, Any]) -> None:
        try:
            self._call("DELETE", f"/customers/{customer_id}/metafields/{row['id']}.json")
        except RejectedRecord as exc:
            if not exc.message.startswith(NOT_FOUND):
                raise  # a row already gone is what we wanted

    def _create(self, customer_id: str, key: str, value: str) -> None:
        body = {"customerMetafield": {"key": key, "value": value}}
        failure = ""
        for _ in range(self.settings.retry.attempts):
            try:
                self._call("POST", f"/customers/{customer_id}/metafields.json", body=body, idempotent=False)
                return
            except TransientError as exc:
                failure = exc.message
            # The reply was lost, not necessarily the row: a blind second POST would add a second one.
            found = _rows_of(self._own_rows(customer_id), key)
            if found:
                self._set(customer_id, key, value, found)
                return
            # Not there (yet): the lost POST may still be carried out after the one we send now.
            # The write is then reported unconfirmed, and the next cycle looks at the rows again.
            self._uncertain = True
        raise RetriesExhausted(self.name, f"gave up creating metafield {key} of customer {customer_id}: {failure}")


def _items(response: ApiResponse, key: str, system: str) -> list[dict[str, Any]]:
    """The list a reply wraps in `key` (`{"customers": [...]}`)."""
    items = response.body.get(key) if isinstance(response.body, dict) else None
    if not isinstance(items, list):
        raise ApiError(system, f"{response.method} {response.path}: expected a {key!r} list")
    return [item for item in items if isinstance(item, dict)]


def _unique(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page without repeats of the same id."""
    return list({str(item.get("id")): item for item in items}.values())


def _rows_of(rows: Any, key: str) -> list[dict[str, Any]]:
    """The rows of one metafield key, oldest first."""
    if not isinstance(rows, list):
        return []
    mine = [row for row in rows if isinstance(row, dict) and row.get("key") == key]
    return sorted(mine, key=_row_id)


def _row_id(row: Mapping[str, Any]) -> int:
    value = row.get("id")
    return value if isinstance(value, int) else 0


CONNECTOR = LightspeedConnector
