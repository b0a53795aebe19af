"""One cycle: extract -> map -> resolve -> compute -> plan -> apply.

Extraction runs one thread per system (each with its own pacing); a system that fails is reported
and skipped while the others go on. A stop request (SIGTERM) is honoured between pages and between
write batches, so what was confirmed is always recorded before crmsync exits.

Writes go out only from a complete picture (sync/gate.py): until every system has been read in
full once, a cycle reads, computes and plans, and writes nothing anywhere. Each page passes the
drift guard (sync/drift.py) before it is stored.

This module runs the steps in order; each step lives in a module of its own: sync/extract.py
(extract, remap, owned-state verification), sync/mapper.py (the mapper factory), sync/resolve.py
(identity resolution and order attachment), sync/compute.py (verdicts and desired state),
sync/apply.py (plan and apply), sync/reports.py (what a cycle reports) and sync/memory.py. Their
public names are importable from here too, as they were before the split.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import datetime

import structlog

from connectors.base import Connector
from connectors.registry import connector_class
from mapping.model import Kind, RemoteState
from sync.apply import Applier
from sync.collector import tune_collector
from sync.compute import Compute
from sync.config import LoadedConfig
from sync.erasure import clear_at_vendors
from sync.extract import (
    MAPPING_VERSION,
    STORE_BATCH,
    STORE_INTERVAL,
    STREAMS,
    VERIFY_SWEEP,
    Extractor,
    merge_checkpoints,
    streams_of,
)
from sync.gate import Held, write_gate
from sync.mapper import make_mapper
from sync.memory import collector_paused, return_freed_memory
from sync.reports import CycleReport, Progress, SystemOutcome
from sync.resolve import Resolved, Resolver, Stopwatch, mapping_rules
from sync.state import Mapper, RunHandle, StateStore
from sync.state.on_thread import OnThread, quick_switches

__all__ = [
    "MAPPING_VERSION",
    "STORE_BATCH",
    "STORE_INTERVAL",
    "STREAMS",
    "VERIFY_SWEEP",
    "Cycle",
    "CycleReport",
    "Progress",
    "Resolved",
    "SystemOutcome",
    "build_connectors",
    "make_mapper",
    "merge_checkpoints",
    "return_freed_memory",
    "streams_of",
]

log = structlog.get_logger("crmsync.pipeline")


@contextmanager
def checkpoint_beside(store: StateStore) -> Iterator[None]:
    """The state's write-ahead log copied into its database file on a thread while the block runs
    (a cycle's vendor writes, which wait on the network), and waited for when it ends. A failed
    checkpoint loses nothing (the log keeps the pages, and the next commit checkpoints): logged."""
    with OnThread(store.wal_checkpoint, "crmsync-checkpoint") as behind:
        yield
    if behind.failure is not None:
        log.warning("checkpoint not made", error=f"{type(behind.failure).__name__}: {behind.failure}")


def build_connectors(loaded: LoadedConfig, stop_event: threading.Event) -> dict[str, Connector]:
    config = loaded.config
    connectors = {
        name: connector_class(settings.type)(
            name, settings, tag_prefix=config.writeback.tag_prefix, stop_event=stop_event
        )
        for name, settings in config.systems.items()
    }
    lines, unfinished = config.segments.reads_needed()
    if unfinished is not None and config.segments.timezone:
        # On the merchant's calendar the window's first day starts at its local midnight, up to a
        # day before now - N days (mapping/bases.py): a read of one day more has all of it.
        unfinished += 1
    facts = bool(config.segments.order_facts_needed() & {"categories", "discount"})
    for connector in connectors.values():
        connector.read_order_lines = lines
        connector.read_order_facts = facts
        connector.read_bases = config.segments.uses_bases()
        connector.unfinished_days = unfinished
    return connectors


def recorded_command(command: str, dry_run: bool) -> str:
    """The command a run is recorded under: a dry run says so (`plan` is one by its name)."""
    return f"{command} --dry-run" if dry_run and command != "plan" else command


class Cycle:
    def __init__(
        self,
        loaded: LoadedConfig,
        store: StateStore,
        *,
        clock: Callable[[], datetime],
        stop_event: threading.Event | None = None,
        progress: Progress | None = None,
        write_guard: Callable[[], None] | None = None,
    ) -> None:
        """`write_guard` is called before each write batch and raises (sync.lock.LockLost) when this
        process may no longer write: the writer lock's proof (sync/runtime.py `Writer.guard`)."""
        self.loaded = loaded
        self.config = loaded.config
        self.store = store
        self.clock = clock
        self.stop_event = stop_event or threading.Event()
        self.progress = progress
        self.rules = mapping_rules(self.config)
        self.extractor = Extractor(
            self.config, store, self.rules, clock=clock, stop_event=self.stop_event, progress=progress
        )
        self.resolver = Resolver(self.config, store, self.rules)
        self.compute = Compute(self.config, store, self.resolver, clock)
        self.applier = Applier(store, clock=clock, stop_event=self.stop_event, write_guard=write_guard)

    def run(
        self, command: str, *, dry_run: bool = False, full: Iterable[str] = (), allow_partial: bool = False
    ) -> CycleReport:
        """`full`: systems to read from the start (backfill) instead of from their cursors;
        `allow_partial`: write even when the write gate would hold (logged at warning)."""
        tune_collector()
        started = self.clock()
        run = self.store.begin_run(recorded_command(command, dry_run), started)
        report = CycleReport(run.run_id, dry_run, started)
        connectors = build_connectors(self.loaded, self.stop_event)
        report.systems = {name: SystemOutcome(c.type) for name, c in connectors.items()}
        report.caveats = [note for c in connectors.values() if (note := c.coverage_note())]
        full_systems = set(full)
        # A backfill recomputes from what it read: no resolution snapshot stands in for it.
        self.resolver.reuse_snapshot = not full_systems
        try:
            self._remap_if_needed(connectors, run, report)
            if not dry_run:
                self.applier.check_before_read(connectors)
            self._extract(connectors, report, run, full_systems)
            if not self.stop_event.is_set():
                self._verify_owned(connectors, report, run)
            if not self.stop_event.is_set():
                report.held = self._gate(connectors, report, allow_partial)
                # A held cycle computes as a dry run does: no segment history or tier state is
                # recorded from a picture that is missing a system.
                history = not dry_run and report.held is None
                self._compute_and_plan(connectors, report, run, history)
                with checkpoint_beside(self.store):
                    if not dry_run and report.held is None and not self.stop_event.is_set():
                        self._apply(connectors, report, run)
                        self._clear_erasures(connectors, report)
        finally:
            for connector in connectors.values():
                connector.close()
        finished = self._close(report)
        for name, outcome in report.systems.items():
            # A dry run says so in its rows: `status` and health never take it for the last cycle.
            counts = {**outcome.to_json(), "dry_run": dry_run}
            self.store.record_system_run(run, name, outcome.status, outcome.error, counts, finished)
        status = "interrupted" if report.interrupted else ("failed" if report.exit_code() == 3 else "ok")
        self.store.finish_run(run, status, report.to_json(), finished)
        return_freed_memory()
        return report

    def plan_stored(self) -> CycleReport:
        """What `sync` would write, planned from the records the state holds, while another process
        holds the writer lock: no vendor is read or written, and nothing is stored (`self.store`
        is then a read-only one, sync/stored_plan.py: the profiles the compute would save are
        dropped, no run is recorded). The write gate still says whether a sync would write."""
        started = self.clock()
        report = CycleReport(str(uuid.uuid4()), True, started)
        run = RunHandle(report.run_id, 0)  # in no table: this plan leaves no trace in the state
        connectors = build_connectors(self.loaded, self.stop_event)
        report.systems = {name: SystemOutcome(c.type) for name, c in connectors.items()}
        report.caveats = [note for c in connectors.values() if (note := c.coverage_note())]
        if stale := self.extractor.stale_mappings(connectors):
            report.caveats.append(
                f"the stored records of {', '.join(sorted(stale))} were mapped by another version of crmsync or "
                "another configuration: the next sync maps them again before it plans"
            )
        try:
            report.held = self._gate(connectors, report, allow_partial=False)
            self._plan(connectors, report, self._compute(connectors, report, run, history=False))
        finally:
            for connector in connectors.values():
                connector.close()
        self._close(report)
        return report

    def _close(self, report: CycleReport) -> datetime:
        """The end of a report: stopped on request or not, each system's quarantine, the time."""
        report.interrupted = self.stop_event.is_set()
        counts = self.store.quarantine_counts()
        for name, outcome in report.systems.items():
            outcome.quarantined = counts.get(name, 0)
            if report.interrupted and outcome.status == "ok":
                outcome.status = "interrupted"
        report.finished_at = finished = self.clock()
        return finished

    # ----- the write gate ------------------------------------------------------------------------
    def _gate(self, connectors: Mapping[str, Connector], report: CycleReport, allow_partial: bool) -> Held | None:
        held = write_gate(
            self.store,
            {name: streams_of(c) for name, c in connectors.items()},
            {name: (o.status, o.error) for name, o in report.systems.items()},
            self.clock(),
            self.config.writeback.max_staleness,
        )
        if held is None:
            return None
        if allow_partial:
            log.warning("writing from a partial picture (--allow-partial)", reason=held.reason, held=held.waiting_for)
            return None
        log.warning("writes held", reason=held.reason, waiting_for=held.waiting_for)
        return held

    # ----- the steps, each in its own module -------------------------------------------------------
    def _remap_if_needed(self, connectors: Mapping[str, Connector], run: RunHandle, report: CycleReport) -> None:
        self.extractor.remap_if_needed(connectors, run, report)

    def _extract(
        self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle, full: set[str]
    ) -> None:
        self.extractor.extract(connectors, report, run, full)

    def _extract_stream(
        self,
        connector: Connector,
        outcome: SystemOutcome,
        run: RunHandle,
        stream: str,
        kind: Kind,
        mapper: Mapper,
        full: bool,
    ) -> None:
        self.extractor.extract_stream(connector, outcome, run, stream, kind, mapper, full)

    def _verify_owned(self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle) -> None:
        self.extractor.verify_owned(connectors, report, run)

    def _resolve(self, clock: Stopwatch | None = None) -> Resolved:
        return self.resolver.resolve(clock)

    def _compute(
        self,
        connectors: Mapping[str, Connector],
        report: CycleReport,
        run: RunHandle,
        timings: dict[str, float] | None = None,
        *,
        history: bool | None = None,
        behind: bool = False,
    ) -> dict[str, dict[str, RemoteState]]:
        """Profiles and their verdicts; returns the desired owned state per system and record.
        `timings` (for bench/pipeline.py) receives the seconds each step took; `history` (default:
        not a dry run) records segment history, sizes and held tiers (`behind`: on a thread, see
        `_compute_and_plan`)."""
        return self.compute.desired_states(connectors, report, run, timings, history=history, behind=behind)

    def _plan(
        self,
        connectors: Mapping[str, Connector],
        report: CycleReport,
        desired: Mapping[str, Mapping[str, RemoteState]],
        known: dict[str, dict[str, RemoteState]] | None = None,
    ) -> None:
        self.applier.plan(connectors, report, desired, known)

    def _compute_and_plan(
        self,
        connectors: Mapping[str, Connector],
        report: CycleReport,
        run: RunHandle,
        history: bool,
        timings: dict[str, float] | None = None,
    ) -> None:
        """The compute and the plan, the segment history written on a thread beside the desired
        state and the plan (they read none of it) and waited for before anything else: a failure
        to write it still ends the cycle before a vendor is written. `timings` (bench/) receives
        the seconds of each step, the plan's and the wait for the history's last."""
        # Every order read on a thread beside resolution, on a transaction of its own: this cycle
        # holds the writer lock, so no other process writes contacts or orders meanwhile
        # (`plan_stored`, which runs beside a writer, reads them on the compute's transaction).
        # One pause of the collector over both (one full collection after them, not one each), the
        # interpreter lock handed over quickly to the threads that read and write beside them, and
        # no commit of theirs copying the write-ahead log into the database file: `run` has that
        # done beside the vendor writes (`checkpoint_beside`).
        # What crmsync knows the records hold, which the plan compares with, is read on a thread
        # once the profiles are assessed (their order columns let go: a million records' states
        # then add to a smaller peak): SQLite sorting every record's states (2.5 s at a million
        # records) beside the save and the desired state, on the core their Python leaves free.
        # The compute writes none of it, and the writer lock keeps other processes from writing it.
        with ExitStack() as stack:
            stack.enter_context(collector_paused())
            stack.enter_context(quick_switches())
            stack.enter_context(self.store.wal_checkpoints_deferred())
            ledger: list[OnThread[dict[str, dict[str, RemoteState]]]] = []

            def read_ledger() -> None:
                read = functools.partial(self.applier.known_states, self.applier.planned_systems(connectors, report))
                ledger.append(stack.enter_context(OnThread(read, "crmsync-ledger")))  # waited for on the way out

            self.resolver.read_ahead, self.compute.assessed_hook = True, read_ledger
            try:
                desired = self._compute(connectors, report, run, timings, history=history, behind=True)
            finally:
                self.resolver.read_ahead, self.compute.assessed_hook = False, None
            started = time.perf_counter()
            try:
                self._plan(connectors, report, desired, ledger[0].result() if ledger else None)
                del desired  # a million entries at scale: gone once the plan holds the changes
            except BaseException:
                self.compute.history_written(failing=True)
                raise
            planned = time.perf_counter()
            self.compute.history_written()
        if timings is not None:
            timings["plan"] = planned - started
            timings["history waited"] = time.perf_counter() - planned

    def _apply(self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle) -> None:
        self.applier.apply(connectors, report, run)

    def _clear_erasures(self, connectors: Mapping[str, Connector], report: CycleReport) -> None:
        """Erasures a vendor has not confirmed yet (`crmsync forget`, sync/erasure.py): tried again
        in every cycle that writes, except at the systems that failed in it."""
        if self.stop_event.is_set() or not self.store.erasures.target_systems():
            return
        failed = {name for name, outcome in report.systems.items() if outcome.status != "ok"}
        clear_at_vendors(self.store, connectors, clock=self.clock, guard=self.applier.write_guard, skip=failed)
