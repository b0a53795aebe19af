"""Apply a connector's declared field map (plain data) to a vendor payload.

A field map says, per profile field, where the value sits (a dotted path; a numeric part indexes a
list) and which normaliser cleans it. The result is a normalised Contact or Order, or a Rejection
saying why the record cannot be used; nothing here raises on bad input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from mapping.model import Contact, FieldMap, Order, Rejection, RemoteState, SourceRecord, get_path, record_key
from mapping.normalize import NORMALISERS, Invalid


def apply_fieldmap(payload: Any, fields: FieldMap) -> tuple[dict[str, Any], dict[str, Invalid]]:
    """Normalised values per profile field, and the fields whose value was present but unusable."""
    values: dict[str, Any] = {}
    problems: dict[str, Invalid] = {}
    for name, spec in fields.items():
        normalised = NORMALISERS[spec.normaliser](get_path(payload, spec.path))
        if isinstance(normalised, Invalid):
            problems[name] = normalised
            values[name] = None
        else:
            values[name] = normalised
    return values, problems


# A bad email or phone leaves the contact usable by its own id; a bad name means the record is not
# what we think it is.
_SOFT_CONTACT_FIELDS = frozenset({"email", "phone"})


Canonical = Callable[[str, str], str | None]


def map_contact(
    record: SourceRecord, fields: FieldMap, owned: RemoteState, canonical: Canonical | None = None
) -> Contact | Rejection:
    """`canonical(system, raw_id)` turns a stored cross-system id into that system's record key
    (given by the caller, so this stays free of connectors); fields named `link:<system>` hold them."""
    if not isinstance(record.payload, Mapping):
        return Rejection("wrong_type", "contact payload is not an object")
    if not record.id:
        return Rejection("missing_id", "contact has no id")
    values, problems = apply_fieldmap(record.payload, fields)
    hard = {k: v for k, v in problems.items() if k not in _SOFT_CONTACT_FIELDS}
    if hard:
        name, problem = sorted(hard.items())[0]
        return Rejection(problem.reason, f"{fields[name].path}: {problem.message}")
    links = []
    for name, value in values.items():
        if name.startswith("link:") and value is not None:
            system = name[len("link:") :]
            target = canonical(system, str(value)) if canonical else str(value)
            if target is not None:
                links.append(record_key(system, target))
    return Contact(
        system=record.system,
        id=record.id,
        updated_at=record.updated_at,
        email=values.get("email"),
        phone=values.get("phone"),
        first_name=values.get("first_name"),
        last_name=values.get("last_name"),
        owned=owned,
        links=tuple(sorted(set(links))),
    )


def map_order(record: SourceRecord, fields: FieldMap, counts: bool) -> Order | Rejection:
    if not isinstance(record.payload, Mapping):
        return Rejection("wrong_type", "order payload is not an object")
    if not record.id:
        return Rejection("missing_id", "order has no id")
    values, problems = apply_fieldmap(record.payload, fields)
    if problems:
        name, problem = sorted(problems.items())[0]
        return Rejection(problem.reason, f"{fields[name].path}: {problem.message}")
    amount = values.get("amount")
    created_at = values.get("created_at")
    if not isinstance(amount, Decimal):
        return Rejection("missing_amount", "order has no total")
    if not isinstance(created_at, datetime):
        return Rejection("missing_date", "order has no creation date")
    if amount < 0:
        return Rejection("negative_amount", f"order total {amount} is negative")
    customer_id = values.get("customer_id")
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
        counts=counts,
    )
