"""How crmsync signs in to a shop: the three ways Shopify hands out credentials today
(../shared/api-notes/shopify.md, shopify.dev client-credentials-grant and offline-access-tokens).

- A Dev Dashboard app (2026 on), store of the app's own organisation: the client-credentials
  grant gives 24-hour tokens.
- An app of another organisation (an agency's): an expiring offline token, renewed with its
  refresh token, which Shopify rotates at every refresh (the newest is kept in
  `refresh_token_file`; the configured one is retired once its successor is used).
- An app made in the admin before 2026: its fixed `access_token`.

Every token goes in the `X-Shopify-Access-Token` header.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from connectors.auth import Authenticator, ExpiringTokenAuth, HeaderAuth, OAuth2Grant, RefreshTokenGrant, Token
from connectors.http import ApiClient
from connectors.shopify.settings import ShopifySettings

TOKEN_PATH = "/admin/oauth/access_token"


def authenticator(system: str, settings: ShopifySettings, token_client: ApiClient | None) -> Authenticator:
    """The sign-in of the configured flow; `token_client` talks to the token endpoint, which is on
    the shop's own host, outside the Admin API's cost limit (None for a fixed token)."""
    if settings.flow == "fixed_token":
        assert settings.access_token is not None
        return HeaderAuth({"X-Shopify-Access-Token": settings.access_token})
    assert settings.client_id is not None and settings.client_secret is not None and token_client is not None
    credentials: dict[str, str | SecretStr] = {
        "client_id": settings.client_id,
        "client_secret": settings.client_secret,
    }
    source: OAuth2Grant
    if settings.flow == "client_credentials":
        source = OAuth2Grant(
            system,
            token_client,
            TOKEN_PATH,
            {"grant_type": "client_credentials", **credentials},
            fix="check client_id and client_secret (Dev Dashboard > your app > Settings), and that the store "
            "belongs to the app's organisation (else use an expiring offline token: docs/setup/shopify.md)",
            what="client-credentials token",
        )
    else:
        assert settings.refresh_token is not None and settings.refresh_token_file is not None
        source = RefreshTokenGrant(
            system,
            token_client,
            TOKEN_PATH,
            credentials,
            settings.refresh_token,
            store=settings.refresh_token_file,
            fix="the refresh token was refused (expired after 90 days, revoked, or replaced): "
            "get a new expiring offline token for the store (docs/setup/shopify.md)",
            what="token refresh",
        )
    initial = Token(settings.access_token.get_secret_value(), None) if settings.access_token is not None else None
    return ExpiringTokenAuth(system, source, _shopify_header, margin=settings.token_renew_margin, initial=initial)


def _shopify_header(request: Any, token: Token) -> None:
    request.headers["X-Shopify-Access-Token"] = token.value
