"""The resolution snapshot: what a compute's resolve step made (the profiles and their records, the
links that joined them, every order attached to its profile as columns), kept in the state with the
inputs it was made from.

A cycle whose inputs are the same would resolve to exactly this again: resolution is a function of
the stored contacts, the previous assignment and the settings, and it gives every cluster the id
its records already had. So such a cycle reuses the snapshot instead of reading every contact and
order and resolving them again, and a daemon's quiet cycles cost what their assessment and plan
cost. What the traits make of the orders depends on `now` and is computed afresh every time.

The inputs are, per table the compute reads (contacts, orders), the row count and the highest and
the sum of `changed_seq` (`ComputeSnapshot.input_marks`: every write stamps its rows with its run's
number, and run numbers only grow, so any row written or deleted since changes them); the settings
resolution and order attachment read; SQLite's schema cookie, which `VACUUM` raises (it may renumber
the rowids the contact rows below and the orders read by difference are keyed by), and witness rows
that a state restored from a dump (numbered afresh, the cookie the same) fails
(`ComputeSnapshot.row_witness`); and this module's format, crmsync's version and the mapping
version. On use, the stored profile members must also be those the snapshot made (`save_profiles`
keeps a digest of what it stored, and the snapshot one of what it made): a crash between the
snapshot's write and the profiles' leaves them otherwise, and the cycle then resolves in full;
`forget` deletes the snapshot. `backfill` always resolves in full.

A cycle whose inputs differ in the marks alone starts from the snapshot too: it resolves again
only the components the changed contacts touch (mapping/identity_delta.py, from each profile's
component in the header) and, on SQLite, reads only those contacts (the contact rows below) and
only the orders that changed (sync/order_sources.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from mapping.identity_delta import Before
from mapping.traits import OrderColumns
from sync.config import CrmsyncConfig
from sync.extract import MAPPING_VERSION
from sync.order_sources import SOURCE_COLUMNS, SOURCE_FLAGS, OrderSources

FORMAT = 10  # raise when what resolution makes, or this encoding, changes: older snapshots are then unused
# 8: SQLite amounts read as Python reads the stored text (sync/state/order_text.py), not by CAST
# 9: a mobile number joins clusters whose given names agree, and on a family's number no nameless one
# 10: given names compared word by word, a single letter an initial ("Ad" is no longer "Anna"'s)


try:
    CRMSYNC_VERSION = version("crmsync")
except PackageNotFoundError:  # run from a source tree that was not installed
    CRMSYNC_VERSION = "unknown"


def snapshot_inputs(
    config: CrmsyncConfig,
    marks: Sequence[Sequence[int]],
    numbering: int | None = None,
    witness: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """The inputs a resolution is made from, as text: equal text, equal resolution. `numbering`
    (`ComputeSnapshot.numbering_mark`) and `witness` (`row_witness`): so that a snapshot keyed by
    row numbers is never used once they may have changed. The witness, like the marks, changes
    with every row written; `marks_since` sets both aside and the resolver checks the kept one."""
    segments = config.segments
    return json.dumps(
        {
            "format": FORMAT,
            # The code that resolved: a release that changes resolution without raising FORMAT
            # still never reuses an older one's snapshot.
            "crmsync": CRMSYNC_VERSION,
            "mapping": MAPPING_VERSION,
            "marks": [list(mark) for mark in marks],
            "numbering": numbering,
            "rows": list(witness) if witness is not None else None,
            "identity": config.identity.model_dump(mode="json"),
            "systems": sorted(config.systems),
            "base_currency": segments.base_currency,
            "rates": {code: str(rate) for code, rate in sorted(segments.rates.items())},
        },
        sort_keys=True,
    )


@dataclass(frozen=True)
class StoredResolution:
    """A snapshot as decoded: `members` in the order resolution made it (profile id -> record keys)."""

    members: dict[str, list[str]]
    profiles: list[str]
    systems: list[str]
    orders: OrderColumns
    links: list[tuple[str, str, str, str]]
    members_digest: str  # `members_digest(members)`, as `save_profiles` keeps it for what it stored
    components: list[int]  # per profile in `members`' order: `mapping.identity.Resolution.components`


@dataclass(frozen=True)
class StoredIdentities:
    """The snapshot's header as decoded, without the orders: what resolving again only the
    touched components starts from (mapping/identity_delta.py)."""

    members: dict[str, list[str]]
    profiles: list[str]
    systems: list[str]
    links: list[tuple[str, str, str, str]]
    members_digest: str
    components: list[int]
    orders: int
    dtypes: dict[str, str]
    contact_rows: int | None  # the length of the contact row columns, when kept
    contact_dtypes: dict[str, str]

    @cached_property
    def clusters(self) -> list[tuple[str, list[str]]]:
        return list(self.members.items())

    def assignment(self) -> dict[str, str]:
        """Record key -> profile id."""
        return {key: pid for pid, keys in self.members.items() for key in keys}

    def before(self) -> Before:
        return Before(self.clusters, self.components, self.links)


# The order columns as stored: each integer column in the narrowest of int16, int32 and int64 that
# holds its values (read back as int64, exactly; the header names each column's type), in parts of
# PART_ROWS orders, so that writing and reading never hold a second copy of a column. The first
# five are the attached orders a reuse takes as they are; with the others, the orders as read
# (sync/order_sources.py), from which a cycle whose contacts or orders changed reads only what
# changed (SQLite, whose row numbers last).
COLUMNS = ("profile", "system", "cents", "created", "counts", "order", "contact", "raw_counts", "known")
FLAGS = SOURCE_FLAGS | {"counts"}  # bool columns, stored as bytes
ATTACHED = ("profile", "system", "cents", "created", "counts")
SOURCES = "sources"  # the part holding what the source columns do not (JSON)
# Per contact row number (SQLite's rowid; where row numbers last): the index of its profile in
# `profiles` (-1: no contact) and of its system in `systems`. A cycle that resolves only the touched
# components takes every other contact's from these, and reads no untouched contact.
CONTACT_ROWS = ("contact_profile", "contact_system")
# With them, guests' email match keys and the profile index each attached to (-1 nobody, -2 shared
# by several profiles), as JSON: a cycle looks up again only the addresses a change may have moved.
GUESTS = "guests"
PART_ROWS = 1 << 20


def encode(
    members: Mapping[str, Sequence[str]],
    profiles: Sequence[str],
    systems: Sequence[str],
    orders: OrderColumns,
    links: Sequence[tuple[str, str, str, str]],
    digest: str,
    components: Sequence[int],
    sources: OrderSources | None = None,
    contact_rows: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
    guests: Mapping[str | None, int] | None = None,
) -> Iterator[tuple[str, bytes]]:
    """The snapshot's parts: `header` (JSON), then each order column a part at a time, and with
    `sources` (the orders as read, in the order of `orders`) those too. `digest`:
    `members_digest(members)`."""
    stored = {name: getattr(orders, name) for name in ATTACHED}
    if sources is not None:
        stored.update((name, sources.column(name)) for name in SOURCE_COLUMNS)
    rows = dict(zip(CONTACT_ROWS, contact_rows, strict=True)) if contact_rows is not None else {}
    dtypes = {name: narrowest(column) for name, column in (*stored.items(), *rows.items())}
    header = {
        "profiles": list(profiles),
        "member_order": list(members),
        "sizes": [len(keys) for keys in members.values()],
        "keys": [key for keys in members.values() for key in keys],
        "systems": list(systems),
        "links": [list(link) for link in links],
        "orders": orders.size,
        "members_digest": digest,
        "components": list(components),
        "dtypes": {name: dtypes[name] for name in ATTACHED},
        "contact_rows": contact_rows[0].shape[0] if contact_rows is not None else None,
        "contact_dtypes": {name: dtypes[name] for name in rows},
    }
    yield "header", orjson.dumps(header)
    del header
    if sources is not None:
        about = {
            "orders": sources.size,
            "plain": sources.plain,
            "emails": sources.emails,
            "systems": list(systems),
            "dtypes": {name: dtypes[name] for name in SOURCE_COLUMNS},
        }
        yield f"{SOURCES}.000000", orjson.dumps(about)
    for name in COLUMNS:
        if name not in stored:
            continue
        column = stored[name]
        yield from _parts(name, column, dtypes[name])
    for name, column in rows.items():
        yield from _parts(name, column, dtypes[name])
    if guests is not None:
        yield f"{GUESTS}.000000", orjson.dumps(guests)


def _parts(name: str, column: npt.NDArray[Any], dtype: str) -> Iterator[tuple[str, bytes]]:
    for number, start in enumerate(range(0, column.shape[0], PART_ROWS)):
        yield f"{name}.{number:06d}", column[start : start + PART_ROWS].astype(dtype).tobytes()


def narrowest(column: npt.NDArray[Any]) -> str:
    """The narrowest type that holds every value of `column` (bool stays bool)."""
    if column.dtype == np.bool_:
        return "bool"
    if not column.shape[0]:
        return "int16"
    low, high = int(column.min()), int(column.max())
    for name in ("int16", "int32"):
        limits = np.iinfo(name)
        if limits.min <= low and high <= limits.max:
            return name
    return "int64"


def _columns(
    parts: Iterable[tuple[str, bytes]], size: int, dtypes: Mapping[str, str]
) -> dict[str, npt.NDArray[Any]] | None:
    """The columns `dtypes` names (stored as those types) from their parts (in name order; others
    skipped); None when a part is missing or the wrong size."""
    columns: dict[str, npt.NDArray[Any]] = {
        name: np.empty(size, dtype=np.bool_ if name in FLAGS else np.int64) for name in dtypes
    }
    filled = dict.fromkeys(columns, 0)
    for part, data in parts:
        name = part.partition(".")[0]
        if name not in columns:
            continue
        values = np.frombuffer(data, dtype=dtypes[name])
        at = filled[name]
        if at + values.shape[0] > size:
            return None
        columns[name][at : at + values.shape[0]] = values
        filled[name] = at + values.shape[0]
    if any(count != size for count in filled.values()):
        return None
    return columns


def decode_header(header_data: bytes) -> StoredIdentities:
    """The snapshot's header: profiles, members, links and components."""
    header: dict[str, Any] = orjson.loads(header_data)
    members: dict[str, list[str]] = {}
    keys: list[str] = header["keys"]
    start = 0
    for pid, length in zip(header["member_order"], header["sizes"], strict=True):
        members[pid] = keys[start : start + length]
        start += length
    links = [(str(a), str(b), str(kind), str(value)) for a, b, kind, value in header["links"]]
    return StoredIdentities(
        members,
        header["profiles"],
        header["systems"],
        links,
        header["members_digest"],
        header["components"],
        int(header["orders"]),
        header["dtypes"],
        header["contact_rows"],
        header["contact_dtypes"],
    )


def decode_contact_rows(
    header: StoredIdentities, parts: Iterable[tuple[str, bytes]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """Per contact row number, its profile's index and its system's (CONTACT_ROWS), from their
    parts (in name order); None when not kept, or a part is missing or the wrong size."""
    if header.contact_rows is None:
        return None
    columns = _columns(parts, header.contact_rows, header.contact_dtypes)
    return None if columns is None else (columns["contact_profile"], columns["contact_system"])


def decode(header_data: bytes, parts: Iterable[tuple[str, bytes]]) -> StoredResolution | None:
    """The snapshot from its header and its other parts (in name order); None when a part is
    missing or the wrong size."""
    header = decode_header(header_data)
    columns = _columns(parts, header.orders, header.dtypes)
    if columns is None:
        return None
    orders = OrderColumns(
        columns["profile"], columns["system"], columns["cents"], columns["created"], columns["counts"]
    )
    return StoredResolution(
        header.members, header.profiles, header.systems, orders, header.links, header.members_digest, header.components
    )


def decode_sources(about: bytes, parts: Iterable[tuple[str, bytes]]) -> tuple[OrderSources, list[str]] | None:
    """The orders as read when the snapshot was made, and the systems their `system` indexes, from
    the `sources` part (`about`) and the source columns' parts (in name order); None when a part is
    missing or the wrong size."""
    described: dict[str, Any] = orjson.loads(about)
    columns = _columns(parts, int(described["orders"]), described["dtypes"])
    if columns is None:
        return None
    sources = OrderSources.of(columns, int(described["plain"]), described["emails"])
    return sources, list(described["systems"])
