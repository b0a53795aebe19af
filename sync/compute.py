"""Compute: the profiles' traits and segment verdicts, saved with the resolution and (when the
cycle may) the segment history; and from them the owned state each record should hold."""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

import structlog

from connectors.base import Connector
from mapping.bases import base_of
from mapping.holdout import Holdouts
from mapping.model import Membership, RemoteState
from mapping.traits import empty_order_columns
from sync.config import CrmsyncConfig
from sync.memory import collector_paused
from sync.reports import CycleReport
from sync.resolve import Resolved, Resolver, Stopwatch
from sync.segmenting import SegmentRun, assess_profiles, record_run
from sync.state import RunHandle, StateStore
from sync.state.on_thread import OnThread, quick_switches

log = structlog.get_logger("crmsync.pipeline")


class Compute:
    def __init__(
        self, config: CrmsyncConfig, store: StateStore, resolver: Resolver, clock: Callable[[], datetime]
    ) -> None:
        self.config = config
        self.store = store
        self.resolver = resolver
        self.clock = clock
        self.history_behind: OnThread[None] | None = None  # the segment history being written
        # Called once the profiles are assessed and the order columns let go (`Cycle` starts the
        # plan's ledger read there, beside the save and the desired state).
        self.assessed_hook: Callable[[], None] | None = None

    def desired_states(
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
        not a dry run) records segment history, sizes and held tiers; `behind`: on a thread while
        the caller goes on (to plan), who then waits for it with `history_written`."""
        with collector_paused(), quick_switches():  # the save's writes thread takes turns with this one
            record = not report.dry_run if history is None else history
            return self.compute_profiles(connectors, report, run, timings, record, behind)

    def history_written(self, failing: bool = False) -> None:
        """Wait for the segment history written behind, raising what writing it raised; `failing`:
        the caller is raising an error of its own, which must not be replaced, so this one is only
        logged."""
        pending, self.history_behind = self.history_behind, None
        if pending is None:
            return
        try:
            pending.result()
        except Exception as exc:
            if not failing:
                raise
            log.error("segment history not written", error=f"{type(exc).__name__}: {exc}")

    def compute_profiles(
        self,
        connectors: Mapping[str, Connector],
        report: CycleReport,
        run: RunHandle,
        timings: dict[str, float] | None,
        history: bool,
        behind: bool = False,
    ) -> dict[str, dict[str, RemoteState]]:
        steps = timings if timings is not None else {}
        clock = Stopwatch(steps)
        now = self.clock()
        resolved = self.resolver.resolve(clock)
        self.resolver.keep(resolved)
        clock.lap("keep snapshot")
        segments = self.assess(resolved, now)
        resolved.orders = empty_order_columns()  # the traits hold what the cycle needs of them
        clock.lap("assess")
        if self.assessed_hook is not None:
            self.assessed_hook()
        changes = self.store.save_profiles(
            resolved.members,
            segments.verdicts(),
            resolved.aliases,
            run.seq,
            resolved.links,
            resolved.previous,
            resolved.members_digest,
            resolved.change,
        )
        clock.lap("save profiles")
        if history and behind:
            # Its rows go in as JSON batches, SQLite steps that hold no interpreter lock, while
            # this thread builds the desired state and the plan, which read none of it.
            write = functools.partial(record_run, self.store, run.seq, now, segments, changes)
            self.history_behind = OnThread(write, "crmsync-history")
        elif history:
            record_run(self.store, run.seq, now, segments, changes)  # history, sizes, held tiers
        clock.lap("segment history")
        try:
            return self.desired_of(connectors, resolved, segments, report, clock)
        except BaseException:
            self.history_written(failing=True)  # no thread left writing behind a compute that failed
            raise

    def desired_of(
        self,
        connectors: Mapping[str, Connector],
        resolved: Resolved,
        segments: SegmentRun,
        report: CycleReport,
        clock: Stopwatch,
    ) -> dict[str, dict[str, RemoteState]]:
        """The owned state each record should hold: its profile's verdict as its system gets it."""
        report.profiles = len(resolved.members)
        log.info(
            "profiles computed",
            profiles=len(resolved.members),
            merged=sum(1 for keys in resolved.members.values() if len(keys) > 1),
        )
        desired: dict[str, dict[str, RemoteState]] = defaultdict(dict)
        # One state object per (system, membership): few distinct ones exist, and the planner
        # compares each distinct pair of objects once. `slots` holds, per (system, membership),
        # the system's map and that state, so a record costs two lookups.
        slots: dict[tuple[str, Membership], tuple[dict[str, RemoteState], RemoteState]] = {}
        holdouts = Holdouts(self.config.segments.holdout)
        switched = {name: c.settings.bases for name, c in connectors.items() if c.settings.bases is not None}
        enabled = self.config.segments.bases.enabled

        def slot(system: str, shown: Membership) -> tuple[dict[str, RemoteState], RemoteState]:
            connector = connectors.get(system)
            if connector is None:  # a system no longer configured: its records go to a map nobody reads
                return {}, RemoteState()
            allowed = switched.get(system)
            written = shown if allowed is None else bases_for(shown, allowed, enabled)
            return desired[system], connector.desired_state(written)

        # Consent is the person's (the segment's membership), and also each record's own: a segment
        # that needs it is written only to a record whose own address opted in.
        marked = frozenset(n for n in segments.assessment.names if self.config.segments.needs_consent(n))
        consented = segments.consented or frozenset()
        members = resolved.members
        verdicts: Iterable[tuple[str, Sequence[str], Membership]]
        if resolved.ranks is not None:
            # In the members' own order, each profile's verdict by its index: looking 153,713
            # member lists up by id in profile-id order cost half of this step (memory-bound).
            memberships = segments.memberships
            ranks = resolved.ranks.tolist()
            verdicts = ((pid, keys, memberships[at]) for (pid, keys), at in zip(members.items(), ranks, strict=True))
        else:
            verdicts = (
                (pid, members[pid], membership)
                for pid, membership in zip(segments.profiles, segments.memberships, strict=True)
            )
        for profile, keys, membership in verdicts:
            verdict = holdouts.written(profile, membership)  # what is written: held-out segments left out
            guarded = bool(marked) and not marked.isdisjoint(verdict.segments)
            for key in keys:
                system, _, record_id = key.partition(":")  # `split_key`, inlined: a million records
                shown = verdict
                if guarded and key not in consented:
                    shown = Membership(verdict.segments - marked, verdict.tier)
                found = slots.get((system, shown))
                if found is None:
                    found = slots[(system, shown)] = slot(system, shown)
                found[0][record_id] = found[1]
        clock.lap("desired state")
        return desired

    def assess(self, resolved: Resolved, now: datetime) -> SegmentRun:
        """Each profile's traits and segment membership, column-wise (sync/segmenting.py)."""
        view = resolved.fields(resolved.members) if resolved.fields is not None else None
        run = assess_profiles(
            self.config,
            self.store,
            resolved.profiles,
            resolved.members,
            resolved.systems,
            resolved.orders,
            now,
            view.fields if view is not None else None,
            resolved.details,
        )
        return dataclasses.replace(run, consented=view.consented if view is not None else None)


def bases_for(membership: Membership, allowed: Sequence[str], enabled: Sequence[str]) -> Membership:
    """The membership as one system gets it: the segments of bases it is not switched on for
    (`[systems.x] bases`) left out (a rule that carries a base's name is the rule's)."""
    kept = frozenset(name for name in membership.segments if base_of(name) not in enabled or base_of(name) in allowed)
    return membership if kept == membership.segments else Membership(kept, membership.tier)
