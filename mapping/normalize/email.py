from __future__ import annotations

import re
from typing import Any

from mapping.normalize.base import Invalid, type_name

# Deliberately plain: one @, a dotted domain, no spaces. Deliverability is the vendor's business;
# here an address only has to be usable as an identifier.
_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$")
_ANGLE = re.compile(r"<([^<>]+)>")


def normalise_email(value: Any) -> str | Invalid | None:
    """`" Jan <Jan.Jansen@Example.NL> "` -> `jan.jansen@example.nl`."""
    if value is None or value is False or value == "":
        return None
    if not isinstance(value, str):
        return Invalid("wrong_type", f"expected an email address, got {type_name(value)}")
    text = value.strip()
    if match := _ANGLE.search(text):
        text = match.group(1).strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    text = text.strip().lower()
    if not text:
        return None
    if len(text) > 254 or not _ADDRESS.match(text):
        return Invalid("invalid_email", "not a usable email address")
    return text
