"""Acme's emulator, on the sandbox kit: two stores, three routes, a bearer key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request, Response

from connectors.sandbox import FixtureError, Route, SandboxApp, VendorError, json_response, utcnow
from connectors.sandbox.store import FixtureStore, Record, int_param, page

API_KEY = "acme-sandbox-key"


def _invalid(message: str) -> Exception:
    return VendorError(400, "invalid", message)


class AcmeSandbox(SandboxApp):
    type = "acme"

    def __init__(self, data: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.customers = FixtureStore("acme/customers", touch=_touch)
        self.orders = FixtureStore("acme/orders")
        super().__init__(data, **kwargs)

    def routes(self) -> Sequence[Route]:
        return [
            Route("/api/customers", ("GET",), self.list_customers, lists=True),
            Route("/api/orders", ("GET",), self.list_orders, lists=True),
            Route("/api/customers/<int:customer_id>/tags", ("PUT",), self.put_tags),
        ]

    def load(self, data: Mapping[str, Any]) -> None:
        self.customers.load(data.get("customers"), _customer)
        self.orders.load(data.get("orders"), _order)

    def authenticate(self, request: Request) -> Response | None:
        return None if request.headers.get("Authorization") == f"Bearer {API_KEY}" else self.auth_failure()

    def client_settings(self) -> dict[str, Any]:
        return {"api_key": API_KEY, **super().client_settings()}

    def known_secrets(self) -> list[str]:
        return [API_KEY]

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        return self.customers.find(customer_id)

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.customers.patch(customer_id, partial)

    def list_customers(self, request: Request) -> Response:
        limit = int_param(request, "limit", 50, invalid=_invalid, low=1, high=100)
        after = int_param(request, "after_id", 0, invalid=_invalid, low=0)
        since = request.args.get("updated_since") or ""
        chosen = [c for c in self.customers.sorted() if c["id"] > after and c["updated_at"] >= since[:19]]
        return json_response(page(chosen, 0, limit))

    def list_orders(self, request: Request) -> Response:
        size = int_param(request, "per_page", 50, invalid=_invalid, low=1, high=100)
        number = int_param(request, "page", 1, invalid=_invalid, low=1)
        everything = self.orders.sorted()
        pages = max(1, -(-len(everything) // size))
        return json_response({"orders": page(everything, (number - 1) * size, size), "pages": pages})

    def put_tags(self, request: Request, customer_id: int) -> Response:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise VendorError(404, "not_found", f"no customer {customer_id}")
        body = request.get_json(silent=True) or {}
        tags = [t for t in customer["tags"] if t not in set(body.get("remove") or [])]
        customer["tags"] = tags + [t for t in body.get("add") or [] if t not in tags]
        self.customers.touch(customer)
        return json_response(customer)


def _touch(record: Record) -> None:
    record["updated_at"] = utcnow().strftime("%Y-%m-%dT%H:%M:%S")


def _customer(where: str, item: Any) -> Record:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int) or item["id"] <= 0:
        raise FixtureError(f"{where}: a customer needs a positive integer id")
    return {"tags": [], "updated_at": "2026-01-01T00:00:00", **item}


def _order(where: str, item: Any) -> Record:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        raise FixtureError(f"{where}: an order needs an integer id")
    return dict(item)


SANDBOX = AcmeSandbox
