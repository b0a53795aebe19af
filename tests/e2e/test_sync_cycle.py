"""`crmsync sync` as a user runs it, against both sandboxes over real HTTP; the main cycle on both
state backends (SQLite, and PostgreSQL with `[state] url` pointing at a database of the test's own)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.kit import Sandboxes, json_out, run_crmsync

SHOP_PREFIX = "crmsync:"


def owned_tags(customer: dict[str, Any]) -> set[str]:
    return {t[len(SHOP_PREFIX) :] for t in customer["tags"] if t.lower().startswith(SHOP_PREFIX)}


def woo_meta(customer: dict[str, Any]) -> dict[str, Any]:
    return {m["key"]: m["value"] for m in customer["meta_data"]}


@pytest.fixture
def cycle_state(backend: str, request: pytest.FixtureRequest) -> str:
    """`[state] url` on the test's backend: the default SQLite file, or a new PostgreSQL database."""
    return "sqlite:///crmsync.db" if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))


def test_sync_writes_then_a_second_sync_writes_nothing(sandboxes: Sandboxes, tmp_path: Path, cycle_state: str) -> None:
    config = sandboxes.config(tmp_path, state=cycle_state)
    first = run_crmsync("sync", "-c", str(config), "--json")
    assert first.returncode == 0, first.stderr
    doc = json_out(first)
    assert set(doc) == {"run_id", "dry_run", "started_at", "finished_at", "profiles", "quarantined", "systems", "held"}
    assert doc["held"] is None
    assert doc["dry_run"] is False and doc["profiles"] == 40  # 40 people, the overlap folded in
    for name in ("shopify", "woocommerce"):
        system = doc["systems"][name]
        assert set(system) == {
            "type",
            "status",
            "error",
            "read",
            "quarantined",
            "planned",
            "written",
            "rejected",
            "write_calls",
        }
        assert system["status"] == "ok" and system["written"] == system["planned"] > 0
        assert system["write_calls"] >= 1
    assert doc["systems"]["woocommerce"]["write_calls"] == 1  # everyone fits one batch of <= 100
    sandboxes.reset_stats()
    second = run_crmsync("sync", "-c", str(config), "--json")
    assert second.returncode == 0, second.stderr
    again = json_out(second)
    for name in ("shopify", "woocommerce"):
        assert again["systems"][name]["planned"] == 0
        assert again["systems"][name]["write_calls"] == 0
        assert sandboxes.stats(name)["writes"] == 0  # the sandboxes agree: not one state-changing request


def test_people_in_both_shops_get_one_profile_and_the_same_segments(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path, cycle_state: str
) -> None:
    assert run_crmsync("sync", "-c", str(sandboxes.config(tmp_path, state=cycle_state))).returncode == 0
    shop_by_email = {
        c["defaultEmailAddress"]["emailAddress"].lower(): c["id"] for c in small_data["shopify"]["customers"]
    }
    pairs = [
        (shop_by_email[c["email"]], str(c["id"]))
        for c in small_data["woocommerce"]["customers"]
        if c["email"] in shop_by_email
    ]
    assert pairs, "the fixture must hold people who shop in both stores"
    for shop_id, woo_id in pairs:
        shop_customer = sandboxes.customer("shopify", shop_id)
        woo_customer = sandboxes.customer("woocommerce", woo_id)
        # different case in the two shops, one person all the same
        assert shop_customer["defaultEmailAddress"]["emailAddress"] != woo_customer["email"]
        segments = owned_tags(shop_customer)
        assert segments and segments == set(woo_meta(woo_customer)["crmsync_segments"].split(","))
        tier = next(s for s in segments if s.startswith("tier-"))[len("tier-") :]
        assert woo_meta(woo_customer)["crmsync_loyalty_tier"] == tier
        assert {(m["namespace"], m["key"], m["value"]) for m in shop_customer["metafields"]} >= {
            ("crmsync", "loyalty_tier", tier)
        }


def test_foreign_tags_and_fields_survive_and_crmsync_tags_follow_the_segments(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    shop_id = small_data["shopify"]["customers"][0]["id"]
    woo_id = str(small_data["woocommerce"]["customers"][0]["id"])
    sandboxes.patch_customer(
        "shopify",
        shop_id,
        {
            "tags": ["handmatig", "VIP klant", "crmsync:old-segment"],
            "metafields": [
                {"namespace": "custom", "key": "note", "type": "single_line_text_field", "value": "bel terug"}
            ],
        },
    )
    sandboxes.patch_customer("woocommerce", woo_id, {"meta_data": [{"key": "loyalty_points", "value": "120"}]})
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    shop = sandboxes.customer("shopify", shop_id)
    assert {"handmatig", "VIP klant"} <= set(shop["tags"])
    assert "crmsync:old-segment" not in shop["tags"]  # crmsync's namespace: it goes
    assert {"namespace": "custom", "key": "note", "type": "single_line_text_field", "value": "bel terug"} in shop[
        "metafields"
    ]
    assert woo_meta(sandboxes.customer("woocommerce", woo_id))["loyalty_points"] == "120"
    before = owned_tags(shop)
    assert before & {"friends", "supporters", "acquaintances", "passers-by"}

    # Raise the bar so that nobody is high-value any more: friends become supporters and so on.
    strict = config.read_text() + "\n[segments.quadrant]\nhigh_value_min_revenue = 1000000\n"
    config.write_text(strict)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    after_shop = sandboxes.customer("shopify", shop_id)
    assert not owned_tags(after_shop) & {"friends", "acquaintances"}
    assert owned_tags(after_shop) & {"supporters", "passers-by"}
    assert {"handmatig", "VIP klant"} <= set(after_shop["tags"])
    everyone = [sandboxes.customer("woocommerce", str(c["id"])) for c in small_data["woocommerce"]["customers"]]
    assert all("friends" not in woo_meta(c)["crmsync_segments"].split(",") for c in everyone)
    assert all(woo_meta(c).get("loyalty_points", "120") == "120" for c in everyone)
    for customer in (sandboxes.customer("shopify", c["id"]) for c in small_data["shopify"]["customers"]):
        assert len(customer["tags"]) == len({t.lower() for t in customer["tags"]})  # no duplicate tags


def test_a_changed_tag_prefix_leaves_the_old_tags_on_every_customer(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """Tags under the old prefix are no longer crmsync's. Before, the plan still removed them where
    the ledger's last push was newer than the last read (here: everyone the first sync wrote)."""
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    ids = [c["id"] for c in small_data["shopify"]["customers"]]
    before = {gid: owned_tags(sandboxes.customer("shopify", gid)) for gid in ids}
    assert sum(1 for tags in before.values() if tags) > 10
    assert 'tag_prefix = "crmsync:"' in config.read_text()
    config.write_text(config.read_text().replace('tag_prefix = "crmsync:"', 'tag_prefix = "seg:"'))
    plan = json_out(run_crmsync("plan", "-c", str(config), "--json"))
    removed = [t for c in plan["changes"] for t in c["remove_tags"]]
    assert not [t for t in removed if t.startswith(SHOP_PREFIX)]
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    for gid in ids:
        customer = sandboxes.customer("shopify", gid)
        assert owned_tags(customer) == before[gid]  # every old tag stays where it was
        assert {t[len("seg:") :] for t in customer["tags"] if t.startswith("seg:")} == before[gid]


def test_dry_run_and_plan_write_nothing(sandboxes: Sandboxes, tmp_path: Path, cycle_state: str) -> None:
    config = sandboxes.config(tmp_path, state=cycle_state)
    planned = run_crmsync("plan", "-c", str(config), "--json")
    assert planned.returncode == 0, planned.stderr
    doc = json_out(planned)
    assert doc["dry_run"] is True
    assert len(doc["changes"]) == sum(s["planned"] for s in doc["systems"].values()) > 0
    change = next(c for c in doc["changes"] if c["system"] == "shopify")
    # CONTRACTS §2's keys, and whose record it is (additive: name and email, null where unknown)
    assert set(change) == {"system", "id", "name", "email", "add_tags", "remove_tags", "set_fields"}
    assert all(tag.startswith("crmsync:") for tag in change["add_tags"])
    dry = run_crmsync("sync", "--dry-run", "-c", str(config), "--json")
    assert json_out(dry)["systems"]["shopify"]["written"] == 0
    assert sandboxes.stats("shopify")["writes"] == 0 and sandboxes.stats("woocommerce")["writes"] == 0


def test_human_output_is_a_summary_table(sandboxes: Sandboxes, tmp_path: Path) -> None:
    result = run_crmsync("sync", "-c", str(sandboxes.config(tmp_path)))
    assert result.returncode == 0
    assert "shopify" in result.stdout and "woocommerce" in result.stdout and "profiles: 40" in result.stdout
    assert result.stdout.count("ok") >= 2


def test_status_reports_the_last_cycle(sandboxes: Sandboxes, tmp_path: Path, cycle_state: str) -> None:
    config = sandboxes.config(tmp_path, state=cycle_state)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    status = run_crmsync("status", "-c", str(config), "--json")
    assert status.returncode == 0, status.stderr
    doc = json_out(status)
    assert doc["lock"] is None and doc["pending"] == []
    assert doc["systems"]["shopify"]["last_ok"]["status"] == "ok"
    assert doc["systems"]["woocommerce"]["last"]["counts"]["written"] > 0


def test_backfill_reads_everything_again_and_resumes(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    sandboxes = start_sandboxes_fixture(small_data, time_scale=50)
    config = sandboxes.config(tmp_path, shopify="page_size = 5", woocommerce="page_size = 5")
    first = run_crmsync("backfill", "-c", str(config), "--json")
    assert first.returncode == 0, first.stderr
    contacts = len(small_data["shopify"]["customers"])
    assert json_out(first)["systems"]["shopify"]["read"]["contacts"] == contacts
    again = run_crmsync("backfill", "--system", "shopify", "-c", str(config), "--json")
    doc = json_out(again)
    assert doc["systems"]["shopify"]["read"]["contacts"] == contacts  # everything, not just what changed
    assert doc["systems"]["shopify"]["write_calls"] == 0
    unknown = run_crmsync("backfill", "--system", "magento", "-c", str(config))
    assert unknown.returncode == 2 and "magento" in unknown.stderr


def test_crmsync_now_moves_time_for_every_computation(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    loyal = {"friends", "supporters"}
    shop_ids = [c["id"] for c in small_data["shopify"]["customers"]]
    assert any(owned_tags(sandboxes.customer("shopify", i)) & loyal for i in shop_ids)
    # Three years on, nobody has ordered recently: nobody is loyal, nobody spent in the last 12 months.
    later = run_crmsync("sync", "-c", str(config), "--json", env={"CRMSYNC_NOW": "2029-12-01T00:00:00Z"})
    assert later.returncode == 0, later.stderr
    for shop_id in shop_ids:
        tags = owned_tags(sandboxes.customer("shopify", shop_id))
        assert not tags & loyal and "tier-bronze" in tags, tags
    for customer in small_data["woocommerce"]["customers"]:
        segments = woo_meta(sandboxes.customer("woocommerce", str(customer["id"])))["crmsync_segments"].split(",")
        assert not set(segments) & loyal and "tier-bronze" in segments
