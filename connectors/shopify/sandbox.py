"""Shopify Admin GraphQL API emulator (version 2026-10) for tests and the demo.

Every document is parsed and validated against the trimmed SDL derived from Shopify's published
schema (`scripts/shopify_sdl.py`), so a field crmsync should not use, or mistypes, fails here the
way it fails at Shopify. Implemented: `customers`, `orders`, `customer`, `order`, `shop` with
cursor paging, sort keys and the `updated_at`/`created_at`/`id`/`email`/`customer_id` search
filters; `tagsAdd`, `tagsRemove`, `metafieldsSet` (25 per call, atomic), `metafieldsDelete`;
`currentAppInstallation { accessScopes }`; the `X-Shopify-Access-Token` check; calculated query
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

Shapes marked (assumed) in ../shared/api-notes/shopify.md are followed as written there: the
401 body text, the userError messages, HTTP 200 for throttling.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_schema,
    execute_sync,
    get_named_type,
    parse,
    validate,
)
from graphql.language import Visitor, visit
from graphql.utilities import TypeInfo, TypeInfoVisitor, value_from_ast
from werkzeug.wrappers import Request, Response

from connectors.sandbox import FixtureError, Route, SandboxApp, VendorError, json_response, utcnow
from connectors.sandbox.faults import FaultRule
from connectors.shopify.search import SearchSyntaxError, compile_query
from mapping.model import parse_timestamp

API_VERSION = "2026-10"
MAX_PAGE = 250
MAX_QUERY_COST = 1000
BUCKET_SIZE = 2000.0
RESTORE_RATE = 100.0  # points per second on the Standard plan
MUTATION_COST = 10
MAX_METAFIELDS_PER_SET = 25
MAX_TAGS = 250
MAX_TAG_LENGTH = 255
CUSTOMER_GID = re.compile(r"^gid://shopify/Customer/(\d+)$")
ORDER_GID = re.compile(r"^gid://shopify/Order/(\d+)$")
BAD_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
DEFAULT_TOKEN = "shpat_sandbox_0123456789abcdef"
DEFAULT_CLIENT_ID = "sandbox-client-id-0123456789abcdef"
DEFAULT_CLIENT_SECRET = "shpss_sandbox_client_secret_0123456789"
CLIENT_CREDENTIALS_TTL = 86399  # "Always 86399 (24 hours)"
OFFLINE_TOKEN_TTL = 3600
REFRESH_TOKEN_TTL = 7_776_000  # 90 days
RECENT_ORDERS_DAYS = 60
ALL_SCOPES = ("read_customers", "write_customers", "read_orders", "read_all_orders")
# The scope each root field needs (a write scope includes its read scope).
ROOT_SCOPES = {
    "customers": "read_customers",
    "customer": "read_customers",
    "orders": "read_orders",
    "order": "read_orders",
    "tagsAdd": "write_customers",
    "tagsRemove": "write_customers",
    "metafieldsSet": "write_customers",
    "metafieldsDelete": "write_customers",
}


@cache
def admin_schema() -> GraphQLSchema:
    sdl = resources.files("connectors.shopify").joinpath(f"admin_{API_VERSION}.graphql").read_text()
    return build_schema(sdl)


def _gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def _number(gid: str) -> int:
    return int(gid.rsplit("/", 1)[-1])


def _iso(value: Any) -> str:
    return parse_timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_iso() -> str:
    return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


class CostBucket:
    """Shopify's leaky bucket of query-cost points, restored at `rate` per second."""

    def __init__(self, size: float, rate: float) -> None:
        self.size = size
        self.rate = rate
        self.available = size
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def _restore(self) -> None:
        now = time.monotonic()
        self.available = min(self.size, self.available + (now - self.at) * self.rate)
        self.at = now

    def take(self, cost: float) -> bool:
        with self.lock:
            self._restore()
            if cost > self.available:
                return False
            self.available -= cost
            return True

    def refund(self, points: float) -> None:
        with self.lock:
            self._restore()
            self.available = min(self.size, self.available + points)

    def status(self) -> dict[str, float]:
        with self.lock:
            self._restore()
            return {
                "maximumAvailable": self.size,
                "currentlyAvailable": round(self.available, 1),
                "restoreRate": self.rate,
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
        self._replaced_by: dict[str, str] = {}  # new refresh token -> the one it replaces
        self.customers: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.bucket = CostBucket(bucket_size, restore_rate * time_scale)
        self.throttle_status = throttle_status
        self._metafield_seq = 1000
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
        ]

    def authenticate(self, request: Request) -> Response | None:
        token = request.headers.get("X-Shopify-Access-Token") or ""
        if token != self.access_token and self.token_status(token) != "valid":
            return self.auth_failure()
        return None

    # ----- the app: scopes, token lifetime, tokens --------------------------------------------
    def app_settings(self) -> dict[str, Any]:
        return {"scopes": list(self.scopes), "token_ttl_s": self.token_ttl_s, **super().app_settings()}

    def change_app(self, partial: Mapping[str, Any]) -> None:
        rest = dict(partial)
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
        super().change_app(rest)

    def app_action(self, name: str, request: Request) -> Response | None:
        if name == "offline-token" and request.method == "POST":
            # What the authorization-code or token-exchange grant with `expiring=1` hands an app.
            return json_response(self._offline_pair())
        return None

    def rename_fields(self, data: Any) -> Any:
        return data  # a renamed field fails validation instead (`_renamed_fields`)

    def granted(self) -> set[str]:
        """The app's scopes, with the read scope every write scope includes."""
        scopes = set(self.scopes)
        return scopes | {"read_" + s[len("write_") :] for s in scopes if s.startswith("write_")}

    def _offline_pair(self) -> dict[str, Any]:
        ttl = min(OFFLINE_TOKEN_TTL, self.token_ttl_s)
        return {
            "access_token": self.issue_token("shpat_", ttl),
            "expires_in": int(ttl),
            "refresh_token": self.issue_token("shprt_", REFRESH_TOKEN_TTL, kind="refresh"),
            "refresh_token_expires_in": REFRESH_TOKEN_TTL,
            "scope": ",".join(sorted(self.granted())),
        }

    def token_endpoint(self, request: Request) -> Response:
        """`POST /admin/oauth/access_token`: form-encoded as documented, or JSON as Shopify's own
        libraries send it. Errors are JSON when asked for (`Accept: application/json`), else an
        HTML page, as reported of the real endpoint."""
        if request.mimetype == "application/json":
            try:
                loaded = json.loads(request.get_data() or b"{}")
            except ValueError:
                loaded = None
            form: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        else:
            form = request.form.to_dict()
        wants_json = "json" in request.headers.get("Accept", "")
        grant = form.get("grant_type")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return _oauth_error("invalid_client", "Client authentication failed", wants_json)
        with self.lock:
            if grant == "client_credentials":
                reply = {
                    "access_token": self.issue_token("shpat_", self.token_ttl_s),
                    "scope": ",".join(sorted(self.granted())),
                    "expires_in": int(self.token_ttl_s),
                }
                return json_response(reply)
            if grant == "refresh_token":
                used = str(form.get("refresh_token") or "")
                if self.token_status(used, kind="refresh") != "valid":
                    return _oauth_error("invalid_grant", "The refresh token is invalid or expired", wants_json)
                # The token this one replaced is retired now that the new one is in use.
                retired = self._replaced_by.pop(used, None)
                if retired is not None:
                    self.issued.pop(retired, None)
                reply = self._offline_pair()
                self._replaced_by[str(reply["refresh_token"])] = used
                return json_response(reply)
        return _oauth_error("unsupported_grant_type", f"grant_type {grant!r} is not supported", wants_json)

    def auth_failure(self) -> Response:
        return json_response({"errors": BAD_TOKEN}, 401)

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        return json_response({"errors": message}, status)

    def vendor_throttle(self, rule: FaultRule) -> Response:
        return self._throttled_body(requested=MAX_QUERY_COST)

    def _throttled_body(self, requested: int) -> Response:
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

    def _document(self, request: Request) -> tuple[dict[str, Any] | None, DocumentNode | None]:
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
        _, document = self._document(request)
        if document is None:
            return False
        return any(
            isinstance(d, OperationDefinitionNode) and d.operation == OperationType.MUTATION
            for d in document.definitions
        )

    # ----- fixtures -------------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        for index, item in enumerate(data.get("customers") or []):
            self._load_customer(index, item)
        for index, item in enumerate(data.get("orders") or []):
            self._load_order(index, item)

    def _load_customer(self, index: int, item: Any) -> None:
        where = f"shopify/customers.json item {index}"
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected an object")
        gid = str(item.get("id", ""))
        if not CUSTOMER_GID.match(gid):
            raise FixtureError(f"{where}: id must look like gid://shopify/Customer/123")
        node = copy.deepcopy(item)
        tags = node.get("tags", [])
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise FixtureError(f"{where}: tags must be a list of strings")
        node["tags"] = tags
        for key in ("defaultEmailAddress", "defaultPhoneNumber", "defaultAddress"):
            if node.get(key) is not None and not isinstance(node[key], dict):
                raise FixtureError(f"{where}: {key} must be an object or null")
        metafields = node.get("metafields", [])
        if not isinstance(metafields, list):
            raise FixtureError(f"{where}: metafields must be a list")
        stored = []
        for mf in metafields:
            if not isinstance(mf, dict) or not all(isinstance(mf.get(k), str) for k in ("namespace", "key")):
                raise FixtureError(f"{where}: each metafield needs namespace and key strings")
            stored.append(self._new_metafield(gid, mf["namespace"], mf["key"], mf.get("type"), mf.get("value")))
        node["metafields"] = stored
        try:
            node["createdAt"] = _iso(node.get("createdAt") or node.get("updatedAt") or _now_iso())
            node["updatedAt"] = _iso(node.get("updatedAt") or node["createdAt"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise FixtureError(f"{where}: createdAt/updatedAt must be ISO-8601 ({exc})") from None
        node.setdefault("firstName", None)
        node.setdefault("lastName", None)
        node.setdefault("note", None)
        node.setdefault("state", "ENABLED")
        node.setdefault("locale", "nl")
        node.setdefault("verifiedEmail", True)
        node.setdefault("defaultEmailAddress", None)
        node.setdefault("defaultPhoneNumber", None)
        node.setdefault("defaultAddress", None)
        self.customers[gid] = node

    def _load_order(self, index: int, item: Any) -> None:
        where = f"shopify/orders.json item {index}"
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected an object")
        gid = str(item.get("id", ""))
        if not ORDER_GID.match(gid):
            raise FixtureError(f"{where}: id must look like gid://shopify/Order/123")
        node = copy.deepcopy(item)
        customer = node.get("customer")
        if customer is not None and not (isinstance(customer, dict) and isinstance(customer.get("id"), str)):
            raise FixtureError(f"{where}: customer must be {{'id': 'gid://shopify/Customer/...'}} or null")
        total = node.get("totalPriceSet")
        if not _is_money_bag(total):
            raise FixtureError(f"{where}: totalPriceSet must be a MoneyBag with shopMoney.amount/currencyCode")
        if node.get("currentTotalPriceSet") is not None and not _is_money_bag(node["currentTotalPriceSet"]):
            raise FixtureError(f"{where}: currentTotalPriceSet must be a MoneyBag")
        try:
            node["createdAt"] = _iso(node.get("createdAt") or _now_iso())
            node["updatedAt"] = _iso(node.get("updatedAt") or node["createdAt"])
            node["processedAt"] = _iso(node.get("processedAt") or node["createdAt"])
            if node.get("cancelledAt"):
                node["cancelledAt"] = _iso(node["cancelledAt"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise FixtureError(f"{where}: timestamps must be ISO-8601 ({exc})") from None
        currency = str(node["totalPriceSet"]["shopMoney"]["currencyCode"])
        node.setdefault("currentTotalPriceSet", copy.deepcopy(total))
        node.setdefault("totalRefundedSet", _money_bag("0.00", currency))
        node.setdefault("currencyCode", currency)
        node.setdefault("name", f"#{1000 + len(self.orders) + 1}")
        node.setdefault("test", False)
        node.setdefault("closed", False)
        node.setdefault("cancelledAt", None)
        node.setdefault("displayFinancialStatus", "PAID")
        node.setdefault("tags", [])
        node.setdefault("email", None)
        node.setdefault("phone", None)
        node.setdefault("sourceName", "web")
        node.setdefault("billingAddress", None)
        self.orders[gid] = node

    def _new_metafield(self, owner: str, namespace: str, key: str, type_: Any, value: Any) -> dict[str, Any]:
        self._metafield_seq += 1
        now = _now_iso()
        text = "" if value is None else str(value)
        return {
            "id": _gid("Metafield", self._metafield_seq),
            "namespace": namespace,
            "key": key,
            "type": str(type_ or "single_line_text_field"),
            "value": text,
            "compareDigest": hashlib.sha256(f"{owner}|{namespace}|{key}|{text}".encode()).hexdigest(),
            "createdAt": now,
            "updatedAt": now,
        }

    def _find_customer(self, customer_id: str) -> dict[str, Any] | None:
        gid = customer_id if customer_id.startswith("gid://") else _gid("Customer", int(customer_id))
        return self.customers.get(gid)

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        try:
            node = self._find_customer(customer_id)
        except ValueError:
            return None
        if node is None:
            return None
        fixture = copy.deepcopy(node)
        fixture["metafields"] = [{k: mf[k] for k in ("namespace", "key", "type", "value")} for mf in node["metafields"]]
        fixture.update(self._derived(node))
        return fixture

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            node = self._find_customer(customer_id)
        except ValueError:
            return None
        if node is None:
            return None
        for key, value in partial.items():
            if key == "metafields" and isinstance(value, list):
                for mf in value:
                    self._upsert_metafield(node, mf["namespace"], mf["key"], mf.get("type"), mf.get("value"))
            elif key not in ("id", "createdAt", "updatedAt"):
                node[key] = copy.deepcopy(value)
        node["updatedAt"] = _now_iso()
        return self.customer_fixture(node["id"])

    def _upsert_metafield(
        self, node: dict[str, Any], namespace: str, key: str, type_: Any, value: Any
    ) -> dict[str, Any]:
        for mf in node["metafields"]:
            if mf["namespace"] == namespace and mf["key"] == key:
                mf["value"] = "" if value is None else str(value)
                mf["type"] = str(type_ or mf["type"])
                mf["updatedAt"] = _now_iso()
                mf["compareDigest"] = hashlib.sha256(
                    f"{node['id']}|{namespace}|{key}|{mf['value']}".encode()
                ).hexdigest()
                found: dict[str, Any] = mf
                return found
        created: dict[str, Any] = self._new_metafield(node["id"], namespace, key, type_, value)
        node["metafields"].append(created)
        return created

    def _orders_of(self, customer_gid: str) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if (o.get("customer") or {}).get("id") == customer_gid]

    def _derived(self, node: dict[str, Any]) -> dict[str, Any]:
        orders = self._orders_of(node["id"])
        spent = sum(
            (Decimal(o["currentTotalPriceSet"]["shopMoney"]["amount"]) for o in orders if not o.get("cancelledAt")),
            Decimal(0),
        )
        currency = orders[0]["currencyCode"] if orders else "EUR"
        email = (node.get("defaultEmailAddress") or {}).get("emailAddress")
        name = " ".join(p for p in (node.get("firstName"), node.get("lastName")) if p)
        return {
            "legacyResourceId": str(_number(node["id"])),
            "displayName": name or email or "",
            "numberOfOrders": str(len(orders)),
            "amountSpent": {"amount": f"{spent:.2f}", "currencyCode": currency},
        }

    # ----- the GraphQL endpoint --------------------------------------------------------------------
    def graphql_endpoint(self, request: Request, version: str) -> Response:
        if not re.match(r"^(\d{4}-(01|04|07|10)|unstable)$", version):
            return json_response({"errors": "Not Found"}, 404)
        body, document = self._document(request)
        if body is None or not isinstance(body.get("query"), str):
            return json_response({"errors": {"query": "Required parameter missing or invalid"}}, 400)
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return json_response({"errors": {"variables": "must be an object"}}, 400)
        if document is None:
            try:
                parse(body["query"])
            except GraphQLError as exc:
                return json_response({"errors": [_error_json(exc)]})
        assert document is not None
        schema = admin_schema()
        problems = validate(schema, document)
        if problems:
            return json_response({"errors": [_error_json(p) for p in problems]})
        if self.renamed:
            gone = _renamed_fields(schema, document, self.renamed)
            if gone:
                return json_response({"errors": gone})
        try:
            requested = query_cost(schema, document, variables, body.get("operationName"))
        except GraphQLError as exc:
            return json_response({"errors": [_error_json(exc)]})
        if requested > MAX_QUERY_COST:
            return json_response(
                {
                    "errors": [
                        {
                            "message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                            f"({MAX_QUERY_COST}).",
                            "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST},
                        }
                    ]
                }
            )
        if not self.bucket.take(requested):
            return self._throttled_body(requested)
        context = _Context(self, request)
        with self.lock:
            result = execute_sync(
                schema,
                document,
                root_value=self._roots(),
                context_value=context,
                variable_values=variables,
                operation_name=body.get("operationName"),
            )
        actual = query_cost(schema, document, variables, body.get("operationName"), returned=context.returned)
        actual = min(requested, actual)
        self.bucket.refund(requested - actual)
        entry = request.environ.get("sandbox.log_entry")
        if entry is not None:
            entry.update(requested_cost=requested, cost=actual)  # the request log shows what was charged
        payload: dict[str, Any] = {}
        if result.errors:
            payload["errors"] = [_error_json(e) for e in result.errors]
        payload["data"] = result.data
        payload["extensions"] = {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self.bucket.status(),
            }
        }
        return json_response(payload)

    def _roots(self) -> dict[str, Any]:
        roots = {
            "customers": self._resolve_customers,
            "orders": self._resolve_orders,
            "customer": lambda info, id: self._node_or_none(self.customers, id),
            "order": lambda info, id: self._visible_order(self.orders.get(id)),
            "currentAppInstallation": lambda info: {
                "id": "gid://shopify/AppInstallation/1",
                "accessScopes": [{"handle": s, "description": f"The {s} access scope"} for s in sorted(self.granted())],
            },
            "shop": lambda info: {
                "id": "gid://shopify/Shop/1",
                "name": "crmsync sandbox",
                "myshopifyDomain": "crmsync-sandbox.myshopify.com",
                "currencyCode": "EUR",
            },
            "tagsAdd": self._tags_add,
            "tagsRemove": self._tags_remove,
            "metafieldsSet": self._metafields_set,
            "metafieldsDelete": self._metafields_delete,
        }
        granted = self.granted()
        for field, scope in ROOT_SCOPES.items():
            if scope not in granted:
                roots[field] = _access_denied(field, scope)
        return roots

    def _visible_order(self, node: dict[str, Any] | None) -> dict[str, Any] | None:
        """Without `read_all_orders` only the orders created in the last 60 days exist for the app."""
        if node is None or "read_all_orders" in self.granted():
            return node
        cutoff = self.now() - timedelta(days=RECENT_ORDERS_DAYS)
        return node if parse_timestamp(node["createdAt"]) >= cutoff else None

    def _node_or_none(self, store: Mapping[str, dict[str, Any]], gid: str) -> dict[str, Any] | None:
        return store.get(gid)

    # ----- list queries ------------------------------------------------------------------------------
    def _resolve_customers(self, info: GraphQLResolveInfo[_Context], **args: Any) -> dict[str, Any]:
        getters: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "updated_at": lambda n: parse_timestamp(n["updatedAt"]),
            "created_at": lambda n: parse_timestamp(n["createdAt"]),
            "id": lambda n: _number(n["id"]),
            "email": lambda n: (n.get("defaultEmailAddress") or {}).get("emailAddress"),
            "name": lambda n: " ".join(p for p in (n.get("firstName"), n.get("lastName")) if p),
            "state": lambda n: n.get("state"),
        }
        sort_keys: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "ID": lambda n: 0,
            "UPDATED_AT": lambda n: n["updatedAt"],
            "CREATED_AT": lambda n: n["createdAt"],
            "NAME": lambda n: getters["name"](n).lower(),
            "LOCATION": lambda n: str((n.get("defaultAddress") or {}).get("city") or ""),
            "RELEVANCE": lambda n: 0,
        }
        return self._connection(info, list(self.customers.values()), getters, sort_keys, args)

    def _resolve_orders(self, info: GraphQLResolveInfo[_Context], **args: Any) -> dict[str, Any]:
        getters: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "updated_at": lambda n: parse_timestamp(n["updatedAt"]),
            "created_at": lambda n: parse_timestamp(n["createdAt"]),
            "processed_at": lambda n: parse_timestamp(n["processedAt"]),
            "id": lambda n: _number(n["id"]),
            "email": lambda n: n.get("email"),
            "customer_id": lambda n: _number((n.get("customer") or {}).get("id") or "0/0"),
            "name": lambda n: n.get("name"),
        }
        sort_keys: dict[str, Callable[[Mapping[str, Any]], Any]] = {
            "ID": lambda n: 0,
            "UPDATED_AT": lambda n: n["updatedAt"],
            "CREATED_AT": lambda n: n["createdAt"],
            "PROCESSED_AT": lambda n: n["processedAt"],
            "ORDER_NUMBER": lambda n: n.get("name") or "",
            "TOTAL_PRICE": lambda n: Decimal(n["totalPriceSet"]["shopMoney"]["amount"]),
            "RELEVANCE": lambda n: 0,
        }
        visible = [n for n in self.orders.values() if self._visible_order(n) is not None]
        return self._connection(info, visible, getters, sort_keys, args)

    def _connection(
        self,
        info: GraphQLResolveInfo[_Context],
        nodes: list[dict[str, Any]],
        getters: Mapping[str, Callable[[Mapping[str, Any]], Any]],
        sort_keys: Mapping[str, Callable[[Mapping[str, Any]], Any]],
        args: Mapping[str, Any],
    ) -> dict[str, Any]:
        first, last = args.get("first"), args.get("last")
        if first is None and last is None:
            raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
        size = first if first is not None else last
        if size is None or size < 0 or size > MAX_PAGE:
            raise GraphQLError(
                f"The maximum page size is {MAX_PAGE}; requested {size}.",
                extensions={"code": "BAD_REQUEST", "maxPageSize": MAX_PAGE},
            )
        try:
            matches = compile_query(args.get("query"), getters)
        except SearchSyntaxError as exc:
            raise GraphQLError(str(exc), extensions={"code": "BAD_REQUEST"}) from None
        sort_name = str(args.get("sortKey") or "ID")
        sort_value = sort_keys.get(sort_name, sort_keys["ID"])
        items = sorted((n for n in nodes if matches(n)), key=lambda n: (sort_value(n), _number(n["id"])))
        reverse = bool(args.get("reverse"))
        if reverse:
            items.reverse()
        if last is not None and first is None:
            items.reverse()
        for name in ("after", "before"):
            cursor = args.get(name)
            if cursor is None:
                continue
            position = _decode_cursor(cursor)
            key = (position["last_value"], position["last_id"])
            descending = reverse != (last is not None and first is None)
            if name == "after":
                items = [n for n in items if _after(_cursor_key(n, sort_value), key, descending)]
            else:
                items = [n for n in items if _after(key, _cursor_key(n, sort_value), descending)]
        has_more = len(items) > size
        page = items[:size]
        page = self.apply_item_fault(info.context.request, page)
        info.context.returned[str(info.path.key)] = len(page)
        edges = [{"cursor": _encode_cursor(n, sort_value), "node": n} for n in page]
        return {
            "edges": edges,
            "nodes": page,
            "pageInfo": {
                "hasNextPage": has_more,
                "hasPreviousPage": args.get("after") is not None,
                "startCursor": edges[0]["cursor"] if edges else None,
                "endCursor": edges[-1]["cursor"] if edges else None,
            },
        }

    # ----- mutations -----------------------------------------------------------------------------
    def _taggable(self, gid: str) -> dict[str, Any] | None:
        return self.customers.get(gid) or self.orders.get(gid)

    def _tags_add(self, info: GraphQLResolveInfo[_Context], id: str, tags: list[str]) -> dict[str, Any]:
        node = self._taggable(id)
        if node is None:
            return {"node": None, "userErrors": [{"field": ["id"], "message": "Resource not found"}]}
        wanted = _split_tags(tags)
        too_long = [t for t in wanted if len(t) > MAX_TAG_LENGTH]
        if too_long:
            return {
                "node": None,
                "userErrors": [
                    {"field": ["tags"], "message": f"Tag is too long (maximum is {MAX_TAG_LENGTH} characters)"}
                ],
            }
        have = {t.casefold() for t in node["tags"]}
        added = []
        for tag in wanted:
            if tag.casefold() not in have:
                have.add(tag.casefold())
                added.append(tag)
        if len(node["tags"]) + len(added) > MAX_TAGS:
            return {
                "node": None,
                "userErrors": [{"field": ["tags"], "message": f"A resource can have at most {MAX_TAGS} tags"}],
            }
        if added:
            node["tags"] = [*node["tags"], *added]
            node["updatedAt"] = _now_iso()
        return {"node": node, "userErrors": []}

    def _tags_remove(self, info: GraphQLResolveInfo[_Context], id: str, tags: list[str]) -> dict[str, Any]:
        node = self._taggable(id)
        if node is None:
            return {"node": None, "userErrors": [{"field": ["id"], "message": "Resource not found"}]}
        drop = {t.casefold() for t in _split_tags(tags)}
        kept = [t for t in node["tags"] if t.casefold() not in drop]
        if len(kept) != len(node["tags"]):
            node["tags"] = kept
            node["updatedAt"] = _now_iso()
        return {"node": node, "userErrors": []}

    def _metafields_set(self, info: GraphQLResolveInfo[_Context], metafields: list[dict[str, Any]]) -> dict[str, Any]:
        if len(metafields) > MAX_METAFIELDS_PER_SET:
            raise GraphQLError(
                f"The input array size of {len(metafields)} is greater than the maximum allowed of "
                f"{MAX_METAFIELDS_PER_SET}.",
                extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
            )
        errors = []
        for index, item in enumerate(metafields):
            problem = _metafield_problem(item, self.customers)
            if problem is not None:
                field, code, message = problem
                errors.append(
                    {
                        "field": ["metafields", str(index), field],
                        "message": message,
                        "code": code,
                        "elementIndex": index,
                    }
                )
        if errors:
            # Atomic, as documented: one bad item and nothing is written.
            return {"metafields": [], "userErrors": errors}
        written = []
        for item in metafields:
            owner = self.customers[item["ownerId"]]
            written.append(
                self._upsert_metafield(owner, item["namespace"], item["key"], item.get("type"), item["value"])
            )
            owner["updatedAt"] = _now_iso()
        return {"metafields": written, "userErrors": []}

    def _metafields_delete(
        self, info: GraphQLResolveInfo[_Context], metafields: list[dict[str, Any]]
    ) -> dict[str, Any]:
        deleted: list[dict[str, Any] | None] = []
        for item in metafields:
            owner = self.customers.get(item["ownerId"])
            match = None
            if owner is not None:
                for mf in owner["metafields"]:
                    if mf["namespace"] == item["namespace"] and mf["key"] == item["key"]:
                        match = mf
                if match is not None:
                    owner["metafields"].remove(match)
                    owner["updatedAt"] = _now_iso()
            deleted.append(
                {"ownerId": item["ownerId"], "namespace": item["namespace"], "key": item["key"]} if match else None
            )
        return {"deletedMetafields": deleted, "userErrors": []}


# ----- resolvers on object types ---------------------------------------------------------------------
class _Context:
    def __init__(self, sandbox: ShopifySandbox, request: Request) -> None:
        self.sandbox = sandbox
        self.request = request
        # Nodes each root connection actually returned (by response key): unused page slots are
        # refunded after execution, as Shopify documents.
        self.returned: dict[str, int] = {}


def _customer_field(name: str) -> Callable[..., Any]:
    def resolve(node: dict[str, Any], info: GraphQLResolveInfo[_Context], **args: Any) -> Any:
        sandbox: ShopifySandbox = info.context.sandbox
        if name in ("legacyResourceId", "displayName", "numberOfOrders", "amountSpent"):
            return sandbox._derived(node)[name]
        if name == "email":
            return (node.get("defaultEmailAddress") or {}).get("emailAddress")
        if name == "phone":
            return (node.get("defaultPhoneNumber") or {}).get("phoneNumber")
        if name == "metafield":
            namespace = args.get("namespace") or "$app"
            for mf in node["metafields"]:
                if mf["namespace"] == namespace and mf["key"] == args["key"]:
                    return mf
            return None
        if name == "metafields":
            items = [
                mf
                for mf in node["metafields"]
                if (args.get("namespace") is None or mf["namespace"] == args["namespace"])
                and (args.get("keys") is None or f"{mf['namespace']}.{mf['key']}" in args["keys"])
            ]
            size = args.get("first") or args.get("last") or 0
            if size > MAX_PAGE:
                raise GraphQLError(f"The maximum page size is {MAX_PAGE}; requested {size}.")
            page = items[:size]
            edges = [{"cursor": base64.b64encode(mf["id"].encode()).decode(), "node": mf} for mf in page]
            return {
                "edges": edges,
                "nodes": page,
                "pageInfo": {
                    "hasNextPage": len(items) > size,
                    "hasPreviousPage": False,
                    "startCursor": edges[0]["cursor"] if edges else None,
                    "endCursor": edges[-1]["cursor"] if edges else None,
                },
            }
        if name == "lastOrder":
            orders = sorted(sandbox._orders_of(node["id"]), key=lambda o: o["createdAt"])
            return orders[-1] if orders else None
        return node.get(name)

    return resolve


def _order_field(name: str) -> Callable[..., Any]:
    def resolve(node: dict[str, Any], info: GraphQLResolveInfo[_Context], **args: Any) -> Any:
        if name == "customer":
            ref = node.get("customer")
            return info.context.sandbox.customers.get(ref["id"]) if ref else None
        if name == "legacyResourceId":
            return str(_number(node["id"]))
        return node.get(name)

    return resolve


def _install_resolvers(schema: GraphQLSchema) -> None:
    customer = schema.type_map["Customer"]
    order = schema.type_map["Order"]
    assert isinstance(customer, GraphQLObjectType) and isinstance(order, GraphQLObjectType)
    for name, field in customer.fields.items():
        field.resolve = _customer_field(name)
    for name, field in order.fields.items():
        field.resolve = _order_field(name)
    node = schema.type_map["Node"]
    assert isinstance(node, GraphQLInterfaceType)
    node.resolve_type = lambda value, info, type_: (
        "Customer" if CUSTOMER_GID.match(value["id"]) else "Order" if ORDER_GID.match(value["id"]) else None
    )


_install_resolvers(admin_schema())


# ----- query cost ------------------------------------------------------------------------------------
def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any],
    operation_name: str | None,
    returned: Mapping[str, int] | None = None,
) -> int:
    """Shopify's documented model, simplified: scalars and enums 0, objects 1, a connection 2 plus
    its page size times the cost of one node, a mutation field 10. With `returned` (nodes each root
    connection gave back), the actual cost instead of the requested one."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if not operations:
        raise GraphQLError("No operation to execute")
    operation = operations[0]
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST * len(_fields(operation.selection_set, fragments))
    root_type = schema.query_type
    assert root_type is not None
    return _selection_cost(operation.selection_set, root_type, variables, fragments, returned)


def _fields(selection_set: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode]) -> list[FieldNode]:
    out: list[FieldNode] = []
    if selection_set is None:
        return out
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            out.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            out.extend(_fields(selection.selection_set, fragments))
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            out.extend(_fields(fragments[selection.name.value].selection_set, fragments))
    return out


def _selection_cost(
    selection_set: SelectionSetNode | None,
    parent: Any,
    variables: Mapping[str, Any],
    fragments: Mapping[str, FragmentDefinitionNode],
    returned: Mapping[str, int] | None = None,
) -> int:
    total = 0
    for node in _fields(selection_set, fragments):
        if node.name.value == "__typename" or not hasattr(parent, "fields"):
            continue
        field = parent.fields.get(node.name.value)
        if field is None:
            continue
        named = get_named_type(field.type)
        if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            continue
        if named.name.endswith("Connection"):
            size = 0
            for arg in node.arguments or ():
                if arg.name.value in ("first", "last"):
                    value = value_from_ast(arg.value, field.args[arg.name.value].type, dict(variables))
                    size = int(value or 0)
            response_key = node.alias.value if node.alias else node.name.value
            if returned is not None and response_key in returned:
                size = min(size, returned[response_key])
            per_node = 0
            for child in _fields(node.selection_set, fragments):
                child_field = named.fields.get(child.name.value)
                if child_field is None or child.name.value == "pageInfo":
                    continue
                child_type = get_named_type(child_field.type)
                if child.name.value == "nodes":
                    per_node = max(per_node, 1 + _selection_cost(child.selection_set, child_type, variables, fragments))
                elif child.name.value == "edges" and isinstance(child_type, GraphQLObjectType):
                    per_node = max(per_node, _selection_cost(child.selection_set, child_type, variables, fragments))
            total += 2 + size * per_node
        else:
            total += 1 + _selection_cost(node.selection_set, named, variables, fragments)
    return total


# ----- small helpers ---------------------------------------------------------------------------------
def _access_denied(field: str, scope: str) -> Callable[..., Any]:
    """A root field the app has no scope for: Shopify's ACCESS_DENIED error (HTTP 200)."""

    def resolve(*args: Any, **kwargs: Any) -> Any:
        raise GraphQLError(
            f"Access denied for {field} field. Required access: `{scope}` access scope.",
            extensions={
                "code": "ACCESS_DENIED",
                "documentation": "https://shopify.dev/api/usage/access-scopes",
                "requiredAccess": f"`{scope}` access scope.",
            },
        )

    return resolve


def _renamed_fields(schema: GraphQLSchema, document: DocumentNode, renamed: Mapping[str, str]) -> list[dict[str, Any]]:
    """An API version that renamed a field: a document selecting the old name fails validation,
    with Shopify's undefinedField error (the emulator's drift switch, `/_sandbox/app`)."""
    errors: list[dict[str, Any]] = []
    info = TypeInfo(schema)

    class Finder(Visitor):
        def enter_field(self, node: FieldNode, *_: Any) -> None:
            parent = info.get_parent_type()
            name = node.name.value
            if parent is not None and name in renamed:
                errors.append(
                    {
                        "message": f"Field '{name}' doesn't exist on type '{parent.name}'",
                        "locations": [{"line": node.loc.source.get_location(node.loc.start).line, "column": 1}]
                        if node.loc
                        else [],
                        "extensions": {"code": "undefinedField", "typeName": parent.name, "fieldName": name},
                    }
                )

    visit(document, TypeInfoVisitor(info, Finder()))
    return errors


def _oauth_error(code: str, description: str, as_json: bool) -> Response:
    if as_json:
        return json_response({"error": code, "error_description": description}, 400)
    page = f"<html><body><h1>Oauth error {code}: {description}</h1></body></html>"
    return Response(page, status=400, content_type="text/html; charset=utf-8")


def _is_money_bag(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("shopMoney"), dict)
        and isinstance(value["shopMoney"].get("amount"), str | int | float)
        and isinstance(value["shopMoney"].get("currencyCode"), str)
    )


def _money_bag(amount: str, currency: str) -> dict[str, Any]:
    money = {"amount": amount, "currencyCode": currency}
    return {"shopMoney": money, "presentmentMoney": dict(money)}


def _split_tags(tags: list[str]) -> list[str]:
    # tagsAdd accepts a list or one comma-separated string (documented); both end up split.
    out: list[str] = []
    for tag in tags:
        out.extend(part.strip() for part in tag.split(",") if part.strip())
    return out


def _metafield_problem(item: Mapping[str, Any], customers: Mapping[str, Any]) -> tuple[str, str, str] | None:
    if item["ownerId"] not in customers:
        return "ownerId", "INVALID", "Owner does not exist."
    namespace, key = item["namespace"], item["key"]
    if not 3 <= len(namespace) <= 255:
        return "namespace", "TOO_SHORT" if len(namespace) < 3 else "TOO_LONG", "Namespace must be 3-255 characters."
    if not re.match(r"^[A-Za-z0-9_-]{2,64}$", key):
        return "key", "INVALID", "Key must be 2-64 characters of letters, digits, '-' and '_'."
    type_ = item.get("type")
    if not type_:
        return "type", "BLANK", "Type can't be blank."
    value = item.get("value")
    if value is None or value == "":
        return "value", "BLANK", "Value can't be blank."
    if type_ == "single_line_text_field" and ("\n" in value or len(value) > 255):
        return "value", "INVALID_VALUE", "Value must be a single line of at most 255 characters."
    return None


def _encode_cursor(node: Mapping[str, Any], sort_value: Callable[[Mapping[str, Any]], Any]) -> str:
    value = sort_value(node)
    raw = json.dumps({"last_id": _number(node["id"]), "last_value": str(value)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or not isinstance(data.get("last_id"), int) or "last_value" not in data:
            raise ValueError
        return data
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise GraphQLError("Invalid cursor for current pagination.", extensions={"code": "BAD_REQUEST"}) from None


def _cursor_key(node: Mapping[str, Any], sort_value: Callable[[Mapping[str, Any]], Any]) -> tuple[str, int]:
    return (str(sort_value(node)), _number(node["id"]))


def _after(a: tuple[str, int], b: tuple[str, int], descending: bool) -> bool:
    return a < b if descending else a > b


def _error_json(error: GraphQLError) -> dict[str, Any]:
    out: dict[str, Any] = dict(error.formatted)
    match = re.match(r"Cannot query field '(\w+)' on type '(\w+)'", error.message)
    if match:
        # Shopify's wording and extension for an unknown field.
        out["message"] = f"Field '{match.group(1)}' doesn't exist on type '{match.group(2)}'"
        out["extensions"] = {"code": "undefinedField", "typeName": match.group(2), "fieldName": match.group(1)}
    return out


SANDBOX = ShopifySandbox
