"""SuperOffice Online's system-user ticket exchange (server to server), and the RSA and JWT work it
needs. Facts from SuperOffice's documentation (../shared/api-notes/superoffice.md, "Auth"):

1. The system user token (a claim the tenant's administrator hands the app on consent) is signed
   with the app's private key: `<token>.<UTC yyyyMMddHHmm>`, RSA PKCS#1 v1.5 over SHA-256, base64.
2. `POST {login}/Login/api/PartnerSystemUser/Authenticate` with `SignedSystemToken`,
   `ApplicationToken` (the client secret), `ContextIdentifier` and `ReturnTokenType = "JWT"`
   answers `{IsSuccessful, Token, ErrorMessage}`.
3. The JWT is signed by SuperOffice (RS256, keys at `{login}/login/.well-known/jwks`, issuer
   "SuperOffice AS"); its claim `http://schemes.superoffice.net/identity/ticket` is the ticket,
   sent as `Authorization: SOTicket <ticket>` with `SO-AppToken`. A ticket lives 6 hours, renewed
   by every use; a 401 means get a new one.

The JWT's own expiry is not checked: it is minutes long and consumed the moment it arrives, and a
clock that runs sped up in a test (or drifts on a server) would refuse a genuine one. The signed
minute is wall-clock time, whatever `$CRMSYNC_NOW` says: SuperOffice checks it against its own clock.

`sign_in` wires the configured flow (system user, OIDC refresh token, or a fixed token/ticket)
into the authenticator every API request goes through.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr

from connectors.auth import (
    Authenticator,
    Clock,
    ExpiringTokenAuth,
    HeaderAuth,
    RefreshTokenGrant,
    Token,
    TokenSource,
)
from connectors.errors import ApiError, AuthError, TokenRefused
from connectors.http import ApiClient
from connectors.redaction import register_secret
from connectors.superoffice.keys import KEY_ERRORS, load_private_key, unusable_key
from connectors.superoffice.settings import OIDC_TOKEN_PATH, SuperOfficeSettings

AUTHENTICATE_PATH = "/Login/api/PartnerSystemUser/Authenticate"
JWKS_PATH = "/login/.well-known/jwks"
TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"
ISSUER = "SuperOffice AS"
TICKET_LIFETIME = 6 * 3600.0  # sliding: every use starts it again


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def sign_system_token(system_user_token: str, key: rsa.RSAPrivateKey, at: datetime) -> str:
    data = f"{system_user_token}.{at:%Y%m%d%H%M}"
    signature = key.sign(data.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{data}.{base64.b64encode(signature).decode()}"


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verified_claims(system: str, jwt: str, jwks: Any) -> dict[str, Any]:
    """The claims of an RS256 JWT whose signature one of the JWKS keys verifies, issued by
    SuperOffice; anything else is refused (a ticket from a forged token must never be used)."""
    try:
        header_part, payload_part, signature_part = jwt.split(".")
        header = json.loads(_b64url(header_part))
        claims = json.loads(_b64url(payload_part))
        signature = _b64url(signature_part)
    except ValueError:
        raise TokenRefused(system, "the system-user token answer is not a JWT") from None
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        raise TokenRefused(system, "the system-user JWT is not signed RS256")
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    candidates = [k for k in keys or [] if isinstance(k, dict) and k.get("kty") == "RSA"]
    if header.get("kid"):
        candidates = [k for k in candidates if k.get("kid") in (None, header["kid"])]
    signed = f"{header_part}.{payload_part}".encode()
    for candidate in candidates:
        try:
            public = rsa.RSAPublicNumbers(
                int.from_bytes(_b64url(str(candidate["e"])), "big"), int.from_bytes(_b64url(str(candidate["n"])), "big")
            ).public_key()
            public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, KeyError, ValueError):
            continue
        if claims.get("iss") != ISSUER:
            raise TokenRefused(system, f"the system-user JWT was issued by {claims.get('iss')!r}, not {ISSUER!r}")
        return claims
    raise TokenRefused(system, "the system-user JWT's signature does not match SuperOffice's published keys")


class SystemUserTicket(TokenSource):
    """A ticket for the system user, by the exchange above. `client` talks to the login host."""

    def __init__(
        self,
        system: str,
        client: ApiClient,
        *,
        application_token: SecretStr,
        private_key: SecretStr,
        system_user_token: SecretStr,
        context_id: str,
        clock: Clock | None = None,
    ) -> None:
        self.system = system
        self.client = client
        self.application_token = application_token
        self.private_key = private_key
        self.system_user_token = system_user_token
        self.context_id = context_id
        self.clock = clock or _wall_clock
        self._key: rsa.RSAPrivateKey | None = None

    def identity(self) -> str:
        return "\0".join(
            [self.client.base_url, self.context_id, self.system_user_token.get_secret_value(), "system_user"]
        )

    def key(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            try:
                self._key = load_private_key(self.private_key.get_secret_value())
            except KEY_ERRORS as exc:  # the config's check read it; a key file may have changed since
                raise TokenRefused(self.system, f"private_key {unusable_key(exc)}") from None
        return self._key

    def fetch(self, previous: Token | None) -> Token:
        signed = sign_system_token(self.system_user_token.get_secret_value(), self.key(), self.clock())
        body = {
            "SignedSystemToken": signed,
            "ApplicationToken": self.application_token.get_secret_value(),
            "ContextIdentifier": self.context_id,
            "ReturnTokenType": "JWT",
        }
        fix = (
            "check app_token (the application's client secret), private_key (the certificate made for this "
            "application), system_user_token (from the tenant administrator's consent) and context_id"
        )
        try:
            reply = self.client.request("POST", AUTHENTICATE_PATH, json_body=body, mutating=False).body
        except (AuthError, ApiError) as exc:
            raise TokenRefused(self.system, f"the system-user exchange was refused ({exc.message}): {fix}") from None
        if not isinstance(reply, dict) or not reply.get("IsSuccessful") or not isinstance(reply.get("Token"), str):
            message = reply.get("ErrorMessage") if isinstance(reply, dict) else None
            raise TokenRefused(self.system, f"the system-user exchange failed ({message or 'no reason given'}): {fix}")
        jwks = self.client.request("GET", JWKS_PATH, mutating=False).body
        claims = verified_claims(self.system, reply["Token"], jwks)
        ticket = claims.get(TICKET_CLAIM)
        if not isinstance(ticket, str) or not ticket:
            raise TokenRefused(self.system, "the system-user JWT carries no ticket claim")
        register_secret(ticket)
        return Token(ticket, None)


def _sign(request: Any, authorization: str, app_token: SecretStr) -> None:
    request.headers["Authorization"] = authorization
    request.headers["SO-AppToken"] = app_token.get_secret_value()


def sign_in(
    system: str, settings: SuperOfficeSettings, token_client: Callable[[], ApiClient]
) -> tuple[Authenticator, ApiClient | None]:
    """The authenticator of the configured flow, and the client it gets tokens with (None for a
    fixed token or ticket). `token_client()` makes a client for the login host."""
    app_token = {"SO-AppToken": settings.application_secret}
    if settings.auth == "ticket":
        assert settings.access_token is not None
        fixed = SecretStr(f"{settings.auth_scheme} {settings.access_token.get_secret_value()}")
        return HeaderAuth({"Authorization": fixed, **app_token}), None
    client = token_client()
    if settings.auth == "oidc":
        assert settings.client_id and settings.client_secret and settings.refresh_token
        source: TokenSource = RefreshTokenGrant(
            system,
            client,
            OIDC_TOKEN_PATH,
            {"client_id": settings.client_id, "client_secret": settings.client_secret},
            settings.refresh_token,
            fix="the refresh token was refused (consent revoked, or the application's lifetime ended): "
            "sign in again to get a new refresh token (docs/setup/superoffice.md)",
            what="token refresh",
        )
        bearer = ExpiringTokenAuth(
            system,
            source,
            lambda request, token: _sign(request, f"Bearer {token.value}", settings.application_secret),
            margin=settings.token_renew_margin,
        )
        return bearer, client
    assert settings.private_key and settings.system_user_token
    source = SystemUserTicket(
        system,
        client,
        application_token=settings.application_secret,
        private_key=settings.private_key,
        system_user_token=settings.system_user_token,
        context_id=settings.context_id or settings.tenant,
    )
    ticket = ExpiringTokenAuth(
        system,
        source,
        lambda request, token: _sign(request, f"SOTicket {token.value}", settings.application_secret),
        margin=settings.token_renew_margin,
        sliding=TICKET_LIFETIME,
    )
    return ticket, client
