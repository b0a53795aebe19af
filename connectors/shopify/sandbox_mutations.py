"""The mutations the emulator implements, with Shopify's limits and userErrors: `tagsAdd` and
`tagsRemove` (on customers and orders; tags compared without case, at most 250 of at most 255
characters), `metafieldsSet` (25 per call, atomic) and `metafieldsDelete`. The userError messages
are followed as written in ../shared/api-notes/shopify.md (assumed there)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, GraphQLResolveInfo

from connectors.shopify.sandbox_store import ShopStore, now_iso

if TYPE_CHECKING:
    from connectors.shopify.sandbox_graphql import Context

MAX_METAFIELDS_PER_SET = 25
MAX_TAGS = 250
MAX_TAG_LENGTH = 255


def _store(info: GraphQLResolveInfo[Context]) -> ShopStore:
    return info.context.sandbox.store


def _taggable(store: ShopStore, gid: str) -> dict[str, Any] | None:
    return store.customers.get(gid) or store.orders.get(gid)


def tags_add(info: GraphQLResolveInfo[Context], id: str, tags: list[str]) -> dict[str, Any]:
    node = _taggable(_store(info), id)
    if node is None:
        return {"node": None, "userErrors": [{"field": ["id"], "message": "Resource not found"}]}
    wanted = _split_tags(tags)
    too_long = [t for t in wanted if len(t) > MAX_TAG_LENGTH]
    if too_long:
        return {
            "node": None,
            "userErrors": [{"field": ["tags"], "message": f"Tag is too long (maximum is {MAX_TAG_LENGTH} characters)"}],
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
        node["updatedAt"] = now_iso()
    return {"node": node, "userErrors": []}


def tags_remove(info: GraphQLResolveInfo[Context], id: str, tags: list[str]) -> dict[str, Any]:
    node = _taggable(_store(info), id)
    if node is None:
        return {"node": None, "userErrors": [{"field": ["id"], "message": "Resource not found"}]}
    drop = {t.casefold() for t in _split_tags(tags)}
    kept = [t for t in node["tags"] if t.casefold() not in drop]
    if len(kept) != len(node["tags"]):
        node["tags"] = kept
        node["updatedAt"] = now_iso()
    return {"node": node, "userErrors": []}


def metafields_set(info: GraphQLResolveInfo[Context], metafields: list[dict[str, Any]]) -> dict[str, Any]:
    if len(metafields) > MAX_METAFIELDS_PER_SET:
        raise GraphQLError(
            f"The input array size of {len(metafields)} is greater than the maximum allowed of "
            f"{MAX_METAFIELDS_PER_SET}.",
            extensions={"code": "MAX_INPUT_SIZE_EXCEEDED"},
        )
    store = _store(info)
    errors = []
    for index, item in enumerate(metafields):
        problem = _metafield_problem(item, store.customers.records)
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
        owner = store.customers.records[item["ownerId"]]
        written.append(store.upsert_metafield(owner, item["namespace"], item["key"], item.get("type"), item["value"]))
        owner["updatedAt"] = now_iso()
    return {"metafields": written, "userErrors": []}


def metafields_delete(info: GraphQLResolveInfo[Context], metafields: list[dict[str, Any]]) -> dict[str, Any]:
    store = _store(info)
    deleted: list[dict[str, Any] | None] = []
    for item in metafields:
        owner = store.customers.get(item["ownerId"])
        match = None
        if owner is not None:
            for mf in owner["metafields"]:
                if mf["namespace"] == item["namespace"] and mf["key"] == item["key"]:
                    match = mf
            if match is not None:
                owner["metafields"].remove(match)
                owner["updatedAt"] = now_iso()
        deleted.append(
            {"ownerId": item["ownerId"], "namespace": item["namespace"], "key": item["key"]} if match else None
        )
    return {"deletedMetafields": deleted, "userErrors": []}


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
