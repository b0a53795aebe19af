"""`crmsync run` with `[service]` and `[alerts]` (CONTRACTS §6, issue 15): a daemon on a one-second
schedule against three sandboxes, one of which (efficy) refuses its credentials from the start.

- /healthz answers 503 naming efficy (and why), the others healthy with their last success;
  /metrics parses with prometheus-client's parser and shows efficy's failures in a row and the
  others' last-success timestamps and read counters; once the fault clears, /healthz answers 200
  and the written counters move.
- The alert webhook (a loopback receiver, whose first answer is a 503: the POST is retried) gets one
  POST per alert kind, each when its condition starts and never again while it lasts:
  writes_held and failing_cycles (efficy failing), rejected_share (a Shopify customer that already
  carries the most tags Shopify allows refuses the write), read_swing (WooCommerce's customer list
  starts leaving out an item per page: its full read drops by half); and a "resolved" POST as each
  clears. No POST and no log line carries a secret or the webhook's token.
"""

from __future__ import annotations

import json
import re
import signal
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from connectors.shopify.sandbox import MAX_TAGS
from tests.chaos.secrets import all_secrets
from tests.kit import Sandboxes, secret, spawn, wait_until
from tests.unit.test_alerts import Receiver

TYPES = ("shopify", "woocommerce", "efficy")
WOO_CUSTOMERS = "GET /wp-json/wc/v3/customers"
ISO_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")


def events(stderr: str, name: str) -> list[dict[str, Any]]:
    found = []
    for line in stderr.splitlines():
        if f'"event": "{name}"' in line:
            found.append(json.loads(line))
    return found


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = requests.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics[(name, frozenset(labels.items()))]


def health(url: str) -> tuple[int, dict[str, Any]]:
    response = requests.get(f"{url}/healthz", timeout=5)
    return response.status_code, response.json()


@pytest.fixture
def receiver() -> Any:
    made = Receiver(failures=1)
    yield made
    made.close()


# Five of its waits allow 60 s each, and it sees five or more cycles of a daemon: under a loaded
# machine a cycle took 6-9 s (a helper's runs with four busy processes on two cores: 48 s in all),
# so the suite's 120 s could end it while every wait was still within its own deadline.
@pytest.mark.timeout(400)
def test_health_metrics_and_every_alert_kind_from_a_running_daemon(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path, receiver: Receiver
) -> None:
    sandboxes = start_sandboxes_fixture({t: small_data[t] for t in TYPES}, time_scale=50)
    victim = str(small_data["shopify"]["customers"][0]["id"])
    sandboxes.patch_customer("shopify", victim, {"tags": [f"klant-{n}" for n in range(MAX_TAGS)]})
    sandboxes.fault("efficy", match="*", fault="auth", times=100_000)
    hook_token = secret(f"hooktoken{uuid.uuid4().hex}")
    alerts = f"""
[service]
listen = "127.0.0.1:0"

[alerts]
failing_cycles = 2
rejected_share = 0.05
read_swing = 0.3
writes_held = true
webhook_url = "{receiver.url}/hook/{hook_token}"
webhook_timeout = "2s"
deployment = "e2e-service"
"""
    config = sandboxes.config(tmp_path, alerts, woocommerce="page_size = 2")
    config.write_text(config.read_text().replace('interval = "15m"', 'interval = "1s"'))

    def fired(kind: str, system: str | None, status: str = "firing") -> bool:
        return any(b["kind"] == kind and b["system"] == system and b["status"] == status for b in receiver.bodies)

    daemon = spawn("run", "-c", str(config), env={"CRMSYNC_LOG_LEVEL": "info"})
    try:
        assert wait_until(lambda: bool(events(daemon.stderr(), "service listening")), timeout=30), daemon.stderr()
        url = events(daemon.stderr(), "service listening")[0]["url"]
        assert url.startswith("http://127.0.0.1:")

        # ----- efficy refuses its credentials: writes held, efficy failing ---------------------------
        assert wait_until(lambda: fired("writes_held", None) and fired("failing_cycles", "efficy"), timeout=60), (
            receiver.bodies,
            daemon.stderr()[-3000:],
        )
        status, doc = health(url)
        assert status == 503 and doc["ok"] is False and doc["writes_held"] is True
        assert doc["systems"]["efficy"]["ok"] is False and doc["systems"]["efficy"]["last_success"] is None
        assert "credentials refused" in doc["systems"]["efficy"]["reason"]
        for name in ("shopify", "woocommerce"):
            assert doc["systems"][name]["ok"] is True and doc["systems"][name]["reason"] is None
            assert ISO_SECONDS.match(doc["systems"][name]["last_success"]), doc
        metrics = scrape(url)
        assert value(metrics, "crmsync_system_failures_in_a_row", system="efficy") >= 2
        assert value(metrics, "crmsync_system_failures_in_a_row", system="shopify") == 0
        assert value(metrics, "crmsync_cycles_total", outcome="failed") >= 2
        assert value(metrics, "crmsync_cycles_total", outcome="ok") == 0
        assert value(metrics, "crmsync_writes_held") == 1
        assert value(metrics, "crmsync_last_success_timestamp_seconds", system="efficy") == 0
        for name in ("shopify", "woocommerce"):
            last = value(metrics, "crmsync_last_success_timestamp_seconds", system=name)
            assert abs(last - datetime.fromisoformat(doc["systems"][name]["last_success"]).timestamp()) < 5
            assert value(metrics, "crmsync_records_written_total", system=name) == 0  # held
        assert value(metrics, "crmsync_records_read_total", system="shopify", stream="contacts") >= 15
        assert value(metrics, "crmsync_records_read_total", system="woocommerce", stream="contacts") >= 16
        assert value(metrics, "crmsync_records_read_total", system="efficy", stream="contacts") == 0
        assert value(metrics, "crmsync_token_renewals_total", system="shopify") >= 1  # client credentials
        assert value(metrics, "crmsync_cycle_duration_seconds_count") >= 2
        assert value(metrics, "crmsync_alerts_active", kind="writes_held") == 1

        # ----- the fault clears: healthy, writes go out, Shopify refuses one customer ---------------
        requests.delete(f"{sandboxes.url('efficy')}/_sandbox/faults", timeout=5).raise_for_status()
        assert wait_until(lambda: health(url)[0] == 200, timeout=60), health(url)
        status, doc = health(url)
        assert doc["ok"] is True and doc["writes_held"] is False
        assert all(entry["ok"] and ISO_SECONDS.match(entry["last_success"]) for entry in doc["systems"].values())
        assert wait_until(
            lambda: (
                fired("rejected_share", "shopify")
                and fired("writes_held", None, "resolved")
                and fired("failing_cycles", "efficy", "resolved")
            ),
            timeout=60,
        ), (receiver.bodies, daemon.stderr()[-3000:])
        metrics = scrape(url)
        for name in TYPES:
            assert value(metrics, "crmsync_records_written_total", system=name) > 0, name
            assert value(metrics, "crmsync_last_success_timestamp_seconds", system=name) > 0
        assert value(metrics, "crmsync_records_rejected_total", system="shopify") >= 1
        assert value(metrics, "crmsync_pending_retries", system="shopify") == 1
        assert value(metrics, "crmsync_writes_held") == 0
        assert value(metrics, "crmsync_system_failures_in_a_row", system="efficy") == 0

        # ----- WooCommerce starts leaving out a customer per page: its full read halves --------------
        sandboxes.fault("woocommerce", match=WOO_CUSTOMERS, fault="skip-item", times=100_000)
        assert wait_until(lambda: fired("read_swing", "woocommerce"), timeout=60), (receiver.bodies, daemon.stderr())
        requests.delete(f"{sandboxes.url('woocommerce')}/_sandbox/faults", timeout=5).raise_for_status()
        assert wait_until(lambda: fired("read_swing", "woocommerce", "resolved"), timeout=60), receiver.bodies
        cycles_seen = value(scrape(url), "crmsync_cycles_total", outcome="ok")

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
    with pytest.raises(requests.ConnectionError):  # the service stopped with the daemon
        requests.get(f"{url}/healthz", timeout=2)

    # Every notice delivered once: a repeat (an attempt answered after crmsync gave up on it) would
    # carry the same id, which is what a receiver drops it by.
    ids = Counter(b["id"] for b in receiver.bodies)
    assert all(n == 1 for n in ids.values()), ("a notice delivered twice", receiver.received)
    # One POST per alert as it started, one as it cleared: never one per cycle.
    started = Counter((b["kind"], b["system"]) for b in receiver.bodies if b["status"] == "firing")
    assert started == {
        ("writes_held", None): 1,
        ("failing_cycles", "efficy"): 1,
        ("rejected_share", "shopify"): 1,
        ("read_swing", "woocommerce"): 1,
    }, receiver.bodies
    assert cycles_seen >= 3  # rejected_share stayed true in the cycles after it started, quietly
    cleared = Counter((b["kind"], b["system"]) for b in receiver.bodies if b["status"] == "resolved")
    assert cleared >= Counter(
        {("writes_held", None): 1, ("failing_cycles", "efficy"): 1, ("read_swing", "woocommerce"): 1}
    )
    assert receiver.attempts == len(receiver.bodies) + 1  # the first POST got a 503 and was sent again
    swing = next(b for b in receiver.bodies if b["kind"] == "read_swing")
    assert swing["details"]["stream"] == "contacts" and swing["details"]["count"] < swing["details"]["median"]
    rejected = next(b for b in receiver.bodies if b["kind"] == "rejected_share")
    assert rejected["details"]["rejected"] >= 1 and rejected["details"]["share"] > 0.05
    for body in receiver.bodies:
        assert body["path"] == f"/hook/{hook_token}" and body["deployment"] == "e2e-service"
        assert ISO_SECONDS.match(body["at"]) and isinstance(body["details"], dict) and body["message"]
    sent = json.dumps([{k: v for k, v in b.items() if k != "path"} for b in receiver.bodies])
    leaked = [s[:4] for s in all_secrets() if len(s) >= 4 and s in sent]
    assert not leaked and hook_token not in sent

    err = daemon.stderr()
    assert hook_token not in err and "Traceback" not in err
    logged = Counter((e["kind"], e["system"]) for e in events(err, "alert"))
    assert logged == started and all(e["level"] == "error" for e in events(err, "alert"))
    upcoming = events(err, "next cycle at")
    assert len(upcoming) >= 4 and all(ISO_SECONDS.match(e["at"]) for e in upcoming)
