from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import pycountry

from mapping.normalize.base import Invalid, type_name

MAX_AMOUNT = Decimal("100000000")  # a single order above 100 million is a data error, not a sale
# A float carries 17 significant digits and a price in cents ten; more is not an amount anyone
# charged (and its text would outgrow the 40 characters the state keeps an amount in).
MAX_DIGITS = 28
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def normalise_money(value: Any) -> Decimal | Invalid | None:
    """An amount in units: `"29.35"`, `29.35`, `2935` (already units)."""
    if type(value) is str:
        known = _AMOUNT_OF.get(value)
        if known is not None:
            return known
        # An order's total and its total before returns are mostly the same text, and its refunded
        # amount mostly "0.00": the second and third read each cost a Decimal's parse and checks.
        return _remember(_AMOUNT_OF, value, _amount(value, value))
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, _NUMBER_TYPES):
        return Invalid("wrong_type", f"expected an amount, got {type_name(value)}")
    return _amount(value, str(value))


def _amount(value: Any, text: str) -> Decimal | Invalid | None:
    """`normalise_money` of a str, int or float, `text` its `str()`."""
    if value == "":
        return None
    text = text.strip()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return Invalid("invalid_amount", "not a number")
    if not amount.is_finite():
        return Invalid("invalid_amount", "not a finite number")
    if abs(amount) > MAX_AMOUNT:
        return Invalid("absurd_amount", "amount beyond 100,000,000")
    # A text no longer than the limit cannot hold more digits than that: only a long one is
    # counted (`as_tuple` builds a tuple of every digit, per order read).
    if len(text) > MAX_DIGITS and len(amount.as_tuple().digits) > MAX_DIGITS:
        return Invalid("invalid_amount", f"more than {MAX_DIGITS} significant digits")
    return amount


def normalise_money_cents(value: Any) -> Decimal | Invalid | None:
    """An amount in cents (integer minor units), returned in units."""
    amount = normalise_money(value)
    if isinstance(amount, Decimal):
        return amount / 100
    return amount


def normalise_refunded(value: Any) -> Decimal | Invalid | None:
    """The amount refunded on an order, in units, from one amount or a list of them (one per refund:
    WooCommerce's `refunds[].total`, which it writes negative, `"-10.00"`); the sign says nothing,
    each refund takes its amount off. None when the order names no refunds."""
    if type(value) is str:
        # One amount (Shopify's totalRefundedSet), mostly "0.00": its total is remembered by text.
        known = _REFUNDED_OF.get(value)
        if known is not None:
            return known
        return _remember(_REFUNDED_OF, value, _refunded_total([value]))
    if value is None or value == []:
        return None
    return _refunded_total(value if isinstance(value, _SEQUENCE_TYPES) else [value])


def _refunded_total(items: Any) -> Decimal | Invalid:
    total = Decimal(0)
    for item in items:
        amount = normalise_money(item)
        if isinstance(amount, Invalid):
            return amount
        if amount is not None:
            total += abs(amount)
    return total


# What `normalise_money` and `normalise_refunded` made of the texts they met lately (a Decimal or
# an Invalid: both immutable), up to _AMOUNTS_KEPT of each.
_AMOUNTS_KEPT = 4096
_AMOUNT_OF: dict[str, Decimal | Invalid] = {}
_REFUNDED_OF: dict[str, Decimal | Invalid] = {}


def _remember(
    cache: dict[str, Decimal | Invalid], text: str, made: Decimal | Invalid | None
) -> Decimal | Invalid | None:
    """`made`, kept under `text` in `cache` when it is short and not None. Emptied when full (a text
    is a key once, however long the read), not evicted one by one."""
    if made is not None and len(text) <= 40:
        if len(cache) >= _AMOUNTS_KEPT:
            cache.clear()
        cache[text] = made
    return made


# isinstance with a tuple: a union written in the call (`str | int | float`) is built at every call.
_NUMBER_TYPES = (str, int, float)
_SEQUENCE_TYPES = (list, tuple)


# What `normalise_currency` made of each text it met: a shop's orders name one or two currencies,
# and every order read asked again (a strip, an upper, a regular expression, a cache look-up).
_CURRENCY_OF: dict[str, str | Invalid] = {}


def normalise_currency(value: Any) -> str | Invalid | None:
    if type(value) is str:
        known = _CURRENCY_OF.get(value)
        if known is not None:
            return known
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return Invalid("wrong_type", f"expected a currency code, got {type_name(value)}")
    code = value.strip().upper()
    result: str | Invalid = (
        Invalid("invalid_currency", "not an ISO 4217 currency code")
        if not _CURRENCY.match(code) or not _is_currency(code)
        else code
    )
    if type(value) is str and len(value) <= 8 and len(_CURRENCY_OF) < 512:  # a code's text, padded at most
        _CURRENCY_OF[value] = result
    return result


# ISO 4217's "no currency" and "testing" codes: no sale is in them.
_NOT_MONEY = frozenset({"XXX", "XTS"})


@lru_cache(maxsize=512)
def _is_currency(code: str) -> bool:
    return code not in _NOT_MONEY and pycountry.currencies.get(alpha_3=code) is not None
