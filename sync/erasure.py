"""`crmsync forget KEY`: the person's data out of the state, then crmsync's tags and fields off
their records in every writable system (CONTRACTS §6).

The state part comes first, in one transaction (sync/state/erasure.py), so that from then on no
cycle profiles the person again, whatever happens at the vendors. The vendor part is a write of
the empty owned state (what a person in no segment carries) to each of their records, through
the connector's own write path, batch by batch with the writer lock proven before each. Where the
system holds tags, each batch's records are looked at right before it is written
(`Connector.verify_owned`): a tag in crmsync's prefix put there since crmsync last read the record
(by hand, by another tool) is crmsync's too (CONTRACTS §4), and "forget" leaves none. A record
the vendor confirmed leaves the erasure's targets; one it refused, or a system that is down,
stays pending: `status` lists it, and every later sync and the daemon's cycles try again (a
removal repeated changes nothing). The ledger is not written: crmsync keeps nothing of the
record once the vendor confirmed.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from connectors.base import Connector
from connectors.errors import ConnectorError
from mapping.model import Membership, RemoteState, WriteBack
from sync.apply import writes_held
from sync.planner import diff
from sync.state import StateStore
from sync.state.erasure import Target

log = structlog.get_logger("crmsync.erasure")

NO_SEGMENTS = Membership(frozenset(), None)


@dataclass
class ClearedAt:
    """One system's part of the pending erasures after a pass."""

    cleared: int = 0
    pending: int = 0
    error: str | None = None
    reason: str | None = None  # why nothing was tried (write-back off, not configured)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"cleared": self.cleared, "pending": self.pending, "error": self.error}
        if self.reason:
            doc["reason"] = self.reason
        return doc


@dataclass
class ErasurePass:
    systems: dict[str, ClearedAt] = field(default_factory=dict)

    @property
    def pending(self) -> int:
        return sum(outcome.pending for outcome in self.systems.values())


def clear_at_vendors(
    store: StateStore,
    connectors: Mapping[str, Connector],
    *,
    clock: Callable[[], datetime],
    guard: Callable[[], None],
    skip: Container[str] = (),
) -> ErasurePass:
    """One pass over every pending erasure target, per system (not those in `skip`: systems that
    failed this cycle)."""
    result = ErasurePass()
    for system in store.erasures.target_systems():
        targets = store.erasures.targets(system)
        outcome = result.systems[system] = ClearedAt(pending=len(targets))
        connector = connectors.get(system)
        if connector is None:
            outcome.reason = "the system is no longer in the config"
            continue
        if not connector.writes_back:
            outcome.reason = "write-back is off for this system"
            continue
        if system in skip:
            outcome.reason = "the system failed this cycle"
            continue
        held = writes_held(connector)
        if held is not None:
            outcome.reason = held
            continue
        _clear_system(store, connector, targets, outcome, clock=clock, guard=guard)
        log.info("erasures cleared", system=system, records=outcome.cleared, pending=outcome.pending)
    return result


def _clear_system(
    store: StateStore,
    connector: Connector,
    targets: list[Target],
    outcome: ClearedAt,
    *,
    clock: Callable[[], datetime],
    guard: Callable[[], None],
) -> None:
    system = connector.name
    empty = connector.desired_state(NO_SEGMENTS)
    work: list[tuple[Target, WriteBack]] = []
    nothing: list[Target] = []
    for target in targets:
        # Tags under an earlier prefix are no longer crmsync's, here as in every plan.
        change = diff(system, target.record_id, empty, target.known, connector.owns_tag)
        if change is None:
            nothing.append(target)  # crmsync knows of nothing of its own there
        else:
            work.append((target, change))
    store.erasures.confirm(system, nothing, clock())
    outcome.cleared += len(nothing)
    outcome.pending -= len(nothing)
    size = connector.write_batch
    for start in range(0, len(work), size):
        batch = work[start : start + size]
        guard()
        try:
            if connector.writes_tags:
                batch = _looked_at(connector, batch, empty)
            results = {r.record_id: r for r in connector.write([change for _, change in batch])}
        except ConnectorError as exc:
            outcome.error = str(exc)
            store.erasures.failed(system, [target for target, _ in work[start:]], str(exc))
            log.error("erasure write failed", system=system, error=str(exc))
            return
        done = []
        for target, change in batch:
            answer = results.get(change.record_id)
            if answer is not None and answer.ok and answer.confirmed:
                done.append(target)
            else:
                message = answer.message if answer is not None else "no answer for the record"
                store.erasures.failed(system, [target], message or "not confirmed")
                outcome.error = message or "not confirmed"
        store.erasures.confirm(system, done, clock())
        outcome.cleared += len(done)
        outcome.pending -= len(done)


def _looked_at(
    connector: Connector, batch: list[tuple[Target, WriteBack]], empty: RemoteState
) -> list[tuple[Target, WriteBack]]:
    """The batch's changes with every tag of crmsync's the records hold now removed as well. What
    the target knew (read, written, would write) is only as of crmsync's last read; a record the
    vendor no longer has is not answered for, and keeps its change (the write then says so)."""
    try:
        seen = connector.verify_owned([target.record_id for target, _ in batch])
    except NotImplementedError:  # a connector that cannot look: what crmsync knows, as before
        return batch
    looked = []
    for target, change in batch:
        now = seen.get(target.record_id)
        if now is not None and now.tags:
            known = RemoteState(target.known.tags | now.tags, target.known.fields, known=False)
            change = diff(connector.name, target.record_id, empty, known, connector.owns_tag) or change
        looked.append((target, change))
    return looked
