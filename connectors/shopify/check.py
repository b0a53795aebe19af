"""The app's access scopes: what `check` proves of them, and the orders read's refusal to compute
lifetime traits from 60 days.

Without `read_all_orders` Shopify returns only the orders of the last 60 days, and lifetime revenue,
tiers and "lapsed" would be computed from two months: the orders read checks the granted scopes and
stops unless `recent_orders_only = true` says the merchant accepts that.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Capabilities, CheckReport, Permission
from connectors.errors import ApiError, PermissionDenied
from connectors.shopify.settings import ShopifySettings

SCOPES_FIX = (
    "grant it in the Dev Dashboard (your app > Versions > scopes, then Release and approve it on the store), "
    "or for an app made in the Shopify admin under Apps > Develop apps > the app > Configuration"
)


def scope_handles(system: str, data: Any) -> frozenset[str]:
    """The granted scope handles; a write scope includes its read scope."""
    installation = data.get("currentAppInstallation") if isinstance(data, dict) else None
    scopes = installation.get("accessScopes") if isinstance(installation, dict) else None
    if not isinstance(scopes, list):
        raise ApiError(system, "unexpected reply to currentAppInstallation { accessScopes }")
    handles = {s["handle"] for s in scopes if isinstance(s, dict) and isinstance(s.get("handle"), str)}
    return frozenset(handles | {"read_" + h[len("write_") :] for h in handles if h.startswith("write_")})


def scope_report(settings: ShopifySettings, scopes: frozenset[str], tier_field: str | None) -> CheckReport:
    """Each scope the configured work needs, with its fix; capabilities follow from the grants."""
    writes = settings.writeback
    permissions = [
        Permission("read_customers", "read_customers" in scopes, f"add the read_customers scope: {SCOPES_FIX}"),
        Permission("read_orders", "read_orders" in scopes, f"add the read_orders scope: {SCOPES_FIX}"),
        Permission(
            "read_all_orders",
            "read_all_orders" in scopes,
            "add the read_all_orders scope (without it Shopify returns only the last 60 days of orders): "
            f"{SCOPES_FIX}; or set recent_orders_only = true to accept traits from 60 days",
            needed=not settings.recent_orders_only,
        ),
    ]
    if writes:
        fix = f"add the write_customers scope: {SCOPES_FIX}"
        permissions.append(Permission("write_customers", "write_customers" in scopes, fix))
    warnings = []
    if "read_all_orders" not in scopes and settings.recent_orders_only:
        warnings.append(
            "no read_all_orders scope (recent_orders_only = true): orders, revenue, tiers and lifecycle from "
            "this shop cover the last 60 days only"
        )
    written = writes and "write_customers" in scopes
    capabilities = Capabilities(
        read_contacts="read_customers" in scopes,
        read_orders="read_orders" in scopes,
        incremental=True,
        write_tags=written,
        write_fields=written and bool(tier_field),
    )
    return CheckReport(capabilities, permissions, warnings)


def require_all_orders(system: str, settings: ShopifySettings, scopes: frozenset[str]) -> None:
    """Stop the orders read unless the app may read every order or the merchant accepts 60 days."""
    if "read_all_orders" not in scopes and not settings.recent_orders_only:
        raise PermissionDenied(
            system,
            "the app lacks the read_all_orders scope, so Shopify would return only the last 60 days of "
            "orders and lifetime revenue, tiers and lapsed customers would be computed wrongly: add "
            f"read_all_orders ({SCOPES_FIX}), or set recent_orders_only = true to accept 60 days",
        )


def coverage_note(system: str, settings: ShopifySettings) -> str | None:
    if settings.recent_orders_only:
        return (
            f"{system}: recent_orders_only = true, so this shop's orders (and the revenue, tiers and "
            "lifecycle built on them) cover the last 60 days only"
        )
    return None
