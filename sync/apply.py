"""Plan and apply: per system, the changes that bring each record's owned state to the desired one,
and their writes in batches, each batch recorded in the ledger as soon as the vendor answered. A
stop request (SIGTERM) is honoured between write batches."""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import structlog

from connectors.base import Connector
from connectors.errors import ConnectorError, PartialWrite
from connectors.http import Cancelled
from mapping.model import RemoteState, WriteBack, WriteResult
from sync.memory import collector_paused
from sync.planner import describe, person_name, plan_system
from sync.reports import CycleReport
from sync.state import RunHandle, StateStore

log = structlog.get_logger("crmsync.pipeline")


def _no_guard() -> None:
    """Nothing to prove (a file lock cannot be lost)."""


class Applier:
    def __init__(
        self,
        store: StateStore,
        *,
        clock: Callable[[], datetime],
        stop_event: threading.Event,
        write_guard: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.stop_event = stop_event
        # Proves the writer lock is still this process's before each batch; raises (LockLost) when
        # it is not, which ends the cycle at once: nothing more is written, to a vendor or the state.
        self.write_guard = write_guard or _no_guard
        # Per system, why its writes wait, as found before this cycle read it (`check_before_read`).
        self.held_at_read: dict[str, str] = {}

    def check_before_read(self, connectors: Mapping[str, Connector]) -> None:
        """Whether work of an earlier cycle was still running at a vendor before this cycle read
        it. Such work may end while the cycle reads, computes and plans, and then the check made
        before writing finds nothing: the plan would still come from records read while that work
        changed them. The writer lock keeps any other crmsync process from starting such work meanwhile."""
        self.held_at_read = {}
        for name, connector in connectors.items():
            if not connector.writes_back:
                continue
            try:
                reason = connector.writes_held()
            except ConnectorError as exc:  # asked again before writing, where unknown holds the writes
                log.warning("earlier work not checked before the read", system=name, error=exc.message)
                continue
            if reason is not None:
                self.held_at_read[name] = reason

    def plan(
        self,
        connectors: Mapping[str, Connector],
        report: CycleReport,
        desired: Mapping[str, Mapping[str, RemoteState]],
        known: dict[str, dict[str, RemoteState]] | None = None,
    ) -> None:
        with collector_paused():
            self.plan_systems(connectors, report, desired, known)

    @staticmethod
    def planned_systems(connectors: Mapping[str, Connector], report: CycleReport) -> list[str]:
        """The systems a plan writes to: write-back on, and not failed this cycle."""
        return [
            name
            for name, connector in connectors.items()
            if report.systems[name].status != "failed" and connector.writes_back
        ]

    def known_states(self, systems: Iterable[str]) -> dict[str, dict[str, RemoteState]]:
        """What crmsync knows each record of these systems holds (`StateStore.current_states`):
        what the plan compares the desired state with, read ahead of it by `Cycle`."""
        return {name: self.store.current_states(name) for name in systems}

    def plan_systems(
        self,
        connectors: Mapping[str, Connector],
        report: CycleReport,
        desired: Mapping[str, Mapping[str, RemoteState]],
        known: dict[str, dict[str, RemoteState]] | None = None,
    ) -> None:
        """`known`: `known_states` read before, by system (each let go of once planned: a million
        records at scale); a system it lacks is read here."""
        for name in self.planned_systems(connectors, report):
            connector, outcome = connectors[name], report.systems[name]
            current = known.pop(name) if known is not None and name in known else self.store.current_states(name)
            changes = plan_system(name, desired.get(name, {}), current, connector.owns_tag)
            if report.dry_run:  # a plan is read by people: whose records, which segments
                people = contact_people(self.store, name, [c.record_id for c in changes])
                prefix, field = connector.tag_prefix, connector.segments_field
                changes = list(
                    describe(changes, people=people, before=current, tag_prefix=prefix, segments_field=field)
                )
            outcome.planned = len(changes)
            report.changes.extend(changes)
            log.info("planned", system=name, records=len(changes))

    def apply(self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle) -> None:
        by_system: dict[str, list[WriteBack]] = defaultdict(list)
        for change in report.changes:
            by_system[change.system].append(change)

        def one(name: str) -> None:
            connector = connectors[name]
            outcome = report.systems[name]
            changes = by_system[name]
            calls_before = connector.client.stats.mutating
            size = connector.write_batch
            bulk = 0 < connector.bulk_write_threshold <= len(changes)

            def settle(batch: Sequence[WriteBack], results: Sequence[WriteResult]) -> None:
                self.store.record_results(name, batch, results, run.seq, self.clock())
                for result in results:
                    if result.ok:
                        outcome.written += 1
                    else:
                        outcome.rejected += 1
                        outcome.rejections.append((result.record_id, result.message))
                        log.warning("record rejected", system=name, record=result.record_id, reason=result.message)

            try:
                held = writes_held(connector)
                if held is None and name in self.held_at_read:
                    held = f"{self.held_at_read[name]} (running while this cycle read {name})"
                if held is not None:
                    outcome.fail("failed", held)
                    log.warning("writes held", system=name, reason=held)
                    return
                if bulk and self.stop_event.is_set():
                    outcome.fail("interrupted", "stopped before writing")
                elif bulk:
                    log.info("writing in bulk", system=name, records=len(changes))
                    self.write_guard()
                    try:
                        results = connector.write_bulk(changes, self.write_guard)
                    except PartialWrite as exc:
                        self.write_guard()
                        settle(changes, exc.results)  # what the vendor confirmed stays recorded
                        raise
                    self.write_guard()  # hours may have passed: still this process's to record
                    settle(changes, results)
                else:
                    for start in range(0, len(changes), size):
                        if self.stop_event.is_set():
                            outcome.fail("interrupted", "stopped between write batches")
                            break
                        batch = changes[start : start + size]
                        self.write_guard()
                        settle(batch, connector.write(batch))
            except Cancelled:
                outcome.fail("interrupted", "stopped while writing")
            except ConnectorError as exc:
                outcome.fail("failed", str(exc))
                log.error("write-back failed", system=name, error=str(exc))
            finally:
                outcome.write_calls = connector.client.stats.mutating - calls_before
                log.info(
                    "applied",
                    system=name,
                    written=outcome.written,
                    rejected=outcome.rejected,
                    write_calls=outcome.write_calls,
                )

        systems = [name for name in by_system if by_system[name]]
        if not systems:
            return
        with ThreadPoolExecutor(max_workers=len(systems), thread_name_prefix="apply") as pool:
            list(pool.map(one, systems))


def writes_held(connector: Connector) -> str | None:
    """Why this system's writes wait this cycle (`Connector.writes_held`), or None. A check that
    could not be made holds them too: unknown is not "nothing running"."""
    try:
        return connector.writes_held()
    except ConnectorError as exc:
        return f"writes held: could not check for work of an earlier cycle still running ({exc.message})"


def contact_people(
    store: StateStore, system: str, record_ids: Sequence[str]
) -> dict[str, tuple[str | None, str | None]]:
    """(name, email) of these contact records of one system, from the state's mapped contacts."""
    from sqlalchemy import select

    from sync.state.schema import contacts

    found: dict[str, tuple[str | None, str | None]] = {}
    columns = (contacts.c.record_id, contacts.c.email, contacts.c.details)
    with store.engine.connect() as conn:
        for start in range(0, len(record_ids), 500):
            chunk = record_ids[start : start + 500]
            query = select(*columns).where(contacts.c.system == system, contacts.c.record_id.in_(chunk))
            for record_id, email, details in conn.execute(query):
                found[record_id] = (person_name(json.loads(details or "{}")), email)
    return found
