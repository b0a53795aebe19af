"""The shared vocabulary of crmsync: plain, immutable values passed between the layers.

With `mapping/normalize/dates.py` and `mapping/jsontext.py`, the only modules of `mapping` that
`connectors` may import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar, dataclass_transform

from mapping.calendar_days import Calendar

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def made_per_record(cls: type[_T]) -> type[_T]:
    """A frozen dataclass to the type checker, built at the speed of a plain one: for the values
    made once or more for every record read (a source record, its mapped contact or order).

    A frozen dataclass sets each field through `object.__setattr__`, a call per field: 8 us for a
    `Contact` on a host whose reference loop (bench/) takes 0.5 s, against 2 us with slots set
    directly, several percent of what reading a record costs (bench/extract.py). So the class is
    not frozen at run time; mypy, which checks `connectors`, `mapping` and `sync`, refuses any
    assignment to a field, and instances hash and compare as frozen ones do."""
    return dataclass(slots=True, unsafe_hash=True)(cls)


class Kind(StrEnum):
    CONTACT = "contact"
    ORDER = "order"


@made_per_record
class SourceRecord:
    """One vendor record as read, untouched. `id` is the vendor id as the vendor writes it."""

    system: str
    kind: Kind
    id: str
    updated_at: datetime | None
    payload: Any


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Where a profile field sits in a vendor payload (dotted path) and how to clean it. `get` is
    the path made into a function once, when the spec is made: every record of a read goes
    through it."""

    path: str
    normaliser: str = "text"
    get: Callable[[Any], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "get", path_getter(self.path))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FieldSpec, (self.path, self.normaliser))  # `get` is made again, not pickled


FieldMap = Mapping[str, FieldSpec]

# The contact fields a field map may fill (plus `link:<system>`); see mapping/fieldmaps.py.
CONTACT_VOCABULARY = frozenset(
    [
        "email",
        "phone",
        "mobile",
        "first_name",
        "middle_name",
        "last_name",
        "full_name",
        "street",
        "house_number",
        "house_addition",
        "postcode",
        "city",
        "country",
        "company",
        # The brief's other bases (mapping/bases.py): age, work (B2B) and consent.
        "birth_date",
        "kvk",
        "vat",
        "business",
        "email_consent",
    ]
)


@made_per_record
class RemoteState:
    """The part of a remote record that crmsync owns: its prefixed tags and its own fields.

    A field value of None means "absent" (nothing of ours stored there). `known` is False when the
    read did not show it (Lightspeed's list has no metafields): then the ledger is what crmsync
    knows, and without a ledger entry the record is looked at when it is written."""

    tags: frozenset[str] = frozenset()
    fields: Mapping[str, str | None] = field(default_factory=dict)
    known: bool = True

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"tags": sorted(self.tags), "fields": dict(sorted(self.fields.items()))}
        if not self.known:
            data["unknown"] = True
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RemoteState:
        if not data:
            return cls()
        return cls(frozenset(data.get("tags", ())), dict(data.get("fields", {})), not data.get("unknown", False))

    @classmethod
    def unknown(cls) -> RemoteState:
        # One value for every contact whose read shows none (each of Lightspeed's and SuperOffice's):
        # a made_per_record value is never changed once made (mypy refuses), so it is shared.
        return _UNKNOWN if cls is RemoteState else cls(known=False)

    def valued_fields(self) -> dict[str, str]:
        """The fields that hold a value of ours ("" is none: an AFAS free field crmsync emptied)."""
        return {name: value for name, value in self.fields.items() if value not in (None, "")}


_UNKNOWN = RemoteState(known=False)


@made_per_record
class Contact:
    """The normalised view of one contact record. `flags` say what was present but unusable
    (`invalid_email`, `invalid_phone`, `role_address`, ...): kept for people, never used to match."""

    system: str
    id: str
    updated_at: datetime | None
    email: str | None = None
    email_role: bool = False
    phone: str | None = None  # E.164 when it could be parsed, else None (see phone_raw)
    phone_kind: str | None = None  # mobile | landline | other | invalid
    phone_raw: str | None = None
    given_name: str | None = None
    infix: str | None = None  # the tussenvoegsel ("van der")
    family_name: str | None = None
    initials: str | None = None
    street: str | None = None
    house_number: int | None = None
    house_addition: str | None = None
    postcode: str | None = None
    city: str | None = None
    country: str | None = None  # ISO 3166 alpha-2
    company: str | None = None
    birth_date: str | None = None  # ISO date (YYYY-MM-DD)
    kvk: str | None = None  # a chamber of commerce number (KvK in the Netherlands)
    vat: str | None = None
    business: bool | None = None  # the system itself says the record is a company
    email_consent: bool | None = None  # email marketing: True opted in, False not, None unknown
    owned: RemoteState = field(default_factory=RemoteState)
    # Keys (`system:id`) of records in other systems that this record says are the same person.
    links: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return record_key(self.system, self.id)

    @property
    def mobile(self) -> str | None:
        """The E.164 number when it is a mobile one: the only kind that identifies a person."""
        return self.phone if self.phone_kind == "mobile" else None


# The profile fields a record can contribute, in the order people read them.
PROFILE_FIELDS = (
    "email",
    "phone",
    "given_name",
    "infix",
    "family_name",
    "initials",
    "street",
    "house_number",
    "house_addition",
    "postcode",
    "city",
    "country",
    "company",
    "birth_date",
    "kvk",
    "vat",
    "business",
    "email_consent",
)


@made_per_record
class Order:
    """The normalised view of one order or invoice. `counts` is False for cancelled, refunded and
    test orders, which never count toward a customer's value."""

    system: str
    id: str
    customer_id: str | None
    email: str | None
    amount: Decimal
    currency: str
    created_at: datetime
    counts: bool = True
    discount: bool | None = None  # a discount code was used; None: the system does not say
    categories: tuple[str, ...] = ()  # product type or category of each line, as the vendor names it
    unfinished: bool = False  # an abandoned checkout, or an order left pending or failed


@made_per_record
class Rejection:
    """Why a record could not be mapped; it goes to the quarantine with this reason."""

    reason: str
    message: str
    # The customer record a held order names, where the mapping got that far: an order of an erased
    # customer record is not stored, held or not (sync/state/erasure.py).
    customer_id: str | None = None


class RecordProblem(ValueError):
    """Raised by a connector's mapping hook (`order_counts`, `payload_tags`) for a record it cannot
    read safely, e.g. a sale status it does not know: quarantined as `Rejection(reason, message)`,
    never guessed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Traits:
    order_count: int = 0
    revenue: Decimal = Decimal(0)
    spend_12m: Decimal = Decimal(0)
    first_order: datetime | None = None
    last_order: datetime | None = None

    def days_since_last_order(self, now: datetime, zone: tzinfo | None = None) -> int | None:
        """Whole days since the last order: local midnights passed in `zone` (`[segments]
        timezone`), or 24-hour periods without one (mapping/calendar_days.py)."""
        return None if self.last_order is None else Calendar(zone).days_since(now, self.last_order)


@dataclass(frozen=True, slots=True)
class Membership:
    """What crmsync concluded about one profile: segment names (without prefix) and the tier."""

    segments: frozenset[str]
    tier: str | None


@made_per_record  # one per planned record: a backfill plans a million
class WriteBack:
    """A change to one remote record, limited to crmsync's own tags and fields. `target` is the
    complete owned state after the change, recorded in the pushed-state ledger on success."""

    system: str
    record_id: str
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    set_fields: Mapping[str, str | None]
    target: RemoteState

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "id": self.record_id,
            "add_tags": list(self.add_tags),
            "remove_tags": list(self.remove_tags),
            "set_fields": dict(self.set_fields),
        }


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The vendor's answer for one record. `confirmed=False`: accepted, but a reply was lost on
    the way and the vendor may still carry out the lost request later (a late duplicate); the
    record is then not entered as pushed, so the next cycle plans it again and the connector
    looks at what the vendor holds."""

    record_id: str
    ok: bool
    message: str = ""
    confirmed: bool = True


def record_key(system: str, record_id: str) -> str:
    """`<system>:<id>`, the form users type for `explain` (split on the first colon only). Record
    keys are built here and split by `split_key`, nowhere else."""
    return f"{system}:{record_id}"


def split_key(key: str) -> tuple[str, str]:
    """(system, record id) of a record key: a system name holds no colon, an id may."""
    system, _, record_id = key.partition(":")
    return system, record_id


def key_system(key: str) -> str:
    return key.partition(":")[0]


def parse_timestamp(value: str) -> datetime:
    """ISO-8601 with `Z` or an offset, as UTC; a naive value is taken as UTC (callers pass `_gmt`
    fields). Raises ValueError on anything else."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        # The same text read again with UTC's offset after it: ~0.1 us, where `replace(tzinfo=UTC)`
        # costs ~0.6 (3.11 parses its keywords), and WooCommerce, SuperOffice and efficy write every
        # time without an offset. A text whose end is no time (a date alone) reads the offset as a
        # time instead, naive: that one is set to UTC as before.
        try:
            aware = datetime.fromisoformat(text + "+00:00")
        except ValueError:
            return parsed.replace(tzinfo=UTC)
        return aware if aware.tzinfo is UTC else parsed.replace(tzinfo=UTC)
    # Every record of a read comes through here: a time already in UTC skips the conversion.
    return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)


_TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))
# What `isoformat` writes after the seconds for each fixed offset met (a handful: UTC, a shop's own).
_OFFSET_TEXTS: dict[tzinfo, str] = {UTC: "+00:00"}


def iso_text(moment: datetime) -> str:
    """`moment.isoformat()`, the same text, made here for an aware datetime at a fixed offset (what
    `parse_timestamp` and the connectors' readers make): the C method formats through printf, about
    2.5 times slower, and every record stored writes one or two (its time, an order's date). Any
    other datetime (naive, a zone with rules, a year before 1000, a subclass) goes to `isoformat`."""
    zone = moment.tzinfo
    offset = _OFFSET_TEXTS.get(zone) if type(zone) is timezone else None
    if offset is None or moment.microsecond or moment.year < 1000 or type(moment) is not datetime:
        if type(zone) is not timezone or type(moment) is not datetime or moment.year < 1000:
            return moment.isoformat()
        if offset is None:
            # A fixed offset's text is the same at every moment (timezones equal by offset are alike).
            offset = datetime(2000, 1, 1, tzinfo=zone).isoformat()[19:]
            if len(_OFFSET_TEXTS) < 64:
                _OFFSET_TEXTS[zone] = offset
        if moment.microsecond:
            offset = f".{moment.microsecond:06d}{offset}"
    two = _TWO_DIGITS
    return (
        f"{moment.year}-{two[moment.month]}-{two[moment.day]}"
        f"T{two[moment.hour]}:{two[moment.minute]}:{two[moment.second]}{offset}"
    )


_MISSING = object()


def is_object(value: Any) -> bool:
    """Whether a payload value is a JSON object: a dict (what vendor replies decode to) is told
    before the slower Mapping check."""
    return type(value) is dict or isinstance(value, Mapping)


def get_path(payload: Any, path: str) -> Any:
    """The value at `a.b.0.c` of a vendor payload, or None when any step is absent or of the
    wrong shape (a numeric part indexes a list)."""
    return path_getter(path)(payload)


@functools.lru_cache(maxsize=1024)
def path_getter(path: str) -> Callable[[Any], Any]:
    """`get_path` for one path, its parts split once. A dict is looked at before the slower
    Mapping check: vendor payloads are dicts."""
    if "*" in path:
        return _all_getter(path)
    steps = tuple((part, part.isdigit()) for part in path.split("."))

    def get(payload: Any) -> Any:
        value = payload
        for key, numeric in steps:
            if type(value) is dict or isinstance(value, Mapping):
                value = value.get(key, _MISSING)
            elif numeric and isinstance(value, list):
                index = int(key)  # here, not when the path is split: "²" is a digit but no int
                value = value[index] if index < len(value) else _MISSING
            else:
                return None
            if value is _MISSING:
                return None
        return value

    # Most paths are one to three keys of plain dicts (`email`, `billing.email`): read those
    # without the loop, and anything else (a Mapping, a list, a missing step) the general way.
    # Each length is unrolled on its own: a loop over the keys is what these shortcuts avoid.
    if len(steps) == 1 and not steps[0][1]:
        key = steps[0][0]

        def get_key(payload: Any) -> Any:
            return payload.get(key) if type(payload) is dict else get(payload)

        return get_key
    if len(steps) == 2 and not steps[0][1] and not steps[1][1]:
        outer, inner = steps[0][0], steps[1][0]

        def get_keys(payload: Any) -> Any:
            if type(payload) is dict:
                found = payload.get(outer)
                if type(found) is dict:
                    return found.get(inner)
                if found is None:  # absent or null: what the general way finds too, without its walk
                    return None
            return get(payload)

        return get_keys
    if len(steps) == 3 and not any(numeric for _, numeric in steps):
        first, second, third = (key for key, _ in steps)

        def get_three(payload: Any) -> Any:  # `currentTotalPriceSet.shopMoney.amount`
            if type(payload) is dict:
                found = payload.get(first)
                if type(found) is dict:
                    found = found.get(second)
                    if type(found) is dict:
                        return found.get(third)
                if found is None:  # a step absent or null: what the general way finds too
                    return None
            return get(payload)

        return get_three
    return get


def _all_getter(path: str) -> Callable[[Any], list[Any] | None]:
    """The getter of a path with `*` (every element of a list: `lineItems.nodes.*.product.productType`):
    the values found under each element, flattened one level, nulls left out; None when the path
    before the first `*` is absent. The getters before and after the `*` are made once, when first
    needed: a broken path (`a*`, a `*` inside a part) fails where the walk reaches it, as always."""
    parts = path.split(".")
    star = parts.index("*") if "*" in parts else -1
    head_path, rest_path = ".".join(parts[:star]), ".".join(parts[star + 1 :])
    head: Callable[[Any], Any] | None = None
    rest: Callable[[Any], Any] | None = None

    def get_all(payload: Any) -> list[Any] | None:
        nonlocal head, rest
        if star < 0:
            parts.index("*")  # raises: a `*` only inside a part is no list step
        if star:
            if head is None:
                head = path_getter(head_path)
            items = head(payload)
        else:
            items = payload
        if not isinstance(items, list):
            return None
        found: list[Any] = []
        for item in items:
            if rest_path:
                if rest is None:
                    rest = path_getter(rest_path)
                value = rest(item)
            else:
                value = item
            if isinstance(value, list):
                found.extend(v for v in value if v is not None)
            elif value is not None:
                found.append(value)
        return found

    return get_all
