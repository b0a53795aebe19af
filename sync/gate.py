"""The write gate: crmsync writes to any system only from a complete picture.

Segments computed while a system is missing are wrong for everyone whose orders sit there: a loyal
customer of the shop that could not be read becomes a lapsed passer-by, and the tags that say so
reach mail flows and discounts. So until every contributing system (each configured system that
reads contacts or orders) has finished one full read (a first read without a cursor that reached
the end of every stream, or a finished backfill; an interrupted one does not count, an empty system
counts once read, a dry run's read counts), a cycle reads, computes and plans, and writes nothing
anywhere.

After that, a system that fails keeps its stored records in the picture and does not hold the
others. `[writeback] max_staleness` (unset by default) holds every write once a failing system's
records are older than that: measured from its last complete read (every stream to its end, full
or incremental), on crmsync's clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from mapping.model import Kind, parse_timestamp

READ_COMPLETE = "read@complete"


class Checkpoints(Protocol):
    def checkpoint(self, system: str, stream: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Held:
    reason: str
    waiting_for: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "waiting_for": list(self.waiting_for)}


def fully_read(store: Checkpoints, system: str, streams: Sequence[tuple[str, Kind]]) -> bool:
    return all(store.checkpoint(system, f"{stream}@full") is not None for stream, _ in streams)


def write_gate(
    store: Checkpoints,
    streams: Mapping[str, Sequence[tuple[str, Kind]]],
    outcomes: Mapping[str, tuple[str, str | None]],
    now: datetime,
    max_staleness: float | None,
) -> Held | None:
    """None when writes may go out; else which systems hold them and why. `outcomes` is each
    system's (status, error) in this cycle."""
    incomplete = sorted(name for name, read in streams.items() if not fully_read(store, name, read))
    if incomplete:
        why = []
        for name in incomplete:
            status, error = outcomes.get(name, ("ok", None))
            if status == "failed":
                why.append(f"{name} could not be read ({error})")
            elif status == "interrupted":
                why.append(f"{name}'s first full read was interrupted")
            else:
                why.append(f"{name} has not finished a full read yet")
        return Held(
            "no complete picture yet, so no system is written to: "
            + "; ".join(why)
            + ". Segments from a partial picture would be wrong for the customers whose orders are missing",
            incomplete,
        )
    if max_staleness is None:
        return None
    stale = []
    for name, (status, error) in sorted(outcomes.items()):
        if status != "failed":
            continue
        last = (store.checkpoint(name, READ_COMPLETE) or {}).get("at")
        since = parse_timestamp(str(last)) if last else None
        if since is None or now - since > timedelta(seconds=max_staleness):
            when = since.isoformat(timespec="seconds") if since else "never"
            stale.append((name, f"{name} failed ({error}) and was last read completely {when}"))
    if stale:
        return Held(
            f"{'; '.join(why for _, why in stale)}, longer ago than max_staleness ({max_staleness:g}s)",
            [name for name, _ in stale],
        )
    return None
