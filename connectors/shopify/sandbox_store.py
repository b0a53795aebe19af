"""The emulated shop's records: customers and orders as GraphQL nodes (by gid), the metafields on
the customers, and what Shopify derives from them (display name, order count, amount spent).

Fixtures come in the node shape of Admin API 2026-10; a fixture whose structure or types are
wrong is refused with its file and item named, and what a fixture leaves out gets Shopify's
default.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.sandbox import FixtureError, utcnow
from connectors.sandbox.store import FixtureStore, Record
from mapping.model import parse_timestamp

CUSTOMER_GID = re.compile(r"^gid://shopify/Customer/(\d+)$")
ORDER_GID = re.compile(r"^gid://shopify/Order/(\d+)$")
FIXED = ("id", "createdAt", "updatedAt")  # what a hand edit of a record cannot change


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def number(gid: str) -> int:
    return int(gid.rsplit("/", 1)[-1])


def iso(value: Any) -> str:
    return parse_timestamp(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def _customer_key(text: str) -> str | None:
    """A customer's gid, from the gid or the bare number a test names it by."""
    if text.startswith("gid://"):
        return text
    try:
        return gid("Customer", int(text))
    except ValueError:
        return None


def _order_key(text: str) -> str | None:
    return text if text.startswith("gid://") else None


def _touch(record: Record) -> None:
    record["updatedAt"] = now_iso()


class ShopStore:
    """Customers and orders in `FixtureStore`s keyed by gid."""

    def __init__(self) -> None:
        self.customers = FixtureStore("shopify/customers.json", id_of=_customer_key, touch=_touch, fixed=FIXED)
        self.orders = FixtureStore("shopify/orders.json", id_of=_order_key, touch=_touch, fixed=FIXED)
        self.checkouts = FixtureStore("shopify/checkouts.json", id_of=_order_key, touch=_touch, fixed=FIXED)
        self._metafield_seq = 1000

    # ----- fixtures -------------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        self.customers.load(data.get("customers"), self._customer, "shopify/customers.json")
        self.orders.load(data.get("orders"), self.order, "shopify/orders.json")
        self.checkouts.load(data.get("checkouts"), self.checkout, "shopify/checkouts.json")

    def checkout(self, where: str, item: Any) -> Record:
        """An abandoned checkout in fixture shape (the AbandonedCheckout object: gid, customer
        reference, totalPriceSet, completedAt null until it became an order)."""
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected an object")
        if not str(item.get("id", "")).startswith("gid://shopify/AbandonedCheckout/"):
            raise FixtureError(f"{where}: id must look like gid://shopify/AbandonedCheckout/123")
        node = copy.deepcopy(item)
        customer = node.get("customer")
        if customer is not None and not (isinstance(customer, dict) and isinstance(customer.get("id"), str)):
            raise FixtureError(f"{where}: customer must be {{'id': 'gid://shopify/Customer/...'}} or null")
        if not is_money_bag(node.get("totalPriceSet")):
            raise FixtureError(f"{where}: totalPriceSet must be a MoneyBag with shopMoney.amount/currencyCode")
        try:
            node["createdAt"] = iso(node.get("createdAt") or now_iso())
            node["updatedAt"] = iso(node.get("updatedAt") or node["createdAt"])
            if node.get("completedAt"):
                node["completedAt"] = iso(node["completedAt"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise FixtureError(f"{where}: timestamps must be ISO-8601 ({exc})") from None
        node.setdefault("completedAt", None)
        node.setdefault("discountCodes", [])
        node.setdefault("lineItems", {"nodes": []})
        return node

    def _customer(self, where: str, item: Any) -> Record:
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected an object")
        owner = str(item.get("id", ""))
        if not CUSTOMER_GID.match(owner):
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
            stored.append(self._new_metafield(owner, mf["namespace"], mf["key"], mf.get("type"), mf.get("value")))
        node["metafields"] = stored
        try:
            node["createdAt"] = iso(node.get("createdAt") or node.get("updatedAt") or now_iso())
            node["updatedAt"] = iso(node.get("updatedAt") or node["createdAt"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise FixtureError(f"{where}: createdAt/updatedAt must be ISO-8601 ({exc})") from None
        node.setdefault("firstName", None)
        node.setdefault("lastName", None)
        node.setdefault("note", None)
        node.setdefault("state", "ENABLED")
        node.setdefault("locale", "nl")
        node.setdefault("verifiedEmail", True)
        node.setdefault("defaultEmailAddress", None)
        if isinstance(node["defaultEmailAddress"], dict):
            # Non-null in the schema: a fixture that leaves it out holds no consent.
            node["defaultEmailAddress"].setdefault("marketingState", "NOT_SUBSCRIBED")
        node.setdefault("defaultPhoneNumber", None)
        node.setdefault("defaultAddress", None)
        return node

    def order(self, where: str, item: Any) -> Record:
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected an object")
        order_gid = str(item.get("id", ""))
        if not ORDER_GID.match(order_gid):
            raise FixtureError(f"{where}: id must look like gid://shopify/Order/123")
        node = copy.deepcopy(item)
        customer = node.get("customer")
        if customer is not None and not (isinstance(customer, dict) and isinstance(customer.get("id"), str)):
            raise FixtureError(f"{where}: customer must be {{'id': 'gid://shopify/Customer/...'}} or null")
        total = node.get("totalPriceSet")
        if not is_money_bag(total):
            raise FixtureError(f"{where}: totalPriceSet must be a MoneyBag with shopMoney.amount/currencyCode")
        if node.get("currentTotalPriceSet") is not None and not is_money_bag(node["currentTotalPriceSet"]):
            raise FixtureError(f"{where}: currentTotalPriceSet must be a MoneyBag")
        try:
            node["createdAt"] = iso(node.get("createdAt") or now_iso())
            node["updatedAt"] = iso(node.get("updatedAt") or node["createdAt"])
            node["processedAt"] = iso(node.get("processedAt") or node["createdAt"])
            if node.get("cancelledAt"):
                node["cancelledAt"] = iso(node["cancelledAt"])
        except (ValueError, TypeError, AttributeError) as exc:
            raise FixtureError(f"{where}: timestamps must be ISO-8601 ({exc})") from None
        currency = str(node["totalPriceSet"]["shopMoney"]["currencyCode"])
        node.setdefault("discountCodes", [])
        node.setdefault("lineItems", {"nodes": []})  # each line {"product": {"productType": ...}}
        if node.get("totalRefundedSet") is None:
            node["totalRefundedSet"] = money_bag("0.00", currency)
        elif not is_money_bag(node["totalRefundedSet"]):
            raise FixtureError(f"{where}: totalRefundedSet must be a MoneyBag")
        # Shopify's current total "reflects order edits, returns, and refunds": what a fixture
        # leaves out is the total less what was refunded of it.
        node.setdefault("currentTotalPriceSet", less_refunds(node["totalPriceSet"], node["totalRefundedSet"]))
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
        return node

    # ----- metafields -----------------------------------------------------------------------------
    def _new_metafield(self, owner: str, namespace: str, key: str, type_: Any, value: Any) -> Record:
        self._metafield_seq += 1
        now = now_iso()
        text = "" if value is None else str(value)
        return {
            "id": gid("Metafield", self._metafield_seq),
            "namespace": namespace,
            "key": key,
            "type": str(type_ or "single_line_text_field"),
            "value": text,
            "compareDigest": hashlib.sha256(f"{owner}|{namespace}|{key}|{text}".encode()).hexdigest(),
            "createdAt": now,
            "updatedAt": now,
        }

    def upsert_metafield(self, node: Record, namespace: str, key: str, type_: Any, value: Any) -> Record:
        for mf in node["metafields"]:
            if mf["namespace"] == namespace and mf["key"] == key:
                mf["value"] = "" if value is None else str(value)
                mf["type"] = str(type_ or mf["type"])
                mf["updatedAt"] = now_iso()
                mf["compareDigest"] = hashlib.sha256(
                    f"{node['id']}|{namespace}|{key}|{mf['value']}".encode()
                ).hexdigest()
                found: Record = mf
                return found
        created = self._new_metafield(node["id"], namespace, key, type_, value)
        node["metafields"].append(created)
        return created

    # ----- the test routes: a customer as a test sees it, and a hand edit of one ----------------
    def customer_fixture(self, customer_id: str) -> Record | None:
        node = self.customers.lookup(customer_id)
        if node is None:
            return None
        fixture = copy.deepcopy(node)
        fixture["metafields"] = [{k: mf[k] for k in ("namespace", "key", "type", "value")} for mf in node["metafields"]]
        fixture.update(self.derived(node))
        return fixture

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> Record | None:
        patched = self.customers.patch(customer_id, partial, self._merge_metafields)
        return None if patched is None else self.customer_fixture(patched["id"])

    def _merge_metafields(self, node: Record, key: str, value: Any) -> bool:
        """Metafields named in a hand edit are set (added, or changed in place), the rest kept."""
        if key != "metafields" or not isinstance(value, list):
            return False
        for mf in value:
            self.upsert_metafield(node, mf["namespace"], mf["key"], mf.get("type"), mf.get("value"))
        return True

    # ----- what Shopify derives -------------------------------------------------------------------
    def orders_of(self, customer_gid: str) -> list[Record]:
        return [o for o in self.orders if (o.get("customer") or {}).get("id") == customer_gid]

    def derived(self, node: Record) -> dict[str, Any]:
        orders = self.orders_of(node["id"])
        spent = sum(
            (Decimal(o["currentTotalPriceSet"]["shopMoney"]["amount"]) for o in orders if not o.get("cancelledAt")),
            Decimal(0),
        )
        currency = orders[0]["currencyCode"] if orders else "EUR"
        email = (node.get("defaultEmailAddress") or {}).get("emailAddress")
        name = " ".join(p for p in (node.get("firstName"), node.get("lastName")) if p)
        return {
            "legacyResourceId": str(number(node["id"])),
            "displayName": name or email or "",
            "numberOfOrders": str(len(orders)),
            "amountSpent": {"amount": f"{spent:.2f}", "currencyCode": currency},
        }


def is_money_bag(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("shopMoney"), dict)
        and isinstance(value["shopMoney"].get("amount"), str | int | float)
        and isinstance(value["shopMoney"].get("currencyCode"), str)
    )


def less_refunds(total: dict[str, Any], refunded: dict[str, Any]) -> dict[str, Any]:
    """A MoneyBag's amounts less what was refunded of them (never below zero), side by side; with
    nothing refunded, the total as the fixture wrote it (odd contents are loaded as they are)."""
    bag = copy.deepcopy(total)
    for side, money in bag.items():
        if not isinstance(money, dict):
            continue
        try:
            taken = Decimal(str((refunded.get(side) or refunded["shopMoney"])["amount"]))
            if taken:
                money["amount"] = str(max(Decimal(str(money["amount"])) - taken, Decimal(0)))
        except (InvalidOperation, KeyError, TypeError):
            continue  # an amount that is no number stays as written
    return bag


def money_bag(amount: str, currency: str) -> dict[str, Any]:
    money = {"amount": amount, "currencyCode": currency}
    return {"shopMoney": money, "presentmentMoney": dict(money)}
