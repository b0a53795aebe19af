"""How the SuperOffice WebAPI's replies read.

Errors come as `{Error, ErrorType, ErrorMessage, ErrorSource}`: crmsync reports them as
"<ErrorType>: <ErrorMessage>". Everything the rules below do not name is read the HTTP way.
"""

from __future__ import annotations

import re

from connectors.http import ApiResponse, Rule

_ENTITY_PATH = re.compile(r"/Person/\d+$")
_INTERESTS_AGENT = re.compile(r"/Agents/Person/UpdateInterests$")

RULES = (
    # Sentry: the signed-in user's role lacks the right; a new ticket would not change that.
    Rule("denied", status=403),
    # A person deleted in SuperOffice since it was read: that record fails, not the system. The
    # interests agent names the person in its body, so there only the person's absence is (a
    # missing route would fail the system, not every record one by one).
    Rule("rejected", status=404, path=_ENTITY_PATH),
    Rule("rejected", status=404, path=_INTERESTS_AGENT, message=re.compile(r"Person id \d+ not found")),
)


def error_message(response: ApiResponse) -> str | None:
    """The vendor's error as crmsync reports it, or None when the body carries none."""
    body = response.body
    if isinstance(body, dict) and body.get("ErrorMessage"):
        return f"{body.get('ErrorType')}: {body['ErrorMessage']}"
    return None
