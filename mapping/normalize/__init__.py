"""Normalisers: each takes a raw value and returns the clean value, None when absent, or an
`Invalid` carrying the reason why not. They never raise on bad input and never read the clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mapping.normalize.address import normalise_country
from mapping.normalize.base import Invalid
from mapping.normalize.dates import normalise_date_dmy, normalise_datetime
from mapping.normalize.email import normalise_email
from mapping.normalize.money import normalise_currency, normalise_money, normalise_money_cents, normalise_refunded
from mapping.normalize.profile import normalise_birth_date, normalise_consent, normalise_flag, normalise_labels
from mapping.normalize.text import normalise_bool, normalise_id, normalise_phone_raw, normalise_text

Normaliser = Callable[[Any], Any]

NORMALISERS: dict[str, Normaliser] = {
    "text": normalise_text,
    "id": normalise_id,
    "bool": normalise_bool,
    "email": normalise_email,
    "phone": normalise_phone_raw,
    "money": normalise_money,
    "money_cents": normalise_money_cents,
    "refunded": normalise_refunded,
    "currency": normalise_currency,
    "datetime": normalise_datetime,
    "country": normalise_country,
    "date_dmy": normalise_date_dmy,
    "birth_date": normalise_birth_date,
    "consent": normalise_consent,
    "flag": normalise_flag,
    "labels": normalise_labels,
}


def clear_caches() -> None:
    """Forget the values normalised so far. Normalisers cache by raw value because the same
    addresses, names and numbers repeat within a read; a daemon clears them between cycles, when the
    next cycle maps only what changed and the memory is better given back."""
    from mapping.normalize import address, email, money, names, phone

    for cached in (email._normalise, phone._parse, names._parse, address._country):
        cached.cache_clear()
    money._AMOUNT_OF.clear()
    money._REFUNDED_OF.clear()


__all__ = ["NORMALISERS", "Invalid", "Normaliser", "clear_caches"]
