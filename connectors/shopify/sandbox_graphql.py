"""GraphQL execution: a document checked against the schema, priced, run and answered as the
Admin API answers it, with the resolvers behind the root fields and the object types.

Every document is parsed and validated against the trimmed SDL derived from Shopify's published
schema (`scripts/shopify_sdl.py`), so a field crmsync should not use, or mistypes, fails here the
way it fails at Shopify. Lists page by cursor with Shopify's sort keys and search filters; a root
field the app has no scope for is `ACCESS_DENIED`, and without `read_all_orders` the orders of
more than 60 days ago are not there.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    build_schema,
    execute_sync,
    parse,
    validate,
)
from graphql.language import Visitor, visit
from graphql.utilities import TypeInfo, TypeInfoVisitor
from werkzeug.wrappers import Request, Response

from connectors.sandbox import json_response
from connectors.sandbox.store import page
from connectors.shopify.sandbox_bulk import (
    BULK_GID,
    advance,
    bulk_operation,
    bulk_operations,
    cancel,
    run_mutation,
    run_query,
    staged_uploads_create,
)
from connectors.shopify.sandbox_cost import MAX_QUERY_COST, query_cost
from connectors.shopify.sandbox_mutations import metafields_delete, metafields_set, tags_add, tags_remove
from connectors.shopify.sandbox_search import SearchSyntaxError, compile_query
from connectors.shopify.sandbox_store import CUSTOMER_GID, ORDER_GID, number
from mapping.model import parse_timestamp

if TYPE_CHECKING:
    from connectors.shopify.sandbox import ShopifySandbox

API_VERSION = "2026-10"
MAX_PAGE = 250
RECENT_ORDERS_DAYS = 60
# The scope each root field needs (a write scope includes its read scope).
ROOT_SCOPES = {
    "customers": "read_customers",
    "customer": "read_customers",
    "orders": "read_orders",
    "order": "read_orders",
    "abandonedCheckouts": "read_orders",
    "customersCount": "read_customers",
    "ordersCount": "read_orders",
    "tagsAdd": "write_customers",
    "tagsRemove": "write_customers",
    "metafieldsSet": "write_customers",
    "metafieldsDelete": "write_customers",
}


@cache
def admin_schema() -> GraphQLSchema:
    sdl = resources.files("connectors.shopify").joinpath(f"admin_{API_VERSION}.graphql").read_text()
    return build_schema(sdl)


class Context:
    def __init__(self, sandbox: ShopifySandbox, request: Request | None) -> None:
        self.sandbox = sandbox
        self.request = request
        # Nodes each root connection actually returned (by response key): unused page slots are
        # refunded after execution, as Shopify documents.
        self.returned: dict[str, int] = {}
        # A bulk query's execution: (offset, size) of the root connection's nodes, page size and
        # cursors ignored (as Shopify ignores them in bulk).
        self.bulk_slice: tuple[int, int] | None = None
        self.bulk_more = False  # whether nodes follow the slice


# ----- the endpoint ----------------------------------------------------------------------------------
def execute(sandbox: ShopifySandbox, request: Request, version: str) -> Response:
    """`POST /admin/api/<version>/graphql.json`."""
    if not re.match(r"^(\d{4}-(01|04|07|10)|unstable)$", version):
        return json_response({"errors": "Not Found"}, 404)
    body, document = sandbox.parsed(request)
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
    if sandbox.renamed:
        gone = _renamed_fields(schema, document, sandbox.renamed)
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
    if not sandbox.bucket.take(requested):
        return sandbox.throttled_body(requested)
    context = Context(sandbox, request)
    with sandbox.lock:
        advance(sandbox)
        result = execute_sync(
            schema,
            document,
            root_value=roots(sandbox),
            context_value=context,
            variable_values=variables,
            operation_name=body.get("operationName"),
        )
    actual = query_cost(schema, document, variables, body.get("operationName"), returned=context.returned)
    actual = min(requested, actual)
    sandbox.bucket.refund(requested - actual)
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
            "throttleStatus": sandbox.bucket.status(),
        }
    }
    return json_response(payload)


def roots(sandbox: ShopifySandbox) -> dict[str, Any]:
    roots = {
        "customers": _resolve_customers,
        "orders": _resolve_orders,
        "abandonedCheckouts": _resolve_checkouts,
        "customer": lambda info, id: sandbox.customers.get(id),
        "order": lambda info, id: visible_order(sandbox, sandbox.orders.get(id)),
        "currentAppInstallation": lambda info: {
            "id": "gid://shopify/AppInstallation/1",
            "accessScopes": [{"handle": s, "description": f"The {s} access scope"} for s in sorted(sandbox.granted())],
        },
        "shop": lambda info: {
            "id": "gid://shopify/Shop/1",
            "name": "crmsync sandbox",
            "myshopifyDomain": "crmsync-sandbox.myshopify.com",
            "currencyCode": "EUR",
            "ianaTimezone": sandbox.shop_timezone,
        },
        "customersCount": lambda info, **args: _count(
            list(sandbox.customers.values()), customer_filters(sandbox), **args
        ),
        "ordersCount": lambda info, **args: _count(_visible_orders(sandbox), ORDER_FILTERS, **args),
        "bulkOperationRunQuery": run_query,
        "tagsAdd": tags_add,
        "tagsRemove": tags_remove,
        "metafieldsSet": metafields_set,
        "metafieldsDelete": metafields_delete,
        "stagedUploadsCreate": staged_uploads_create,
        "bulkOperationRunMutation": run_mutation,
        "bulkOperationCancel": cancel,
        "bulkOperation": bulk_operation,
        "bulkOperations": bulk_operations,
    }
    granted = sandbox.granted()
    for field, scope in ROOT_SCOPES.items():
        if scope not in granted:
            roots[field] = _access_denied(field, scope)
    return roots


def visible_order(sandbox: ShopifySandbox, node: dict[str, Any] | None) -> dict[str, Any] | None:
    """Without `read_all_orders` only the orders created in the last 60 days exist for the app."""
    if node is None or "read_all_orders" in sandbox.granted():
        return node
    cutoff = sandbox.now() - timedelta(days=RECENT_ORDERS_DAYS)
    return node if parse_timestamp(node["createdAt"]) >= cutoff else None


# ----- list queries ----------------------------------------------------------------------------------
CUSTOMER_FILTERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "updated_at": lambda n: parse_timestamp(n["updatedAt"]),
    "created_at": lambda n: parse_timestamp(n["createdAt"]),
    "id": lambda n: number(n["id"]),
    "email": lambda n: (n.get("defaultEmailAddress") or {}).get("emailAddress"),
    "name": lambda n: " ".join(p for p in (n.get("firstName"), n.get("lastName")) if p),
    "state": lambda n: n.get("state"),
}
ORDER_FILTERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "updated_at": lambda n: parse_timestamp(n["updatedAt"]),
    "created_at": lambda n: parse_timestamp(n["createdAt"]),
    "processed_at": lambda n: parse_timestamp(n["processedAt"]),
    "id": lambda n: number(n["id"]),
    "email": lambda n: n.get("email"),
    "customer_id": lambda n: number((n.get("customer") or {}).get("id") or "0/0"),
    "name": lambda n: n.get("name"),
}


def customer_filters(sandbox: ShopifySandbox) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """CUSTOMER_FILTERS as this shop answers them: `updated_at` is "the date and time, matching a
    whole day, when the customer's information was last updated" (documented, the customers
    query's filters; orders' `updated_at` is a moment), so it compares the customer's day in the
    shop's time zone with the day the value names."""
    zone = ZoneInfo(sandbox.shop_timezone)
    return {**CUSTOMER_FILTERS, "updated_at": lambda n: parse_timestamp(n["updatedAt"]).astimezone(zone).date()}


def _resolve_customers(info: GraphQLResolveInfo[Context], **args: Any) -> dict[str, Any]:
    getters = customer_filters(info.context.sandbox)
    sort_keys: dict[str, Callable[[Mapping[str, Any]], Any]] = {
        "ID": lambda n: 0,
        "UPDATED_AT": lambda n: n["updatedAt"],
        "CREATED_AT": lambda n: n["createdAt"],
        "NAME": lambda n: getters["name"](n).lower(),
        "LOCATION": lambda n: str((n.get("defaultAddress") or {}).get("city") or ""),
        "RELEVANCE": lambda n: 0,
    }
    return _connection(info, list(info.context.sandbox.customers.values()), getters, sort_keys, args)


def _visible_orders(sandbox: ShopifySandbox) -> list[dict[str, Any]]:
    return [n for n in sandbox.orders.values() if visible_order(sandbox, n) is not None]


def _resolve_orders(info: GraphQLResolveInfo[Context], **args: Any) -> dict[str, Any]:
    sort_keys: dict[str, Callable[[Mapping[str, Any]], Any]] = {
        "ID": lambda n: 0,
        "UPDATED_AT": lambda n: n["updatedAt"],
        "CREATED_AT": lambda n: n["createdAt"],
        "PROCESSED_AT": lambda n: n["processedAt"],
        "ORDER_NUMBER": lambda n: n.get("name") or "",
        "TOTAL_PRICE": lambda n: Decimal(n["totalPriceSet"]["shopMoney"]["amount"]),
        "RELEVANCE": lambda n: 0,
    }
    return _connection(info, _visible_orders(info.context.sandbox), ORDER_FILTERS, sort_keys, args)


def _count(
    nodes: list[dict[str, Any]], getters: Mapping[str, Callable[[Mapping[str, Any]], Any]], **args: Any
) -> dict[str, Any]:
    """`customersCount` / `ordersCount`: at most `limit` (10,000 unless null), AT_LEAST beyond it."""
    matches = _matcher(args, getters)
    total = sum(1 for n in nodes if matches(n))
    limit = args.get("limit", 10_000)
    if limit is not None and total > limit:
        return {"count": limit, "precision": "AT_LEAST"}
    return {"count": total, "precision": "EXACT"}


def _resolve_checkouts(info: GraphQLResolveInfo[Context], **args: Any) -> dict[str, Any]:
    getters: dict[str, Callable[[Mapping[str, Any]], Any]] = {
        "created_at": lambda n: parse_timestamp(n["createdAt"]),
        "updated_at": lambda n: parse_timestamp(n["updatedAt"]),
        "id": lambda n: number(n["id"]),
        "status": lambda n: "closed" if n.get("completedAt") else "open",
        "recovery_state": lambda n: "recovered" if n.get("completedAt") else "not_recovered",
    }
    # The documented AbandonedCheckoutSortKeys: no UPDATED_AT (an unknown key is a GraphQL
    # validation error before this runs).
    sort_keys: dict[str, Callable[[Mapping[str, Any]], Any]] = {
        "ID": lambda n: 0,
        "CHECKOUT_ID": lambda n: 0,
        "CREATED_AT": lambda n: n["createdAt"],
        "TOTAL_PRICE": lambda n: Decimal(n["totalPriceSet"]["shopMoney"]["amount"]),
        "CUSTOMER_NAME": lambda n: 0,
        "RELEVANCE": lambda n: 0,
    }
    return _connection(info, list(info.context.sandbox.store.checkouts), getters, sort_keys, args)


def _connection(
    info: GraphQLResolveInfo[Context],
    nodes: list[dict[str, Any]],
    getters: Mapping[str, Callable[[Mapping[str, Any]], Any]],
    sort_keys: Mapping[str, Callable[[Mapping[str, Any]], Any]],
    args: Mapping[str, Any],
) -> dict[str, Any]:
    if info.context.bulk_slice is not None and not info.path.prev:
        sliced = _bulk_slice(info.context.bulk_slice, nodes, getters, sort_keys, args)
        info.context.bulk_more = sliced["pageInfo"]["hasNextPage"]
        return sliced
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
    size = first if first is not None else last
    if size is None or size < 0 or size > MAX_PAGE:
        raise GraphQLError(
            f"The maximum page size is {MAX_PAGE}; requested {size}.",
            extensions={"code": "BAD_REQUEST", "maxPageSize": MAX_PAGE},
        )
    sort_value, items = _sorted_matches(nodes, getters, sort_keys, args)
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
    request = info.context.request
    shown = page(items, 0, size)
    if request is not None:  # a bulk operation's own executions take no request faults
        shown = info.context.sandbox.apply_item_fault(request, shown)
    info.context.returned[str(info.path.key)] = len(shown)
    edges = [{"cursor": _encode_cursor(n, sort_value), "node": n} for n in shown]
    return {
        "edges": edges,
        "nodes": shown,
        "pageInfo": {
            "hasNextPage": has_more,
            "hasPreviousPage": args.get("after") is not None,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def _matcher(
    args: Mapping[str, Any], getters: Mapping[str, Callable[[Mapping[str, Any]], Any]]
) -> Callable[[Mapping[str, Any]], bool]:
    """The list's `query:` argument as a test of one node; bad search syntax is Shopify's BAD_REQUEST."""
    try:
        return compile_query(args.get("query"), getters)
    except SearchSyntaxError as exc:
        raise GraphQLError(str(exc), extensions={"code": "BAD_REQUEST"}) from None


def _sorted_matches(
    nodes: list[dict[str, Any]],
    getters: Mapping[str, Callable[[Mapping[str, Any]], Any]],
    sort_keys: Mapping[str, Callable[[Mapping[str, Any]], Any]],
    args: Mapping[str, Any],
) -> tuple[Callable[[Mapping[str, Any]], Any], list[dict[str, Any]]]:
    """(the sort key's value of a node, the matching nodes in `sortKey` order, ties by id)."""
    matches = _matcher(args, getters)
    sort_value = sort_keys.get(str(args.get("sortKey") or "ID"), sort_keys["ID"])
    return sort_value, sorted((n for n in nodes if matches(n)), key=lambda n: (sort_value(n), number(n["id"])))


def _bulk_slice(
    where: tuple[int, int],
    nodes: list[dict[str, Any]],
    getters: Mapping[str, Callable[[Mapping[str, Any]], Any]],
    sort_keys: Mapping[str, Callable[[Mapping[str, Any]], Any]],
    args: Mapping[str, Any],
) -> dict[str, Any]:
    _, items = _sorted_matches(nodes, getters, sort_keys, args)
    offset, size = where
    shown = items[offset : offset + size]
    more = len(items) > offset + size
    return {
        "edges": [{"cursor": "", "node": n} for n in shown],
        "nodes": shown,
        "pageInfo": {"hasNextPage": more, "hasPreviousPage": False, "startCursor": None, "endCursor": None},
    }


# ----- resolvers on object types ---------------------------------------------------------------------
def _customer_field(name: str) -> Callable[..., Any]:
    def resolve(node: dict[str, Any], info: GraphQLResolveInfo[Context], **args: Any) -> Any:
        sandbox: ShopifySandbox = info.context.sandbox
        if name in ("legacyResourceId", "displayName", "numberOfOrders", "amountSpent"):
            return sandbox.store.derived(node)[name]
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
            listed = items[:size]
            edges = [{"cursor": base64.b64encode(mf["id"].encode()).decode(), "node": mf} for mf in listed]
            return {
                "edges": edges,
                "nodes": listed,
                "pageInfo": {
                    "hasNextPage": len(items) > size,
                    "hasPreviousPage": False,
                    "startCursor": edges[0]["cursor"] if edges else None,
                    "endCursor": edges[-1]["cursor"] if edges else None,
                },
            }
        if name == "lastOrder":
            orders = sorted(sandbox.store.orders_of(node["id"]), key=lambda o: o["createdAt"])
            return orders[-1] if orders else None
        return node.get(name)

    return resolve


def _order_field(name: str) -> Callable[..., Any]:
    def resolve(node: dict[str, Any], info: GraphQLResolveInfo[Context], **args: Any) -> Any:
        if name == "customer":
            ref = node.get("customer")
            return info.context.sandbox.customers.get(ref["id"]) if ref else None
        if name == "legacyResourceId":
            return str(number(node["id"]))
        if name == "lineItems":
            lines = list((node.get("lineItems") or {}).get("nodes") or [])
            # A bulk query ignores `first` (the bulk query guide): every line.
            shown = (
                lines if info.context.bulk_slice is not None else lines[: args.get("first") or args.get("last") or 0]
            )
            return {
                "nodes": shown,
                "edges": [{"cursor": str(i), "node": n} for i, n in enumerate(shown)],
                "pageInfo": {"hasNextPage": len(lines) > len(shown), "hasPreviousPage": False},
            }
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
    checkout = schema.type_map["AbandonedCheckout"]
    assert isinstance(checkout, GraphQLObjectType)
    for name, field in checkout.fields.items():
        field.resolve = _order_field(name)
    node = schema.type_map["Node"]
    assert isinstance(node, GraphQLInterfaceType)
    node.resolve_type = lambda value, info, type_: (
        "Customer"
        if CUSTOMER_GID.match(value["id"])
        else "Order"
        if ORDER_GID.match(value["id"])
        else "BulkOperation"
        if value["id"].startswith(BULK_GID)
        else None
    )


_install_resolvers(admin_schema())


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


def _encode_cursor(node: Mapping[str, Any], sort_value: Callable[[Mapping[str, Any]], Any]) -> str:
    value = sort_value(node)
    raw = json.dumps({"last_id": number(node["id"]), "last_value": str(value)}, separators=(",", ":"))
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
    return (str(sort_value(node)), number(node["id"]))


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
