"""Acme's JSON API: customers by keyset on id within an `updated_since` window, orders by page
number with a total, tags written one customer at a time. Declarations only, on the kit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import SecretStr

from connectors.auth import HeaderAuth
from connectors.base import Capabilities, CheckReport, Connector, Permission
from connectors.http import ApiClient
from connectors.paging import KeysetPaginator, PageNumberPaginator, Reply
from connectors.settings import SystemSettings
from connectors.streams import RecordSpec, Stream
from connectors.window import Window
from mapping.model import FieldSpec, Kind, WriteBack

PAGE = 2  # small, so even a demo reads several pages


class AcmeSettings(SystemSettings):
    type: Literal["acme"]
    api_key: SecretStr


class AcmeConnector(Connector):
    type = "acme"
    settings_class = AcmeSettings
    numeric_ids = True
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=True, write_fields=False
    )
    contact_fields = {
        "email": FieldSpec("email", "email"),
        "first_name": FieldSpec("first_name"),
        "last_name": FieldSpec("last_name"),
    }
    order_fields = {
        "customer_id": FieldSpec("customer_id", "id"),
        "amount": FieldSpec("total", "money"),
        "currency": FieldSpec("currency", "currency"),
        "created_at": FieldSpec("created_at", "datetime"),
    }
    settings: AcmeSettings

    def make_client(self) -> ApiClient:
        return self.api_client(
            auth=HeaderAuth({"Authorization": SecretStr(f"Bearer {self.settings.api_key.get_secret_value()}")})
        )

    def check(self) -> CheckReport:
        self.client.request("GET", "/api/customers", params={"limit": 1})
        return CheckReport(self.capabilities, [Permission("customers", True), Permission("orders", True)])

    def contacts_stream(self) -> Stream:
        return self.stream(
            Kind.CONTACT,
            self._customers,
            lambda at: KeysetPaginator(self.name, PAGE, lambda reply, _: reply.items[-1].get("id"), at),
            RecordSpec("id", ("updated_at",)),
        )

    def orders_stream(self) -> Stream:
        return self.stream(
            Kind.ORDER,
            self._orders,
            lambda at: PageNumberPaginator(self.name, PAGE, at),
            RecordSpec("id", ("created_at",)),
            incremental=False,
        )

    def _customers(self, after: Any, window: Window) -> Reply:
        params: dict[str, Any] = {"limit": PAGE, "after_id": after or 0}
        if window.since is not None:
            params["updated_since"] = window.since.isoformat()
        return Reply(self.client.request("GET", "/api/customers", params=params).body)

    def _orders(self, page: Any, window: Window) -> Reply:
        response = self.client.request("GET", "/api/orders", params={"page": page, "per_page": PAGE})
        return Reply(response.body["orders"], total_pages=int(response.body["pages"]))

    def payload_tags(self, payload: Mapping[str, Any]) -> list[str]:
        return [t for t in payload.get("tags") or [] if isinstance(t, str)]

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("status") == "paid"

    def write_one(self, change: WriteBack) -> bool:
        body = {"add": sorted(change.add_tags), "remove": sorted(change.remove_tags)}
        self.client.request("PUT", f"/api/customers/{change.record_id}/tags", json_body=body)
        return True


CONNECTOR = AcmeConnector
