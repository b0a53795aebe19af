"""WooCommerce `check`: proves the key's rights without changing anything.

An API key is `read`, `write` or `read_write`, and WooCommerce checks that against the HTTP method
in WordPress's `rest_pre_dispatch`, before any route is matched. So a POST to a route that does
not exist in the wc/v3 namespace tells the two apart and reaches no endpoint: 401 "does not have
write permissions" for a read-only key, 404 `rest_no_route` for a key that may write. That 401 is
a missing right (PermissionDenied), not wrong credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.base import Capabilities, CheckReport, Permission
from connectors.errors import ApiError, AuthError, PermissionDenied, RejectedRecord
from connectors.http import ApiClient
from connectors.woocommerce.rules import KEY_LACKS, PERMISSION_PROBE
from connectors.woocommerce.settings import API

KEYS_FIX = "WooCommerce > Settings > Advanced > REST API > edit the key > Permissions: Read/Write"


def check_rights(client: ApiClient, system: str, role: str, *, writes: bool) -> CheckReport:
    """Proves reading customers (the configured `role`) and orders, and, when crmsync is to
    write, the key's write permission with a POST that no endpoint receives."""
    customers = _read_right(client, system, "/customers", {"per_page": 1, "role": role}, "customers")
    orders = _read_right(client, system, "/orders", {"per_page": 1}, "orders")
    permissions = [
        Permission("read_customers", customers is None, customers),
        Permission("read_orders", orders is None, orders),
    ]
    written = False
    if writes:
        refusal = _write_right(client)
        written = refusal is None
        permissions.append(Permission("write", written, refusal))
    capabilities = Capabilities(
        read_contacts=customers is None,
        read_orders=orders is None,
        incremental=orders is None,  # orders are read by modified_after; customers are scanned
        write_tags=False,
        write_fields=written,
    )
    return CheckReport(capabilities, permissions)


def _read_right(client: ApiClient, system: str, path: str, params: Mapping[str, Any], what: str) -> str | None:
    """None when the key lists `what`, else what to fix. Wrong credentials raise AuthError."""
    try:
        response = client.request("GET", API + path, params=params)
    except PermissionDenied as exc:
        if KEY_LACKS.search(exc.message):
            return f"the API key is write-only: {KEYS_FIX}"
        return (
            f"the WordPress user of the API key may not list {what} ({exc.message}): give that user the "
            "Administrator or Shop manager role, or make a key for a user who has it"
        )
    if not isinstance(response.body, list):
        raise ApiError(system, f"GET {API}{path}: unexpected reply to the {what} list")
    return None


def _write_right(client: ApiClient) -> str | None:
    """None when the key may write, else what to fix. The POST goes to a route that does not
    exist: the key check answers it before routing, and no endpoint ever sees it."""
    try:
        client.request("POST", PERMISSION_PROBE, json_body={}, mutating=False)
    except PermissionDenied as exc:
        if KEY_LACKS.search(exc.message):
            return f"the API key is read-only: {KEYS_FIX}"
        return f"the API key may not write ({exc.message}): {KEYS_FIX}"
    except (AuthError, ApiError, RejectedRecord) as exc:
        # The reads just proved the credentials: a refusal here (a firewall blocking POSTs,
        # say) is about writing, not about the key being wrong.
        return f"the write-permission probe got an unexpected answer ({exc.message}); make sure {KEYS_FIX}"
    return None
