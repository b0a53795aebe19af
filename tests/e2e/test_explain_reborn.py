"""A profile id that was retired (merged away) and then given to a person again when the merge came
apart: `explain` and `forget` by that id must name that person, not the one it was once merged into."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mapping.identity import new_profile_id
from tests.kit import Sandboxes, json_out, run_crmsync


def _two_strangers(small_data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Shopify and a WooCommerce customer who are different people, the Shopify one's new
    profile id sorting first: merged, the WooCommerce one's id is the one retired."""
    woo_emails = {c["email"].lower() for c in small_data["woocommerce"]["customers"]}
    shop_emails = {c["defaultEmailAddress"]["emailAddress"].lower() for c in small_data["shopify"]["customers"]}
    for shop in small_data["shopify"]["customers"]:
        if shop["defaultEmailAddress"]["emailAddress"].lower() in woo_emails:
            continue
        for woo in small_data["woocommerce"]["customers"]:
            if woo["email"].lower() in shop_emails:
                continue
            if new_profile_id(f"shopify:{shop['id']}", set()) < new_profile_id(f"woocommerce:{woo['id']}", set()):
                return shop, woo
    raise AssertionError("the fixture must hold such a pair")


def test_explain_by_a_retired_id_given_to_a_person_again_names_that_person(
    start_sandboxes_fixture: Callable[..., Sandboxes], small_data: dict[str, Any], tmp_path: Path
) -> None:
    shop, woo = _two_strangers(small_data)
    for person in (shop, woo):  # no phone: only the email joins them
        person.pop("defaultPhoneNumber", None)
        (person.get("billing") or {}).pop("phone", None)
    data = {"shopify": {"customers": [shop], "orders": []}, "woocommerce": {"customers": [woo], "orders": []}}
    sandboxes = start_sandboxes_fixture(copy.deepcopy(data), time_scale=50)
    config = sandboxes.config(tmp_path)
    woo_key = f"woocommerce:{woo['id']}"
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    woo_id = json_out(run_crmsync("explain", "-c", str(config), "--json", woo_key))["profile_id"]
    shop_id = json_out(run_crmsync("explain", "-c", str(config), "--json", f"shopify:{shop['id']}"))["profile_id"]
    assert shop_id < woo_id

    # The WooCommerce customer takes the Shopify one's address: one person, the smaller id survives.
    shop_email = shop["defaultEmailAddress"]["emailAddress"]
    sandboxes.patch_customer("woocommerce", str(woo["id"]), {"email": shop_email, "billing": {"email": shop_email}})
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    merged = json_out(run_crmsync("explain", "-c", str(config), "--json", woo_id))
    assert merged["profile_id"] == shop_id and merged["aliases"] == [woo_id]

    # ... and gives it back: two people again, the WooCommerce one under its old id once more.
    sandboxes.patch_customer("woocommerce", str(woo["id"]), {"email": woo["email"], "billing": {"email": woo["email"]}})
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    assert json_out(run_crmsync("explain", "-c", str(config), "--json", woo_key))["profile_id"] == woo_id
    by_id = run_crmsync("explain", "-c", str(config), "--json", woo_id)
    assert by_id.returncode == 0, by_id.stderr
    doc = json_out(by_id)
    assert doc["profile_id"] == woo_id, doc["profile_id"]  # the person who holds the id now
    assert {(r["system"], r["id"]) for r in doc["records"]} == {("woocommerce", str(woo["id"]))}
    assert json_out(run_crmsync("explain", "-c", str(config), "--json", shop_id))["aliases"] == []
