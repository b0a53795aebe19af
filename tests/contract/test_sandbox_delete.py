"""`DELETE /_sandbox/customers/<id>` (CONTRACTS §5): every emulator deletes a customer as its
vendor's UI would, and reads leave it out from then on (crmsync's own read shows it)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from connectors.registry import vendor
from tests.chaos.lab import customer_ids
from tests.kit import Sandboxes, make_connector

TYPES = ("afas", "efficy", "lightspeed", "shopify", "silvasoft", "superoffice", "woocommerce")


@pytest.mark.parametrize("system_type", TYPES)
def test_a_deleted_customer_is_gone_from_the_test_route_and_the_reads(
    start_sandboxes_fixture: Any, small_data: dict[str, Any], system_type: str
) -> None:
    sandboxes: Sandboxes = start_sandboxes_fixture({system_type: small_data[system_type]}, time_scale=50)
    first, second = customer_ids(small_data[system_type], system_type)[:2]
    url = f"{sandboxes.url(system_type)}/_sandbox/customers/{first}"
    assert requests.get(url, timeout=5).status_code == 200
    deleted = sandboxes.delete_customer(system_type, first)
    assert str(deleted[vendor(system_type).emulated.contact_key]) == first
    assert requests.get(url, timeout=5).status_code == 404
    assert requests.delete(url, timeout=5).status_code == 404
    connector = make_connector(sandboxes, system_type)
    try:
        read = [record.id for page in connector.reader("contacts")(None) for record in page.records]
    finally:
        connector.close()

    def named(rid: str, customer_id: str) -> bool:
        return rid == customer_id or rid.endswith(f"/{customer_id}")

    assert any(named(rid, second) for rid in read)  # the ids compare: the others are read
    assert not any(named(rid, first) for rid in read)
