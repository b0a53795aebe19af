"""Shopify Admin GraphQL API emulator (version 2026-10) for tests and the demo.

Every document is parsed and validated against the trimmed SDL derived from Shopify's published
schema (`scripts/shopify_sdl.py`), so a field crmsync should not use, or mistypes, fails here the
way it fails at Shopify. Implemented: `customers`, `orders`, `customer`, `order`, `shop` with
cursor paging, sort keys and the `updated_at`/`created_at`/`id`/`email`/`customer_id` search
filters; `tagsAdd`, `tagsRemove`, `metafieldsSet` (25 per call, atomic), `metafieldsDelete`;
`currentAppInstallation { accessScopes }`; `customersCount`, `ordersCount`; bulk queries and bulk
mutations through staged uploads (`sandbox_bulk.py`); the `X-Shopify-Access-Token` check; calculated query
cost with a leaky bucket (`extensions.cost.throttleStatus`, `THROTTLED` and `MAX_COST_EXCEEDED`
errors, HTTP 200).

Tokens as a Dev Dashboard app gets them (shopify.dev, client-credentials-grant, offline-access-
tokens; see ../shared/api-notes/shopify.md): `POST /admin/oauth/access_token` with
`grant_type=client_credentials` answers `{access_token, scope, expires_in: 86399}` (the lifetime
is `token_ttl_s`, set through `/_sandbox/app`), and with `grant_type=refresh_token` a new access
token (an hour) and a new refresh token, the old one retired once the new one is used. A wrong
client id or secret is 400 `invalid_client`, a refresh token not (or no longer) known 400
`invalid_grant`; an expired or unknown access token is 401 with Shopify's `[API] Invalid API key or
access token` body. The app's scopes (`/_sandbox/app`) are enforced: a root field without its scope
is `ACCESS_DENIED`, and without `read_all_orders` the orders of more than 60 days ago are not there.
The legacy fixed token of an app created in the admin before 2026 keeps working.

A shop Shopify has closed to the API (`shop_state` through `/_sandbox/app`) answers every Admin API
request as Shopify does, whatever the token: `frozen` (unpaid bills) 402 `{"errors": "Unavailable
Shop"}`, `unavailable` 403 with the same body (what GraphQL clients see, not a missing scope:
that is `ACCESS_DENIED` in a 200), `locked` 423 `{"errors": "This store is unavailable"}`.

Shapes marked (assumed) in ../shared/api-notes/shopify.md are followed as written there: the
401 body text, the userError messages, HTTP 200 for throttling.

This module is the app (routes, credentials, the app's settings, Shopify's error shapes); the
GraphQL execution and its resolvers are in `sandbox_graphql.py`, the mutations in
`sandbox_mutations.py`, query cost and the bucket in `sandbox_cost.py`, the records in
`sandbox_store.py`, the token endpoint in `sandbox_tokens.py`, the search syntax in `sandbox_search.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, OperationType, parse
from werkzeug.wrappers import Request, Response

from connectors.sandbox import Route, SandboxApp, VendorError, json_response, pop_zone
from connectors.sandbox.faults import FaultRule
from connectors.sandbox.store import Record
from connectors.shopify import sandbox_bulk
from connectors.shopify.sandbox_cost import BUCKET_SIZE as BUCKET_SIZE
from connectors.shopify.sandbox_cost import MAX_QUERY_COST, CostBucket
from connectors.shopify.sandbox_cost import RESTORE_RATE as RESTORE_RATE
from connectors.shopify.sandbox_graphql import API_VERSION, execute
from connectors.shopify.sandbox_graphql import admin_schema as admin_schema
from connectors.shopify.sandbox_mutations import MAX_TAGS as MAX_TAGS
from connectors.shopify.sandbox_store import ShopStore
from connectors.shopify.sandbox_tokens import CLIENT_CREDENTIALS_TTL, offline_pair, token_endpoint

BAD_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
DEFAULT_TOKEN = "shpat_sandbox_0123456789abcdef"
DEFAULT_CLIENT_ID = "sandbox-client-id-0123456789abcdef"
DEFAULT_CLIENT_SECRET = "shpss_sandbox_client_secret_0123456789"
ALL_SCOPES = ("read_customers", "write_customers", "read_orders", "read_all_orders")
# How Shopify answers the Admin API of a shop closed to it, by `shop_state`: shopify.dev response
# codes (402 frozen, 423 locked); the bodies as reported by API clients (api-notes/shopify.md).
SHOP_STATES: dict[str, tuple[int, str]] = {
    "frozen": (402, "Unavailable Shop"),
    "unavailable": (403, "Unavailable Shop"),
    "locked": (423, "This store is unavailable"),
}


class ShopifySandbox(SandboxApp):
    type = "shopify"
    issues_tokens = True

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        time_scale: float = 1.0,
        access_token: str = DEFAULT_TOKEN,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        scopes: Sequence[str] = ALL_SCOPES,
        token_ttl_s: float = CLIENT_CREDENTIALS_TTL,
        bucket_size: float = BUCKET_SIZE,
        restore_rate: float = RESTORE_RATE,
        throttle_status: int = 200,
        **kwargs: Any,
    ) -> None:
        self.access_token = access_token
        self.client_id = client_id
        self.client_secret = client_secret
        self.scopes = list(scopes)
        self.token_ttl_s = float(token_ttl_s)
        # The shop's time zone (Settings > General): the day a customers `updated_at` filter matches.
        self.shop_timezone = "Europe/Amsterdam"
        self.replaced_by: dict[str, str] = {}  # new refresh token -> the one it replaces
        self.store = ShopStore()
        # The live records by gid (the chaos and bad-input tests edit them here).
        self.customers: dict[str, Record] = self.store.customers.records
        self.orders: dict[str, Record] = self.store.orders.records
        self.bucket = CostBucket(bucket_size, restore_rate * time_scale)
        self.throttle_status = throttle_status
        self.shop_state = "active"
        self.bulk = sandbox_bulk.BulkState()
        super().__init__(data, time_scale=time_scale, **kwargs)

    # ----- routes and hooks ---------------------------------------------------------------------
    def client_settings(self) -> dict[str, Any]:
        # A Dev Dashboard app's credentials; no request-count limit: Shopify paces by query cost,
        # which the connector reads from replies.
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_version": API_VERSION,
            **super().client_settings(),
        }

    def known_secrets(self) -> list[str]:
        return [self.client_secret, self.access_token]

    def routes(self) -> Sequence[Route]:
        return [
            Route("/admin/api/<version>/graphql.json", ("POST",), self.graphql_endpoint, lists=True),
            Route("/admin/oauth/access_token", ("POST",), self.token_endpoint, token=True),
            # The bucket behind staged uploads and bulk result URLs: no Admin API token there.
            Route(sandbox_bulk.UPLOAD_PATH, ("POST",), self.upload_endpoint, token=True),
            Route(sandbox_bulk.RESULTS_PATH, ("GET",), self.results_endpoint, token=True),
        ]

    def close(self) -> None:
        self.bulk.closed.set()

    def upload_endpoint(self, request: Request) -> Response:
        return sandbox_bulk.upload(self, request)

    def results_endpoint(self, request: Request, name: str) -> Response:
        return sandbox_bulk.download(self, request, name)

    def graphql_endpoint(self, request: Request, version: str) -> Response:
        if self.shop_state in SHOP_STATES:
            status, message = SHOP_STATES[self.shop_state]
            return json_response({"errors": message}, status)
        return execute(self, request, version)

    def token_endpoint(self, request: Request) -> Response:
        return token_endpoint(self, request)

    def authenticate(self, request: Request) -> Response | None:
        token = request.headers.get("X-Shopify-Access-Token") or ""
        if token != self.access_token and self.token_status(token) != "valid":
            return self.auth_failure()
        return None

    # ----- the app: scopes, token lifetime, tokens --------------------------------------------
    def app_settings(self) -> dict[str, Any]:
        return {
            "scopes": list(self.scopes),
            "token_ttl_s": self.token_ttl_s,
            "shop_timezone": self.shop_timezone,
            "shop_state": self.shop_state,
            **sandbox_bulk.settings_view(self.bulk),
            **super().app_settings(),
        }

    def change_app(self, partial: Mapping[str, Any]) -> None:
        rest = dict(partial)
        zone = pop_zone(rest, "shop_timezone")
        if "scopes" in rest:
            scopes = rest.pop("scopes")
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise VendorError(400, "bad_request", "scopes is a list of scope handles")
            self.scopes = list(scopes)
        if "token_ttl_s" in rest:
            ttl = rest.pop("token_ttl_s")
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
                raise VendorError(400, "bad_request", "token_ttl_s is a positive number of seconds")
            self.token_ttl_s = float(ttl)
        if "shop_state" in rest:
            state = rest.pop("shop_state")
            if state != "active" and state not in SHOP_STATES:
                raise VendorError(400, "bad_request", f"shop_state is active or one of {', '.join(SHOP_STATES)}")
            self.shop_state = state
        sandbox_bulk.change_settings(self.bulk, rest)
        super().change_app(rest)
        if zone is not None:
            self.shop_timezone = zone

    def app_action(self, name: str, request: Request) -> Response | None:
        if name == "offline-token" and request.method == "POST":
            # What the authorization-code or token-exchange grant with `expiring=1` hands an app.
            return json_response(offline_pair(self))
        return None

    def rename_fields(self, data: Any) -> Any:
        return data  # a renamed field fails validation instead (`sandbox_graphql._renamed_fields`)

    def granted(self) -> set[str]:
        """The app's scopes, with the read scope every write scope includes."""
        scopes = set(self.scopes)
        return scopes | {"read_" + s[len("write_") :] for s in scopes if s.startswith("write_")}

    def auth_failure(self) -> Response:
        return json_response({"errors": BAD_TOKEN}, 401)

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        return json_response({"errors": message}, status)

    def vendor_throttle(self, rule: FaultRule) -> Response:
        return self.throttled_body(requested=MAX_QUERY_COST)

    def throttled_body(self, requested: int) -> Response:
        body = {
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                    },
                }
            ],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": self.bucket.status(),
                }
            },
        }
        return json_response(body, self.throttle_status)

    def looks_throttled(self, response: Response) -> bool:
        if response.status_code == 429:
            return True
        return response.status_code == 200 and b'"THROTTLED"' in response.get_data()[:400]

    def looks_failed(self, response: Response) -> bool:
        head = response.get_data()[:20]
        return response.status_code == 200 and head.startswith(b'{"errors"')

    def parsed(self, request: Request) -> tuple[dict[str, Any] | None, DocumentNode | None]:
        """The request's JSON body and its document, parsed once (`is_write` needs them too)."""
        cached = request.environ.get("shopify.parsed")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        body: dict[str, Any] | None = None
        document: DocumentNode | None = None
        try:
            loaded = json.loads(request.get_data() or b"null")
            body = loaded if isinstance(loaded, dict) else None
            if body and isinstance(body.get("query"), str):
                document = parse(body["query"])
        except (ValueError, GraphQLError):
            pass
        request.environ["shopify.parsed"] = (body, document)
        return body, document

    def is_write(self, request: Request, route: Route | None) -> bool:
        _, document = self.parsed(request)
        if document is None:
            return False
        return any(
            isinstance(d, OperationDefinitionNode) and d.operation == OperationType.MUTATION
            for d in document.definitions
        )

    # ----- the records ------------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        self.store.load(data)

    def _find_customer(self, customer_id: str) -> Record | None:
        """The live record (tests stamp its modification time here)."""
        return self.store.customers.lookup(customer_id)

    def stamp_customer(self, customer_id: str, moment: datetime) -> None:
        """Sets a customer's modification time as the vendor would have written it (a test moves
        records onto a read's boundary)."""
        customer = self._find_customer(customer_id)
        if customer is None:
            raise KeyError(customer_id)
        customer["updatedAt"] = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        return self.store.customer_fixture(customer_id)

    def delete_customer(self, customer_id: str) -> dict[str, Any] | None:
        fixture = self.store.customer_fixture(customer_id)
        if fixture is not None:
            self.store.customers.remove(customer_id)
        return fixture

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.store.patch_customer(customer_id, partial)

    def put_order(self, item: Mapping[str, Any]) -> None:
        """An order placed in the shop, in fixture shape (as a shopper checking out would)."""
        with self.lock:
            self.store.orders.add(self.store.order("order", item))

    def put_checkout(self, item: Mapping[str, Any]) -> None:
        """A checkout left (or completed: `completedAt`) by a shopper, in fixture shape."""
        with self.lock:
            self.store.checkouts.add(self.store.checkout("checkout", item))


SANDBOX = ShopifySandbox
