"""Desired vs known: the smallest set of writes that brings crmsync's own tags and fields on a
remote record to the verdict, never touching a tag or field crmsync does not own."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from mapping.model import RemoteState, WriteBack


def diff(system: str, record_id: str, desired: RemoteState, current: RemoteState) -> WriteBack | None:
    """None when nothing needs writing. Tags compare case-insensitively (Shopify's tags do); a
    removal uses the remote's own spelling so the vendor matches it."""
    have = {tag.casefold(): tag for tag in current.tags}
    want = {tag.casefold(): tag for tag in desired.tags}
    add = tuple(sorted(want[key] for key in want.keys() - have.keys()))
    remove = tuple(sorted(have[key] for key in have.keys() - want.keys()))
    # What the record holds is unknown (never read, never written): every owned field is set, and
    # the connector looks at the record before it writes, sending only what differs.
    fields = {
        key: value for key, value in desired.fields.items() if not current.known or current.fields.get(key) != value
    }
    if not add and not remove and not fields:
        return None
    return WriteBack(system, record_id, add, remove, dict(sorted(fields.items())), desired)


def plan_system(system: str, desired: Mapping[str, RemoteState], current: Mapping[str, RemoteState]) -> list[WriteBack]:
    """One WriteBack per record whose known state differs from its desired state.

    A million records share a few dozen distinct states (one per combination of segments), and
    callers hand the same state object to every record that holds it; so each distinct pair of
    objects is compared once."""
    absent = RemoteState()
    compared: dict[tuple[int, int], WriteBack | None] = {}
    changes = []
    for record_id in sorted(desired):
        want = desired[record_id]
        have = current.get(record_id, absent)
        pair = (id(want), id(have))
        if pair in compared:
            template = compared[pair]
        else:
            template = compared[pair] = diff(system, "", want, have)
        if template is not None:
            changes.append(dataclasses.replace(template, record_id=record_id))
    return changes
