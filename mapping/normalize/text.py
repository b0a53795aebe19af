from __future__ import annotations

import unicodedata
from typing import Any

from mapping.normalize.base import Invalid, type_name

MAX_TEXT = 1000
# No vendor's ids come near this (numbers, GUIDs, Shopify's gids, AFAS codes of 15); a longer one
# is not an id but something pasted into the field, and the state keys records by at most 255.
MAX_ID = 255


def normalise_text(value: Any) -> str | Invalid | None:
    """Trimmed, NFC-normalised text; empty and `false` (Lightspeed's "empty") become None."""
    if value is None or value is False:
        return None
    if type(value) is not str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return Invalid("wrong_type", f"expected text, got {type_name(value)}")
    # ASCII text is already in NFC: most names and addresses skip the normalisation call.
    cleaned = " ".join((value if value.isascii() else unicodedata.normalize("NFC", value)).split())
    if len(cleaned) > MAX_TEXT:
        return Invalid("too_long", f"text of {len(cleaned)} characters (limit {MAX_TEXT})")
    return cleaned or None


def normalise_id(value: Any) -> str | Invalid | None:
    # Most ids are a str or an int (a bool is no int here): the checks below, answered for them.
    if type(value) is str:
        text = value.strip()
    elif type(value) is int:
        if not value:
            return None
        text = str(value)
    else:
        return _normalise_other_id(value)
    if len(text) > MAX_ID:
        return Invalid("id_too_long", f"an id of {len(text)} characters (limit {MAX_ID})")
    return text or None


def _normalise_other_id(value: Any) -> str | Invalid | None:
    if value is None or value == "" or value == 0 or value is False:
        return None
    if isinstance(value, float) and value.is_integer():
        # A number key written by a JSON writer that knows only floats (as efficy's client assumes
        # of its datasets: 40001.0) is the same key as 40001.
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return Invalid("wrong_type", f"expected an id, got {type_name(value)}")
    text = str(value).strip()
    if len(text) > MAX_ID:
        return Invalid("id_too_long", f"an id of {len(text)} characters (limit {MAX_ID})")
    return text or None


def normalise_bool(value: Any) -> bool | Invalid | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int):
        return bool(value)
    return Invalid("wrong_type", f"expected true/false, got {type_name(value)}")


def normalise_phone_raw(value: Any) -> str | Invalid | None:
    """Phone numbers kept as typed (trimmed); E.164 parsing comes with the mapping layer."""
    return normalise_text(value)
