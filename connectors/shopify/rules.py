"""What Shopify's replies mean.

A reply other than 200 is read the HTTP way (401 a refused token, 429 and 5xx worth a retry), but
for a shop closed to the API (402 frozen, 403 "Unavailable Shop", 423 locked): no credentials error.
The GraphQL API reports everything else inside a 200, in `errors[].extensions.code`: throttling
(`THROTTLED`, with the bucket's state in `extensions.cost`), a missing scope (`ACCESS_DENIED`),
a passing fault (`INTERNAL_SERVER_ERROR`), a field the pinned API version does not have
(`undefinedField`: a drift, named as such); any other error in a 200 is final.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from connectors.http import ApiResponse, Rule, Verdict, classify_by, default_classify
from connectors.shopify.pacing import throttle_wait


def _code(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?:^|\s){name}(?:\s|$)")


RULES: tuple[Rule, ...] = (
    Rule("denied", status=200, code=_code("ACCESS_DENIED")),
    Rule("retry", status=200, code=_code("INTERNAL_SERVER_ERROR")),
    Rule("fatal", status=200),  # any other error inside a 200
)


# A shop Shopify has closed to the API answers every request so, whatever the token (shopify.dev
# "response status and error codes": 402 a frozen shop, 423 a locked one). GraphQL clients also see
# 403 "Unavailable Shop" (a missing scope is ACCESS_DENIED in a 200 there, never a 403), so that 403
# is the shop, not the credentials: a new token would be refused the same.
SHOP_CLOSED = {
    402: "the shop is frozen (unpaid Shopify bills): the shop's owner must pay the outstanding balance in the "
    "Shopify admin",
    403: "the shop is unavailable to apps (frozen, closed or paused): the shop's owner must reopen it in the "
    "Shopify admin",
    423: "the shop is locked by Shopify (repeated API limit excess, or a fraud risk on the account): the "
    "shop's owner must contact Shopify support",
}
_UNAVAILABLE = re.compile(r"unavailable (shop|store)|(shop|store) is unavailable", re.IGNORECASE)


def http_verdict(response: ApiResponse) -> Verdict:
    """A reply other than a 200 with GraphQL errors, read the HTTP way, but for a shop that is
    closed to the API."""
    verdict = default_classify(response)
    closed = SHOP_CLOSED.get(response.status)
    if closed is None or (response.status == 403 and not _UNAVAILABLE.search(verdict.message)):
        return verdict
    return Verdict("fatal", f"{verdict.message}: {closed}")


def read_reply(response: ApiResponse, rules: Sequence[Rule], api_label: str) -> Verdict:
    """The verdict on one reply; `rules` read the codes of the errors in a 200 body, first match
    wins. What they cannot say is here: the drift message and the wait the bucket reports."""
    body = response.body
    errors = body.get("errors") if isinstance(body, dict) else None
    if response.status != 200 or not errors:
        return http_verdict(response)
    listed = [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    codes = {str(code) for e in listed if (code := _extensions(e).get("code"))}
    message = "; ".join(str(e.get("message")) for e in listed) if isinstance(errors, list) else str(errors)
    if "undefinedField" in codes:
        # The API version no longer has a field crmsync asks for: a drift, named as such.
        missing = [_extensions(e) for e in listed]
        named = ", ".join(f"{m.get('typeName')}.{m.get('fieldName')}" for m in missing if m.get("fieldName"))
        return Verdict(
            "fatal", f"{api_label} has no field {named} (renamed or removed in this API version?): {message}"
        )
    if "THROTTLED" in codes:
        return Verdict("throttled", message, throttle_wait(body))
    return classify_by(rules, response, message=message, code=" ".join(sorted(codes)))


def _extensions(error: dict[str, Any]) -> dict[str, Any]:
    extensions = error.get("extensions")
    return extensions if isinstance(extensions, dict) else {}
