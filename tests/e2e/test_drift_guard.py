"""The drift guard, per vendor: the emulator renames a field on every record (as a new API version
might), and the stream stops with the field, the vendor's API and its version in the message;
nothing of it is stored or written. Cycles run in this process (tests/chaos/lab.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.chaos.lab import Lab

NOW = datetime(2026, 11, 20, 10, tzinfo=UTC)
# A field each connector declares for its contacts, as the vendor names it in its answers.
RENAMED = {
    "shopify": ("defaultEmailAddress", "Shopify Admin GraphQL API 2026-10"),
    "woocommerce": ("email", "WooCommerce REST API wc/v3"),
    "lightspeed": ("email", "Lightspeed eCom REST API"),
    "afas": ("Email", "AFAS Profit REST API"),
    "superoffice": ("email/emailAddress", "SuperOffice WebAPI REST v1"),
    "efficy": ("EMAIL1", "efficy JSON RPC"),
    "silvasoft": ("Email", "Silvasoft REST API"),
}
# The bad-input corpus passes at the defaults (small, mixed pages); these pages are small too.
GUARD = "\n[drift_guard]\nmin_records = 5\n"


@pytest.mark.parametrize("system_type", sorted(RENAMED))
def test_a_renamed_field_stops_that_stream_and_nothing_is_written_from_it(
    small_data: dict[str, Any], tmp_path: Path, system_type: str
) -> None:
    field, api = RENAMED[system_type]
    with Lab.start(small_data, tmp_path, types=[system_type], extra=GUARD) as lab:
        first = lab.cycle(NOW)
        assert first.systems[system_type].status == "ok" and first.held is None
        before = lab.final_state()
        url = f"{lab.sandboxes.url(system_type)}/_sandbox/app"
        requests.patch(url, json={"rename_fields": {field: f"{field}_v2"}}, timeout=5).raise_for_status()
        lab.sandboxes.reset_stats()
        report = lab.cycle(NOW, "backfill", full=[system_type])
        outcome = report.systems[system_type]
        assert outcome.status == "failed"
        assert field in str(outcome.error) and api in str(outcome.error), outcome.error
        assert outcome.written == 0 and lab.sandboxes.stats(system_type)["writes"] == 0
        # nothing of the renamed answers reached the state: no record lost its email, none quarantined
        assert lab.final_state() == before


def test_a_renamed_order_total_stops_the_orders_before_any_is_quarantined(
    small_data: dict[str, Any], tmp_path: Path
) -> None:
    """An order total the API moved elsewhere: every order would be quarantined as "missing_amount"
    (and, had it been read as zero, lower everyone's revenue)."""
    with Lab.start(small_data, tmp_path, types=["woocommerce"], extra=GUARD) as lab:
        assert lab.cycle(NOW).systems["woocommerce"].status == "ok"
        url = f"{lab.sandboxes.url('woocommerce')}/_sandbox/app"
        requests.patch(url, json={"rename_fields": {"total": "grand_total"}}, timeout=5).raise_for_status()
        report = lab.cycle(NOW, "backfill", full=["woocommerce"])
        error = str(report.systems["woocommerce"].error)
        assert "orders stream stopped" in error and "'total'" in error
        assert not [q for q in lab.final_state()["crmsync"]["quarantine"] if q.endswith(":missing_amount")]
