"""Lightspeed eCom (C-Series) REST API emulator for tests and the demo.

Follows ../shared/api-notes/lightspeed-ecom.md and the vendor's own clients (SEOshop/API-PHP-Client,
Falkplan/lightspeedecom-api): every path is `/{lang}/<resource>.json` for one of the shop's
languages; HTTP Basic auth with the API key and secret; replies wrapped in the resource's key
(`{"customers": [...]}`, `{"customer": {...}}`, `{"count": n}`) and request bodies likewise
(`{"customerMetafield": {...}}`); unset values are `false`, not null; related resources are link
stubs `{"resource": {"id", "url", "link"}}`. Lists page with `page` (from 1) and `limit` (1-250,
default 50), sorted by id, a page past the end being empty; filters `since_id`, `created_at_min/max`,
`updated_at_min/max` (inclusive, shop wall-clock time), `email`, and for orders `customer`.
Customer metafields are rows of their own: a POST always adds a row, even for a key the customer
already has. Errors are `{"error": {"code", "method", "request", "message"}}`. Three fixed request
windows (300 per 5 minutes, 3000 per hour, 12000 per day per key) are reported on every reply as
`X-RateLimit-*` triples and answered with 429 when one is used up; a fourth, 20 requests per second
per key (announced by Lightspeed staff in 2021), is enforced the same way but not reported in the
headers (whether Lightspeed reports it anywhere is not known).
"""

from __future__ import annotations

import base64
import copy
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from connectors.lightspeed.budget import LIMIT, REMAINING, RESET, format_triple
from connectors.lightspeed.shoptime import from_shop_wall_clock, shop_time
from connectors.ratelimit import SlidingWindowLimiter, Window
from connectors.sandbox import FixtureError, Route, SandboxApp, VendorError, json_response, utcnow
from connectors.sandbox.faults import FaultRule
from mapping.model import parse_timestamp

MAX_LIMIT = 250
DEFAULT_LIMIT = 50
MAX_METAFIELD_KEY = 255
MAX_METAFIELD_VALUE = 255  # documented ("value: string, size 255", the Metafield reference)
DEFAULT_KEY = "a3f1c07e5b2d49e68c1f0d7b3e9a2c54"
DEFAULT_SECRET = "7d2e9b41c6f05a83e1b4d09c2f7a6e18"
LANGUAGES = ("nl", "en", "de", "fr")
# 5 minutes, hour, day (the windows the headers report, in that order), then the 20 per second.
PUBLISHED_LIMITS = (Window(300, 300.0), Window(3000, 3600.0), Window(12000, 86400.0), Window(20, 1.0))
HEADER_WINDOWS = 3
FIRST_METAFIELD_ID = 5_571_000

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
# Which permission area (as set per API key in the back office) a resource belongs to.
AREAS = {"customers": "customers", "orders": "orders", "shop": "settings"}
ROUTE_MESSAGES = {"rest_no_route": "Not found", "method_not_allowed": "Method not allowed"}


class FixedWindowLimiter(SlidingWindowLimiter):
    """Lightspeed counts requests per window that resets on its boundary (every 5 minutes, every
    hour, every day), so a client may use a whole window just before a boundary and a whole one
    just after. The sliding log of the parent would be stricter than the vendor."""

    def __init__(self, windows: Sequence[Window], *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(windows, clock=clock)
        self._now = clock
        self._guard = threading.Lock()
        self._slot = [-1] * len(self.windows)
        self._used = [0] * len(self.windows)

    def _roll(self, now: float) -> None:
        for index, window in enumerate(self.windows):
            slot = math.floor(now / window.per_seconds)
            if slot != self._slot[index]:
                self._slot[index], self._used[index] = slot, 0

    def _resets_in(self, index: int, now: float) -> float:
        return (self._slot[index] + 1) * self.windows[index].per_seconds - now

    def try_acquire(self) -> float:
        with self._guard:
            now = self._now()
            self._roll(now)
            full = [i for i, window in enumerate(self.windows) if self._used[i] >= window.requests]
            if full:
                return max(self._resets_in(i, now) for i in full)
            for index in range(len(self.windows)):
                self._used[index] += 1
            return 0.0

    def acquire(self) -> float:
        waited = 0.0
        while (wait := self.try_acquire()) > 0:
            time.sleep(wait)
            waited += wait
        return waited

    def status(self) -> list[tuple[int, int, float]]:
        """(limit, remaining, seconds until reset) per window."""
        with self._guard:
            now = self._now()
            self._roll(now)
            return [
                (window.requests, window.requests - self._used[i], self._resets_in(i, now))
                for i, window in enumerate(self.windows)
            ]

    def remaining(self) -> int:
        return min((left for _, left, _ in self.status()), default=0)


def _lang_routes(*specs: tuple[str, tuple[str, ...], Callable[..., Response], bool]) -> list[Route]:
    return [Route(f"/<lang>/{path}", methods, handler, lists) for path, methods, handler, lists in specs]


class LightspeedSandbox(SandboxApp):
    type = "lightspeed"
    rate_limits = PUBLISHED_LIMITS

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        api_key: str = DEFAULT_KEY,
        api_secret: str = DEFAULT_SECRET,
        languages: Sequence[str] = LANGUAGES,
        currency: str = "EUR",
        permissions: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        """`permissions`: what the API key may do per area ("none", "read" or "write"; areas
        customers, orders, settings), full rights unless said otherwise. `clock` drives the
        request windows (tests step it instead of waiting)."""
        self.api_key, self.api_secret = api_key, api_secret
        self.languages = tuple(languages)
        self.currency = currency
        self.permissions = {area: "write" for area in set(AREAS.values())} | dict(permissions or {})
        self.customers: dict[int, dict[str, Any]] = {}
        self.orders: dict[int, dict[str, Any]] = {}
        self.metafields: dict[int, list[dict[str, Any]]] = {}
        self._metafield_seq = FIRST_METAFIELD_ID
        self._current = threading.local()
        super().__init__(data, **kwargs)
        if self.limiter is not None:
            self.limiter = FixedWindowLimiter(self.limiter.windows, clock=clock)

    # ----- routes and hooks ---------------------------------------------------------------------
    def routes(self) -> Sequence[Route]:
        return _lang_routes(
            ("shop.json", ("GET",), self.get_shop, False),
            ("account/ratelimit.json", ("GET",), self.get_ratelimit, False),
            ("customers.json", ("GET",), self.list_customers, True),
            ("customers/count.json", ("GET",), self.count_customers, False),
            ("customers/<int:customer_id>.json", ("GET",), self.get_customer, False),
            ("customers/<int:customer_id>/metafields.json", ("GET",), self.list_metafields, False),
            ("customers/<int:customer_id>/metafields.json", ("POST",), self.create_metafield, False),
            ("customers/<int:customer_id>/metafields/count.json", ("GET",), self.count_metafields, False),
            (
                "customers/<int:customer_id>/metafields/<int:metafield_id>.json",
                ("GET", "PUT", "DELETE"),
                self.one_metafield,
                False,
            ),
            ("orders.json", ("GET",), self.list_orders, True),
            ("orders/count.json", ("GET",), self.count_orders, False),
            ("orders/<int:order_id>.json", ("GET",), self.get_order, False),
        )

    def client_settings(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "language": self.languages[0],
            **super().client_settings(),
        }

    def dispatch(self, request: Request) -> Response:
        # The error shape names the request it answers; the kit's hooks do not get the request.
        self._current.request = request
        try:
            return super().dispatch(request)
        finally:
            self._current.request = None

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        request: Request | None = getattr(self._current, "request", None)
        body = {
            "error": {
                "code": status,
                "method": request.method if request is not None else "GET",
                "request": request.path if request is not None else "",
                "message": ROUTE_MESSAGES.get(code, message),
            }
        }
        return json_response(body, status)

    def auth_failure(self) -> Response:
        return self.error(401, "unauthorized", "Unauthorized")

    def authenticate(self, request: Request) -> Response | None:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return self.auth_failure()
        try:
            key, _, secret = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return self.auth_failure()
        if key != self.api_key or secret != self.api_secret:
            return self.auth_failure()
        return self._permitted(request)

    def _permitted(self, request: Request) -> Response | None:
        resource = request.path.strip("/").split("/")[1:2]
        area = AREAS.get(resource[0].removesuffix(".json")) if resource else None
        if area is None:
            return None
        need = "read" if request.method == "GET" else "write"
        if self.permissions.get(area, "none") in (need, "write"):
            return None
        return self.error(403, "forbidden", f"Forbidden: this API key has no {need} permission for {area}")

    def rate_limit_headers(self) -> dict[str, str]:
        if not isinstance(self.limiter, FixedWindowLimiter):
            return {}
        return self._headers(self.limiter.status())

    def _headers(self, windows: Sequence[tuple[int, int, float]]) -> dict[str, str]:
        windows = windows[:HEADER_WINDOWS]  # the per-second window is not in the triples
        return {
            LIMIT: format_triple([w[0] for w in windows]),
            REMAINING: format_triple([w[1] for w in windows]),
            RESET: format_triple([w[2] for w in windows], whole=self.time_scale == 1),
        }

    def throttled(self, retry_after: float | None) -> Response:
        # Lightspeed says when to come back in X-RateLimit-Reset, not in Retry-After.
        response = self.error(429, "rate_limited", "Too many requests")
        response.headers.update(self.rate_limit_headers())
        return response

    def vendor_throttle(self, rule: FaultRule) -> Response:
        reset = rule.retry_after if rule.retry_after is not None else 1.0
        windows = self.limiter.status() if isinstance(self.limiter, FixedWindowLimiter) else []
        forced = [
            (limit, 0 if i == 0 else left, reset if i == 0 else after) for i, (limit, left, after) in enumerate(windows)
        ]
        response = self.error(429, "rate_limited", "Too many requests")
        response.headers.update(self._headers(forced or [(300, 0, reset)]))
        return response

    # ----- fixtures -------------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        for index, item in enumerate(data.get("customers") or []):
            self._load_customer(f"lightspeed/customers.json item {index}", item)
        for index, item in enumerate(data.get("orders") or []):
            self._load_order(f"lightspeed/orders.json item {index}", item)

    def _load_customer(self, where: str, item: Any) -> None:
        record = _fixture_record(where, item)
        for name in ("email", "firstname", "middlename", "lastname", "phone", "mobile", "memo"):
            if not isinstance(record.get(name, ""), str | bool | None) or record.get(name) is True:
                raise FixtureError(f"{where}: {name} must be text (or false when empty)")
        rows = record.pop("metafields", [])
        if isinstance(rows, dict) and "resource" in rows:
            rows = []  # a link stub copied from a real export: the rows are not in it
        if not isinstance(rows, list) or not all(_is_metafield(row) for row in rows):
            raise FixtureError(f"{where}: metafields must be a list of {{key, value}} objects with text values")
        for name in CUSTOMER_LINKS:
            record.pop(name, None)  # link stubs are derived on every reply
        customer = {"id": record["id"], **CUSTOMER_DEFAULTS, **record}
        self._stamp(where, customer)
        self.customers[customer["id"]] = customer
        self.metafields[customer["id"]] = [self._new_row(row["key"], row["value"], row.get("id")) for row in rows]

    def _load_order(self, where: str, item: Any) -> None:
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
        if (
            customer is not None
            and customer is not False
            and (isinstance(customer, bool) or not isinstance(customer, int))
        ):
            raise FixtureError(f"{where}: customer must be a customer id, a link stub or false for a guest")
        for name in ORDER_LINKS:
            record.pop(name, None)
        order = {"id": record["id"], **ORDER_DEFAULTS, "number": f"ORD{record['id']:05d}", **record, "priceExcl": excl}
        order["customerId"] = customer or False
        self._stamp(where, order)
        self.orders[order["id"]] = order

    def _stamp(self, where: str, record: dict[str, Any]) -> None:
        """createdAt/updatedAt in the shop's time (derived when left out)."""
        now = shop_time(utcnow())
        for name in ("createdAt", "updatedAt"):
            value = record.get(name) or (record.get("createdAt") if name == "updatedAt" else None) or now
            try:
                record[name] = shop_time(parse_timestamp(str(value)))
            except ValueError:
                raise FixtureError(f"{where}: {name} is not an ISO-8601 date") from None

    def _new_row(self, key: str, value: Any, row_id: Any = None) -> dict[str, Any]:
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            self._metafield_seq += 1
            row_id = self._metafield_seq
        else:
            self._metafield_seq = max(self._metafield_seq, row_id)
        stamp = shop_time(utcnow())
        return {"id": row_id, "createdAt": stamp, "updatedAt": stamp, "key": key, "value": value}

    # ----- test routes ----------------------------------------------------------------------------
    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        customer = self.customers.get(int(customer_id)) if customer_id.isdigit() else None
        if customer is None:
            return None
        return {**copy.deepcopy(customer), "metafields": copy.deepcopy(self.metafields[customer["id"]])}

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        """As a merchant (or another app) would: fields are replaced, metafield rows with an `id`
        are edited and rows without one are added, as a POST would."""
        customer = self.customers.get(int(customer_id)) if customer_id.isdigit() else None
        if customer is None:
            return None
        for key, value in partial.items():
            if key == "metafields" and isinstance(value, list):
                self._patch_rows(customer["id"], value)
            elif isinstance(value, dict) and isinstance(customer.get(key), dict):
                customer[key].update(copy.deepcopy(value))
            elif key not in ("id", "createdAt"):
                customer[key] = copy.deepcopy(value)
        customer["updatedAt"] = shop_time(utcnow())
        return self.customer_fixture(customer_id)

    def _patch_rows(self, customer_id: int, items: list[Any]) -> None:
        rows = self.metafields[customer_id]
        for item in items:
            if not _is_metafield(item):
                continue
            same = [row for row in rows if row["id"] == item.get("id")]
            if same:
                same[0].update(key=item["key"], value=item["value"], updatedAt=shop_time(utcnow()))
            else:
                rows.append(self._new_row(item["key"], item["value"]))

    # ----- shared machinery -----------------------------------------------------------------------
    def _check_lang(self, lang: str) -> None:
        if lang not in self.languages:
            raise VendorError(404, "not_found", "Not found")

    def _paging(self, request: Request) -> tuple[int, int]:
        limit = _int_param(request, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise VendorError(400, "invalid_limit", f"Invalid limit: must be between 1 and {MAX_LIMIT}")
        page = _int_param(request, "page", 1)
        if page < 1:
            raise VendorError(400, "invalid_page", "Invalid page: must be 1 or more")
        return page, limit

    def _link(self, request: Request, lang: str, url: str) -> dict[str, Any]:
        path, _, query = url.partition("?")
        link = f"{request.host_url}{lang}/{path}.json" + (f"?{query}" if query else "")
        return {"resource": {"id": False, "url": url, "link": link}}

    def _render_customer(self, request: Request, lang: str, customer: dict[str, Any]) -> dict[str, Any]:
        rendered = copy.deepcopy(customer)
        for name, url in CUSTOMER_LINKS.items():
            rendered[name] = self._link(request, lang, url.format(id=customer["id"]))
        return rendered

    def _render_order(self, request: Request, lang: str, order: dict[str, Any]) -> dict[str, Any]:
        rendered = copy.deepcopy(order)
        customer_id = rendered.pop("customerId")
        if customer_id:
            stub = self._link(request, lang, f"customers/{customer_id}")
            stub["resource"]["id"] = customer_id
            rendered["customer"] = stub
        else:
            rendered["customer"] = False
        for name, url in ORDER_LINKS.items():
            rendered[name] = self._link(request, lang, url.format(id=order["id"]))
        return rendered

    def _filtered(self, request: Request, records: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        """Records matching the shared list filters, sorted by id."""
        since_id = _int_param(request, "since_id", 0)
        bounds = []
        for name, field, is_min in (
            ("created_at_min", "createdAt", True),
            ("created_at_max", "createdAt", False),
            ("updated_at_min", "updatedAt", True),
            ("updated_at_max", "updatedAt", False),
        ):
            raw = request.args.get(name)
            if raw:
                try:
                    bounds.append((field, from_shop_wall_clock(raw), is_min))
                except ValueError:
                    raise VendorError(400, "invalid_date", f"Invalid {name}: use YYYY-MM-DD HH:MM:SS") from None
        out = []
        for record_id in sorted(records):
            record = records[record_id]
            if record_id <= since_id:
                continue
            if all(_within(record, field, bound, is_min) for field, bound, is_min in bounds):
                out.append(record)
        return out

    def _page(self, request: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        page, limit = self._paging(request)
        return self.apply_item_fault(request, items[(page - 1) * limit : page * limit])

    # ----- shop and account -----------------------------------------------------------------------
    def get_shop(self, request: Request, lang: str) -> Response:
        self._check_lang(lang)
        shop = {
            "id": 1,
            "createdAt": shop_time(utcnow().replace(year=2019)),
            "status": "live",
            "mainDomain": "www.sandbox-winkel.nl",
            "email": "info@sandbox-winkel.nl",
            "country": {"id": 150, "code": "nl", "code3": "nld", "title": "Nederland"},
            "currency": {"shortcode": self.currency, "symbol": "€", "title": "Euro", "isDefault": True},
            "metafields": self._link(request, lang, "shop/metafields"),
        }
        return json_response({"shop": shop})

    def get_ratelimit(self, request: Request, lang: str) -> Response:
        self._check_lang(lang)
        windows = self.limiter.status() if isinstance(self.limiter, FixedWindowLimiter) else []
        names = ("limit5Min", "limitHour", "limitDay")
        now = utcnow()
        report = {
            name: {
                "limit": limit,
                "remaining": left,
                "reset": math.ceil(after),
                "resetTime": shop_time(now + timedelta(seconds=after)),
            }
            for name, (limit, left, after) in zip(names, windows, strict=False)
        }
        return json_response({"accountRatelimit": report})

    # ----- customers ------------------------------------------------------------------------------
    def _customers(self, request: Request, lang: str) -> list[dict[str, Any]]:
        self._check_lang(lang)
        email = (request.args.get("email") or "").strip().lower()
        found = self._filtered(request, self.customers)
        return [c for c in found if not email or str(c.get("email") or "").strip().lower() == email]

    def list_customers(self, request: Request, lang: str) -> Response:
        with self.lock:
            chunk = self._page(request, self._customers(request, lang))
            return json_response({"customers": [self._render_customer(request, lang, c) for c in chunk]})

    def count_customers(self, request: Request, lang: str) -> Response:
        with self.lock:
            return json_response({"count": len(self._customers(request, lang))})

    def _customer(self, lang: str, customer_id: int) -> dict[str, Any]:
        self._check_lang(lang)
        customer = self.customers.get(customer_id)
        if customer is None:
            raise VendorError(404, "not_found", "Not found")
        return customer

    def get_customer(self, request: Request, lang: str, customer_id: int) -> Response:
        with self.lock:
            customer = self._customer(lang, customer_id)
            return json_response({"customer": self._render_customer(request, lang, customer)})

    # ----- customer metafields ----------------------------------------------------------------------
    def list_metafields(self, request: Request, lang: str, customer_id: int) -> Response:
        with self.lock:
            self._customer(lang, customer_id)
            rows = sorted(self.metafields[customer_id], key=lambda row: row["id"])
            return json_response({"customerMetafields": copy.deepcopy(self._page(request, rows))})

    def count_metafields(self, request: Request, lang: str, customer_id: int) -> Response:
        with self.lock:
            self._customer(lang, customer_id)
            return json_response({"count": len(self.metafields[customer_id])})

    def create_metafield(self, request: Request, lang: str, customer_id: int) -> Response:
        fields = _wrapped(request, "customerMetafield", required=("key", "value"))
        with self.lock:
            self._customer(lang, customer_id)
            # No upsert: a second POST with the same key is a second row (look up before creating).
            row = self._new_row(fields["key"], fields["value"])
            self.metafields[customer_id].append(row)
            return json_response({"customerMetafield": copy.deepcopy(row)}, 201)

    def one_metafield(self, request: Request, lang: str, customer_id: int, metafield_id: int) -> Response:
        fields = _wrapped(request, "customerMetafield", required=()) if request.method == "PUT" else {}
        with self.lock:
            self._customer(lang, customer_id)
            rows = self.metafields[customer_id]
            row = next((r for r in rows if r["id"] == metafield_id), None)
            if row is None:
                raise VendorError(404, "not_found", "Not found")
            if request.method == "DELETE":
                rows.remove(row)
                return Response(status=204)
            if fields:
                row.update(fields, updatedAt=shop_time(utcnow()))
            return json_response({"customerMetafield": copy.deepcopy(row)})

    # ----- orders ------------------------------------------------------------------------------------
    def _orders(self, request: Request, lang: str) -> list[dict[str, Any]]:
        self._check_lang(lang)
        customer = _int_param(request, "customer", 0)
        found = self._filtered(request, self.orders)
        return [o for o in found if not customer or o["customerId"] == customer]

    def list_orders(self, request: Request, lang: str) -> Response:
        with self.lock:
            chunk = self._page(request, self._orders(request, lang))
            return json_response({"orders": [self._render_order(request, lang, o) for o in chunk]})

    def count_orders(self, request: Request, lang: str) -> Response:
        with self.lock:
            return json_response({"count": len(self._orders(request, lang))})

    def get_order(self, request: Request, lang: str, order_id: int) -> Response:
        with self.lock:
            self._check_lang(lang)
            order = self.orders.get(order_id)
            if order is None:
                raise VendorError(404, "not_found", "Not found")
            return json_response({"order": self._render_order(request, lang, order)})


def _within(record: Mapping[str, Any], field: str, bound: Any, is_min: bool) -> bool:
    """Whether a record's timestamp lies on the right side of a filter bound; a value that is no
    timestamp (garbage a test put in) matches no bound, and is still listed without one."""
    try:
        stamp = parse_timestamp(str(record[field]))
    except (KeyError, ValueError):
        return False
    return bool(stamp >= bound if is_min else stamp <= bound)


def _fixture_record(where: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise FixtureError(f"{where}: expected an object")
    if isinstance(item.get("id"), bool) or not isinstance(item.get("id"), int) or item["id"] <= 0:
        raise FixtureError(f"{where}: id must be a positive integer")
    return copy.deepcopy(item)


def _is_metafield(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("key"), str) and isinstance(row.get("value"), str)


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise VendorError(400, "invalid_param", f"Invalid {name}: expected a number") from None


def _wrapped(request: Request, key: str, *, required: Sequence[str]) -> dict[str, Any]:
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


SANDBOX = LightspeedSandbox
