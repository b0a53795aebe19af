"""The brief's other segmentation bases (../shared/background/): geography, age, work (B2B),
interests and actions, beside the buying behaviour of mapping/traits.py.

Per profile: the region (ISO 3166-2, from the postcode: mapping/regions.py), age and age band (where
a birth date exists), B2B or not, interests (the categories of what they bought, and the top one),
the share of orders with a discount code, email marketing consent, and the last purchase they left
unfinished. From those, the built-in segments of the bases, each off until `[segments.bases]`
switches it on:

- `region-<code>` (`region-nl-nh`) and `interest-<slug>` (`interest-shoes`): one per value found;
- `b2b`: the system marks the record a company, or it carries a KvK or VAT number, or a company
  name together with an address at a company's own domain (a company name alone is often a
  consumer's typing, an own domain alone a family's);
- `cross-sell`: loyal customers (friends, supporters) who bought in one category only;
- `win-back`: friends or supporters whose last order puts them at risk (lifecycle `at-risk`);
- `abandoned-checkout`: an unfinished purchase (abandoned checkout, pending or failed order) at
  least `abandoned_checkout_after_minutes` and at most `abandoned_checkout_days` old, with no valid
  order since: the tag leaves when they buy or when the window passes.

A segment named in `requires_consent` (default: `abandoned-checkout`; a family as `interest-*`) is
never given to someone without email marketing consent. Consent counts only when some system says
yes and none says no: an unsubscribe anywhere wins.

Pure: `now` is an input; everything works on columns, one element per profile.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mapping.calendar_days import AS_BEFORE, Calendar
from mapping.model import Contact
from mapping.normalize.email import email_match_key
from mapping.regions import region_of
from mapping.traits import BOOL, DAY, F64, I64

REGION, INTEREST = "region", "interest"
FAMILIES = (REGION, INTEREST)  # one segment per value found: region-<code>, interest-<slug>
FIXED = ("b2b", "cross-sell", "win-back", "abandoned-checkout")
BASES = (*FAMILIES, *FIXED)

# Mailbox providers: an address there says nothing about an employer.
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "hotmail.com",
        "hotmail.nl",
        "hotmail.be",
        "hotmail.de",
        "outlook.com",
        "outlook.nl",
        "outlook.be",
        "outlook.de",
        "live.com",
        "live.nl",
        "live.be",
        "msn.com",
        "yahoo.com",
        "yahoo.nl",
        "yahoo.de",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "web.de",
        "t-online.de",
        "ziggo.nl",
        "kpnmail.nl",
        "kpnplanet.nl",
        "planet.nl",
        "home.nl",
        "xs4all.nl",
        "hetnet.nl",
        "casema.nl",
        "chello.nl",
        "upcmail.nl",
        "zeelandnet.nl",
        "telfort.nl",
        "tele2.nl",
        "online.nl",
        "skynet.be",
        "telenet.be",
        "proximus.be",
        "scarlet.be",
        "freenet.de",
        "posteo.de",
        "mail.com",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseSettings(_Strict):
    enabled: tuple[str, ...] = Field(default=(), description="bases whose segments are computed and written")
    requires_consent: tuple[str, ...] = Field(
        default=("abandoned-checkout",), description="segments (or families, 'interest-*') only for people who opted in"
    )
    abandoned_checkout_days: int = Field(default=7, ge=1, le=365)
    abandoned_checkout_after_minutes: int = Field(default=60, ge=0)
    age_bands: tuple[int, ...] = Field(default=(18, 25, 35, 45, 55, 65), description="lower bounds of the bands")
    interest_categories: tuple[str, ...] = Field(
        default=(), description="interest slugs to make segments of (empty: every category found)"
    )
    free_email_domains: tuple[str, ...] = Field(default=(), description="added to the built-in list")

    @field_validator("enabled")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in BASES:
                raise ValueError(f"{name!r} is not a base ({', '.join(BASES)})")
        return value

    @field_validator("interest_categories")
    @classmethod
    def _as_slugs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # "Schoenen & Tassen" is written as its segment name would be: schoenen-tassen.
        slugs = tuple(slug(name) for name in value)
        if "" in slugs:
            raise ValueError("an interest category needs a letter or digit")
        return slugs

    @field_validator("age_bands")
    @classmethod
    def _rising(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if list(value) != sorted(set(value)) or any(v <= 0 or v > 120 for v in value):
            raise ValueError("age bands are rising ages between 1 and 120")
        return value

    def on(self, base: str) -> bool:
        return base in self.enabled

    def needs_consent(self, segment: str) -> bool:
        return any(
            segment == name or (name.endswith("-*") and segment.startswith(name[:-1])) for name in self.requires_consent
        )


def consented_records(contacts: Iterable[Contact]) -> frozenset[str]:
    """The records (keys) whose own email address opted in: per address, some record says yes and
    none says no. A consent-marked segment is written only to these: consent given with one address
    is no consent to mail another address the same person uses elsewhere."""
    by_address: dict[str, set[bool | None]] = {}
    keys: dict[str, list[str]] = {}
    for contact in contacts:
        if contact.email:
            address = email_match_key(contact.email)
            by_address.setdefault(address, set()).add(contact.email_consent)
            keys.setdefault(address, []).append(contact.key)
    return frozenset(
        key for address, states in by_address.items() if True in states and False not in states for key in keys[address]
    )


def base_of(segment: str) -> str | None:
    """The base a segment name belongs to ("region-nl-nh" -> "region"), None for the others."""
    if segment in FIXED:
        return segment
    family = segment.split("-", 1)[0]
    return family if family in FAMILIES and segment != family else None


# ----- one value at a time ---------------------------------------------------------------------------
def age_on(birth_date: str | None, today: date) -> int | None:
    """Whole years on `today`; None without a birth date or for a date after today."""
    if not birth_date:
        return None
    born = date.fromisoformat(birth_date)
    if born > today:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def age_band(age: int | None, bands: Sequence[int]) -> str:
    """'25-34' for 30 with bands (18, 25, 35, ...); '65+' past the last; '<18' before the first."""
    if age is None or not bands:
        return ""
    if age < bands[0]:
        return f"<{bands[0]}"
    for low, high in itertools.pairwise(bands):
        if low <= age < high:
            return f"{low}-{high - 1}"
    return f"{bands[-1]}+"


def email_domain(email: str | None) -> str:
    return email.rsplit("@", 1)[1].lower() if email and "@" in email else ""


def b2b_reason(
    *,
    business: bool | None,
    kvk: str | None,
    vat: str | None,
    company: str | None,
    email: str | None,
    free_domains: frozenset[str] = FREE_MAIL_DOMAINS,
) -> str | None:
    """Why a profile counts as B2B (for `explain`), None when it does not."""
    if business:
        return "the system marks it a company"
    if kvk:
        return "has a KvK number"
    if vat:
        return "has a VAT number"
    domain = email_domain(email)
    if company and domain and domain not in free_domains:
        return f"company name and an address at {domain}"
    return None


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=65_536)
def slug(label: str) -> str:
    """An interest's segment-name part: lower-case ASCII letters, digits and '-' ("Schoenen &
    Tassen" -> "schoenen-tassen"), at most 40 characters; '' when nothing is left."""
    folded = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode().lower()
    return _NOT_SLUG.sub("-", folded).strip("-")[:40].strip("-")


# ----- columns ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderDetails:
    """Orders with something to say beyond their value: one element per order. `discount`: 1 a code
    was used, 0 none, -1 unknown; `categories`: the lines' labels (a tuple per order)."""

    profile: I64
    created: I64
    counts: BOOL
    discount: npt.NDArray[np.int8]
    unfinished: BOOL
    categories: Sequence[tuple[str, ...]]

    @classmethod
    def empty(cls) -> OrderDetails:
        none = np.zeros(0, np.int64)
        return cls(none, none, np.zeros(0, np.bool_), np.zeros(0, np.int8), np.zeros(0, np.bool_), ())


# The survivorship key under which the country of the record the profile's postcode came from is
# kept: a region reads the postcode with its own record's country (sync.resolve writes it).
POSTCODE_COUNTRY = "postcode_country"


@dataclass(frozen=True)
class PersonFields:
    """The survivorship choice of the fields the bases read, one element per profile."""

    email: Sequence[str | None]
    company: Sequence[str | None]
    postcode: Sequence[str | None]
    country: Sequence[str | None]
    birth_date: Sequence[str | None]
    kvk: Sequence[str | None]
    vat: Sequence[str | None]
    business: Sequence[bool | None]
    email_consent: Sequence[bool | None]


@dataclass(frozen=True)
class BaseColumns:
    """The bases of every profile. Unknown: '' in text, NaN in numbers, False in flags."""

    region: npt.NDArray[Any]
    age: F64
    age_band: npt.NDArray[Any]
    b2b: BOOL
    interests: list[tuple[str, ...]]  # slugs, most bought first
    top_interest: npt.NDArray[Any]
    discount_share: F64
    email_consent: BOOL
    last_unfinished: F64  # epoch seconds of the latest unfinished purchase, NaN: none
    abandoned: BOOL

    @property
    def size(self) -> int:
        return int(self.b2b.shape[0])


def _strings(values: Sequence[str]) -> npt.NDArray[Any]:
    return np.array(values, dtype=np.dtypes.StringDType())


def base_columns(
    person: PersonFields,
    orders: OrderDetails,
    size: int,
    now: datetime,
    settings: BaseSettings,
    last_order: F64 | None = None,
    calendar: Calendar = AS_BEFORE,
) -> BaseColumns:
    """Every base of every profile. Orders count as in mapping/traits.py: valid and not after `now`.
    `last_order` (the traits' column: every valid order of every system, epoch seconds, NaN for
    none) is what "bought since" is judged on, beside the valid orders among `orders`. An age is
    whole years on today's date on `calendar` (a birthday starts at the merchant's midnight), and
    an abandoned checkout's `abandoned_checkout_days` are days on it."""
    today = calendar.today(now)
    free = FREE_MAIL_DOMAINS | frozenset(d.lower() for d in settings.free_email_domains)
    ages = [age_on(b, today) for b in person.birth_date]
    region = [region_of(c, p) or "" for c, p in zip(person.country, person.postcode, strict=True)]
    b2b = [
        b2b_reason(business=biz, kvk=k, vat=v, company=co, email=e, free_domains=free) is not None
        for biz, k, v, co, e in zip(person.business, person.kvk, person.vat, person.company, person.email, strict=True)
    ]
    stamp = int(now.timestamp())
    valid = orders.counts & (orders.created <= stamp) & (orders.profile >= 0)

    known = valid & (orders.discount >= 0)
    with_code = np.bincount(orders.profile[known & (orders.discount == 1)], minlength=size)
    with_known = np.bincount(orders.profile[known], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(with_known > 0, with_code / np.maximum(with_known, 1), np.nan)

    tallies: dict[int, Counter[str]] = {}
    profile_of = orders.profile
    for i in np.flatnonzero(valid).tolist():
        labels = orders.categories[i]
        if labels:
            tally = tallies.setdefault(int(profile_of[i]), Counter())
            for label in {slug(label) for label in labels} - {""}:
                tally[label] += 1
    # Most bought first; a tie goes to the name first in the alphabet, so input order never matters.
    interests: list[tuple[str, ...]] = [()] * size
    for index, tally in tallies.items():
        interests[index] = _by_count(tally)

    never = np.iinfo(np.int64).min
    unfinished = orders.unfinished & (orders.created <= stamp) & (orders.profile >= 0)
    last_unfinished = np.full(size, never, dtype=np.int64)
    np.maximum.at(last_unfinished, orders.profile[unfinished], orders.created[unfinished])
    has_unfinished = last_unfinished > never
    # The latest unfinished purchase inside the window: a newer one still too young to count does
    # not hide an older one that does (the tag would leave and come back, and the shop's flow mail
    # twice).
    age_s = stamp - orders.created
    # The far edge is a day count the merchant reads ("in the last 7 days"): on `calendar` the
    # whole local day that many days back counts, as in the lifecycle windows; without a zone,
    # 24-hour periods as before. The near edge (`abandoned_checkout_after_minutes`) is a duration.
    days = settings.abandoned_checkout_days
    recent = calendar.within(stamp, orders.created, days) if calendar.local else age_s <= days * DAY
    inside = unfinished & (age_s >= settings.abandoned_checkout_after_minutes * 60) & recent
    last_inside = np.full(size, never, dtype=np.int64)
    np.maximum.at(last_inside, orders.profile[inside], orders.created[inside])
    last_valid = np.full(size, never, dtype=np.int64)
    np.maximum.at(last_valid, orders.profile[valid], orders.created[valid])
    if last_order is not None:
        bought = np.where(np.isnan(last_order), float(never), last_order).astype(np.int64)
        last_valid = np.maximum(last_valid, bought)
    abandoned = (last_inside > never) & (last_valid < last_inside)  # an order since (or that second) ends it
    consent = np.array([c is True for c in person.email_consent], dtype=np.bool_)
    return BaseColumns(
        region=_strings(region),
        age=np.array([np.nan if a is None else float(a) for a in ages], dtype=np.float64),
        age_band=_strings([age_band(a, settings.age_bands) for a in ages]),
        b2b=np.array(b2b, dtype=np.bool_),
        interests=interests,
        top_interest=_strings([i[0] if i else "" for i in interests]),
        discount_share=share.astype(np.float64),
        email_consent=consent,
        last_unfinished=np.where(has_unfinished, last_unfinished.astype(np.float64), np.nan),
        abandoned=abandoned,
    )


def _by_count(tally: Counter[str]) -> tuple[str, ...]:
    return tuple(sorted(tally, key=lambda name: (-tally[name], name)))


def base_segments(
    bases: BaseColumns, settings: BaseSettings, loyal: BOOL, at_risk: BOOL
) -> tuple[list[str], list[BOOL]]:
    """The enabled bases' segments: names and member columns. `loyal`: quadrant friends or
    supporters; `at_risk`: lifecycle at-risk. Consent is applied by `with_consent`."""
    names: list[str] = []
    columns: list[BOOL] = []
    if settings.on(REGION):
        for code in sorted(set(bases.region.tolist()) - {""}):
            names.append(f"region-{code.lower()}")
            columns.append(bases.region == code)
    if settings.on(INTEREST):
        wanted = set(settings.interest_categories)
        found = sorted({s for row in bases.interests for s in row})
        for name in found:
            if wanted and name not in wanted:
                continue
            names.append(f"interest-{name}")
            columns.append(np.array([name in row for row in bases.interests], dtype=np.bool_))
    if settings.on("b2b"):
        names.append("b2b")
        columns.append(bases.b2b)
    if settings.on("cross-sell"):
        one = np.array([len(row) == 1 for row in bases.interests], dtype=np.bool_)
        names.append("cross-sell")
        columns.append(loyal & one)
    if settings.on("win-back"):
        names.append("win-back")
        columns.append(loyal & at_risk)
    if settings.on("abandoned-checkout"):
        names.append("abandoned-checkout")
        columns.append(bases.abandoned)
    return names, columns


def with_consent(matrix: npt.NDArray[np.bool_], consent: BOOL, needs: Sequence[bool]) -> None:
    """Clear, in place, the consent-marked segments (`needs[j]`) of everyone without consent."""
    for j, marked in enumerate(needs):
        if marked:
            matrix[:, j] &= consent
