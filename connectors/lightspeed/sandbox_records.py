"""The Lightspeed emulator's records: fixtures checked and completed, replies rendered, bodies checked.

Records are in the API's own shape: unset values are `false`, not null (text fields a shop leaves
empty are ""); related resources are link stubs `{"resource": {"id", "url", "link"}}`, derived on
every reply; times are in the shop's own zone. Customer metafields are rows of their own, kept
apart from the customer (a fixture may carry them as a plain `metafields` list of {key, value}).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request

from connectors.lightspeed.shoptime import shop_time
from connectors.sandbox import FixtureError, VendorError, utcnow
from mapping.model import parse_timestamp

Record = dict[str, Any]

MAX_METAFIELD_KEY = 255
MAX_METAFIELD_VALUE = 255  # documented ("value: string, size 255", the Metafield reference)

# Text fields a shop leaves empty as "", the rest as false (as the API writes them).
CUSTOMER_DEFAULTS: dict[str, Any] = {
    "isConfirmed": False,
    "type": "registered",
    "lastOnlineAt": None,
    "remoteIp": False,
    "userAgent": False,
    "referralId": False,
    "gender": False,
    "birthDate": False,
    "nationalId": "",
    "email": "",
    "firstname": "",
    "middlename": "",
    "lastname": "",
    "phone": "",
    "mobile": "",
    "isCompany": False,
    "companyName": "",
    "companyCoCNumber": "",
    "companyVatNumber": "",
    **{f"addressBilling{part}": "" for part in ("Name", "Street", "Street2", "Number", "Extension", "Zipcode")},
    "addressBillingCity": "",
    "addressBillingRegion": "",
    "addressBillingCountry": False,
    "addressShippingCompany": False,
    **{f"addressShipping{part}": "" for part in ("Name", "Street", "Street2", "Number", "Extension", "Zipcode")},
    "addressShippingCity": "",
    "addressShippingRegion": "",
    "addressShippingCountry": False,
    "memo": "",
    "doNotifyRegistered": False,
    "doNotifyConfirmed": False,
    "doNotifyPassword": False,
    "language": False,
}
ORDER_DEFAULTS: dict[str, Any] = {
    "status": "completed_shipped",
    "isDiscounted": False,
    "discountType": False,
    "discountAmount": 0,
    "discountCouponCode": False,
    "customStatusId": None,
    "channel": "main",
    "paymentStatus": "paid",
    "shipmentStatus": "shipped",
    "priceCost": 0,
    "email": "",
    "firstname": "",
    "middlename": "",
    "lastname": "",
    "phone": "",
    "mobile": "",
    "isNewCustomer": False,
    "comment": "",
    "memo": "",
    "language": False,
}
CUSTOMER_LINKS = {
    "groups": "groups/customers?customer={id}",
    "invoices": "invoices?customer={id}",
    "orders": "orders?customer={id}",
    "reviews": "reviews?customer={id}",
    "shipments": "shipments?customer={id}",
    "tickets": "tickets?customer={id}",
    "metafields": "customers/{id}/metafields",
    "login": "customers/{id}/login",
}
ORDER_LINKS = {
    "invoices": "invoices?order={id}",
    "shipments": "shipments?order={id}",
    "products": "orders/{id}/products",
    "metafields": "orders/{id}/metafields",
    "events": "orders/events?order={id}",
}


# ----- fixtures ---------------------------------------------------------------------------------------
def build_customer(where: str, item: Any) -> tuple[Record, list[Any]]:
    """A fixture customer with the shop's defaults filled in, and its metafield rows ({key, value},
    an `id` kept when given)."""
    record = _fixture_record(where, item)
    for name in ("email", "firstname", "middlename", "lastname", "phone", "mobile", "memo"):
        if not isinstance(record.get(name, ""), str | bool | None) or record.get(name) is True:
            raise FixtureError(f"{where}: {name} must be text (or false when empty)")
    rows = record.pop("metafields", [])
    if isinstance(rows, dict) and "resource" in rows:
        rows = []  # a link stub copied from a real export: the rows are not in it
    if not isinstance(rows, list) or not all(is_metafield(row) for row in rows):
        raise FixtureError(f"{where}: metafields must be a list of {{key, value}} objects with text values")
    for name in CUSTOMER_LINKS:
        record.pop(name, None)  # link stubs are derived on every reply
    customer = {"id": record["id"], **CUSTOMER_DEFAULTS, **record}
    _stamp(where, customer)
    return customer, rows


def build_order(where: str, item: Any) -> Record:
    """A fixture order with the shop's defaults filled in; its customer as an id (false: a guest)."""
    record = _fixture_record(where, item)
    price = record.get("priceIncl")
    if isinstance(price, bool) or not isinstance(price, int | float):
        raise FixtureError(f"{where}: priceIncl must be a number like 29.95")
    excl = record.get("priceExcl", round(price / 1.21, 2))
    if isinstance(excl, bool) or not isinstance(excl, int | float):
        raise FixtureError(f"{where}: priceExcl must be a number")
    customer = record.pop("customer", False)
    if isinstance(customer, dict):
        customer = (customer.get("resource") or {}).get("id", False)
    if customer is not None and customer is not False and (isinstance(customer, bool) or not isinstance(customer, int)):
        raise FixtureError(f"{where}: customer must be a customer id, a link stub or false for a guest")
    for name in ORDER_LINKS:
        record.pop(name, None)
    order = {"id": record["id"], **ORDER_DEFAULTS, "number": f"ORD{record['id']:05d}", **record, "priceExcl": excl}
    order["customerId"] = customer or False
    _stamp(where, order)
    return order


def _stamp(where: str, record: Record) -> None:
    """createdAt/updatedAt in the shop's time (derived when left out)."""
    now = shop_time(utcnow())
    for name in ("createdAt", "updatedAt"):
        value = record.get(name) or (record.get("createdAt") if name == "updatedAt" else None) or now
        try:
            record[name] = shop_time(parse_timestamp(str(value)))
        except ValueError:
            raise FixtureError(f"{where}: {name} is not an ISO-8601 date") from None


def touch(record: Record) -> None:
    """A change: the record's modification time is now, in the shop's time."""
    record["updatedAt"] = shop_time(utcnow())


def _fixture_record(where: str, item: Any) -> Record:
    if not isinstance(item, dict):
        raise FixtureError(f"{where}: expected an object")
    if isinstance(item.get("id"), bool) or not isinstance(item.get("id"), int) or item["id"] <= 0:
        raise FixtureError(f"{where}: id must be a positive integer")
    return copy.deepcopy(item)


def is_metafield(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("value"), str)


# ----- replies ---------------------------------------------------------------------------------------
def link(request: Request, lang: str, url: str) -> dict[str, Any]:
    path, _, query = url.partition("?")
    href = f"{request.host_url}{lang}/{path}.json" + (f"?{query}" if query else "")
    return {"resource": {"id": False, "url": url, "link": href}}


def render_customer(request: Request, lang: str, customer: Record) -> Record:
    rendered = copy.deepcopy(customer)
    for name, url in CUSTOMER_LINKS.items():
        rendered[name] = link(request, lang, url.format(id=customer["id"]))
    return rendered


def render_order(request: Request, lang: str, order: Record) -> Record:
    rendered = copy.deepcopy(order)
    customer_id = rendered.pop("customerId")
    if customer_id:
        stub = link(request, lang, f"customers/{customer_id}")
        stub["resource"]["id"] = customer_id
        rendered["customer"] = stub
    else:
        rendered["customer"] = False
    for name, url in ORDER_LINKS.items():
        rendered[name] = link(request, lang, url.format(id=order["id"]))
    return rendered


# ----- requests ---------------------------------------------------------------------------------------
def within(record: Mapping[str, Any], field: str, bound: Any, is_min: bool) -> bool:
    """Whether a record's timestamp lies on the right side of a filter bound; a value that is no
    timestamp (garbage a test put in) matches no bound, and is still listed without one."""
    try:
        stamp = parse_timestamp(str(record[field]))
    except (KeyError, ValueError):
        return False
    return bool(stamp >= bound if is_min else stamp <= bound)


def wrapped(request: Request, key: str, *, required: Sequence[str]) -> dict[str, Any]:
    """The body of a metafield write: `{key: {"key": ..., "value": ...}}`, nothing else."""
    try:
        body = json.loads(request.get_data() or b"null")
    except ValueError:
        raise VendorError(400, "invalid_json", "Invalid JSON in request body") from None
    if not isinstance(body, dict) or set(body) != {key} or not isinstance(body[key], dict):
        raise VendorError(400, "invalid_payload", f"Invalid payload: expected a {key!r} object")
    fields: dict[str, Any] = body[key]
    unknown = sorted(set(fields) - {"key", "value"})
    if unknown:
        raise VendorError(400, "unknown_field", f"Unknown field: {unknown[0]}")
    for name in required:
        if name not in fields:
            raise VendorError(400, "missing_field", f"Missing field: {name}")
    if "key" in fields and (not isinstance(fields["key"], str) or not 0 < len(fields["key"]) <= MAX_METAFIELD_KEY):
        raise VendorError(400, "invalid_key", f"Invalid key: text of 1 to {MAX_METAFIELD_KEY} characters")
    if "value" in fields and (not isinstance(fields["value"], str) or len(fields["value"]) > MAX_METAFIELD_VALUE):
        raise VendorError(400, "invalid_value", f"Invalid value: text of at most {MAX_METAFIELD_VALUE} characters")
    return fields
