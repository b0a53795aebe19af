"""Masking of secrets in any text crmsync may print: URLs, messages, log fields.

Two nets, because either alone leaks: every configured secret value is replaced wherever it
appears, and any field or URL query parameter whose *name* looks sensitive is masked even when
its value was never registered (a vendor echoing a token back, a signature in a redirect URL).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "***"

SENSITIVE_NAME = re.compile(r"token|key|secret|password|passwd|authorization|signature|credential", re.I)

# name=value pairs inside URLs or free text, where the name looks sensitive.
_QUERY_PARAM = re.compile(
    r"(?P<name>[A-Za-z0-9_.\-\[\]%]*(?:token|key|secret|password|passwd|authorization|signature|credential)"
    r"[A-Za-z0-9_.\-\[\]%]*)=(?P<value>[^&\s'\"<>#,;)]+)",
    re.I,
)
# "Authorization: Basic abc", "Bearer abc" as they appear in echoed headers or messages. A word after
# the scheme is prose ("the token obtained", "Token refused"), not a credential: random credentials
# are longer than a word or carry digits, capitals inside or symbols.
_AUTH_SCHEME = re.compile(r"\b((?i:Basic|Bearer|Token))\s+(?![A-Za-z][a-z]{1,10}\b)[A-Za-z0-9+/=._\-~]{6,}")

# The password of a URL's user part ("https://user:password@host"): an old Shopify private-app URL
# carries its password there, and a message quoting such a URL must not.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^@/\s]+@")

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value so every later redaction masks it. Short values are ignored:
    masking every 'a' would make logs unreadable and protects nothing."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def registered_secrets() -> frozenset[str]:
    with _lock:
        return frozenset(_secrets)


def is_sensitive_name(name: str) -> bool:
    return bool(SENSITIVE_NAME.search(name))


def redact_text(text: str, extra_secrets: Iterable[str] = ()) -> str:
    """Return `text` with registered secrets, URL passwords, sensitive query parameters and auth
    schemes masked."""
    if not text:
        return text
    secrets = set(registered_secrets())
    secrets.update(s for s in extra_secrets if s and len(s) >= 4)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    text = _QUERY_PARAM.sub(lambda m: f"{m.group('name')}={MASK}", text)
    return _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {MASK}", text)


def redact_value(value: object, *, by_name: bool = True) -> object:
    """Redact strings anywhere inside nested dicts, lists and tuples.

    With `by_name` (log events), a value under a sensitive-looking key is masked whole. Documents
    meant for people and scripts (`--json`, explain) pass `by_name=False`: vendor payloads are full of
    harmless `key` fields, and the registered secret values are masked there all the same."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: (
                MASK
                if by_name and isinstance(k, str) and is_sensitive_name(k) and v not in (None, "")
                else redact_value(v, by_name=by_name)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, by_name=by_name) for v in value)
    return value
