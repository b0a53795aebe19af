"""The compute stage's second half: traits and segments for every profile, column-wise, and what
a run records about them (membership history, sizes, held tiers).

`mapping.traits` and `mapping.segments` are pure; this module feeds them from the cycle's
resolution and the state store, and turns their columns back into per-profile verdicts.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import structlog

from connectors.registry import ONLINE_TYPES
from mapping.bases import POSTCODE_COUNTRY, BaseColumns, OrderDetails, PersonFields, base_columns
from mapping.calendar_days import AS_BEFORE, Calendar
from mapping.identity import FieldChoice
from mapping.model import Membership, key_system
from mapping.segments import LIFECYCLE, QUADRANTS, Assessment, ProfileColumns, TierState, assess
from mapping.traits import OFFLINE, ONLINE, OrderColumns, TraitColumns, trait_columns
from sync.config import CrmsyncConfig
from sync.state import SegmentChanges, StateStore, StoredTiers, TierChanges, VerdictChunk
from sync.state.history import changed_tier_row

log = structlog.get_logger("crmsync.segments")

PROFILE_FIELDS = ("email", "phone", "first_name", "last_name")


@dataclass(frozen=True)
class SegmentRun:
    """One cycle's verdicts, in profile-id order."""

    profiles: list[str]
    systems: list[str]
    traits: TraitColumns
    assessment: Assessment
    memberships: list[Membership]
    previous: PreviousTiers  # the tiers as the assessment read them
    bases: BaseColumns | None = None
    consented: frozenset[str] | None = None  # records whose own address opted in (sync.resolve)

    def verdicts(self, chunk: int = 20_000) -> Iterator[VerdictChunk]:
        """The verdicts in profile order, a chunk at a time, as `StateStore.save_profiles` takes
        them: the traits JSON is built only for the profiles it asks for (those that changed)."""
        prints = trait_fingerprints(self.traits, self.assessment, self.systems, self.bases).tolist()
        for start in range(0, len(self.profiles), chunk):
            rows = slice(start, start + chunk)

            def traits(positions: Sequence[int], offset: int = start) -> list[str]:
                at = np.asarray(positions, dtype=np.int64) + offset
                return trait_json(self.traits, self.assessment, self.systems, at, self.bases)

            yield VerdictChunk(self.profiles[rows], self.memberships[rows], prints[rows], traits)

    def snapshot(self) -> list[tuple[str, int, int]]:
        """(segment, size, revenue in cents) for every segment the settings define."""
        matrix = self.assessment.matrix
        sizes = matrix.sum(axis=0).tolist() if matrix.size else [0] * len(self.assessment.names)
        revenue = (self.traits.revenue_cents.astype(np.float64) @ matrix).tolist() if matrix.size else []
        revenue = revenue or [0] * len(self.assessment.names)
        return [
            (name, int(size), round(value))
            for name, size, value in zip(self.assessment.names, sizes, revenue, strict=True)
        ]

    def tier_changes(self, run_seq: int, now: datetime) -> TierChanges:
        """What this run changes in the stored tiers (`StateStore.record_segments`), found by
        columns from the tiers the assessment read."""
        tiers = self.assessment.tiers
        return column_tier_changes(self.profiles, self.assessment.tier_names, tiers, self.previous, run_seq, now)


@functools.lru_cache(maxsize=8)
def segment_calendar(timezone: str | None) -> Calendar:
    """The calendar of `[segments] timezone` (checked when the config was loaded); unset: the
    day counts of before the setting (UTC, 24-hour periods)."""
    return Calendar(ZoneInfo(timezone)) if timezone else AS_BEFORE


def assess_profiles(
    config: CrmsyncConfig,
    store: StateStore,
    profiles: Sequence[str],
    members: Mapping[str, Sequence[str]],
    systems: Sequence[str],
    orders: OrderColumns,
    now: datetime,
    fields: Mapping[str, Mapping[str, FieldChoice]] | None = None,
    details: OrderDetails | None = None,
) -> SegmentRun:
    """Traits and segments of every profile. `profiles` orders the columns; `orders.profile`
    indexes it and `orders.system` indexes `systems`; `members`: profile id -> record keys."""
    settings = config.segments
    index = {pid: i for i, pid in enumerate(profiles)}
    channels = [
        # Web shops (declared `online`) are the online channel; CRMs, ERPs and invoicing are
        # where offline sales are kept.
        ONLINE if (name in config.systems and config.systems[name].type in ONLINE_TYPES) else OFFLINE
        for name in systems
    ]
    calendar = segment_calendar(settings.timezone)
    traits = trait_columns(orders, len(profiles), now, channels, calendar)
    previous = previous_tiers(store.stored_tiers(), profiles, [t.name for t in settings.tiers], index)
    columns_for_rules = profile_columns(fields or {}, members, index, systems) if settings.rules else None
    bases = None
    if settings.uses_bases():
        person = person_fields(fields or {}, profiles)
        bases = base_columns(
            person, details or OrderDetails.empty(), len(profiles), now, settings.bases, traits.last_order, calendar
        )
    assessment = assess(
        traits,
        settings,
        now,
        systems=systems,
        profiles=columns_for_rules,
        previous=previous.state,
        bases=bases,
        calendar=calendar,
    )
    return SegmentRun(list(profiles), list(systems), traits, assessment, assessment.memberships(), previous, bases)


def person_fields(fields: Mapping[str, Mapping[str, FieldChoice]], profiles: Sequence[str]) -> PersonFields:
    """The survivorship choices the bases read, aligned with `profiles`."""

    names = [f.name for f in dataclasses.fields(PersonFields)]
    # The region's country is the postcode's own record's (sync.resolve), not the surviving country.
    read = {name: POSTCODE_COUNTRY if name == "country" else name for name in names}
    columns: dict[str, list[Any]] = {name: [None] * len(profiles) for name in names}
    for i, pid in enumerate(profiles):
        chosen = fields.get(pid)
        if not chosen:
            continue
        for name in names:
            choice = chosen.get(read[name])
            if choice is not None:
                columns[name][i] = choice.value
    return PersonFields(**columns)


@dataclass(frozen=True)
class PreviousTiers:
    """The tiers held after the last run, aligned with a run's profiles."""

    stored: StoredTiers
    state: TierState  # a tier no longer configured counts as none
    blank: npt.NDArray[np.bool_]  # stored as qualified at the run that recorded them ("")
    row: npt.NDArray[np.int64]  # the profile's row in `stored` (-1: none)


def previous_tiers(
    stored: StoredTiers,
    profiles: Sequence[str],
    tier_names: Sequence[str],
    index: Mapping[str, int] | None = None,
) -> PreviousTiers:
    """The stored tiers, aligned with `profiles` (`index`: profile id -> position, when known).
    By columns: a lookup per stored row, the rest in numpy."""
    index = index if index is not None else {pid: i for i, pid in enumerate(profiles)}
    if len(index) != len(profiles):  # a stored row lines up with one position per id
        raise ValueError("profile ids must be unique")
    size, count = len(profiles), len(stored.ids)
    code = {name: i for i, name in enumerate(tier_names)}
    seen: dict[str, datetime] = {}
    stamp = {text: stored.moment(text, seen).timestamp() for text in set(stored.texts)}  # few distinct
    at = np.fromiter((index.get(pid, -1) for pid in stored.ids), dtype=np.int64, count=count)
    codes = np.fromiter((code.get(tier, -1) for tier in stored.tiers), dtype=np.int64, count=count)
    stamps = np.fromiter((stamp[text] for text in stored.texts), dtype=np.float64, count=count)
    blanks = np.fromiter((not text for text in stored.texts), dtype=np.bool_, count=count)
    rows = np.flatnonzero(at >= 0)
    to = at[rows]
    row = np.full(size, -1, dtype=np.int64)
    row[to] = rows
    tiers = np.full(size, -1, dtype=np.int64)
    tiers[to] = codes[rows]
    qualified = np.full(size, np.nan)
    qualified[to] = np.where(codes[rows] >= 0, stamps[rows], np.nan)
    blank = np.zeros(size, dtype=np.bool_)
    blank[to] = blanks[rows]
    return PreviousTiers(stored, TierState(tiers, qualified), blank, row)


def column_tier_changes(
    profiles: Sequence[str],
    tier_names: Sequence[str],
    tiers: TierState,
    previous: PreviousTiers,
    run_seq: int,
    now: datetime,
) -> TierChanges:
    """`history.tier_changes` of the tiers held now, by columns: a profile that keeps its tier and
    qualified again at this run, as at the last one, is stored as it was (most profiles, most
    runs); only the others are compared row by row."""
    stamp = float(now.timestamp())
    held = tiers.tier >= 0
    # At this run's `now` (stored as ""), as at the last run's (stored as ""): the stored row stands.
    standing = (tiers.tier == previous.state.tier) & (tiers.qualified_at == stamp) & previous.blank
    stored = previous.stored
    rows = []
    moments: dict[float, str] = {stamp: ""}
    candidates = np.flatnonzero(held & ~standing)
    codes, stamps = tiers.tier[candidates].tolist(), tiers.qualified_at[candidates].tolist()
    before_rows = previous.row[candidates].tolist()
    for i, code, at, j in zip(candidates.tolist(), codes, stamps, before_rows, strict=True):
        text = moments.get(at)
        if text is None:
            text = moments[at] = datetime.fromtimestamp(at, UTC).isoformat()
        before = (stored.tiers[j], stored.texts[j], stored.since[j]) if j >= 0 else None
        row = changed_tier_row(profiles[i], tier_names[code], text, before, run_seq)
        if row is not None:
            rows.append(row)
    rows.sort()  # in key order (see SegmentHistory.record_segments)
    kept = previous.row[held & (previous.row >= 0)]
    if len(kept) == len(stored.ids):
        return TierChanges(rows, [])  # every stored row belongs to a profile holding a tier now
    gone = np.ones(len(stored.ids), dtype=np.bool_)
    gone[kept] = False
    return TierChanges(rows, sorted(stored.ids[j] for j in np.flatnonzero(gone).tolist()))


def profile_columns(
    fields: Mapping[str, Mapping[str, FieldChoice]],
    members: Mapping[str, Sequence[str]],
    index: Mapping[str, int],
    systems: Sequence[str],
) -> ProfileColumns:
    """Profile fields for the rules, as survivorship chose them (Cycle._resolve), and the systems
    holding a record of each profile."""
    size = len(index)
    wanted = ("email", "phone", "first_name", "last_name", "postcode", "city", "country", "company")
    values: dict[str, list[str]] = {name: [""] * size for name in wanted}
    bit = {name: i for i, name in enumerate(systems)}
    record_systems = np.zeros(size, dtype=np.int64)
    for pid, keys in members.items():
        i = index[pid]
        for key in keys:
            system = key_system(key)
            if system in bit:
                record_systems[i] |= 1 << bit[system]
        chosen = fields.get(pid, {})
        for name in wanted:
            value = _profile_value(chosen, name)
            if value:
                values[name][i] = value
    strings = np.dtypes.StringDType()
    return ProfileColumns(
        **{name: np.array(column, dtype=strings) for name, column in values.items()},
        record_systems=record_systems,
    )


def _profile_value(chosen: Mapping[str, FieldChoice], name: str) -> str:
    def value(field_name: str) -> str:
        choice = chosen.get(field_name)
        return "" if choice is None or choice.value is None else str(choice.value)

    if name == "first_name":
        return value("given_name") or value("initials")
    if name == "last_name":
        return " ".join(part for part in (value("infix"), value("family_name")) if part)
    return value(name)


TRAITS_FORMAT = 1  # raise when trait_json's output changes: stored fingerprints then all differ


def trait_fingerprints(
    traits: TraitColumns, assessment: Assessment, systems: Sequence[str], bases: BaseColumns | None = None
) -> npt.NDArray[np.int64]:
    """Per profile, a 64-bit hash (FNV-1a over whole values) of everything its traits JSON is
    built from: equal fingerprints, equal JSON, without building it."""
    seed = hashlib.blake2b(json.dumps([TRAITS_FORMAT, list(systems)]).encode(), digest_size=8).digest()
    hashed = np.full(traits.size, int.from_bytes(seed, "big"), dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    columns = [getattr(traits, f.name) for f in dataclasses.fields(traits)]
    if bases is not None:
        # Column by column, as for the traits: JSON per profile would cost a million dumps a cycle.
        columns += [bases.age, bases.discount_share, bases.last_unfinished, bases.b2b, bases.email_consent]
        columns += [_stable_hashes(bases.region.tolist()), _stable_hashes(bases.age_band.tolist())]
        columns += [_stable_hashes([",".join(row) for row in bases.interests])]
    for column in [*columns, assessment.quadrant, assessment.lifecycle]:
        if column.dtype.kind == "f":
            bits = np.where(np.isnan(column), np.float64(-1.5e308), column).astype(np.float64).view(np.uint64)
        else:
            bits = column.astype(np.int64).view(np.uint64)
        hashed ^= bits
        hashed *= prime
    return hashed.view(np.int64)


def _stable_hashes(texts: Sequence[str]) -> npt.NDArray[np.int64]:
    """A hash per text that is the same in every process (Python's own `hash` of a str is not);
    computed once per distinct text."""
    seen: dict[str, int] = {}
    out = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        value = seen.get(text)
        if value is None:
            value = seen[text] = int.from_bytes(
                hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True
            )
        out[i] = value
    return out


def bases_json(bases: BaseColumns, rows: slice | npt.NDArray[np.int64] = slice(None)) -> list[str]:
    """Each profile's bases as the JSON object under `"bases"` in its traits."""
    positions = np.arange(bases.size)[rows]
    out = []
    for i in positions.tolist():
        age, share, last = float(bases.age[i]), float(bases.discount_share[i]), float(bases.last_unfinished[i])
        doc = {
            "region": str(bases.region[i]) or None,
            "age": None if np.isnan(age) else int(age),
            "age_band": str(bases.age_band[i]) or None,
            "b2b": bool(bases.b2b[i]),
            "interests": list(bases.interests[i]),
            "top_interest": str(bases.top_interest[i]) or None,
            "discount_share": None if np.isnan(share) else round(share, 4),
            "email_consent": bool(bases.email_consent[i]),
            "last_unfinished": None if np.isnan(last) else datetime.fromtimestamp(last, UTC).isoformat(),
        }
        out.append(json.dumps(doc, ensure_ascii=False))
    return out


def trait_json(
    traits: TraitColumns,
    assessment: Assessment,
    systems: Sequence[str],
    rows: slice | npt.NDArray[np.int64] = slice(None),
    bases: BaseColumns | None = None,
) -> list[str]:
    """The traits of the profiles in `rows` as the JSON stored in `profiles.traits` and shown by
    `explain`.

    Built column-wise (numpy formats the numbers and dates of all profiles at once) and joined per
    profile: a million dicts through json.dumps would cost more than the whole assessment."""
    based = bases_json(bases, rows) if bases is not None else None
    traits = traits.rows(rows)
    quadrant, lifecycle = assessment.quadrant[rows], assessment.lifecycle[rows]
    size = traits.size
    if not size:
        return []

    def money(cents: npt.NDArray[Any]) -> list[str]:
        # Formatted by Python per value: np.strings.mod formats the same text at three times the cost.
        return [f'"{value:.2f}"' for value in (cents.astype(np.float64) / 100.0).tolist()]

    def stamp(seconds: npt.NDArray[Any]) -> list[str]:
        known = ~np.isnan(seconds)
        text = np.full(size, "null", dtype=object)
        if known.any():
            moments = seconds[known].astype("datetime64[s]")
            text[known] = ['"' + t + '+00:00"' for t in np.datetime_as_string(moments, unit="s").tolist()]
        return text.tolist()

    def whole(values: npt.NDArray[Any]) -> list[str]:
        text = np.full(size, "null", dtype=object)
        known = ~np.isnan(values)
        text[known] = values[known].astype(np.int64).astype(str)
        return text.tolist()

    has = traits.order_count > 0
    revenue, spend, aov = money(traits.revenue_cents), money(traits.spend_12m_cents), money(traits.aov_cents)
    first, last = stamp(traits.first_order), stamp(traits.last_order)
    since, tenure = whole(traits.days_since_last_order), whole(traits.tenure_days)
    system_sets: dict[int, str] = {}
    names = [json.dumps(name) for name in systems]
    out = []
    for i, (count, orders_12m, online, offline, bits, last_sys, r, f, m, q, lc) in enumerate(
        zip(
            traits.order_count.tolist(),
            traits.orders_12m.tolist(),
            traits.online_orders.tolist(),
            traits.offline_orders.tolist(),
            traits.order_systems.tolist(),
            traits.last_order_system.tolist(),
            traits.r.tolist(),
            traits.f.tolist(),
            traits.m.tolist(),
            quadrant.tolist(),
            lifecycle.tolist(),
            strict=True,
        )
    ):
        order_systems = system_sets.get(bits)
        if order_systems is None:
            order_systems = system_sets[bits] = "[" + ", ".join(n for j, n in enumerate(names) if bits >> j & 1) + "]"
        out.append(
            f'{{"order_count": {count}, "revenue": {revenue[i]}, "spend_12m": {spend[i]}, '
            f'"orders_12m": {orders_12m}, "average_order_value": {aov[i] if has[i] else "null"}, '
            f'"first_order": {first[i]}, "last_order": {last[i]}, "days_since_last_order": {since[i]}, '
            f'"tenure_days": {tenure[i]}, "channels": {{"online": {online}, "offline": {offline}}}, '
            f'"order_systems": {order_systems}, '
            f'"last_order_system": {names[last_sys] if last_sys >= 0 else "null"}, '
            f'"rfm": {f"""{{"r": {r}, "f": {f}, "m": {m}}}""" if count else "null"}, '
            f'"quadrant": "{QUADRANTS[q]}", "lifecycle": "{LIFECYCLE[lc]}"'
            + (f', "bases": {based[i]}}}' if based is not None else "}")
        )
    return out


def record_run(
    store: StateStore, run_seq: int, now: datetime, segment_run: SegmentRun, changes: SegmentChanges | None = None
) -> None:
    """What this run concluded, for the history and the next run's hysteresis. `changes`: what
    `save_profiles` saw enter and leave, when it could tell."""
    # The members are compared only where the changes are not known (153,713 profiles: 30 ms of
    # the history's thread, which bounds a first cycle, and the interpreter lock held meanwhile).
    members = (
        {}
        if changes is not None
        else {pid: m.segments for pid, m in zip(segment_run.profiles, segment_run.memberships, strict=True)}
    )
    totals = (len(segment_run.profiles), int(segment_run.traits.revenue_cents.sum()))
    tiers = segment_run.tier_changes(run_seq, now)
    store.record_segments(run_seq, now, members, segment_run.snapshot(), tiers, totals, changes)
