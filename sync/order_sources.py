"""Orders as the compute reads them, before they are attached to profiles: per order its row in the
state, the contact row it names, and what its value is, as columns. Attaching them to this cycle's
profiles is one array lookup (`attach_orders`), so a cycle whose contacts changed can keep the orders
it read last time and read again only those that changed (`merge_sources`).

Column order, which the traits see and a full read and a read by difference must both give: first
the plain orders (in the base currency, naming a stored contact), then the others (another
currency, or a guest's order, attached by email), each part in the order of the order rows
(`orders.rowid` on SQLite)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from mapping.traits import OrderColumns, to_base_cents
from sync.state.compute import split_other

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
# The columns of OrderSources, as stored in a resolution snapshot (sync/resolution_snapshot.py).
SOURCE_COLUMNS = ("order", "contact", "system", "cents", "created", "raw_counts", "known")
SOURCE_FLAGS = frozenset({"raw_counts", "known"})  # the bool ones; the others are int64


@dataclass
class OrderSources:
    """Every order, plain ones first (`plain` of them), then the others."""

    order: I64  # the order row's number (SQLite's rowid; -1 where the backend has none)
    contact: I64  # the contact row it names (-1: none stored, a guest's order)
    system: I64  # index into the cycle's systems
    cents: I64  # in the base currency
    created: I64  # epoch seconds
    raw_counts: BOOL  # as stored: False when cancelled, refunded or a test
    known: BOOL  # False: no exchange rate for its currency
    plain: int
    emails: list[str | None]  # per other order (positions plain..): its email match key

    @classmethod
    def of(cls, columns: Mapping[str, npt.NDArray[Any]], plain: int, emails: list[str | None]) -> OrderSources:
        """From its columns by name (SOURCE_COLUMNS)."""
        return cls(
            columns["order"],
            columns["contact"],
            columns["system"],
            columns["cents"],
            columns["created"],
            columns["raw_counts"],
            columns["known"],
            plain,
            emails,
        )

    @property
    def size(self) -> int:
        return int(self.order.shape[0])

    def column(self, name: str) -> npt.NDArray[Any]:
        found: npt.NDArray[Any] = getattr(self, name)
        return found


def order_sources(
    chunks: Iterable[npt.NDArray[Any]],
    row_system: I64,
    system_index: Mapping[str, int],
    base: str,
    rates: Mapping[str, Decimal],
) -> OrderSources:
    """Orders as read (structured arrays of ORDER_DTYPE, in row order) to columns. `row_system`:
    contact row number -> its system's index (a plain order is its contact's system's)."""
    plain: dict[str, list[npt.NDArray[Any]]] = {name: [] for name in SOURCE_COLUMNS}
    others: list[npt.NDArray[Any]] = []
    for chunk in chunks:
        simple: BOOL = chunk["other"] == None  # noqa: E711 (numpy: element-wise)
        if not simple.all():
            others.append(chunk[~simple])
            chunk = chunk[simple]
        # Column by column, a chunk at a time, each a copy (a field is a view that would keep its
        # chunk alive): the structured rows of every order at once would be a second copy of them.
        contact = chunk["contact"].astype(np.int64)
        plain["order"].append(chunk["order"].astype(np.int64))
        plain["contact"].append(contact)
        plain["system"].append(row_system[contact])
        plain["cents"].append(np.rint(chunk["amount"] * 100.0).astype(np.int64))
        plain["created"].append(chunk["created"].astype(np.int64))
        plain["raw_counts"].append(chunk["counts"].astype(np.bool_))
        plain["known"].append(np.ones(chunk.shape[0], dtype=np.bool_))
    # A column at a time, its chunks let go as it is joined: never two copies of every column.
    columns = {name: _joined(plain.pop(name), name) for name in SOURCE_COLUMNS}
    del plain
    size = int(columns["order"].shape[0])
    if not others:
        return OrderSources.of(columns, size, [])
    rest = np.concatenate(others)
    del others
    currencies: list[str] = []
    systems: list[int] = []
    emails: list[str | None] = []
    for other in rest["other"].tolist():
        currency, email_key, system = split_other(other)
        currencies.append(currency)
        emails.append(email_key)
        systems.append(system_index[system])
    cents, known = to_base_cents(rest["amount"], np.array(currencies, dtype="U3"), base, rates)
    extra = {
        "order": rest["order"].astype(np.int64),
        "contact": rest["contact"].astype(np.int64),
        "system": np.array(systems, dtype=np.int64),
        "cents": cents,
        "created": rest["created"].astype(np.int64),
        "raw_counts": rest["counts"].astype(np.bool_),
        "known": known,
    }
    del rest, cents, known
    for name in SOURCE_COLUMNS:  # the plain column let go as its joined one replaces it
        columns[name] = np.concatenate([columns[name], extra.pop(name)])
    return OrderSources.of(columns, size, emails)


def _joined(parts: Sequence[npt.NDArray[Any]], name: str) -> npt.NDArray[Any]:
    if parts:
        return np.concatenate(parts)
    return np.zeros(0, dtype=np.bool_ if name in SOURCE_FLAGS else np.int64)


def attach_orders(
    sources: OrderSources, row_profile: I64, guests: Callable[[Iterable[str | None]], Mapping[str | None, int]]
) -> tuple[OrderColumns, int]:
    """The orders attached to this cycle's profiles: by their contact's row (`row_profile`: row
    number -> profile index, -1 for none), else a guest's by email (`guests`: email match keys ->
    profile index, negative or left out for none). Also how many would count but have no exchange rate.
    An order without a profile never counts."""
    contact = sources.contact
    if sources.size and int(contact.max()) >= row_profile.shape[0]:
        raise ValueError("an order names a contact row this read does not have")
    # Taken into place, -1 clipped to row 0 and then put right: no temporary column of every order.
    profile = np.empty(sources.size, dtype=np.int64)
    np.take(row_profile, contact, out=profile, mode="clip")
    profile[contact < 0] = -1
    plain = sources.plain
    named = contact[plain:].tolist()
    found = guests({email_key for number, email_key in zip(named, sources.emails, strict=True) if number < 0})
    for offset, (number, email_key) in enumerate(zip(named, sources.emails, strict=True)):
        if number < 0:
            profile[plain + offset] = max(found.get(email_key, -1), -1)  # below -1: shared, nobody's either
    counted = sources.raw_counts & (profile >= 0)
    unconverted = int(np.count_nonzero(counted & ~sources.known))
    columns = OrderColumns(profile, sources.system, sources.cents, sources.created, counted & sources.known)
    return columns, unconverted


def merge_sources(stored: OrderSources, fresh: OrderSources) -> OrderSources | None:
    """The orders of `stored` with those read again (`fresh`: a row of each order that changed,
    or whose contact did, or new) in their place: by order row number, each part kept in row order.
    None when a part of `stored` is not in row order (a snapshot made without row numbers)."""
    replaced = _members(stored.order, np.sort(fresh.order))
    # Per part (plain, other): which stored rows stay, and where the fresh ones go among them.
    bounds = ((0, stored.plain, 0, fresh.plain), (stored.plain, stored.size, fresh.plain, fresh.size))
    keeps: list[BOOL] = []
    places: list[I64] = []
    for first, stop, fresh_first, fresh_stop in bounds:
        order = stored.order[first:stop]
        if order.shape[0] > 1 and not bool(np.all(order[1:] > order[:-1])):
            return None
        keep = ~replaced[first:stop]
        keeps.append(keep)
        places.append(np.searchsorted(order[keep], fresh.order[fresh_first:fresh_stop]))
    # A column at a time: the merged orders, not three copies of them, are what memory holds.
    columns: dict[str, npt.NDArray[Any]] = {}
    for name in SOURCE_COLUMNS:
        old, new = stored.column(name), fresh.column(name)
        columns[name] = np.concatenate(
            [
                np.insert(old[first:stop][keep], at, new[fresh_first:fresh_stop])
                for (first, stop, fresh_first, fresh_stop), keep, at in zip(bounds, keeps, places, strict=True)
            ]
        )
    old_emails = [email for email, stay in zip(stored.emails, keeps[1].tolist(), strict=True) if stay]
    emails = np.insert(_objects(old_emails), places[1], _objects(fresh.emails)).tolist()
    plain = int(np.count_nonzero(keeps[0])) + fresh.plain
    return OrderSources.of(columns, plain, emails)


def _members(values: I64, sorted_set: I64) -> BOOL:
    """Which of `values` are in `sorted_set` (a sorted array): one binary search each."""
    if not sorted_set.shape[0]:
        return np.zeros(values.shape[0], dtype=np.bool_)
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.shape[0] - 1)
    found: BOOL = sorted_set[at] == values
    return found


def _objects(values: Sequence[str | None]) -> npt.NDArray[Any]:
    """A list as a 1-d object array (np.array would make a list of equal strings a string array)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
