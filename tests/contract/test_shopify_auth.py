"""Shopify credentials as they are handed out today, against the emulator's token endpoint, over
real HTTP: the client-credentials grant of a Dev Dashboard app (24-hour tokens), an expiring
offline token with its rotating refresh token (an agency's app), and the fixed token of an app
made in the admin before 2026; and the app's scopes, `read_all_orders` above all."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.auth import TOKENS
from connectors.errors import ApiError, AuthError, PermissionDenied, TokenRefused
from connectors.shopify.sandbox import DEFAULT_TOKEN
from sync.checking import check_system
from tests.contract.test_shopify_connector import customers
from tests.kit import Sandboxes, make_connector, secret

TOKEN = "POST /admin/oauth/access_token"
GRAPHQL = "POST /admin/api/<version>/graphql.json"


def orders_over_a_year() -> list[dict[str, Any]]:
    """Six orders a customer placed, the newest 10 days and the oldest 300 days ago."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return [
        {
            "id": f"gid://shopify/Order/{i}",
            "customer": {"id": "gid://shopify/Customer/1"},
            "totalPriceSet": {"shopMoney": {"amount": "50.00", "currencyCode": "EUR"}},
            "createdAt": (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for i, days in enumerate((10, 40, 59, 61, 120, 300), start=1)
    ]


@pytest.fixture
def shop(start_sandboxes_fixture: Callable[..., Sandboxes]) -> Sandboxes:
    return start_sandboxes_fixture({"shopify": {"customers": customers(30), "orders": orders_over_a_year()}})


def app(shop: Sandboxes, **change: Any) -> dict[str, Any]:
    url = f"{shop.url('shopify')}/_sandbox/app"
    response = requests.patch(url, json=change, timeout=5) if change else requests.get(url, timeout=5)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def tokens_requested(shop: Sandboxes) -> int:
    return int(shop.stats("shopify")["requests"].get(TOKEN, 0))


def test_a_dev_dashboard_app_gets_one_token_and_uses_it_until_it_expires(shop: Sandboxes) -> None:
    connector = make_connector(shop, "shopify", page_size=10)  # client_id + client_secret
    assert connector.settings.flow == "client_credentials"
    assert connector.check().missing == []
    assert len([r for page in connector.read_contacts(None) for r in page.records]) == 30
    second = make_connector(shop, "shopify")  # the next cycle, in the same process
    second.check()
    assert tokens_requested(shop) == 1  # one token for every call of both
    assert shop.stats("shopify")["errors"] == 0
    assert shop.app("shopify").issued_count() == 1


def test_a_token_expired_mid_read_is_renewed_once_and_the_read_finishes(shop: Sandboxes) -> None:
    connector = make_connector(shop, "shopify", page_size=10)
    shop.fault("shopify", match=GRAPHQL.replace("<version>", "2026-10"), fault="expire-token", after=1)
    records = [r for page in connector.read_contacts(None) for r in page.records]
    assert [r.id for r in records] == [f"gid://shopify/Customer/{i}" for i in range(1, 31)]
    assert tokens_requested(shop) == 2  # the first, and one renewal after the 401
    log = [e["status"] for e in shop.request_log("shopify") if e["path"].endswith("graphql.json")]
    assert log.count(401) == 1 and connector.client.stats.retries == 0


def test_a_token_is_renewed_before_it_expires(shop: Sandboxes) -> None:
    # Tokens that live no longer than the renewal margin are renewed before every use: never a 401.
    app(shop, token_ttl_s=300)
    connector = make_connector(shop, "shopify", token_renew_margin=300)
    connector.check()
    connector.check()
    asked = [e for e in shop.request_log("shopify") if e["path"].endswith("graphql.json")]
    assert len(asked) == 4  # per check: the scopes and the shop's time zone
    assert tokens_requested(shop) == len(asked) and shop.stats("shopify")["errors"] == 0


def test_a_wrong_client_secret_is_refused_once_naming_what_to_fix(shop: Sandboxes) -> None:
    connector = make_connector(shop, "shopify", client_secret=secret("shpss_not_the_apps_secret_42"))
    with pytest.raises(TokenRefused, match=r"invalid_client.*check client_id and client_secret"):
        connector.check()
    assert tokens_requested(shop) == 1 and shop.stats("shopify")["requests"].get(GRAPHQL, 0) == 0


def test_the_token_endpoint_answers_as_shopify_does(shop: Sandboxes) -> None:
    url = f"{shop.url('shopify')}/admin/oauth/access_token"
    form = {"grant_type": "client_credentials", "client_id": "sandbox-client-id-0123456789abcdef"}
    wrong = requests.post(url, data={**form, "client_secret": "nope"}, headers={"Accept": "application/json"})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"
    page = requests.post(url, data={**form, "client_secret": "nope"})
    assert page.status_code == 400 and page.headers["Content-Type"].startswith("text/html")  # HTML unless asked
    app(shop, token_ttl_s=86399)
    good = requests.post(url, json={**form, "client_secret": shop.app("shopify").client_secret}, timeout=5).json()
    assert set(good) == {"access_token", "scope", "expires_in"} and good["expires_in"] == 86399
    assert "read_all_orders" in good["scope"].split(",")
    secret(good["access_token"])
    graphql = f"{shop.url('shopify')}/admin/api/2026-10/graphql.json"
    body = {"query": "{ shop { name } }"}
    ok = requests.post(graphql, json=body, headers={"X-Shopify-Access-Token": good["access_token"]}, timeout=5)
    assert ok.status_code == 200
    shop.fault("shopify", match="reads", fault="expire-token")
    expired = requests.post(graphql, json=body, headers={"X-Shopify-Access-Token": good["access_token"]}, timeout=5)
    assert expired.status_code == 401 and expired.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }


def test_an_app_of_another_organisation_refreshes_its_offline_token_and_keeps_the_rotated_one(
    shop: Sandboxes, tmp_path: Path
) -> None:
    pair = requests.post(f"{shop.url('shopify')}/_sandbox/app/offline-token", timeout=5).json()
    secret(pair["access_token"])
    stored = tmp_path / "shop.refresh-token"
    settings = {
        "access_token": pair["access_token"],
        "refresh_token": pair["refresh_token"],
        "refresh_token_file": str(stored),
    }
    connector = make_connector(shop, "shopify", **settings)
    assert connector.settings.flow == "refresh_token"
    connector.check()
    assert tokens_requested(shop) == 0  # the configured access token is used while it lasts
    shop.fault("shopify", match="reads", fault="expire-token")
    connector.check()
    assert tokens_requested(shop) == 1
    rotated = json.loads(stored.read_text())["refresh_token"]
    assert rotated != pair["refresh_token"] and stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert pair["refresh_token"] not in stored.read_text()  # the configured one is kept as a hash only
    # After a restart (no token in memory) the stored refresh token is the one used: the
    # configured one was retired by Shopify once its replacement was used.
    shop.fault("shopify", match="reads", fault="expire-token")
    make_connector(shop, "shopify", **settings).check()
    TOKENS.clear()
    make_connector(shop, "shopify", **settings).check()
    # Each refusal (two expiries, then the stale configured token after the restart) cost one renewal.
    refusals = [e for e in shop.request_log("shopify") if e["status"] == 401]
    assert tokens_requested(shop) == 3 and len(refusals) == 3
    # A new refresh token put in the config wins over the file it did not grow from.
    fresh = requests.post(f"{shop.url('shopify')}/_sandbox/app/offline-token", timeout=5).json()
    TOKENS.clear()
    renewed = make_connector(shop, "shopify", **{**settings, "refresh_token": fresh["refresh_token"]})
    shop.fault("shopify", match="reads", fault="expire-token")
    renewed.check()
    assert json.loads(stored.read_text())["refresh_token"] not in (rotated, fresh["refresh_token"])
    stored.unlink()
    TOKENS.clear()
    with pytest.raises(TokenRefused, match=r"invalid_grant.*get a new expiring offline token"):
        make_connector(shop, "shopify", **{**settings, "access_token": "shpat_expired_long_ago"}).check()


def test_a_fixed_token_of_an_admin_made_app_still_works(shop: Sandboxes) -> None:
    connector = make_connector(shop, "shopify", access_token=DEFAULT_TOKEN, client_id=None, client_secret=None)
    assert connector.settings.flow == "fixed_token" and connector.check().missing == []
    assert tokens_requested(shop) == 0


def test_without_read_all_orders_check_names_the_scope_and_orders_stop(shop: Sandboxes) -> None:
    app(shop, scopes=["read_customers", "write_customers", "read_orders"])
    connector = make_connector(shop, "shopify")
    report = connector.check()
    assert [p.name for p in report.missing] == ["read_all_orders"]
    assert "60 days" in str(report.missing[0].fix) and "recent_orders_only" in str(report.missing[0].fix)
    with pytest.raises(PermissionDenied, match="read_all_orders"):
        list(connector.read_orders(None))
    # The merchant accepts 60 days: check passes with a warning, and the emulator shows only those.
    recent = make_connector(shop, "shopify", recent_orders_only=True)
    report = recent.check()
    assert report.missing == [] and any("60 days" in w for w in report.warnings)
    ids = sorted(int(r.id.rsplit("/", 1)[1]) for page in recent.read_orders(None) for r in page.records)
    assert ids == [1, 2, 3]  # 10, 40 and 59 days old; not 61, 120 or 300
    assert recent.coverage_note() is not None and "60 days" in recent.coverage_note()  # type: ignore[operator]
    app(shop, scopes=["read_customers", "write_customers", "read_orders", "read_all_orders"])
    assert len([r for page in make_connector(shop, "shopify").read_orders(None) for r in page.records]) == 6


def test_each_missing_scope_is_named_with_its_fix_and_refused_by_the_api(shop: Sandboxes) -> None:
    app(shop, scopes=["read_orders", "read_all_orders"])
    connector = make_connector(shop, "shopify")
    report = connector.check()
    assert {p.name for p in report.missing} == {"read_customers", "write_customers"}
    assert not report.capabilities.read_contacts and not report.capabilities.write_tags
    assert report.capabilities.read_orders
    # (a full read counts the customers first: whether a bulk read is worth it)
    with pytest.raises(PermissionDenied, match=r"Access denied for customers(Count)? field.*read_customers"):
        list(connector.read_contacts(None))
    assert tokens_requested(shop) == 1  # a missing scope is not an expired token: no renewal
    read_only = make_connector(shop, "shopify", writeback=False)
    app(shop, scopes=["read_customers", "read_orders", "read_all_orders"])
    assert read_only.check().missing == []  # write_customers is only needed for write-back


@pytest.mark.parametrize(
    ("state", "status", "says"),
    [
        ("frozen", 402, "frozen"),
        ("unavailable", 403, "unavailable"),
        ("locked", 423, "locked"),
    ],
)
def test_a_shop_closed_to_the_api_is_named_as_such_not_as_refused_credentials(
    shop: Sandboxes, state: str, status: int, says: str
) -> None:
    """Shopify answers the Admin API of a frozen (402), unavailable (403 "Unavailable Shop") or
    locked (423) shop whatever the token: neither the credentials nor a scope are the cause, so
    crmsync asks for no new token and says what the shop's owner must do."""
    connector = make_connector(shop, "shopify")
    connector.check()  # a token, while the shop is open
    app(shop, shop_state=state)
    with pytest.raises(ApiError) as closed:
        list(connector.read_contacts(None))
    assert not isinstance(closed.value, AuthError)
    message = str(closed.value)
    assert f"HTTP {status}" in message and says in message and "shop's owner" in message
    assert tokens_requested(shop) == 1  # no renewal: a new token would be answered the same
    log = [e["status"] for e in shop.request_log("shopify") if e["path"].endswith("graphql.json")]
    assert log[-1] == status and log.count(status) == 1  # not retried
    # and `check` says the shop answered: not a network problem, not the credentials
    result = check_system("shopify", make_connector(shop, "shopify"))
    assert (result["reachable"], result["auth"]) == (True, "unknown") and says in result["error"]
