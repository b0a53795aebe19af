"""`crmsync plan` as a person reads it, and times as people and scripts read them, against the
sandboxes over real HTTP: names and emails beside every record, Shopify customers by the number its
admin shows, a summary per system first; times in the local zone without fractions for people,
UTC ISO-8601 in whole seconds in JSON."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.kit import Sandboxes, json_out, run_crmsync

AMSTERDAM = {"TZ": "Europe/Amsterdam"}
FIXED = {**AMSTERDAM, "CRMSYNC_NOW": "2026-11-20T10:00:00.654321+00:00"}
GID = "gid://shopify/Customer/"
FRACTION = re.compile(r"\d\d:\d\d:\d\d[.,]\d")
UTC_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


def _local(stamp: str) -> str:
    """A JSON time as `for_people` shows it in Amsterdam, worked out here without crmsync's code."""
    local = datetime.fromisoformat(stamp).astimezone(ZoneInfo("Europe/Amsterdam"))
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or "")


def test_plan_names_every_record_with_a_summary_first(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    planned = run_crmsync("plan", "-c", str(config), "--json", env=FIXED)
    assert planned.returncode == 0, planned.stderr
    doc = json_out(planned)
    assert doc["started_at"] == doc["finished_at"] == "2026-11-20T10:00:00+00:00"  # UTC, no fraction
    changes = doc["changes"]
    assert changes and all(set(c) == {"system", "id", "name", "email", "add_tags", "remove_tags", "set_fields"}
                           for c in changes)  # fmt: skip
    fixture = {c["id"]: c for c in small_data["shopify"]["customers"]}
    shop = [c for c in changes if c["system"] == "shopify"]
    assert shop
    for change in shop:
        customer = fixture[change["id"]]  # the stored gid, whole
        assert change["name"] == f"{customer['firstName']} {customer['lastName']}".strip()
        assert change["email"] == customer["defaultEmailAddress"]["emailAddress"].lower()
    assert all(c["name"] and c["email"] for c in changes)  # every synthetic person has both

    human = run_crmsync("plan", "-c", str(config), env=FIXED)
    assert human.returncode == 0, human.stderr
    out = human.stdout
    assert "plan of 2026-11-20 11:00:00 CET:" in out  # the local zone (CET in November), no fraction
    assert f"{len(changes)} records would change" in out
    assert GID not in out and "…" not in out and not FRACTION.search(out)
    heads = []
    for change in shop:
        head = f"  {change['id'].removeprefix(GID)}  {change['name']}  {change['email']}"
        assert head in out.splitlines(), head
        heads.append(out.index(head + "\n"))
        block = out[heads[-1] :].split("\n  7")[0].split("\n\n")[0]
        for tag in change["add_tags"]:
            assert f"+{tag}" in block
        for tag in change["remove_tags"]:
            assert f"-{tag}" in block
        for field, value in change["set_fields"].items():
            assert f'{field} = "{value}"' in block if value is not None else f"{field} cleared" in block
    by_position = [c["name"] for _, c in sorted(zip(heads, shop, strict=True))]
    assert by_position == sorted(by_position, key=str.casefold)  # a person is easy to find
    # the summary first: per system, how many records join each segment, before any record
    summary = out[: min(heads)]
    joined = Counter(tag.removeprefix("crmsync:") for c in shop for tag in c["add_tags"])
    block = summary.split("\nshopify: ")[1].split("\n\n")[0]
    rows = {parts[0]: parts[1] for parts in (line.split() for line in block.splitlines()) if len(parts) == 3}
    assert {segment: int(rows[segment]) for segment in joined} == dict(joined)
    assert summary.index("\nshopify: ") < summary.index("\nwoocommerce: ")


def test_times_for_people_are_local_and_whole_seconds_and_utc_in_json(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    synced = run_crmsync("sync", "-c", str(config), "--json", env=AMSTERDAM)  # the real clock
    assert synced.returncode == 0, synced.stderr
    doc = json_out(synced)
    assert UTC_SECONDS.match(doc["started_at"]) and UTC_SECONDS.match(doc["finished_at"]), doc
    status_doc = json_out(run_crmsync("status", "-c", str(config), "--json", env=AMSTERDAM))
    stored = status_doc["systems"]["shopify"]["last"]["finished_at"]
    assert UTC_SECONDS.match(stored) and UTC_SECONDS.match(status_doc["last_run"]["started_at"]), status_doc
    status = run_crmsync("status", "-c", str(config), env=AMSTERDAM)
    assert status.returncode == 0, status.stderr
    assert _local(stored) in status.stdout  # the stored instant, local, in whole seconds
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T", status.stdout)
    assert not FRACTION.search(status.stdout) and "+00:00" not in status.stdout
    again = run_crmsync("sync", "-c", str(config), env=AMSTERDAM)
    assert again.returncode == 0, again.stderr
    assert re.search(r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T", again.stdout)
    assert not FRACTION.search(again.stdout)
    report = run_crmsync("report", "-c", str(config), env=AMSTERDAM)
    assert report.returncode == 0, report.stderr
    assert re.search(r"run of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d CES?T", report.stdout)
    report_doc = json_out(run_crmsync("report", "-c", str(config), "--json", env=AMSTERDAM))
    assert UTC_SECONDS.match(report_doc["generated_at"]) and UTC_SECONDS.match(report_doc["runs"]["latest"]["at"])
