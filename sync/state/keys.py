"""The keys the state stores vendor records under: a record's own id, or for an id longer than the
state keys records by a stand-in (its start and a digest of the whole), and what tells one apart.
Shared by extract (which stores and quarantines such records) and the erasure (which must never
address a vendor record, or hash a key, that is no real id)."""

from __future__ import annotations

import hashlib

from mapping.model import Rejection
from mapping.normalize.text import MAX_ID

_KEPT = 200  # characters of an over-long id its stand-in keeps, before "…" and 16 of a digest
# The shortest id `unkeyable` refuses (a stand-in's length): a shorter one needs no look.
SHORTEST_UNKEYABLE = _KEPT + 17


def storage_id(record_id: str) -> str:
    """The key a record is stored under: its id, or for an id longer than the state keys records by
    (`MAX_ID`) a stand-in, its start and a digest of the whole. Stable, so the next read finds the
    record stored and unchanged; its raw payload keeps the id in full."""
    if len(record_id) <= MAX_ID:
        return record_id
    return f"{record_id[:_KEPT]}…{hashlib.sha256(record_id.encode()).hexdigest()[:16]}"


def unkeyable(record_id: str) -> Rejection | None:
    """The quarantine entry of a record whose id is too long to key it (read now, or stored under
    its stand-in and mapped again): no write may ever address it by a cut id."""
    if len(record_id) > MAX_ID:
        return Rejection("id_too_long", f"an id of {len(record_id)} characters (limit {MAX_ID})")
    if is_stand_in(record_id):
        return Rejection("id_too_long", f"an id of more than {MAX_ID} characters, stored under its start and a digest")
    return None


def is_stand_in(key: str) -> bool:
    """Whether a stored key is a stand-in for an over-long id (`storage_id`)."""
    return len(key) == _KEPT + 17 and key[_KEPT] == "…"


def addresses_a_record(key: str) -> bool:
    """Whether a stored key is a vendor record's own id, one a write could address: not empty (a
    record without an id, held as `missing_id`) and no stand-in."""
    return bool(key) and not is_stand_in(key)
