"""Extract: each system's streams read page by page (one thread per system), every page mapped and
stored with the checkpoint that covers it; a system's stored records mapped again after a mapping
upgrade; and the rolling verification of what the remote records hold, where reads do not show it.

A stop request (SIGTERM) is honoured between pages; each page passes the drift guard (sync/drift.py)
before it is stored."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import structlog

from connectors.base import Connector
from connectors.errors import ConnectorError
from connectors.http import Cancelled
from connectors.streams import Page
from mapping.fieldmaps import FieldAbsence, MappingRules
from mapping.model import Kind, SourceRecord, parse_timestamp
from mapping.normalize.text import MAX_ID
from sync.config import CrmsyncConfig
from sync.drift import DriftDetected, DriftGuard
from sync.gate import READ_COMPLETE
from sync.mapper import make_mapper
from sync.reports import CycleReport, Progress, SystemOutcome
from sync.state import Mapper, RunHandle, StateStore
from sync.state.keys import storage_id

log = structlog.get_logger("crmsync.pipeline")

VERIFY_SWEEP = "verify@sweep"  # checkpoint: when the rolling verification last ran, and where it stopped

# Bump when mapping code changes what it produces from the same payload: stored records are then
# mapped again from their raw form at the start of the next cycle.
# 6: an email field naming two addresses is refused (invalid_email), not its first; 7: a role
# address known by its first word or its words run together too (`info.nl@`, `no_reply@`); 8: Dutch
# country names beyond the alias table (`Turkije`, `Tsjechië`) are known; 9: Dutch IJ capitalised
# whole (`IJsbrand`), and a full name opening with a lower-case tussenvoegsel has no given name;
# 10: ... and only before a consonant (`Ijeoma`, not `IJeoma`)
MAPPING_VERSION = "10"
# The checkpoint saying a system's orders were read in full with the facts the bases read.
ORDER_FACTS = "orders@facts"

STREAMS = (("contacts", Kind.CONTACT), ("orders", Kind.ORDER))


def mapping_config(connector: Connector, connectors: Mapping[str, Connector], rules: MappingRules | None) -> str:
    """What a system's records are mapped by, as a digest: the mapping code (`MAPPING_VERSION`),
    its field maps (with `fields` and `links`), what marks crmsync's own tags and fields, the
    settings that may change a mapping (`Connector.mapping_settings`), the systems its links name
    (a stored id is read in that system's form), and the rules (default country, role addresses).
    Equal digests, equal mapping of the same payload."""
    made = {
        "code": MAPPING_VERSION,
        "contacts": sorted((name, spec.path, spec.normaliser) for name, spec in connector.contact_fieldmap.items()),
        "orders": sorted((name, spec.path, spec.normaliser) for name, spec in connector.order_fields.items()),
        "owned": [connector.tag_prefix, connector.segments_field, connector.tier_field],
        "settings": connector.mapping_settings(),
        "linked": sorted(
            (name, other.type if (other := connectors.get(name)) else None) for name in connector.settings.links
        ),
        "rules": [rules.default_country, sorted(rules.role_locals)] if rules is not None else None,
    }
    return _digest(made)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:20]


# Per system, in one meta value each (a key per system would not fit `meta.key` for a long name):
# the `mapping_config` its stored records were mapped by, and the `read_shape` they were read with.
MAPPED_BY = "mapped_by"
READ_WITH = "read_with"


# Extract stores pages in transactions of about this many records, or what arrived within this many
# seconds, whichever comes first.
STORE_BATCH = 1000
STORE_INTERVAL = 1.0


@runtime_checkable
class StreamProgress(Progress, Protocol):
    """A progress display that also takes what the vendor says a list holds, and hears when a
    stream ended (sync/progress.py); a plain `Progress` only counts records."""

    def expect(self, system: str, stream: str, *, records: int | None, pages: int | None, page: int) -> None: ...

    def finish(self, system: str, stream: str, *, complete: bool) -> None: ...


def streams_of(connector: Connector) -> list[tuple[str, Kind]]:
    """The streams a connector reads (a system without orders has none to wait for)."""
    caps = connector.capabilities
    base = [
        (name, kind) for name, kind in STREAMS if (caps.read_contacts if kind is Kind.CONTACT else caps.read_orders)
    ]
    return base + [(name, stream.kind) for name, stream in connector.extra_streams().items()]


def merge_checkpoints(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any]:
    """The later of two incremental cursors (a finished backfill meets the regular cursor)."""
    cursors = [c["cursor"] for c in (a, b) if c and c.get("cursor")]
    return {"cursor": max(cursors)} if cursors else {}


class Extractor:
    """Reads every system into the state: what `Cycle` runs before it computes."""

    def __init__(
        self,
        config: CrmsyncConfig,
        store: StateStore,
        rules: MappingRules,
        *,
        clock: Callable[[], datetime],
        stop_event: threading.Event,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.rules = rules
        self.clock = clock
        self.stop_event = stop_event
        self.progress = progress

    def stale_mappings(self, connectors: Mapping[str, Connector]) -> dict[str, str]:
        """The systems whose stored records were mapped by other mapping code or another
        configuration (`mapping_config`: a `country` added to an AFAS `fields`, a role address
        added, efficy's counted statuses), and which of the two. A state whose `mapping_version`
        is not this code's (a migration removes it) holds no record mapped by this code."""
        new_code = self.store.get_meta("mapping_version") != MAPPING_VERSION
        mapped_by = self._per_system(MAPPED_BY)
        stale = {}
        for name, connector in connectors.items():
            if new_code:
                stale[name] = "mapping code"
            elif mapped_by.get(name) != mapping_config(connector, connectors, self.rules):
                stale[name] = "configuration"
        return stale

    def remap_if_needed(
        self, connectors: Mapping[str, Connector], run: RunHandle, report: CycleReport | None = None
    ) -> None:
        """Map the stored raw records of every stale system again (`stale_mappings`): without it
        a changed field map would reach only the records the vendor changes after it. And where a
        system's reads now ask for more than its records were read with (`Connector.read_shape`:
        a column added), read it in full at this cycle: its stored records lack it. Until that
        read completes the write gate holds, as for a system never read in full.

        The drift guard sees the stored records mapped anew before any is stored: where the new
        mapping would quarantine nearly all of them (new code meeting a vendor's words it does not
        know), they stay as mapped before, the system is not read at this cycle (its new records
        would be misread the same way; `report` marks it failed, saying why) and it is tried again
        at the next one."""
        mapped_by = self._per_system(MAPPED_BY)
        for name, why in self.stale_mappings(connectors).items():
            log.info("mapping stored records again", system=name, why=why)
            connector = connectors[name]
            try:
                for stream, kind in STREAMS:
                    mapper = make_mapper(connector, kind, connectors, self.rules)
                    guard = self.drift_guard(connector, stream, kind)
                    self.store.remap(name, kind, mapper, run.seq, guard=guard.check_mapped)
            except DriftDetected as exc:
                mapped_by.pop(name, None)  # stale still: mapped again at the next cycle
                log.error("mapping stored records again refused", system=name, why=why, error=str(exc))
                if report is not None:
                    report.systems[name].fail(
                        "failed",
                        f"the {why} changed and maps the stored records differently: {exc}. They stay as mapped "
                        "before and the system is not read until this is resolved",
                    )
            else:
                mapped_by[name] = mapping_config(connector, connectors, self.rules)
            self.store.set_meta(MAPPED_BY, json.dumps(mapped_by, sort_keys=True))
        self.store.set_meta("mapping_version", MAPPING_VERSION)
        read_with = self._per_system(READ_WITH)
        for name, connector in connectors.items():
            if (asked := connector.read_shape()) is None:
                continue
            # A system first seen here is read in full anyway if nothing of it is stored, and must
            # be if its records were stored by a crmsync that did not record what it asked for.
            shape = _digest(asked)
            if read_with.get(name) != shape:
                for stream, _ in streams_of(connector):
                    if self.store.checkpoint(name, f"{stream}@full") is not None:
                        log.info("reading in full: the reads ask for more than was stored", system=name, stream=stream)
                        self.store.set_checkpoint(name, f"{stream}@full", None, run.seq)
            read_with[name] = shape
        self.store.set_meta(READ_WITH, json.dumps(read_with, sort_keys=True))

    def drift_guard(self, connector: Connector, stream: str, kind: Kind) -> DriftGuard:
        settings = self.config.drift_guard
        return DriftGuard(
            connector.name,
            stream,
            connector.api_label(),
            connector.drift_paths(stream, kind),
            settings.min_records,
            settings.share,
        )

    def _per_system(self, key: str) -> dict[str, str]:
        stored = self.store.get_meta(key)
        return dict(json.loads(stored)) if stored else {}

    def extract(self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle, full: set[str]) -> None:
        def one(name: str) -> None:
            outcome = report.systems[name]
            connector = connectors[name]
            if outcome.status == "failed":
                return  # its stored records could not be mapped again (`remap_if_needed`)
            structlog.contextvars.bind_contextvars(system=name)
            try:
                for stream, kind in streams_of(connector):
                    absent = FieldAbsence()
                    mapper = make_mapper(connector, kind, connectors, self.rules, absent)
                    facts = self.facts_due(connector, stream, run)
                    whole = name in full or self.reconcile_due(connector, stream) or facts
                    self.extract_stream(connector, outcome, run, stream, kind, mapper, whole)
                    if facts:
                        marker = {"lines": self.wants_lines(connector), "at": self.clock().isoformat()}
                        self.store.set_checkpoint(name, ORDER_FACTS, marker, run.seq)
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

    @staticmethod
    def wants_lines(connector: Connector) -> bool:
        return connector.read_order_lines and "categories" in connector.order_fields

    def facts_due(self, connector: Connector, stream: str, run: RunHandle) -> bool:
        """Whether the orders must be read in full because the segments now read what orders say
        beyond their value (discount codes, and order lines where asked) and the stored orders were
        read without it: interests or a discount share from the few orders read since would be a
        partial picture. Once per system whose orders carry such facts, again when its lines are
        first asked for, and again after the segments stopped reading them (orders stored since
        lack them). The read starts from the first page: a full read left half-way before was
        asked without these facts."""
        if stream != "orders":
            return False
        name = connector.name
        marker = self.store.checkpoint(name, ORDER_FACTS)
        carries = {"discount", "categories"} & connector.order_fields.keys()
        if not connector.read_order_facts or not carries:
            if marker is not None:
                self.store.set_checkpoint(name, ORDER_FACTS, None, run.seq)
            return False
        lines = self.wants_lines(connector)
        if marker is not None and marker.get("pending") and marker.get("lines") == lines:
            return True  # the facts read under way: resume it
        if marker is not None and not marker.get("pending"):
            if lines and not marker.get("lines"):
                pass  # lines asked for the first time: read again
            else:
                if marker.get("lines") and not lines:
                    # Lines no longer asked: orders stored from now on lack them, so the next time
                    # they are asked for, everything is read again.
                    self.store.set_checkpoint(name, ORDER_FACTS, {**marker, "lines": False}, run.seq)
                return False
        if self.store.checkpoint(name, stream) is not None:
            log.info("reading every order again: the segments now read their discount codes and lines", system=name)
        self.store.set_checkpoint(name, f"{stream}@backfill", None, run.seq)
        self.store.set_checkpoint(name, ORDER_FACTS, {"lines": lines, "pending": True}, run.seq)
        return True

    def reconcile_due(self, connector: Connector, stream: str) -> bool:
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

    def extract_stream(
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
        # A contacts read from its first page to its last tells which stored contacts the vendor no
        # longer has; a resumed backfill did not see the first part and proves nothing.
        judges = stream == "contacts" and kind is Kind.CONTACT and whole and not (full and checkpoint is not None)
        absent_before = self.absent_list(name, stream) if stream == "contacts" and kind is Kind.CONTACT else {}
        watched = set(absent_before)
        seen: set[str] = set()  # the ids the read returned (a judging read), or those of `watched`
        reader = connector.reader(stream)
        received = changed = quarantined = 0
        last: Mapping[str, Any] | None = checkpoint
        guard = self.drift_guard(connector, stream, kind)
        # Pages read quickly are stored together, with the last one's checkpoint, in one transaction:
        # a transaction costs more than a hundred records do. A page that took long to read (paced)
        # is stored at once, so a crash never throws away much of the vendor's quota.
        buffered: list[SourceRecord] = []
        unstored: tuple[int, Mapping[str, Any] | None] | None = None  # last page number, checkpoint
        since = time.monotonic()
        newest: Page | None = None  # the last page read: what the vendor said about the whole list

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
            self.report_progress(name, stream, stored.received, newest)
            buffered.clear()
            unstored, since = None, time.monotonic()

        try:
            try:
                for page in reader(checkpoint):
                    guard.check_page(page.records, page.number)
                    if judges:
                        seen.update(r.id if len(r.id) <= MAX_ID else storage_id(r.id) for r in page.records)
                    elif watched:
                        seen.update(
                            rid
                            for r in page.records
                            if (rid := r.id if len(r.id) <= MAX_ID else storage_id(r.id)) in watched
                        )
                    buffered.extend(page.records)
                    unstored, last, newest = (page.number, page.checkpoint), page.checkpoint, page
                    if len(buffered) >= STORE_BATCH or time.monotonic() - since >= STORE_INTERVAL:
                        flush()
                    if self.stop_event.is_set():
                        raise Cancelled(name, "stop requested")
            finally:
                flush()  # what was read is stored, also when the read stops or fails half-way
        except BaseException:
            self.stream_ended(name, stream, complete=False)
            raise
        self.stream_ended(name, stream, complete=True)
        if judges:
            self.judge_absence(connector, outcome, run, stream, seen, absent_before)
        elif seen:
            # Read again since the last full read (changed at the vendor): not deleted after all.
            self.keep_absent(name, stream, {rid: at for rid, at in absent_before.items() if rid not in seen}, run)
        if full:
            self.store.set_checkpoint(
                name, stream, merge_checkpoints(self.store.checkpoint(name, stream), last), run.seq
            )
            self.store.set_checkpoint(name, key, None, run.seq)
        if whole:
            marker: dict[str, Any] = {"at": self.clock().isoformat()}
            if full and checkpoint is not None:
                # A backfill resumed from where an earlier one stopped: complete, but this run read
                # only the rest, so its count is no answer to "how many are there" (read_swing).
                marker["resumed"] = True
            self.store.set_checkpoint(name, f"{stream}@full", marker, run.seq)
        if kind is Kind.CONTACT:
            outcome.read_contacts += received
        else:
            outcome.read_orders += received
        outcome.changed += changed
        log.info("extracted", system=name, stream=stream, records=received, changed=changed, quarantined=quarantined)

    def absent_list(self, system: str, stream: str) -> dict[str, str]:
        """The stored records of a stream that its full reads have left out since (`judge_absence`):
        id -> the time of the first full read without it."""
        since = (self.store.checkpoint(system, f"{stream}@absent") or {}).get("since", {})
        return {str(rid): str(at) for rid, at in since.items()} if isinstance(since, dict) else {}

    def keep_absent(self, system: str, stream: str, absent: Mapping[str, str], run: RunHandle) -> None:
        self.store.set_checkpoint(system, f"{stream}@absent", _absent_marker(absent), run.seq)

    def judge_absence(
        self,
        connector: Connector,
        outcome: SystemOutcome,
        run: RunHandle,
        stream: str,
        seen: set[str],
        absent_before: Mapping[str, str],
    ) -> None:
        """After a full read of a system's contacts, from its first page to its last: the stored
        contacts it did not return (`seen`: every id its pages held, stored, unchanged or held;
        what the vendor or the connector filtered out counts as not returned) are absent. One
        absence proves nothing (a page that skipped a record): they are kept in `<stream>@absent`,
        and a contact absent from this read and every full read since the first without it, at least
        `[drift_guard] absent_for` ago, is taken for deleted at the vendor and leaves the state
        (`StateStore.drop_deleted_contacts`). A read that leaves out more
        than `[drift_guard] absent_share` of the stored contacts for the first time (and at least
        `min_records`, or most of them however few) changes nothing: a vendor-side filter or the API
        user's rights changed, more likely than that many customers were deleted at once."""
        name = connector.name
        settings = self.config.drift_guard
        stored, absent = self.store.contacts_absent(name, seen)
        before = set(absent_before)
        new = [rid for rid in absent if rid not in before]
        # A read that left out most of the stored contacts (an empty list, another role or
        # administration, lost rights, a list cut short) is a misread picture at any size: a
        # small shop's too, where fewer than `min_records` are left out.
        most = len(absent) * 2 > stored
        if new and len(new) > settings.absent_share * stored and (len(new) >= settings.min_records or most):
            log.warning(
                "contacts absent from a full read: nothing removed",
                system=name,
                stream=stream,
                absent=len(new),
                stored=stored,
            )
            outcome.absent_held[stream] = {"absent": len(new), "stored": stored}
            outcome.warnings.append(
                f"a full read of {name}'s {stream} left out {len(new)} of the {stored} stored contacts, more than "
                f"[drift_guard] absent_share {settings.absent_share:.0%}: none is taken for deleted. Check the API "
                "user's rights and the vendor-side filter of what it lists (an AFAS GetConnector's filter, a "
                "role or a status); if the vendor did delete them, raise absent_share for one run (that full "
                "read records them absent, and the first full read [drift_guard] absent_for later removes them)"
            )
            # Nothing recorded absent; those read again leave the list all the same.
            self.keep_absent(name, stream, {rid: at for rid, at in absent_before.items() if rid not in seen}, run)
            return
        now = self.clock()
        due = now - timedelta(seconds=settings.absent_for)
        deleted, present = self.confirm_deleted(
            connector,
            outcome,
            sorted(
                (rid for rid in absent if rid in before and parse_timestamp(absent_before[rid]) <= due),
                key=lambda rid: (absent_before[rid], rid),
            ),
        )
        gone = set(deleted)
        still = {rid: absent_before[rid] for rid in absent if rid in before and rid not in gone}
        # Still at the vendor, out of the list: asked again once another `absent_for` has passed.
        still.update((rid, now.isoformat()) for rid in [*new, *present])
        marker = _absent_marker(still)
        if deleted:
            self.store.drop_deleted_contacts(name, deleted, (f"{stream}@absent", marker), run.seq)
            outcome.deleted += len(deleted)
            log.info("contacts deleted at the vendor", system=name, records=len(deleted))
        else:
            self.store.set_checkpoint(name, f"{stream}@absent", marker, run.seq)
        if still and len(still) > len(new):
            waiting = len(still) - len(new)
            log.info("contacts absent, not for long enough yet", system=name, stream=stream, records=waiting)
        if new:
            log.info("contacts absent from a full read", system=name, stream=stream, records=len(new))

    def confirm_deleted(
        self, connector: Connector, outcome: SystemOutcome, due: list[str]
    ) -> tuple[list[str], list[str]]:
        """Of the contacts absent long enough, those the vendor confirms it deleted (asked by id,
        past the list's filter), and those it still has: a customer whose role or status took it
        out of the list is no deletion, and is kept. A vendor that cannot be asked past its list
        (`gone_contacts` None) leaves the absence to decide, as does a stored id that is none of
        the vendor's (it cannot be asked). An answer that cannot be told removes none of those
        asked: they wait for the next full read. At most the connector's `gone_per_read` are asked
        in one read, the longest absent first; the rest wait for the next."""
        if not due:
            return [], []
        name = connector.name
        # A stored id that is none of the vendor's (a record held without one, stored as "", or
        # under a stand-in for an over-long one) cannot be asked of it, and would make every
        # look-up fail, for good: its absence decides, as it did before the look-up.
        askable: list[str] = []
        unaskable: list[str] = []
        for rid in due:
            (askable if connector.canonical_id(rid) == rid else unaskable).append(rid)
        asked = askable[: connector.gone_per_read]
        if not asked:
            return unaskable, []
        try:
            gone = connector.gone_contacts(asked)
        except Cancelled:
            raise
        except ConnectorError as exc:
            log.warning(
                "absent contacts not confirmed deleted: none removed", system=name, records=len(asked), error=str(exc)
            )
            outcome.warnings.append(
                f"{len(asked)} of {name}'s contacts absent from its full reads for [drift_guard] absent_for could not "
                f"be confirmed deleted at the vendor ({exc}): none is removed; the next full read asks again"
            )
            return unaskable, []
        if gone is None:
            return due, []
        present = [rid for rid in asked if rid not in gone]
        if present:
            log.warning("absent contacts still at the vendor: kept", system=name, records=len(present))
            named = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            outcome.warnings.append(
                f"{len(present)} of {name}'s contacts left out of its full reads for [drift_guard] absent_for are "
                f"still at the vendor ({named}): kept, not taken for "
                "deleted. Its list leaves them out (a changed role or status, the API user's rights, a vendor-side "
                "filter); their stored data stays as last read. They are asked again after absent_for"
            )
        return [*unaskable, *(rid for rid in asked if rid in gone)], present

    def report_progress(self, system: str, stream: str, records: int, page: Page | None) -> None:
        if self.progress is None:
            return
        self.progress.advance(system, stream, records)
        if page is None or (page.total is None and page.total_pages is None):
            return  # the vendor said nothing about the whole list
        if isinstance(self.progress, StreamProgress):
            self.progress.expect(system, stream, records=page.total, pages=page.total_pages, page=page.number)

    def stream_ended(self, system: str, stream: str, *, complete: bool) -> None:
        """The stream's progress ends with it: read to its end, or stopped (interrupted, failed)."""
        if isinstance(self.progress, StreamProgress):
            self.progress.finish(system, stream, complete=complete)

    def verify_owned(self, connectors: Mapping[str, Connector], report: CycleReport, run: RunHandle) -> None:
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


def _absent_marker(absent: Mapping[str, str]) -> dict[str, Any] | None:
    """The `<stream>@absent` checkpoint: per id, when a full read first left it out."""
    return {"since": dict(sorted(absent.items()))} if absent else None
