"""Alerts: conditions a person on call should hear about, judged after every daemon cycle.

`evaluate` is a pure function of what the alerts remember (`memory`, a JSON-able dict the daemon
keeps in the state's meta table, so a restart neither forgets a running alert nor raises it again),
one cycle's summary (sync/metrics.py `cycle_summary`) and the `[alerts]` settings. It returns the
alerts that started and the ones that cleared: an alert fires once when its condition starts and
again only after it cleared, never every cycle. `Notifier` delivers them: an error-level log event
`alert` (`kind`, `system`, `message`) and, when `webhook_url` is set, a JSON POST from a thread of
its own (three attempts with backoff, each bounded by `webhook_timeout`), so a slow receiver never
holds up a cycle. A cleared alert is logged at info and POSTed with `"status": "resolved"`.

The kinds:
- `failing_cycles`: a system failed this many cycles in a row (clears when it succeeds again).
- `rejected_share`: the vendor refused more than this share of a system's planned writes in one
  cycle (judged only in cycles that wrote: a held or failed cycle says nothing either way).
- `read_swing`: a FULL read of a stream (the first read, a backfill, a `reconcile_every` re-read)
  returned a count further than this share from the median of that stream's last 5 full reads
  (judged once 3 are known). Why full reads: an incremental cycle reads only what changed (a few
  records, or none), so its count swings by nature; and the state keeps every record it ever read,
  so its totals never drop when a vendor suddenly returns half the customers. A full read's count is
  the vendor's own answer to "how many are there", the one figure that shows that. It also fires
  when a full read of contacts left out more of the stored ones than `[drift_guard] absent_share`
  (none of them is then taken for deleted at the vendor: sync/extract.py `judge_absence`).
- `writes_held`: the write gate (sync/gate.py) held the cycle's writes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import queue
import statistics
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import requests
import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.redaction import redact_text, redact_value, register_secret
from mapping.model import parse_timestamp
from sync.config import AlertSettings

log = structlog.get_logger("crmsync.alerts")

KINDS = ("failing_cycles", "rejected_share", "read_swing", "writes_held")
SWING_RUNS = 5  # a full read is compared with the median of this many earlier ones
SWING_MIN_RUNS = 3  # ... once at least this many are known
MEMORY_KEY = "alerts"  # the state's meta key the daemon keeps `memory` under


@dataclass(frozen=True)
class Alert:
    kind: str
    system: str | None  # None for the deployment as a whole (writes_held)
    message: str
    at: str  # ISO-8601 UTC: the end of the cycle that started (or cleared) it
    details: dict[str, Any] = field(default_factory=dict)
    resolved: bool = False

    @property
    def key(self) -> str:
        stream = self.details.get("stream")
        return ":".join(part for part in (self.kind, self.system, stream) if part)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "system": self.system,
            "message": self.message,
            "at": self.at,
            "details": self.details,
            "status": "resolved" if self.resolved else "firing",
        }

    def delivery_id(self, deployment: str) -> str:
        """The notice's id in the webhook's body: the same on every attempt to deliver it (and if a
        restarted daemon sends it again), another for every other notice, so a receiver that got
        a POST whose answer never reached crmsync can drop the repeat."""
        notice = json.dumps([deployment, self.key, self.resolved, self.at])
        return hashlib.sha256(notice.encode()).hexdigest()[:32]

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Alert:
        return cls(str(doc["kind"]), doc.get("system"), str(doc["message"]), str(doc["at"]), dict(doc["details"]))


@dataclass
class Evaluation:
    fired: list[Alert]
    resolved: list[Alert]
    memory: dict[str, Any]

    @property
    def failures(self) -> dict[str, int]:
        """Per system: cycles failed in a row up to this one."""
        return dict(self.memory["failures"])


def empty_memory() -> dict[str, Any]:
    return {"failures": {}, "full_reads": {}, "active": {}}


def enabled(kind: str, settings: AlertSettings) -> bool:
    if kind == "writes_held":
        return settings.writes_held
    value: Any = getattr(settings, kind)
    return value is not None


def evaluate(memory: Mapping[str, Any] | None, summary: Mapping[str, Any], settings: AlertSettings) -> Evaluation:
    """The alerts one cycle starts and clears. `summary`: `{"finished_at", "interrupted", "held",
    "systems": {name: {"status", "error", "planned", "rejected", "read": {stream: n}, "full":
    [streams read in full]}}}`. Conditions this cycle cannot judge leave their alert as it was."""
    mem = copy.deepcopy(dict(memory)) if memory else empty_memory()
    for part, value in empty_memory().items():
        mem.setdefault(part, value)
    failures: dict[str, int] = mem["failures"]
    full_reads: dict[str, list[int]] = mem["full_reads"]
    active: dict[str, dict[str, Any]] = mem["active"]
    at = _whole_seconds(summary.get("finished_at"))
    held = summary.get("held")
    # key -> the alert when its condition holds now, None when it does not (absent: not judged)
    holds: dict[str, Alert | None] = {}

    def judge(key: str, alert: Alert | None) -> None:
        holds[key] = alert

    systems: Mapping[str, Mapping[str, Any]] = summary.get("systems") or {}
    for name, outcome in systems.items():
        status = outcome.get("status")
        streak = failures.get(name, 0)
        if status == "failed":
            streak += 1
        elif status == "ok":
            streak = 0
        failures[name] = streak  # an interrupted cycle neither breaks nor extends a run of failures

        limit = settings.failing_cycles
        if limit is not None and status in ("ok", "failed"):
            error = redact_text(str(outcome.get("error") or "no error given"))
            judge(
                f"failing_cycles:{name}",
                Alert(
                    "failing_cycles",
                    name,
                    f"{name} failed {streak} cycles in a row: {error}",
                    at,
                    {"failures_in_a_row": streak, "threshold": limit, "error": error},
                )
                if streak >= limit
                else None,
            )

        share_limit = settings.rejected_share
        planned, rejected = int(outcome.get("planned") or 0), int(outcome.get("rejected") or 0)
        wrote = status == "ok" and held is None and not summary.get("dry_run") and not summary.get("interrupted")
        if share_limit is not None and wrote and planned > 0:
            share = rejected / planned
            judge(
                f"rejected_share:{name}",
                Alert(
                    "rejected_share",
                    name,
                    f"{name} refused {rejected} of {planned} planned writes ({share:.1%}), "
                    f"over rejected_share {share_limit:.1%}",
                    at,
                    {"planned": planned, "rejected": rejected, "share": round(share, 4), "threshold": share_limit},
                )
                if share > share_limit
                else None,
            )

        if status != "ok":
            continue  # a failed or interrupted read may have stopped half-way: its count says nothing
        for stream in outcome.get("full") or ():
            count = int((outcome.get("read") or {}).get(stream, 0))
            history = list(full_reads.get(f"{name}/{stream}", []))
            swing_limit = settings.read_swing
            if swing_limit is not None and len(history) >= SWING_MIN_RUNS:
                median = float(statistics.median(history))
                if median > 0:
                    swing = abs(count - median) / median
                    direction = "fewer" if count < median else "more"
                    judge(
                        f"read_swing:{name}:{stream}",
                        Alert(
                            "read_swing",
                            name,
                            f"{name}: a full read of {stream} returned {count} records, {swing:.0%} {direction} "
                            f"than the median {median:g} of its last {len(history)} full reads",
                            at,
                            {
                                "stream": stream,
                                "count": count,
                                "median": median,
                                "recent": history,
                                "swing": round(swing, 4),
                                "threshold": swing_limit,
                            },
                        )
                        if swing > swing_limit
                        else None,
                    )
            held_back = (outcome.get("absent_held") or {}).get(stream)
            key_of_swing = f"read_swing:{name}:{stream}"
            if swing_limit is not None and held_back:
                # The read left out so many stored records that none was taken for deleted: its
                # count swung against the state's, whatever the earlier reads returned.
                absent, stored = int(held_back.get("absent", 0)), int(held_back.get("stored", 0))
                # One alert for the read: where it also swung against the earlier full reads, that
                # alert's figures (median, recent, swing) stay beside the absence's.
                swung = holds.get(key_of_swing)
                judge(
                    key_of_swing,
                    Alert(
                        "read_swing",
                        name,
                        f"{name}: a full read of {stream} left out {absent} of the {stored} stored records, over "
                        "[drift_guard] absent_share: none is taken for deleted. Check the API user's rights and "
                        "the vendor's filter (an AFAS GetConnector's); if they were deleted, raise absent_share "
                        "for one run",
                        at,
                        {
                            **(swung.details if swung else {}),
                            "stream": stream,
                            "count": count,
                            "absent": absent,
                            "stored": stored,
                        },
                    ),
                )
            elif key_of_swing not in holds and "absent" in (active.get(key_of_swing) or {}).get("details", {}):
                judge(key_of_swing, None)  # raised for an absence held back, and this read had none
            full_reads[f"{name}/{stream}"] = [*history, count][-SWING_RUNS:]

    if settings.writes_held and not summary.get("interrupted"):
        judge(
            "writes_held",
            Alert(
                "writes_held",
                None,
                redact_text(f"writes held: {held.get('reason')}"),
                at,
                {"waiting_for": list(held.get("waiting_for") or [])},
            )
            if isinstance(held, Mapping)
            else None,
        )

    fired: list[Alert] = []
    resolved: list[Alert] = []
    for key, alert in holds.items():
        if alert is not None and key not in active:
            fired.append(alert)
            active[key] = alert.to_json()
        elif alert is None and key in active:
            resolved.append(_cleared(Alert.from_json(active.pop(key)), at))
    # A kind switched off or a system no longer configured: its alert goes without a word.
    for key in list(active):
        kind, system = active[key].get("kind", ""), active[key].get("system")
        if not enabled(kind, settings) or (system is not None and systems and system not in systems):
            del active[key]
    for name in [n for n in failures if systems and n not in systems]:
        del failures[name]
    return Evaluation(fired, resolved, mem)


def _whole_seconds(value: Any) -> str:
    """ISO-8601 UTC without a fraction of a second, as every time crmsync sends out."""
    if not value:
        return ""
    try:
        return parse_timestamp(str(value)).astimezone(UTC).replace(microsecond=0).isoformat()
    except ValueError:
        return str(value)


def _cleared(earlier: Alert, at: str) -> Alert:
    """The news that an alert's condition is over (its details are the ones it was raised with)."""
    system, stream = earlier.system, earlier.details.get("stream")
    message = {
        "failing_cycles": f"{system} succeeded again",
        "rejected_share": f"{system}: refused writes are back under rejected_share",
        "read_swing": f"{system}: a full read of {stream} is back in line with the recent ones",
        "writes_held": "writes go out again",
    }.get(earlier.kind, f"cleared: {earlier.message}")
    return Alert(earlier.kind, system, message, at, {**earlier.details, "raised": earlier.message}, resolved=True)


def load_memory(text: str | None) -> dict[str, Any]:
    """What the state's meta holds, or a fresh memory when it holds nothing readable."""
    if not text:
        return empty_memory()
    try:
        doc = json.loads(text)
    except ValueError:
        return empty_memory()
    return doc if isinstance(doc, dict) else empty_memory()


# ----- delivery -------------------------------------------------------------------------------------
class _Undelivered(Exception):
    """A webhook attempt worth repeating (no answer, a timeout, 429 or 5xx)."""


class Notifier:
    """Logs every alert and, with a webhook, POSTs it from a worker thread. `deployment` names this
    installation in the POST (the `[alerts] deployment` setting, else the config file's path)."""

    ATTEMPTS = 3

    def __init__(self, settings: AlertSettings, deployment: str) -> None:
        self.url = settings.webhook_url.get_secret_value() if settings.webhook_url else None
        self.timeout = settings.webhook_timeout
        self.deployment = deployment
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._closing = threading.Event()
        self._worker: threading.Thread | None = None
        self._session: requests.Session | None = None
        self.delivered = 0
        if self.url:
            # A library error names the URL's path without its host (where a hook's token sits):
            # that part is masked on its own too, wherever it would be printed.
            parts = urlsplit(self.url)
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            if len(tail) >= 8:
                register_secret(tail)
            register_secret(self.url)

    def notify(self, fired: list[Alert], resolved: list[Alert]) -> None:
        for alert in fired:
            log.error("alert", kind=alert.kind, system=alert.system, message=alert.message)
        for alert in resolved:
            log.info("alert resolved", kind=alert.kind, system=alert.system, message=alert.message)
        if not self.url:
            return
        for alert in [*fired, *resolved]:
            payload = {**alert.to_json(), "deployment": self.deployment, "id": alert.delivery_id(self.deployment)}
            redacted = redact_value(payload, by_name=True)
            assert isinstance(redacted, dict)
            self._queue.put(redacted)
        if self._worker is None:
            self._session = requests.Session()
            self._session.trust_env = False  # like the connectors: no proxy variable reroutes a token
            self._worker = threading.Thread(target=self._work, name="crmsync-alerts", daemon=True)
            self._worker.start()

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued, waiting at most `timeout` seconds (default: one full round of
        attempts), then give up on the rest."""
        if self._worker is None:
            return
        self._queue.put(None)
        self._worker.join(timeout if timeout is not None else self.ATTEMPTS * (self.timeout + 2))
        self._closing.set()  # retries still waiting give up
        self._worker.join(self.timeout + 1)
        if self._session is not None:
            self._session.close()

    def _work(self) -> None:
        while (payload := self._queue.get()) is not None:
            if self._closing.is_set():
                log.warning("alert webhook not tried: crmsync is stopping", kind=payload.get("kind"))
                continue
            try:
                self._deliver(payload)
            except Exception:  # a delivery never takes the daemon down
                log.exception("alert webhook crashed", kind=payload.get("kind"))

    def _deliver(self, payload: dict[str, Any]) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(_Undelivered),
            stop=stop_after_attempt(self.ATTEMPTS),
            wait=wait_exponential(multiplier=0.5, max=4),
            sleep=self._pause,
            reraise=True,
        )
        try:
            retrying(self._post, payload)
        except _Undelivered as exc:
            log.warning("alert webhook failed", kind=payload.get("kind"), attempts=self.ATTEMPTS, reason=str(exc))
        except _Refused as exc:
            log.warning("alert webhook refused the alert", kind=payload.get("kind"), reason=str(exc))
        except _Stopping:
            log.warning("alert webhook not tried again: crmsync is stopping", kind=payload.get("kind"))
        else:
            self.delivered += 1
            log.debug("alert delivered", kind=payload.get("kind"), status=payload.get("status"))

    def _pause(self, seconds: float) -> None:
        if self._closing.wait(seconds):
            raise _Stopping

    def _post(self, payload: dict[str, Any]) -> None:
        assert self.url is not None and self._session is not None
        try:
            response = self._session.post(
                self.url,
                json=payload,
                timeout=self.timeout,
                headers={"User-Agent": "crmsync/0.1 (+https://github.com/crmsync)"},
            )
        except requests.Timeout:
            raise _Undelivered(f"no answer within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            # The exception's text names the URL: only its kind is said.
            raise _Undelivered(f"could not connect ({type(exc).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Undelivered(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise _Refused(f"HTTP {response.status_code}")


class _Refused(Exception):
    """The receiver said no (a 4xx other than 429): trying again would change nothing."""


class _Stopping(Exception):
    """The daemon is stopping: a delivery waiting to be tried again is given up."""
