"""`gone_contacts`: before crmsync takes a contact left out of its full reads for deleted, it asks
the vendor by id, past the list's filter. Each confirming emulator answers as its vendor does: a
customer deleted is gone, a live one is not, and a refusal or an id that is no customer's raises
(nothing is taken for deleted unproven). Real HTTP against the sandboxes."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.errors import ConnectorError
from tests.chaos.lab import customer_ids
from tests.kit import Sandboxes, make_connector

CONFIRMING = ("efficy", "lightspeed", "shopify", "superoffice", "woocommerce")
# Their lists are the only view they give (an AFAS GetConnector filters every query; Silvasoft's
# relation filters are not documented to reach past the list's).
UNASKED = ("afas", "silvasoft")


def record_ids(connector: Any, *customer_ids: str) -> list[str]:
    """The ids crmsync stores for these customers (Shopify's gid, efficy's key, ...), from a read."""
    read = [record.id for page in connector.reader("contacts")(None) for record in page.records]
    return [next(rid for rid in read if rid == cid or rid.endswith(f"/{cid}")) for cid in customer_ids]


@pytest.mark.parametrize("system_type", CONFIRMING)
def test_the_vendor_names_the_deleted_ones_and_refusals_raise(
    start_sandboxes_fixture: Any, small_data: dict[str, Any], system_type: str
) -> None:
    sandboxes: Sandboxes = start_sandboxes_fixture({system_type: small_data[system_type]}, time_scale=50)
    first, second = customer_ids(small_data[system_type], system_type)[:2]
    connector = make_connector(sandboxes, system_type)
    try:
        deleted, live = record_ids(connector, first, second)
        assert connector.gone_contacts([deleted, live]) == set()
        sandboxes.delete_customer(system_type, first)
        assert connector.gone_contacts([deleted, live]) == {deleted}
        with pytest.raises(ConnectorError):
            connector.gone_contacts([live, "not a customer id"])
        sandboxes.fault(system_type, match="*", fault="auth", times=50)
        with pytest.raises(ConnectorError):
            connector.gone_contacts([deleted, live])
    finally:
        connector.close()


@pytest.mark.parametrize("system_type", UNASKED)
def test_a_vendor_whose_list_is_its_only_view_cannot_be_asked(
    start_sandboxes_fixture: Any, small_data: dict[str, Any], system_type: str
) -> None:
    sandboxes: Sandboxes = start_sandboxes_fixture({system_type: small_data[system_type]}, time_scale=50)
    connector = make_connector(sandboxes, system_type)
    try:
        assert connector.gone_contacts(["1", "2"]) is None
        assert sandboxes.stats(system_type)["requests"] == {}  # nothing asked
    finally:
        connector.close()


def test_woocommerce_lists_customers_by_id_in_any_role_and_refuses_an_id_that_is_no_number(
    start_sandboxes_fixture: Any, small_data: dict[str, Any]
) -> None:
    sandboxes: Sandboxes = start_sandboxes_fixture({"woocommerce": small_data["woocommerce"]}, time_scale=50)
    first, second, third = customer_ids(small_data["woocommerce"], "woocommerce")[:3]
    sandboxes.patch_customer("woocommerce", second, {"role": "subscriber"})
    connector = make_connector(sandboxes, "woocommerce")
    try:

        def listed(**params: Any) -> list[str]:
            body = connector.client.request("GET", "/wp-json/wc/v3/customers", params=params).body
            return [str(item["id"]) for item in body]

        assert sorted(listed(include=f"{first},{second}", role="all")) == [first, second]
        assert listed(include=f"{first},{second}") == [first]  # the default role is `customer`
        assert listed(**{"include[]": [third, first], "orderby": "id"}) == [first, third]
        # a subscriber now: out of the list, still at the vendor
        assert connector.gone_contacts([first, second]) == set()
        with pytest.raises(ConnectorError, match="include"):
            listed(include=f"{first},x")
    finally:
        connector.close()


def test_woocommerce_takes_no_customer_a_list_page_skipped_for_gone(
    start_sandboxes_fixture: Any, small_data: dict[str, Any]
) -> None:
    """The look-up by `include` is a list, and a list page may skip a record (the emulator's
    `skip-item`, the very fault one absence is not trusted for): a customer left out of it is
    still at the vendor, and only a 404 for it alone says it is gone."""
    sandboxes: Sandboxes = start_sandboxes_fixture({"woocommerce": small_data["woocommerce"]}, time_scale=50)
    first, second = customer_ids(small_data["woocommerce"], "woocommerce")[:2]
    connector = make_connector(sandboxes, "woocommerce")
    try:
        sandboxes.fault("woocommerce", match="GET /wp-json/wc/v3/customers", fault="skip-item", times=5)
        assert connector.gone_contacts([first, second]) == set()
        sandboxes.delete_customer("woocommerce", second)
        sandboxes.fault("woocommerce", match="GET /wp-json/wc/v3/customers", fault="skip-item", times=5)
        assert connector.gone_contacts([first, second]) == {second}
    finally:
        connector.close()
