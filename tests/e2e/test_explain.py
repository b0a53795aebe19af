"""`crmsync explain` on synced sandbox data, and field-map overrides from the config."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.kit import Sandboxes, json_out, run_crmsync


def _merged_pair(small_data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    woo = {c["email"]: c for c in small_data["woocommerce"]["customers"]}
    for customer in small_data["shopify"]["customers"]:
        email = customer["defaultEmailAddress"]["emailAddress"].lower()
        if email in woo:
            return customer, woo[email]
    raise AssertionError("the fixture must hold a person in both shops")


def test_explain_a_merged_profile_by_every_kind_of_key(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    shop, woo = _merged_pair(small_data)
    by_record = run_crmsync("explain", "-c", str(config), "--json", f"woocommerce:{woo['id']}")
    assert by_record.returncode == 0, by_record.stderr
    doc = json_out(by_record)
    assert set(doc) >= {"profile_id", "aliases", "records", "links", "fields", "traits", "segments"}
    records = {(r["system"], r["id"]) for r in doc["records"]}
    assert {("shopify", shop["id"]), ("woocommerce", str(woo["id"]))} <= records
    shop_record = next(r for r in doc["records"] if r["system"] == "shopify")
    assert shop_record["raw"]["defaultEmailAddress"]["emailAddress"] == shop["defaultEmailAddress"]["emailAddress"]
    assert shop_record["normalised"]["email"] == woo["email"]  # different case at the source, one address
    # the links say why: together they connect every record of the profile
    joined = {f"{system}:{rid}": f"{system}:{rid}" for system, rid in records}

    def root(key: str) -> str:
        while joined[key] != key:
            key = joined[key]
        return key

    for link in doc["links"]:
        joined[root(link["a"])] = root(link["b"])
    assert len({root(key) for key in joined}) == 1
    assert {link["by"] for link in doc["links"]} <= {"email", "mobile", "record"}
    assert doc["fields"]["email"]["value"] == woo["email"]
    assert doc["fields"]["email"]["from"] in (f"shopify:{shop['id']}", f"woocommerce:{woo['id']}")
    assert doc["fields"]["email"]["why"]
    assert doc["traits"]["order_count"] >= 0
    assert {s["name"] for s in doc["segments"]} & {"friends", "supporters", "acquaintances", "passers-by"}
    assert all(s["why"] for s in doc["segments"])
    for key in (shop["defaultEmailAddress"]["emailAddress"].upper(), doc["profile_id"], f"shopify:{shop['id']}"):
        again = run_crmsync("explain", "-c", str(config), "--json", key)
        assert again.returncode == 0, (key, again.stderr)
        assert json_out(again)["profile_id"] == doc["profile_id"]
    phone = (shop.get("defaultPhoneNumber") or {}).get("phoneNumber")
    if phone:
        by_phone = run_crmsync("explain", "-c", str(config), "--json", phone)
        assert json_out(by_phone)["profile_id"] == doc["profile_id"]
    human = run_crmsync("explain", "-c", str(config), f"woocommerce:{woo['id']}")
    assert human.returncode == 0 and "why these records are one person" in human.stdout


def test_explain_finds_nothing_with_exit_4(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    before = run_crmsync("explain", "-c", str(config), "nobody@example.nl")
    assert before.returncode == 4 and "no state" in before.stderr
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    for key in ("nobody@example.nl", "shopify:gid://shopify/Customer/1", "p_000000000000", "+31 6 0000 0000", "?"):
        result = run_crmsync("explain", "-c", str(config), key)
        assert result.returncode == 4, key
        assert "no profile matches" in result.stderr


def test_field_overrides_from_the_config_and_one_warning_per_missing_field(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(
        tmp_path,
        woocommerce='fields = { company = "billing.city", mobile = { path = "billing.no_such_field", '
        'normaliser = "phone" } }',
    )
    result = run_crmsync("sync", "-c", str(config), "--log-json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    missing = [e for e in events if e["event"] == "mapped field missing"]
    assert len(missing) == 1, missing  # once per run and field, not once per record
    assert missing[0]["field"] == "mobile" and missing[0]["records"] == len(small_data["woocommerce"]["customers"])
    woo = small_data["woocommerce"]["customers"][0]
    doc = json_out(run_crmsync("explain", "-c", str(config), "--json", f"woocommerce:{woo['id']}"))
    record = next(r for r in doc["records"] if r["system"] == "woocommerce")
    assert record["normalised"]["company"] == woo["billing"]["city"]  # the override won


def test_a_bad_field_override_is_a_config_error(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path, woocommerce='fields = { favourite_colour = "meta_data.0.value" }')
    result = run_crmsync("check", "-c", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith(
        "config error: systems.woocommerce.fields: 'favourite_colour' is not a contact field"
    )
    config = sandboxes.config(
        tmp_path, woocommerce='fields = { city = { path = "billing.city", normaliser = "magic" } }'
    )
    result = run_crmsync("check", "-c", str(config))
    assert result.returncode == 2 and "systems.woocommerce.fields.city.normaliser: unknown normaliser" in result.stderr


def test_explain_finds_a_shopify_customer_by_the_number_its_admin_shows(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    shop, _ = _merged_pair(small_data)
    gid = shop["id"]
    number = gid.removeprefix("gid://shopify/Customer/")
    assert number.isdigit() and number != gid
    by_gid = json_out(run_crmsync("explain", "-c", str(config), "--json", f"shopify:{gid}"))
    for key in (f"shopify:{number}", f"shopify: 00{number} "):
        result = run_crmsync("explain", "-c", str(config), "--json", key)
        assert result.returncode == 0, (key, result.stderr)
        doc = json_out(result)
        assert doc["profile_id"] == by_gid["profile_id"]
        assert ("shopify", gid) in {(r["system"], r["id"]) for r in doc["records"]}  # the stored id, whole
    human = run_crmsync("explain", "-c", str(config), f"shopify:{number}")
    assert human.returncode == 0 and f"shopify:{gid}" in human.stdout
    missing = run_crmsync("explain", "-c", str(config), "shopify:999999999")
    assert missing.returncode == 4 and "no profile matches" in missing.stderr
    # a number names a record of the system it is typed with only
    woo_number = run_crmsync("explain", "-c", str(config), f"woocommerce:{number}")
    assert woo_number.returncode == 4


def test_explain_times_are_utc_in_json_and_local_for_people(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    shop, _ = _merged_pair(small_data)
    amsterdam = {"TZ": "Europe/Amsterdam"}
    doc = json_out(run_crmsync("explain", "-c", str(config), "--json", f"shopify:{shop['id']}", env=amsterdam))
    utc = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
    stamps = [r["normalised"]["updated_at"] for r in doc["records"] if "updated_at" in r["normalised"]]
    stamps += [doc["traits"][name] for name in ("first_order", "last_order") if doc["traits"].get(name)]
    assert stamps and all(utc.match(stamp) for stamp in stamps), stamps
    human = run_crmsync("explain", "-c", str(config), f"shopify:{shop['id']}", env=amsterdam)
    last = datetime.fromisoformat(doc["traits"]["last_order"]).astimezone(ZoneInfo("Europe/Amsterdam"))
    assert f"{last:%Y-%m-%d %H:%M:%S} {last.tzname()}" in human.stdout
    assert doc["traits"]["last_order"] not in human.stdout


def test_explain_after_a_dry_run_answers_with_what_was_written_and_shows_the_preview_apart(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """A dry run saves its verdicts (it plans from them) but writes nothing. Previewing a config
    change with `sync --dry-run`, then asking explain why someone is in a segment, must answer
    with what the last recorded run concluded (what every system holds), and show the dry run's
    differing verdicts apart, labelled as such; not the preview as if it had been written."""
    state = "sqlite:///crmsync.db" if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    rule = '[[segments.rules]]\nname = "{}"\nwhen = "order_count >= 0"\n'
    config = sandboxes.config(tmp_path, state=state, extra=rule.format("probe-old"))
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    shop, _ = _merged_pair(small_data)
    key = f"shopify:{shop['id']}"
    recorded = json_out(run_crmsync("explain", "-c", str(config), "--json", key))
    assert "probe-old" in {s["name"] for s in recorded["segments"]}

    config = sandboxes.config(tmp_path, state=state, extra=rule.format("probe-new"))  # the change to preview
    assert run_crmsync("sync", "--dry-run", "-c", str(config)).returncode == 0
    tags = {t.lower() for t in sandboxes.customer("shopify", shop["id"])["tags"]}
    assert "crmsync:probe-old" in tags and "crmsync:probe-new" not in tags  # what the shop holds
    result = run_crmsync("explain", "-c", str(config), "--json", key)
    assert result.returncode == 0, result.stderr
    doc = json_out(result)
    names = {s["name"] for s in doc["segments"]}
    assert "probe-old" in names and "probe-new" not in names, names
    assert names - {"probe-old"} == {s["name"] for s in recorded["segments"]} - {"probe-old"}
    assert recorded["dry_run"] is None and recorded["recorded_run"]["command"] == "sync"
    why_old = next(s["why"] for s in doc["segments"] if s["name"] == "probe-old")
    assert "not in the configuration now" in why_old  # the rule it met was changed since
    assert doc["recorded_run"]["run_id"] == recorded["recorded_run"]["run_id"]
    preview = doc["dry_run"]
    assert preview["command"] == "sync --dry-run"
    assert preview["entered"] == ["probe-new"] and preview["left"] == ["probe-old"]
    assert "probe-new" in {s["name"] for s in preview["segments"]}
    assert all(s["why"] for s in preview["segments"])
    assert any("dry run" in caveat and "probe-new" in caveat for caveat in doc["caveats"]), doc.get("caveats")
    human = run_crmsync("explain", "-c", str(config), key)
    assert human.returncode == 0 and "sync --dry-run" in human.stdout and "probe-new" in human.stdout

    # Once a sync writes it, explain says so, with nothing left to preview.
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    after = json_out(run_crmsync("explain", "-c", str(config), "--json", key))
    assert "probe-new" in {s["name"] for s in after["segments"]} and after["dry_run"] is None
    assert after["recorded_run"]["run_id"] != doc["recorded_run"]["run_id"]


def test_explain_after_only_a_dry_run_says_nothing_was_recorded(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """A first look with `sync --dry-run` on a new state: no system was given any segment, so
    explain lists none as the profile's, and shows the dry run's verdicts apart."""
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "--dry-run", "-c", str(config)).returncode == 0
    shop, _ = _merged_pair(small_data)
    tags = {t.lower() for t in sandboxes.customer("shopify", shop["id"])["tags"]}
    doc = json_out(run_crmsync("explain", "-c", str(config), "--json", f"shopify:{shop['id']}"))
    assert doc["segments"] == []
    assert not {f"crmsync:{s['name']}" for s in doc["dry_run"]["segments"]} & tags  # none was written
    assert doc["recorded_run"] is None and doc["dry_run"]["new_profile"] is True
    assert doc["dry_run"]["entered"] == [s["name"] for s in doc["dry_run"]["segments"]] != []
    assert any("no run has recorded segments yet" in caveat for caveat in doc["caveats"]), doc.get("caveats")


def test_explain_after_a_first_cycle_whose_writes_were_held_says_nothing_was_recorded(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """A first cycle on a new state with one system refusing is held by the write gate: it computes
    and saves verdicts as a dry run does, writes nothing and records no segment history. Explain
    must not present those verdicts as the recorded run's (as what the systems were given)."""
    config = sandboxes.config(tmp_path)
    sandboxes.fault("afas", match="*", fault="auth", times=100)
    held = run_crmsync("sync", "-c", str(config), "--json")
    assert held.returncode == 3 and json_out(held)["held"] is not None, held.stderr[-2000:]
    shop, _ = _merged_pair(small_data)
    tags = {t.lower() for t in sandboxes.customer("shopify", shop["id"])["tags"]}
    doc = json_out(run_crmsync("explain", "-c", str(config), "--json", f"shopify:{shop['id']}"))
    assert doc["recorded_run"] is None, doc["recorded_run"]
    assert doc["segments"] == []
    assert doc["dry_run"] is not None and doc["dry_run"]["command"] == "sync"
    assert not {f"crmsync:{s['name']}" for s in doc["dry_run"]["segments"]} & tags  # none was written
    assert any("no run has recorded segments yet" in caveat for caveat in doc["caveats"]), doc.get("caveats")
