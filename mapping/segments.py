"""Segments from traits: the loyalty x value quadrant, the lifecycle stage, the loyalty tier (with
hysteresis) and the user's rule segments.

The marketing model (../shared/background/001): loyalty (how long and how often a customer stays)
against value (what the customer brings in) gives four strategies: friends (high, high: retain),
supporters (high loyalty, low value: develop), acquaintances (low loyalty, high value: bind) and
passers-by (low, low: get acquainted). The thresholds are configuration; `now` is an input, and so
is the previous tier of every profile (the state keeps it): a tier goes up at once but comes down
only after the customer has not qualified for it for `tier_grace_days`, so it never flaps.

Everything here works on columns (numpy arrays, one element per profile); `membership` is the
one-profile form of the same computation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from mapping.bases import BASES, BaseColumns, BaseSettings, base_of, base_segments, with_consent
from mapping.calendar_days import AS_BEFORE, Calendar
from mapping.model import Membership, Traits
from mapping.rules import BASE_FIELDS, RuleError, RuleInput, compile_rule
from mapping.traits import BOOL, DAY, F64, I64, TraitColumns

QUADRANTS = ("friends", "supporters", "acquaintances", "passers-by")
LIFECYCLE = ("prospect", "new", "active", "at-risk", "lapsed")
LIFECYCLE_SEGMENTS = tuple(f"lifecycle-{stage}" for stage in LIFECYCLE)
SEGMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuadrantRules(_Strict):
    loyal_min_orders: int = Field(default=2, ge=1, description="valid orders needed to count as loyal")
    loyal_recency_days: int = Field(default=365, ge=1, description="... with the last one this recent")
    loyal_min_tenure_days: int = Field(default=0, ge=0, description="... and the first one at least this long ago")
    high_value_min_revenue: Decimal = Field(default=Decimal(250), ge=0, description="lifetime revenue, base currency")


class LifecycleWindows(_Strict):
    """prospect: no valid order; new: first order at most `new_days` ago; active: last order at most
    `active_days` ago; at-risk: at most `at_risk_days` ago; lapsed: longer ago. Day counts are whole
    days since the order (a window of 90 days includes day 90)."""

    new_days: int = Field(default=90, ge=0)
    active_days: int = Field(default=180, ge=1)
    at_risk_days: int = Field(default=365, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleWindows:
        if self.active_days >= self.at_risk_days:
            raise ValueError("at_risk_days must be longer than active_days")
        return self


class Tier(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    min_spend_12m: Decimal = Field(ge=0)


DEFAULT_TIERS = (
    Tier(name="bronze", min_spend_12m=Decimal(0)),
    Tier(name="silver", min_spend_12m=Decimal(250)),
    Tier(name="gold", min_spend_12m=Decimal(750)),
)


class Rule(_Strict):
    """A user-defined segment: profiles for which `when` holds get the tag `<prefix><name>`."""

    name: str
    when: str
    requires_consent: bool = False  # never given to someone without email marketing consent

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not SEGMENT_NAME.match(name) or len(name) > 60:
            raise ValueError(f"{name!r} is not a segment name (lower-case letters, digits and '-', at most 60)")
        if name in QUADRANTS or name.startswith(("lifecycle-", "tier-")):
            raise ValueError(f"{name!r} is a built-in segment name")
        return name

    @field_validator("when")
    @classmethod
    def _compiles(cls, when: str, info: ValidationInfo) -> str:
        name = info.data.get("name", "?")
        try:
            compile_rule(when)
        except RuleError as exc:
            raise ValueError(f"rule {name!r}, {exc}") from None
        return when


class HealthRules(_Strict):
    """When `crmsync report` flags a segment."""

    min_size: int = Field(default=25, ge=0, description="fewer members: too small")
    min_share: float = Field(default=0.01, ge=0, le=1, description="smaller share of the base: too small")
    min_stability: float = Field(default=0.8, ge=0, le=1, description="fewer members kept: unstable")
    max_overlap: float = Field(default=0.9, gt=0, le=1, description="Jaccard overlap with another segment")
    window_days: int = Field(default=30, ge=1, description="stability, churn and flows look this far back")


class SegmentSettings(_Strict):
    timezone: str | None = Field(
        default=None,
        description="the merchant's calendar for day counts, dates and years (an IANA name); unset: as before",
    )
    base_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    rates: dict[str, Decimal] = Field(
        default_factory=dict, description="units of base currency per unit of another currency"
    )
    quadrant: QuadrantRules = Field(default_factory=QuadrantRules)
    lifecycle: LifecycleWindows = Field(default_factory=LifecycleWindows)
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    tier_grace_days: int = Field(default=90, ge=0, description="days below a tier before it is taken away")
    rules: tuple[Rule, ...] = ()
    health: HealthRules = Field(default_factory=HealthRules)
    labels: dict[str, str] = Field(default_factory=dict, description="display names for reports")
    holdout: dict[str, float] = Field(
        default_factory=dict, description="segment -> share of its members left untagged (mapping/holdout.py)"
    )
    bases: BaseSettings = Field(default_factory=BaseSettings)

    @field_validator("tiers")
    @classmethod
    def _tiers_distinct(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be distinct")
        return tuple(sorted(tiers, key=lambda t: t.min_spend_12m))

    @field_validator("rules")
    @classmethod
    def _rules_distinct(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}")
            seen.add(rule.name)
        return rules

    @model_validator(mode="after")
    def _rates_are_codes(self) -> SegmentSettings:
        for code, rate in self.rates.items():
            if len(code) != 3 or not code.isupper() or rate <= 0:
                raise ValueError(f"rates.{code}: a rate is a positive number keyed by an ISO 4217 code")
        return self

    @model_validator(mode="after")
    def _rules_leave_bases_their_names(self) -> SegmentSettings:
        # A rule may carry a base's name (configs written before the bases existed) until that
        # base is switched on: then two segments would share one tag.
        for rule in self.rules:
            base = base_of(rule.name)
            if base is not None and self.bases.on(base):
                raise ValueError(f"rules: {rule.name!r} is a segment of the base {base!r}, which is switched on")
        return self

    @model_validator(mode="after")
    def _consent_names_segments(self) -> SegmentSettings:
        for name in self.bases.requires_consent:
            family = name[:-2] if name.endswith("-*") else None
            if family is not None and family not in BASES:
                raise ValueError(f"bases.requires_consent: {name!r} names no family (region-*, interest-*)")
            if family is None and not self.knows(name, enabled_only=False):
                raise ValueError(f"bases.requires_consent: no segment named {name!r}")
        return self

    @model_validator(mode="after")
    def _holdouts_name_segments(self) -> SegmentSettings:
        for name, share in self.holdout.items():
            if not self.knows(name):
                raise ValueError(f"holdout.{name}: no segment of that name")
            if name.startswith("tier-"):
                raise ValueError(f"holdout.{name}: a loyalty tier is a promise to the customer, not a campaign")
            if not 0 < share <= 0.5:
                raise ValueError(f"holdout.{name}: a share above 0 and at most 0.5 (0.1 leaves 10 % untagged)")
        return self

    def label(self, segment: str) -> str:
        return self.labels.get(segment, segment)

    def segment_names(self) -> tuple[str, ...]:
        """Every segment of a fixed name a profile can be in, in report order; the bases' families
        (region-*, interest-*) add names from the data (`knows`)."""
        return (
            *QUADRANTS,
            *LIFECYCLE_SEGMENTS,
            *(f"tier-{t.name}" for t in self.tiers),
            *(b for b in self.bases.enabled if b == base_of(b)),
            *(r.name for r in self.rules),
        )

    def knows(self, segment: str, *, enabled_only: bool = True) -> bool:
        """Whether `segment` can exist under these settings ("region-nl-nh" when regions are on)."""
        if segment in self.segment_names():
            return True
        base = base_of(segment)
        return base is not None and (base in self.bases.enabled or not enabled_only)

    def needs_consent(self, segment: str) -> bool:
        """Whether the segment is only for people who opted in: named in `bases.requires_consent`
        (a family as "interest-*"), or a rule that says so itself."""
        rule = next((r for r in self.rules if r.name == segment), None)
        return (rule is not None and rule.requires_consent) or self.bases.needs_consent(segment)

    def _rule_reads(self) -> set[str]:
        return {name for r in self.rules for name in compile_rule(r.when).names}

    def reads_needed(self) -> tuple[bool, int | None]:
        """What the connectors read beyond contacts and orders: order lines (for interests) and
        unfinished purchases of the last N days (for `abandoned-checkout`)."""
        reads = self._rule_reads()
        lines = self.bases.on("interest") or self.bases.on("cross-sell") or bool(reads & {"interests", "top_interest"})
        days = self.bases.abandoned_checkout_days if self.bases.on("abandoned-checkout") else None
        return lines, days

    def order_facts_needed(self) -> frozenset[str]:
        """Which facts of the orders the bases read: "categories", "discount", "unfinished"."""
        reads = self._rule_reads()
        lines, days = self.reads_needed()
        return frozenset(
            name
            for name, wanted in (
                ("categories", lines),
                ("discount", "discount_share" in reads),
                ("unfinished", days is not None),
            )
            if wanted
        )

    def uses_bases(self) -> bool:
        """Whether the compute needs the bases' columns: a base is on, a rule reads a base field or
        a segment that can exist asks for consent (any of the fixed names, or a family's member)."""
        reads = bool(self._rule_reads() & BASE_FIELDS)
        consent = any(self.needs_consent(name) for name in self.segment_names()) or any(
            self.bases.on(family) and self.bases.needs_consent(f"{family}-x") for family in ("region", "interest")
        )
        return bool(self.bases.enabled) or reads or consent


def _cents(amount: Decimal) -> int:
    """A threshold in whole cents; a fraction of a cent rounds up (revenue >= 249.995 needs 25000)."""
    return int((amount * 100).to_integral_value(rounding=ROUND_CEILING))


# ----- the engine, over columns -------------------------------------------------------------------
def quadrant_codes(traits: TraitColumns, rules: QuadrantRules) -> npt.NDArray[np.int8]:
    """Index into QUADRANTS per profile. A profile without orders is a passer-by."""
    loyal = (
        (traits.order_count >= rules.loyal_min_orders)
        & (traits.days_since_last_order <= rules.loyal_recency_days)
        & (traits.tenure_days >= rules.loyal_min_tenure_days)
    )
    valuable = traits.revenue_cents >= _cents(rules.high_value_min_revenue)
    return np.where(loyal, np.where(valuable, 0, 1), np.where(valuable, 2, 3)).astype(np.int8)


def lifecycle_codes(traits: TraitColumns, windows: LifecycleWindows) -> npt.NDArray[np.int8]:
    """Index into LIFECYCLE per profile."""
    has = traits.has_orders
    new = has & (traits.tenure_days <= windows.new_days)
    active = has & ~new & (traits.days_since_last_order <= windows.active_days)
    at_risk = has & ~new & ~active & (traits.days_since_last_order <= windows.at_risk_days)
    return np.select([~has, new, active, at_risk], [0, 1, 2, 3], default=4).astype(np.int8)


def tiers_reached(traits: TraitColumns, tiers: Sequence[Tier]) -> I64:
    """Index into `tiers` (sorted by threshold) of the highest tier met on 12-month spend; -1: none."""
    thresholds = np.array([_cents(t.min_spend_12m) for t in tiers], dtype=np.int64)
    return (np.searchsorted(thresholds, traits.spend_12m_cents, side="right") - 1).astype(np.int64)


@dataclass(frozen=True)
class TierState:
    """Each profile's tier (index into the sorted tiers, -1: none) and the last time (epoch
    seconds, NaN: never) it qualified for that tier or a higher one."""

    tier: I64
    qualified_at: F64

    @classmethod
    def empty(cls, size: int) -> TierState:
        return cls(np.full(size, -1, dtype=np.int64), np.full(size, np.nan))


def hold_tiers(
    reached: I64, previous: TierState, now: datetime, grace_days: int, calendar: Calendar = AS_BEFORE
) -> TierState:
    """Hysteresis: an upgrade (or staying) is immediate and refreshes the qualification time; a
    downgrade waits until the profile has not qualified for its tier for `grace_days` (days on
    `calendar`: with a zone, local midnights passed), and then goes straight to the tier reached now."""
    stamp = float(now.timestamp())
    rising = reached >= previous.tier
    with np.errstate(invalid="ignore"):
        if calendar.local:
            waited = calendar.days_between(stamp, previous.qualified_at) < grace_days
        else:
            waited = (stamp - previous.qualified_at) < grace_days * DAY
        lapsed = ~waited  # NaN (never) counts as lapsed
    keep = ~rising & ~lapsed
    tier = np.where(keep, previous.tier, reached).astype(np.int64)
    qualified = np.where(keep, previous.qualified_at, np.where(reached >= 0, stamp, np.nan))
    return TierState(tier, qualified)


@dataclass(frozen=True)
class ProfileColumns:
    """Profile fields the rules can read, one element per profile ('' when unknown), and the
    systems holding a record of each profile (bit i: systems[i])."""

    email: npt.NDArray[Any] | None = None
    phone: npt.NDArray[Any] | None = None
    first_name: npt.NDArray[Any] | None = None
    last_name: npt.NDArray[Any] | None = None
    postcode: npt.NDArray[Any] | None = None
    city: npt.NDArray[Any] | None = None
    country: npt.NDArray[Any] | None = None
    company: npt.NDArray[Any] | None = None
    record_systems: I64 | None = None


def unique_rows(packed: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], I64]:
    """The distinct rows of a byte matrix and, per row, the index of its own among them. Rows of
    up to 8 bytes (64 segments) are compared as one integer each: `np.unique(axis=0)` sorts rows
    as opaque records, ten times slower at a million profiles."""
    size, width = packed.shape
    if width > 8:
        combos, inverse = np.unique(packed, axis=0, return_inverse=True)
        return combos, inverse.reshape(-1).astype(np.int64)
    padded = np.zeros((size, 8), dtype=np.uint8)
    padded[:, :width] = packed
    keys, inverse = np.unique(padded.view(np.uint64).reshape(-1), return_inverse=True)
    return keys.view(np.uint8).reshape(-1, 8)[:, :width], inverse.reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class Assessment:
    """Segment membership of every profile, as columns."""

    names: tuple[str, ...]
    matrix: npt.NDArray[np.bool_]  # profiles x names
    quadrant: npt.NDArray[np.int8]
    lifecycle: npt.NDArray[np.int8]
    tiers: TierState
    tier_names: tuple[str, ...]
    _combos: list[Membership] = field(default_factory=list)
    _combo_of: I64 | None = None

    @property
    def size(self) -> int:
        return int(self.matrix.shape[0])

    def memberships(self) -> list[Membership]:
        """One Membership per profile. Profiles share the value objects of their combination of
        segments (a few hundred combinations at most), which keeps a million profiles cheap."""
        packed = np.packbits(self.matrix, axis=1) if self.matrix.shape[1] else np.zeros((self.size, 1), np.uint8)
        combos, inverse = unique_rows(packed)
        values = []
        for row in combos:
            bits = np.unpackbits(row)[: len(self.names)].astype(bool)
            segments = frozenset(name for name, on in zip(self.names, bits, strict=True) if on)
            tier = next((n[len("tier-") :] for n in segments if n.startswith("tier-")), None)
            values.append(Membership(segments, tier))
        return [values[i] for i in inverse.reshape(-1).tolist()]

    def tier_name(self, index: int) -> str | None:
        code = int(self.tiers.tier[index])
        return self.tier_names[code] if code >= 0 else None


def assess(
    traits: TraitColumns,
    settings: SegmentSettings,
    now: datetime,
    *,
    systems: Sequence[str] = (),
    profiles: ProfileColumns | None = None,
    previous: TierState | None = None,
    bases: BaseColumns | None = None,
    calendar: Calendar = AS_BEFORE,
) -> Assessment:
    """Every built-in, base and rule segment for every profile. `systems` names the bits of the
    system-set columns; `previous` holds each profile's tier of the last run (for hysteresis);
    `bases` the other bases (needed when `settings.uses_bases()`); `calendar` the zone of
    `settings.timezone` (the traits' day counts were read on it too)."""
    size = traits.size
    quadrant = quadrant_codes(traits, settings.quadrant)
    lifecycle = lifecycle_codes(traits, settings.lifecycle)
    reached = tiers_reached(traits, settings.tiers)
    held = hold_tiers(
        reached,
        previous if previous is not None else TierState.empty(size),
        now,
        settings.tier_grace_days,
        calendar,
    )
    tier_names = tuple(t.name for t in settings.tiers)
    columns: list[BOOL] = [quadrant == i for i in range(len(QUADRANTS))]
    columns += [lifecycle == i for i in range(len(LIFECYCLE))]
    columns += [held.tier == i for i in range(len(tier_names))]
    names = [*QUADRANTS, *LIFECYCLE_SEGMENTS, *(f"tier-{name}" for name in tier_names)]
    if bases is not None:
        loyal = quadrant <= 1  # friends or supporters
        base_names, base_columns = base_segments(bases, settings.bases, loyal, lifecycle == 3)
        names += base_names
        columns += base_columns
    if settings.rules:
        inputs = rule_input(
            traits, now, systems, profiles or ProfileColumns(), quadrant, lifecycle, held, tier_names, bases, calendar
        )
        names += [rule.name for rule in settings.rules]
        columns += [compile_rule(rule.when).evaluate(inputs) for rule in settings.rules]
    matrix = np.column_stack(columns) if columns else np.zeros((size, 0), dtype=np.bool_)
    marked = [settings.needs_consent(name) for name in names]
    if any(marked):
        if bases is None:
            raise ValueError("a segment needs consent, and the bases (which hold it) were not computed")
        with_consent(matrix, bases.email_consent, marked)
    return Assessment(tuple(names), matrix, quadrant, lifecycle, held, tier_names)


def _strings(values: Sequence[str] | npt.NDArray[Any]) -> npt.NDArray[Any]:
    return np.array(values, dtype=np.dtypes.StringDType())


def rule_input(
    traits: TraitColumns,
    now: datetime,
    systems: Sequence[str],
    profiles: ProfileColumns,
    quadrant: npt.NDArray[np.int8],
    lifecycle: npt.NDArray[np.int8],
    tiers: TierState,
    tier_names: Sequence[str],
    bases: BaseColumns | None = None,
    calendar: Calendar = AS_BEFORE,
) -> RuleInput:
    """The columns of mapping.rules.FIELDS for these profiles, each built only if a rule reads it.
    Dates are local clock times on `calendar`, as the rules read them (mapping/rules.py)."""
    size = traits.size

    def text(values: npt.NDArray[Any] | None) -> Callable[[], npt.NDArray[Any]]:
        return lambda: _strings(values) if values is not None else _strings([""] * size)

    def money(cents: I64) -> Callable[[], npt.NDArray[Any]]:
        return lambda: cents / 100.0

    def number(values: npt.NDArray[Any]) -> Callable[[], npt.NDArray[Any]]:
        return lambda: values.astype(np.float64)

    def rfm() -> npt.NDArray[Any]:
        digits = traits.r.astype(np.int64) * 100 + traits.f.astype(np.int64) * 10 + traits.m.astype(np.int64)
        table = _strings([f"{i:03d}" if i >= 111 else "" for i in range(556)])  # 0 (no orders) -> ""
        codes: npt.NDArray[Any] = table[digits]
        return codes

    def last_system() -> npt.NDArray[Any]:
        names = _strings([*systems, ""])
        return names[np.where(traits.last_order_system >= 0, traits.last_order_system, len(systems))]

    def domain() -> npt.NDArray[Any]:
        emails = text(profiles.email)()
        parts: Any = np.strings.partition(emails, _strings(["@"])[0:1].reshape(()))
        domains: npt.NDArray[Any] = parts[2]
        return domains

    builders: dict[str, Callable[[], npt.NDArray[Any]]] = {
        "order_count": number(traits.order_count),
        "revenue": money(traits.revenue_cents),
        "spend_12m": money(traits.spend_12m_cents),
        "orders_12m": number(traits.orders_12m),
        "average_order_value": lambda: np.where(traits.has_orders, traits.aov_cents / 100.0, np.nan),
        "first_order": lambda: calendar.wall(traits.first_order),
        "last_order": lambda: calendar.wall(traits.last_order),
        "days_since_last_order": lambda: traits.days_since_last_order,
        "tenure_days": lambda: traits.tenure_days,
        "online_orders": number(traits.online_orders),
        "offline_orders": number(traits.offline_orders),
        "r": number(traits.r),
        "f": number(traits.f),
        "m": number(traits.m),
        "rfm": rfm,
        "order_systems": lambda: traits.order_systems,
        "systems": lambda: (
            profiles.record_systems if profiles.record_systems is not None else np.zeros(size, dtype=np.int64)
        ),
        "last_order_system": last_system,
        "quadrant": lambda: _strings(QUADRANTS)[quadrant],
        "lifecycle": lambda: _strings(LIFECYCLE)[lifecycle],
        "tier": lambda: _strings([*tier_names, ""])[np.where(tiers.tier >= 0, tiers.tier, len(tier_names))],
        "email": text(profiles.email),
        "email_domain": domain,
        "phone": text(profiles.phone),
        "first_name": text(profiles.first_name),
        "last_name": text(profiles.last_name),
        "postcode": text(profiles.postcode),
        "city": text(profiles.city),
        "country": text(profiles.country),
        "company": text(profiles.company),
    }
    if bases is not None:
        builders.update(
            {
                "region": lambda: np.strings.lower(bases.region),
                "age": lambda: bases.age,
                "age_band": lambda: bases.age_band,
                "b2b": lambda: bases.b2b,
                "interests": lambda: _strings([",".join(row) for row in bases.interests]),
                "top_interest": lambda: bases.top_interest,
                "discount_share": lambda: bases.discount_share,
                "email_consent": lambda: bases.email_consent,
            }
        )
    return RuleInput(size, now, systems, builders, calendar)


# ----- one profile ------------------------------------------------------------------------------
def columns_of(traits: Sequence[Traits], now: datetime, calendar: Calendar = AS_BEFORE) -> TraitColumns:
    """Trait columns from one-profile Traits (RFM is ranked among these profiles only), day
    counts on `calendar` as `trait_columns` reads them."""
    from mapping.traits import rfm_scores

    stamp = now.timestamp()
    count = np.array([t.order_count for t in traits], dtype=np.int64)
    revenue = np.array([_cents(t.revenue) for t in traits], dtype=np.int64)
    spend = np.array([_cents(t.spend_12m) for t in traits], dtype=np.int64)
    first = np.array([t.first_order.timestamp() if t.first_order else np.nan for t in traits], dtype=np.float64)
    last = np.array([t.last_order.timestamp() if t.last_order else np.nan for t in traits], dtype=np.float64)
    since = calendar.days_between(stamp, last)
    tenure = calendar.days_between(stamp, first)
    r, f, m = rfm_scores(since, count, revenue)
    zeros = np.zeros(len(traits), dtype=np.int64)
    aov = np.where(count > 0, np.rint(revenue / np.maximum(count, 1)), 0).astype(np.int64)
    return TraitColumns(
        order_count=count,
        revenue_cents=revenue,
        spend_12m_cents=spend,
        orders_12m=zeros,
        aov_cents=aov,
        first_order=first,
        last_order=last,
        days_since_last_order=since,
        tenure_days=tenure,
        online_orders=count,
        offline_orders=zeros,
        order_systems=zeros,
        last_order_system=zeros - 1,
        r=r,
        f=f,
        m=m,
    )


def quadrant(traits: Traits, rules: QuadrantRules, now: datetime, calendar: Calendar = AS_BEFORE) -> str:
    return QUADRANTS[int(quadrant_codes(columns_of([traits], now, calendar), rules)[0])]


def lifecycle(traits: Traits, windows: LifecycleWindows, now: datetime, calendar: Calendar = AS_BEFORE) -> str:
    return LIFECYCLE[int(lifecycle_codes(columns_of([traits], now, calendar), windows)[0])]


def tier(traits: Traits, tiers: tuple[Tier, ...]) -> str | None:
    """The highest tier whose 12-month spend threshold the customer meets (no hysteresis)."""
    reached = [t for t in tiers if traits.spend_12m >= t.min_spend_12m]
    return reached[-1].name if reached else None


def membership(traits: Traits, settings: SegmentSettings, now: datetime, calendar: Calendar = AS_BEFORE) -> Membership:
    """One profile's segments, without history (a first run): quadrant, lifecycle, tier, rules."""
    return assess(columns_of([traits], now, calendar), settings, now, calendar=calendar).memberships()[0]


def segment_label(settings: SegmentSettings) -> Callable[[str], str]:
    return settings.label


def describe(settings: SegmentSettings) -> Mapping[str, str]:
    """What each built-in segment means under these settings (for reports)."""
    q, w = settings.quadrant, settings.lifecycle
    loyal = f"{q.loyal_min_orders}+ orders, the last within {q.loyal_recency_days} days"
    if q.loyal_min_tenure_days:
        loyal += f", customer for {q.loyal_min_tenure_days}+ days"
    valuable = f"revenue >= {q.high_value_min_revenue} {settings.base_currency}"
    out = {
        "friends": f"loyal ({loyal}) and valuable ({valuable})",
        "supporters": f"loyal ({loyal}), not yet valuable",
        "acquaintances": f"valuable ({valuable}), not loyal",
        "passers-by": "neither loyal nor valuable",
        "lifecycle-prospect": "no valid order yet",
        "lifecycle-new": f"first order within {w.new_days} days",
        "lifecycle-active": f"last order within {w.active_days} days",
        "lifecycle-at-risk": f"last order {w.active_days + 1}-{w.at_risk_days} days ago",
        "lifecycle-lapsed": f"last order over {w.at_risk_days} days ago",
    }
    for t in settings.tiers:
        out[f"tier-{t.name}"] = f"12-month spend >= {t.min_spend_12m} {settings.base_currency}"
    b = settings.bases
    out["b2b"] = "a company: marked so, a KvK or VAT number, or a company name and domain"
    out["cross-sell"] = "friends or supporters who bought in one category only"
    out["win-back"] = "friends or supporters whose last order makes them at risk"
    out["abandoned-checkout"] = (
        f"left a checkout or order unfinished {b.abandoned_checkout_after_minutes} minutes to "
        f"{b.abandoned_checkout_days} days ago, and bought nothing since"
    )
    for rule in settings.rules:
        out[rule.name] = rule.when
    return out
