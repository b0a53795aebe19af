"""Lightspeed eCom's configuration: the settings class, the published limits and the constants the
connector's modules share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.settings import RateWindow, SystemSettings, statuses_named

MAX_PAGE = 250
SEGMENTS_KEY = "crmsync_segments"
TIER_KEY = "crmsync_loyalty_tier"
# The metafields list's envelope key; a payload holding rows under it (a fixture's, a test's) shows
# crmsync's owned state, one without (the customer list's) does not.
METAFIELDS = "customerMetafields"
# Customers whose metafields the rolling verification looks at per day, by default: 2,400 requests,
# a fifth of the 12,000 a day an API key gets. A day of 15-minute cycles reads ~500 (two list
# requests per stream and the shop), a daily full read of 20,000 customers and 100,000 orders
# ~500, and a busy day's write-back of ~1,000 changed customers (a look-up, which the verification
# of the same cycle saves, and one or two writes each) ~3,000: all together under half the budget,
# leaving the rest to a first write-back and to other apps on the same key. At 100 an hour a shop of
# 20,000 customers is looked at in full every 8 to 9 days.
VERIFY_PER_DAY = 2400
NOT_FOUND = "not found"
CANCELLED = "cancelled"  # an order `status`: such an order never counts
# An order's `paymentStatus`, assumed: `paid` and `not_paid` seen in live payloads, the four as a
# client library of the API lists them; Lightspeed's reference could not be read
# (../shared/api-notes/lightspeed-ecom.md, "Revenue").
PAYMENT_STATUSES = frozenset({"not_paid", "partially_paid", "paid", "cancelled"})
# What crmsync counted before `counted_payment_statuses` existed (all but cancelled), kept as its
# default so an upgrade changes no value: not_paid counts in it (docs/setup/lightspeed.md).
COUNTED_PAYMENT_STATUSES = ("not_paid", "paid", "partially_paid")
KEY_RIGHTS = "the shop's back office: Settings > Developers > API keys > this key > Permissions"


def published_limits() -> list[RateWindow]:
    """Per API key: 300 requests per 5 minutes, 3000 per hour, 12000 per day (the windows the
    `X-RateLimit-*` headers report, in that order), and 20 per second (Lightspeed staff on the
    community forum, "Changes to eCom API rate Limits", effective 22 Nov 2021)."""
    return [
        RateWindow(requests=300, per_seconds=300),
        RateWindow(requests=3000, per_seconds=3600),
        RateWindow(requests=12000, per_seconds=86400),
        RateWindow(requests=20, per_seconds=1),
    ]


class LightspeedSettings(SystemSettings):
    type: Literal["lightspeed"]
    api_key: SecretStr
    api_secret: SecretStr
    language: str = Field(
        default="nl", pattern=r"^[a-z]{2}$", description="one of the shop's languages; every path starts with it"
    )
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE)
    rate_limit: list[RateWindow] = Field(default_factory=published_limits)
    counted_payment_statuses: list[str] = Field(
        default_factory=lambda: list(COUNTED_PAYMENT_STATUSES),
        min_length=1,
        description="an order's paymentStatus values whose amount counts toward a customer's value",
    )
    verify_per_day: int = Field(
        default=VERIFY_PER_DAY,
        ge=0,
        description=(
            "customers a day whose metafields are looked at (one request each) to see hand edits of "
            "crmsync's; the list carries none. 2400 is a fifth of the 12000 requests a day: with reads and a "
            "busy day's write-back under half of it. 0: never"
        ),
    )

    @field_validator("counted_payment_statuses")
    @classmethod
    def _documented_statuses(cls, value: list[str]) -> list[str]:
        return statuses_named(value, PAYMENT_STATUSES, "Lightspeed eCom paymentStatus")
