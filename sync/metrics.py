"""The daemon's figures: one small summary per cycle, and the Prometheus metrics built from them.

`cycle_summary` runs where the cycle ran (its own process, sync/scheduler.py) and returns a small
JSON-able dict; the cycle process sends it to the daemon over the pipe that already carries its
renewed tokens back. The pipe, not the state, because half of what the metrics need is never
stored: how long the cycle took, the seconds it waited for rate limits and the tokens it fetched
(connectors/telemetry.py, counted where they happen); and because the daemon then learns each
cycle's figures without reading the state after every cycle. What the state does hold (each
system's last success) seeds the metrics when the daemon starts.

`Metrics` keeps them in a CollectorRegistry of its own (never the process-wide default one), all
named `crmsync_*` (the list is `METRIC_NAMES`; docs/operations.md explains them).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from sqlalchemy import func, select

from mapping.model import parse_timestamp
from sync.alerts import KINDS as ALERT_KINDS
from sync.reports import CycleReport
from sync.state import StateStore
from sync.state.schema import checkpoints, pending, runs

STREAM_NAMES = ("contacts", "orders")
FULL_SUFFIX = "@full"  # the checkpoint a stream's read sets when it read everything (sync/extract.py)

METRIC_NAMES = (
    "crmsync_last_success_timestamp_seconds",
    "crmsync_records_read_total",
    "crmsync_records_written_total",
    "crmsync_records_rejected_total",
    "crmsync_records_quarantined_total",
    "crmsync_quarantined_records",
    "crmsync_write_calls_total",
    "crmsync_cycle_duration_seconds",
    "crmsync_rate_limit_wait_seconds_total",
    "crmsync_token_renewals_total",
    "crmsync_pending_retries",
    "crmsync_writes_held",
    "crmsync_cycles_total",
    "crmsync_system_failures_in_a_row",
    "crmsync_last_cycle_timestamp_seconds",
    "crmsync_alerts_total",
    "crmsync_alerts_active",
)
OUTCOMES = ("ok", "failed", "held", "interrupted", "crashed")


# ----- in the cycle's process ------------------------------------------------------------------------
def cycle_summary(
    report: CycleReport,
    store: StateStore,
    *,
    duration: float,
    telemetry: Mapping[str, Mapping[str, float]],
) -> dict[str, Any]:
    """What the daemon needs to know of one finished cycle (a few hundred bytes)."""
    full = _full_reads(store, report.run_id)
    waiting = _pending_counts(store)
    systems: dict[str, Any] = {}
    for name, outcome in report.systems.items():
        counted = telemetry.get(name, {})
        systems[name] = {
            "status": outcome.status,
            "error": outcome.error,
            "read": {"contacts": outcome.read_contacts, "orders": outcome.read_orders},
            "full": sorted(full.get(name, ())),
            "planned": outcome.planned,
            "written": outcome.written,
            "rejected": outcome.rejected,
            "quarantined": outcome.quarantined,
            "write_calls": outcome.write_calls,
            "pending": waiting.get(name, 0),
            "rate_limit_wait_s": round(float(counted.get("rate_limit_wait_s", 0.0)), 3),
            "token_renewals": int(counted.get("token_renewals", 0)),
            "records_gone": int(counted.get("records_gone", 0)),
            "contacts_deleted": outcome.deleted,
            **({"absent_held": dict(outcome.absent_held)} if outcome.absent_held else {}),
        }
    return {
        "run_id": report.run_id,
        "started_at": report.started_at.isoformat(),
        "finished_at": report.finished_at.isoformat() if report.finished_at else None,
        "duration_s": round(duration, 3),
        "dry_run": report.dry_run,
        "interrupted": report.interrupted,
        "held": report.held.to_json() if report.held else None,
        "outcome": outcome_of(report),
        "systems": systems,
    }


def crash_summary(systems: Iterable[str], error: str, at: datetime, duration: float) -> dict[str, Any]:
    """A cycle that ended without a summary (its process crashed): every system failed it."""
    return {
        "run_id": None,
        "started_at": None,
        "finished_at": at.isoformat(),
        "duration_s": round(duration, 3),
        "dry_run": False,
        "interrupted": False,
        "held": None,
        "outcome": "crashed",
        "systems": {
            name: {"status": "failed", "error": error, "read": {}, "full": [], "planned": 0, "written": 0}
            for name in systems
        },
    }


def outcome_of(report: CycleReport) -> str:
    if report.interrupted:
        return "interrupted"
    if any(o.status == "failed" for o in report.systems.values()):
        return "failed"
    return "held" if report.held is not None else "ok"


def _full_reads(store: StateStore, run_id: str) -> dict[str, set[str]]:
    """Per system, the streams this run read in full, from their start to their end: their
    `<stream>@full` checkpoint carries this run's sequence number, and no `resumed` mark."""
    with store.engine.connect() as conn:
        seq = conn.execute(select(runs.c.seq).where(runs.c.run_id == run_id)).scalar()
        if seq is None:
            return {}
        rows = conn.execute(
            select(checkpoints.c.system, checkpoints.c.stream, checkpoints.c.value).where(
                checkpoints.c.seq == seq, checkpoints.c.stream.like(f"%{FULL_SUFFIX}")
            )
        ).all()
    found: dict[str, set[str]] = {}
    for system, stream, value in rows:
        if json.loads(value).get("resumed"):
            continue  # a resumed backfill read only the rest: its count says nothing of the whole
        found.setdefault(str(system), set()).add(str(stream)[: -len(FULL_SUFFIX)])
    return found


def _pending_counts(store: StateStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(pending.c.system, func.count()).group_by(pending.c.system)).all()
    return {str(system): int(count) for system, count in rows}


# ----- in the daemon --------------------------------------------------------------------------------
class Metrics:
    """Every `crmsync_*` metric, updated from cycle summaries (thread-safe: the HTTP thread renders
    while the scheduler's thread observes)."""

    def __init__(self, systems: Iterable[str]) -> None:
        # No `*_created` series beside each counter: they double the page and no alert reads them.
        # (A switch of the library's, for the whole process: the daemon has no other registry.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.last_success = Gauge(
            "crmsync_last_success_timestamp_seconds",
            "When the system's last successful cycle finished (Unix time, crmsync's clock; 0: never)",
            ["system"],
            registry=r,
        )
        self.read = Counter(
            "crmsync_records_read", "Records read from the system, per stream", ["system", "stream"], registry=r
        )
        self.written = Counter("crmsync_records_written", "Records the system accepted", ["system"], registry=r)
        self.rejected = Counter("crmsync_records_rejected", "Records the system refused", ["system"], registry=r)
        self.quarantined = Counter(
            "crmsync_records_quarantined",
            "Source records newly put in quarantine (increases of the quarantine's size)",
            ["system"],
            registry=r,
        )
        self.in_quarantine = Gauge(
            "crmsync_quarantined_records", "Source records in quarantine now", ["system"], registry=r
        )
        self.write_calls = Counter(
            "crmsync_write_calls", "HTTP requests that change state in the system", ["system"], registry=r
        )
        self.duration = Histogram(
            "crmsync_cycle_duration_seconds",
            "How long a cycle took (wall time)",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=r,
        )
        self.rate_limit_wait = Counter(
            "crmsync_rate_limit_wait_seconds",
            "Seconds spent waiting for rate limits (configured windows, vendor pacing, 429 Retry-After)",
            ["system"],
            registry=r,
        )
        self.token_renewals = Counter(
            "crmsync_token_renewals", "Access tokens fetched from the system's token endpoint", ["system"], registry=r
        )
        self.records_gone = Counter(
            "crmsync_records_gone",
            "Records a read listed but found deleted when it fetched them, left out of the read",
            ["system"],
            registry=r,
        )
        self.contacts_deleted = Counter(
            "crmsync_contacts_deleted",
            "Contacts deleted at the vendor (absent from full reads over absent_for), removed from the state",
            ["system"],
            registry=r,
        )
        self.pending = Gauge(
            "crmsync_pending_retries", "Refused records waiting to be tried again", ["system"], registry=r
        )
        self.writes_held = Gauge(
            "crmsync_writes_held", "1 when the last cycle's writes were held by the write gate", registry=r
        )
        self.cycles = Counter("crmsync_cycles", "Cycles run, by outcome", ["outcome"], registry=r)
        self.failures_in_a_row = Gauge(
            "crmsync_system_failures_in_a_row",
            "Cycles the system failed in a row (0: its last succeeded)",
            ["system"],
            registry=r,
        )
        self.last_cycle = Gauge(
            "crmsync_last_cycle_timestamp_seconds", "When the last cycle finished (Unix time, real clock)", registry=r
        )
        self.alerts = Counter("crmsync_alerts", "Alerts raised, by kind", ["kind"], registry=r)
        self.alerts_active = Gauge("crmsync_alerts_active", "Alerts raised and not yet cleared", ["kind"], registry=r)
        self._quarantine_seen: dict[str, int] = {}
        self._lock = threading.Lock()
        for outcome in OUTCOMES:
            self.cycles.labels(outcome)
        for kind in ALERT_KINDS:
            self.alerts.labels(kind)
            self.alerts_active.labels(kind)
        for name in systems:
            self._system(name)

    def _system(self, name: str) -> None:
        """Every series of a system exists from the start (at 0), so rates and absences are clear."""
        self.last_success.labels(name)
        for stream in STREAM_NAMES:
            self.read.labels(name, stream)
        for metric in (self.written, self.rejected, self.quarantined, self.write_calls):
            metric.labels(name)
        for metric in (self.rate_limit_wait, self.token_renewals, self.records_gone, self.contacts_deleted):
            metric.labels(name)
        self.in_quarantine.labels(name)
        self.pending.labels(name)
        self.failures_in_a_row.labels(name)

    def seed(self, last_runs: Mapping[str, Mapping[str, Any]], *, held: bool, failures: Mapping[str, int]) -> None:
        """What the state says at start: each system's last success, the gate, failures in a row."""
        with self._lock:
            for name, entry in last_runs.items():
                last_ok = entry.get("last_ok")
                if last_ok and last_ok.get("finished_at"):
                    self.last_success.labels(name).set(parse_timestamp(str(last_ok["finished_at"])).timestamp())
                counts = (entry.get("last") or {}).get("counts") or {}
                if isinstance(counts.get("quarantined"), int):
                    self._quarantine_seen[name] = counts["quarantined"]
                    self.in_quarantine.labels(name).set(counts["quarantined"])
            for name, streak in failures.items():
                self.failures_in_a_row.labels(name).set(streak)
            self.writes_held.set(1 if held else 0)

    def observe(self, summary: Mapping[str, Any], failures: Mapping[str, int], now: float) -> None:
        with self._lock:
            self.cycles.labels(str(summary.get("outcome", "ok"))).inc()
            self.duration.observe(float(summary.get("duration_s") or 0.0))
            self.last_cycle.set(now)
            if summary.get("outcome") != "crashed":
                self.writes_held.set(1 if summary.get("held") else 0)
            finished = summary.get("finished_at")
            for name, outcome in (summary.get("systems") or {}).items():
                if outcome.get("status") == "ok" and finished:
                    self.last_success.labels(name).set(parse_timestamp(str(finished)).timestamp())
                for stream, count in (outcome.get("read") or {}).items():
                    self.read.labels(name, stream).inc(max(0, int(count)))
                for metric, key in ((self.written, "written"), (self.rejected, "rejected")):
                    metric.labels(name).inc(max(0, int(outcome.get(key) or 0)))
                self.write_calls.labels(name).inc(max(0, int(outcome.get("write_calls") or 0)))
                self.rate_limit_wait.labels(name).inc(max(0.0, float(outcome.get("rate_limit_wait_s") or 0.0)))
                self.token_renewals.labels(name).inc(max(0, int(outcome.get("token_renewals") or 0)))
                self.records_gone.labels(name).inc(max(0, int(outcome.get("records_gone") or 0)))
                self.contacts_deleted.labels(name).inc(max(0, int(outcome.get("contacts_deleted") or 0)))
                if "pending" in outcome:
                    self.pending.labels(name).set(int(outcome["pending"]))
                if "quarantined" in outcome:
                    now_in = int(outcome["quarantined"])
                    before = self._quarantine_seen.get(name, 0)
                    self.quarantined.labels(name).inc(max(0, now_in - before))
                    self._quarantine_seen[name] = now_in
                    self.in_quarantine.labels(name).set(now_in)
            for name, streak in failures.items():
                self.failures_in_a_row.labels(name).set(streak)

    def alerted(self, fired: Iterable[str], active: Iterable[str]) -> None:
        """Kinds of the alerts just raised, and of every alert now active."""
        with self._lock:
            for kind in fired:
                self.alerts.labels(kind).inc()
            counts = dict.fromkeys(ALERT_KINDS, 0)
            for kind in active:
                counts[kind] = counts.get(kind, 0) + 1
            for kind, count in counts.items():
                self.alerts_active.labels(kind).set(count)

    def render(self) -> bytes:
        with self._lock:
            return generate_latest(self.registry)
