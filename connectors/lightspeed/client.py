"""Lightspeed eCom (C-Series) connector: REST API `/{lang}/<resource>.json` with HTTP Basic auth.

Reads customers and orders page by page under a fixed `updated_at_min` filter, in the shop's own
time (reads.py). Customers have no tags: crmsync's verdict lives in two customer metafields, which
the customer list does not carry, so reads do not show crmsync's owned state and `verify_owned`
looks at a budgeted share of the customers each cycle (writes.py). Every reply reports three fixed
request windows in `X-RateLimit-*` headers, which a pacer of the client follows (budget.py); what
the replies mean is rules.py, what `check` proves check.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import structlog

from connectors.auth import BasicAuth
from connectors.base import Capabilities, CheckReport, Connector
from connectors.errors import AuthError
from connectors.http import ApiClient, ApiResponse, Verdict
from connectors.lightspeed.budget import HeaderBudget
from connectors.lightspeed.check import check as check_key
from connectors.lightspeed.reads import RECORDS, updated_at_min
from connectors.lightspeed.rules import RULES, items_of, read_reply
from connectors.lightspeed.settings import CANCELLED, PAYMENT_STATUSES, SEGMENTS_KEY, TIER_KEY
from connectors.lightspeed.settings import MAX_PAGE as MAX_PAGE
from connectors.lightspeed.settings import METAFIELDS as METAFIELDS
from connectors.lightspeed.settings import VERIFY_PER_DAY as VERIFY_PER_DAY
from connectors.lightspeed.settings import LightspeedSettings as LightspeedSettings
from connectors.lightspeed.settings import published_limits as published_limits
from connectors.lightspeed.writes import Metafields, field_value
from connectors.paging import PageNumberPaginator, Paginator, Reply
from connectors.streams import Stream, last_per_id
from connectors.window import Window
from mapping.model import FieldSpec, Kind, RemoteState, WriteBack

log = structlog.get_logger("crmsync.lightspeed")


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
        # The billing address's country (lower-case ISO, `false` when unset): a phone number is
        # read in that country's format, not as a Dutch one.
        "country": FieldSpec("addressBillingCountry.code", "country"),
        "birth_date": FieldSpec("birthDate", "birth_date"),
        "business": FieldSpec("isCompany", "flag"),
        "kvk": FieldSpec("companyCoCNumber"),
        "vat": FieldSpec("companyVatNumber"),
    }
    order_fields = {
        "customer_id": FieldSpec("customer.resource.id", "id"),
        "email": FieldSpec("email", "email"),
        "amount": FieldSpec("priceIncl", "money"),
        "currency": FieldSpec("currency", "currency"),
        "created_at": FieldSpec("createdAt", "datetime"),
        "discount": FieldSpec("discountCouponCode", "flag"),
    }
    # No batch endpoint: every metafield is its own request, so one customer per write call keeps
    # the ledger as close to the shop as it can be and a stop request is honoured at once.
    max_write_batch = 1
    default_segments_field = SEGMENTS_KEY
    default_tier_field = TIER_KEY
    # "Nothing of ours" is no row at all: an empty value is written by deleting our row.
    empty_field_value = ""
    # The customer list carries no metafields (see writes.py): `verify_owned` looks.
    reads_owned_state = False
    numeric_ids = True
    rules = RULES

    settings: LightspeedSettings

    def make_client(self) -> ApiClient:
        settings = self.settings
        self.budget = HeaderBudget(self.name, margin=settings.pace_margin, patience=settings.retry.max_retry_after)
        self.metafields = Metafields(
            self.name, self.call, (self.segments_field, self.tier_field), settings.retry.attempts
        )
        self._currency: str | None = None
        self._shop_read = False
        return self.api_client(auth=BasicAuth(settings.api_key, settings.api_secret), pacers=[self.budget])

    @property
    def page_size(self) -> int:
        return self.settings.page_size or MAX_PAGE

    def classify(self, response: ApiResponse) -> Verdict:
        """The rules, read after an error inside a 2xx reply and a 429's rate-limit headers (rules.py)."""
        settings = self.settings
        return read_reply(response, self.rules, margin=settings.pace_margin, patience=settings.retry.max_retry_after)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool = True,
    ) -> ApiResponse:
        """One request to `path` under the configured language (every path starts with it)."""
        return self.client.request(
            method, f"/{self.settings.language}{path}", params=params, json_body=body, idempotent=idempotent
        )

    def check(self) -> CheckReport:
        """The credentials and both read rights, proven; the write right cannot be (check.py)."""
        return check_key(self)

    # ----- reads --------------------------------------------------------------------------------
    def contacts_stream(self) -> Stream:
        # The list pages only: no customer's metafields are asked for (see `verify_owned`).
        fetch = partial(self._fetch, "/customers.json", "customers")
        return self.stream(Kind.CONTACT, fetch, self._paginator, RECORDS, refine=last_per_id)

    def orders_stream(self) -> Stream:
        return self.stream(Kind.ORDER, self._fetch_orders, self._paginator, RECORDS, refine=last_per_id)

    def _paginator(self, at: Any) -> Paginator:
        # No totals in the replies: the first page shorter than the limit is the last (an exact
        # multiple costs one empty page), asked for twice by the read loop.
        return PageNumberPaginator(self.name, self.page_size, at)

    def _fetch(self, path: str, key: str, page: int, window: Window) -> Reply:
        params: dict[str, Any] = {"page": page, "limit": self.page_size}
        if window.since is not None:
            params["updated_at_min"] = updated_at_min(window.since, window.cursor)
        return Reply(items_of(self.call("GET", path, params=params), key, self.name))

    def _fetch_orders(self, page: int, window: Window) -> Reply:
        if not self._shop_read:
            self._currency, self._shop_read = self._shop_currency(), True
        reply = self._fetch("/orders.json", "orders", page, window)
        return Reply([self._with_currency(order) for order in reply.items])

    def _with_currency(self, order: dict[str, Any]) -> dict[str, Any]:
        # Orders carry no currency: their amounts are in the shop's (GET shop.json). The order is
        # this reply's own dict (`items_of`), read for this page alone: the key is added to it, not
        # to a copy of every key (the same dict, and payload text, as a copy with the key last).
        if "currency" in order or self._currency is None:
            return order
        order["currency"] = self._currency
        return order

    def _shop_currency(self) -> str | None:
        """The shop's currency (orders carry none); None when the key may not read the shop's
        settings, and then the orders count in the base currency."""
        try:
            shop = self.call("GET", "/shop.json").body
        except AuthError as exc:
            log.warning("shop currency unknown; orders taken to be in the base currency", error=exc.message)
            return None
        shop = shop.get("shop") if isinstance(shop, dict) else None
        currency = shop.get("currency") if isinstance(shop, dict) else None
        code = currency.get("shortcode") if isinstance(currency, dict) else None
        return code if isinstance(code, str) and code else None

    # ----- what crmsync's metafields hold ---------------------------------------------------------
    def verify_owned(self, record_ids: Sequence[str]) -> dict[str, RemoteState]:
        """crmsync's metafields on these customers, one request each; a customer deleted since (or
        an id that can be no customer's) is left out. The rows are remembered, so a write in the
        same cycle needs no second look-up."""
        ids = [customer_id for customer_id in record_ids if self.canonical_id(customer_id) == customer_id]
        found = self.metafields.verify(ids)
        return {customer_id: self.owned_state({METAFIELDS: rows}) for customer_id, rows in found.items()}

    def verify_budget(self) -> float:
        return float(self.settings.verify_per_day)

    def gone_contacts(self, record_ids: Sequence[str]) -> set[str]:
        """Those of these customers the shop no longer has: a GET each, 404 for a customer deleted."""
        return self.gone_one_by_one(
            record_ids, lambda customer_id: f"/{self.settings.language}/customers/{customer_id}.json"
        )

    # ----- mapping hooks ------------------------------------------------------------------------
    def owned_state(self, payload: Mapping[str, Any]) -> RemoteState:
        """Unknown for a customer as the list gives it (no metafield rows in it); from the rows
        where a payload holds them (`verify_owned`'s, a fixture's)."""
        if not isinstance(payload.get(METAFIELDS), list):
            return RemoteState.unknown()
        return super().owned_state(payload)

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        return field_value(payload.get(METAFIELDS), name)

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        if payload.get("status") == CANCELLED:
            return False
        payment = payload.get("paymentStatus")
        # A payment status outside the documented set (or none) counts, as it did before the
        # setting: the set is assumed, not published where we could read it (docs/setup/lightspeed.md).
        return payment not in PAYMENT_STATUSES or payment in self.settings.counted_payment_statuses

    # ----- writes -------------------------------------------------------------------------------
    def write_one(self, change: WriteBack) -> bool:
        """One customer: its rows looked at (or this cycle's verification's used) and only what
        differs written; no POST where a row of that key exists (writes.py)."""
        return self.metafields.write(change.record_id, change.set_fields)


CONNECTOR = LightspeedConnector
