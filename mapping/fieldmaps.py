"""Apply a connector's declared field map (plain data) to a vendor payload.

A field map says, per profile field, where the value sits (a dotted path; a numeric part indexes a
list) and which normaliser cleans it. The result is a normalised Contact or Order, or a Rejection
saying why the record cannot be used; nothing here raises on bad input.

Contact fields a map may name (the vocabulary; the TOML can remap or add them per system):
`email`, `phone`, `mobile` (a second number), `first_name`, `middle_name` (tussenvoegsel),
`last_name`, `full_name`, `street` (with or without number), `house_number`, `house_addition`,
`postcode`, `city`, `country`, `company`, `birth_date`, `kvk`, `vat`, `business` (the system marks
the record a company), `email_consent`, and `link:<system>` for a stored id of another system.
Order fields beyond the required ones: `discount` (a code was used), `categories` (each line's
product type or category; a path may hold `*` for every element of a list), `refunded` (what
was refunded of an order that still counts, where the vendor's total does not already leave it out:
taken off the amount; an order refunded in full counts no more) and `original_amount` (the order's
total before returns, where `amount` is the total after them: what `amount` already lost to
returns is refund accounted for, and only the rest of `refunded` is taken off).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from mapping.model import (
    Contact,
    FieldMap,
    Order,
    Rejection,
    RemoteState,
    SourceRecord,
    is_object,
    record_key,
)
from mapping.normalize import NORMALISERS, Invalid
from mapping.normalize.address import normalise_postcode, split_house_number, split_street
from mapping.normalize.email import DEFAULT_ROLE_LOCALS, is_role_address
from mapping.normalize.names import parse_name
from mapping.normalize.phone import INVALID, Phone, parse_phone

Canonical = Callable[[str, str], str | None]


@dataclass(frozen=True)
class MappingRules:
    """What mapping needs from the configuration; plain data, so mapping stays pure."""

    default_country: str = "NL"
    role_locals: frozenset[str] = DEFAULT_ROLE_LOCALS


@dataclass
class FieldAbsence:
    """Mapped fields whose path did not exist in a payload, counted per field, so a wrong path
    is reported once per run instead of once per record."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, names: set[str]) -> None:
        for name in names:
            self.counts[name] = self.counts.get(name, 0) + 1


def path_exists(payload: Any, path: str, *, past_the_end: bool = False) -> bool:
    """Whether every key along `path` exists (an explicit null counts as existing). With
    `past_the_end`, an index past the end of a list counts as an empty value too (no contact
    person is data; a key missing from every record is not)."""
    value = payload
    for part in path.split("."):
        if type(value) is dict or isinstance(value, Mapping):  # a dict skips the slower ABC check
            if part not in value:
                return False
            value = value[part]
        elif isinstance(value, list) and part == "*":
            return True  # the list is there: its elements may each lack the rest
        elif isinstance(value, list) and part.isdigit():
            if int(part) >= len(value):
                return past_the_end
            value = value[int(part)]
        else:
            # A null parent: the field is simply empty. So is a false one: Lightspeed sends `false`
            # for an unset object (`"addressBillingCountry": false`).
            return value is None or value is False
    return True


def apply_fieldmap(
    payload: Any, fields: FieldMap, absent: FieldAbsence | None = None
) -> tuple[dict[str, Any], dict[str, Invalid]]:
    """Normalised values per profile field, and the fields whose value was present but unusable."""
    values: dict[str, Any] = {}
    problems: dict[str, Invalid] = {}
    missing: set[str] = set()
    for name, spec in fields.items():
        raw = spec.get(payload)
        if raw is None and absent is not None and not path_exists(payload, spec.path):
            missing.add(name)
        normalised = NORMALISERS[spec.normaliser](raw)
        if type(normalised) is Invalid:
            problems[name] = normalised
            values[name] = None
        else:
            values[name] = normalised
    if absent is not None and missing:
        absent.add(missing)
    return values, problems


# A bad email, phone, country or postcode leaves the contact usable (flagged); a field of the
# wrong type or an absurd value means the record is not what we think it is.
_SOFT_CONTACT_FIELDS = frozenset(
    {"email", "phone", "mobile", "country", "postcode", "birth_date", "email_consent", "business", "kvk", "vat"}
)
_SOFT_ORDER_FIELDS = frozenset({"email", "discount", "categories"})


def read_fields(payload: Any, fields: FieldMap, names: Iterable[str]) -> dict[str, Any]:
    """A few fields of a record, normalised as the mapping reads them (None where a field is
    absent or unusable, and for a name the field map lacks): for what must know whose a record
    is without mapping all of it (a held order's customer, `crmsync forget`)."""
    values, _ = apply_fieldmap(payload, {name: fields[name] for name in names if name in fields})
    return values


def contact_phone(values: Mapping[str, Any], rules: MappingRules) -> Phone | None:
    """The phone number of a contact's normalised field values (`apply_fieldmap`): its mobile
    field, else its general one, unless only the general one is a mobile number."""
    phone = None
    for name in ("mobile", "phone"):  # a dedicated mobile field wins over a general one
        raw = values.get(name)
        if raw:
            candidate = parse_phone(str(raw), values.get("country"), rules.default_country)
            if candidate is not None and (phone is None or (phone.kind != "mobile" and candidate.kind == "mobile")):
                phone = candidate
    return phone


def contact_links(values: Mapping[str, Any], canonical: Canonical | None) -> tuple[str, ...]:
    """The record keys a contact's `link:<system>` values name (`apply_fieldmap`'s values),
    sorted: each stored id turned into its system's own form by `canonical`, dropped where it
    cannot be one."""
    links = set()
    for field_name, value in values.items():
        if field_name.startswith("link:") and value is not None:
            system = field_name[len("link:") :]
            target = canonical(system, str(value)) if canonical else str(value)
            if target is not None:
                links.add(record_key(system, target))
    return tuple(sorted(links))


def map_contact(
    record: SourceRecord,
    fields: FieldMap,
    owned: RemoteState,
    canonical: Canonical | None = None,
    rules: MappingRules | None = None,
    absent: FieldAbsence | None = None,
) -> Contact | Rejection:
    """`canonical(system, raw_id)` turns a stored cross-system id into that system's record key
    (given by the caller, so this stays free of connectors); fields named `link:<system>` hold them."""
    rules = rules or MappingRules()
    if not is_object(record.payload):
        return Rejection("wrong_type", "contact payload is not an object")
    if not record.id:
        return Rejection("missing_id", "contact has no id")
    values, problems = apply_fieldmap(record.payload, fields, absent)
    # A stored id of another system that is no id is dropped and flagged: the contact stays usable.
    flags: list[str] = []
    if problems:  # most records have none
        hard = {k: v for k, v in problems.items() if k not in _SOFT_CONTACT_FIELDS and not k.startswith("link:")}
        if hard:
            name, problem = sorted(hard.items())[0]
            return Rejection(problem.reason, f"{fields[name].path}: {problem.message}")
        flags = [f"{problem.reason}" for _, problem in sorted(problems.items())]

    email: str | None = values.get("email")
    role = email is not None and is_role_address(email, rules.role_locals)
    if role:
        flags.append("role_address")
    country = values.get("country")

    phone = contact_phone(values, rules)
    if phone is not None and phone.kind == INVALID:
        flags.append("invalid_phone")

    person = parse_name(
        values.get("first_name"), values.get("middle_name"), values.get("last_name"), values.get("full_name")
    )

    street, number = values.get("street"), None
    if values.get("house_number") not in (None, ""):
        number = split_house_number(str(values["house_number"]))
    elif street:
        street, number = split_street(street)
    postcode = values.get("postcode")
    if postcode:
        checked = normalise_postcode(str(postcode), country or rules.default_country)
        if isinstance(checked, Invalid):
            flags.append(checked.reason)
        else:
            postcode = checked

    return Contact(
        system=record.system,
        id=record.id,
        updated_at=record.updated_at,
        email=email,
        email_role=role,
        phone=phone.e164 if phone else None,
        phone_kind=phone.kind if phone else None,
        phone_raw=phone.raw if phone else None,
        given_name=person.given if person else None,
        infix=person.infix if person else None,
        family_name=person.family if person else None,
        initials=person.initials if person else None,
        street=street or None,
        house_number=number.number if number else None,
        house_addition=(values.get("house_addition") or (number.addition if number else None)),
        postcode=postcode or None,
        city=values.get("city"),
        country=country,
        company=values.get("company"),
        birth_date=values.get("birth_date"),
        kvk=values.get("kvk"),
        vat=values.get("vat"),
        business=values.get("business"),
        email_consent=values.get("email_consent"),
        owned=owned,
        links=contact_links(values, canonical),
        flags=tuple(sorted(set(flags))),
    )


def map_order(record: SourceRecord, fields: FieldMap, counts: bool, unfinished: bool = False) -> Order | Rejection:
    """`counts` and `unfinished` (an abandoned checkout, an order left pending) are the
    connector's reading of the record's status."""
    if not is_object(record.payload):
        return Rejection("wrong_type", "order payload is not an object")
    if not record.id:
        return Rejection("missing_id", "order has no id")
    values, problems = apply_fieldmap(record.payload, fields)
    customer_id = values.get("customer_id")
    # The email on an order only links a guest order; an unusable one leaves the order usable
    # when a customer id links it (and unlinkable, below, when nothing does).
    hard = {k: v for k, v in problems.items() if k not in _SOFT_ORDER_FIELDS} if problems else None
    if hard:
        name, problem = sorted(hard.items())[0]
        return Rejection(problem.reason, f"{fields[name].path}: {problem.message}", customer_id)
    amount = values.get("amount")
    created_at = values.get("created_at")
    if not isinstance(amount, Decimal):
        return Rejection("missing_amount", "order has no total", customer_id)
    if not isinstance(created_at, datetime):
        return Rejection("missing_date", "order has no creation date", customer_id)
    if amount < 0:
        return Rejection("negative_amount", f"order total {amount} is negative", customer_id)
    refunded = values.get("refunded")
    if refunded:  # a partial refund leaves the order's status as it was, and its total
        before = values.get("original_amount")
        if isinstance(before, Decimal) and before > amount:
            # The amount read is after returns: the returned part of the refund is already gone
            # from it, the rest (an adjustment, shipping, more than the lines were worth) is not.
            refunded = max(refunded - (before - amount), Decimal(0))
        if refunded >= amount:
            counts = False  # refunded in full: a refunded order, whatever its status says
        amount = max(amount - refunded, Decimal(0))
    email = values.get("email")
    if customer_id is None and email is None:
        return Rejection("unlinkable_order", "order has neither a customer id nor an email")
    return Order(
        system=record.system,
        id=record.id,
        customer_id=customer_id,
        email=email,
        amount=amount,
        currency=values.get("currency") or "",
        created_at=created_at,
        counts=counts and not unfinished,
        discount=values.get("discount"),
        categories=values.get("categories") or (),
        unfinished=unfinished,
    )
