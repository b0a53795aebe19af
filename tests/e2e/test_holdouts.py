"""Holdouts against the sandboxes (CONTRACTS §6, issue 18): the held-out members of a segment are
members in the state and in `explain`, but no system gets the segment for them; the others get it;
a second sync changes nothing; `report --members --csv` lists only the tagged, and `report
--campaign` splits the segment the same way."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from mapping.holdout import held_out
from tests.kit import Sandboxes, json_out, run_crmsync

SHARE = 0.5


def segments_written(sandboxes: Sandboxes, system: str, record_id: str) -> set[str]:
    """The segments a Shopify (tags) or WooCommerce (the segments meta field) customer carries."""
    customer = sandboxes.customer(system, record_id)
    if system == "shopify":
        return {tag.removeprefix("crmsync:") for tag in customer["tags"] if tag.startswith("crmsync:")}
    meta = {row["key"]: row["value"] for row in customer["meta_data"]}
    return {name for name in str(meta.get("crmsync_segments") or "").split(",") if name}


def test_held_out_members_are_members_but_get_no_tag_and_the_lists_agree(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    text = config.read_text()
    config.write_text(text.replace("[writeback]", f"[segments]\nholdout = {{ friends = {SHARE} }}\n\n[writeback]", 1))
    first = run_crmsync("sync", "-c", str(config), "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    with closing(sqlite3.connect(tmp_path / "crmsync.db")) as db:
        friends = sorted(
            pid
            for pid, segs in db.execute("SELECT profile_id, segments FROM profiles")
            if "friends" in json.loads(segs)
        )
        members = db.execute("SELECT profile_id, system, record_id FROM profile_members").fetchall()
    held = {pid for pid in friends if held_out("friends", pid, SHARE)}
    tagged = set(friends) - held
    assert held and tagged, (held, tagged)  # both sides present in this fixture
    checked: dict[str, int] = {"held": 0, "tagged": 0}
    for pid, system, record_id in members:
        if pid not in friends or system not in ("shopify", "woocommerce"):
            continue
        carries = "friends" in segments_written(sandboxes, system, record_id)
        assert carries == (pid in tagged), (pid, system, record_id)
        checked["held" if pid in held else "tagged"] += 1
    assert checked["held"] and checked["tagged"], checked

    again = run_crmsync("sync", "-c", str(config), "--json")
    assert all(s["planned"] == 0 for s in json_out(again)["systems"].values())  # the same choice every run

    listed = run_crmsync("report", "--members", "friends", "--csv", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert {row["profile_id"] for row in rows} == tagged
    assert all(row["email"] and row["member_since"] and row["systems"] for row in rows)

    someone = sorted(held)[0]
    explained: dict[str, Any] = json_out(run_crmsync("explain", someone, "-c", str(config), "--json"))
    entry = next(s for s in explained["segments"] if s["name"] == "friends")
    assert entry["held_out"] is True

    campaign = run_crmsync("report", "--campaign", "friends", "--since", "2020-01-01", "-c", str(config), "--json")
    assert campaign.returncode == 0, campaign.stderr
    doc = json_out(campaign)
    assert (doc["tagged"]["people"], doc["holdout"]["people"]) == (len(tagged), len(held))
    assert doc["holdout_share"] == SHARE
    refused = run_crmsync("report", "--campaign", "friends", "-c", str(config))
    assert refused.returncode == 2 and "--since" in refused.stderr
