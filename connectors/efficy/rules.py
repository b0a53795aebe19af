"""What efficy's errors mean.

efficy reports its errors inside HTTP 200 replies (`#error` on a function, a context or the whole
request). The request-wide ones are read by `RULES` into real verdicts (slow down, credentials, a
server hiccup); the readers, `check` and `write` read per-context ones the same way, into errors
or rejections. A reply that is no 200 is read the HTTP way, with efficy's message when it sent one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connectors.efficy.rpc import describe
from connectors.http import ApiResponse, Rule, Verdict, classify_by

THROTTLE_CODE = "ER_TOO_MANY_REQUESTS"
LOGON_CODE = "ER_LOGON"
# efficy's logon and session failures, as its employee's client library recognises them by text
# (it leaves out "no right to perform this operation": that is one record's security, not the key).
AUTH_PHRASES = (
    "invalid user",
    "please logon",
    "logon to database",
    "session is not valid",
    "session timeout",
    "crm session is not active",
)
_RETRY_HINT = re.compile(r"retry (?:after|in) (\d+(?:\.\d+)?)", re.IGNORECASE)


def _code(code: str) -> re.Pattern[str]:
    return re.compile(rf"\A{re.escape(code)}\Z", re.IGNORECASE)


def _phrases(*phrases: str) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(p) for p in phrases), re.IGNORECASE)


# Read against an error's code and its text (`errorstring` and `detail`), first match wins.
RULES: tuple[Rule, ...] = (
    Rule("throttled", status=200, code=_code(THROTTLE_CODE)),
    Rule("throttled", status=200, message=_phrases("too many requests")),
    Rule("auth", status=200, code=_code(LOGON_CODE)),
    Rule("auth", status=200, message=_phrases(*AUTH_PHRASES)),
    # the database chose this request as the victim: run it again
    Rule("retry", status=200, message=_phrases("deadlock")),
    Rule("fatal", status=200),
)

# An error read without its reply (one context's): as if it came in a 200, as efficy sends them.
_IN_A_200 = ApiResponse(200, {}, None, "", "POST", "", 0.0)


def verdict_for(error: Mapping[str, Any], response: ApiResponse | None = None) -> Verdict:
    """What an efficy error means; its message is the error described. efficy puts the wait of a
    throttle in its text ("retry after 2 seconds"), where no rule can read it."""
    reply = response or _IN_A_200
    text = f"{error.get('errorstring') or ''} {error.get('detail') or ''}"
    verdict = classify_by(RULES, reply, message=text, code=str(error.get("errorcode") or ""))
    wait = verdict.retry_after
    if reply.status == 200:  # efficy's own wait, never a header's
        hint = _RETRY_HINT.search(text) if verdict.kind == "throttled" else None
        wait = float(hint.group(1)) if hint else None
    return Verdict(verdict.kind, describe(error), wait)
