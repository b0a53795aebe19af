"""The shared body of every vendor emulator: routing, the test routes of CONTRACTS §5, fault
injection, rate limits, request statistics. A vendor sandbox declares its routes and answers a
few hooks (auth, error shape, throttling signal, fixture shape); the rest is here.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from werkzeug.exceptions import ClientDisconnected, HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from connectors.clock import now as crmsync_now
from connectors.ratelimit import SlidingWindowLimiter, Window
from connectors.sandbox.faults import AFTER, BEFORE, EXPIRE, ITEM, FaultBook, FaultRule, FaultSpecError

Handler = Callable[..., Response]

# Every token an emulator issues carries this mark, so the secrets scan (tests/chaos/secrets.py)
# finds one wherever crmsync might have printed or stored it, even one issued in another process.
ISSUED_TOKEN_MARK = "sbxissued"


# Werkzeug compiles each route with `ast.parse`. CPython 3.11 keeps the AST constructor's recursion
# depth in state shared by threads, so emulators built side by side (the chaos lanes, the fault
# matrix) could fail with "SystemError: AST constructor recursion depth mismatch"
# (python/cpython#106905, fixed in later releases): one at a time.
_ROUTING = threading.Lock()


class FixtureError(ValueError):
    """A fixture whose structure or types are wrong; names the file and the item."""


class VendorError(Exception):
    """Raised by a handler to answer with the vendor's error shape (see `SandboxApp.error`)."""

    def __init__(self, status: int, code: str, message: str, **data: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    handler: Handler
    lists: bool = False
    # A token endpoint: answered without the API's credentials, outside its rate limit, and only
    # faults that name its path apply to it.
    token: bool = False


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    # A lone surrogate (half of a UTF-16 pair, which a vendor's data may hold) is written as its
    # escape, as JavaScript's `JSON.stringify` does: UTF-8 cannot carry it as it is.
    return Response(
        json.dumps(data, ensure_ascii=False, default=str).encode("utf-8", "backslashreplace"),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json; charset=utf-8",
    )


def pop_zone(settings: dict[str, Any], key: str) -> str | None:
    """Take a time-zone setting (an IANA name) out of a PATCH of `/_sandbox/app`, or refuse it
    (callers take it first, so a refused PATCH changes nothing); None when the PATCH does not
    name it."""
    zone = settings.pop(key, None)
    if zone is None:
        return None
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise VendorError(400, "bad_request", f"{key} is an IANA time zone name") from None
    return str(zone)


def utcnow() -> datetime:
    """The emulators' "now": crmsync's clock, so `$CRMSYNC_NOW` and `$CRMSYNC_NOW_SPEED` move both."""
    return crmsync_now()


@dataclass
class IssuedToken:
    expires_at: datetime | None
    kind: str = "access"
    issued_at: datetime | None = None


@dataclass
class SandboxStats:
    requests: Counter[str] = field(default_factory=Counter)
    reads: int = 0
    writes: int = 0
    throttled: int = 0
    errors: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "reads": self.reads,
            "writes": self.writes,
            "throttled": self.throttled,
            "errors": self.errors,
        }


class SandboxApp:
    type: ClassVar[str]
    # Whether the vendor hands out expiring tokens (and the `expire-token` fault means anything).
    issues_tokens: ClassVar[bool] = False
    # Whether credentials are checked before the route is matched (WordPress runs WooCommerce's key
    # check in `rest_pre_dispatch`, so an unknown route is refused to a key without the right first).
    authenticate_unrouted: ClassVar[bool] = False
    # The vendor's published limits, in the vendor's own time; divided by `time_scale`.
    rate_limits: ClassVar[tuple[Window, ...]] = ()

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        time_scale: float = 1.0,
        rate_limits: Sequence[Window] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`rate_limits` replaces the vendor's published limits (tests use it to provoke throttling);
        `clock` replaces crmsync's clock for token expiry (a test's own sped-up clock)."""
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self.clock = clock or utcnow
        self.issued: dict[str, IssuedToken] = {}
        self.renamed: dict[str, str] = {}
        windows = self.rate_limits if rate_limits is None else tuple(rate_limits)
        self.lock = threading.RLock()
        self.faults = FaultBook()
        self.stats = SandboxStats()
        self.started = time.monotonic()
        self.limiter = (
            SlidingWindowLimiter([Window(w.requests, w.per_seconds / time_scale) for w in windows]) if windows else None
        )
        self._routes = self.routes()
        self._handlers = {f"r{i}": route for i, route in enumerate(self._routes)}
        with _ROUTING:
            self.url_map = Map(
                [
                    Rule(route.path, endpoint=f"r{i}", methods=list(route.methods))
                    for i, route in enumerate(self._routes)
                ],
                strict_slashes=False,
            )
        self.load(data or {})

    # ----- tokens the emulator issues --------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock()

    def issue_token(self, prefix: str, ttl: float | None, kind: str = "access") -> str:
        value = f"{prefix}{ISSUED_TOKEN_MARK}{secrets.token_hex(16)}"
        expires_at = self.now() + timedelta(seconds=ttl) if ttl is not None else None
        with self.lock:
            self.issued[value] = IssuedToken(expires_at, kind, self.now())
        return value

    def token_status(self, value: str, kind: str = "access") -> str:
        """ "valid", "expired" or "unknown"."""
        with self.lock:
            token = self.issued.get(value)
        if token is None or token.kind != kind:
            return "unknown"
        if token.expires_at is not None and token.expires_at <= self.now():
            return "expired"
        return "valid"

    def extend_token(self, value: str, ttl: float) -> None:
        """Sliding expiry (a SuperOffice ticket lives on while it is used)."""
        with self.lock:
            token = self.issued.get(value)
            if token is not None and token.expires_at is not None and token.expires_at > self.now():
                token.expires_at = self.now() + timedelta(seconds=ttl)

    def expire_tokens(self) -> int:
        """The `expire-token` fault: every access token issued so far expires now."""
        moment = self.now()
        with self.lock:
            expiring = [t for t in self.issued.values() if t.kind == "access"]
            for token in expiring:
                token.expires_at = moment
        return len(expiring)

    def issued_count(self, kind: str = "access") -> int:
        with self.lock:
            return sum(1 for t in self.issued.values() if t.kind == kind)

    # ----- the app's settings (GET/PATCH /_sandbox/app) ----------------------------------------------
    def app_settings(self) -> dict[str, Any]:
        """What `/_sandbox/app` shows; vendors that issue tokens add scopes and lifetimes."""
        return {"rename_fields": dict(self.renamed)}

    def close(self) -> None:
        """The server is stopping: vendors with work of their own (Shopify's bulk operations) end it."""

    def change_app(self, partial: Mapping[str, Any]) -> None:
        """Apply a PATCH of `/_sandbox/app`; a key the emulator does not know is a VendorError."""
        for key, value in partial.items():
            if key != "rename_fields":
                raise VendorError(400, "bad_request", f"unknown app setting {key!r}")
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise VendorError(400, "bad_request", "rename_fields maps a field name to its new name")
            self.renamed = dict(value)

    def app_action(self, name: str, request: Request) -> Response | None:
        """`/_sandbox/app/<name>`: a vendor's own test action (Shopify mints an expiring offline
        token pair, as its OAuth flow would hand one to an app). None: no such action."""
        return None

    def rename_fields(self, data: Any) -> Any:
        """The vendor renamed fields in its answers (an API change crmsync must notice): every key
        in `renamed`, at any depth of a list reply, carries its new name."""
        if isinstance(data, dict):
            return {self.renamed.get(k, k): self.rename_fields(v) for k, v in data.items()}
        if isinstance(data, list):
            return [self.rename_fields(v) for v in data]
        return data

    # ----- what a vendor declares ---------------------------------------------------------------
    def routes(self) -> Sequence[Route]:
        raise NotImplementedError

    def load(self, data: Mapping[str, Any]) -> None:
        """Take fixtures in the vendor's own shape: {"customers": [...], "orders": [...]}."""
        raise NotImplementedError

    def authenticate(self, request: Request) -> Response | None:
        """None when the credentials are right, else the vendor's refusal."""
        return None

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        """An error in the vendor's shape."""
        return json_response({"error": code, "message": message, **extra}, status)

    def auth_failure(self) -> Response:
        return self.error(401, "unauthorized", "Invalid credentials")

    def throttled(self, retry_after: float | None) -> Response:
        """The vendor's answer when its rate limit is exceeded."""
        headers = {"Retry-After": _seconds_header(retry_after)} if retry_after is not None else {}
        response = self.error(429, "rate_limited", "Too many requests")
        response.headers.update(headers)
        return response

    def vendor_throttle(self, rule: FaultRule) -> Response:
        """The vendor's own slow-down signal, forced by a fault."""
        return self.throttled(rule.retry_after if rule.retry_after is not None else 1.0)

    def is_write(self, request: Request, route: Route | None) -> bool:
        return request.method in ("POST", "PUT", "PATCH", "DELETE")

    def is_list(self, request: Request, route: Route | None) -> bool:
        return bool(route and route.lists and not self.is_write(request, route))

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError

    def delete_customer(self, customer_id: str) -> dict[str, Any] | None:
        """A customer deleted in the vendor's UI (a shop's GDPR redaction): every read leaves it
        out from now on. The deleted record in fixture shape, or None when there is no such one."""
        raise NotImplementedError

    def stamp_customer(self, customer_id: str, moment: datetime) -> None:
        """Sets a customer's modification time as the vendor would have written it; nothing for
        a vendor whose customers carry none (every read scans them all)."""

    def rate_limit_headers(self) -> dict[str, str]:
        return {}

    def known_secrets(self) -> list[str]:
        """Every credential this emulator accepts (its config's and older ones still honoured),
        for the secrets scan; issued tokens carry `ISSUED_TOKEN_MARK` instead."""
        return []

    def client_settings(self) -> dict[str, Any]:
        """The config keys a client needs for this emulator: its credentials, and rate limits that
        match the emulator's own (already divided by the time scale)."""
        if self.limiter is None:
            return {}
        return {
            "rate_limit": [
                {"requests": w.requests, "per_seconds": round(w.per_seconds, 6)} for w in self.limiter.windows
            ]
        }

    # ----- WSGI ----------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_sandbox/"):
            return self.test_route(request)
        # Logged on arrival, so a test can see a request that is still being answered (status None).
        entry: dict[str, Any] = {
            "t": round(time.monotonic() - self.started, 6),
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode(),
            "status": None,
            "write": None,
        }
        request.environ["sandbox.log_entry"] = entry
        with self.lock:
            self.stats.log.append(entry)
        try:
            return self.answer(request, entry)
        except ClientDisconnected:
            # The client went away while sending its body (a crmsync killed mid-request), wherever
            # the body was first read: nothing was done, and the log entry is closed, so a test
            # waiting until no request is in flight sees this one end.
            gone = self.error(400, "client_disconnected", "The client disconnected.")
            return self.record(request, None, gone, is_write=False)  # is_write would read the body again
        except Exception:
            self.record(request, None, self.error(500, "internal_error", "The sandbox failed."), is_write=False)
            raise

    def answer(self, request: Request, entry: dict[str, Any]) -> Response:
        """A logged request's answer (`dispatch`)."""
        adapter = self.url_map.bind_to_environ(request.environ)
        if self.authenticate_unrouted:
            refusal = self.authenticate(request)
            if refusal is not None:
                return self.record(request, None, refusal)
        try:
            endpoint, args = adapter.match()
        except NotFound:
            return self.record(request, None, self.error(404, "rest_no_route", "No route was found."))
        except MethodNotAllowed:
            return self.record(request, None, self.error(405, "method_not_allowed", "Method not allowed."))
        except HTTPException as exc:  # redirects and the like: answer plainly
            return self.record(request, None, self.error(exc.code or 400, "bad_request", str(exc)))
        route = self._handlers[str(endpoint)]
        if route.token:
            return self.record(request, route, self._token_route(request, route, args), is_write=False)
        is_write = self.is_write(request, route)
        entry["write"] = is_write
        rule = self.faults.take(request.method, request.path, is_write, self.is_list(request, route))
        if rule is not None and rule.fault in EXPIRE:
            self.expire_tokens()
            rule = None
        if rule is not None and rule.fault in BEFORE:
            forced = self.before_fault(rule)
            if forced is not None:
                return self.record(request, route, forced, is_write=is_write)
        refusal = self.authenticate(request)
        if refusal is not None:
            return self.record(request, route, refusal, is_write=is_write)
        if self.limiter is not None:
            wait = self.limiter.try_acquire()
            if wait > 0:
                return self.record(request, route, self.throttled(wait), is_write=is_write, throttled=True)
        request.environ["sandbox.item_fault"] = rule.fault if rule and rule.fault in ITEM else None
        try:
            response = route.handler(request, **args)
        except VendorError as exc:
            response = self.error(exc.status, exc.code, exc.message, **exc.data)
        response.headers.update(self.rate_limit_headers())
        if self.renamed and self.is_list(request, route) and response.status_code == 200:
            response.set_data(json.dumps(self.rename_fields(json.loads(response.get_data() or b"null"))))
        if rule is not None and rule.fault in AFTER:
            response = self.damage(request, response, rule)
        return self.record(request, route, response, is_write=is_write)

    def _token_route(self, request: Request, route: Route, args: Mapping[str, Any]) -> Response:
        """A token endpoint: faults that name its path still apply (a test can make it fail)."""
        rule = self.faults.take(request.method, request.path, False, False, named_only=True)
        if rule is not None and rule.fault in BEFORE:
            forced = self.before_fault(rule)
            if forced is not None:
                return forced
        try:
            return route.handler(request, **args)
        except VendorError as exc:
            return self.error(exc.status, exc.code, exc.message, **exc.data)

    def record(
        self,
        request: Request,
        route: Route | None,
        response: Response,
        *,
        is_write: bool | None = None,
        throttled: bool = False,
    ) -> Response:
        key = f"{request.method} {route.path if route else request.path}"
        write = self.is_write(request, route) if is_write is None else is_write
        throttled = throttled or self.looks_throttled(response)
        with self.lock:
            stats = self.stats
            stats.requests[key] += 1
            if write:
                stats.writes += 1
            else:
                stats.reads += 1
            if throttled:
                stats.throttled += 1
            elif response.status_code >= 400 or self.looks_failed(response):
                stats.errors += 1
            entry = request.environ.get("sandbox.log_entry")
            if entry is not None:
                done = round(time.monotonic() - self.started, 6)
                entry.update(status=response.status_code, write=write, throttled=throttled, done=done)
        return response

    def looks_throttled(self, response: Response) -> bool:
        return response.status_code == 429

    def looks_failed(self, response: Response) -> bool:
        """Vendors that report errors inside a 200 override this."""
        return False

    # ----- faults ---------------------------------------------------------------------------------
    def before_fault(self, rule: FaultRule) -> Response | None:
        kind = rule.fault
        if kind in ("timeout", "slow"):
            time.sleep(rule.seconds if rule.seconds is not None else (30.0 if kind == "timeout" else 1.0))
            return None
        if kind == "auth":
            return self.auth_failure()
        if kind == "vendor-throttle":
            return self.vendor_throttle(rule)
        status = int(kind)
        response = self.error(status, f"http_{status}", f"Injected HTTP {status}")
        if rule.retry_after is not None:
            response.headers["Retry-After"] = _seconds_header(rule.retry_after)
        return response

    def damage(self, request: Request, response: Response, rule: FaultRule) -> Response:
        body = response.get_data()
        if rule.fault == "truncate":
            cut = body[: max(1, len(body) // 2)]
            response.set_data(cut)
            return response
        if rule.fault == "bad-json":
            response.set_data(b"{'this': is not JSON,]")
            return response
        # reset: send the head and half the body, then drop the connection.
        sock = request.environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            head = (
                f"HTTP/1.1 {response.status}\r\nContent-Type: {response.content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            try:
                sock.sendall(head + body[: len(body) // 2])
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return Response(b"", status=500)

    def apply_item_fault(self, request: Request, items: list[Any]) -> list[Any]:
        """Repeat or leave out one item of a list page, when a fault asks for it."""
        fault = request.environ.get("sandbox.item_fault")
        if not items or not fault:
            return items
        if fault == "repeat-item":
            return [*items, items[-1]] if len(items) == 1 else [*items[:1], items[0], *items[1:]]
        return items[1:]

    # ----- test routes (no auth, not counted) ------------------------------------------------------
    def test_route(self, request: Request) -> Response:
        path = request.path[len("/_sandbox/") :]
        method = request.method
        if path == "stats":
            if method == "DELETE":
                with self.lock:
                    self.stats = SandboxStats()
                return json_response({"ok": True})
            with self.lock:
                return json_response(self.stats.to_json())
        if path.startswith("app/"):
            with self.lock:
                extra = self.app_action(path[len("app/") :], request)
            return extra if extra is not None else json_response({"error": f"no test route {request.path}"}, 404)
        if path == "app":
            if method == "PATCH":
                try:
                    partial = json.loads(request.get_data() or b"{}")
                    if not isinstance(partial, dict):
                        raise ValueError("body must be an object")
                    with self.lock:
                        self.change_app(partial)
                except ValueError as exc:
                    return json_response({"error": str(exc)}, 400)
                except VendorError as exc:
                    return json_response({"error": exc.message}, 400)
            elif method != "GET":
                return json_response({"error": "method not allowed"}, 405)
            with self.lock:
                return json_response(self.app_settings())
        if path == "requests" and method == "GET":
            with self.lock:
                return json_response([dict(entry) for entry in self.stats.log])
        if path == "faults":
            if method == "DELETE":
                self.faults.clear()
                return json_response({"ok": True})
            if method == "GET":
                return json_response(self.faults.pending())
            if method == "POST":
                try:
                    payload = json.loads(request.get_data() or b"null")
                    specs = payload if isinstance(payload, list) else [payload]
                    rules = [FaultRule.parse(spec) for spec in specs]
                    if any(rule.fault in EXPIRE for rule in rules) and not self.issues_tokens:
                        raise FaultSpecError(f"{self.type} issues no expiring tokens: nothing to expire")
                    for rule in rules:
                        self.faults.add(rule)
                except (ValueError, FaultSpecError) as exc:
                    return json_response({"error": str(exc)}, 400)
                return json_response({"ok": True, "pending": self.faults.pending()})
        if path.startswith("customers/"):
            customer_id = path[len("customers/") :]
            if method == "GET":
                with self.lock:
                    found = self.customer_fixture(customer_id)
            elif method == "PATCH":
                try:
                    partial = json.loads(request.get_data() or b"{}")
                except ValueError:
                    return json_response({"error": "body is not JSON"}, 400)
                if not isinstance(partial, dict):
                    return json_response({"error": "body must be an object"}, 400)
                with self.lock:
                    found = self.patch_customer(customer_id, partial)
            elif method == "DELETE":
                with self.lock:
                    found = self.delete_customer(customer_id)
            else:
                return json_response({"error": "method not allowed"}, 405)
            if found is None:
                return json_response({"error": f"no customer {customer_id}"}, 404)
            return json_response(found)
        return json_response({"error": f"no test route {request.path}"}, 404)


def _seconds_header(seconds: float) -> str:
    # Retry-After carries whole seconds; round up so a client never comes back too early.
    whole = int(seconds)
    return str(whole if whole == seconds else whole + 1)
