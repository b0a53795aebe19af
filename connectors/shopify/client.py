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

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from connectors.auth import token_classify
from connectors.base import Capabilities, CheckReport, Connector, Page
from connectors.clock import now as clock_now
from connectors.errors import ApiError
from connectors.http import ApiClient, ApiResponse, Verdict
from connectors.paging import CursorPaginator, Reply
from connectors.shopify.auth import authenticator
from connectors.shopify.check import coverage_note, require_all_orders, scope_handles, scope_report
from connectors.shopify.pacing import CostPacer
from connectors.shopify.queries import CHECK_QUERY as CHECK_QUERY
from connectors.shopify.queries import CHECKOUTS_QUERY, ORDERS_WITH_LINES_PAGE, ORDERS_WITH_LINES_QUERY, SCOPES_QUERY
from connectors.shopify.queries import CUSTOMERS_QUERY as CUSTOMERS_QUERY
from connectors.shopify.queries import ORDERS_QUERY as ORDERS_QUERY
from connectors.shopify.rules import RULES, read_reply
from connectors.shopify.settings import DEFAULT_PAGE, TIER_KEY, TIER_NAMESPACE
from connectors.shopify.settings import ShopifySettings as ShopifySettings
from connectors.shopify.writes import _write_document as _write_document
from connectors.shopify.writes import write_batch
from connectors.streams import RecordSpec, Stream
from connectors.window import Window
from mapping.model import FieldSpec, Kind, SourceRecord, WriteBack, WriteResult

CHECKOUT_GID = "gid://shopify/AbandonedCheckout/"
NOT_COUNTED_STATUSES = frozenset({"REFUNDED", "VOIDED", "EXPIRED"})


class ShopifyConnector(Connector):
    type = "shopify"
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
        "amount": FieldSpec("currentTotalPriceSet.shopMoney.amount", "money"),
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
        self, operation: str, query: str, variables: Mapping[str, Any], *, mutating: bool, cost: float | None = None
    ) -> Any:
        """The `data` of one document. `cost` is the caller's estimate (mutations); without one
        the pacer takes what `operation` was charged last time."""
        response = self.client.request(
            "POST",
            self.endpoint,
            json_body={"query": query, "variables": dict(variables)},
            mutating=mutating,
            cost=self.pacer.cost_of(operation, cost),
        )
        return response.body["data"]

    # ----- what the app may do ----------------------------------------------------------------------
    def check(self) -> CheckReport:
        data = self.graphql("check", CHECK_QUERY, {}, mutating=False)
        if not isinstance(data, dict) or "shop" not in data:
            raise ApiError(self.name, "unexpected reply to the shop query")
        self._scopes = scope_handles(self.name, data)
        return scope_report(self.settings, self._scopes, self.tier_field)

    def granted_scopes(self) -> frozenset[str]:
        """The app's scopes, asked once per connector (a cycle)."""
        if self._scopes is None:
            self._scopes = scope_handles(self.name, self.graphql("scopes", SCOPES_QUERY, {}, mutating=False))
        return self._scopes

    def coverage_note(self) -> str | None:
        return coverage_note(self.name, self.settings)

    # ----- reads --------------------------------------------------------------------------------
    def contacts_stream(self) -> Stream:
        return self._stream(Kind.CONTACT, CUSTOMERS_QUERY, "customers")

    def orders_stream(self) -> Stream:
        if self.read_order_lines:
            size = min(self.settings.page_size or DEFAULT_PAGE, ORDERS_WITH_LINES_PAGE)
            return self._stream(Kind.ORDER, ORDERS_WITH_LINES_QUERY, "orders", size)
        return self._stream(Kind.ORDER, ORDERS_QUERY, "orders")

    def extra_streams(self) -> dict[str, Stream]:
        if self.unfinished_days is None:
            return {}
        return {"checkouts": self._checkouts_stream(self.unfinished_days)}

    def _checkouts_stream(self, days: int) -> Stream:
        """The checkouts created in the last `days` days, all of them every cycle: the list has no
        UPDATED_AT sort to resume an incremental read by, and only recent ones matter."""
        size = self.settings.page_size or DEFAULT_PAGE

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

    def _stream(self, kind: Kind, query: str, root: str, page: int | None = None) -> Stream:
        """A connection sorted by `UPDATED_AT`, filtered to the pass's window with Shopify's search
        syntax, paged by `pageInfo { hasNextPage endCursor }`."""
        size = page or self.settings.page_size or DEFAULT_PAGE

        def fetch(after: Any, window: Window) -> Reply:
            since = window.since
            search = f"updated_at:>='{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'" if since else None
            variables = {"first": size, "after": after, "query": search}
            connection = self.graphql(root, query, variables, mutating=False)[root]
            nodes, info = connection["nodes"], connection["pageInfo"]
            # An empty page ends the read: it has no endCursor to go on from.
            return Reply(nodes, end_cursor=info["endCursor"], has_next=bool(info["hasNextPage"]) and bool(nodes))

        return self.stream(
            kind, fetch, lambda at: CursorPaginator(self.name, size, at), RecordSpec("id", ("updatedAt",))
        )

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

    def drift_paths(self, stream: str, kind: Kind) -> tuple[str, ...]:
        paths = super().drift_paths(stream, kind)
        # A checkout has no email of its own (only its customer's), and its lines are not asked for.
        lines = self.order_fields["categories"].path
        return tuple(p for p in paths if p not in ("email", lines)) if stream == "checkouts" else paths

    def order_unfinished(self, payload: Mapping[str, Any]) -> bool:
        """An abandoned checkout not completed since (a completed one became an order)."""
        return str(payload.get("id", "")).startswith(CHECKOUT_GID) and not payload.get("completedAt")

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        if str(payload.get("id", "")).startswith(CHECKOUT_GID):
            return False  # a checkout is never an order: a completed one is read as its order
        return not (
            payload.get("cancelledAt")
            or payload.get("test") is True
            or payload.get("displayFinancialStatus") in NOT_COUNTED_STATUSES
        )

    # ----- writes -------------------------------------------------------------------------------
    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        return write_batch(
            lambda operation, document, variables, cost: self.graphql(
                operation, document, variables, mutating=True, cost=cost
            ),
            changes,
        )


CONNECTOR = ShopifyConnector
