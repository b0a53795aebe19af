"""The daemon's outside signals (CONTRACTS §6): GET /healthz and GET /metrics on `[service] listen`,
and the alerts of `[alerts]` (sync/alerts.py).

`Monitor` is what the daemon knows of its cycles: each cycle's summary (sync/metrics.py, sent by
the cycle's process) goes into the metrics, the per-system health and the alert evaluation, after
a start from what the state says (each system's last cycle and last success, the write gate, the
alerts' memory). `/healthz` judges health with sync/health.py, as `crmsync status` does: a system
whose last cycle failed, or (with `[writeback] max_staleness`) whose last success is older than
that, is unhealthy; 503 then, else 200.

`Service` serves both from a thread of the daemon, bound only to the configured address, stopped
with the daemon. The endpoints carry no authentication: the configured address should be loopback.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from connectors.http import is_loopback
from connectors.redaction import redact_text
from connectors.telemetry import TELEMETRY
from sync.alerts import KINDS, MEMORY_KEY, Notifier, enabled, evaluate, load_memory
from sync.clock import now as crmsync_now
from sync.config import LoadedConfig
from sync.health import system_health
from sync.metrics import Metrics, cycle_summary
from sync.reports import CycleReport
from sync.state import StateStore
from sync.state.runlog import take_cycle

log = structlog.get_logger("crmsync.service")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class Monitor:
    """Thread-safe: the scheduler's thread reports cycles while the HTTP thread reads."""

    def __init__(self, loaded: LoadedConfig, store: StateStore, *, clock: Callable[[], datetime] = crmsync_now) -> None:
        config = loaded.config
        self.names = list(config.systems)
        self.settings = config.alerts
        self.max_staleness = config.writeback.max_staleness
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self.systems: dict[str, dict[str, Any]] = store.last_system_runs()
        last_run = store.last_run()
        summary = json.loads(last_run["summary"]) if last_run and last_run.get("summary") else {}
        self.held: Any = summary.get("held") if isinstance(summary, dict) else None
        self.memory = load_memory(store.get_meta(MEMORY_KEY))
        self.metrics = Metrics(self.names)
        self.metrics.seed(self.systems, held=self.held is not None, failures=self.memory.get("failures", {}))
        self.metrics.alerted((), self._active_kinds())
        self.notifier = Notifier(self.settings, self.settings.deployment or str(loaded.path))

    def _active_kinds(self) -> list[str]:
        return [str(alert.get("kind")) for alert in self.memory.get("active", {}).values()]

    def after_cycle(self, summary: dict[str, Any]) -> None:
        """One cycle's figures: metrics, health, alerts (raised once, cleared once)."""
        with self._lock:
            evaluation = evaluate(self.memory, summary, self.settings)
            self.memory = evaluation.memory
            finished = summary.get("finished_at") or self.clock().isoformat()
            for name, outcome in (summary.get("systems") or {}).items():
                record = {
                    "status": outcome.get("status"),
                    "error": outcome.get("error"),
                    "finished_at": finished,
                    "counts": {k: v for k, v in outcome.items() if k not in ("status", "error")},
                }
                take_cycle(self.systems.setdefault(name, {"last": None, "last_ok": None, "last_settled": None}), record)
            if summary.get("outcome") != "crashed":
                self.held = summary.get("held")
            memory_text = json.dumps(self.memory)
            active = self._active_kinds()
        self.metrics.observe(summary, evaluation.failures, time.time())
        self.metrics.alerted([alert.kind for alert in evaluation.fired], active)
        try:
            self.store.set_meta(MEMORY_KEY, memory_text)
        except Exception as exc:  # the alerts still went out; only a restart may repeat one
            log.warning("alert memory not saved", error=redact_text(f"{type(exc).__name__}: {exc}"))
        self.notifier.notify(evaluation.fired, evaluation.resolved)

    def health(self) -> dict[str, Any]:
        with self._lock:
            systems = system_health(self.names, self.systems, now=self.clock(), max_staleness=self.max_staleness)
            held = self.held is not None
        for entry in systems.values():
            if entry["reason"] is not None:
                entry["reason"] = redact_text(entry["reason"])
        return {"ok": all(entry["ok"] for entry in systems.values()), "systems": systems, "writes_held": held}

    def close(self) -> None:
        self.notifier.close()


def alerts_after_one_off(loaded: LoadedConfig, store: StateStore, report: CycleReport, *, duration: float) -> None:
    """The daemon's alert evaluation for a one-off `sync` or `backfill` (a cron job instead of the
    daemon): the same memory in the state, so an alert is raised once whichever runs the cycles;
    the POSTs are waited for (at most one round of attempts) as the process ends next. A dry run
    writes nothing and judges nothing."""
    settings = loaded.config.alerts
    if report.dry_run or not any(enabled(kind, settings) for kind in KINDS):
        return
    summary = cycle_summary(report, store, duration=duration, telemetry=TELEMETRY.snapshot_and_reset())
    evaluation = evaluate(load_memory(store.get_meta(MEMORY_KEY)), summary, settings)
    store.set_meta(MEMORY_KEY, json.dumps(evaluation.memory))
    notifier = Notifier(settings, settings.deployment or str(loaded.path))
    notifier.notify(evaluation.fired, evaluation.resolved)
    notifier.close()


# ----- HTTP -----------------------------------------------------------------------------------------
class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("service request", line=format % args)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # As HTTPServer's, without its reverse DNS lookup of the address (socket.getfqdn).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


class Service:
    """GET /healthz and GET /metrics on (host, port), from a thread; `stop` ends it. Raises OSError
    when the address cannot be bound (in use, not this host's)."""

    def __init__(self, monitor: Monitor, host: str, port: int) -> None:
        self.monitor = monitor
        server_class = _Server6 if ":" in host else _Server
        self.server = make_server(host, port, self.app, server_class=server_class, handler_class=_Quiet)
        bound_host, bound_port = self.server.server_address[:2]
        self.host = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
        self.port = int(bound_port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="crmsync-service", daemon=True
        )

    def start(self) -> None:
        self.thread.start()
        log.info("service listening", url=self.url, endpoints=["/healthz", "/metrics"])
        if not is_loopback(self.host):
            log.warning("service listens beyond loopback; /healthz and /metrics have no authentication", url=self.url)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/metrics"):
            return _answer(start_response, "404 Not Found", b"not found: try /healthz or /metrics\n", "text/plain")
        if method not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"GET only\n", "text/plain", (("Allow", "GET"),))
        try:
            if path == "/metrics":
                return _answer(start_response, "200 OK", self.monitor.metrics.render(), CONTENT_TYPE_LATEST)
            document = self.monitor.health()
        except Exception:
            log.exception("service request failed", path=path)
            return _answer(start_response, "500 Internal Server Error", b"internal error\n", "text/plain")
        status = "200 OK" if document["ok"] else "503 Service Unavailable"
        return _answer(start_response, status, json.dumps(document).encode() + b"\n", "application/json")


def _answer(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str,
    extra: tuple[tuple[str, str], ...] = (),
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    start_response(status, [*headers, *extra])
    return [body]
