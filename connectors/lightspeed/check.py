"""What `check` proves of a Lightspeed API key.

The credentials and the read rights (Customers and Orders are separate areas of an API key), with
the two count requests. The right to write customer metafields cannot be proven without writing,
so `check` says so in a warning and does not claim `write_fields`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.base import Capabilities, CheckReport, Permission
from connectors.errors import ApiError, PermissionDenied
from connectors.lightspeed.settings import KEY_RIGHTS

if TYPE_CHECKING:
    from connectors.lightspeed.client import LightspeedConnector


def check(connector: LightspeedConnector) -> CheckReport:
    """Proves the credentials and the read rights of the key, one count per area (an API key
    has rights per area). Nothing proves the write right without writing a metafield."""
    customers = read_right(connector, "customers")
    orders = read_right(connector, "orders")
    permissions = [
        Permission("read_customers", customers is None, customers),
        Permission("read_orders", orders is None, orders),
    ]
    warnings = []
    if connector.settings.writeback and (connector.segments_field or connector.tier_field):
        fields = " and ".join(f for f in (connector.segments_field, connector.tier_field) if f)
        warnings.append(
            f"write rights not proven: crmsync writes the customer metafields {fields}, and Lightspeed "
            "offers no way to prove the right to write them without writing one; make sure the API key "
            f"has Customers: Read/Write ({KEY_RIGHTS}), or the first write-back fails with HTTP 403"
        )
    capabilities = Capabilities(
        read_contacts=customers is None,
        read_orders=orders is None,
        incremental=customers is None or orders is None,  # both lists filter on updated_at_min
        write_tags=False,
        write_fields=False,  # not proven (see the warning)
    )
    return CheckReport(capabilities, permissions, warnings)


def read_right(connector: LightspeedConnector, area: str) -> str | None:
    """None when the key may read `area` (its count answers), else what to fix. Wrong
    credentials raise AuthError (401)."""
    path = f"/{area}/count.json"
    try:
        count = connector.call("GET", path).body
    except PermissionDenied:
        return f"the API key may not read {area}: give it {area.capitalize()}: Read in {KEY_RIGHTS}"
    if not isinstance(count, dict) or not isinstance(count.get("count"), int):
        raise ApiError(connector.name, f"unexpected reply to GET {area}/count.json")
    return None
