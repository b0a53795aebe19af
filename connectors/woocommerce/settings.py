"""WooCommerce's settings and the REST API v3 facts the connector is built on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from connectors.settings import SystemSettings

API = "/wp-json/wc/v3"
MAX_PAGE = 100
BATCH_LIMIT = 100
COUNTED_STATUSES = frozenset({"completed", "processing", "on-hold"})
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
