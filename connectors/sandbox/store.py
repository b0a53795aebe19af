"""The record store of an emulator, and the request-parameter helpers every emulator needs.

Each emulator keeps its records of one kind (customers, orders, persons ...) in a `FixtureStore`:
loaded from a fixture file through the vendor's own `build` (which checks an item and fills in
the vendor's defaults, raising FixtureError with where the item sits), found by the id as a
client writes it, patched the way a test or the fault lab changes a record by hand, touched
(its modification time moved, which is what makes an incremental read see it), and paged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request

from connectors.sandbox.app import FixtureError
from connectors.streams import positive_int

Record = dict[str, Any]


class FixtureStore:
    """Records by id. `id_of(text)` turns an id as a client sends it into the store's key (None
    when it can be no id here); `touch(record)` moves a record's modification time."""

    def __init__(
        self,
        name: str,
        *,
        key: str = "id",
        id_of: Callable[[str], Any] | None = None,
        touch: Callable[[Record], None] | None = None,
        fixed: Sequence[str] = ("id",),
    ) -> None:
        self.name = name
        self.key = key
        self.id_of = id_of or positive_int
        self._touch = touch
        self.fixed = frozenset(fixed)
        self.records: dict[Any, Record] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records.values())

    def __contains__(self, record_id: Any) -> bool:
        return record_id in self.records

    def load(self, items: Any, build: Callable[[str, Any], Record], where: str = "", *, unique: bool = False) -> None:
        """Every item through `build`, named "<where> item <n>" in its errors. A key given twice
        replaces the earlier item (a vendor export is read the way the vendor would store it),
        or is a fixture error with `unique`."""
        if items is None:
            return
        if not isinstance(items, list):
            raise FixtureError(f"{where or self.name}: expected a list")
        for index, item in enumerate(items):
            at = f"{where or self.name} item {index}"
            record = build(at, item)
            record_id = record[self.key]
            if unique and record_id in self.records:
                raise FixtureError(f"{at}: {self.key} {record_id!r} appears twice")
            self.records[record_id] = record

    def add(self, record: Record) -> Record:
        self.records[record[self.key]] = record
        return record

    def get(self, record_id: Any) -> Record | None:
        """The live record (for the emulator's own routes)."""
        return self.records.get(record_id)

    def lookup(self, text: str) -> Record | None:
        """The live record for an id as a client wrote it."""
        record_id = self.id_of(text)
        return None if record_id is None else self.records.get(record_id)

    def find(self, text: str) -> Record | None:
        """A copy of the record, for tests and the fault lab."""
        found = self.lookup(text)
        return copy.deepcopy(found) if found is not None else None

    def patch(
        self,
        text: str,
        partial: Mapping[str, Any],
        merge: Callable[[Record, str, Any], bool] | None = None,
    ) -> Record | None:
        """A hand edit: nested objects are merged one level deep, the fixed keys (id, creation
        time) are kept, and `merge(record, key, value)` takes the keys a vendor stores its own way
        (returning True when it did). The record is touched; a copy is returned."""
        record = self.lookup(text)
        if record is None:
            return None
        for key, value in partial.items():
            if merge is not None and merge(record, key, value):
                continue
            if isinstance(value, dict) and isinstance(record.get(key), dict):
                record[key].update(copy.deepcopy(value))
            elif key not in self.fixed:
                record[key] = copy.deepcopy(value)
        self.touch(record)
        return copy.deepcopy(record)

    def remove(self, text: str) -> Record | None:
        """A record deleted in the vendor's UI: gone from every list and lookup; the removed
        record is returned (None: no such record)."""
        record_id = self.id_of(text)
        return None if record_id is None else self.records.pop(record_id, None)

    def touch(self, record: Record) -> None:
        if self._touch is not None:
            self._touch(record)

    def sorted(self, key: Callable[[Record], Any] | None = None, reverse: bool = False) -> list[Record]:
        return sorted(self.records.values(), key=key or (lambda r: r[self.key]), reverse=reverse)


def page(items: Sequence[Record], offset: int, limit: int) -> list[Record]:
    """Copies of one page of `items`: what leaves the emulator can never change its state."""
    return [copy.deepcopy(item) for item in items[max(offset, 0) : max(offset, 0) + max(limit, 0)]]


def int_param(
    request: Request,
    name: str,
    default: int,
    *,
    invalid: Callable[[str], Exception],
    low: int | None = None,
    high: int | None = None,
) -> int:
    """A whole-number query parameter; `invalid(message)` is the vendor's refusal of a bad one."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name} must be a whole number") from None
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bounds = f"between {low} and {high}"
        else:
            bounds = f"at least {low}" if low is not None else f"at most {high}"
        raise invalid(f"{name} must be {bounds}")
    return value
