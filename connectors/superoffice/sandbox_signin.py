"""Signing in to the SuperOffice emulator, as documented (../shared/api-notes/superoffice.md, "Auth").

The OIDC refresh grant at `/login/common/oauth/tokens` (an access token of an hour, `token_ttl_s`;
the refresh token is not rotated), and the system-user exchange at
`/Login/api/PartnerSystemUser/Authenticate`: the system user token signed with the application's
private key (checked against its public key, within ten minutes of the wall clock) buys a JWT
signed with the emulator's own key (served at `/login/.well-known/jwks`) whose ticket claim lives
six hours after each use.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.wrappers import Request, Response

from connectors.sandbox import SandboxApp, json_response

OIDC_TOKEN_TTL = 3600.0
TICKET_TTL = 6 * 3600.0
SIGNATURE_WINDOW = 600.0  # (assumed) how far the signed token's minute may be from the emulator's clock
ISSUER = "SuperOffice AS"
TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"

_KEYS: dict[str, rsa.RSAPrivateKey] = {}
_KEYS_LOCK = threading.Lock()


def _key(name: str) -> rsa.RSAPrivateKey:
    """One RSA key per name and process (they take a while to make), made once even when several
    emulators start at the same moment on different threads: a second key would not match the
    private key an earlier config was written with."""
    with _KEYS_LOCK:
        if name not in _KEYS:
            _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _KEYS[name]


def _app_key() -> rsa.RSAPrivateKey:
    """The application's key pair: the merchant keeps the private half (in the written config)."""
    return _key("application")


def _signing_key() -> rsa.RSAPrivateKey:
    """The emulator's own key, that signs the system-user JWTs (published at /login/.well-known/jwks)."""
    return _key("jwt")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def app_private_pem() -> str:
    """The application's private key as the merchant keeps it (PEM, in the written config)."""
    private_pem = _app_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private_pem.decode()


class SignInRoutes(SandboxApp):
    """The token routes of the emulator (the tenant's credentials are set by the sandbox)."""

    tenant: str
    app_token: str
    client_id: str
    refresh_token: str
    system_user_token: str
    token_ttl_s: float | None

    def _ttl(self, default: float) -> float:
        return self.token_ttl_s if self.token_ttl_s is not None else default

    # ----- signing in ------------------------------------------------------------------------------
    def oidc_tokens(self, request: Request) -> Response:
        """The refresh-token grant (form-encoded, as SuperOffice's samples send it)."""
        form = request.form
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.app_token:
            return json_response({"error": "invalid_client", "error_description": "Unknown client"}, 400)
        if form.get("grant_type") != "refresh_token":
            return json_response({"error": "unsupported_grant_type"}, 400)
        if form.get("refresh_token") != self.refresh_token:
            return json_response({"error": "invalid_grant", "error_description": "Invalid refresh token"}, 400)
        ttl = self._ttl(OIDC_TOKEN_TTL)
        with self.lock:
            token = self.issue_token(f"8A:{self.tenant}.", ttl)
        return json_response({"token_type": "Bearer", "access_token": token, "expires_in": int(ttl), "id_token": ""})

    def system_user_authenticate(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._system_user_failure("The request body is not a JSON object")
        if body.get("ApplicationToken") != self.app_token:
            return self._system_user_failure("Invalid application token")
        if body.get("ContextIdentifier") != self.tenant:
            return self._system_user_failure(f"Unknown context identifier {body.get('ContextIdentifier')!r}")
        problem = self._signature_problem(str(body.get("SignedSystemToken") or ""))
        if problem:
            return self._system_user_failure(problem)
        with self.lock:
            ticket = self.issue_token("7T:", self._ttl(TICKET_TTL))
        return json_response({"IsSuccessful": True, "Token": self._jwt(ticket), "ErrorMessage": None})

    def _system_user_failure(self, message: str) -> Response:
        return json_response({"IsSuccessful": False, "Token": None, "ErrorMessage": message})

    def _signature_problem(self, signed: str) -> str | None:
        parts = signed.rsplit(".", 2)
        if len(parts) != 3:
            return "SignedSystemToken is not <token>.<yyyyMMddHHmm>.<signature>"
        token, minute, signature = parts
        if token != self.system_user_token:
            return "Unknown system user token"
        try:
            stamp = datetime.strptime(minute, "%Y%m%d%H%M").replace(tzinfo=UTC)
            _app_key().public_key().verify(
                base64.b64decode(signature), f"{token}.{minute}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, InvalidSignature):
            return "InvalidSignature"
        # Against the wall clock, as SuperOffice's own: the emulator's "now" may be a test's.
        if abs((stamp - datetime.now(UTC)).total_seconds()) > SIGNATURE_WINDOW:
            return "InvalidTimestamp"
        return None

    def _jwt(self, ticket: str) -> str:
        moment = int(self.now().timestamp())
        header = {"alg": "RS256", "typ": "JWT", "kid": "sandbox"}
        claims = {
            "iss": ISSUER,
            "aud": "spn:sandbox",
            "iat": moment,
            "exp": moment + 300,
            TICKET_CLAIM: ticket,
            "http://schemes.superoffice.net/identity/ctx": self.tenant,
        }
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = _signing_key().sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64url(signature)}"

    def jwks(self, request: Request) -> Response:
        numbers = _signing_key().public_key().public_numbers()
        key = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": "sandbox",
            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }
        return json_response({"keys": [key]})
