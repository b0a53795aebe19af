"""WooCommerce's settings and the REST API v3 facts the connector is built on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.settings import SystemSettings, statuses_named

API = "/wp-json/wc/v3"
MAX_PAGE = 100
BATCH_LIMIT = 100
# An order's `status` as REST API v3 documents it (the `status` parameter of GET /orders, less its
# `any`): WooCommerce core's `wc_get_order_statuses()` without their `wc-` prefix, and `trash`.
ORDER_STATUSES = frozenset(
    {"pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed", "trash"}
)
# What crmsync counted before `counted_statuses` existed, kept as its default so an upgrade changes
# no value: on-hold too (awaiting a bank transfer or cheque), which WooCommerce's own "paid"
# statuses (`wc_get_is_paid_statuses()`: processing, completed) leave out (docs/setup/woocommerce.md).
COUNTED_STATUSES = ("completed", "on-hold", "processing")
UNFINISHED_STATUSES = frozenset({"pending", "failed"})
# `created_via` of orders a shopper placed: the classic checkout and the block checkout's Store API.
CHECKOUT_CHANNELS = frozenset({"checkout", "store-api"})
# WooCommerce core's offline gateways (`payment_method`): direct bank transfer, cheque, cash on delivery.
OFFLINE_PAYMENTS = frozenset({"bacs", "cheque", "cod"})
# WooCommerce writes its dates without a zone; with `dates_are_gmt` (and in the `*_gmt` fields)
# they are UTC.
WC_TIME = "%Y-%m-%dT%H:%M:%S"


class WooCommerceSettings(SystemSettings):
    type: Literal["woocommerce"]
    consumer_key: SecretStr
    consumer_secret: SecretStr
    auth: Literal["basic", "query"] = Field(
        default="basic", description="'query' sends the keys as URL parameters, for hosts that strip Authorization"
    )
    role: str = "customer"
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE)
    counted_statuses: list[str] = Field(
        default_factory=lambda: list(COUNTED_STATUSES),
        min_length=1,
        description="order statuses whose amount counts toward a customer's value",
    )

    @field_validator("counted_statuses")
    @classmethod
    def _documented_statuses(cls, value: list[str]) -> list[str]:
        # The mapping never counts an unfinished purchase (mapping.fieldmaps.map_order): listed,
        # such a status would silently change nothing.
        unfinished = sorted({status for status in value if status in UNFINISHED_STATUSES})
        if unfinished:
            raise ValueError(
                f"{', '.join(repr(status) for status in unfinished)}: an order awaiting payment at checkout or "
                "whose payment failed is an unfinished purchase (the abandoned checkout of [segments.bases]) "
                "and never counts"
            )
        return statuses_named(value, ORDER_STATUSES - UNFINISHED_STATUSES, "WooCommerce order status")
