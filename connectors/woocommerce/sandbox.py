"""WooCommerce REST API v3 (`/wp-json/wc/v3`) emulator for tests and the demo.

Follows the WooCommerce core controllers (see ../shared/api-notes/woocommerce.md): `page` and
`per_page` (1-100) with `X-WP-Total`, `X-WP-TotalPages` and `Link`; a page past the end is an
empty list; customers filtered by `role` (default `customer`), `email`, `search`, sorted by `id`,
`include`, `name` or `registered_date`; orders by `modified_after`/`modified_before`/`after`/
`before` (exclusive, site time unless `dates_are_gmt`), `status`, `customer`, sorted with the id
as tie-breaker; `customers/batch` with at most 100 items, per-item errors and no atomicity; meta
upserts by key or meta id, never touching other keys; Basic auth or `consumer_key`/
`consumer_secret` query parameters; errors as `{code, message, data{status}}`.

Keys are checked as `WC_REST_Authentication` checks them over HTTPS (the emulator is served over
plain HTTP on loopback, but answers as a shop on HTTPS, the only way crmsync talks to one): a
consumer key the shop does not know sets no error, so the request goes on without a user and the
endpoint's own permission check answers it, 401 `woocommerce_rest_cannot_view` "Sorry, you cannot
list resources." (or `_cannot_edit` for a write); only a known key with the wrong secret is 401
"Consumer secret is invalid.". A host that strips the Authorization header (`PATCH /_sandbox/app
{"strips_authorization": true}`) makes a Basic-auth key look the same as no key at all.

API keys carry a permission, `read`, `write` or `read_write` (`key_permissions`, changeable with
`PATCH /_sandbox/app {"key_permissions": "read"}`), checked as WooCommerce's
`WC_REST_Authentication::check_permissions` does it: in WordPress's `rest_pre_dispatch`, before the
route is matched, for every request under `/wp-json/wc/`. GET and HEAD need read rights, POST, PUT,
PATCH and DELETE write rights, OPTIONS passes; a refusal is 401 `woocommerce_rest_authentication_error`.
So a read-only key posting to a route that does not exist is refused with that 401, and a key with
write rights gets WordPress's 404 `rest_no_route`, with nothing dispatched.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from connectors.sandbox import FixtureError, Route, SandboxApp, VendorError, json_response, pop_zone, utcnow
from connectors.sandbox.store import FixtureStore, Record, int_param, page
from mapping.model import parse_timestamp

PREFIX = "/wp-json/wc/v3"
MAX_PER_PAGE = 100
BATCH_LIMIT = 100
SITE_OFFSET = timedelta(hours=1)  # the emulated shop runs on Europe/Amsterdam winter time
DEFAULT_KEY = "ck_sandbox_0123456789abcdef0123456789abcdef"
DEFAULT_SECRET = "cs_sandbox_fedcba9876543210fedcba9876543210"
ROLES = ("all", "administrator", "editor", "author", "contributor", "subscriber", "customer", "shop_manager")
KEY_PERMISSIONS = ("read", "write", "read_write")
WC_NAMESPACE = "/wp-json/wc/"
READ_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NO_ROUTE = "No route was found matching the URL and request method."
ORDER_STATUSES = (
    "any",
    "pending",
    "processing",
    "on-hold",
    "completed",
    "cancelled",
    "refunded",
    "failed",
    "trash",
    "checkout-draft",
)


def _wc_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _local(gmt: str) -> str:
    return _wc_time(parse_timestamp(gmt) + SITE_OFFSET)


def _invalid_param(name: str, message: str) -> VendorError:
    return VendorError(400, "rest_invalid_param", f"Invalid parameter(s): {name}", params={name: message})


class WooCommerceSandbox(SandboxApp):
    type = "woocommerce"
    # WordPress runs WooCommerce's key check in `rest_pre_dispatch`, before it matches the route.
    authenticate_unrouted = True

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        consumer_key: str = DEFAULT_KEY,
        consumer_secret: str = DEFAULT_SECRET,
        key_permissions: str = "read_write",
        **kwargs: Any,
    ) -> None:
        """`key_permissions`: what the API key may do, `read`, `write` or `read_write` (as chosen
        under WooCommerce > Settings > Advanced > REST API)."""
        if key_permissions not in KEY_PERMISSIONS:
            raise ValueError(f"key_permissions must be one of {', '.join(KEY_PERMISSIONS)}")
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.key_permissions = key_permissions
        # A web server that drops the Authorization header before PHP sees it (CGI/FastCGI set-ups).
        self.strips_authorization = False
        # The site's time zone (Settings > General): where WordPress reads a zoned date bound.
        self.site_timezone = "Europe/Amsterdam"
        self.customer_store = FixtureStore("customers", touch=_touch, fixed=("id", "date_created", "date_created_gmt"))
        self.order_store = FixtureStore("orders", touch=_touch)
        # The live records by id, which tests and the fault lab edit in place.
        self.customers = self.customer_store.records
        self.orders = self.order_store.records
        self._meta_seq = 5000
        super().__init__(data, **kwargs)

    # ----- routes and hooks -------------------------------------------------------------------
    def client_settings(self) -> dict[str, Any]:
        return {"consumer_key": self.consumer_key, "consumer_secret": self.consumer_secret, **super().client_settings()}

    def routes(self) -> Sequence[Route]:
        return [
            Route(f"{PREFIX}/customers", ("GET",), self.list_customers, lists=True),
            Route(f"{PREFIX}/customers/batch", ("POST", "PUT", "PATCH"), self.batch_customers),
            Route(f"{PREFIX}/customers/<int:customer_id>", ("GET",), self.get_customer),
            Route(f"{PREFIX}/customers/<int:customer_id>", ("POST", "PUT", "PATCH"), self.update_customer),
            Route(f"{PREFIX}/orders", ("GET",), self.list_orders, lists=True),
            Route(f"{PREFIX}/orders/<int:order_id>", ("GET",), self.get_order),
        ]

    def app_settings(self) -> dict[str, Any]:
        return {
            **super().app_settings(),
            "key_permissions": self.key_permissions,
            "site_timezone": self.site_timezone,
            "strips_authorization": self.strips_authorization,
        }

    def change_app(self, partial: Mapping[str, Any]) -> None:
        rest = dict(partial)
        zone = pop_zone(rest, "site_timezone")
        if "key_permissions" in rest:
            value = rest.pop("key_permissions")
            if value not in KEY_PERMISSIONS:
                raise VendorError(400, "bad_request", f"key_permissions must be one of {', '.join(KEY_PERMISSIONS)}")
            self.key_permissions = value
        if "strips_authorization" in rest:
            self.strips_authorization = bool(rest.pop("strips_authorization"))
        super().change_app(rest)
        if zone is not None:
            self.site_timezone = zone

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        if code == "rest_no_route":
            message = NO_ROUTE  # WordPress core's words (WP_REST_Server::dispatch)
        return json_response({"code": code, "message": message, "data": {"status": status, **extra}}, status)

    def auth_failure(self) -> Response:
        """A key revoked (or its WordPress user deleted) since: WooCommerce no longer knows it, so
        the request is anonymous and a list answers as it answers a visitor."""
        return self.error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")

    def anonymous(self, request: Request) -> Response | None:
        """A request WooCommerce found no user for: routing answers a path no route has, else
        the endpoint's own permission check (401, as no user is signed in)."""
        if not self._routed(request):
            return None  # no user, no key check: WordPress answers rest_no_route
        if request.method == "GET":
            return self.error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        return self.error(401, "woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource.")

    def _routed(self, request: Request) -> bool:
        """Whether a route answers this path and method (what WordPress finds after the checks)."""
        try:
            self.url_map.bind_to_environ(request.environ).match(method=request.method)
        except HTTPException:
            return False
        return True

    def is_write(self, request: Request, route: Route | None) -> bool:
        # A write method on a path no route answers is dispatched nowhere: it changes nothing.
        return super().is_write(request, route) and (route is not None or self._routed(request))

    def authenticate(self, request: Request) -> Response | None:
        if not request.path.startswith(WC_NAMESPACE):
            return None  # WooCommerce authenticates only requests to its own namespace
        key, secret = request.args.get("consumer_key"), request.args.get("consumer_secret")
        header = "" if self.strips_authorization else request.headers.get("Authorization", "")
        if not (key and secret) and header.lower().startswith("basic "):
            try:
                key, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                key = secret = None  # PHP makes no PHP_AUTH_USER of it: no key
        # perform_basic_authentication: no key, or one the shop does not know, returns without an
        # error; the request goes on without a user.
        if not key or not secret or key != self.consumer_key:
            return self.anonymous(request)
        if secret != self.consumer_secret:
            return self.error(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
        return self._check_permissions(request.method)

    def _check_permissions(self, method: str) -> Response | None:
        """WC_REST_Authentication::check_permissions: the key's permission against the method."""
        if method == "OPTIONS":
            return None
        if method in READ_METHODS:
            need = "read"
        elif method in WRITE_METHODS:
            need = "write"
        else:
            return self.error(401, "woocommerce_rest_authentication_error", "Unknown request method.")
        if self.key_permissions in (need, "read_write"):
            return None
        return self.error(
            401, "woocommerce_rest_authentication_error", f"The API key provided does not have {need} permissions."
        )

    # ----- fixtures ---------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        self.customer_store.load(data.get("customers"), self._customer, "woocommerce/customers.json")
        self.order_store.load(data.get("orders"), self._order, "woocommerce/orders.json")

    def _dates(self, where: str, record: dict[str, Any], *names: str) -> None:
        now = _wc_time(utcnow())
        for name in names:
            gmt = record.get(f"{name}_gmt")
            try:
                if gmt:
                    record[f"{name}_gmt"] = _wc_time(parse_timestamp(str(gmt)))
                elif record.get(name):
                    record[f"{name}_gmt"] = _wc_time(parse_timestamp(str(record[name])) - SITE_OFFSET)
                else:
                    record[f"{name}_gmt"] = record.get("date_created_gmt") or now
            except ValueError:
                raise FixtureError(f"{where}: {name}_gmt is not an ISO-8601 date") from None
            record[name] = _local(record[f"{name}_gmt"])

    def _customer(self, where: str, item: Any) -> Record:
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected an object")
        if not isinstance(item.get("id"), int) or item["id"] <= 0:
            raise FixtureError(f"{where}: id must be a positive integer")
        customer = copy.deepcopy(item)
        for section in ("billing", "shipping"):
            if customer.get(section) is not None and not isinstance(customer[section], dict):
                raise FixtureError(f"{where}: {section} must be an object")
        meta = customer.get("meta_data", [])
        if not isinstance(meta, list) or not all(isinstance(m, dict) and isinstance(m.get("key"), str) for m in meta):
            raise FixtureError(f"{where}: meta_data must be a list of {{key, value}} objects")
        customer["meta_data"] = [self._meta_row(m["key"], m.get("value"), m.get("id")) for m in meta]
        self._dates(where, customer, "date_created", "date_modified")
        customer.setdefault("email", "")
        customer.setdefault("first_name", "")
        customer.setdefault("last_name", "")
        customer.setdefault("role", "customer")
        customer.setdefault("username", (customer["email"] or f"user{customer['id']}").split("@")[0])
        customer["billing"] = {**_empty_address(with_email=True), **(customer.get("billing") or {})}
        customer["shipping"] = {**_empty_address(with_email=False), **(customer.get("shipping") or {})}
        customer.setdefault("is_paying_customer", False)
        customer.setdefault("avatar_url", "")
        return customer

    def _order(self, where: str, item: Any) -> Record:
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected an object")
        if not isinstance(item.get("id"), int) or item["id"] <= 0:
            raise FixtureError(f"{where}: id must be a positive integer")
        order = copy.deepcopy(item)
        if not isinstance(order.get("total"), str | int | float) or isinstance(order.get("total"), bool):
            raise FixtureError(f'{where}: total must be a string amount like "29.35"')
        if not isinstance(order.get("customer_id", 0), int):
            raise FixtureError(f"{where}: customer_id must be an integer (0 for guests)")
        if order.get("billing") is not None and not isinstance(order["billing"], dict):
            raise FixtureError(f"{where}: billing must be an object")
        self._dates(where, order, "date_created", "date_modified")
        order["total"] = str(order["total"])
        order.setdefault("status", "completed")
        order.setdefault("currency", "EUR")
        order.setdefault("customer_id", 0)
        order.setdefault("number", str(order["id"]))
        order["billing"] = {**_empty_address(with_email=True), **(order.get("billing") or {})}
        order.setdefault("meta_data", [])
        # Every order reply lists its refunds (the REST controllers always add the key), each
        # `total` negative ("-10.00"); a fixture without any has none.
        order.setdefault("refunds", [])
        order.setdefault("line_items", [])
        order.setdefault("coupon_lines", [])
        return order

    def _meta_row(self, key: str, value: Any, meta_id: Any = None) -> dict[str, Any]:
        if not isinstance(meta_id, int):
            self._meta_seq += 1
            meta_id = self._meta_seq
        return {"id": meta_id, "key": key, "value": value}

    def stamp_customer(self, customer_id: str, moment: datetime) -> None:
        """Sets a customer's modification time as the vendor would have written it (a test moves
        records onto a read's boundary)."""
        customer = self.customers[int(customer_id)]
        customer["date_modified_gmt"] = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        customer["date_modified"] = _local(customer["date_modified_gmt"])

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        return self.customer_store.find(customer_id)

    def delete_customer(self, customer_id: str) -> dict[str, Any] | None:
        return self.customer_store.remove(customer_id)

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.customer_store.patch(customer_id, partial, self._patch_meta)

    def put_order(self, item: Mapping[str, Any]) -> None:
        """An order placed or changed in the shop (a shopper checking out, a payment arriving), in
        fixture shape; its modification time is now, as WooCommerce stamps it."""
        with self.lock:
            order = self._order("order", {k: v for k, v in item.items() if not k.startswith("date_modified")})
            self.order_store.add(order)
            self.order_store.touch(order)

    def _patch_meta(self, customer: Record, key: str, value: Any) -> bool:
        """A hand edit's meta_data list goes through WooCommerce's own meta update."""
        if key == "meta_data" and isinstance(value, list):
            self._merge_meta(customer, value)
            return True
        return False

    def _merge_meta(self, customer: dict[str, Any], items: list[Any]) -> bool:
        """WC_Data::update_meta_data for each item: by meta id when given, else by key (the first
        row with that key is updated and later duplicates dropped), else a new row."""
        changed = False
        rows: list[dict[str, Any]] = customer["meta_data"]
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
                raise VendorError(
                    400,
                    "rest_invalid_param",
                    "Invalid parameter(s): meta_data",
                    params={"meta_data": "meta_data[] needs a key"},
                )
            key, value = item["key"], item.get("value")
            by_id = [r for r in rows if isinstance(item.get("id"), int) and r["id"] == item["id"]]
            same_key = by_id or [r for r in rows if r["key"] == key]
            if same_key:
                first = same_key[0]
                if first["value"] != value or first["key"] != key:
                    first["key"], first["value"] = key, value
                    changed = True
                if not by_id:
                    for duplicate in same_key[1:]:
                        rows.remove(duplicate)
                        changed = True
            else:
                rows.append(self._meta_row(key, value))
                changed = True
        return changed

    # ----- shared list machinery ----------------------------------------------------------------
    def _paging(self, request: Request) -> tuple[int, int]:
        per_page = _whole_number(request, "per_page", 10)
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise _invalid_param("per_page", f"per_page must be between 1 (inclusive) and {MAX_PER_PAGE} (inclusive)")
        number = _whole_number(request, "page", 1)
        if number < 1:
            raise _invalid_param("page", "page must be greater than or equal to 1")
        return number, per_page

    def _page_response(self, request: Request, items: list[dict[str, Any]], number: int, per_page: int) -> Response:
        total = len(items)
        pages = math.ceil(total / per_page) if total else 0
        chunk = page(items, (number - 1) * per_page, per_page)
        chunk = self.apply_item_fault(request, chunk)
        fields = request.args.get("_fields")
        if fields:
            wanted = {f.strip() for f in fields.split(",")}
            chunk = [{k: v for k, v in item.items() if k in wanted} for item in chunk]
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        links = []
        base = {k: v for k, v in request.args.items() if k not in ("consumer_key", "consumer_secret")}
        if number > 1:
            links.append(
                f'<{request.base_url}?{urlencode({**base, "page": min(number - 1, max(pages, 1))})}>; rel="prev"'
            )
        if pages > number:
            links.append(f'<{request.base_url}?{urlencode({**base, "page": number + 1})}>; rel="next"')
        if links:
            headers["Link"] = ", ".join(links)
        return json_response(chunk, 200, headers)

    # ----- customers --------------------------------------------------------------------------
    def list_customers(self, request: Request) -> Response:
        number, per_page = self._paging(request)
        role = request.args.get("role", "customer")
        if role not in ROLES:
            raise _invalid_param("role", f"role is not one of {', '.join(ROLES)}.")
        orderby = request.args.get("orderby", "name")
        if orderby not in ("id", "include", "name", "registered_date"):
            raise _invalid_param("orderby", "orderby is not one of id, include, name, and registered_date.")
        order = _order_param(request, "asc")
        email = request.args.get("email")
        search = (request.args.get("search") or "").lower()
        include = _id_list(request, "include")
        with self.lock:
            items = [
                c
                for c in self.customer_store
                if (role == "all" or c.get("role") == role)
                and (include is None or c["id"] in include)
                and (not email or c.get("email", "").lower() == email.lower())
                and (not search or search in f"{c.get('email')} {c.get('first_name')} {c.get('last_name')}".lower())
            ]
            sort_key = {
                "id": lambda c: (c["id"],),
                "include": lambda c: (c["id"],),
                "name": lambda c: (f"{c.get('first_name', '')} {c.get('last_name', '')}".strip().lower(), c["id"]),
                "registered_date": lambda c: (c["date_created_gmt"], c["id"]),
            }[orderby]
            items.sort(key=sort_key, reverse=order == "desc")
            return self._page_response(request, items, number, per_page)

    def get_customer(self, request: Request, customer_id: int) -> Response:
        with self.lock:
            customer = self.customer_store.get(customer_id)
            if customer is None:
                return self.error(404, "woocommerce_rest_invalid_id", "Invalid resource ID.")
            return json_response(copy.deepcopy(customer))

    def _apply_update(self, customer_id: Any, body: Any) -> dict[str, Any]:
        customer = self.customer_store.get(customer_id) if isinstance(customer_id, int) else None
        if customer is None:
            raise VendorError(400, "woocommerce_rest_invalid_id", "Invalid resource ID.")
        if not isinstance(body, dict):
            raise VendorError(400, "rest_invalid_json", "The JSON body passed is not valid.")
        if "username" in body and body["username"] != customer.get("username"):
            raise VendorError(400, "woocommerce_rest_customer_invalid_argument", "Username isn't editable.")
        meta = body.get("meta_data")
        if meta is not None and not isinstance(meta, list):
            raise _invalid_param("meta_data", "meta_data is not of type array.")
        changed = self._merge_meta(customer, meta or [])
        for key in ("first_name", "last_name", "email"):
            if key in body and body[key] != customer.get(key):
                customer[key] = body[key]
                changed = True
        for section in ("billing", "shipping"):
            if isinstance(body.get(section), dict):
                customer[section].update(body[section])
                changed = True
        if changed:
            self.customer_store.touch(customer)
        return copy.deepcopy(customer)

    def update_customer(self, request: Request, customer_id: int) -> Response:
        body = _json_body(request)
        with self.lock:
            return json_response(self._apply_update(customer_id, body))

    def batch_customers(self, request: Request) -> Response:
        body = _json_body(request)
        if not isinstance(body, dict):
            raise VendorError(400, "rest_invalid_json", "The JSON body passed is not valid.")
        parts = {name: body.get(name) or [] for name in ("create", "update", "delete")}
        if not all(isinstance(v, list) for v in parts.values()):
            raise _invalid_param("update", "create, update and delete must be arrays.")
        if sum(len(v) for v in parts.values()) > BATCH_LIMIT:
            raise VendorError(
                413,
                "woocommerce_rest_request_entity_too_large",
                f"Unable to accept more than {BATCH_LIMIT} items for this request.",
            )
        result: dict[str, list[Any]] = {"create": [], "update": [], "delete": []}
        with self.lock:
            for item in parts["create"]:
                result["create"].append(self._batch_create(item))
            for item in parts["update"]:
                item_id = item.get("id") if isinstance(item, dict) else None
                try:
                    result["update"].append(self._apply_update(item_id, item))
                except VendorError as exc:
                    result["update"].append(_item_error(item_id, exc))
            for item_id in parts["delete"]:
                if isinstance(item_id, int) and self.customer_store.records.pop(item_id, None) is not None:
                    result["delete"].append({"id": item_id})
                else:
                    result["delete"].append(
                        _item_error(item_id, VendorError(400, "woocommerce_rest_invalid_id", "Invalid resource ID."))
                    )
        return json_response({k: v for k, v in result.items() if parts[k]})

    def _batch_create(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str) or "@" not in item["email"]:
            return _item_error(
                0, VendorError(400, "registration-error-invalid-email", "Please provide a valid email address.")
            )
        if any(c.get("email", "").lower() == item["email"].lower() for c in self.customer_store):
            return _item_error(
                0,
                VendorError(
                    400, "registration-error-email-exists", "An account is already registered with your email address."
                ),
            )
        new_id = max(self.customer_store.records, default=0) + 1
        created = self.customer_store.add(
            self._customer("batch create", {**item, "id": new_id, "date_created_gmt": _wc_time(utcnow())})
        )
        return copy.deepcopy(created)

    # ----- orders -------------------------------------------------------------------------------
    def list_orders(self, request: Request) -> Response:
        number, per_page = self._paging(request)
        orderby = request.args.get("orderby", "date")
        if orderby not in ("date", "id", "include", "title", "slug", "modified"):
            raise _invalid_param("orderby", "orderby is not one of date, id, include, title, slug, and modified.")
        order = _order_param(request, "desc")
        gmt = request.args.get("dates_are_gmt", "false").lower() in ("1", "true")
        bounds = []
        for name, column, is_after in (
            ("after", "date_created", True),
            ("before", "date_created", False),
            ("modified_after", "date_modified", True),
            ("modified_before", "date_modified", False),
        ):
            raw = request.args.get(name)
            if raw:
                try:
                    moment = parse_timestamp(raw)
                except ValueError:
                    raise _invalid_param(name, f"{name} is not a valid date.") from None
                if _zoned(raw):
                    # WordPress's date query keeps a bound without a zone as written, but turns one
                    # with a zone into the site's wall-clock time, then compares that with the
                    # column asked for, `_gmt` included (WP_Date_Query::build_mysql_datetime).
                    moment = moment.astimezone(ZoneInfo(self.site_timezone)).replace(tzinfo=UTC)
                bounds.append((column + ("_gmt" if gmt else ""), _wc_time(moment), is_after))
        statuses = [s for s in (request.args.get("status") or "any").split(",") if s]
        for status in statuses:
            if status not in ORDER_STATUSES:
                raise _invalid_param("status", f"status[0] is not one of {', '.join(ORDER_STATUSES)}.")
        customer = request.args.get("customer")
        with self.lock:
            items = []
            for o in self.order_store:
                if "any" in statuses and o["status"] == "trash":
                    continue
                if "any" not in statuses and o["status"] not in statuses:
                    continue
                if customer is not None and str(o.get("customer_id")) != customer:
                    continue
                # WP_Date_Query's after/before are exclusive.
                if all((o[col] > value) if is_after else (o[col] < value) for col, value, is_after in bounds):
                    items.append(o)
            key_column = {"date": "date_created_gmt", "modified": "date_modified_gmt"}.get(orderby)
            items.sort(key=lambda o: (o[key_column], o["id"]) if key_column else (o["id"],), reverse=order == "desc")
            return self._page_response(request, items, number, per_page)

    def get_order(self, request: Request, order_id: int) -> Response:
        with self.lock:
            found = self.order_store.get(order_id)
            if found is None:
                return self.error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            return json_response(copy.deepcopy(found))


def _empty_address(*, with_email: bool) -> dict[str, str]:
    fields = [
        "first_name",
        "last_name",
        "company",
        "address_1",
        "address_2",
        "city",
        "state",
        "postcode",
        "country",
        "phone",
    ]
    if with_email:
        fields.append("email")
    return dict.fromkeys(fields, "")


def _touch(record: Record) -> None:
    record["date_modified_gmt"] = _wc_time(utcnow())
    record["date_modified"] = _local(record["date_modified_gmt"])


def _whole_number(request: Request, name: str, default: int) -> int:
    """WordPress refuses an empty value too as no integer (`int_param` would take it as absent)."""
    if request.args.get(name) == "":
        raise _invalid_param(name, f"{name} is not of type integer.")
    return int_param(request, name, default, invalid=lambda _: _invalid_param(name, f"{name} is not of type integer."))


def _id_list(request: Request, name: str) -> set[int] | None:
    """An array-of-ids argument (`include`): WordPress takes it as `include[]=1&include[]=2` or as
    one comma-separated text (`wp_parse_list`), and refuses an item that is no whole number."""
    values = request.args.getlist(name) + request.args.getlist(f"{name}[]")
    if not values:
        return None
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    for i, item in enumerate(items):
        if not item.isdigit():
            raise _invalid_param(name, f"{name}[{i}] is not of type integer.")
    return {int(item) for item in items}


def _order_param(request: Request, default: str) -> str:
    order = request.args.get("order", default)
    if order not in ("asc", "desc"):
        raise _invalid_param("order", "order is not one of asc and desc.")
    return order


def _json_body(request: Request) -> Any:
    try:
        return json.loads(request.get_data() or b"{}")
    except ValueError:
        raise VendorError(400, "rest_invalid_json", "The JSON body passed is not valid.") from None


def _item_error(item_id: Any, exc: VendorError) -> dict[str, Any]:
    return {
        "id": item_id if isinstance(item_id, int) else 0,
        "error": {"code": exc.code, "message": exc.message, "data": {"status": exc.status, **exc.data}},
    }


SANDBOX = WooCommerceSandbox


def _zoned(text: str) -> bool:
    """Whether an ISO 8601 time names its zone (`Z`, `+01:00`, `-0500`)."""
    return bool(re.search(r"(?:[Zz]|[+-]\d{2}:?\d{2})$", text.strip()))
