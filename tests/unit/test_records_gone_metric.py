"""Records a read left out (found deleted when fetched) reach the daemon's metrics."""

from __future__ import annotations

from sync.metrics import Metrics


def test_records_gone_are_counted_per_system() -> None:
    metrics = Metrics(["efficy", "shopify"])
    summary = {"outcome": "ok", "systems": {"efficy": {"status": "ok", "records_gone": 2}}}
    metrics.observe(summary, {}, 0.0)
    metrics.observe(summary, {}, 1.0)
    page = metrics.render().decode()
    assert 'crmsync_records_gone_total{system="efficy"} 4.0' in page
    assert 'crmsync_records_gone_total{system="shopify"} 0.0' in page  # every system's series from the start
