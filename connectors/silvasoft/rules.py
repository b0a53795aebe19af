"""What Silvasoft's replies mean.

The vendor signals its rate limit (2/s and 50/min advised, plus an hourly plan quota) with
**HTTP 401** "Ratelimit exceeded" and no Retry-After; the throttle rule tells that apart from a
401 for wrong credentials and waits the configured `ratelimit_wait` before trying again.
"""

from __future__ import annotations

import re

from connectors.http import ApiResponse, Rule

# "Ratelimit exceeded", however it is spelt (spaces and hyphens anywhere, any case); anything
# else in a 401 is about credentials.
RATE_LIMIT = re.compile("[ -]*".join("ratelimit"), re.IGNORECASE)

RULES = (
    Rule("auth", 401),
    # crmsync only reads here: a refused request is our mistake, and retrying repeats it.
    Rule("fatal", 400),
    Rule("fatal", 404),
)


# What Silvasoft says the 401 means (developers.silvasoft.nl, "Response and common errors": more
# requests than allowed in the past hour), and what its own plugins advise: a bigger API plan.
QUOTA_USED = (
    "Ratelimit exceeded: the requests Silvasoft allows in an hour (set by the account's API plan) are "
    "used up; if this lasts, run crmsync less often or upgrade the Silvasoft API plan"
)


def throttle_rule(ratelimit_wait: float) -> Rule:
    """The rate-limit 401 of one configured instance, which waits `ratelimit_wait`; it goes before
    RULES, whose 401 is about credentials."""
    return Rule("throttled", 401, message=RATE_LIMIT, says=QUOTA_USED, retry_after=ratelimit_wait)


def error_text(response: ApiResponse) -> str:
    """`errorCode: errorMessage`, the pair Silvasoft's own plugins show; a 404 also asks whether
    `base_url` is Silvasoft's REST host."""
    body = response.body
    if isinstance(body, dict) and (body.get("errorCode") or body.get("errorMessage")):
        text = f"{body.get('errorCode') or 'ERROR'}: {body.get('errorMessage') or ''}".strip()
    else:
        text = response.text.strip()[:300] or f"HTTP {response.status}"
    return f"{text} (is base_url https://rest-api.silvasoft.nl ?)" if response.status == 404 else text
