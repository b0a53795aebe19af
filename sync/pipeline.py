"""One cycle: extract -> map -> resolve -> compute -> plan -> apply.

Extraction runs one thread per system (each with its own pacing); a system that fails is reported
and skipped while the others go on. A stop request (SIGTERM) is honoured between pages and between
write batches, so what was confirmed is always recorded before crmsync exits.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog

from connectors.base import Connector
from connectors.errors import ConnectorError
from connectors.http import Cancelled
from connectors.registry import connector_class
from mapping.fieldmaps import FieldAbsence, MappingRules, map_contact, map_order
from mapping.identity import FieldChoice, identifiers, resolve, survive
from mapping.model import Contact, Kind, Membership, Order, Rejection, RemoteState, SourceRecord, WriteBack
from mapping.normalize.email import email_match_key, is_role_address
from sync.config import LoadedConfig
from sync.planner import plan_system
from sync.segmenting import SegmentRun, assess_profiles, record_run
from sync.state import Mapper, RunHandle, StateStore

log = structlog.get_logger("crmsync.pipeline")

# Bump when mapping code changes what it produces from the same payload: stored records are then
# mapped again from their raw form at the start of the next cycle.
MAPPING_VERSION = "2"

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
        }
        if with_changes:
            doc["changes"] = [change.to_json() for change in self.changes]
        return doc

    def exit_code(self) -> int:
        """CONTRACTS §1: 3 when a system failed, 1 when records were rejected, else 0."""
        if any(s.status == "failed" for s in self.systems.values()):
            return 3
        if any(s.rejected for s in self.systems.values()):
            return 1
        return 0


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
    fields: dict[str, dict[str, FieldChoice]]  # profile id -> its fields, each from its best source
    orders: dict[str, list[Order]]  # profile id -> its orders
    aliases: dict[str, str]
    links: list[tuple[str, str, str, str]]  # record key a, record key b, identifier kind, value


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
        self._segments: SegmentRun | None = None

    def run(self, command: str, *, dry_run: bool = False, full: Iterable[str] = ()) -> CycleReport:
        """`full`: systems to read from the start (backfill) instead of from their cursors."""
        started = self.clock()
        run = self.store.begin_run(command, started)
        report = CycleReport(run.run_id, dry_run, started)
        connectors = build_connectors(self.loaded, self.stop_event)
        report.systems = {name: SystemOutcome(c.type) for name, c in connectors.items()}
        full_systems = set(full)
        try:
            self._remap_if_needed(connectors, run)
            self._extract(connectors, report, run, full_systems)
            if not self.stop_event.is_set():
                desired = self._compute(connectors, report, run)
                self._plan(connectors, report, desired)
                if not dry_run and not self.stop_event.is_set():
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
        return report

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
                for stream, kind in STREAMS:
                    absent = FieldAbsence()
                    mapper = make_mapper(connector, kind, connectors, self.rules, absent)
                    self._extract_stream(connector, outcome, run, stream, kind, mapper, name in full)
                    for field_name, count in sorted(absent.counts.items()):
                        # Once per run and field, not once per record: a wrong path is one mistake.
                        path = connector.contact_fieldmap[field_name].path
                        log.warning("mapped field missing", system=name, field=field_name, path=path, records=count)
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
        capable = connector.capabilities.read_contacts if kind is Kind.CONTACT else connector.capabilities.read_orders
        if not capable:
            return
        name = connector.name
        key = f"{stream}@backfill" if full else stream
        checkpoint = self.store.checkpoint(name, key)
        reader = connector.read_contacts if kind is Kind.CONTACT else connector.read_orders
        received = changed = quarantined = 0
        last: Mapping[str, Any] | None = checkpoint
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
            stored = self.store.store_page(name, kind, buffered, mapper, run.seq, (key, page_checkpoint))
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
        if kind is Kind.CONTACT:
            outcome.read_contacts += received
        else:
            outcome.read_orders += received
        outcome.changed += changed
        log.info("extracted", system=name, stream=stream, records=received, changed=changed, quarantined=quarantined)

    # ----- resolve and compute --------------------------------------------------------------------
    def _compute(
        self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle
    ) -> dict[str, dict[str, RemoteState]]:
        """Profiles and their verdicts; returns the desired owned state per system and record."""
        now = self.clock()
        resolved = self._resolve()
        verdicts = self._assess(resolved, now)
        self.store.save_profiles(
            {pid: [_split_key(key) for key in keys] for pid, keys in resolved.members.items()},
            verdicts,
            resolved.aliases,
            run.seq,
            resolved.links,
        )
        if not report.dry_run and self._segments is not None:
            record_run(self.store, run.seq, now, self._segments)  # history, sizes, held tiers
        report.profiles = len(resolved.members)
        log.info(
            "profiles computed",
            profiles=len(resolved.members),
            merged=sum(1 for keys in resolved.members.values() if len(keys) > 1),
        )
        desired: dict[str, dict[str, RemoteState]] = defaultdict(dict)
        for profile, keys in resolved.members.items():
            verdict = verdicts[profile][0]
            for key in keys:
                system, record_id = _split_key(key)
                connector = connectors.get(system)
                if connector is not None:
                    desired[system][record_id] = connector.desired_state(verdict)
        return desired

    def _resolve(self) -> Resolved:
        """Who is who: records joined into profiles, each profile's fields and its orders."""
        identity = self.config.identity
        contacts = [contact for contact, _ in self.store.iter_contacts()]
        previous, ages = self.store.previous_assignment()
        resolution = resolve(
            ((c.key, identifiers(c)) for c in contacts),
            previous,
            ages,
            limits=identity.max_records_per_identifier,
            max_profile=identity.max_records_per_profile,
            names=given_names(contacts),
        )
        for (kind, value), holders in sorted(resolution.shared.items())[:20]:
            log.info("shared identifier joins nobody", kind=kind, records=holders)
            log.debug("shared identifier", kind=kind, value=value)
        if resolution.refused:
            log.warning("joins refused by the profile size limit", joins=len(resolution.refused))
        # Guest orders attach by email, but only where the address names one profile and a person.
        by_email: dict[str, set[str]] = defaultdict(set)
        for contact in contacts:
            if contact.email and not contact.email_role:
                by_email[email_match_key(contact.email)].add(resolution.assignment[contact.key])
        orders: dict[str, list[Order]] = defaultdict(list)
        for order in self.store.iter_orders():
            profile = resolution.assignment.get(f"{order.system}:{order.customer_id}") if order.customer_id else None
            if profile is None and order.email and not is_role_address(order.email, self.rules.role_locals):
                candidates = by_email.get(email_match_key(order.email), set())
                profile = next(iter(candidates)) if len(candidates) == 1 else None
            if profile is not None:
                orders[profile].append(order)
        members = resolution.members()
        by_key = {c.key: c for c in contacts}
        fields = {
            pid: survive([by_key[key] for key in keys], identity.source_priority) for pid, keys in members.items()
        }
        return Resolved(
            members=members,
            fields=fields,
            orders=orders,
            aliases=resolution.aliases,
            links=[(link.a, link.b, link.kind, link.value) for link in resolution.links],
        )

    def _assess(self, resolved: Resolved, now: datetime) -> dict[str, tuple[Membership, dict[str, Any]]]:
        """Each profile's traits and segment membership, column-wise (sync/segmenting.py)."""
        self._segments = assess_profiles(
            self.config, self.store, resolved.members, resolved.orders, now, resolved.fields
        )
        return self._segments.verdicts()

    # ----- plan and apply ---------------------------------------------------------------------------
    def _plan(
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
