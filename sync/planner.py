"""Desired vs known: the smallest set of writes that brings crmsync's own tags and fields on a
remote record to the verdict, never touching a tag or field crmsync does not own."""

from __future__ import annotations

from collections.abc import Mapping

from mapping.model import RemoteState, WriteBack


def diff(system: str, record_id: str, desired: RemoteState, current: RemoteState) -> WriteBack | None:
    """None when nothing needs writing. Tags compare case-insensitively (Shopify's tags do); a
    removal uses the remote's own spelling so the vendor matches it."""
    have = {tag.casefold(): tag for tag in current.tags}
    want = {tag.casefold(): tag for tag in desired.tags}
    add = tuple(sorted(want[key] for key in want.keys() - have.keys()))
    remove = tuple(sorted(have[key] for key in have.keys() - want.keys()))
    fields = {key: value for key, value in desired.fields.items() if current.fields.get(key) != value}
    if not add and not remove and not fields:
        return None
    return WriteBack(system, record_id, add, remove, dict(sorted(fields.items())), desired)


def plan_system(system: str, desired: Mapping[str, RemoteState], current: Mapping[str, RemoteState]) -> list[WriteBack]:
    """One WriteBack per record whose known state differs from its desired state."""
    changes = []
    for record_id in sorted(desired):
        change = diff(system, record_id, desired[record_id], current.get(record_id, RemoteState()))
        if change is not None:
            changes.append(change)
    return changes
