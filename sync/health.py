"""Whether crmsync is healthy, from the state alone: what `status` exits with (CONTRACTS §6).

0 when every configured system's last cycle succeeded (a cycle stopped part-way, by a SIGTERM, is
judged by the one before it, unless three in a row were); 3 when one failed, never ran, or (with
`[writeback] max_staleness` set) last succeeded longer ago than that; 4 when there is no state yet.
A monitor (systemd, cron, Nagios) can page on the exit code without reading any output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mapping.model import parse_timestamp

HEALTHY, UNHEALTHY, NO_STATE = 0, 3, 4
# A cycle stopped part-way (a restart) is judged by the one before it, but this many in a row are a
# problem of their own: a daemon restarted more often than a cycle takes syncs nothing.
STOPPED_IN_A_ROW = 3


def problems(
    configured: Iterable[str],
    systems: Mapping[str, Mapping[str, Any]],
    *,
    now: datetime,
    max_staleness: float | None,
) -> dict[str, str]:
    """Per configured system that is not healthy, why (in words a person on call can act on)."""
    found: dict[str, str] = {}
    for name in configured:
        entry = systems.get(name) or {}
        # A cycle stopped part-way (SIGTERM: a restart, a deploy) is judged by the one before it.
        last, last_ok = entry.get("last_settled", entry.get("last")), entry.get("last_ok")
        stopped = int(entry.get("interrupted_in_a_row") or 0)
        if entry.get("last") is None:
            found[name] = "no cycle has run for it yet"
        elif last is None:
            found[name] = "no cycle has finished for it yet (each was stopped part-way)"
        elif stopped >= STOPPED_IN_A_ROW:  # restarted more often than a cycle takes: nothing syncs
            found[name] = f"its last {stopped} cycles were all stopped before they finished"
        elif last.get("status") != "ok":
            found[name] = f"its last cycle failed: {last.get('error') or last.get('status')}"
        elif max_staleness is not None and last_ok is not None:
            age = now - parse_timestamp(str(last_ok["finished_at"]))
            if age > timedelta(seconds=max_staleness):
                found[name] = f"its last success was {age.total_seconds():.0f} s ago, over max_staleness"
    return found


def system_health(
    configured: Iterable[str],
    systems: Mapping[str, Mapping[str, Any]],
    *,
    now: datetime,
    max_staleness: float | None,
) -> dict[str, dict[str, Any]]:
    """Per configured system, as the daemon's /healthz shows it (sync/service.py): `ok`, `reason`
    (what `problems` says, None when healthy) and `last_success` (ISO-8601 UTC, whole seconds)."""
    names = list(configured)
    found = problems(names, systems, now=now, max_staleness=max_staleness)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        last_ok = (systems.get(name) or {}).get("last_ok")
        finished = parse_timestamp(str(last_ok["finished_at"])) if last_ok else None
        out[name] = {
            "ok": name not in found,
            "reason": found.get(name),
            "last_success": finished.astimezone(UTC).replace(microsecond=0).isoformat() if finished else None,
        }
    return out


def exit_code(has_state: bool, found: Mapping[str, str]) -> int:
    if not has_state:
        return NO_STATE
    return UNHEALTHY if found else HEALTHY
