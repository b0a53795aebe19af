"""Email addresses: one clean form to store and show, and one match key to join people by.

`" Jan <Jan.Jansen@Gmail.COM> "` -> `jan.jansen@gmail.com`. IDN domains become their ASCII
(punycode) form; the syntax check is email-validator's, without any network look-up, behind a fast
path for addresses that are plainly fine (most of them), because the library costs ~30 us a call.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email

from mapping.normalize.base import Invalid, type_name

# Plain lower-case ASCII local@domain.tld with nothing exotic: no need to ask the library.
_CLEAN = re.compile(
    r"^[a-z0-9](?:[a-z0-9._%+-]{0,62}[a-z0-9_-])?@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}$"
)
_ANGLE = re.compile(r"<([^<>]*)>")

# Addresses that name a function, not a person: they never join two records into one profile.
DEFAULT_ROLE_LOCALS = frozenset(
    {
        "info", "sales", "noreply", "no-reply", "donotreply", "do-not-reply", "admin", "administrator",
        "contact", "support", "service", "office", "hello", "hallo", "team", "mail", "post", "postmaster",
        "webmaster", "billing", "accounts", "finance", "invoice", "invoices", "orders", "order", "shop",
        "webshop", "marketing", "hr", "jobs", "privacy", "administratie", "boekhouding", "verkoop",
        "klantenservice", "receptie", "factuur", "facturen", "facturatie", "bestellingen", "inkoop",
        "secretariaat", "algemeen", "kantoor", "debiteuren", "crediteuren", "helpdesk", "customerservice",
        "customercare", "klantendienst",
    }
)  # fmt: skip

# Providers known to ignore dots in the local part and everything after a '+'.
_DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def normalise_email(value: Any) -> str | Invalid | None:
    """The clean address, None when there is none, or why it is unusable."""
    if value is None or value is False or value == "":
        return None
    if not isinstance(value, str):
        return Invalid("wrong_type", f"expected an email address, got {type_name(value)}")
    return _normalise(value)


@lru_cache(maxsize=200_000)
def _normalise(value: str) -> str | Invalid | None:
    text = value.strip()
    if bracketed := _ANGLE.findall(text):
        # "Jan <jan@x.nl>; Marie <marie@x.nl>": whose record it is, the field cannot say, and the
        # first address would join it to Jan. A display name that is the address itself is one.
        named = {_bare(part) for part in bracketed}
        named |= {_bare(word) for word in _ANGLE.sub(" ", text).split() if "@" in word}
        if len(named) > 1:
            return Invalid("invalid_email", "more than one email address in one field")
        text = bracketed[0]
    text = text.strip().strip("\"'").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    text = text.split("?", 1)[0]  # mailto:...?subject=...
    # People type spaces into addresses ("J.de Vries@Gmail.com"); no valid address has one.
    text = "".join(text.split()).rstrip(".").lower()
    if not text:
        return None
    if len(text) <= 254 and _CLEAN.match(text) and ".." not in text:
        return text
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        return Invalid("invalid_email", f"not a usable email address ({exc})")
    local, _, domain = checked.normalized.rpartition("@")
    ascii_domain = checked.ascii_domain or domain
    return f"{local.lower()}@{ascii_domain.lower()}"


def _bare(part: str) -> str:
    """An address as it stands beside others in one field, for telling them apart."""
    text = part.strip().strip("\"'<>,;:()").strip().lower()
    return text[7:] if text.startswith("mailto:") else text


_LOCAL_WORDS = re.compile(r"[._-]")


def is_role_address(address: str, role_locals: frozenset[str] = DEFAULT_ROLE_LOCALS) -> bool:
    """Whether the local part names a role: itself, its first word (`info.nl@`, `sales-benelux@`)
    or its words run together (`no_reply@`, `customer.service@`). A person's address read as a
    role's only misses a join; a role's read as a person's joins everyone who wrote from it."""
    local = address.split("@", 1)[0].split("+", 1)[0]
    return (
        local in role_locals
        or _LOCAL_WORDS.split(local, 1)[0] in role_locals
        or _LOCAL_WORDS.sub("", local) in role_locals
    )


def email_match_key(address: str) -> str:
    """The form two addresses are compared in: sub-addresses (`+tag`) removed, and dots removed
    where the provider ignores them (Gmail), so `Jan.Jansen+shop@gmail.com` meets `janjansen@gmail.com`."""
    local, _, domain = address.partition("@")
    local = local.split("+", 1)[0] or local
    if domain in _DOTLESS_DOMAINS:
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"
