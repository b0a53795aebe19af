"""The emulator's token endpoint, as a Dev Dashboard app gets its tokens (shopify.dev,
client-credentials-grant, offline-access-tokens; see ../shared/api-notes/shopify.md).

`POST /admin/oauth/access_token` with `grant_type=client_credentials` answers `{access_token,
scope, expires_in: 86399}` (the lifetime is `token_ttl_s`, set through `/_sandbox/app`), and with
`grant_type=refresh_token` a new access token (an hour) and a new refresh token, the old one
retired once the new one is used. A wrong client id or secret is 400 `invalid_client`, a refresh
token not (or no longer) known 400 `invalid_grant`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from connectors.sandbox import json_response

if TYPE_CHECKING:
    from connectors.shopify.sandbox import ShopifySandbox

CLIENT_CREDENTIALS_TTL = 86399  # "Always 86399 (24 hours)"
OFFLINE_TOKEN_TTL = 3600
REFRESH_TOKEN_TTL = 7_776_000  # 90 days


def offline_pair(sandbox: ShopifySandbox) -> dict[str, Any]:
    """What the authorization-code or token-exchange grant with `expiring=1` hands an app."""
    ttl = min(OFFLINE_TOKEN_TTL, sandbox.token_ttl_s)
    return {
        "access_token": sandbox.issue_token("shpat_", ttl),
        "expires_in": int(ttl),
        "refresh_token": sandbox.issue_token("shprt_", REFRESH_TOKEN_TTL, kind="refresh"),
        "refresh_token_expires_in": REFRESH_TOKEN_TTL,
        "scope": ",".join(sorted(sandbox.granted())),
    }


def token_endpoint(sandbox: ShopifySandbox, request: Request) -> Response:
    """`POST /admin/oauth/access_token`: form-encoded as documented, or JSON as Shopify's own
    libraries send it. Errors are JSON when asked for (`Accept: application/json`), else an
    HTML page, as reported of the real endpoint."""
    if request.mimetype == "application/json":
        try:
            loaded = json.loads(request.get_data() or b"{}")
        except ValueError:
            loaded = None
        form: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
    else:
        form = request.form.to_dict()
    wants_json = "json" in request.headers.get("Accept", "")
    grant = form.get("grant_type")
    if form.get("client_id") != sandbox.client_id or form.get("client_secret") != sandbox.client_secret:
        return _oauth_error("invalid_client", "Client authentication failed", wants_json)
    with sandbox.lock:
        if grant == "client_credentials":
            reply = {
                "access_token": sandbox.issue_token("shpat_", sandbox.token_ttl_s),
                "scope": ",".join(sorted(sandbox.granted())),
                "expires_in": int(sandbox.token_ttl_s),
            }
            return json_response(reply)
        if grant == "refresh_token":
            used = str(form.get("refresh_token") or "")
            if sandbox.token_status(used, kind="refresh") != "valid":
                return _oauth_error("invalid_grant", "The refresh token is invalid or expired", wants_json)
            # The token this one replaced is retired now that the new one is in use.
            retired = sandbox.replaced_by.pop(used, None)
            if retired is not None:
                sandbox.issued.pop(retired, None)
            reply = offline_pair(sandbox)
            sandbox.replaced_by[str(reply["refresh_token"])] = used
            return json_response(reply)
    return _oauth_error("unsupported_grant_type", f"grant_type {grant!r} is not supported", wants_json)


def _oauth_error(code: str, description: str, as_json: bool) -> Response:
    if as_json:
        return json_response({"error": code, "error_description": description}, 400)
    page = f"<html><body><h1>Oauth error {code}: {description}</h1></body></html>"
    return Response(page, status=400, content_type="text/html; charset=utf-8")
