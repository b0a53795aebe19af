"""`crmsync check`: prove, with real calls that change nothing, what every configured system lets
crmsync do. Capabilities come from what was proven, never from a table: a system that cannot be
reached or refuses the credentials can do nothing, and one without a scope cannot do what needs it.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Capabilities, Connector
from connectors.errors import (
    ApiError,
    AuthError,
    ConnectorError,
    PermissionDenied,
    RateLimited,
    RejectedRecord,
    RetriesExhausted,
    TransientError,
)
from connectors.registry import connector_class
from connectors.settings import RetrySettings
from sync.config import LoadedConfig

NOTHING = Capabilities(read_contacts=False, read_orders=False, incremental=False, write_tags=False, write_fields=False)


def check_system(name: str, connector: Connector, segments_zone: str | None = None) -> dict[str, Any]:
    """One system's entry of the `check --json` document (CONTRACTS §2 and §6). `segments_zone`:
    `[segments] timezone`, compared with the system's own zone where it names one."""
    result: dict[str, Any] = {
        "type": connector.type,
        "reachable": False,
        "auth": "unknown",
        "capabilities": NOTHING.to_json(),
        "permissions": [],
        "warnings": [],
        "timezone": None,  # the system's own calendar, where it names one (Shopify)
        "error": None,
    }
    try:
        report = connector.check()
    except PermissionDenied as exc:
        result.update(reachable=True, auth="ok", error=str(exc))
        return result
    except AuthError as exc:
        result.update(reachable=True, auth="refused", error=str(exc))
        return result
    except ConnectorError as exc:
        # "reachable" is whether the system answered at all: a frozen shop, a wrong path or a
        # 5xx came from a host that is there, unlike a refused connection or a timeout.
        result.update(reachable=answered(exc), error=str(exc))
        return result
    result.update(
        reachable=True,
        auth="ok",
        capabilities=report.capabilities.to_json(),
        permissions=[p.to_json() for p in report.permissions],
        warnings=list(report.warnings) + zone_warnings(report.timezone, segments_zone),
    )
    result["timezone"] = report.timezone
    if report.missing:
        result["error"] = "; ".join(f"{p.name} missing: {p.fix}" for p in report.missing)
    return result


def zone_warnings(system_zone: str | None, segments_zone: str | None) -> list[str]:
    """A system whose own calendar is not the one segments count days on: an order of 00:30 on 1
    January is that year's in the shop and the year before's in the segments."""
    if system_zone is None or system_zone == (segments_zone or "UTC"):
        return []
    counted = f"in {segments_zone}" if segments_zone else "in UTC ([segments] timezone is unset)"
    return [
        f"the system keeps its calendar in {system_zone}, segments count days and years {counted}: "
        f'set [segments] timezone = "{system_zone}" to count them as the shop does'
    ]


def answered(exc: ConnectorError) -> bool:
    """Whether the error came from a reply of the system (an HTTP status, a throttle, a reply
    that was not what was asked for), as opposed to no reply at all."""
    seen = exc.__cause__ if isinstance(exc, RetriesExhausted) and exc.__cause__ is not None else exc
    if isinstance(seen, ApiError | RejectedRecord | RateLimited):
        return True
    return isinstance(seen, TransientError) and seen.status is not None


def check_all(loaded: LoadedConfig) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, settings in loaded.config.systems.items():
        # Two attempts and a short wait at most: `check` answers in seconds, not minutes.
        quick = settings.model_copy(update={"retry": RetrySettings(attempts=2, max_retry_after=5)})
        connector = connector_class(settings.type)(name, quick, tag_prefix=loaded.config.writeback.tag_prefix)
        try:
            results[name] = check_system(name, connector, loaded.config.segments.timezone)
        finally:
            connector.close()
    return results


def check_failed(result: dict[str, Any]) -> bool:
    return result["auth"] != "ok" or result["error"] is not None
