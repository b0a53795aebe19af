"""WooCommerce connector: REST API v3 (`/wp-json/wc/v3`).

Customers have no modified filter, so every cycle scans them by id (cheap: unchanged records hash
the same and cost nothing downstream). Orders are read incrementally with `modified_after`, sorted
by modification time; instead of walking `page=2, 3, ...` of one query (an order modified mid-read
would shift the pages and hide its neighbour), each next request moves `modified_after` up to the
last timestamp seen (keyset paging), re-reading the boundary second. More than a page of orders in
one second (a bulk status change) is read by page number inside that second alone, and read again
from its start when its count changes mid-read (`OrderPages`). Customers have no tags, so
crmsync's verdict goes into the meta keys `crmsync_segments` and `crmsync_loyalty_tier`, at most 100
customers per `customers/batch` call; other meta keys are never sent, so they are never touched.

`check` (check.py) proves the key's rights without changing anything; rules.py says why a 401
can be a missing right rather than wrong credentials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any

from connectors.auth import BasicAuth, QueryKeyAuth
from connectors.base import Capabilities, CheckReport, Connector
from connectors.errors import ApiError, RejectedRecord
from connectors.http import ApiClient, ApiResponse, Rule, Verdict, classify_by
from connectors.paging import KeysetPaginator, PageNumberPaginator, Reply
from connectors.streams import RecordSpec, Stream
from connectors.window import Window
from connectors.woocommerce.check import check_rights
from connectors.woocommerce.rules import RULES, no_key_rule
from connectors.woocommerce.settings import (
    API,
    BATCH_LIMIT,
    CHECKOUT_CHANNELS,
    MAX_PAGE,
    OFFLINE_PAYMENTS,
    UNFINISHED_STATUSES,
    WC_TIME,
)
from connectors.woocommerce.settings import WooCommerceSettings as WooCommerceSettings
from mapping.model import FieldSpec, Kind, WriteBack, WriteResult, parse_timestamp

RECORDS = RecordSpec("id", ("date_modified_gmt", "date_created_gmt"))
# An order's time is read twice per page: by the next-orders bound (`next_orders`, from the reply's
# items) and by the page's records; the second reading of a text is a look-up (both readings of a
# synthetic order: 17,400 -> 12,600 instructions). A page is at most 100 orders: 1,024 texts keep it.
ORDER_RECORDS = RecordSpec(
    "id", ("date_modified_gmt", "date_created_gmt"), parse_time=lru_cache(maxsize=1024)(parse_timestamp)
)


@dataclass(frozen=True)
class OrdersReply(Reply):
    """A page of orders and the `modified_after` it was asked with ("" for none)."""

    modified_after: str = ""


class OrderPages(KeysetPaginator):
    """Keyset paging on `modified_after`: each next query starts one second before the newest
    order read. A whole page inside one second cannot move that bound, and page numbers of the
    open-ended query would shift under an order edited meanwhile (it leaves for the end of the
    list, and the order after the page boundary is skipped). So that second is read on its own
    (a tie: `modified_after` and `modified_before` around it, sorted by id), page by page, and
    from its first page again whenever its `X-WP-Total` changed between two pages (an order left
    it, or the count was unsteady): a page that started at a shifted offset is never the last one
    read. Positions: (`modified_after`, page) or, in a tie, (`modified_after`, page, the tie's
    count at the page before, times read again)."""

    def __init__(self, system: str, size: int, position: Any = None) -> None:
        if position is not None and len(position) == 2 and int(position[1]) > 1:
            # A checkpoint of the page-number ties before (crmsync 2026-12-06 and earlier): that
            # second, read whole again as a tie (a page number of it would not come after the tie's
            # first page, and the loop guard would refuse every next read).
            position = (position[0], 1, 0, 0) if position[0] else ("", 1)
        super().__init__(system, size, next_orders, position, first=("", 1))
        self.tie_rereads = 0  # by this read: a resumed one may read a tie again as often

    def expects_more(self, reply: Reply) -> bool:
        return reply.total_pages is not None and int(self.position[1]) < reply.total_pages

    def following(self, reply: Reply) -> Any:
        if len(self.position) == 2:
            return super().following(reply)
        lower, page, seen, again = self.position
        if page > 1 and reply.total != seen:
            if self.tie_rereads >= MAX_TIE_REREADS:
                # Its checkpoint stays at this tie: the next cycle reads it from there.
                raise ApiError(
                    self.system,
                    f"the orders modified at {tie_second(lower)} kept changing while they were read "
                    f"(read again {self.tie_rereads} times); the next cycle reads them again",
                )
            self.tie_rereads += 1
            return lower, 1, 0, again + 1  # `again` only keeps this position new to the loop guard
        if self.short(reply) or (reply.total_pages is not None and page >= reply.total_pages):
            return tie_second(lower), 1  # the tie read whole (by its totals, else a short page): on
        return lower, page + 1, reply.total, again


MAX_TIE_REREADS = 10


def tie_second(lower: str, seconds: int = 1) -> str:
    """The second a tie reads, after `lower` (`modified_after` is exclusive); `seconds=2`: the
    first one after it (`modified_before` is exclusive too)."""
    return wc_time(datetime.fromisoformat(lower).replace(tzinfo=UTC) + timedelta(seconds=seconds))


def next_orders(reply: Reply, position: Any) -> tuple[str, int] | tuple[str, int, int, int] | None:
    """The next request after a full page: from one second before the newest order read
    (`modified_after` is exclusive and has one-second resolution, so the boundary second is read
    again), or the tie of that second when that would not move the bound."""
    lower, _ = position
    asked = reply.modified_after if isinstance(reply, OrdersReply) else str(lower)
    items = (i for i in reply.items if type(i) is dict or isinstance(i, Mapping))  # a dict skips the ABC check
    stamps = [s for s in map(ORDER_RECORDS.updated_at, items) if s is not None]
    if not stamps:
        return None  # refused by the paginator: nothing to page on
    following = wc_time(max(stamps) - timedelta(seconds=1))
    if not asked or following != asked:
        return following, 1  # below `asked`, the filter was ignored: the paginator refuses it
    return asked, 1, 0, 0  # a whole page within one second: that second alone, by page number


def wc_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(WC_TIME)


def total_pages(response: ApiResponse) -> int | None:
    """`X-WP-TotalPages` of the query; None for a reply without it (a proxy may drop it), which
    says nothing of where the list ends: a short page then does, as for every vendor without totals."""
    pages = response.header("X-WP-TotalPages")
    return int(pages) if pages else None


class WooCommerceConnector(Connector):
    type = "woocommerce"
    settings_class = WooCommerceSettings
    api_name = "WooCommerce REST API"
    api_version = "wc/v3"
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=False, write_fields=True
    )
    contact_fields = {
        "email": FieldSpec("email", "email"),
        "phone": FieldSpec("billing.phone", "phone"),
        "first_name": FieldSpec("first_name"),
        "last_name": FieldSpec("last_name"),
        "company": FieldSpec("billing.company"),
        "street": FieldSpec("billing.address_1"),
        "postcode": FieldSpec("billing.postcode"),
        "city": FieldSpec("billing.city"),
        "country": FieldSpec("billing.country", "country"),
    }
    order_fields = {
        "customer_id": FieldSpec("customer_id", "id"),
        "email": FieldSpec("billing.email", "email"),
        "amount": FieldSpec("total", "money"),
        "currency": FieldSpec("currency", "currency"),
        "created_at": FieldSpec("date_created_gmt", "datetime"),
        "discount": FieldSpec("coupon_lines", "flag"),
        # `total` is what was charged: a partial refund leaves it (and the status) as it was and is
        # listed here, negative ("-10.00"), as the REST controllers write it.
        "refunded": FieldSpec("refunds.*.total", "refunded"),
    }
    # Every order reply carries `refunds` (the v2/v3 controllers always add it); exports and
    # fixtures made without it must not stop the order stream.
    optional_fields = frozenset({"refunded"})
    max_write_batch = BATCH_LIMIT
    default_segments_field = "crmsync_segments"
    default_tier_field = "crmsync_loyalty_tier"
    # Meta cannot be deleted over REST; an empty string is the closest thing to "absent".
    empty_field_value = ""
    numeric_ids = True
    rules = RULES

    settings: WooCommerceSettings

    @cached_property
    def reply_rules(self) -> tuple[Rule, ...]:
        """The class's rules and the refusal of a request without a valid key, worded for this
        instance's `auth`."""
        return (*self.rules, no_key_rule(self.settings.auth))

    def classify(self, response: ApiResponse) -> Verdict:
        return classify_by(self.reply_rules, response)

    def make_client(self) -> ApiClient:
        key, secret = self.settings.consumer_key, self.settings.consumer_secret
        if self.settings.auth == "query":
            return self.api_client(auth=QueryKeyAuth({"consumer_key": key, "consumer_secret": secret}))
        return self.api_client(auth=BasicAuth(key, secret))

    @property
    def page_size(self) -> int:
        return self.settings.page_size or MAX_PAGE

    def check(self) -> CheckReport:
        writes = self.settings.writeback and bool(self.segments_field or self.tier_field)
        return check_rights(self.client, self.name, self.settings.role, writes=writes)

    # ----- reads --------------------------------------------------------------------------------
    # A page that comes back short while the totals say more pages follow lost an item on the way
    # (a known WordPress caching glitch): it is read again, up to twice. A short last page is read
    # once more too (the totals come from the same cache); the longest answer wins.
    def contacts_stream(self) -> Stream:
        # A full scan: mid-scan the checkpoint says where to resume, a finished scan starts over.
        return self.stream(
            Kind.CONTACT,
            self._fetch_customers,
            lambda at: PageNumberPaginator(self.name, self.page_size, at),
            RECORDS,
            incremental=False,
        )

    def orders_stream(self) -> Stream:
        # Each next page starts again at the last second seen: its orders come once more.
        pages = lambda at: OrderPages(self.name, self.page_size, at)  # noqa: E731
        return self.stream(Kind.ORDER, self._fetch_orders, pages, ORDER_RECORDS, repeats_boundary=True)

    def extra_streams(self) -> dict[str, Stream]:
        """The trash, read on its own: the orders list's default `status=any` leaves trashed orders
        out (the v3 controller hands "any" to WP_Query, whose "any" skips the trash), so an order
        counted once and moved to the trash later would go on counting. Trashing stamps the order's
        modification time, so the same keyset read finds it; `trash` is no counted status."""
        pages = lambda at: OrderPages(self.name, self.page_size, at)  # noqa: E731
        trashed = lambda at, window: self._fetch_orders(at, window, status="trash")  # noqa: E731
        return {"trashed_orders": self.stream(Kind.ORDER, trashed, pages, ORDER_RECORDS, repeats_boundary=True)}

    def _fetch_customers(self, page: Any, window: Window) -> Reply:
        params = {"per_page": self.page_size, "page": page, "orderby": "id", "order": "asc", "role": self.settings.role}
        response = self._list("/customers", params)
        return Reply(response.body, total_pages=total_pages(response))

    def _fetch_orders(self, at: Any, window: Window, status: str | None = None) -> Reply:
        lower, page = at[0], at[1]
        if not lower and window.since is not None:
            # modified_after is exclusive and has one-second resolution: start one second earlier.
            lower = wc_time(window.since - timedelta(seconds=1))
        params: dict[str, Any] = {
            "per_page": self.page_size,
            "page": page,
            "orderby": "modified",
            "order": "asc",
            "dates_are_gmt": "true",
        }
        if status:
            params["status"] = status
        if lower:
            params["modified_after"] = lower
        if len(at) > 2:  # a tie: that one second alone, in an order that edits do not shuffle
            params.update(modified_before=tie_second(lower, seconds=2), orderby="id")
        response = self._list("/orders", params)
        return OrdersReply(
            response.body,
            total_pages=total_pages(response),
            total=int(response.header("X-WP-Total") or 0),
            modified_after=lower or "",
        )

    def _list(self, path: str, params: Mapping[str, Any]) -> ApiResponse:
        response = self.client.request("GET", API + path, params=params)
        if not isinstance(response.body, list):
            raise ApiError(self.name, f"GET {API + path}: expected a list")
        return response

    def gone_contacts(self, record_ids: Sequence[str]) -> set[str]:
        """Those of these customers WordPress no longer has: the list asked for them by id
        (`include`, documented) in any role (`role=all`: a customer made a subscriber is still
        there, out of crmsync's list). A reply naming a customer not asked for means `include` was
        not applied, and then nothing can be told from it. A list page may skip a record, so one
        left out of it is asked for alone: only a 404 `woocommerce_rest_invalid_id` says it is gone."""
        ids = self.ids_to_ask(record_ids)
        unlisted: list[str] = []
        for start in range(0, len(ids), MAX_PAGE):
            chunk = ids[start : start + MAX_PAGE]
            params = {"include": ",".join(chunk), "role": "all", "per_page": MAX_PAGE, "orderby": "id"}
            found = {str(item.get("id")) for item in self._list("/customers", params).body if isinstance(item, dict)}
            if not found <= set(chunk):
                raise ApiError(self.name, "GET /customers?include=: the reply holds customers not asked for")
            unlisted.extend(rid for rid in chunk if rid not in found)
        return self.gone_one_by_one(unlisted, lambda customer_id: f"{API}/customers/{customer_id}")

    # ----- mapping hooks ------------------------------------------------------------------------
    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        meta = payload.get("meta_data")
        if not isinstance(meta, list):
            return None
        for row in meta:
            if isinstance(row, dict) and row.get("key") == name:
                value = row.get("value")
                return value if isinstance(value, str) or value is None else str(value)
        return None

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("status") in self.settings.counted_statuses

    def order_unfinished(self, payload: Mapping[str, Any]) -> bool:
        """Pending payment or failed: the customer went through checkout and did not pay. Also a
        checkout order cancelled unpaid: WooCommerce cancels a pending order once its stock has been
        held `woocommerce_hold_stock_minutes` (60 by default), so most abandoned checkouts end as
        that. A block checkout's `checkout-draft` is left out: WooCommerce deletes those within a
        day and they may hold no customer at all."""
        status = payload.get("status")
        if status in UNFINISHED_STATUSES:
            return True
        unpaid = not payload.get("date_paid") and not payload.get("date_paid_gmt")
        # Paid later by design (bank transfer, cheque, cash on delivery): a cancellation there is a
        # transfer that never came or a parcel refused, not a checkout left half-way.
        offline = payload.get("payment_method") in OFFLINE_PAYMENTS
        return status == "cancelled" and unpaid and not offline and payload.get("created_via") in CHECKOUT_CHANNELS

    # ----- writes: customers/batch, per-item errors, no atomicity ---------------------------------
    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        updates = [
            {
                "id": int(change.record_id),
                "meta_data": [{"key": key, "value": value or ""} for key, value in sorted(change.set_fields.items())],
            }
            for change in changes
        ]
        try:
            response = self.client.request("POST", API + "/customers/batch", json_body={"update": updates})
        except RejectedRecord as exc:
            return [WriteResult(c.record_id, False, exc.message) for c in changes]
        answered = response.body.get("update") if isinstance(response.body, dict) else None
        if not isinstance(answered, list) or len(answered) != len(changes):
            raise ApiError(self.name, "customers/batch answered with a different number of items")
        results = []
        for change, item in zip(changes, answered, strict=True):
            error = item.get("error") if isinstance(item, dict) else None
            if error:
                message = f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else str(error)
                results.append(WriteResult(change.record_id, False, message))
            else:
                results.append(WriteResult(change.record_id, True))
        return results


CONNECTOR = WooCommerceConnector
