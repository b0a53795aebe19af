"""Shopify connector: Admin GraphQL API, version pinned in config (default 2026-10).

Reads customers and orders with cursor paging sorted by `UPDATED_AT` and an `updated_at` search
filter; writes with `tagsAdd` / `tagsRemove` (never a whole tag list: `customerUpdate` replaces it)
and `metafieldsSet` / `metafieldsDelete` for `crmsync.loyalty_tier`. Up to 25 customers go in one
document (25 is `metafieldsSet`'s limit; 52 mutation fields stay below the 1000-point query cap).
Pacing follows the calculated-cost bucket the API reports in `extensions.cost.throttleStatus`.

Credentials, as Shopify hands them out today (../shared/api-notes/shopify.md): an app made in the
Dev Dashboard has a client id and secret, and crmsync gets 24-hour tokens from the client-credentials
grant (stores of the app's own organisation); an app of another organisation (an agency's) uses an
expiring offline token with its refresh token (rotated at every refresh, so the newest one is kept in
`refresh_token_file`); an app made in the admin before 2026 keeps its fixed `access_token`.

Without `read_all_orders` Shopify returns only the orders of the last 60 days, and lifetime revenue,
tiers and "lapsed" would be computed from two months: the orders read checks the granted scopes and
stops unless `recent_orders_only = true` says the merchant accepts that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from connectors.auth import (
    Authenticator,
    ExpiringTokenAuth,
    HeaderAuth,
    OAuth2Grant,
    RefreshTokenGrant,
    Token,
    token_classify,
)
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
from connectors.errors import ApiError, PermissionDenied
from connectors.http import ApiClient, ApiResponse, Verdict, default_classify
from connectors.settings import Duration, SystemSettings
from mapping.model import FieldSpec, Kind, SourceRecord, WriteBack, WriteResult, parse_timestamp

MUTATION_COST = 10  # points per mutation field, as the API reports in extensions.cost
TIER_NAMESPACE = "crmsync"
TIER_KEY = "loyalty_tier"
MAX_PAGE = 250

CUSTOMERS_QUERY = """
query CrmsyncCustomers($first: Int!, $after: String, $query: String) {
  customers(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id firstName lastName createdAt updatedAt tags
      defaultEmailAddress { emailAddress }
      defaultPhoneNumber { phoneNumber }
      defaultAddress { address1 zip city countryCodeV2 }
      loyaltyTier: metafield(namespace: "crmsync", key: "loyalty_tier") { value }
    }
  }
}
"""

ORDERS_QUERY = """
query CrmsyncOrders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id name email createdAt updatedAt cancelledAt test displayFinancialStatus
      currentTotalPriceSet { shopMoney { amount currencyCode } }
      customer { id }
    }
  }
}
"""

CHECK_QUERY = "query CrmsyncCheck { shop { name currencyCode } currentAppInstallation { accessScopes { handle } } }"
SCOPES_QUERY = "query CrmsyncScopes { currentAppInstallation { accessScopes { handle } } }"
TOKEN_PATH = "/admin/oauth/access_token"
SCOPES_FIX = (
    "grant it in the Dev Dashboard (your app > Versions > scopes, then Release and approve it on the store), "
    "or for an app made in the Shopify admin under Apps > Develop apps > the app > Configuration"
)

NOT_COUNTED_STATUSES = frozenset({"REFUNDED", "VOIDED", "EXPIRED"})


class ShopifySettings(SystemSettings):
    type: Literal["shopify"]
    # A Dev Dashboard app (2026 on): the client-credentials grant gives 24-hour tokens.
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: SecretStr | None = None
    # An app made in the admin before 2026 (fixed token), or an expiring offline token whose
    # refresh token renews it (an app of another organisation: an agency's).
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    refresh_token_file: str | None = Field(
        default=None, description="where crmsync keeps the newest refresh token (Shopify rotates it)"
    )
    token_renew_margin: Duration = Field(default=300.0, description="renew a token this long before it expires")
    recent_orders_only: bool = Field(
        default=False, description="accept an app without read_all_orders: traits from the last 60 days only"
    )
    api_version: str = Field(default="2026-10", pattern=r"^(\d{4}-(01|04|07|10)|unstable)$")
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE)

    @model_validator(mode="after")
    def _one_way_in(self) -> ShopifySettings:
        has_client = self.client_id is not None or self.client_secret is not None
        if has_client and (self.client_id is None or self.client_secret is None):
            missing = "client_secret" if self.client_secret is None else "client_id"
            raise ValueError(f"{missing}: field required (a Dev Dashboard app needs its client id and secret)")
        if self.refresh_token is not None:
            if not has_client:
                raise ValueError("client_id: field required (refreshing a token needs the app's client id and secret)")
            if self.refresh_token_file is None:
                raise ValueError(
                    "refresh_token_file: field required (Shopify hands out a new refresh token at every "
                    "refresh and retires the old one; crmsync keeps the newest there)"
                )
        elif has_client and self.access_token is not None:
            raise ValueError("access_token: set either client_id/client_secret or access_token, not both")
        elif not has_client and self.access_token is None:
            raise ValueError(
                "access_token: field required (or client_id and client_secret for an app made in the Dev Dashboard)"
            )
        return self

    @property
    def flow(self) -> Literal["client_credentials", "refresh_token", "fixed_token"]:
        if self.refresh_token is not None:
            return "refresh_token"
        return "client_credentials" if self.client_id is not None else "fixed_token"


class CostPacer:
    """Waits before a request until the bucket Shopify last reported can cover its cost."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.available: float | None = None
        self.maximum = 0.0
        self.rate = 0.0
        self.at = 0.0
        self.costs: dict[str, float] = {}

    def observe(self, operation: str, body: Any) -> None:
        cost = body.get("extensions", {}).get("cost") if isinstance(body, dict) else None
        if not isinstance(cost, dict):
            return
        status = cost.get("throttleStatus") or {}
        with self.lock:
            if isinstance(cost.get("requestedQueryCost"), int | float):
                self.costs[operation] = float(cost["requestedQueryCost"])
            if all(isinstance(status.get(k), int | float) for k in ("currentlyAvailable", "restoreRate")):
                self.available = float(status["currentlyAvailable"])
                self.maximum = float(status.get("maximumAvailable") or self.available)
                self.rate = float(status["restoreRate"])
                self.at = time.monotonic()

    def wait_for(self, operation: str, estimate: float | None = None) -> float:
        """Seconds to wait before sending `operation` (0 when the bucket can take it). The cost is
        the caller's estimate when it has one (mutations: 10 points each), else what this
        operation was charged last time."""
        with self.lock:
            # An operation not sent before (the first page of orders after the customers) is taken
            # to cost as much as the dearest one seen: a guess too low is a throttled, wasted call.
            dearest = max(self.costs.values(), default=None)
            cost = estimate if estimate is not None else self.costs.get(operation, dearest)
            if cost is None or self.available is None or self.rate <= 0:
                return 0.0
            now_available = min(self.maximum, self.available + (time.monotonic() - self.at) * self.rate)
            return max(0.0, (cost - now_available) / self.rate)


def throttle_wait(body: Any) -> float | None:
    """How long until the bucket covers the refused query: (requested - available) / restore rate."""
    cost = body.get("extensions", {}).get("cost") if isinstance(body, dict) else None
    if not isinstance(cost, dict):
        return None
    status = cost.get("throttleStatus") or {}
    try:
        requested = float(cost["requestedQueryCost"])
        available = float(status["currentlyAvailable"])
        rate = float(status["restoreRate"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.05, (requested - available) / rate) if rate > 0 else None


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
    }
    order_fields = {
        "customer_id": FieldSpec("customer.id", "id"),
        "email": FieldSpec("email", "email"),
        "amount": FieldSpec("currentTotalPriceSet.shopMoney.amount", "money"),
        "currency": FieldSpec("currentTotalPriceSet.shopMoney.currencyCode", "currency"),
        "created_at": FieldSpec("createdAt", "datetime"),
    }
    max_write_batch = 25
    default_tier_field = f"{TIER_NAMESPACE}.{TIER_KEY}"
    empty_field_value = None

    settings: ShopifySettings

    def make_client(self) -> ApiClient:
        self.pacer = CostPacer()
        self._scopes: frozenset[str] | None = None
        return self.api_client(auth=self.authenticator())

    def authenticator(self) -> Authenticator:
        settings = self.settings
        if settings.flow == "fixed_token":
            assert settings.access_token is not None
            return HeaderAuth({"X-Shopify-Access-Token": settings.access_token})
        assert settings.client_id is not None and settings.client_secret is not None
        # The token endpoint is on the shop's own host, outside the Admin API's cost limit.
        self.token_client = self.api_client(classify=token_classify, paced=False)
        credentials: dict[str, str | SecretStr] = {
            "client_id": settings.client_id,
            "client_secret": settings.client_secret,
        }
        source: OAuth2Grant
        if settings.flow == "client_credentials":
            source = OAuth2Grant(
                self.name,
                self.token_client,
                TOKEN_PATH,
                {"grant_type": "client_credentials", **credentials},
                fix="check client_id and client_secret (Dev Dashboard > your app > Settings), and that the store "
                "belongs to the app's organisation (else use an expiring offline token: docs/setup/shopify.md)",
                what="client-credentials token",
            )
        else:
            assert settings.refresh_token is not None and settings.refresh_token_file is not None
            source = RefreshTokenGrant(
                self.name,
                self.token_client,
                TOKEN_PATH,
                credentials,
                settings.refresh_token,
                store=settings.refresh_token_file,
                fix="the refresh token was refused (expired after 90 days, revoked, or replaced): "
                "get a new expiring offline token for the store (docs/setup/shopify.md)",
                what="token refresh",
            )
        initial = Token(settings.access_token.get_secret_value(), None) if settings.access_token is not None else None
        return ExpiringTokenAuth(
            self.name, source, _shopify_header, margin=settings.token_renew_margin, initial=initial
        )

    def close(self) -> None:
        super().close()
        if getattr(self, "token_client", None) is not None:
            self.token_client.close()

    @property
    def endpoint(self) -> str:
        return f"/admin/api/{self.settings.api_version}/graphql.json"

    # ----- what replies mean ---------------------------------------------------------------------
    def classify(self, response: ApiResponse) -> Verdict:
        body = response.body
        if response.status != 200:
            return default_classify(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        if not errors:
            return Verdict.ok()
        codes = (
            {(e.get("extensions") or {}).get("code") for e in errors if isinstance(e, dict)}
            if isinstance(errors, list)
            else set()
        )
        message = (
            "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))
            if isinstance(errors, list)
            else str(errors)
        )
        if "undefinedField" in codes:
            # The API version no longer has a field crmsync asks for: a drift, named as such.
            missing = [(e.get("extensions") or {}) for e in errors if isinstance(e, dict)]
            named = ", ".join(f"{m.get('typeName')}.{m.get('fieldName')}" for m in missing if m.get("fieldName"))
            return Verdict(
                "fatal", f"{self.api_label()} has no field {named} (renamed or removed in this API version?): {message}"
            )
        if "THROTTLED" in codes:
            return Verdict("throttled", message, throttle_wait(body))
        if "ACCESS_DENIED" in codes:
            return Verdict("denied", message)
        if "INTERNAL_SERVER_ERROR" in codes:
            return Verdict("retry", message)
        return Verdict("fatal", message)

    def graphql(
        self, operation: str, query: str, variables: Mapping[str, Any], *, mutating: bool, cost: float | None = None
    ) -> Any:
        self.client.sleep(self.pacer.wait_for(operation, cost))
        response = self.client.request(
            "POST", self.endpoint, json_body={"query": query, "variables": dict(variables)}, mutating=mutating
        )
        self.pacer.observe(operation, response.body)
        return response.body["data"]

    def check(self) -> CheckReport:
        data = self.graphql("check", CHECK_QUERY, {}, mutating=False)
        if not isinstance(data, dict) or "shop" not in data:
            raise ApiError(self.name, "unexpected reply to the shop query")
        scopes = self._scopes = _scope_handles(self.name, data)
        writes = self.settings.writeback
        permissions = [
            Permission("read_customers", "read_customers" in scopes, f"add the read_customers scope: {SCOPES_FIX}"),
            Permission("read_orders", "read_orders" in scopes, f"add the read_orders scope: {SCOPES_FIX}"),
            Permission(
                "read_all_orders",
                "read_all_orders" in scopes,
                "add the read_all_orders scope (without it Shopify returns only the last 60 days of orders): "
                f"{SCOPES_FIX}; or set recent_orders_only = true to accept traits from 60 days",
                needed=not self.settings.recent_orders_only,
            ),
        ]
        if writes:
            fix = f"add the write_customers scope: {SCOPES_FIX}"
            permissions.append(Permission("write_customers", "write_customers" in scopes, fix))
        warnings = []
        if "read_all_orders" not in scopes and self.settings.recent_orders_only:
            warnings.append(
                "no read_all_orders scope (recent_orders_only = true): orders, revenue, tiers and lifecycle from "
                "this shop cover the last 60 days only"
            )
        written = writes and "write_customers" in scopes
        capabilities = Capabilities(
            read_contacts="read_customers" in scopes,
            read_orders="read_orders" in scopes,
            incremental=True,
            write_tags=written,
            write_fields=written and bool(self.tier_field),
        )
        return CheckReport(capabilities, permissions, warnings)

    def granted_scopes(self) -> frozenset[str]:
        """The app's scopes, asked once per connector (a cycle)."""
        if self._scopes is None:
            self._scopes = _scope_handles(self.name, self.graphql("scopes", SCOPES_QUERY, {}, mutating=False))
        return self._scopes

    def coverage_note(self) -> str | None:
        if self.settings.recent_orders_only:
            return (
                f"{self.name}: recent_orders_only = true, so this shop's orders (and the revenue, tiers and "
                "lifecycle built on them) cover the last 60 days only"
            )
        return None

    # ----- reads --------------------------------------------------------------------------------
    def _read(self, kind: Kind, query: str, root: str, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        since = read_since(checkpoint, self.settings.lookback)
        search = f"updated_at:>='{since.strftime('%Y-%m-%dT%H:%M:%SZ')}'" if since else None
        variables: dict[str, Any] = {"first": self.settings.page_size or 100, "after": None, "query": search}
        state = dict(checkpoint or {})
        number = 0
        while True:
            data = confirm_short(
                lambda: self.graphql(root, query, variables, mutating=False),
                lambda reply: len(reply[root]["nodes"]),
                variables["first"],
            )
            connection = data[root]
            records = [
                SourceRecord(self.name, kind, node["id"], parse_timestamp(node["updatedAt"]), node)
                for node in connection["nodes"]
            ]
            number += 1
            state = advance_cursor(state, records)
            yield Page(records, state, number)
            info = connection["pageInfo"]
            if not info["hasNextPage"] or not records:
                return
            variables["after"] = info["endCursor"]

    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        return self._read(Kind.CONTACT, CUSTOMERS_QUERY, "customers", checkpoint)

    def read_orders(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        if "read_all_orders" not in self.granted_scopes() and not self.settings.recent_orders_only:
            raise PermissionDenied(
                self.name,
                "the app lacks the read_all_orders scope, so Shopify would return only the last 60 days of "
                "orders and lifetime revenue, tiers and lapsed customers would be computed wrongly: add "
                f"read_all_orders ({SCOPES_FIX}), or set recent_orders_only = true to accept 60 days",
            )
        return self._read(Kind.ORDER, ORDERS_QUERY, "orders", checkpoint)

    # ----- mapping hooks ------------------------------------------------------------------------
    def canonical_id(self, raw: str) -> str | None:
        text = raw.strip()
        if text.isdigit():
            return f"gid://shopify/Customer/{int(text)}"
        return text if text.startswith("gid://shopify/Customer/") else None

    def payload_tags(self, payload: Mapping[str, Any]) -> list[str]:
        tags = payload.get("tags")
        return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        if name != self.tier_field:
            return None
        metafield = payload.get("loyaltyTier")
        value = metafield.get("value") if isinstance(metafield, dict) else None
        return value if isinstance(value, str) else None

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        return not (
            payload.get("cancelledAt")
            or payload.get("test") is True
            or payload.get("displayFinancialStatus") in NOT_COUNTED_STATUSES
        )

    # ----- writes -------------------------------------------------------------------------------
    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        plan = _write_document(changes, f"{TIER_NAMESPACE}.{TIER_KEY}")
        problems: dict[str, list[str]] = {c.record_id: [] for c in changes}
        if plan.document:
            cost = MUTATION_COST * plan.mutations
            data = self.graphql("write", plan.document, plan.variables, mutating=True, cost=cost) or {}
            for alias, payload in data.items():
                for error in (payload or {}).get("userErrors") or []:
                    for owner in plan.owners_of(alias, error):
                        problems[owner].append(str(error.get("message")))
            set_errors = (data.get("set") or {}).get("userErrors") or []
            good = [item for i, item in enumerate(plan.variables.get("mf", [])) if not _names_element(set_errors, i)]
            if set_errors and good and len(good) < len(plan.set_owners):
                # metafieldsSet is atomic, so the valid items were not written either: send them again.
                again = self.graphql("write-retry", RETRY_SET, {"mf": good}, mutating=True, cost=MUTATION_COST) or {}
                for error in (again.get("set") or {}).get("userErrors") or []:
                    for owner in _element_owners(error, [item["ownerId"] for item in good]):
                        problems[owner].append(str(error.get("message")))
        return [WriteResult(rid, not msgs, "; ".join(msgs)) for rid, msgs in problems.items()]


def _shopify_header(request: Any, token: Token) -> None:
    request.headers["X-Shopify-Access-Token"] = token.value


def _scope_handles(system: str, data: Any) -> frozenset[str]:
    """The granted scope handles; a write scope includes its read scope."""
    installation = data.get("currentAppInstallation") if isinstance(data, dict) else None
    scopes = installation.get("accessScopes") if isinstance(installation, dict) else None
    if not isinstance(scopes, list):
        raise ApiError(system, "unexpected reply to currentAppInstallation { accessScopes }")
    handles = {s["handle"] for s in scopes if isinstance(s, dict) and isinstance(s.get("handle"), str)}
    return frozenset(handles | {"read_" + h[len("write_") :] for h in handles if h.startswith("write_")})


RETRY_SET = """
mutation CrmsyncWriteRetry($mf: [MetafieldsSetInput!]!) {
  set: metafieldsSet(metafields: $mf) { userErrors { field message code elementIndex } }
}
"""


def _names_element(errors: Sequence[Mapping[str, Any]], index: int) -> bool:
    return any(e.get("elementIndex") == index for e in errors)


def _element_owners(error: Mapping[str, Any], owners: Sequence[str]) -> list[str]:
    """The record a metafield userError is about; all of them when it names no element."""
    index = error.get("elementIndex")
    if isinstance(index, int) and 0 <= index < len(owners):
        return [owners[index]]
    return list(owners)


@dataclass
class _WritePlan:
    document: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    tag_owners: dict[str, str] = field(default_factory=dict)  # alias -> record id
    set_owners: list[str] = field(default_factory=list)
    delete_owners: list[str] = field(default_factory=list)
    mutations: int = 0

    def owners_of(self, alias: str, error: Mapping[str, Any]) -> list[str]:
        if alias in self.tag_owners:
            return [self.tag_owners[alias]]
        if alias == "set":
            return _element_owners(error, self.set_owners)
        return list(self.delete_owners)


def _write_document(changes: Sequence[WriteBack], tier_field: str) -> _WritePlan:
    """One mutation document for a batch: aliased tagsAdd/tagsRemove per customer, one
    metafieldsSet and one metafieldsDelete for all of them. Variables carry every value."""
    plan = _WritePlan()
    declarations: list[str] = []
    fields: list[str] = []
    to_set: list[dict[str, Any]] = []
    to_delete: list[dict[str, Any]] = []
    for index, change in enumerate(changes):
        for alias, mutation, tags in (
            (f"add{index}", "tagsAdd", change.add_tags),
            (f"rem{index}", "tagsRemove", change.remove_tags),
        ):
            if not tags:
                continue
            if f"id{index}" not in plan.variables:
                declarations.append(f"$id{index}: ID!")
                plan.variables[f"id{index}"] = change.record_id
            declarations.append(f"${alias}: [String!]!")
            plan.variables[alias] = list(tags)
            plan.tag_owners[alias] = change.record_id
            fields.append(f"{alias}: {mutation}(id: $id{index}, tags: ${alias}) {{ userErrors {{ field message }} }}")
        if tier_field not in change.set_fields:
            continue
        identifier = {"ownerId": change.record_id, "namespace": TIER_NAMESPACE, "key": TIER_KEY}
        value = change.set_fields[tier_field]
        if value:
            to_set.append({**identifier, "type": "single_line_text_field", "value": value})
            plan.set_owners.append(change.record_id)
        else:
            to_delete.append(identifier)
            plan.delete_owners.append(change.record_id)
    if to_set:
        declarations.append("$mf: [MetafieldsSetInput!]!")
        plan.variables["mf"] = to_set
        fields.append("set: metafieldsSet(metafields: $mf) { userErrors { field message code elementIndex } }")
    if to_delete:
        declarations.append("$mfd: [MetafieldIdentifierInput!]!")
        plan.variables["mfd"] = to_delete
        fields.append(
            "del: metafieldsDelete(metafields: $mfd) { deletedMetafields { key } userErrors { field message } }"
        )
    plan.mutations = len(fields)
    if fields:
        plan.document = "mutation CrmsyncWrite(" + ", ".join(declarations) + ") {\n  " + "\n  ".join(fields) + "\n}"
    return plan


CONNECTOR = ShopifyConnector
