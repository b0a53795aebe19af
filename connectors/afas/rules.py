"""What Profit's replies mean.

Profit answers 4xx with an empty body, so the fixed refusals get crmsync's own words (`RULES`).
A 500 carrying a Profit message is a refused record, except the messages that mean "try again"
(unexpected error, timeout, a record locked by a user); a 503 is AFAS's "come back later", with a
`retry_after` hint in the body. Those two read the body, which a rule cannot (`read_500`,
`read_503`).
"""

from __future__ import annotations

import re
from typing import Any

from connectors.http import ApiResponse, Rule, Verdict, parse_retry_after

# AFAS gives three reasons for a 401 (help.afas.nl 120612, "API-responses bij connectoren"): a
# wrong URL or web-service address, a connector not in the app connector, an expired token. A token
# belongs to one environment, so a URL naming another environment (another id, or `.resttest.` /
# `.restaccept.` against production) refuses a good token. `/metainfo` needs no connector: there
# the token or the environment is wrong.
_METAINFO = re.compile(r"/metainfo$")
WRONG_TOKEN = (
    "token refused: a wrong or expired token, or one made in another environment than base_url names "
    "(its environment id, and .rest. for production, .resttest. for test, .restaccept. for acceptance)"
)

RULES = (
    Rule("auth", status=401, path=_METAINFO, says=WRONG_TOKEN),
    Rule(
        "auth",
        status=401,
        says="token refused, or the connector is not in the app connector (or base_url names another environment)",
    ),
    Rule("auth", status=403, says="refused by the app connector's IP restriction"),
    Rule("fatal", status=404, says="not found: a wrong URL, or a query string over 2049 characters"),
    Rule("fatal", status=400, method="GET", says="Profit refused the request as malformed (HTTP 400)"),
)

# A 500 from Profit always carries a message; these mean the server failed, not the data:
# "unexpected error" (documented for bad parameters too, which crmsync never sends), the 15-minute
# timeout, and a record or layout locked by someone working in Profit (AFAS: retry those).
TRANSIENT_MESSAGES = (
    "onverwachte fout",
    "unexpected error",
    "maximale tijdsduur",
    "maximum duration",
    "blocked by another user",
    "geblokkeerd door een andere gebruiker",
    "in gebruik door een andere gebruiker",
    "locked",
)


def profit_message(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("externalMessage"), str):
        reference = body.get("profitLogReference")
        message = str(body["externalMessage"])
        return f"{message} (Profit log {reference})" if isinstance(reference, str) and reference else message
    return None


def read_500(response: ApiResponse) -> Verdict:
    message = profit_message(response.body)
    if message is None:
        return Verdict("retry", "HTTP 500 without a Profit message")
    if any(marker in message.casefold() for marker in TRANSIENT_MESSAGES):
        return Verdict("retry", message)
    if response.method != "GET":
        return Verdict("rejected", message)  # a validation error: this record, as sent, is refused
    # On a read it is the GetConnector set-up (unknown field, blocked definition, too much data).
    hint = " (lower page_size)" if "out of" in message.casefold() else ""
    return Verdict("fatal", message + hint)


def read_503(response: ApiResponse) -> Verdict:
    """Maintenance or no capacity now: wait as long as the body's `retry_after` says (finer than
    the header's whole seconds), else as the header says."""
    body = response.body if isinstance(response.body, dict) else {}
    hint = body.get("retry_after")
    wait = float(hint) if isinstance(hint, int | float) else parse_retry_after(response.header("Retry-After"))
    error = body.get("error")
    said = error.get("message") if isinstance(error, dict) else None
    return Verdict("throttled", said if isinstance(said, str) and said else "Profit is unavailable", wait)
