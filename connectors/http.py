"""ApiClient: one connection pool per system, with pacing, retries and typed errors.

Requests are prepared by `requests` (parameters, JSON bodies and the authenticators' signing, as
every connector was written against) and sent through urllib3's pool directly: a `requests.Session`
cost about a third more CPU per reply (its adapter, response object and chunked reading of the
body), which for a page of a hundred records was ~5 us a record (bench/extract.py). Without a
session there are no cookies (no vendor API crmsync reads uses them) and no proxy settings from the
environment (a merchant's token is never routed through somebody else's box). A redirect is
followed only within the configured origin and only for a read (see `_send`).

The split between "retry" and "give up" is made here, once, by asking the connector's
`classify(response)` hook what a reply means. Vendors disagree on that (AFAS reports validation
errors as 500, Silvasoft its rate limit as 401, efficy errors inside a 200, Shopify throttling in the
GraphQL body), so the hook decides and this module acts on the verdict.
"""

from __future__ import annotations

import codecs
import email.utils
import ipaddress
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from urllib.parse import urljoin, urlsplit

import requests
import structlog
import urllib3
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from connectors.auth import Authenticator, NoAuth
from connectors.errors import (
    ApiError,
    AuthError,
    ConnectorError,
    PermissionDenied,
    RateLimited,
    RejectedRecord,
    RetriesExhausted,
    TokenRefused,
    TransientError,
)
from connectors.ratelimit import SlidingWindowLimiter, Slot, Window
from connectors.redaction import redact_text
from connectors.telemetry import TELEMETRY
from mapping import jsontext

log = structlog.get_logger("crmsync.http")

# A rate-limit wait longer than this is logged at info (with when it ends), shorter ones at debug.
LOUD_WAIT_SECONDS = 5.0

VerdictKind = Literal["ok", "retry", "throttled", "auth", "denied", "rejected", "fatal"]


@dataclass(frozen=True)
class Verdict:
    """What a reply means. `retry_after` is the vendor's hint in seconds, when it gave one."""

    kind: VerdictKind
    message: str = ""
    retry_after: float | None = None

    @classmethod
    def ok(cls) -> Verdict:
        return cls("ok")


def _is_utf8(encoding: str) -> bool:
    """Whether a reply's text was decoded as UTF-8 (then its bytes are that text's UTF-8)."""
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


_CHARSET = re.compile(r"charset\s*=\s*[\"']?([^\s;\"']+)", re.IGNORECASE)


def reply_text(content: bytes, content_type: str) -> tuple[str, str]:
    """A reply's text and the encoding it was read with: the charset its Content-Type names, else
    UTF-8, which JSON is (RFC 8259) and so are the JSONL files of bulk results. Bytes that do not
    decode are replaced, as `requests` reads text; an unknown charset is read as UTF-8."""
    match = _CHARSET.search(content_type)
    encoding = match.group(1) if match else "utf-8"
    try:
        return str(content, encoding, errors="replace"), encoding
    except LookupError:
        return str(content, "utf-8", errors="replace"), "utf-8"


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: Mapping[str, str]
    body: Any
    text: str
    method: str
    path: str
    elapsed: float

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class Cancelled(ConnectorError):
    """A stop was requested (SIGTERM) while waiting to send or to retry."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    max_retry_after: float = 120.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def vendor_message(body: Any, text: str) -> str:
    """The most specific human message a typical JSON error body carries."""
    if isinstance(body, dict):
        for key in ("message", "externalMessage", "errorMessage", "error_description", "Message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        errors = body.get("errors") or body.get("error")
        if isinstance(errors, str):
            return errors
        if isinstance(errors, list) and errors:
            first = errors[0]
            if isinstance(first, dict) and isinstance(first.get("message"), str):
                return str(first["message"])
            return str(first)
        if isinstance(errors, dict) and isinstance(errors.get("message"), str):
            return str(errors["message"])
    # Not JSON: the text as received, without what no store holds (the message is kept with the
    # record's pending write), as a JSON reply is read.
    return str(jsontext.storable(text.strip()[:300]))


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def connection_reason(exc: Exception) -> str:
    """The useful part of a connection error ("[Errno 111] Connection refused"), without the URL
    and pool details the library wraps around it."""
    text = str(exc)
    if match := _ERRNO.search(text):
        return match.group(0).strip()
    if "IncompleteRead" in text or "Connection broken" in text:
        return "connection dropped mid-reply"
    return redact_text(f"{type(exc).__name__}: {text}")[:200]


def default_classify(response: ApiResponse) -> Verdict:
    """Retry 408, 429 and 5xx; 401/403 are credentials; any other 4xx is final."""
    status = response.status
    if 200 <= status < 300:
        return Verdict.ok()
    message = vendor_message(response.body, response.text) or f"HTTP {status}"
    retry_after = parse_retry_after(response.header("Retry-After"))
    if status == 429:
        return Verdict("throttled", message, retry_after)
    if status == 408 or status >= 500:
        return Verdict("retry", message, retry_after)
    if status in (401, 403):
        return Verdict("auth", message)
    if status in (400, 409, 413, 422):
        return Verdict("rejected", message)
    return Verdict("fatal", message)


@dataclass(frozen=True)
class Rule:
    """One line of a vendor's reading of replies: when a reply matches every condition given, it
    means `kind`. `says` replaces the vendor's message (AFAS answers some refusals with no useful
    text); `retry_after` is the wait a vendor documents but does not send. Rules only read the
    reply: whatever a vendor's pacing learns from a reply is a pacer's `observe`."""

    kind: VerdictKind
    status: int | tuple[int, int] | None = None
    method: str | None = None
    path: re.Pattern[str] | None = None
    message: re.Pattern[str] | None = None
    code: re.Pattern[str] | None = None
    says: str | None = None
    retry_after: float | None = None

    def matches(self, response: ApiResponse, message: str, code: str) -> bool:
        status = self.status
        if isinstance(status, int) and response.status != status:
            return False
        if isinstance(status, tuple) and not status[0] <= response.status <= status[1]:
            return False
        if self.method is not None and response.method != self.method:
            return False
        if self.path is not None and not self.path.search(response.path):
            return False
        if self.message is not None and not self.message.search(message):
            return False
        return self.code is None or bool(self.code.search(code))


def body_code(response: ApiResponse) -> str:
    """The machine-readable error code of a typical JSON error body (`code`, `error.code`)."""
    body = response.body
    if not isinstance(body, dict):
        return ""
    code = body.get("code")
    if code is None and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
    return "" if code is None else str(code)


def classify_by(
    rules: Sequence[Rule],
    response: ApiResponse,
    *,
    message: str | None = None,
    code: str | None = None,
    fallback: Callable[[ApiResponse], Verdict] = default_classify,
) -> Verdict:
    """The verdict of the first matching rule, else the fallback's (with the vendor's message)."""
    said = message if message is not None else vendor_message(response.body, response.text) or f"HTTP {response.status}"
    found = code if code is not None else body_code(response)
    for rule in rules:
        if rule.matches(response, said, found):
            if rule.kind == "ok":
                return Verdict.ok()
            wait = rule.retry_after
            if wait is None and rule.kind in ("retry", "throttled"):
                wait = parse_retry_after(response.header("Retry-After"))
            return Verdict(rule.kind, rule.says or said, wait)
    verdict = fallback(response)
    if verdict.kind == "ok" or message is None:
        return verdict
    return Verdict(verdict.kind, message, verdict.retry_after)


class Pacer(Protocol):
    """A vendor's pacing beside the configured windows: `before` says how long to wait before
    sending a request of `cost` (raising a ConnectorError when the wait is pointless, a daily
    budget used up), `observe` learns from every reply (remaining-budget headers, a GraphQL
    cost report) before the reply is classified."""

    def before(self, method: str, path: str, cost: float) -> float: ...

    def observe(self, response: ApiResponse) -> None: ...


def check_base_url(url: str) -> None:
    """TLS for everything but loopback: a token sent in clear over a network is a leaked token.
    A URL the HTTP client could not send to is refused here, when the config is read, not by the
    first request; no message repeats the URL, which may carry a password."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user or password (user:password@host); credentials have keys of their own")
    try:
        port = parts.port  # urllib checks the port when it is asked for
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("has a port that is not a number from 1 to 65535")
    try:
        PreparedRequest().prepare_url(url, None)  # the same parse every request gets
    except requests.RequestException:
        raise ValueError("is not a URL an HTTP client can send to (a space in the host?)") from None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("plain http is only allowed for loopback addresses; use https")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class ClientStats:
    requests: int = 0
    mutating: int = 0
    retries: int = 0
    throttled: int = 0
    paced_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: float) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class ApiClient:
    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        classify: Callable[[ApiResponse], Verdict] = default_classify,
        auth: Authenticator | None = None,
        headers: Mapping[str, str] | None = None,
        windows: Sequence[Window] = (),
        pace_margin: float = 0.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        stop_event: threading.Event | None = None,
        pacers: Sequence[Pacer] = (),
    ) -> None:
        check_base_url(base_url)
        self.pacers = tuple(pacers)
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.classify = classify
        self.retry = retry or RetryPolicy()
        self.stop_event = stop_event or threading.Event()
        self.limiter = SlidingWindowLimiter(windows, margin=pace_margin, sleep=self._window_wait) if windows else None
        self.stats = ClientStats()
        # A pool never reads proxy variables: a merchant's token is not routed through another box.
        self.pool = urllib3.PoolManager(num_pools=4, maxsize=8)
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.auth = auth or NoAuth()
        self.headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(
            {
                "User-Agent": "crmsync/0.1 (+https://github.com/crmsync)",
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
            }
        )
        if headers:
            self.headers.update(headers)

    def sleep(self, seconds: float) -> None:
        """Sleep that a stop request cuts short, so a daemon can exit within its deadline."""
        if seconds > 0 and self.stop_event.wait(seconds):
            raise Cancelled(self.system, "stop requested while waiting")

    def wait_for_rate_limit(self, seconds: float, why: str) -> None:
        """`sleep`, for a rate limit: said before it starts (at info when it is long, with when it
        ends, so a quiet minute is never a mystery) and counted, as waited, for the metrics."""
        if seconds <= 0:
            return
        until = (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0).isoformat()
        say = log.info if seconds > LOUD_WAIT_SECONDS else log.debug
        say("waiting for rate limit", system=self.system, seconds=round(seconds, 1), until=until, why=why)
        started = time.monotonic()
        try:
            self.sleep(seconds)
        finally:
            TELEMETRY.rate_limit_wait(self.system, time.monotonic() - started)

    def _window_wait(self, seconds: float) -> None:
        self.wait_for_rate_limit(seconds, "configured rate_limit")

    def close(self) -> None:
        self.pool.clear()

    def prepare(
        self,
        method: str,
        url: str,
        *,
        params: Any = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str | None] | None = None,
    ) -> requests.PreparedRequest:
        """A request as it goes out: the client's headers with `headers` over them (None drops
        one), parameters and body encoded, signed by the authenticator."""
        merged = CaseInsensitiveDict(self.headers)
        for name, value in (headers or {}).items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method.upper(), url=url, headers=merged, params=params, json=json_body, data=data, auth=self.auth
        )
        return prepared

    def _send(self, prepared: requests.PreparedRequest) -> urllib3.BaseHTTPResponse:
        """Send a prepared request and read its reply whole. A redirect is followed (up to five)
        only for a GET and only to the same origin (scheme, host and port): the credentials a
        request carries (an API key in a header or the URL) go nowhere else, and a write is never
        sent twice. Any other redirect comes back as the reply it is, and is an error."""
        method, url = prepared.method or "GET", prepared.url or ""
        origin = urlsplit(url)[:2]
        headers = dict(prepared.headers)
        for _ in range(6):
            raw = self.pool.urlopen(
                method,
                url,
                body=prepared.body,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=self.timeout,
                preload_content=True,
            )
            location = raw.headers.get("Location")
            if not (raw.status in (301, 302, 303, 307, 308) and location and method == "GET"):
                return raw
            target = urljoin(url, location)
            if urlsplit(target)[:2] != origin:
                return raw
            url = target
        return raw

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        mutating: bool | None = None,
        expect_json: bool = True,
        idempotent: bool = True,
        cost: float = 1.0,
    ) -> ApiResponse:
        """Send one logical request, retrying what is worth retrying; raise a typed error otherwise.

        `idempotent=False` (a POST that creates a record) is retried only when the vendor refused it
        outright (rate limited); after a timeout, a dropped connection or a 5xx the request may have
        been carried out, so the TransientError goes to the caller, who finds out before sending again.
        `cost` is what the request costs a vendor pacer (Shopify's calculated query cost)."""
        is_mutating = method.upper() != "GET" if mutating is None else mutating
        retryable: tuple[type[ConnectorError], ...] = (TransientError, RateLimited) if idempotent else (RateLimited,)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hint = getattr(exc, "retry_after", None)
            if hint is not None:
                return min(float(hint), self.retry.max_retry_after)
            # Full jitter: retries of many clients do not arrive in step.
            backoff = wait_random_exponential(multiplier=self.retry.backoff_initial, max=self.retry.backoff_max)
            return float(backoff(state))

        throttled = {"now": False}  # whether the coming retry wait is a rate limit's

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            throttled["now"] = isinstance(exc, RateLimited)
            self.stats.add(retries=1)
            log.warning(
                "retrying",
                system=self.system,
                method=method,
                path=path,
                attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 3),
                reason=str(exc.message if isinstance(exc, ConnectorError) else exc),
            )

        def pause(seconds: float) -> None:
            if throttled["now"]:
                self.wait_for_rate_limit(seconds, "throttled by the vendor")
            else:
                self.sleep(seconds)

        retrying = Retrying(
            retry=retry_if_exception_type(retryable),
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait,
            sleep=pause,
            before_sleep=before_sleep,
            reraise=True,
        )
        arguments = (method, path, params, json_body, data, headers, is_mutating, expect_json, cost)
        try:
            try:
                return retrying(self._attempt, *arguments)
            except AuthError as exc:
                # An expiring token refused (expired early, revoked, or our clock behind the
                # vendor's): once with a new token. A refusal of that one is final, and so is a
                # token endpoint that refused the credentials themselves.
                if isinstance(exc, TokenRefused | PermissionDenied) or not self.auth.renew_after_refusal():
                    raise
                return retrying(self._attempt, *arguments)
        except retryable as exc:
            raise RetriesExhausted(self.system, f"gave up after {self.retry.attempts} attempts: {exc.message}") from exc

    def _attempt(
        self,
        method: str,
        path: str,
        params: Any,
        json_body: Any,
        data: bytes | None,
        headers: Mapping[str, str] | None,
        mutating: bool,
        expect_json: bool,
        cost: float,
    ) -> ApiResponse:
        if self.stop_event.is_set():
            raise Cancelled(self.system, "stop requested")
        for pacer in self.pacers:
            waited = pacer.before(method, path, cost)
            if waited > 0:
                self.stats.add(paced_seconds=waited)
                self.wait_for_rate_limit(waited, "vendor pacing")
        slot: Slot | None = None
        if self.limiter is not None:
            waited, slot = self.limiter.reserve()
            if waited:
                self.stats.add(paced_seconds=waited)
        self.stats.add(requests=1, mutating=1 if mutating else 0)
        started = time.monotonic()
        try:
            prepared = self.prepare(
                method, self.base_url + path, params=params, json_body=json_body, data=data, headers=headers
            )
            raw = self._send(prepared)
        except urllib3.exceptions.HTTPError as exc:  # refused, reset, cut short, timed out, a broken chunk or TLS
            # A refused connection is a subclass of the connect timeout in urllib3 2.x.
            timed_out = isinstance(exc, urllib3.exceptions.TimeoutError)
            if timed_out and not isinstance(exc, urllib3.exceptions.NewConnectionError):
                raise TransientError(self.system, f"{method} {path} timed out ({type(exc).__name__})") from None
            raise TransientError(
                self.system, f"{method} {path}: connection failed ({connection_reason(exc)})"
            ) from None
        finally:
            if slot is not None and self.limiter is not None:
                self.limiter.settle(slot)  # the vendor has counted it by now, however late it left
        elapsed = time.monotonic() - started
        content_type = raw.headers.get("Content-Type", "")
        content = raw.data
        text, encoding = reply_text(content, content_type)
        body: Any = None
        parse_failed = False
        if text.strip() and ("json" in content_type or text.lstrip()[:1] in ("{", "[")):
            try:
                body = jsontext.loads_reply(content, text) if _is_utf8(encoding) else jsontext.loads(text)
            except ValueError:
                parse_failed = True
        response = ApiResponse(raw.status, raw.headers, body, text, method, path, elapsed)
        log.debug("http", system=self.system, method=method, path=path, status=raw.status, ms=round(elapsed * 1000, 1))
        if 200 <= raw.status < 300 and expect_json and (parse_failed or (body is None and text.strip())):
            raise TransientError(
                self.system, f"{method} {path}: unreadable JSON in reply ({len(text)} bytes)", status=raw.status
            )
        for pacer in self.pacers:
            pacer.observe(response)
        verdict = self.classify(response)
        return self._act(verdict, response)

    def _act(self, verdict: Verdict, response: ApiResponse) -> ApiResponse:
        where = f"{response.method} {response.path}"
        message = redact_text(verdict.message)
        if verdict.kind == "ok":
            return response
        if verdict.kind == "throttled":
            self.stats.add(throttled=1)
            raise RateLimited(self.system, f"{where}: throttled ({message})", verdict.retry_after)
        if verdict.kind == "retry":
            raise TransientError(
                self.system, f"{where}: HTTP {response.status}: {message}", verdict.retry_after, status=response.status
            )
        if verdict.kind == "auth":
            raise AuthError(self.system, f"{where}: credentials refused (HTTP {response.status}): {message}")
        if verdict.kind == "denied":
            raise PermissionDenied(self.system, f"{where}: permission missing: {message}")
        if verdict.kind == "rejected":
            raise RejectedRecord(self.system, message, status=response.status)
        raise ApiError(self.system, f"{where}: HTTP {response.status}: {message}", response.status)
