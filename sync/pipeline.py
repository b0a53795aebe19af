"""One cycle: extract -> map -> resolve -> compute -> plan -> apply.

Extraction runs one thread per system (each with its own pacing); a system that fails is reported
and skipped while the others go on. A stop request (SIGTERM) is honoured between pages and between
write batches, so what was confirmed is always recorded before crmsync exits.

Writes go out only from a complete picture (sync/gate.py): until every system has been read in
full once, a cycle reads, computes and plans, and writes nothing anywhere. Each page passes the
drift guard (sync/drift.py) before it is stored.
"""

from __future__ import annotations

import ctypes
import gc
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from connectors.base import Connector
from connectors.errors import ConnectorError
from connectors.http import Cancelled
from connectors.registry import connector_class
from mapping.fieldmaps import FieldAbsence, MappingRules, map_contact, map_order
from mapping.identity import FieldChoice, resolve, row_identifiers, survive
from mapping.model import (
    Contact,
    Kind,
    Membership,
    Order,
    RecordProblem,
    Rejection,
    RemoteState,
    SourceRecord,
    WriteBack,
    parse_timestamp,
)
from mapping.normalize.email import is_role_address
from mapping.traits import OrderColumns, concat_order_columns, empty_order_columns, order_columns_from_rows
from sync.config import LoadedConfig
from sync.drift import DriftDetected, DriftGuard
from sync.gate import READ_COMPLETE, Held, write_gate
from sync.planner import plan_system
from sync.segmenting import SegmentRun, assess_profiles, record_run
from sync.state import Mapper, RunHandle, StateStore

log = structlog.get_logger("crmsync.pipeline")

VERIFY_SWEEP = "verify@sweep"  # checkpoint: when the rolling verification last ran, and where it stopped

# Bump when mapping code changes what it produces from the same payload: stored records are then
# mapped again from their raw form at the start of the next cycle.
MAPPING_VERSION = "3"

STREAMS = (("contacts", Kind.CONTACT), ("orders", Kind.ORDER))

# Extract stores pages in transactions of about this many records, or what arrived within this many
# seconds, whichever comes first.
STORE_BATCH = 1000
STORE_INTERVAL = 1.0


class Progress(Protocol):
    def advance(self, system: str, stream: str, records: int) -> None: ...


@dataclass
class SystemOutcome:
    type: str
    status: str = "ok"
    error: str | None = None
    read_contacts: int = 0
    read_orders: int = 0
    changed: int = 0
    quarantined: int = 0
    planned: int = 0
    written: int = 0
    rejected: int = 0
    write_calls: int = 0
    rejections: list[tuple[str, str]] = field(default_factory=list)

    def fail(self, status: str, error: str) -> None:
        # The first failure is the one worth reporting; an interruption never hides a failure.
        if self.status == "ok" or (self.status == "interrupted" and status == "failed"):
            self.status, self.error = status, error

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "error": self.error,
            "read": {"contacts": self.read_contacts, "orders": self.read_orders},
            "quarantined": self.quarantined,
            "planned": self.planned,
            "written": self.written,
            "rejected": self.rejected,
            "write_calls": self.write_calls,
        }


@dataclass
class CycleReport:
    run_id: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    profiles: int = 0
    systems: dict[str, SystemOutcome] = field(default_factory=dict)
    changes: list[WriteBack] = field(default_factory=list)
    interrupted: bool = False
    held: Held | None = None  # the write gate held this cycle's writes, and why
    caveats: list[str] = field(default_factory=list)  # limits of the picture (a shop's 60 days of orders)

    @property
    def quarantined(self) -> int:
        return sum(s.quarantined for s in self.systems.values())

    def to_json(self, *, with_changes: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "profiles": self.profiles,
            "quarantined": self.quarantined,
            "systems": {name: outcome.to_json() for name, outcome in self.systems.items()},
            "held": self.held.to_json() if self.held else None,
        }
        if self.caveats:
            doc["caveats"] = list(self.caveats)
        if with_changes:
            doc["changes"] = [change.to_json() for change in self.changes]
        return doc

    def exit_code(self) -> int:
        """CONTRACTS §1 and §6: 3 when a system failed or the writes were held, 1 when records were
        rejected, else 0."""
        if self.held is not None or any(s.status == "failed" for s in self.systems.values()):
            return 3
        if any(s.rejected for s in self.systems.values()):
            return 1
        return 0


def streams_of(connector: Connector) -> list[tuple[str, Kind]]:
    """The streams a connector reads (a system without orders has none to wait for)."""
    caps = connector.capabilities
    return [
        (name, kind) for name, kind in STREAMS if (caps.read_contacts if kind is Kind.CONTACT else caps.read_orders)
    ]


def build_connectors(loaded: LoadedConfig, stop_event: threading.Event) -> dict[str, Connector]:
    config = loaded.config
    return {
        name: connector_class(settings.type)(
            name, settings, tag_prefix=config.writeback.tag_prefix, stop_event=stop_event
        )
        for name, settings in config.systems.items()
    }


def make_mapper(
    connector: Connector,
    kind: Kind,
    connectors: Mapping[str, Connector],
    rules: MappingRules | None = None,
    absent: FieldAbsence | None = None,
) -> Mapper:
    """The pure mapping of one record, guarded: a payload that trips the mapping code is
    quarantined with the reason instead of stopping the run."""
    fields = connector.contact_fieldmap

    def canonical(system: str, raw: str) -> str | None:
        target = connectors.get(system)
        return target.canonical_id(raw) if target is not None else None

    def mapper(record: SourceRecord) -> Contact | Order | Rejection:
        try:
            if not isinstance(record.payload, Mapping):
                return Rejection("wrong_type", f"{kind.value} payload is not an object")
            if kind is Kind.CONTACT:
                owned = connector.owned_state(record.payload)
                return map_contact(record, fields, owned, canonical, rules, absent)
            return map_order(record, connector.order_fields, connector.order_counts(record.payload))
        except RecordProblem as problem:
            return Rejection(problem.reason, problem.message[:300])
        except Exception as exc:
            return Rejection("unreadable", f"{type(exc).__name__}: {exc}"[:300])

    return mapper


def given_names(contacts: Iterable[Contact]) -> dict[str, str]:
    """Record key -> given name (or initial), for the family-phone check in resolution."""
    out = {}
    for contact in contacts:
        name = contact.given_name or (contact.initials[0] if contact.initials else None)
        if name:
            out[contact.key] = name
    return out


def merge_checkpoints(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any]:
    """The later of two incremental cursors (a finished backfill meets the regular cursor)."""
    cursors = [c["cursor"] for c in (a, b) if c and c.get("cursor")]
    return {"cursor": max(cursors)} if cursors else {}


@dataclass
class Resolved:
    """The outcome of identity resolution for one cycle."""

    members: dict[str, list[str]]  # profile id -> record keys
    profiles: list[str]  # profile ids in the order of the columns below
    systems: list[str]  # system names; OrderColumns.system indexes this
    orders: OrderColumns  # every order, with the index of its profile (-1: no profile)
    aliases: dict[str, str]
    links: list[tuple[str, str, str, str]]  # record key a, record key b, identifier kind, value
    previous: dict[str, str]  # record key -> the profile id it had before this cycle
    # Profile fields by survivorship, computed on demand (only rule segments read them).
    fields: Callable[[Mapping[str, Sequence[str]]], dict[str, dict[str, FieldChoice]]] | None = None


class _Stopwatch:
    """Seconds per named step, into a dict (the pipeline benchmark reads them)."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into
        self.mark = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.into[name] = self.into.get(name, 0.0) + now - self.mark
        self.mark = now


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the compute builds millions of small tuples and
    strings: none of them form cycles, yet each full collection walks all of them (over a quarter
    of the compute's time at a million contacts). One collection afterwards frees what is left,
    and the freed heap goes back to the system: a daemon idles between cycles at its resting size,
    not at the size of its last compute."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()
        return_freed_memory()


def return_freed_memory() -> None:
    """glibc keeps freed heap pages for reuse; malloc_trim hands them back. Elsewhere a no-op."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _split_key(key: str) -> tuple[str, str]:
    system, _, record_id = key.partition(":")
    return system, record_id


class Cycle:
    def __init__(
        self,
        loaded: LoadedConfig,
        store: StateStore,
        *,
        clock: Callable[[], datetime],
        stop_event: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.loaded = loaded
        self.config = loaded.config
        self.store = store
        self.clock = clock
        self.stop_event = stop_event or threading.Event()
        self.progress = progress
        identity = self.config.identity
        self.rules = MappingRules(default_country=identity.default_country, role_locals=identity.role_locals())

    def run(
        self, command: str, *, dry_run: bool = False, full: Iterable[str] = (), allow_partial: bool = False
    ) -> CycleReport:
        """`full`: systems to read from the start (backfill) instead of from their cursors;
        `allow_partial`: write even when the write gate would hold (logged at warning)."""
        started = self.clock()
        run = self.store.begin_run(command, started)
        report = CycleReport(run.run_id, dry_run, started)
        connectors = build_connectors(self.loaded, self.stop_event)
        report.systems = {name: SystemOutcome(c.type) for name, c in connectors.items()}
        report.caveats = [note for c in connectors.values() if (note := c.coverage_note())]
        full_systems = set(full)
        try:
            self._remap_if_needed(connectors, run)
            self._extract(connectors, report, run, full_systems)
            if not self.stop_event.is_set():
                self._verify_owned(connectors, report, run)
            if not self.stop_event.is_set():
                report.held = self._gate(connectors, report, allow_partial)
                # A held cycle computes as a dry run does: no segment history or tier state is
                # recorded from a picture that is missing a system.
                history = not dry_run and report.held is None
                # The desired state (a million entries at scale) goes once the plan holds the changes.
                self._plan(connectors, report, self._compute(connectors, report, run, history=history))
                if not dry_run and report.held is None and not self.stop_event.is_set():
                    self._apply(connectors, report, run)
        finally:
            for connector in connectors.values():
                connector.close()
        report.interrupted = self.stop_event.is_set()
        counts = self.store.quarantine_counts()
        for name, outcome in report.systems.items():
            outcome.quarantined = counts.get(name, 0)
            if report.interrupted and outcome.status == "ok":
                outcome.status = "interrupted"
        report.finished_at = self.clock()
        for name, outcome in report.systems.items():
            self.store.record_system_run(
                run, name, outcome.status, outcome.error, outcome.to_json(), report.finished_at
            )
        status = "interrupted" if report.interrupted else ("failed" if report.exit_code() == 3 else "ok")
        self.store.finish_run(run, status, report.to_json(), report.finished_at)
        return_freed_memory()
        return report

    # ----- what the remote records hold, where reads do not show it -------------------------------
    def _verify_owned(self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle) -> None:
        """A rolling sweep for connectors whose reads do not show crmsync's fields: each cycle looks
        at the next records in id order, as many as the time since the last sweep buys of the daily
        budget (at most an hour's worth), and stores what it saw as the newest word on them."""
        now = self.clock()
        for name, connector in connectors.items():
            outcome = report.systems[name]
            if connector.reads_owned_state or not connector.settings.writeback or outcome.status != "ok":
                continue
            sweep = self.store.checkpoint(name, VERIFY_SWEEP) or {}
            since = (now - parse_timestamp(str(sweep["at"]))).total_seconds() if sweep.get("at") else 3600.0
            count = int(connector.verify_budget() * min(max(since, 0.0), 3600.0) / 86400)
            if count <= 0:
                continue  # the budget builds up until the next cycle
            ids = self.store.contact_ids_after(name, str(sweep.get("after", "")), count)
            try:
                states = connector.verify_owned(ids)
            except Cancelled:
                return
            except ConnectorError as exc:
                log.warning("verification of owned fields stopped", system=name, error=str(exc))
                continue
            self.store.set_owned(name, states, run.seq)
            after = ids[-1] if ids else ""
            self.store.set_checkpoint(name, VERIFY_SWEEP, {"at": now.isoformat(), "after": after}, run.seq)
            log.info("owned fields verified", system=name, records=len(states), after=after)

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

    # ----- map again after an upgrade ----------------------------------------------------------
    def _remap_if_needed(self, connectors: Mapping[str, Connector], run: RunHandle) -> None:
        if self.store.get_meta("mapping_version") == MAPPING_VERSION:
            return
        for name, connector in connectors.items():
            for _, kind in STREAMS:
                self.store.remap(name, kind, make_mapper(connector, kind, connectors, self.rules), run.seq)
        self.store.set_meta("mapping_version", MAPPING_VERSION)

    # ----- extract -------------------------------------------------------------------------------
    def _extract(
        self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle, full: set[str]
    ) -> None:
        def one(name: str) -> None:
            outcome = report.systems[name]
            connector = connectors[name]
            structlog.contextvars.bind_contextvars(system=name)
            try:
                for stream, kind in streams_of(connector):
                    absent = FieldAbsence()
                    mapper = make_mapper(connector, kind, connectors, self.rules, absent)
                    whole = name in full or self._reconcile_due(connector, stream)
                    self._extract_stream(connector, outcome, run, stream, kind, mapper, whole)
                    for field_name, count in sorted(absent.counts.items()):
                        # Once per run and field, not once per record: a wrong path is one mistake.
                        path = connector.contact_fieldmap[field_name].path
                        log.warning("mapped field missing", system=name, field=field_name, path=path, records=count)
                # Every stream of this system reached its end in this cycle: its stored records are
                # as fresh as now (the write gate's staleness is measured from here).
                self.store.set_checkpoint(name, READ_COMPLETE, {"at": self.clock().isoformat()}, run.seq)
            except Cancelled:
                outcome.fail("interrupted", "stopped while reading")
            except ConnectorError as exc:
                outcome.fail("failed", str(exc))
                log.error("extract failed", system=name, error=str(exc))
            except Exception as exc:
                outcome.fail("failed", f"{type(exc).__name__}: {exc}")
                log.exception("extract crashed", system=name)
            finally:
                structlog.contextvars.unbind_contextvars("system")

        with ThreadPoolExecutor(max_workers=max(1, len(connectors)), thread_name_prefix="extract") as pool:
            list(pool.map(one, connectors))

    def _reconcile_due(self, connector: Connector, stream: str) -> bool:
        """Whether this cycle reads the stream in full (`reconcile_every`): a page that silently
        left a record out cannot be noticed by an API without totals, and the incremental cursor
        moves past it; the full read brings it in. A read from an empty checkpoint counts as one."""
        last = (self.store.checkpoint(connector.name, f"{stream}@full") or {}).get("at")
        if last is None:
            return True  # never read in full (or not to the end): the write gate waits for one
        every = connector.settings.reconcile_every
        if every <= 0:
            return False
        due = (self.clock() - parse_timestamp(str(last))).total_seconds() >= every
        if due and self.store.checkpoint(connector.name, stream) is not None:
            log.info("reconciling: reading everything", system=connector.name, stream=stream)
        return due

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
        name = connector.name
        key = f"{stream}@backfill" if full else stream
        checkpoint = self.store.checkpoint(name, key)
        whole = full or not checkpoint
        reader = connector.read_contacts if kind is Kind.CONTACT else connector.read_orders
        received = changed = quarantined = 0
        last: Mapping[str, Any] | None = checkpoint
        settings = self.config.drift_guard
        declared = connector.contact_fields if kind is Kind.CONTACT else connector.order_fields
        guard = DriftGuard(
            name,
            stream,
            connector.api_label(),
            tuple(spec.path for spec in declared.values()),
            settings.min_records,
            settings.share,
        )
        # Pages read quickly are stored together, with the last one's checkpoint, in one transaction:
        # a transaction costs more than a hundred records do. A page that took long to read (paced)
        # is stored at once, so a crash never throws away much of the vendor's quota.
        buffered: list[SourceRecord] = []
        unstored: tuple[int, Mapping[str, Any] | None] | None = None  # last page number, checkpoint
        since = time.monotonic()

        def flush() -> None:
            nonlocal received, changed, quarantined, unstored, since
            if unstored is None:
                return
            number, page_checkpoint = unstored
            try:
                stored = self.store.store_page(
                    name, kind, buffered, mapper, run.seq, (key, page_checkpoint), guard=guard.check_mapped
                )
            except DriftDetected:
                buffered.clear()  # nothing of these pages is stored, and they are not tried again
                unstored = None
                raise
            received += stored.received
            changed += stored.changed
            quarantined += stored.quarantined
            log.debug("pages stored", system=name, stream=stream, page=number, records=stored.received)
            if self.progress is not None:
                self.progress.advance(name, stream, stored.received)
            buffered.clear()
            unstored, since = None, time.monotonic()

        try:
            for page in reader(checkpoint):
                guard.check_page(page.records, page.number)
                buffered.extend(page.records)
                unstored, last = (page.number, page.checkpoint), page.checkpoint
                if len(buffered) >= STORE_BATCH or time.monotonic() - since >= STORE_INTERVAL:
                    flush()
                if self.stop_event.is_set():
                    raise Cancelled(name, "stop requested")
        finally:
            flush()  # what was read is stored, also when the read stops or fails half-way
        if full:
            self.store.set_checkpoint(
                name, stream, merge_checkpoints(self.store.checkpoint(name, stream), last), run.seq
            )
            self.store.set_checkpoint(name, key, None, run.seq)
        if whole:
            self.store.set_checkpoint(name, f"{stream}@full", {"at": self.clock().isoformat()}, run.seq)
        if kind is Kind.CONTACT:
            outcome.read_contacts += received
        else:
            outcome.read_orders += received
        outcome.changed += changed
        log.info("extracted", system=name, stream=stream, records=received, changed=changed, quarantined=quarantined)

    # ----- resolve and compute --------------------------------------------------------------------
    def _compute(
        self,
        connectors: Mapping[str, Connector],
        report: CycleReport,
        run: RunHandle,
        timings: dict[str, float] | None = None,
        *,
        history: bool | None = None,
    ) -> dict[str, dict[str, RemoteState]]:
        """Profiles and their verdicts; returns the desired owned state per system and record.
        `timings` (for bench/pipeline.py) receives the seconds each step took; `history` (default:
        not a dry run) records segment history, sizes and held tiers."""
        with _collector_paused():
            record = not report.dry_run if history is None else history
            return self._compute_profiles(connectors, report, run, timings, record)

    def _compute_profiles(
        self,
        connectors: Mapping[str, Connector],
        report: CycleReport,
        run: RunHandle,
        timings: dict[str, float] | None,
        history: bool,
    ) -> dict[str, dict[str, RemoteState]]:
        steps = timings if timings is not None else {}
        clock = _Stopwatch(steps)
        now = self.clock()
        resolved = self._resolve(clock)
        segments = self._assess(resolved, now)
        resolved.orders = empty_order_columns()  # the traits hold what the cycle needs of them
        clock.lap("assess")
        changes = self.store.save_profiles(
            resolved.members, segments.verdicts(), resolved.aliases, run.seq, resolved.links, resolved.previous
        )
        clock.lap("save profiles")
        if history:
            record_run(self.store, run.seq, now, segments, changes)  # history, sizes, held tiers
        clock.lap("segment history")
        report.profiles = len(resolved.members)
        log.info(
            "profiles computed",
            profiles=len(resolved.members),
            merged=sum(1 for keys in resolved.members.values() if len(keys) > 1),
        )
        desired: dict[str, dict[str, RemoteState]] = defaultdict(dict)
        # One state object per (system, membership): few distinct ones exist, and the planner
        # compares each distinct pair of objects once.
        states: dict[tuple[str, Membership], RemoteState] = {}
        for profile, verdict in zip(segments.profiles, segments.memberships, strict=True):
            for key in resolved.members[profile]:
                system, record_id = _split_key(key)
                connector = connectors.get(system)
                if connector is not None:
                    state = states.get((system, verdict))
                    if state is None:
                        state = states[(system, verdict)] = connector.desired_state(verdict)
                    desired[system][record_id] = state
        clock.lap("desired state")
        return desired

    def _resolve(self, clock: _Stopwatch | None = None) -> Resolved:
        """Who is who: records joined into profiles, and every order attached to its profile.

        Works on stored columns, never one object per contact or order: a merchant with a million
        customers and five million orders must not become six million Python objects."""
        clock = clock or _Stopwatch({})
        identity = self.config.identity
        identified: list[tuple[str, list[tuple[str, str]]]] = []
        names: dict[str, str] = {}
        rows: list[tuple[int, str]] = []  # (contact row number, record key)
        emails: list[tuple[str, str]] = []  # (email match key, record key) of personal addresses
        for rowid, key, email_key, role, phone, kind, links, given in self.store.identity_rows():
            mobile = phone if kind == "mobile" else None
            found = row_identifiers(json.loads(links) if links != "[]" else (), email_key, role, mobile)
            identified.append((key, found))
            rows.append((rowid, key))
            if given:
                names[key] = given
            if email_key and not role:
                emails.append((email_key, key))
        previous, ages = self.store.previous_assignment()
        clock.lap("read contacts")
        resolution = resolve(
            identified,
            previous,
            ages,
            limits=identity.max_records_per_identifier,
            max_profile=identity.max_records_per_profile,
            names=names,
        )
        del identified, names, ages
        for (kind, value), holders in sorted(resolution.shared.items())[:20]:
            log.info("shared identifier joins nobody", kind=kind, records=holders)
            log.debug("shared identifier", kind=kind, value=value)
        if resolution.refused:
            log.warning("joins refused by the profile size limit", joins=len(resolution.refused))
        clock.lap("resolve")
        members = resolution.members()
        profiles = sorted(members)
        systems = sorted({*self.config.systems, *(key.split(":", 1)[0] for _, key in rows)})
        # Read after resolution, not on a thread beside it: SQLite hands the GIL back and forth on
        # every row, and both sides ran slower than one after the other (measured).
        chunks = self.store.order_arrays(self.config.segments.base_currency)
        orders = self._order_columns(chunks, resolution.assignment, rows, emails, profiles, systems)
        clock.lap("read orders")
        return Resolved(
            members=members,
            profiles=profiles,
            systems=systems,
            orders=orders,
            aliases=resolution.aliases,
            links=[(link.a, link.b, link.kind, link.value) for link in resolution.links],
            previous=previous,
            fields=self._profile_fields if self.config.segments.rules else None,
        )

    def _order_columns(
        self,
        chunks: Iterable[npt.NDArray[Any]],
        assignment: Mapping[str, str],
        rows: Sequence[tuple[int, str]],
        emails: Sequence[tuple[str, str]],
        profiles: Sequence[str],
        systems: Sequence[str],
    ) -> OrderColumns:
        """Every stored order as columns, attached to its profile: by the customer record it names,
        else (guest orders) by an email address that belongs to exactly one profile and a person."""
        position = {pid: i for i, pid in enumerate(profiles)}
        system_index = {name: i for i, name in enumerate(systems)}
        size = max((rowid for rowid, _ in rows), default=0) + 1
        # Contact row number -> profile index and system index: orders then attach by array indexing.
        row_profile = np.full(size, -1, dtype=np.int64)
        row_system = np.full(size, -1, dtype=np.int64)
        by_record: dict[str, int] = {}
        for rowid, key in rows:
            index = position[assignment[key]]
            row_profile[rowid] = index
            row_system[rowid] = system_index[key.split(":", 1)[0]]
            by_record[key] = index
        by_email: dict[str, int] = {}
        for email_key, key in emails:
            index = by_record[key]
            by_email[email_key] = index if by_email.get(email_key, index) == index else -1  # ambiguous
        settings = self.config.segments
        parts: list[OrderColumns] = []
        others: list[npt.NDArray[np.int64]] = []
        for chunk in chunks:
            plain = chunk["plain"]
            if not plain.all():
                others.append(chunk["order"][~plain])
                chunk = chunk[plain]
            contact = chunk["contact"]
            cents = np.rint(chunk["amount"] * 100.0).astype(np.int64)
            profile = row_profile[contact]
            parts.append(
                OrderColumns(profile, row_system[contact], cents, chunk["created"], chunk["counts"] & (profile >= 0))
            )
        if not others:
            return concat_order_columns(parts)
        # The few others: orders in another currency, and orders of customers crmsync holds no
        # record of (guests), which attach by email.
        role_locals = self.rules.role_locals
        rest: list[tuple[Any, ...]] = []
        attached: list[int] = []
        for rowid, email_key, amount, currency, created, counts, system in self.store.other_order_rows(
            np.concatenate(others).tolist()
        ):
            if rowid is not None:
                index = int(row_profile[rowid])
            elif email_key and not is_role_address(email_key, role_locals):
                index = by_email.get(email_key, -1)
            else:
                index = -1
            rest.append((None, email_key, amount, currency, created, counts, system))
            attached.append(index)
        columns, unconverted = order_columns_from_rows(
            rest, attached, system_index, settings.base_currency, settings.rates
        )
        parts.append(columns)
        if unconverted:
            log.warning("orders without an exchange rate left out", orders=unconverted, base=settings.base_currency)
        return concat_order_columns(parts)

    def _profile_fields(self, members: Mapping[str, Sequence[str]]) -> dict[str, dict[str, FieldChoice]]:
        """Each profile's fields by survivorship: read only when a rule segment asks for them."""
        identity = self.config.identity
        by_key = {contact.key: contact for contact, _ in self.store.iter_contacts()}
        return {
            pid: survive([by_key[key] for key in keys if key in by_key], identity.source_priority)
            for pid, keys in members.items()
        }

    def _assess(self, resolved: Resolved, now: datetime) -> SegmentRun:
        """Each profile's traits and segment membership, column-wise (sync/segmenting.py)."""
        fields = resolved.fields(resolved.members) if resolved.fields is not None else None
        return assess_profiles(
            self.config, self.store, resolved.profiles, resolved.members, resolved.systems, resolved.orders, now, fields
        )

    # ----- plan and apply ---------------------------------------------------------------------------
    def _plan(
        self, connectors: Mapping[str, Connector], report: CycleReport, desired: Mapping[str, Mapping[str, RemoteState]]
    ) -> None:
        with _collector_paused():
            self._plan_systems(connectors, report, desired)

    def _plan_systems(
        self, connectors: Mapping[str, Connector], report: CycleReport, desired: Mapping[str, Mapping[str, RemoteState]]
    ) -> None:
        for name, connector in connectors.items():
            outcome = report.systems[name]
            caps = connector.current_capabilities()
            if (
                outcome.status == "failed"
                or not connector.settings.writeback
                or not (caps.write_tags or caps.write_fields)
            ):
                continue
            known = self.store.known_states(name)
            changes = plan_system(name, desired.get(name, {}), {rid: k.current for rid, k in known.items()})
            outcome.planned = len(changes)
            report.changes.extend(changes)
            log.info("planned", system=name, records=len(changes))

    def _apply(self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle) -> None:
        by_system: dict[str, list[WriteBack]] = defaultdict(list)
        for change in report.changes:
            by_system[change.system].append(change)

        def one(name: str) -> None:
            connector = connectors[name]
            outcome = report.systems[name]
            changes = by_system[name]
            calls_before = connector.client.stats.mutating
            size = connector.write_batch
            try:
                for start in range(0, len(changes), size):
                    if self.stop_event.is_set():
                        outcome.fail("interrupted", "stopped between write batches")
                        break
                    batch = changes[start : start + size]
                    results = connector.write(batch)
                    self.store.record_results(name, batch, results, run.seq, self.clock())
                    for result in results:
                        if result.ok:
                            outcome.written += 1
                        else:
                            outcome.rejected += 1
                            outcome.rejections.append((result.record_id, result.message))
                            log.warning("record rejected", system=name, record=result.record_id, reason=result.message)
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
