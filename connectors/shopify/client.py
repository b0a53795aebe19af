"""Shopify connector: Admin GraphQL API, version pinned in config (default 2026-10).

Reads customers and orders with cursor paging sorted by `UPDATED_AT` and an `updated_at` search
filter; writes with `tagsAdd` / `tagsRemove` (never a whole tag list: `customerUpdate` replaces it)
and `metafieldsSet` / `metafieldsDelete` for `crmsync.loyalty_tier`. Up to 25 customers go in one
document (25 is `metafieldsSet`'s limit; 52 mutation fields stay below the 1000-point query cap).
Pacing follows the calculated-cost bucket the API reports in `extensions.cost.throttleStatus`.

The pieces: `settings.py` (configuration), `auth.py` (the three ways in), `check.py` (scopes,
`read_all_orders` above all), `rules.py` (what replies mean), `pacing.py` (the cost bucket),
`queries.py` and `writes.py` (the documents crmsync sends).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.auth import token_classify
from connectors.base import Capabilities, CheckReport, Connector, Page
from connectors.clock import now as clock_now
from connectors.errors import ApiError
from connectors.http import ApiClient, ApiResponse, Verdict
from connectors.paging import CursorPaginator, Reply
from connectors.shopify.auth import authenticator
from connectors.shopify.bulk import BulkReader, BulkSession, BulkWriter, Send, Sleep, Storage, storage_classify
from connectors.shopify.check import coverage_note, require_all_orders, scope_handles, scope_report
from connectors.shopify.pacing import CostPacer
from connectors.shopify.queries import (
    BULK_CUSTOMERS_QUERY,
    BULK_ORDERS_QUERY,
    CHECKOUTS_QUERY,
    COUNT_QUERIES,
    CUSTOMER_FIELDS,
    ORDER_FIELDS,
    ORDERS_WITH_LINES_PAGE,
    ORDERS_WITH_LINES_QUERY,
    OWNED_PAGE,
    SCOPES_QUERY,
    ZONE_QUERY,
    largest_page,
    owned_query,
)
from connectors.shopify.queries import CHECK_QUERY as CHECK_QUERY
from connectors.shopify.queries import CUSTOMERS_QUERY as CUSTOMERS_QUERY
from connectors.shopify.queries import ORDERS_QUERY as ORDERS_QUERY
from connectors.shopify.rules import RULES, read_reply
from connectors.shopify.settings import DEFAULT_PAGE, FINANCIAL_STATUSES, TIER_KEY, TIER_NAMESPACE
from connectors.shopify.settings import ShopifySettings as ShopifySettings
from connectors.shopify.writes import _write_document as _write_document
from connectors.shopify.writes import write_batch
from connectors.streams import RecordSpec, Stream
from connectors.window import Window
from mapping.model import FieldSpec, Kind, RemoteState, SourceRecord, WriteBack, WriteResult

CHECKOUT_GID = "gid://shopify/AbandonedCheckout/"
BULK_POSITION = "bulk:"


# A page reply without a customer field asked for: nothing can be told of that customer.
NO_ANSWER = object()


class ShopifyConnector(Connector):
    type = "shopify"
    gone_per_read = 2_500  # 100 queries a read
    settings_class = ShopifySettings
    api_name = "Shopify Admin GraphQL API"
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=True, write_fields=True
    )
    contact_fields = {
        "email": FieldSpec("defaultEmailAddress.emailAddress", "email"),
        "phone": FieldSpec("defaultPhoneNumber.phoneNumber", "phone"),
        "first_name": FieldSpec("firstName"),
        "last_name": FieldSpec("lastName"),
        "street": FieldSpec("defaultAddress.address1"),
        "postcode": FieldSpec("defaultAddress.zip"),
        "city": FieldSpec("defaultAddress.city"),
        "country": FieldSpec("defaultAddress.countryCodeV2", "country"),
        "company": FieldSpec("defaultAddress.company"),
        "email_consent": FieldSpec("defaultEmailAddress.marketingState", "consent"),
    }
    order_fields = {
        "customer_id": FieldSpec("customer.id", "id"),
        "email": FieldSpec("email", "email"),
        # The total "after returns" (Admin 2026-10): an amount refunded without a return (an
        # adjustment, shipping, more than the items were worth) is only in totalRefundedSet.
        "amount": FieldSpec("currentTotalPriceSet.shopMoney.amount", "money"),
        "original_amount": FieldSpec("totalPriceSet.shopMoney.amount", "money"),
        "refunded": FieldSpec("totalRefundedSet.shopMoney.amount", "refunded"),
        "currency": FieldSpec("currentTotalPriceSet.shopMoney.currencyCode", "currency"),
        "created_at": FieldSpec("createdAt", "datetime"),
        "discount": FieldSpec("discountCodes", "flag"),
        "categories": FieldSpec("lineItems.nodes.*.product.productType", "labels"),
    }
    max_write_batch = 25
    # A customer is `gid://shopify/Customer/7000000`; the admin's screens and URLs show 7000000.
    id_prefix = "gid://shopify/Customer/"
    numeric_ids = True
    default_tier_field = f"{TIER_NAMESPACE}.{TIER_KEY}"
    empty_field_value = None
    rules = RULES

    settings: ShopifySettings

    def make_client(self) -> ApiClient:
        self.pacer = CostPacer()
        self._scopes: frozenset[str] | None = None
        self._bulk_nodes: dict[str, list[dict[str, Any]]] = {}  # a bulk read's file, by operation
        self._bulk_passes: dict[str, tuple[Window, str]] = {}  # per connection: the pass reading in bulk
        self._bulk_restarts: dict[str, tuple[str, int]] = {}  # a resumed position -> where it restarted
        # The token endpoint is on the shop's own host, outside the Admin API's cost limit.
        flow = self.settings.flow
        self.token_client = None if flow == "fixed_token" else self.api_client(classify=token_classify, paced=False)
        auth = authenticator(self.name, self.settings, self.token_client)
        return self.api_client(auth=auth, pacers=[self.pacer])

    def close(self) -> None:
        super().close()
        if self.token_client is not None:
            self.token_client.close()

    @property
    def endpoint(self) -> str:
        return f"/admin/api/{self.settings.api_version}/graphql.json"

    def classify(self, response: ApiResponse) -> Verdict:
        return read_reply(response, self.rules, self.api_label())

    def graphql(
        self,
        operation: str,
        query: str,
        variables: Mapping[str, Any],
        *,
        mutating: bool,
        cost: float | None = None,
        idempotent: bool = True,
    ) -> Any:
        """The `data` of one document. `cost` is the caller's estimate (mutations); without one
        the pacer takes what `operation` was charged last time."""
        response = self.client.request(
            "POST",
            self.endpoint,
            json_body={"query": query, "variables": dict(variables)},
            mutating=mutating,
            idempotent=idempotent,
            cost=self.pacer.cost_of(operation, cost),
        )
        return response.body["data"]

    # ----- what the app may do ----------------------------------------------------------------------
    def check(self) -> CheckReport:
        data = self.graphql("check", CHECK_QUERY, {}, mutating=False)
        if not isinstance(data, dict) or "shop" not in data:
            raise ApiError(self.name, "unexpected reply to the shop query")
        self._scopes = scope_handles(self.name, data)
        report = scope_report(self.settings, self._scopes, self.tier_field)
        report.timezone = self.shop_timezone()
        return report

    def shop_timezone(self) -> str | None:
        """The shop's own time zone (Settings > General), or None where the shop does not say."""
        try:
            data = self.graphql("zone", ZONE_QUERY, {}, mutating=False)
        except ApiError:
            return None
        shop = data.get("shop") if isinstance(data, dict) else None
        zone = shop.get("ianaTimezone") if isinstance(shop, dict) else None
        return zone if isinstance(zone, str) and zone else None

    def granted_scopes(self) -> frozenset[str]:
        """The app's scopes, asked once per connector (a cycle)."""
        if self._scopes is None:
            self._scopes = scope_handles(self.name, self.graphql("scopes", SCOPES_QUERY, {}, mutating=False))
        return self._scopes

    def coverage_note(self) -> str | None:
        return coverage_note(self.name, self.settings)

    # ----- reads --------------------------------------------------------------------------------
    def contacts_stream(self) -> Stream:
        return self._stream(Kind.CONTACT, CUSTOMERS_QUERY, "customers", bulk=BULK_CUSTOMERS_QUERY)

    def orders_stream(self) -> Stream:
        if self.read_order_lines:
            # Lines are a nested connection: a bulk file would carry each as a line of its own,
            # all of them (a bulk query ignores `first`); these orders are read page by page.
            size = min(self.settings.page_size or DEFAULT_PAGE, ORDERS_WITH_LINES_PAGE)
            return self._stream(Kind.ORDER, ORDERS_WITH_LINES_QUERY, "orders", size)
        return self._stream(Kind.ORDER, ORDERS_QUERY, "orders", bulk=BULK_ORDERS_QUERY)

    def extra_streams(self) -> dict[str, Stream]:
        if self.unfinished_days is None:
            return {}
        return {"checkouts": self._checkouts_stream(self.unfinished_days)}

    def _checkouts_stream(self, days: int) -> Stream:
        """The checkouts created in the last `days` days, all of them every cycle: the list has no
        UPDATED_AT sort to resume an incremental read by, and only recent ones matter."""
        size = min(self.settings.page_size or DEFAULT_PAGE, largest_page("checkouts"))

        def fetch(after: Any, window: Window) -> Reply:
            since = clock_now() - timedelta(days=days)
            variables = {
                "first": size,
                "after": after,
                "query": f"created_at:>='{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'",
            }
            connection = self.graphql("abandonedCheckouts", CHECKOUTS_QUERY, variables, mutating=False)[
                "abandonedCheckouts"
            ]
            nodes, info = connection["nodes"], connection["pageInfo"]
            return Reply(nodes, end_cursor=info["endCursor"], has_next=bool(info["hasNextPage"]) and bool(nodes))

        def with_customer(records: list[SourceRecord]) -> list[SourceRecord]:
            # A checkout without a customer (a draft order's, an app's) names nobody: the object
            # has no email of its own, so it could only be quarantined, every cycle.
            return [r for r in records if not isinstance(r.payload, dict) or r.payload.get("customer")]

        return self.stream(
            Kind.ORDER,
            fetch,
            # Always from the first page: a cursor belongs to the query it came from, and each
            # cycle's query has its own `created_at` bound (the list is a week of checkouts).
            lambda at: CursorPaginator(self.name, size, None),
            RecordSpec("id", ("updatedAt", "createdAt")),
            incremental=False,
            refine=with_customer,
        )

    def read_orders(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        require_all_orders(self.name, self.settings, self.granted_scopes())
        return super().read_orders(checkpoint)

    def _stream(self, kind: Kind, query: str, root: str, page: int | None = None, bulk: str | None = None) -> Stream:
        """A connection sorted by `UPDATED_AT`, filtered to the pass's window with Shopify's search
        syntax, paged by `pageInfo { hasNextPage endCursor }`. A full pass over at least
        `bulk_read_threshold` nodes reads them as one bulk query instead (`bulk`), handed out in
        pages of the same size; its position is `bulk:<operation>:<line>` (a cursor of Shopify's is
        base64, never that)."""
        size = min(page or self.settings.page_size or DEFAULT_PAGE, largest_page(root))

        def fetch(after: Any, window: Window) -> Reply:
            if isinstance(after, str) and after.startswith(BULK_POSITION):
                if not bulk or not self._bulk_reads:  # resumed with bulk reads now off: start over
                    after = None
                else:
                    operation, line = after[len(BULK_POSITION) :].rsplit(":", 1)
                    return self._bulk_page(root, bulk, operation, int(line), size)
            if after is None and window.since is None and bulk:
                started = self._bulk_passes.get(root)
                if started is not None and started[0] is window:  # the first page, asked for again
                    return self._bulk_page(root, bulk, started[1], 0, size)
                if self._worth_bulk(root):
                    operation, nodes = self._bulk_reader().read(root, bulk)
                    self._bulk_nodes = {operation: nodes}
                    self._bulk_passes[root] = (window, operation)
                    return self._bulk_page(root, bulk, operation, 0, size)
            search = _updated_since(root, window.since) if window.since else None
            variables = {"first": size, "after": after, "query": search}
            connection = self.graphql(root, query, variables, mutating=False)[root]
            nodes, info = connection["nodes"], connection["pageInfo"]
            # An empty page ends the read: it has no endCursor to go on from.
            return Reply(nodes, end_cursor=info["endCursor"], has_next=bool(info["hasNextPage"]) and bool(nodes))

        return self.stream(
            kind, fetch, lambda at: CursorPaginator(self.name, size, at), RecordSpec("id", ("updatedAt",))
        )

    @property
    def _bulk_reads(self) -> bool:
        return bool(self.settings.bulk_read_threshold) and self.bulk_supported

    def _worth_bulk(self, root: str) -> bool:
        threshold = self.settings.bulk_read_threshold
        if not self._bulk_reads:
            return False
        counted = self.graphql(f"{root}Count", COUNT_QUERIES[root], {"limit": threshold}, mutating=False)
        return int((counted.get(f"{root}Count") or {}).get("count") or 0) >= threshold

    def _bulk_page(self, root: str, query: str, operation: str, line: int, size: int) -> Reply:
        """Nodes `line` on of this process's bulk read. A read resumed in another process (after a
        crash or a stop) runs the query again, from the first line: the old file may be older than
        records stored since, which it would overwrite."""
        asked = f"{operation}:{line}"
        operation, line = self._bulk_restarts.get(asked, (operation, line))
        nodes = self._bulk_nodes.get(operation)
        if nodes is None:
            operation, nodes = self._bulk_reader().read(root, query)
            self._bulk_nodes, line = {operation: nodes}, 0
            self._bulk_restarts[asked] = (operation, 0)  # the same page when it is asked for again
        items = nodes[line : line + size]
        end = line + len(items)
        return Reply(items, end_cursor=f"{BULK_POSITION}{operation}:{end}", has_next=end < len(nodes))

    def _bulk_reader(self) -> BulkReader:
        return BulkReader(self.name, *self._bulk_kit(), poll_max_s=self.settings.bulk_poll_max)

    def _bulk_kit(self) -> tuple[Send, Storage, Sleep]:
        """How a bulk session talks: the Admin API (a `bulkOperationRunMutation` never sent twice: a
        lost reply may have started one), the storage host (no credentials of the Admin API there, and no
        pacing of it), and waits a stop request ends."""

        def send(operation: str, document: str, variables: Mapping[str, Any], cost: float) -> Any:
            mutating = document.lstrip().startswith("mutation")
            once = "bulkOperationRunMutation" not in document  # a second bulk read is only waste
            return self.graphql(operation, document, variables, mutating=mutating, cost=cost, idempotent=once)

        def storage(origin: str) -> ApiClient:
            try:
                return self.api_client(base_url=origin, classify=storage_classify, paced=False)
            except ValueError as exc:  # plain http to a host that is not this machine
                raise ApiError(self.name, f"bulk storage target refused: {exc}") from None

        return send, storage, self.client.sleep

    @property
    def bulk_supported(self) -> bool:
        """`bulkOperation(id:)`, `bulkOperations` and bulk runs of any mutation are from 2026-01."""
        version = self.settings.api_version
        return version == "unstable" or version >= "2026-01"

    # ----- mapping hooks ------------------------------------------------------------------------
    def payload_tags(self, payload: Mapping[str, Any]) -> list[str]:
        tags = payload.get("tags")
        return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        if name != self.tier_field:
            return None
        metafield = payload.get("loyaltyTier")
        value = metafield.get("value") if isinstance(metafield, dict) else None
        return value if isinstance(value, str) else None

    def read_shape(self) -> Any:
        """The fields a read asks for: orders stored before the refund amounts were asked for
        lack them, and the shop is read in full once to have them."""
        return {"customers": " ".join(CUSTOMER_FIELDS.split()), "orders": " ".join(ORDER_FIELDS.split())}

    def drift_paths(self, stream: str, kind: Kind) -> tuple[str, ...]:
        paths = super().drift_paths(stream, kind)
        # A checkout has no email of its own (only its customer's), its lines are not asked for,
        # and nothing of it was returned or refunded (its total is read as the current one).
        unasked = {"email", *(self.order_fields[n].path for n in ("categories", "original_amount", "refunded"))}
        return tuple(p for p in paths if p not in unasked) if stream == "checkouts" else paths

    def order_unfinished(self, payload: Mapping[str, Any]) -> bool:
        """An abandoned checkout not completed since (a completed one became an order)."""
        return str(payload.get("id", "")).startswith(CHECKOUT_GID) and not payload.get("completedAt")

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        if str(payload.get("id", "")).startswith(CHECKOUT_GID):
            return False  # a checkout is never an order: a completed one is read as its order
        if payload.get("cancelledAt") or payload.get("test") is True:
            return False
        status = payload.get("displayFinancialStatus")
        # The field is nullable and its meaning then undocumented: such an order counts, as it did
        # before the setting, whatever the setting names (docs/setup/shopify.md).
        return status not in FINANCIAL_STATUSES or status in self.settings.counted_financial_statuses

    # ----- writes -------------------------------------------------------------------------------
    @property
    def bulk_write_threshold(self) -> int:
        return self.settings.bulk_write_threshold if self.bulk_supported else 0

    def write_bulk(self, changes: Sequence[WriteBack], guard: Callable[[], None]) -> list[WriteResult]:
        """All of a cycle's changes through bulk mutations (`bulk.py`); raises `PartialWrite` with
        the confirmed results when an operation ends early."""
        writer = BulkWriter(self.name, *self._bulk_kit(), poll_max_s=self.settings.bulk_poll_max)
        return writer.write(changes, f"{TIER_NAMESPACE}.{TIER_KEY}", guard)

    def writes_held(self) -> str | None:
        """A bulk mutation of crmsync's still running at Shopify (a cycle stopped while it ran): what
        this cycle would write was planned from a shop it is still changing, and could race it.
        With bulk writes off crmsync starts none, and does not ask."""
        if not self.bulk_write_threshold:
            return None
        session = BulkSession(self.name, *self._bulk_kit())
        running = session.active_mutations()
        if not running:
            return None
        return (
            f"writes held: {len(running)} bulk mutation(s) of an earlier cycle still running at Shopify "
            f"({', '.join(running)}); the next cycle writes once they have ended"
        )

    def verify_owned(self, record_ids: Sequence[str]) -> dict[str, RemoteState]:
        """crmsync's tags and tier on these customers as they stand now: one query per page of
        them, a `customer(id:)` field each (documented: null for an id no customer has, which is
        left out, as is an id that can be no customer's gid)."""
        ids = [rid for rid in dict.fromkeys(record_ids) if self.canonical_id(rid) == rid]
        return {rid: self.owned_state(node) for rid, node in self._customers_by_id(ids) if isinstance(node, dict)}

    def _customers_by_id(self, ids: Sequence[str]) -> Iterator[tuple[str, Any]]:
        """Each id with its `customer(id:)` node (None: no such customer; `NO_ANSWER`: the reply
        holds no field for it), a query per page of them."""
        for start in range(0, len(ids), OWNED_PAGE):
            page = ids[start : start + OWNED_PAGE]
            data = self.graphql(
                "owned", owned_query(len(page)), {f"id{i}": rid for i, rid in enumerate(page)}, mutating=False
            )
            for i, rid in enumerate(page):
                yield rid, data.get(f"c{i}", NO_ANSWER) if isinstance(data, dict) else NO_ANSWER

    def gone_contacts(self, record_ids: Sequence[str]) -> set[str]:
        """Those of these customers Shopify no longer has: the same query as `verify_owned`, whose
        `customer(id:)` is null for an id no customer has (documented). A reply without the field
        tells nothing, and raises."""
        gone: set[str] = set()
        for rid, node in self._customers_by_id(self.ids_to_ask(record_ids)):
            if node is NO_ANSWER:
                raise ApiError(self.name, f"look up customer {rid}: the reply holds no answer for it")
            if node is None:
                gone.add(rid)
        return gone

    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        return write_batch(
            lambda operation, document, variables, cost: self.graphql(
                operation, document, variables, mutating=True, cost=cost
            ),
            changes,
        )


CONNECTOR = ShopifyConnector


def _updated_since(root: str, since: datetime) -> str:
    """The search term for what changed since `since`. On orders `updated_at` is a moment; on
    customers it is "the date and time, matching a whole day" (documented), a day of the shop's
    time zone, which the API does not say how it reads from a moment in UTC: the customers are
    asked for from the UTC date before `since`'s, which in any zone starts before `since`. A
    customer changed in those hours is read again and skipped as unchanged."""
    if root == "customers":
        return f"updated_at:>='{(since.astimezone(UTC) - timedelta(days=1)).date().isoformat()}'"
    return f"updated_at:>='{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
