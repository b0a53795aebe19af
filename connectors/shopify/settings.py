"""Shopify's configuration: the settings class and the API's fixed numbers.

Credentials, as Shopify hands them out today (../shared/api-notes/shopify.md): an app made in the
Dev Dashboard has a client id and secret, and crmsync gets 24-hour tokens from the client-credentials
grant (stores of the app's own organisation); an app of another organisation (an agency's) uses an
expiring offline token with its refresh token (rotated at every refresh, so the newest one is kept in
`refresh_token_file`); an app made in the admin before 2026 keeps its fixed `access_token`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from connectors.settings import Duration, SystemSettings, statuses_named

MUTATION_COST = 10  # points per mutation field, as the API reports in extensions.cost
TIER_NAMESPACE = "crmsync"
TIER_KEY = "loyalty_tier"
MAX_PAGE = 250
DEFAULT_PAGE = 100
# `Order.displayFinancialStatus`: the values of the OrderDisplayFinancialStatus enum (Admin API
# 2026-10, connectors/shopify/admin_2026-10.graphql). The field is nullable.
FINANCIAL_STATUSES = frozenset(
    {"AUTHORIZED", "EXPIRED", "PAID", "PARTIALLY_PAID", "PARTIALLY_REFUNDED", "PENDING", "REFUNDED", "VOIDED"}
)
# What crmsync counted before `counted_financial_statuses` existed (all but REFUNDED, VOIDED and
# EXPIRED), kept as its default so an upgrade changes no value: PENDING (a bank deposit, a manual
# payment not yet received), AUTHORIZED and PARTIALLY_PAID count in it (docs/setup/shopify.md).
COUNTED_FINANCIAL_STATUSES = ("AUTHORIZED", "PAID", "PARTIALLY_PAID", "PARTIALLY_REFUNDED", "PENDING")


class ShopifySettings(SystemSettings):
    type: Literal["shopify"]
    # A Dev Dashboard app (2026 on): the client-credentials grant gives 24-hour tokens.
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: SecretStr | None = None
    # An app made in the admin before 2026 (fixed token), or an expiring offline token whose
    # refresh token renews it (an app of another organisation: an agency's).
    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    refresh_token_file: str | None = Field(
        default=None, description="where crmsync keeps the newest refresh token (Shopify rotates it)"
    )
    token_renew_margin: Duration = Field(default=300.0, description="renew a token this long before it expires")
    recent_orders_only: bool = Field(
        default=False, description="accept an app without read_all_orders: traits from the last 60 days only"
    )
    api_version: str = Field(default="2026-10", pattern=r"^(\d{4}-(01|04|07|10)|unstable)$")
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE)
    bulk_write_threshold: int = Field(
        default=1000,
        ge=0,
        description="a cycle changing at least this many customers writes through bulk mutations (0: never)",
    )
    bulk_read_threshold: int = Field(
        default=10_000,
        ge=0,
        description="a full read of at least this many customers (or orders) is one bulk query (0: never)",
    )
    bulk_poll_max: Duration = Field(default=30.0, gt=0, description="longest wait between polls of a bulk operation")
    counted_financial_statuses: list[str] = Field(
        default_factory=lambda: list(COUNTED_FINANCIAL_STATUSES),
        min_length=1,
        description="an order's displayFinancialStatus values whose amount counts toward a customer's value",
    )

    @field_validator("counted_financial_statuses")
    @classmethod
    def _documented_statuses(cls, value: list[str]) -> list[str]:
        return statuses_named(value, FINANCIAL_STATUSES, "Shopify displayFinancialStatus")

    @model_validator(mode="after")
    def _one_way_in(self) -> ShopifySettings:
        has_client = self.client_id is not None or self.client_secret is not None
        problems = []  # one config error line each
        if self.refresh_token is not None or has_client:
            why = "refreshing a token" if self.refresh_token is not None else "a Dev Dashboard app"
            problems += [
                f"{key}: field required ({why} needs the app's client id and secret)"
                for key in ("client_id", "client_secret")
                if getattr(self, key) is None
            ]
        if self.refresh_token is not None and self.refresh_token_file is None:
            problems.append(
                "refresh_token_file: field required (Shopify hands out a new refresh token at every "
                "refresh and retires the old one; crmsync keeps the newest there)"
            )
        if self.refresh_token is None and has_client and self.access_token is not None:
            problems.append("access_token: set either client_id/client_secret or access_token, not both")
        if not has_client and self.refresh_token is None and self.access_token is None:
            problems.append(
                "access_token: field required (or client_id and client_secret for an app made in the Dev Dashboard)"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def flow(self) -> Literal["client_credentials", "refresh_token", "fixed_token"]:
        if self.refresh_token is not None:
            return "refresh_token"
        return "client_credentials" if self.client_id is not None else "fixed_token"
