"""Segments from traits: the loyalty x value quadrant and the loyalty tier.

The marketing model (../shared/background/001): loyalty (how long and how often a customer stays)
against value (what the customer brings in) gives four strategies: friends (high, high: retain),
supporters (high loyalty, low value: develop), acquaintances (low loyalty, high value: bind) and
passers-by (low, low: get acquainted). The thresholds are configuration; `now` is an input.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mapping.model import Membership, Traits

QUADRANTS = ("friends", "supporters", "acquaintances", "passers-by")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuadrantRules(_Strict):
    loyal_min_orders: int = Field(default=2, ge=1, description="valid orders needed to count as loyal")
    loyal_recency_days: int = Field(default=365, ge=1, description="... with the last one this recent")
    high_value_min_revenue: Decimal = Field(default=Decimal(250), ge=0, description="lifetime revenue, base currency")


class Tier(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    min_spend_12m: Decimal = Field(ge=0)


DEFAULT_TIERS = (
    Tier(name="bronze", min_spend_12m=Decimal(0)),
    Tier(name="silver", min_spend_12m=Decimal(250)),
    Tier(name="gold", min_spend_12m=Decimal(750)),
)


class SegmentSettings(_Strict):
    base_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    rates: dict[str, Decimal] = Field(
        default_factory=dict, description="units of base currency per unit of another currency"
    )
    quadrant: QuadrantRules = Field(default_factory=QuadrantRules)
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    labels: dict[str, str] = Field(default_factory=dict, description="display names for reports")

    @field_validator("tiers")
    @classmethod
    def _tiers_distinct(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be distinct")
        return tuple(sorted(tiers, key=lambda t: t.min_spend_12m))

    @model_validator(mode="after")
    def _rates_are_codes(self) -> SegmentSettings:
        for code, rate in self.rates.items():
            if len(code) != 3 or not code.isupper() or rate <= 0:
                raise ValueError(f"rates.{code}: a rate is a positive number keyed by an ISO 4217 code")
        return self

    def label(self, segment: str) -> str:
        return self.labels.get(segment, segment)


def quadrant(traits: Traits, rules: QuadrantRules, now: datetime) -> str:
    days = traits.days_since_last_order(now)
    loyal = traits.order_count >= rules.loyal_min_orders and days is not None and days <= rules.loyal_recency_days
    valuable = traits.revenue >= rules.high_value_min_revenue
    if loyal:
        return "friends" if valuable else "supporters"
    return "acquaintances" if valuable else "passers-by"


def tier(traits: Traits, tiers: tuple[Tier, ...]) -> str | None:
    """The highest tier whose 12-month spend threshold the customer meets."""
    reached = [t for t in tiers if traits.spend_12m >= t.min_spend_12m]
    return reached[-1].name if reached else None


def membership(traits: Traits, settings: SegmentSettings, now: datetime) -> Membership:
    segments = {quadrant(traits, settings.quadrant, now)}
    tier_name = tier(traits, settings.tiers)
    if tier_name:
        segments.add(f"tier-{tier_name}")
    return Membership(frozenset(segments), tier_name)
