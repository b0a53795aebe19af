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
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from connectors.lightspeed.sandbox_limits import PUBLISHED_LIMITS, FixedWindowLimiter, forced_empty, window_headers
from connectors.lightspeed.sandbox_records import (
    Record,
    build_customer,
    build_order,
    is_metafield,
    link,
    render_customer,
    render_order,
    touch,
    within,
    wrapped,
)
from connectors.lightspeed.shoptime import from_shop_wall_clock, shop_time
from connectors.sandbox import Route, SandboxApp, VendorError, json_response, utcnow
from connectors.sandbox.faults import FaultRule
from connectors.sandbox.store import FixtureStore, int_param, page

MAX_LIMIT = 250
DEFAULT_LIMIT = 50
DEFAULT_KEY = "a3f1c07e5b2d49e68c1f0d7b3e9a2c54"
DEFAULT_SECRET = "7d2e9b41c6f05a83e1b4d09c2f7a6e18"
LANGUAGES = ("nl", "en", "de", "fr")
FIRST_METAFIELD_ID = 5_571_000
# Which permission area (as set per API key in the back office) a resource belongs to.
AREAS = {"customers": "customers", "orders": "orders", "shop": "settings"}
ROUTE_MESSAGES = {"rest_no_route": "Not found", "method_not_allowed": "Method not allowed"}


def _lang_routes(*specs: tuple[str, tuple[str, ...], Callable[..., Response], bool]) -> list[Route]:
    return [Route(f"/<lang>/{path}", methods, handler, lists) for path, methods, handler, lists in specs]


def _number(request: Request, name: str, default: int) -> int:
    """A whole-number parameter; anything else is refused as Lightspeed refuses it."""
    return int_param(
        request,
        name,
        default,
        invalid=lambda _: VendorError(400, "invalid_param", f"Invalid {name}: expected a number"),
    )


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
        self.customer_store = FixtureStore("customers", touch=touch, fixed=("id", "createdAt"))
        self.order_store = FixtureStore("orders", touch=touch, fixed=("id", "createdAt"))
        # A customer's metafield rows, by customer id: resources of their own, not in the customer.
        self.metafields: dict[int, list[Record]] = {}
        self._metafield_seq = FIRST_METAFIELD_ID
        self._current = threading.local()
        # The zone a list filter's time is read in: not documented (api-notes/lightspeed-ecom.md).
        # "shop": the shop's wall clock, as its replies write times; "utc": UTC.
        self.filter_zone = "shop"
        super().__init__(data, **kwargs)
        if self.limiter is not None:
            self.limiter = FixedWindowLimiter(self.limiter.windows, clock=clock)

    @property
    def customers(self) -> dict[Any, Record]:
        """The stored customers by id (tests and the fault lab edit them in place)."""
        return self.customer_store.records

    @property
    def orders(self) -> dict[Any, Record]:
        return self.order_store.records

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
        return window_headers(self.limiter.status(), whole=self.time_scale == 1)

    def throttled(self, retry_after: float | None) -> Response:
        # Lightspeed says when to come back in X-RateLimit-Reset, not in Retry-After.
        response = self.error(429, "rate_limited", "Too many requests")
        response.headers.update(self.rate_limit_headers())
        return response

    def vendor_throttle(self, rule: FaultRule) -> Response:
        reset = rule.retry_after if rule.retry_after is not None else 1.0
        windows = self.limiter.status() if isinstance(self.limiter, FixedWindowLimiter) else []
        response = self.error(429, "rate_limited", "Too many requests")
        response.headers.update(window_headers(forced_empty(windows, reset), whole=self.time_scale == 1))
        return response

    # ----- fixtures -------------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        self.customer_store.load(data.get("customers"), self._fixture_customer, "lightspeed/customers.json")
        self.order_store.load(data.get("orders"), build_order, "lightspeed/orders.json")

    def _fixture_customer(self, where: str, item: Any) -> Record:
        customer, rows = build_customer(where, item)
        self.metafields[customer["id"]] = [self._new_row(row["key"], row["value"], row.get("id")) for row in rows]
        return customer

    def _new_row(self, key: str, value: Any, row_id: Any = None) -> Record:
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            self._metafield_seq += 1
            row_id = self._metafield_seq
        else:
            self._metafield_seq = max(self._metafield_seq, row_id)
        stamp = shop_time(utcnow())
        return {"id": row_id, "createdAt": stamp, "updatedAt": stamp, "key": key, "value": value}

    # ----- test routes ----------------------------------------------------------------------------
    def stamp_customer(self, customer_id: str, moment: datetime) -> None:
        """Sets a customer's modification time as the vendor would have written it (a test moves
        records onto a read's boundary)."""
        self.customers[int(customer_id)]["updatedAt"] = shop_time(moment)

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        customer = self.customer_store.find(customer_id)
        if customer is None:
            return None
        return {**customer, "metafields": copy.deepcopy(self.metafields[customer["id"]])}

    def delete_customer(self, customer_id: str) -> dict[str, Any] | None:
        fixture = self.customer_fixture(customer_id)
        if fixture is not None:
            self.customer_store.remove(customer_id)
            self.metafields.pop(fixture["id"], None)
        return fixture

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        """As a merchant (or another app) would: fields are replaced, metafield rows with an `id`
        are edited and rows without one are added, as a POST would."""

        def rows(customer: Record, key: str, value: Any) -> bool:
            if key == "metafields" and isinstance(value, list):
                self._patch_rows(customer["id"], value)
                return True
            return False

        if self.customer_store.patch(customer_id, partial, merge=rows) is None:
            return None
        return self.customer_fixture(customer_id)

    def _patch_rows(self, customer_id: int, items: list[Any]) -> None:
        rows = self.metafields[customer_id]
        for item in items:
            if not is_metafield(item):
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
        limit = _number(request, "limit", DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise VendorError(400, "invalid_limit", f"Invalid limit: must be between 1 and {MAX_LIMIT}")
        number = _number(request, "page", 1)
        if number < 1:
            raise VendorError(400, "invalid_page", "Invalid page: must be 1 or more")
        return number, limit

    def _filtered(self, request: Request, records: dict[int, Record]) -> list[Record]:
        """Records matching the shared list filters, sorted by id."""
        since_id = _number(request, "since_id", 0)
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
                    bounds.append((field, self._filter_time(raw), is_min))
                except ValueError:
                    raise VendorError(400, "invalid_date", f"Invalid {name}: use YYYY-MM-DD HH:MM:SS") from None
        out = []
        for record_id in sorted(records):
            record = records[record_id]
            if record_id <= since_id:
                continue
            if all(within(record, field, bound, is_min) for field, bound, is_min in bounds):
                out.append(record)
        return out

    def _filter_time(self, raw: str) -> datetime:
        if self.filter_zone == "shop":
            return from_shop_wall_clock(raw)
        return datetime.strptime(raw.strip(), "%Y-%m-%d %H:%M:%S" if " " in raw.strip() else "%Y-%m-%d").replace(
            tzinfo=UTC
        )

    def app_settings(self) -> dict[str, Any]:
        return {**super().app_settings(), "filter_zone": self.filter_zone}

    def change_app(self, partial: Mapping[str, Any]) -> None:
        rest = dict(partial)
        zone = rest.pop("filter_zone", None)
        if zone is not None and zone not in ("shop", "utc"):
            raise VendorError(400, "bad_request", "filter_zone is 'shop' or 'utc'")
        super().change_app(rest)
        if zone is not None:
            self.filter_zone = zone

    def _page(self, request: Request, items: list[Record]) -> list[Record]:
        number, limit = self._paging(request)
        return self.apply_item_fault(request, page(items, (number - 1) * limit, limit))

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
            "metafields": link(request, lang, "shop/metafields"),
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
    def _customers(self, request: Request, lang: str) -> list[Record]:
        self._check_lang(lang)
        email = (request.args.get("email") or "").strip().lower()
        found = self._filtered(request, self.customers)
        return [c for c in found if not email or str(c.get("email") or "").strip().lower() == email]

    def list_customers(self, request: Request, lang: str) -> Response:
        with self.lock:
            chunk = self._page(request, self._customers(request, lang))
            return json_response({"customers": [render_customer(request, lang, c) for c in chunk]})

    def count_customers(self, request: Request, lang: str) -> Response:
        with self.lock:
            return json_response({"count": len(self._customers(request, lang))})

    def _customer(self, lang: str, customer_id: int) -> Record:
        self._check_lang(lang)
        customer = self.customers.get(customer_id)
        if customer is None:
            raise VendorError(404, "not_found", "Not found")
        return customer

    def get_customer(self, request: Request, lang: str, customer_id: int) -> Response:
        with self.lock:
            customer = self._customer(lang, customer_id)
            return json_response({"customer": render_customer(request, lang, customer)})

    # ----- customer metafields ----------------------------------------------------------------------
    def list_metafields(self, request: Request, lang: str, customer_id: int) -> Response:
        with self.lock:
            self._customer(lang, customer_id)
            rows = sorted(self.metafields[customer_id], key=lambda row: row["id"])
            return json_response({"customerMetafields": self._page(request, rows)})

    def count_metafields(self, request: Request, lang: str, customer_id: int) -> Response:
        with self.lock:
            self._customer(lang, customer_id)
            return json_response({"count": len(self.metafields[customer_id])})

    def create_metafield(self, request: Request, lang: str, customer_id: int) -> Response:
        fields = wrapped(request, "customerMetafield", required=("key", "value"))
        with self.lock:
            self._customer(lang, customer_id)
            # No upsert: a second POST with the same key is a second row (look up before creating).
            row = self._new_row(fields["key"], fields["value"])
            self.metafields[customer_id].append(row)
            return json_response({"customerMetafield": copy.deepcopy(row)}, 201)

    def one_metafield(self, request: Request, lang: str, customer_id: int, metafield_id: int) -> Response:
        fields = wrapped(request, "customerMetafield", required=()) if request.method == "PUT" else {}
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
    def _orders(self, request: Request, lang: str) -> list[Record]:
        self._check_lang(lang)
        customer = _number(request, "customer", 0)
        found = self._filtered(request, self.orders)
        return [o for o in found if not customer or o["customerId"] == customer]

    def list_orders(self, request: Request, lang: str) -> Response:
        with self.lock:
            chunk = self._page(request, self._orders(request, lang))
            return json_response({"orders": [render_order(request, lang, o) for o in chunk]})

    def count_orders(self, request: Request, lang: str) -> Response:
        with self.lock:
            return json_response({"count": len(self._orders(request, lang))})

    def get_order(self, request: Request, lang: str, order_id: int) -> Response:
        with self.lock:
            self._check_lang(lang)
            order = self.orders.get(order_id)
            if order is None:
                raise VendorError(404, "not_found", "Not found")
            return json_response({"order": render_order(request, lang, order)})


SANDBOX = LightspeedSandbox
