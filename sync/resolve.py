"""Resolve: who is who. Contacts joined into profiles by identity resolution, and every order
attached to its profile (by the customer record it names, else a guest's email), as columns."""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from contextlib import ExitStack
from dataclasses import dataclass
from operator import itemgetter, methodcaller
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import structlog

from mapping.bases import POSTCODE_COUNTRY, OrderDetails, consented_records
from mapping.fieldmaps import MappingRules
from mapping.identity import FieldChoice, Resolution, resolve, survive
from mapping.identity_delta import Delta, LinkRow, Touched, merged, resolve_again, resolve_part, touched
from mapping.model import key_system, record_key
from mapping.normalize.email import is_role_address
from mapping.traits import OrderColumns
from sync.config import CrmsyncConfig
from sync.order_sources import SOURCE_COLUMNS, OrderSources, attach_orders, merge_sources, order_sources
from sync.resolution_snapshot import (
    ATTACHED,
    CONTACT_ROWS,
    GUESTS,
    SOURCES,
    StoredIdentities,
    StoredResolution,
    decode,
    decode_contact_rows,
    decode_header,
    decode_sources,
    encode,
    snapshot_inputs,
)
from sync.state import MembersChange, StateStore
from sync.state.compute import ORDER_DTYPE, ComputeSnapshot, IdentityRow
from sync.state.profile_writer import members_digest, members_digest_after

log = structlog.get_logger("crmsync.pipeline")


@dataclass
class Resolved:
    """The outcome of identity resolution for one cycle."""

    members: dict[str, list[str]]  # profile id -> record keys
    profiles: list[str]  # profile ids in the order of the columns below
    systems: list[str]  # system names; OrderColumns.system indexes this
    orders: OrderColumns  # every order, with the index of its profile (-1: no profile)
    aliases: dict[str, str]
    links: list[tuple[str, str, str, str]]  # record key a, record key b, identifier kind, value
    # Record key -> the profile id it had before this cycle; None when reused: the stored members
    # are then the snapshot's (their digests agree), and save_profiles does not compare them.
    previous: dict[str, str] | None
    # Profile fields by survivorship, computed on demand (only rule segments and the bases read them).
    fields: Callable[[Mapping[str, Sequence[str]]], Survivorship] | None = None
    # What orders say beyond their value, attached as `orders` are (read only when the bases are used).
    details: OrderDetails | None = None
    # The inputs a full resolution was made from, when a snapshot of it may be kept (None: reused,
    # or with the bases' order details, which a snapshot does not hold). sync/resolution_snapshot.py
    inputs: str | None = None
    members_digest: str | None = None  # `members_digest(members)` when known (a reused snapshot's)
    # The orders as read, in the order of `orders` (sync/order_sources.py), for the snapshot to keep
    # (None: reused, or row numbers that do not last, as on PostgreSQL).
    sources: OrderSources | None = None
    # Made by difference: what it changed of the stored members and links (save_profiles).
    change: MembersChange | None = None
    # Per profile in `members`' order, its component (mapping.identity.Resolution.components).
    components: list[int] | None = None
    # Per contact row number, its profile's index and its system's (`Attachment`), for the
    # snapshot to keep where row numbers last (None: reused, or PostgreSQL).
    contact_rows: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None
    # With them, guests' addresses and the profile index each attached to (`Attachment.guests`).
    guests: dict[str | None, int] | None = None
    # Per profile in `members`' order, its index in `profiles` (None: not made), so that a pass
    # over every profile's records can go in the members' own order, the order their lists lie
    # in memory, and not look each up by id (sync/compute.py, `desired_of`).
    ranks: npt.NDArray[np.int64] | None = None


@dataclass(frozen=True)
class Survivorship:
    """Each profile's fields as survivorship chose them, and the record keys whose own email
    address opted in to email marketing (mapping.bases.consented_records)."""

    fields: dict[str, dict[str, FieldChoice]]
    consented: frozenset[str]


def sorted_ids(ids: Sequence[str]) -> tuple[list[str], npt.NDArray[np.int64]]:
    """`sorted(ids)` (distinct ids), and per id in the given order its index there."""
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[order] = np.arange(len(ids), dtype=np.int64)
    return list(map(ids.__getitem__, order)), ranks


NOBODY, SHARED = -1, -2  # a guest's address no contact holds; one several profiles hold


class Attachment:
    """How an order finds its profile: by its contact's row number (the compute snapshot's, see
    sync/state/compute.py), else, for a guest's order, by an email address that belongs to exactly
    one profile and is a person's (not a role address like info@)."""

    def __init__(
        self,
        row_profile: npt.NDArray[np.int64],
        row_system: npt.NDArray[np.int64],
        emails: Sequence[tuple[str, int]] | Callable[[Sequence[str]], Sequence[tuple[str, int]]],
        role_locals: frozenset[str],
    ) -> None:
        self.row_profile = row_profile  # contact row number -> profile index (-1: no contact)
        self.row_system = row_system  # contact row number -> system index
        # (email match key, contact row number) of every personal address; or what reads those of
        # the addresses asked for (a cycle that did not read every contact).
        self.emails = emails
        self.role_locals = role_locals
        self._by_email: dict[str, int] | None = None
        # The last cycle's guest map, the addresses of the contacts read again, and its profile
        # indexes renumbered to this cycle's (-1: resolved again): see `kept_guests`.
        self.kept: tuple[Mapping[str, int], Set[str], npt.NDArray[np.int64]] | None = None
        self.found: dict[str | None, int] = {}

    @classmethod
    def of(
        cls,
        rows: Sequence[tuple[int, str]],
        emails: Sequence[tuple[str, int]],
        assignment: Mapping[str, str],
        position: Mapping[str, int],
        systems: Sequence[str],
        role_locals: frozenset[str],
        profile_rows: npt.NDArray[np.int64] | None = None,
    ) -> Attachment:
        """From the identity read's (contact row number, record key) rows and the resolution.
        `profile_rows`: per row, its profile's index, when the caller knows it (else looked up)."""
        system_index = {name: i for i, name in enumerate(systems)}
        count = len(rows)
        # Through C iterators (`map`, bound look-ups), not a generator's frame per contact.
        numbers = np.fromiter(map(itemgetter(0), rows), dtype=np.int64, count=count)
        keys = list(map(itemgetter(1), rows))
        size = int(numbers.max()) + 1 if count else 1
        row_profile = np.full(size, -1, dtype=np.int64)
        row_system = np.full(size, -1, dtype=np.int64)
        if profile_rows is None:
            profile_of = map(position.__getitem__, map(assignment.__getitem__, keys))
            profile_rows = np.fromiter(profile_of, np.int64, count)
        row_profile[numbers] = profile_rows
        # `key_system` without a call per key: the part before the first colon.
        system_of = map(system_index.__getitem__, map(itemgetter(0), map(methodcaller("partition", ":"), keys)))
        row_system[numbers] = np.fromiter(system_of, np.int64, count)
        return cls(row_profile, row_system, emails, role_locals)

    def guest(self, email_key: str | None) -> int:
        """The profile index a guest's order with this email match key attaches to (-1: none)."""
        return max(self.guests([email_key]).get(email_key, NOBODY), NOBODY)

    def guests(self, email_keys: Iterable[str | None]) -> dict[str | None, int]:
        """Per email match key of guests' orders that is a person's address, the profile index
        its orders attach to: NOBODY where no contact holds it, SHARED where several profiles do
        (neither attaches). Also kept as `self.found` (the snapshot keeps it for the next cycle)."""
        wanted = sorted({key for key in email_keys if key and not is_role_address(key, self.role_locals)})
        if callable(self.emails):
            found, unsure = self.kept_guests(wanted)
            found.update(self.guest_profiles(self.emails(unsure), unsure))
        else:
            if self._by_email is None:  # built on the first guest order: a pass over every address
                self._by_email = self.guest_profiles(self.emails)
            found = {key: self._by_email.get(key, NOBODY) for key in wanted}
        self.found = dict(found)
        return self.found

    def kept_guests(self, wanted: Sequence[str]) -> tuple[dict[str | None, int], list[str]]:
        """What the last cycle's guest map (`self.kept`) still says of `wanted`, and the addresses
        it cannot vouch for: those not in it, those several profiles held, and those a contact read
        again holds (written since, or in a component resolved again). Every holder of an address
        shares its component (the address joins them, or is why a join was refused), so when none
        of them was read again, none changed and their profiles stand: the kept value holds,
        renumbered (a profile resolved again renumbers to -1: its holders that stay were read
        again); an address nobody held can only be held now by a contact written since."""
        if self.kept is None:
            return {}, list(wanted)
        kept, read_again, renumbered = self.kept
        found: dict[str | None, int] = {}
        unsure: list[str] = []
        for key in wanted:
            before = kept.get(key)
            if before is None or before == SHARED or key in read_again:
                unsure.append(key)  # shared: its holders may all have gone, and it is nobody's now
            else:  # -1 only where its one holder is gone
                found[key] = int(renumbered[before]) if before >= 0 else before
        return found, unsure

    def guest_profiles(self, emails: Iterable[tuple[str, int]], wanted: Iterable[str] = ()) -> dict[str, int]:
        """Email match key -> profile index, for the addresses that belong to exactly one profile
        (SHARED: several); `wanted` addresses nobody holds are NOBODY."""
        row_profile = self.row_profile.tolist()
        by_email: dict[str, int] = dict.fromkeys(wanted, NOBODY)
        for email_key, number in emails:
            index = row_profile[number]
            before = by_email.get(email_key, NOBODY)
            by_email[email_key] = index if before in (NOBODY, index) else SHARED
        return by_email


@dataclass(frozen=True)
class Since:
    """The kept resolution, and what changed in the contacts since it was made."""

    kept: StoredIdentities
    contacts_now: int  # how many contacts are stored now
    changed: set[str]  # the keys of the contacts written since
    # Where row numbers last (SQLite): the identity rows of those contacts, and the kept contact
    # rows (CONTACT_ROWS), so that no untouched contact is read. None: read every contact.
    changed_rows: list[IdentityRow] | None = None
    contact_rows: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None


@dataclass(frozen=True)
class Marks:
    """What a kept snapshot's inputs say of the state then, beside this cycle's counts."""

    contacts_seq: int  # the highest run number on a contact when the snapshot was made
    orders_seq: int  # the same on an order
    contacts_now: int  # how many contacts are stored now
    orders_now: int  # how many orders are stored now
    rows: list[Any] | None = None  # the snapshot's `ComputeSnapshot.row_witness` (SQLite)


ORDERS_BY_DIFFERENCE_AT_MOST = 200_000  # orders read again by difference; beyond, all are read


def drained(chunks: list[npt.NDArray[Any]]) -> Iterator[npt.NDArray[Any]]:
    """The chunks in order, each let go by the list as it is handed out: the orders read ahead are
    turned into columns without every chunk of them alive until the last."""
    chunks.reverse()
    while chunks:
        yield chunks.pop()


def marks_since(kept_inputs: str, inputs: str) -> Marks | None:
    """The snapshot's marks when its inputs differ from this cycle's in the marks alone (the
    stored records changed, not the settings or the code); else None."""
    kept, now = json.loads(kept_inputs), json.loads(inputs)
    (_, contacts_seq, _), (_, orders_seq, _) = kept.pop("marks")
    (contacts_now, _, _), (orders_now, _, _) = now.pop("marks")
    rows, _ = kept.pop("rows", None), now.pop("rows", None)
    return Marks(contacts_seq, orders_seq, contacts_now, orders_now, rows) if kept == now else None


def gone_since(
    previous: Mapping[str, str], changed: Set[str], count: int, keys: Callable[[], Iterable[str]]
) -> set[str]:
    """The record keys of `previous` no longer stored. Every stored record (`count` of them) is
    in `previous` or written since (`changed`), so the counts tell whether any went before the
    keys (`keys()`: every stored one) are compared."""
    arrived = sum(1 for key in changed if key not in previous)
    if len(previous) + arrived == count:
        return set()
    return set(previous).difference(keys())


def identify(
    identity_rows: Iterable[IdentityRow],
) -> tuple[list[tuple[str, list[tuple[str, str]]]], dict[str, str], list[tuple[int, str]], list[tuple[str, int]]]:
    """From identity rows: each record's key and identifiers, given names, (contact row number,
    record key) per contact and (email match key, contact row number) per personal address."""
    identified: list[tuple[str, list[tuple[str, str]]]] = []
    names: dict[str, str] = {}
    rows: list[tuple[int, str]] = []
    emails: list[tuple[str, int]] = []
    # `row_identifiers`, inlined: a call and a list per contact, 200,000 of them at a merchant's scale.
    for number, key, email_key, role, phone, kind, links, given in identity_rows:
        found = [("record", link) for link in json.loads(links)] if links != "[]" else []
        if email_key and not role:
            found.append(("email", email_key))
            emails.append((email_key, number))
        if phone and kind == "mobile":
            found.append(("mobile", phone))
        identified.append((key, found))
        rows.append((number, key))
        if given:
            names[key] = given
    return identified, names, rows, emails


def report_resolution(resolution: Resolution) -> None:
    for (kind, value), holders in sorted(resolution.shared.items())[:20]:
        log.info("shared identifier joins nobody", kind=kind, records=holders)
        log.debug("shared identifier", kind=kind, value=value)
    if resolution.refused:
        log.warning("joins refused by the profile size limit", joins=len(resolution.refused))


@dataclass(frozen=True)
class Identities:
    """What identity resolution made: the resolution, the previous assignment it started from, the
    links in the order made, and (made by difference) the members' digest."""

    resolution: Resolution
    previous: dict[str, str]
    links: list[LinkRow]
    digest: str | None = None
    change: MembersChange | None = None  # made by difference: what it changed
    profiles: list[str] | None = None  # made by difference: the profile ids, sorted


class Stopwatch:
    """Seconds per named step, into a dict (the pipeline benchmark reads them)."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into
        self.mark = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.into[name] = self.into.get(name, 0.0) + now - self.mark
        self.mark = now


def mapping_rules(config: CrmsyncConfig) -> MappingRules:
    """The identity settings as the mapping and the resolver use them."""
    identity = config.identity
    return MappingRules(default_country=identity.default_country, role_locals=identity.role_locals())


class Resolver:
    def __init__(self, config: CrmsyncConfig, store: StateStore, rules: MappingRules) -> None:
        self.config = config
        self.store = store
        self.rules = rules
        # Whether a resolution snapshot with this cycle's inputs may stand in for resolving
        # (sync/resolution_snapshot.py); a backfill sets it off for its cycle.
        self.reuse_snapshot = True
        self.reused = False  # whether the last `resolve` reused a snapshot
        self.identities_by_difference = False  # whether it resolved again only the touched components
        self.contacts_by_difference = False  # and read only the contacts of those
        self.orders_by_difference = False  # whether it read only the orders that changed since one
        self.orders_read_ahead = False  # whether it read every order on a thread beside resolving
        # Whether it may (SQLite): only a cycle holding the writer lock sets it, where no other
        # process writes contacts or orders while it computes (`Cycle._compute_and_plan`).
        self.read_ahead = False

    def resolve(self, clock: Stopwatch | None = None) -> Resolved:
        """Who is who: records joined into profiles, and every order attached to its profile.

        Works on stored columns, never one object per contact or order: a merchant with a million
        customers and five million orders must not become six million Python objects."""
        clock = clock or Stopwatch({})
        self.reused = self.identities_by_difference = self.contacts_by_difference = False
        self.orders_by_difference = self.orders_read_ahead = False
        facts = self.config.segments.order_facts_needed()
        # One read transaction for both reads: the orders name their contacts by the row numbers
        # the identity read gave them.
        base = self.config.segments.base_currency
        with ExitStack() as stack:
            reads = stack.enter_context(self.store.compute_snapshot())
            input_marks, numbering = reads.input_marks(), reads.numbering_mark()
            inputs = snapshot_inputs(self.config, input_marks, numbering, reads.row_witness())
            # The bases read order details beside the columns; those are not kept, so they resolve in full.
            stored = reads.stored_resolution() if self.reuse_snapshot and not facts else None
            snapshot = None
            if stored is not None and stored[0] == inputs:
                snapshot = decode(stored[1], reads.resolution_parts(ATTACHED))
            if snapshot is not None:
                reused = self.reuse(snapshot, clock)
                if reused is not None:
                    return reused
            # The snapshot's marks, when its inputs differ from this cycle's in the marks alone.
            marks = marks_since(stored[0], inputs) if stored is not None else None
            seqs = (marks.contacts_seq, marks.orders_seq) if marks is not None else (0, 0)
            if marks is not None and reads.rows_are_numbered and not reads.witness_holds(marks.rows, seqs):
                # The kept rows are keyed by row numbers, which a VACUUM or a restored dump renumbers.
                log.info("resolved in full: nothing vouches that stored rows kept their numbers")
                marks = None
            since = self.since(reads, stored, marks) if stored is not None and marks is not None else None
            del snapshot, stored
            # Every order will be read: on SQLite, on a thread beside identity resolution.
            ahead = None
            if marks is None and reads.rows_are_numbered and self.read_ahead:
                ahead = stack.enter_context(self.store.orders_ahead(base, input_marks, numbering))
            if since is not None and since.contact_rows is not None:
                made, again_rows, deleted, again = self.resolve_changed(reads, since, clock)
                resolution = made.resolution
                if deleted:  # a system may have lost its last record
                    systems = sorted({*self.config.systems, *(key_system(key) for key in resolution.assignment)})
                else:
                    systems = sorted({*since.kept.systems, *(key_system(key) for key in since.changed)})
            else:
                rows, emails, made = self.resolve_identities(reads.identity_rows(), clock, since)
                resolution = made.resolution
                systems = sorted({*self.config.systems, *(key_system(key) for _, key in rows)})
            members = resolution.members()
            ranks = None
            if made.profiles is not None:
                profiles = made.profiles
            else:
                profiles, ranks = sorted_ids(list(members))
            position = {pid: i for i, pid in enumerate(profiles)}
            written = since.changed_rows if since is not None else None
            if since is not None and since.contact_rows is not None:
                attach = self.attachment_by_difference(
                    reads, since, again_rows, again, resolution.assignment, position, systems
                )
                del again_rows, since
            else:
                profile_rows = None
                # Rows in the resolution's key order (the identity read's): each row's profile is its
                # cluster's rank, no look-up by key and by profile id per contact.
                keys = list(map(itemgetter(1), rows))
                same_order = len(resolution.cluster_of) == len(rows) and resolution.keys == keys
                del keys
                if ranks is not None and same_order:
                    profile_rows = ranks[np.asarray(resolution.cluster_of, dtype=np.int64)]
                resolution.keys, resolution.cluster_of = [], []
                attach = Attachment.of(
                    rows, emails, resolution.assignment, position, systems, self.rules.role_locals, profile_rows
                )
                del emails, rows
            sources = None
            if marks is not None:
                sources = self.sources_by_difference(reads, marks, attach, systems, written)
            self.orders_by_difference = sources is not None
            if sources is None:
                chunks = ahead.result() if ahead is not None else None
                self.orders_read_ahead = chunks is not None
                if ahead is not None and chunks is None:
                    log.info("orders read again: contacts or orders changed while they were read ahead")
                read = drained(chunks) if chunks is not None else reads.order_arrays(base)
                del chunks
                sources = self.order_sources(read, attach, systems)
            orders = self.attach_orders(sources, attach)
            if not reads.rows_are_numbered:
                sources = None  # row numbers that do not last: a snapshot of them would mislead
            details = None
            if facts:
                facts_rows = reads.order_details(facts)
                details = self.order_details(facts_rows, resolution.assignment, position, attach, facts)
        clock.lap("read orders")
        return Resolved(
            members=members,
            profiles=profiles,
            systems=systems,
            orders=orders,
            aliases=resolution.aliases,
            links=made.links,
            previous=made.previous,
            fields=self.fields_reader(),
            details=details,
            members_digest=made.digest,
            change=made.change,
            inputs=None if facts else inputs,
            sources=sources,
            components=resolution.components,
            contact_rows=(attach.row_profile, attach.row_system) if reads.rows_are_numbered else None,
            guests=attach.found if reads.rows_are_numbered else None,
            ranks=ranks,
        )

    def keep(self, resolved: Resolved) -> None:
        """Keep a resolution made in full as the snapshot the next cycle may reuse. Only a cycle
        that saves profiles keeps one (read-only commands resolve too)."""
        if resolved.inputs is not None:
            # Once per resolution: `save_profiles` keeps the same digest beside the members.
            resolved.members_digest = resolved.members_digest or members_digest(resolved.members)
            parts = encode(
                resolved.members,
                resolved.profiles,
                resolved.systems,
                resolved.orders,
                resolved.links,
                resolved.members_digest,
                resolved.components or [],
                resolved.sources,
                resolved.contact_rows,
                resolved.guests,
            )
            self.store.save_resolution(resolved.inputs, parts)
        resolved.sources = resolved.contact_rows = resolved.guests = None  # kept; the cycle needs them no more

    def reuse(self, stored: StoredResolution, clock: Stopwatch) -> Resolved | None:
        """The snapshot as this cycle's resolution, when the stored profile members are those it
        made (else None: resolve in full)."""
        if self.store.get_meta("members_digest") != stored.members_digest:
            log.info("resolution snapshot not used: the stored profiles differ from it")
            return None
        log.info("resolution reused: no contact or order changed", profiles=len(stored.profiles))
        self.reused = True
        clock.lap("read orders")
        return Resolved(
            members=stored.members,
            profiles=stored.profiles,
            systems=stored.systems,
            orders=stored.orders,
            aliases={},  # every profile keeps its id: nothing merged
            links=stored.links,
            previous=None,
            fields=self.fields_reader(),
            members_digest=stored.members_digest,
            components=stored.components,
        )

    def fields_reader(self) -> Callable[[Mapping[str, Sequence[str]]], Survivorship] | None:
        """Profile fields by survivorship, read on demand: only rule segments and the bases read them."""
        return self.profile_fields if (self.config.segments.rules or self.config.segments.uses_bases()) else None

    def since(self, reads: ComputeSnapshot, stored: tuple[str, bytes], marks: Marks) -> Since | None:
        """What resolving again only the touched components starts from: the kept resolution and
        the contacts written since it was made (`marks`: `marks_since` of its inputs). None when
        the stored profiles are not the ones it made (a crash between the two writes)."""
        kept = decode_header(stored[1])
        if self.store.get_meta("members_digest") != kept.members_digest:
            log.info("identities resolved in full: the stored profiles differ from the snapshot")
            return None
        contact_rows = None
        if reads.rows_are_numbered:
            contact_rows = decode_contact_rows(kept, reads.resolution_parts(CONTACT_ROWS))
        if contact_rows is None:
            return Since(kept, marks.contacts_now, reads.contact_keys_written_since(marks.contacts_seq))
        rows = reads.identity_rows_written_since(marks.contacts_seq)
        return Since(kept, marks.contacts_now, {row[1] for row in rows}, rows, contact_rows)

    def resolve_identities(
        self, identity_rows: Iterable[IdentityRow], clock: Stopwatch, since: Since | None = None
    ) -> tuple[list[tuple[int, str]], list[tuple[str, int]], Identities]:
        """Identity resolution over every contact: (contact row number, record key) per contact,
        (email match key, contact row number) per personal address, the resolution, the previous
        assignment and the links. With `since`, only the components a change touched are resolved
        again (mapping/identity_delta.py)."""
        identified, names, rows, emails = identify(identity_rows)
        if since is None:
            previous, ages = self.store.previous_assignment()
        else:  # the stored members are the snapshot's (their digests agree): no need to read them
            previous = since.kept.assignment()
            ages, _ = self.store.profile_ages()
        clock.lap("read contacts")
        identity = self.config.identity
        limits, max_profile = identity.max_records_per_identifier, identity.max_records_per_profile
        if since is not None:
            deleted = gone_since(previous, since.changed, len(rows), lambda: (key for _, key in rows))
            before = since.kept.before()
            delta = resolve_again(
                identified, since.changed, deleted, before, previous, ages, limits, max_profile, names
            )
            made = self.resolved_again(delta, previous, since, len(rows))
            del delta
        else:
            resolution = resolve(identified, previous, ages, limits=limits, max_profile=max_profile, names=names)
            links = [(link.a, link.b, link.kind, link.value) for link in resolution.links]
            made = Identities(resolution, previous, links)
        del identified, names, ages
        report_resolution(made.resolution)
        clock.lap("resolve")
        return rows, emails, made

    def resolve_changed(
        self, reads: ComputeSnapshot, since: Since, clock: Stopwatch
    ) -> tuple[Identities, list[IdentityRow], set[str], Touched]:
        """Identity resolution where row numbers last (SQLite): the contacts written since the
        kept resolution, those they now reach (found through the indexes) and the components those
        held are read and resolved again; no other contact is read. Also the previous assignment,
        the links, the rows read, the keys gone since and what was resolved again."""
        assert since.changed_rows is not None
        self.contacts_by_difference = True
        previous = since.kept.assignment()
        changed, changed_rows = since.changed, since.changed_rows
        deleted = gone_since(previous, changed, since.contacts_now, reads.contact_keys)
        emails = [email for _, _, email, role, _, _, _, _ in changed_rows if email and not role]
        phones = [phone for _, _, _, _, phone, kind, _, _ in changed_rows if phone and kind == "mobile"]
        targets = {link for row in changed_rows if row[6] != "[]" for link in json.loads(row[6])}
        reached = reads.contacts_holding(emails, phones, changed) | targets
        before = since.kept.before()
        again = touched(changed, deleted, reached, before, previous)
        rows = changed_rows + reads.identity_rows_of(again.again - changed)
        ages = self.ages_again(since, previous, again)
        clock.lap("read contacts")
        identity = self.config.identity
        identified, names, _, _ = identify(rows)
        part = resolve_part(
            identified,
            again,
            previous,
            ages,
            identity.max_records_per_identifier,
            identity.max_records_per_profile,
            names,
        )
        made = self.resolved_again(merged(before, again, part, previous, deleted), previous, since, since.contacts_now)
        report_resolution(made.resolution)
        clock.lap("resolve")
        return made, rows, deleted, again

    def ages_again(self, since: Since, previous: Mapping[str, str], again: Touched) -> dict[str, int]:
        """The profile ages resolving `again` needs: those of the ids its records held. The ids a
        new one must not take are every stored profile's; those are the snapshot's (every member's
        id has its profile, saved in one transaction) when the counts agree. Else every age."""
        ages, count = self.store.profile_ages(previous[key] for key in again.again if key in previous)
        if count != len(since.kept.members):
            ages, _ = self.store.profile_ages()
        return ages

    def resolved_again(self, delta: Delta, previous: dict[str, str], since: Since, contacts: int) -> Identities:
        log.info("identities resolved again where they changed", records=delta.records, contacts=contacts)
        self.identities_by_difference = True
        kept = since.kept.members_digest
        digest = members_digest_after(kept, delta.removed, delta.added)
        change = MembersChange(kept, delta.added, delta.deleted, delta.links_removed, delta.links_added)
        before, after = {pid for pid, _ in delta.removed}, {pid for pid, _ in delta.added}
        gone = before - after
        profiles = [pid for pid in since.kept.profiles if pid not in gone] + sorted(after - before)
        profiles.sort()  # two sorted runs: one merge, not a sort of every id
        return Identities(delta.resolution, previous, delta.links, digest, change, profiles)

    def attachment_by_difference(
        self,
        reads: ComputeSnapshot,
        since: Since,
        rows: Sequence[IdentityRow],
        again: Touched,
        assignment: Mapping[str, str],
        position: Mapping[str, int],
        systems: Sequence[str],
    ) -> Attachment:
        """`Attachment.of` every contact, from the kept contact rows with the profiles and systems
        renumbered, and the rows read again (`rows`) in their place. Guests' addresses are looked
        up when asked for."""
        assert since.contact_rows is not None
        kept = since.kept
        old_profile, old_system = since.contact_rows
        renumbered = np.fromiter((position.get(pid, -1) for pid in kept.profiles), np.int64, len(kept.profiles))
        for at in again.positions:  # their records are among `rows` now, or gone
            renumbered[bisect_left(kept.profiles, kept.clusters[at][0])] = -1
        system_index = {name: i for i, name in enumerate(systems)}
        # A system gone from the list (its last contact deleted) indexes nothing: its rows are gone.
        systems_now = np.array([system_index.get(name, -1) for name in kept.systems] or [-1], dtype=np.int64)
        numbers = np.fromiter((row[0] for row in rows), np.int64, len(rows))
        size = max(old_profile.shape[0], int(numbers.max()) + 1 if len(rows) else 1)
        row_profile = np.full(size, -1, dtype=np.int64)
        row_system = np.full(size, -1, dtype=np.int64)
        had = np.flatnonzero(old_profile >= 0)
        row_profile[had] = renumbered[old_profile[had]]
        stays = had[row_profile[had] >= 0]
        row_system[stays] = systems_now[old_system[stays]]
        row_profile[numbers] = np.fromiter((position[assignment[row[1]]] for row in rows), np.int64, len(rows))
        row_system[numbers] = np.fromiter((system_index[key_system(row[1])] for row in rows), np.int64, len(rows))
        held = np.flatnonzero(row_profile >= 0)
        size = int(held[-1]) + 1 if held.shape[0] else 1  # as long as a read of every contact makes it
        attach = Attachment(row_profile[:size], row_system[:size], reads.personal_email_rows, self.rules.role_locals)
        kept_guests = reads.resolution_part(f"{GUESTS}.000000")
        if kept_guests is not None:
            read_again = {row[2] for row in rows if row[2]}
            attach.kept = (orjson.loads(kept_guests), read_again, renumbered)
        return attach

    def order_sources(
        self, chunks: Iterable[npt.NDArray[Any]], attach: Attachment, systems: Sequence[str]
    ) -> OrderSources:
        """Orders as read, to columns (sync/order_sources.py)."""
        settings = self.config.segments
        system_index = {name: i for i, name in enumerate(systems)}
        return order_sources(chunks, attach.row_system, system_index, settings.base_currency, settings.rates)

    def attach_orders(self, sources: OrderSources, attach: Attachment) -> OrderColumns:
        """Every order attached to its profile: by the customer record it names, else (guest
        orders) by an email address that belongs to exactly one profile and a person."""
        columns, unconverted = attach_orders(sources, attach.row_profile, attach.guests)
        if unconverted:
            base = self.config.segments.base_currency
            log.warning("orders without an exchange rate left out", orders=unconverted, base=base)
        return columns

    def sources_by_difference(
        self,
        reads: ComputeSnapshot,
        marks: Marks,
        attach: Attachment,
        systems: Sequence[str],
        written: Sequence[IdentityRow] | None = None,
    ) -> OrderSources | None:
        """The orders as read for the last snapshot, with those that changed since read again:
        orders written since, orders naming a contact written since, and orders whose contact row
        is gone (`marks`: `marks_since` of the snapshot's inputs). None (read every order) when the
        snapshot cannot serve: row numbers that do not last, other systems, or orders deleted
        since (the count tells). `written`: the identity rows of the contacts written since, when
        already read."""
        if not reads.rows_are_numbered:
            return None
        about = reads.resolution_part(f"{SOURCES}.000000")
        if about is None:  # kept where row numbers do not last
            return None
        decoded = decode_sources(about, reads.resolution_parts(SOURCE_COLUMNS))
        if decoded is None or decoded[1] != list(systems):
            return None
        stored = decoded[0]
        # Orders whose contact row is gone, or is another contact's now (SQLite may give a deleted
        # row's number to the next insert, which is then a contact written since).
        row_profile = attach.row_profile
        contact = stored.contact
        named = contact >= 0
        stale = named & (contact >= row_profile.shape[0])
        within = named & ~stale
        stale[within] = row_profile[contact[within]] < 0
        if written is None:
            changed_contacts, naming_them = reads.contacts_changed_since(marks.contacts_seq)
        else:  # their orders through the customer index, not another scan of every contact
            changed_contacts = np.unique(np.fromiter((row[0] for row in written), np.int64, len(written)))
            naming_them = reads.orders_naming(row[1] for row in written)
        stale |= named & np.isin(contact, changed_contacts)
        again = stored.order[stale].tolist() + naming_them  # and those naming a contact written since
        # The orders written since come as one aggregate of SQLite's text (sync/state/order_text.py):
        # past a full read's range, a full read costs less and holds less.
        written_since = reads.orders_written_since(marks.orders_seq)
        if written_since + len(again) > ORDERS_BY_DIFFERENCE_AT_MOST:
            log.info("orders read in full: many were written since the last read", written=written_since)
            return None
        base = self.config.segments.base_currency
        chunks = list(reads.orders_changed_since(base, marks.orders_seq, again))
        rows = np.concatenate(chunks) if chunks else np.zeros(0, ORDER_DTYPE)
        _, first_of_each = np.unique(rows["order"], return_index=True)
        fresh = self.order_sources([rows[first_of_each]], attach, systems)
        merged = merge_sources(stored, fresh)
        if merged is None:
            log.warning("orders read in full: the kept orders are not in row order")
            return None
        if merged.size != marks.orders_now:
            log.info("orders read in full: some were deleted since the last read")
            return None
        log.info("orders read by difference", orders=merged.size, read=fresh.size)
        return merged

    def order_details(
        self,
        rows: Iterable[tuple[str, str | None, str | None, int, bool, bool | None, str | None, bool]],
        assignment: Mapping[str, str],
        position: Mapping[str, int],
        attach: Attachment,
        facts: frozenset[str] = frozenset({"categories", "discount", "unfinished"}),
    ) -> OrderDetails:
        """The orders that say something beyond their value (discount, categories, unfinished),
        attached to profiles by the rule `order_columns` follows. A fact not in `facts` was not read
        for every order, so it is left unknown rather than half known."""
        keep_discount, keep_categories = "discount" in facts, "categories" in facts
        profile, created, counts, discount, unfinished, categories = [], [], [], [], [], []
        for system, customer_id, email_key, epoch, counted, code, labels, open_ in rows:
            pid = assignment.get(record_key(system, customer_id)) if customer_id else None
            index = position[pid] if pid is not None else attach.guest(email_key)
            profile.append(index)
            created.append(int(epoch))
            counts.append(bool(counted))
            discount.append(-1 if code is None or not keep_discount else int(bool(code)))
            unfinished.append(bool(open_))
            categories.append(tuple(json.loads(labels)) if labels and keep_categories else ())
        return OrderDetails(
            np.array(profile, dtype=np.int64),
            np.array(created, dtype=np.int64),
            np.array(counts, dtype=np.bool_),
            np.array(discount, dtype=np.int8),
            np.array(unfinished, dtype=np.bool_),
            categories,
        )

    def profile_fields(self, members: Mapping[str, Sequence[str]]) -> Survivorship:
        """Each profile's fields by survivorship, and the records whose own address opted in: read
        only when a rule segment or the bases ask for them."""
        identity = self.config.identity
        by_key = {contact.key: contact for contact, _ in self.store.iter_contacts()}
        fields = {}
        for pid, keys in members.items():
            chosen = survive([by_key[key] for key in keys if key in by_key], identity.source_priority)
            postcode = chosen.get("postcode")
            if postcode is not None:
                # A region reads a postcode with the country of the same record: NL from one system
                # and a Belgian postcode from another would make a Dutch region of Antwerp.
                country = by_key[postcode.source].country or self.rules.default_country
                chosen[POSTCODE_COUNTRY] = FieldChoice(country, postcode.source, "the postcode's own record")
            fields[pid] = chosen
        return Survivorship(fields, consented_records(by_key.values()))
