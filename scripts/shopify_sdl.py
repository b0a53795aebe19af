"""Derive the trimmed Shopify Admin SDL the sandbox validates against.

Shopify publishes its Admin GraphQL schema as an introspection result in the npm package
`@shopify/dev-mcp` (`dist/data/admin_<version>.json.gz`). This script keeps only the root fields and
object fields crmsync touches (plus every enum, input object and scalar they reference, whole),
drops descriptions, and prints SDL. The output is committed as
`connectors/shopify/admin_2026-10.graphql`; rerun this to move to another Admin API version:

    python scripts/shopify_sdl.py [path/to/admin_2026-10.json.gz] > connectors/shopify/admin_2026-10.graphql

Without a path it runs `npm pack @shopify/dev-mcp@1.16.0` in a temporary folder first.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    build_client_schema,
    get_named_type,
)

VERSION = "2026-10"
PACKAGE = "@shopify/dev-mcp@1.16.0"

# Object and interface types crmsync reads or writes, and the fields it may select on each.
KEEP: dict[str, list[str]] = {
    "QueryRoot": [
        "customers",
        "customer",
        "orders",
        "order",
        "abandonedCheckouts",
        "shop",
        "currentAppInstallation",
        "bulkOperation",
        "bulkOperations",
        # How big a full read is: the bulk read's threshold.
        "customersCount",
        "ordersCount",
    ],
    "Mutation": [
        "tagsAdd",
        "tagsRemove",
        "metafieldsSet",
        "metafieldsDelete",
        # Bulk write-back (connectors/shopify/bulk.py): a staged JSONL file of variables, one run.
        "stagedUploadsCreate",
        "bulkOperationRunMutation",
        "bulkOperationCancel",
        # Bulk backfill read: one query, the whole connection as a JSONL file.
        "bulkOperationRunQuery",
    ],
    "Node": ["id"],
    "Shop": ["id", "name", "myshopifyDomain", "currencyCode"],
    # `check` proves the granted scopes (read_all_orders above all) from the installation.
    "AppInstallation": ["id", "accessScopes"],
    "AccessScope": ["handle", "description"],
    "Customer": [
        "id",
        "legacyResourceId",
        "firstName",
        "lastName",
        "displayName",
        "email",
        "phone",
        "defaultEmailAddress",
        "defaultPhoneNumber",
        "defaultAddress",
        "tags",
        "note",
        "state",
        "locale",
        "verifiedEmail",
        "numberOfOrders",
        "amountSpent",
        "createdAt",
        "updatedAt",
        "metafield",
        "metafields",
        "lastOrder",
    ],
    "CustomerConnection": ["edges", "nodes", "pageInfo"],
    "CustomerEdge": ["cursor", "node"],
    "CustomerEmailAddress": ["emailAddress", "marketingState"],
    "CustomerPhoneNumber": ["phoneNumber"],
    "MailingAddress": [
        "id",
        "address1",
        "address2",
        "city",
        "company",
        "country",
        "countryCodeV2",
        "firstName",
        "lastName",
        "phone",
        "province",
        "provinceCode",
        "zip",
    ],
    "Order": [
        "id",
        "legacyResourceId",
        "name",
        "email",
        "phone",
        "customer",
        "createdAt",
        "updatedAt",
        "processedAt",
        "cancelledAt",
        "closed",
        "test",
        "currencyCode",
        "displayFinancialStatus",
        "totalPriceSet",
        "currentTotalPriceSet",
        "totalRefundedSet",
        "tags",
        "sourceName",
        "billingAddress",
        # The other bases (mapping/bases.py): discount codes and what each line is.
        "discountCodes",
        "lineItems",
    ],
    "LineItemConnection": ["edges", "nodes", "pageInfo"],
    "LineItemEdge": ["cursor", "node"],
    "LineItem": ["id", "title", "quantity", "product"],
    "Product": ["id", "title", "productType"],
    # Abandoned checkouts (the `abandoned-checkout` segment), read by CREATED_AT with no UPDATED_AT sort.
    "AbandonedCheckout": [
        "id",
        "createdAt",
        "updatedAt",
        "completedAt",
        "customer",
        "totalPriceSet",
        "discountCodes",
        "lineItems",
    ],
    "AbandonedCheckoutConnection": ["edges", "nodes", "pageInfo"],
    "AbandonedCheckoutEdge": ["cursor", "node"],
    "AbandonedCheckoutLineItemConnection": ["nodes", "pageInfo"],
    "AbandonedCheckoutLineItem": ["id", "title", "quantity", "product"],
    "OrderConnection": ["edges", "nodes", "pageInfo"],
    "OrderEdge": ["cursor", "node"],
    "MoneyBag": ["shopMoney", "presentmentMoney"],
    "MoneyV2": ["amount", "currencyCode"],
    "PageInfo": ["hasNextPage", "hasPreviousPage", "startCursor", "endCursor"],
    "Metafield": ["id", "namespace", "key", "value", "type", "compareDigest", "createdAt", "updatedAt"],
    "MetafieldConnection": ["edges", "nodes", "pageInfo"],
    "MetafieldEdge": ["cursor", "node"],
    "MetafieldIdentifier": ["ownerId", "namespace", "key"],
    "TagsAddPayload": ["node", "userErrors"],
    "TagsRemovePayload": ["node", "userErrors"],
    "MetafieldsSetPayload": ["metafields", "userErrors"],
    "MetafieldsSetUserError": ["field", "message", "code", "elementIndex"],
    "MetafieldsDeletePayload": ["deletedMetafields", "userErrors"],
    "UserError": ["field", "message"],
    "StagedUploadsCreatePayload": ["stagedTargets", "userErrors"],
    "StagedMediaUploadTarget": ["url", "resourceUrl", "parameters"],
    "StagedUploadParameter": ["name", "value"],
    "BulkOperationRunMutationPayload": ["bulkOperation", "userErrors"],
    "BulkOperationCancelPayload": ["bulkOperation", "userErrors"],
    "BulkOperationRunQueryPayload": ["bulkOperation", "userErrors"],
    "BulkMutationUserError": ["field", "message", "code"],
    "BulkOperationUserError": ["field", "message", "code"],
    "BulkOperation": [
        "id",
        "type",
        "status",
        "errorCode",
        "createdAt",
        "completedAt",
        "objectCount",
        "rootObjectCount",
        "fileSize",
        "url",
        "partialDataUrl",
        "query",
    ],
    "BulkOperationConnection": ["edges", "nodes", "pageInfo"],
    "BulkOperationEdge": ["cursor", "node"],
    "Count": ["count", "precision"],
}
BUILTIN_SCALARS = {"String", "Int", "Float", "Boolean", "ID"}


def load_introspection(path: Path | None) -> dict[str, Any]:
    if path is None:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True)
            tarball = next(Path(tmp).glob("*.tgz"))
            with tarfile.open(tarball) as tar:
                member = tar.extractfile(f"package/dist/data/admin_{VERSION}.json.gz")
                assert member is not None
                data: dict[str, Any] = json.loads(gzip.decompress(member.read()))
                return data
    with gzip.open(path) as handle:
        loaded: dict[str, Any] = json.load(handle)
        return loaded


def _deprecated(reason: str | None) -> str:
    if reason is None:
        return ""
    return f" @deprecated(reason: {json.dumps(reason)})"


def raw_defaults(introspection: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    """Default values as the introspection writes them (GraphQL literals), per type, field, argument.

    Read from the raw JSON: graphql-core drops them when it builds with assume_valid."""
    defaults: dict[tuple[str, str, str], str] = {}
    for type_ in introspection["__schema"]["types"]:
        for field in type_.get("fields") or []:
            for arg in field.get("args") or []:
                if arg.get("defaultValue") is not None:
                    defaults[(type_["name"], field["name"], arg["name"])] = arg["defaultValue"]
        for input_field in type_.get("inputFields") or []:
            if input_field.get("defaultValue") is not None:
                defaults[(type_["name"], input_field["name"], "")] = input_field["defaultValue"]
    return defaults


def _args(
    owner: str, field_name: str, args: dict[str, GraphQLArgument], defaults: dict[tuple[str, str, str], str]
) -> str:
    if not args:
        return ""
    parts = []
    for name in sorted(args):
        text = f"{name}: {args[name].type}"
        if (default := defaults.get((owner, field_name, name))) is not None:
            text += f" = {default}"
        parts.append(text)
    return "(" + ", ".join(parts) + ")"


def trimmed_sdl(schema: GraphQLSchema, defaults: dict[tuple[str, str, str], str]) -> str:
    out: list[str] = [
        f"# Shopify Admin API {VERSION}, trimmed to what crmsync touches; derived from {PACKAGE}",
        "# by scripts/shopify_sdl.py. Do not edit by hand.",
        "",
        "schema { query: QueryRoot mutation: Mutation }",
        "",
    ]
    pending: list[GraphQLNamedType] = []
    seen: set[str] = set()

    def need(type_: Any) -> None:
        named = get_named_type(type_)
        if named.name in seen or named.name in BUILTIN_SCALARS:
            return
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType) and named.name not in KEEP:
            raise SystemExit(f"{named.name} is referenced by a kept field: add it to KEEP")
        seen.add(named.name)
        pending.append(named)

    for name in KEEP:
        need(schema.type_map[name])
    while pending:
        named = pending.pop(0)
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            keyword = "type" if isinstance(named, GraphQLObjectType) else "interface"
            interfaces = [i.name for i in named.interfaces if i.name in KEEP]
            head = f"{keyword} {named.name}" + (f" implements {' & '.join(interfaces)}" if interfaces else "")
            out.append(head + " {")
            for field_name in KEEP[named.name]:
                field: GraphQLField = named.fields[field_name]
                need(field.type)
                for arg in field.args.values():
                    need(arg.type)
                signature = _args(named.name, field_name, field.args, defaults)
                out.append(f"  {field_name}{signature}: {field.type}{_deprecated(field.deprecation_reason)}")
            out.append("}")
        elif isinstance(named, GraphQLInputObjectType):
            out.append(f"input {named.name} {{")
            for field_name in sorted(named.fields):
                input_field = named.fields[field_name]
                need(input_field.type)
                default = defaults.get((named.name, field_name, ""))
                out.append(f"  {field_name}: {input_field.type}" + (f" = {default}" if default is not None else ""))
            out.append("}")
        elif isinstance(named, GraphQLEnumType):
            out.append(f"enum {named.name} {{")
            for value_name, value in named.values.items():
                out.append(f"  {value_name}{_deprecated(value.deprecation_reason)}")
            out.append("}")
        elif isinstance(named, GraphQLScalarType):
            out.append(f"scalar {named.name}")
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else None
    introspection = load_introspection(path)
    schema = build_client_schema(introspection["data"], assume_valid=True)
    sys.stdout.write(trimmed_sdl(schema, raw_defaults(introspection["data"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
