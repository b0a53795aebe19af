"""Write-back: crmsync's tags and loyalty tier, up to 25 customers in one mutation document.

Tags go with `tagsAdd` / `tagsRemove` (never a whole tag list: `customerUpdate` replaces it); the
tier with `metafieldsSet` / `metafieldsDelete` on `crmsync.loyalty_tier`. 25 is `metafieldsSet`'s
limit; 52 mutation fields stay below the 1000-point query cap. `metafieldsSet` is atomic: one
refused item and none is written, so the valid ones are sent again on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.shopify.settings import MUTATION_COST, TIER_KEY, TIER_NAMESPACE
from mapping.model import WriteBack, WriteResult

# (operation, document, variables, cost) -> the reply's `data`
Send = Callable[[str, str, Mapping[str, Any], float], Any]


def write_batch(send: Send, changes: Sequence[WriteBack]) -> list[WriteResult]:
    """One result per change: each userError goes to the record it names."""
    plan = _write_document(changes, f"{TIER_NAMESPACE}.{TIER_KEY}")
    problems: dict[str, list[str]] = {c.record_id: [] for c in changes}
    if plan.document:
        data = send("write", plan.document, plan.variables, MUTATION_COST * plan.mutations) or {}
        for alias, payload in data.items():
            for error in (payload or {}).get("userErrors") or []:
                for owner in plan.owners_of(alias, error):
                    problems[owner].append(str(error.get("message")))
        set_errors = (data.get("set") or {}).get("userErrors") or []
        good = [item for i, item in enumerate(plan.variables.get("mf", [])) if not _names_element(set_errors, i)]
        if set_errors and good and len(good) < len(plan.set_owners):
            # metafieldsSet is atomic, so the valid items were not written either: send them again.
            again = send("write-retry", RETRY_SET, {"mf": good}, MUTATION_COST) or {}
            for error in (again.get("set") or {}).get("userErrors") or []:
                for owner in _element_owners(error, [item["ownerId"] for item in good]):
                    problems[owner].append(str(error.get("message")))
    return [WriteResult(rid, not msgs, "; ".join(msgs)) for rid, msgs in problems.items()]


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
