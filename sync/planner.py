"""Desired vs known: the smallest set of writes that brings crmsync's own tags and fields on a
remote record to the verdict, never touching a tag or field crmsync does not own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from mapping.model import RemoteState, WriteBack, made_per_record

_UNSEEN: Any = object()  # a pair of states not compared yet (None: compared, nothing to write)


def diff(
    system: str,
    record_id: str,
    desired: RemoteState,
    current: RemoteState,
    owns: Callable[[str], bool] | None = None,
) -> WriteBack | None:
    """None when nothing needs writing. Tags compare case-insensitively (Shopify's tags do); a
    removal uses the remote's own spelling so the vendor matches it. `owns`: whether a tag is
    crmsync's now (`Connector.owns_tag`); a known tag that is not (one pushed under an earlier
    `tag_prefix`) is never removed."""
    have = {tag.casefold(): tag for tag in current.tags if owns is None or owns(tag)}
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


def plan_system(
    system: str,
    desired: Mapping[str, RemoteState],
    current: Mapping[str, RemoteState],
    owns: Callable[[str], bool] | None = None,
) -> list[WriteBack]:
    """One WriteBack per record whose known state differs from its desired state (`owns`: see
    `diff`).

    A million records share a few dozen distinct states (one per combination of segments), and
    callers hand the same state object to every record that holds it; so each distinct pair of
    objects is compared once."""
    absent = RemoteState()
    compared: dict[tuple[int, int], WriteBack | None] = {}
    changes = []
    known = current.get
    # In any order, then the few changes sorted: sorting every record id cost more than comparing.
    for record_id, want in desired.items():
        have = known(record_id, absent)
        pair = (id(want), id(have))
        template = compared.get(pair, _UNSEEN)
        if template is _UNSEEN:
            template = compared[pair] = diff(system, "", want, have, owns)
        if template is not None:
            # The constructor, not dataclasses.replace: a third of the cost, a million times a backfill.
            t = template
            changes.append(WriteBack(system, record_id, t.add_tags, t.remove_tags, t.set_fields, t.target))
    changes.sort(key=attrgetter("record_id"))  # a C getter: no Python call per change
    return changes


@made_per_record  # as WriteBack: a frozen dataclass cannot extend one that is not frozen at run time
class PlannedChange(WriteBack):
    """A planned change as a person reads it (`plan`, `sync --dry-run`): whose record it is, and
    which segments it joins and leaves, whether the system holds them as tags or in one field."""

    name: str | None = None
    email: str | None = None
    joins: tuple[str, ...] = ()
    leaves: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc = WriteBack.to_json(self)  # (slots dataclasses have no zero-argument super())
        return {"system": doc.pop("system"), "id": doc.pop("id"), "name": self.name, "email": self.email, **doc}


def person_name(details: Mapping[str, Any]) -> str | None:
    """A contact's name as people write it ("Jan van der Berg") from its normalised parts, else
    its company; None when the record holds neither."""
    parts = (details.get("given_name") or details.get("initials"), details.get("infix"), details.get("family_name"))
    name = " ".join(str(part).strip() for part in parts if part and str(part).strip())
    company = details.get("company")
    return name or (str(company).strip() if company else None) or None


def _segment_names(value: str | None) -> set[str]:
    return {name.strip() for name in (value or "").split(",") if name.strip()}


def _untagged(tags: Iterable[str], prefix: str) -> set[str]:
    folded = prefix.casefold()
    return {tag[len(prefix) :] for tag in tags if tag.casefold().startswith(folded)}


def describe(
    changes: Sequence[WriteBack],
    *,
    people: Mapping[str, tuple[str | None, str | None]],
    before: Mapping[str, RemoteState],
    tag_prefix: str,
    segments_field: str | None,
) -> list[PlannedChange]:
    """The changes of one system with the person's name and email (`people`: record id -> (name,
    email)) and the segments each joins and leaves: from the tags added and removed, and from the
    segments field's value before (`before`, what crmsync knows of the record) and after."""
    described = []
    for change in changes:
        joins = _untagged(change.add_tags, tag_prefix)
        leaves = _untagged(change.remove_tags, tag_prefix)
        if segments_field and segments_field in change.set_fields:
            known = before.get(change.record_id)
            old = _segment_names(known.fields.get(segments_field) if known is not None else None)
            new = _segment_names(change.set_fields[segments_field])
            joins |= new - old
            leaves |= old - new
        name, email = people.get(change.record_id, (None, None))
        described.append(
            PlannedChange(
                change.system,
                change.record_id,
                change.add_tags,
                change.remove_tags,
                change.set_fields,
                change.target,
                name=name,
                email=email,
                joins=tuple(sorted(joins)),
                leaves=tuple(sorted(leaves)),
            )
        )
    return described
