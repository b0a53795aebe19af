"""What Lightspeed eCom's replies mean.

Errors are `{"error": {"code", "method", "request", "message"}}`. Beyond the HTTP way of reading
a reply (connectors/http.py `default_classify`): a 403 is a right the API key lacks, not wrong
credentials; a 404 of one customer or of one of its metafield rows is that record gone, which
refuses the one record; a 429 says in its `X-RateLimit-*` headers which window is used up and
when it resets (budget.py); and an `error` member in a 2xx reply is a failure too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from connectors.errors import ApiError
from connectors.http import ApiResponse, Rule, Verdict, classify_by, vendor_message
from connectors.lightspeed.budget import throttle_verdict
from connectors.lightspeed.settings import NOT_FOUND

_PER_CUSTOMER = re.compile(r"^/[^/]+/customers/\d+[/.]")

RULES: tuple[Rule, ...] = (
    # A customer (or one of its metafield rows) deleted since: that record is refused, the rest go on.
    Rule("rejected", status=404, path=_PER_CUSTOMER, says=f"{NOT_FOUND}: the customer or its metafield row is gone"),
    # Right key and secret; the key lacks the permission for this area (customers, orders,
    # settings, ...): a missing right, not wrong credentials.
    Rule("denied", status=403),
)


def read_reply(response: ApiResponse, rules: Sequence[Rule], *, margin: float, patience: float) -> Verdict:
    """The verdict of the rules, after two readings they cannot express: an error inside a 2xx
    reply is read as the status its code names, and a 429 by its rate-limit headers. Pure: what
    the headers teach the pacing is `HeaderBudget.observe`'s."""
    error = response.body.get("error") if isinstance(response.body, dict) else None
    if 200 <= response.status < 300:
        if error is None:
            return Verdict.ok()
        # The vendor's own client treats an `error` member in any reply as a failure.
        code = error.get("code") if isinstance(error, dict) else None
        response = replace(response, status=code if isinstance(code, int) and code >= 400 else 400)
    if response.status == 429:
        message = vendor_message(response.body, response.text) or "HTTP 429"
        verdict = throttle_verdict(response, message, margin=margin, patience=patience)
        if verdict is not None:
            return verdict
    return classify_by(rules, response)


def items_of(response: ApiResponse, key: str, system: str) -> list[dict[str, Any]]:
    """The list a reply wraps in `key` (`{"customers": [...]}`); a reply without it is no answer
    to the question asked."""
    items = response.body.get(key) if isinstance(response.body, dict) else None
    if not isinstance(items, list):
        raise ApiError(system, f"{response.method} {response.path}: expected a {key!r} list")
    return [item for item in items if isinstance(item, dict)]
