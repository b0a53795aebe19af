"""How a system's requests carry its credentials: one class per scheme.

An authenticator is a `requests` auth object, so every request the `ApiClient` sends, first try or
retry, is signed the same way and no connector sets credentials by hand:

- `HeaderAuth`: fixed headers (Shopify's legacy `X-Shopify-Access-Token`, AFAS `AfasToken`, efficy,
  Silvasoft, a SuperOffice ticket); `BasicAuth` (WooCommerce, Lightspeed); `QueryKeyAuth` (keys as
  URL parameters, for WooCommerce hosts that strip the Authorization header).
- `ExpiringTokenAuth`: a token from the vendor's token endpoint, fetched when first needed, renewed
  `margin` seconds before it expires (on crmsync's clock, so a sped-up daemon renews on simulated
  time) and once when the vendor refuses it (a token expired early, or revoked); the request is
  then sent again. How a token is got is a `TokenSource`: OAuth2 client credentials (Shopify
  Dev Dashboard apps), OAuth2 refresh token (Shopify expiring offline tokens, SuperOffice online)
  and SuperOffice's system-user ticket exchange (`connectors/superoffice/auth.py`).

Tokens live in memory only, in a `TokenVault`: never in the state database, a log or a crash
file. The vault is per process; the daemon hands its tokens to each cycle process and takes back
what the cycle renewed (`sync/scheduler.py`), so a daemon asks for a token only when one expires.
Every token received is registered as a secret, so no log line or error can print it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import requests
import structlog
from pydantic import SecretStr
from requests.auth import AuthBase, HTTPBasicAuth

from connectors.clock import now as crmsync_now
from connectors.errors import ApiError, AuthError, TokenRefused
from connectors.redaction import register_secret
from connectors.telemetry import TELEMETRY

if TYPE_CHECKING:
    from connectors.http import ApiClient, ApiResponse, Verdict

log = structlog.get_logger("crmsync.auth")

Clock = Callable[[], datetime]


def _plain(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _register(values: Iterable[str | SecretStr]) -> None:
    """Secret values (and what is derived from them, like AFAS's base64 header) are masked
    wherever crmsync prints anything."""
    for value in values:
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())


class Authenticator(AuthBase):
    """Signs every request of one system; expiring ones can get new credentials after a refusal."""

    def renew_after_refusal(self) -> bool:
        """The vendor refused the credentials this thread last sent: drop them so the next request
        gets new ones. True when that is worth one more try (an expiring token), else False."""
        return False


class HeaderAuth(Authenticator):
    """Fixed headers: an API key, a fixed token or ticket."""

    def __init__(self, headers: Mapping[str, str | SecretStr]) -> None:
        self.headers = dict(headers)
        _register(self.headers.values())

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        for name, value in self.headers.items():
            request.headers[name] = _plain(value)
        return request


class BasicAuth(Authenticator):
    def __init__(self, username: str | SecretStr, password: str | SecretStr) -> None:
        self.basic = HTTPBasicAuth(_plain(username), _plain(password))

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        signed: requests.PreparedRequest = self.basic(request)
        return signed


class QueryKeyAuth(Authenticator):
    """Credentials as URL parameters (`APIKeyAuth(location="query")` in dlt's words). The redaction
    masks them in every URL crmsync could print."""

    def __init__(self, params: Mapping[str, str | SecretStr]) -> None:
        self.params = dict(params)
        _register(self.params.values())

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        extra = urlencode({name: _plain(value) for name, value in self.params.items()})
        url = request.url or ""
        request.url = url + ("&" if "?" in url else "?") + extra
        return request


class NoAuth(Authenticator):
    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


# ----- expiring tokens ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    """An access token and what came with it. `refresh_token` is the newest one the vendor gave
    (vendors that rotate refresh tokens hand out a new one with every access token)."""

    value: str
    expires_at: datetime | None
    refresh_token: str | None = None

    def fresh(self, at: datetime, margin: float) -> bool:
        return self.expires_at is None or self.expires_at - timedelta(seconds=margin) > at

    def __repr__(self) -> str:  # never the value, in a traceback or a debugger
        return f"Token(expires_at={self.expires_at!r})"


class TokenVault:
    """Tokens by credential, in memory. One per process (`TOKENS`); the daemon passes a snapshot
    to each cycle process and adopts what comes back (the later expiry wins)."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Token | None:
        with self._lock:
            return self._tokens.get(key)

    def put(self, key: str, token: Token) -> None:
        with self._lock:
            self._tokens[key] = token

    def expire(self, key: str, value: str) -> None:
        """Mark the token of `key` expired if it is still `value` (another thread may have renewed
        it). It stays in the vault: a rotated refresh token rides on it into the renewal."""
        with self._lock:
            token = self._tokens.get(key)
            if token is not None and token.value == value:
                self._tokens[key] = replace(token, expires_at=EXPIRED)

    def snapshot(self) -> dict[str, Token]:
        with self._lock:
            return dict(self._tokens)

    def adopt(self, tokens: Mapping[str, Token]) -> None:
        for token in tokens.values():
            register_secret(token.value)
            register_secret(token.refresh_token)
        with self._lock:
            for key, token in tokens.items():
                have = self._tokens.get(key)
                if have is None or _later(token.expires_at, have.expires_at):
                    self._tokens[key] = token

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


def _later(a: datetime | None, b: datetime | None) -> bool:
    if a is None:
        return b is not None
    return b is not None and a > b


TOKENS = TokenVault()
EXPIRED = datetime(1970, 1, 1, tzinfo=UTC)  # what a refused token is marked with


class TokenSource(ABC):
    """Where an expiring token comes from. `fetch` gets a new one; `previous` is the token being
    replaced (a rotating refresh token rides on it). Raises AuthError when the vendor refuses."""

    # What identifies the credentials (hashed into the vault key), so that two configurations in
    # one process never share a token.
    @abstractmethod
    def identity(self) -> str: ...

    @abstractmethod
    def fetch(self, previous: Token | None) -> Token: ...


class ExpiringTokenAuth(Authenticator):
    def __init__(
        self,
        system: str,
        source: TokenSource,
        apply: Callable[[requests.PreparedRequest, Token], None],
        *,
        margin: float = 300.0,
        sliding: float | None = None,
        initial: Token | None = None,
        vault: TokenVault | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`sliding`: a token that lives on this many seconds after each use (a SuperOffice ticket);
        `initial`: a token the configuration already holds, used until it is refused or expires."""
        self.system = system
        self.source = source
        self.apply = apply
        self.margin = margin
        self.sliding = sliding
        self.vault = vault if vault is not None else TOKENS
        self.clock = clock or crmsync_now
        self.key = hashlib.sha256(f"{system}\0{source.identity()}".encode()).hexdigest()
        self._fetching = threading.Lock()
        self._sent = threading.local()
        if initial is not None and self.vault.get(self.key) is None:
            register_secret(initial.value)
            self.vault.put(self.key, initial)

    def token(self) -> Token:
        """The current token; a new one when there is none or it expires within the margin."""
        token = self.vault.get(self.key)
        if token is not None and token.fresh(self.clock(), self.margin):
            return token
        with self._fetching:  # one renewal at a time; the others use its result
            token = self.vault.get(self.key)
            if token is not None and token.fresh(self.clock(), self.margin):
                return token
            renewed = self.source.fetch(token)
            register_secret(renewed.value)
            register_secret(renewed.refresh_token)
            self.vault.put(self.key, renewed)
            TELEMETRY.token_fetched(self.system)  # crmsync_token_renewals_total (sync/metrics.py)
            # (No "token <word>" in an event: the redaction would take it for a credential.)
            log.info(
                "credentials renewed" if token is not None else "credentials obtained",
                system=self.system,
                expires_at=renewed.expires_at.isoformat(timespec="seconds") if renewed.expires_at else None,
            )
            return renewed

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.token()
        self._sent.value = token.value
        self.apply(request, token)
        if self.sliding is not None:
            self.vault.put(self.key, replace(token, expires_at=self.clock() + timedelta(seconds=self.sliding)))
        return request

    def renew_after_refusal(self) -> bool:
        sent = getattr(self._sent, "value", None)
        if sent is None:
            return False
        log.info("credentials refused; renewing them once", system=self.system)
        self.vault.expire(self.key, sent)
        self._sent.value = None
        return True


def token_reply(system: str, body: Any, clock: Clock, *, previous: Token | None = None, what: str = "token") -> Token:
    """A Token from an OAuth2 token reply (`access_token`, `expires_in`, maybe `refresh_token`).
    A refresh token the reply does not rotate stays the previous one."""
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise AuthError(system, f"the {what} endpoint answered without an access_token")
    register_secret(body["access_token"])
    refresh = body.get("refresh_token")
    register_secret(refresh if isinstance(refresh, str) else None)
    lifetime = body.get("expires_in")
    expires_at = (
        clock() + timedelta(seconds=float(lifetime))
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0
        else None
    )
    return Token(
        body["access_token"],
        expires_at,
        refresh if isinstance(refresh, str) and refresh else (previous.refresh_token if previous else None),
    )


# ----- OAuth2 grants ------------------------------------------------------------------------------
def token_classify(response: ApiResponse) -> Verdict:
    """What a token endpoint's reply means: RFC 6749 §5.2 errors are 400 or 401 with `error` and
    `error_description`, and both mean the credentials (not the request) are wrong: "auth"."""
    from connectors.http import Verdict, default_classify

    if 200 <= response.status < 300 or response.status == 429 or response.status >= 500:
        return default_classify(response)
    body = response.body
    message = response.text.strip()[:200]
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "error_description", "ErrorMessage", "errors") if body.get(k)]
        message = ": ".join(parts) or message
    return Verdict("auth", message or f"HTTP {response.status}")


class OAuth2Grant(TokenSource):
    """A token from an OAuth2 token endpoint (RFC 6749 §4.4 client credentials, §6 refresh).

    `client` talks to the endpoint's origin (retries, pacing, TLS rules of the ApiClient, no
    credentials of its own); `fix` is what the merchant should do when the endpoint refuses."""

    def __init__(
        self,
        system: str,
        client: ApiClient,
        path: str,
        form: Mapping[str, str | SecretStr],
        *,
        fix: str,
        clock: Clock | None = None,
        what: str = "token",
    ) -> None:
        self.system = system
        self.client = client
        self.path = path
        self.form = dict(form)
        self.fix = fix
        self.clock = clock or crmsync_now
        self.what = what

    def identity(self) -> str:
        return "\0".join([self.client.base_url, self.path, *(f"{k}={_plain(v)}" for k, v in sorted(self.form.items()))])

    def fields(self, previous: Token | None) -> dict[str, str]:
        return {name: _plain(value) for name, value in self.form.items()}

    def fetch(self, previous: Token | None) -> Token:
        body = urlencode(self.fields(previous)).encode()
        try:
            response = self.client.request(
                "POST",
                self.path,
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                mutating=False,
            )
        except (AuthError, ApiError) as exc:
            raise TokenRefused(
                self.system, f"the {self.what} request was refused ({exc.message}): {self.fix}"
            ) from None
        return token_reply(self.system, response.body, self.clock, previous=previous, what=self.what)


class RefreshTokenGrant(OAuth2Grant):
    """`grant_type=refresh_token`: the newest refresh token the vendor handed out, else the
    configured one. A vendor that rotates refresh tokens gets the rotated one on the next renewal."""

    def __init__(
        self,
        system: str,
        client: ApiClient,
        path: str,
        form: Mapping[str, str | SecretStr],
        refresh_token: SecretStr,
        *,
        store: str | None = None,
        **kwargs: Any,
    ) -> None:
        """`store`: a file that keeps the newest refresh token across restarts, for a vendor that
        rotates them (Shopify retires the old one once the new one is used): read before the
        configured token while that is the one it grew from (a new token put in the config wins),
        rewritten (mode 0600, atomically) after every refresh."""
        super().__init__(system, client, path, {"grant_type": "refresh_token", **form}, **kwargs)
        self.refresh_token = refresh_token
        self.store = Path(store) if store else None

    def identity(self) -> str:
        return super().identity() + "\0" + self.refresh_token.get_secret_value()

    def _origin(self) -> str:
        """Which configured refresh token the stored one grew from (a hash: the file holds no copy)."""
        return hashlib.sha256(self.refresh_token.get_secret_value().encode()).hexdigest()

    def _stored(self) -> str | None:
        if self.store is None:
            return None
        try:
            data = json.loads(self.store.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise TokenRefused(self.system, f"cannot read refresh_token_file {self.store}: {exc}") from None
        value = data.get("refresh_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or data.get("grew_from") != self._origin():
            return None  # another configured token since: that one is the newest word
        register_secret(value)
        return value or None

    def fields(self, previous: Token | None) -> dict[str, str]:
        current = previous.refresh_token if previous and previous.refresh_token else None
        token = current or self._stored() or self.refresh_token.get_secret_value()
        return {**super().fields(previous), "refresh_token": token}

    def fetch(self, previous: Token | None) -> Token:
        token = super().fetch(previous)
        if self.store is not None and token.refresh_token:
            _write_private(self.store, json.dumps({"refresh_token": token.refresh_token, "grew_from": self._origin()}))
        return token


def _write_private(path: Path, text: str) -> None:
    """Write a secret file readable by its owner only, replacing the old one in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
