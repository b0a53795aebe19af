"""The other segmentation bases against the emulated shops (issue 18). `abandoned-checkout`: the tag
appears when a shopper leaves a Shopify checkout or a WooCommerce order pending or failed, only for
people with email consent (the segment is consent-marked by default), and leaves when they buy.
Regions and interests reach only the systems switched on for them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mapping.regions import region_of
from sync.demo import demo_data
from tests.kit import Sandboxes, json_out, run_crmsync

TAG = "crmsync:abandoned-checkout"


def shopify_tags(sandboxes: Sandboxes, gid: str) -> set[str]:
    return {t for t in sandboxes.customer("shopify", gid)["tags"] if t.startswith("crmsync:")}


def woo_segments(sandboxes: Sandboxes, customer_id: int) -> set[str]:
    meta = {row["key"]: row["value"] for row in sandboxes.customer("woocommerce", str(customer_id))["meta_data"]}
    return {name for name in str(meta.get("crmsync_segments") or "").split(",") if name}


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(amount: str) -> dict[str, Any]:
    return {
        "shopMoney": {"amount": amount, "currencyCode": "EUR"},
        "presentmentMoney": {"amount": amount, "currencyCode": "EUR"},
    }


def configure(sandboxes: Sandboxes, tmp_path: Path, consent: str = "") -> Path:
    config = sandboxes.config(tmp_path)
    bases = f'[segments.bases]\nenabled = ["abandoned-checkout"]\n{consent}\n'
    config.write_text(config.read_text().replace("[writeback]", bases + "\n[writeback]", 1))
    return config


def sync(config: Path) -> dict[str, Any]:
    result = run_crmsync("sync", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json_out(result)


def test_a_shopify_checkout_tags_only_people_with_consent_until_they_buy(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    customers = small_data["shopify"]["customers"]
    states = {c["id"]: (c.get("defaultEmailAddress") or {}).get("marketingState") for c in customers}
    opted_in = next(gid for gid, state in states.items() if state == "SUBSCRIBED")
    not_in = next(gid for gid, state in states.items() if state not in (None, "SUBSCRIBED"))
    config = configure(sandboxes, tmp_path)
    sync(config)
    assert TAG not in shopify_tags(sandboxes, opted_in) | shopify_tags(sandboxes, not_in)

    shop = sandboxes.app("shopify")
    now = datetime.now(UTC)
    for number, gid in enumerate((opted_in, not_in), start=1):
        shop.put_checkout(
            {
                "id": f"gid://shopify/AbandonedCheckout/{900 + number}",
                "createdAt": stamp(now - timedelta(hours=3)),
                "customer": {"id": gid},
                "totalPriceSet": money("80.00"),
            }
        )
    # A checkout without a customer (a draft order's) names nobody: not stored, not quarantined.
    shop.put_checkout(
        {
            "id": "gid://shopify/AbandonedCheckout/903",
            "createdAt": stamp(now - timedelta(hours=3)),
            "customer": None,
            "totalPriceSet": money("15.00"),
        }
    )
    # A checkout completed since is an order now, not an abandoned one.
    shop.put_checkout(
        {
            "id": "gid://shopify/AbandonedCheckout/999",
            "createdAt": stamp(now - timedelta(hours=5)),
            "completedAt": stamp(now - timedelta(hours=4)),
            "customer": {"id": customers[-1]["id"]},
            "totalPriceSet": money("10.00"),
        }
    )
    sandboxes.reset_stats()
    sync(config)
    assert TAG in shopify_tags(sandboxes, opted_in)
    assert TAG not in shopify_tags(sandboxes, not_in)  # no consent: never given the segment
    assert TAG not in shopify_tags(sandboxes, customers[-1]["id"])
    with closing(sqlite3.connect(tmp_path / "crmsync.db")) as db:
        stored = dict(db.execute("SELECT order_id, unfinished FROM orders WHERE order_id LIKE '%AbandonedCheckout%'"))
        quarantined = db.execute(
            "SELECT count(*) FROM quarantine WHERE record_id LIKE '%AbandonedCheckout%'"
        ).fetchone()
    assert quarantined == (0,)
    assert stored == {  # read from the vendor's abandonedCheckouts list; the completed one is no longer open
        "gid://shopify/AbandonedCheckout/901": 1,
        "gid://shopify/AbandonedCheckout/902": 1,
        "gid://shopify/AbandonedCheckout/999": 0,
    }

    explained = json_out(run_crmsync("explain", f"shopify:{opted_in}", "-c", str(config), "--json"))
    why = next(s["why"] for s in explained["segments"] if s["name"] == "abandoned-checkout")
    assert "unfinished purchase" in why and "consent" in why
    assert explained["traits"]["bases"]["email_consent"] is True
    assert explained["traits"]["bases"]["last_unfinished"].startswith((now - timedelta(hours=3)).date().isoformat())

    unchanged = sync(config)
    assert unchanged["systems"]["shopify"]["planned"] == 0  # the checkout is no news the second time

    shop.put_order(
        {
            "id": "gid://shopify/Order/5999001",
            "name": "#9001",
            "createdAt": stamp(now - timedelta(minutes=30)),
            "updatedAt": stamp(now),
            "displayFinancialStatus": "PAID",
            "totalPriceSet": money("80.00"),
            "customer": {"id": opted_in},
        }
    )
    sync(config)
    assert TAG not in shopify_tags(sandboxes, opted_in)  # they bought: the tag leaves


def test_a_woocommerce_order_left_pending_needs_an_opt_in_for_that_address(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """WooCommerce holds no consent: a WooCommerce record gets the (consent-marked) segment only
    when another system holds an opt-in for the same address."""
    config = configure(sandboxes, tmp_path)
    subscribed = {
        (c.get("defaultEmailAddress") or {}).get("emailAddress", "").lower()
        for c in small_data["shopify"]["customers"]
        if (c.get("defaultEmailAddress") or {}).get("marketingState") == "SUBSCRIBED"
    }
    shopify_addresses = {
        (c.get("defaultEmailAddress") or {}).get("emailAddress", "").lower() for c in small_data["shopify"]["customers"]
    }
    woo_customers = small_data["woocommerce"]["customers"]
    opted_in = next(c for c in woo_customers if c["email"].lower() in subscribed)
    unknown = next(c for c in woo_customers if c["email"] and c["email"].lower() not in shopify_addresses)
    woo = sandboxes.app("woocommerce")
    created = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    for number, customer in enumerate((opted_in, unknown), start=1):
        woo.put_order(
            {
                "id": 9200 + number,
                "status": "failed",
                "total": "42.00",
                "customer_id": customer["id"],
                "date_created_gmt": created,
            }
        )
    sync(config)
    assert "abandoned-checkout" in woo_segments(sandboxes, opted_in["id"])
    assert "abandoned-checkout" not in woo_segments(sandboxes, unknown["id"])


def test_a_woocommerce_order_left_pending_tags_until_it_is_paid(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    # WooCommerce holds no consent: with the segment not consent-marked, everyone may get it.
    config = configure(sandboxes, tmp_path, consent="requires_consent = []")
    woo = sandboxes.app("woocommerce")
    customer = small_data["woocommerce"]["customers"][1]
    other = small_data["woocommerce"]["customers"][2]
    created = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    pending = {
        "id": 9101,
        "status": "pending",
        "total": "42.00",
        "customer_id": customer["id"],
        "date_created_gmt": created,
    }
    woo.put_order(pending)
    woo.put_order({**pending, "id": 9102, "status": "checkout-draft", "customer_id": other["id"]})
    sync(config)
    assert "abandoned-checkout" in woo_segments(sandboxes, customer["id"])
    assert "abandoned-checkout" not in woo_segments(sandboxes, other["id"])  # a block-checkout draft is not

    woo.put_order({**pending, "status": "processing"})  # the payment arrived
    sync(config)
    assert "abandoned-checkout" not in woo_segments(sandboxes, customer["id"])


def test_regions_and_interests_reach_the_systems_switched_on_for_them(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path, woocommerce='bases = ["abandoned-checkout"]')
    bases = '[segments.bases]\nenabled = ["region", "interest", "abandoned-checkout"]\n'
    config.write_text(config.read_text().replace("[writeback]", bases + "\n[writeback]", 1))
    customer = small_data["shopify"]["customers"][0]
    address = customer["defaultAddress"]
    region = region_of(address["countryCodeV2"], address["zip"])
    assert region is not None
    now = datetime.now(UTC)
    sandboxes.app("shopify").put_order(
        {
            "id": "gid://shopify/Order/5999101",
            "name": "#9101",
            "createdAt": stamp(now - timedelta(days=2)),
            "updatedAt": stamp(now),
            "displayFinancialStatus": "PAID",
            "totalPriceSet": money("120.00"),
            "customer": {"id": customer["id"]},
            "lineItems": {"nodes": [{"product": {"productType": "Wandelschoenen"}}, {"product": None}]},
        }
    )
    sandboxes.reset_stats()
    sync(config)
    tags = shopify_tags(sandboxes, customer["id"])
    assert {f"crmsync:region-{region.lower()}", "crmsync:interest-wandelschoenen"} <= tags
    # The same person in WooCommerce: that system is switched on for abandoned-checkout only.
    woo = next(
        c
        for c in small_data["woocommerce"]["customers"]
        if c["email"] == customer["defaultEmailAddress"]["emailAddress"].lower()
    )
    written = woo_segments(sandboxes, woo["id"])
    assert written and not any(name.startswith(("region-", "interest-")) for name in written)


def test_switching_interests_on_reads_the_orders_stored_before_again(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    """Orders stored while nobody asked for their lines carry no categories: switching `interest` on
    reads every order once more (with lines), so the segment is not computed from the few orders
    read since."""
    customer = small_data["shopify"]["customers"][1]
    now = datetime.now(UTC)
    sandboxes.app("shopify").put_order(
        {
            "id": "gid://shopify/Order/5999201",
            "name": "#9201",
            "createdAt": stamp(now - timedelta(days=30)),
            "updatedAt": stamp(now - timedelta(days=30)),
            "displayFinancialStatus": "PAID",
            "totalPriceSet": money("60.00"),
            "customer": {"id": customer["id"]},
            "lineItems": {"nodes": [{"product": {"productType": "Regenjassen"}}]},
            "discountCodes": ["HERFST"],
        }
    )
    config = sandboxes.config(tmp_path)
    first = sync(config)
    orders = first["systems"]["shopify"]["read"]["orders"]
    assert "crmsync:interest-regenjassen" not in shopify_tags(sandboxes, customer["id"])

    bases = '[segments.bases]\nenabled = ["interest"]\n'
    config.write_text(config.read_text().replace("[writeback]", bases + "\n[writeback]", 1))
    again = sync(config)
    assert again["systems"]["shopify"]["read"]["orders"] == orders  # every order again, not only changes
    # AFAS invoices carry no discount code or lines: nothing to gain from reading them all again.
    assert again["systems"]["afas"]["read"]["orders"] < first["systems"]["afas"]["read"]["orders"]
    assert "crmsync:interest-regenjassen" in shopify_tags(sandboxes, customer["id"])
    third = sync(config)
    assert third["systems"]["shopify"]["read"]["orders"] < orders  # once: then incremental again


def test_crmsync_own_write_does_not_make_its_record_the_profile_s_newest(
    start_sandboxes_fixture: Callable[..., Sandboxes], tmp_path: Path
) -> None:
    """One person in Shopify (an older address in Groningen) and in WooCommerce (updated since, in
    Maastricht): survivorship takes the newer, so the region is Maastricht's. crmsync then writes
    its tags to the Shopify customer, and Shopify stamps it updated. That write is no news of the
    person: the next cycle must keep Maastricht, not take Groningen and write the tags again (the
    region moved on its own with every write before)."""
    data = demo_data(40, seed=7)
    woo_by_email = {c["email"].lower(): c for c in data["woocommerce"]["customers"]}
    shop = next(
        c for c in data["shopify"]["customers"] if c["defaultEmailAddress"]["emailAddress"].lower() in woo_by_email
    )
    woo = woo_by_email[shop["defaultEmailAddress"]["emailAddress"].lower()]
    shop["defaultAddress"].update(address1="Grote Markt 1", zip="9711 LV", city="Groningen")
    shop["updatedAt"] = "2025-01-01T10:00:00Z"
    woo["billing"].update(address_1="Markt 1", postcode="6211 CK", city="Maastricht")
    woo["date_modified_gmt"] = "2026-06-01T10:00:00"
    newer, older = region_of("NL", "6211 CK"), region_of("NL", "9711 LV")
    assert newer is not None and older is not None and newer != older
    sandboxes = start_sandboxes_fixture(data)
    config = sandboxes.config(tmp_path, woocommerce="writeback = false")
    bases = '[segments.bases]\nenabled = ["region"]\n'
    config.write_text(config.read_text().replace("[writeback]", bases + "\n[writeback]", 1))
    sync(config)
    assert f"crmsync:region-{newer.lower()}" in shopify_tags(sandboxes, shop["id"])
    stamped = sandboxes.customer("shopify", shop["id"])["updatedAt"]
    assert stamped > "2026-06-01T10:00:00Z"  # the write made the Shopify record the newer one
    again = sync(config)
    assert again["systems"]["shopify"]["planned"] == 0
    tags = shopify_tags(sandboxes, shop["id"])
    assert f"crmsync:region-{newer.lower()}" in tags and f"crmsync:region-{older.lower()}" not in tags
