"""Normalisers for the profile's other bases: birth date, email consent, a yes/no flag from a list,
and labels (product types and categories)."""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Any

from mapping.normalize.base import Invalid, type_name

_ISO_DATE = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$")
_DMY_DATE = re.compile(r"^\s*(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\s*$")
# Systems without a birth date often hold a placeholder: 0001-01-01 (.NET's MinValue, SuperOffice)
# or 1900-01-01 (AFAS, spreadsheets). A date on or before 1900-01-01 is read as "none".
_NO_DATE_UNTIL = date(1900, 1, 1)
_LATEST_BIRTH = date(2100, 1, 1)


def normalise_birth_date(value: Any) -> str | Invalid | None:
    """An ISO date (`YYYY-MM-DD`) from `YYYY-MM-DD[THH:MM...]` or `dd-MM-yyyy`; a placeholder date
    (on or before 1900-01-01) is no date."""
    if value is None or value == "" or value is False:
        return None
    if not isinstance(value, str):
        return Invalid("wrong_type", f"expected a date, got {type_name(value)}")
    iso, dmy = _ISO_DATE.match(value), _DMY_DATE.match(value)
    if iso:
        year, month, day = (int(part) for part in iso.groups())
    elif dmy:
        day, month, year = (int(part) for part in dmy.groups())
    else:
        return Invalid("invalid_birth_date", "not a date")
    try:
        parsed = date(year, month, day)
    except ValueError:
        return Invalid("invalid_birth_date", "no such calendar date")
    if parsed <= _NO_DATE_UNTIL:
        return None
    if parsed >= _LATEST_BIRTH:
        return Invalid("invalid_birth_date", f"birth date {parsed} after 2100")
    return parsed.isoformat()


# What the vendors write for an email marketing opt-in. Only an explicit opt-in is consent: a pending
# double opt-in (Shopify PENDING), a bounced address (INVALID), an unsubscribe or anything else is not.
_CONSENT_YES = frozenset({"subscribed", "yes", "true", "1", "opt-in", "optin", "opted_in", "granted"})


def normalise_consent(value: Any) -> bool | Invalid | None:
    """True for an explicit opt-in, False for anything that says otherwise, None when the system
    says nothing. A state crmsync does not know (a vendor's new enum value) is no consent: it then
    also overrules an opt-in elsewhere, which is the safe side."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value == 1
    if isinstance(value, str):
        word = value.strip().lower()
        return word in _CONSENT_YES
    return Invalid("wrong_type", f"expected a consent state, got {type_name(value)}")


# isinstance with a tuple: a union written in the call (`list | tuple`) is built at every call, and
# every order read asks (its discount codes, its lines' categories).
_SEQUENCE_TYPES = (list, tuple)
_NUMBER_TYPES = (int, float)
_LABEL_TYPES = (str, int)


def normalise_flag(value: Any) -> bool | Invalid | None:
    """Whether something is there: a non-empty list or text, or true (a discount code on an order,
    Lightspeed's `isCompany`). An empty list, empty text, 0 or false is False; absent is None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, _SEQUENCE_TYPES):
        return any(v not in (None, "", False) for v in value)
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no")
    if isinstance(value, _NUMBER_TYPES):
        return value != 0
    return Invalid("wrong_type", f"expected a list or a flag, got {type_name(value)}")


MAX_LABELS = 200


def normalise_labels(value: Any) -> tuple[str, ...] | Invalid | None:
    """Product types or category names of an order's lines, trimmed and NFC-normalised, in order,
    without repeats; a text is one label (`"Shoes"`), a list is one per line."""
    if value is None:
        return None
    items = value if isinstance(value, _SEQUENCE_TYPES) else [value]
    labels: list[str] = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("name")  # a category object: {"id": 1, "name": "Shoes", "slug": "shoes"}
        if item is None or item == "":
            continue
        if not isinstance(item, _LABEL_TYPES):
            return Invalid("wrong_type", f"expected category names, got {type_name(item)}")
        label = unicodedata.normalize("NFC", str(item)).strip()
        if label and label not in labels:
            labels.append(label[:200])
    return tuple(labels[:MAX_LABELS])
