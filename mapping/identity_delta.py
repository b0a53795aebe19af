"""Identity resolution again for only the records a change can move.

Resolution joins records that share an identifier, and what it makes of a group of records depends
on those records alone: the order of joins, the anchors, the limits on shared values and on profile
size look only at the holders of each value, and the name test on mobiles at the clusters holding
them, which are joined by values too. So a resolution falls
apart into components (`Resolution.components`: clusters that share a value, joined by it or not),
and a component none of whose records changed, and which no changed record now reaches, resolves
exactly as before, under the same profile id (its records all had that id, and no other cluster
holds one of them).

What must be resolved again, then: the records written since, the components that held a changed or
deleted record, and the components of every unchanged record a changed record now reaches (it holds
one of the changed record's values, it links to it, or it is linked from it). An unchanged record's
other values reach only its own old component or a changed record: any value two unchanged records
share now, they shared before. The outcome is merged into the kept clusters in the order a full
resolution gives: clusters by their smallest key, links by phase (record links, then values by
kind), value and key.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

import numpy as np

from mapping.identity import KIND_PRIORITY, Resolution, resolve

LinkRow = tuple[str, str, str, str]  # record key a, record key b, identifier kind, value


@dataclass(frozen=True)
class Before:
    """The last resolution as kept: clusters (profile id, keys in order) in the order of their
    smallest key, each one's component, and the links that joined them in the order made."""

    clusters: Sequence[tuple[str, list[str]]]
    components: Sequence[int]
    links: Sequence[LinkRow]


@dataclass
class Delta:
    """The resolution of every record, made by resolving again only the touched components:
    `resolution` carries the merged clusters, components and assignment, and what the touched part
    alone gave of aliases, new ids, shared values and refused joins."""

    resolution: Resolution
    links: list[LinkRow]
    records: int  # how many records were resolved again
    removed: list[tuple[str, list[str]]]  # the kept clusters resolved again
    added: list[tuple[str, list[str]]]  # what they and the changed records became
    links_removed: list[LinkRow]  # the kept links of those clusters
    links_added: list[LinkRow]  # the links resolving again made
    deleted: Set[str]  # the keys gone


def link_order(link: LinkRow) -> tuple[object, ...]:
    """Where a full resolution makes this link: record links by (a, b, value), then each value's
    joins in the order of KIND_PRIORITY, kind and value, by the joined record's key."""
    a, b, kind, value = link
    if kind == "record":
        return (0, a, b, value)
    return (1, KIND_PRIORITY.get(kind, 9), kind, value, b)


@dataclass(frozen=True)
class Touched:
    """What must be resolved again: the kept clusters (their positions) whose component a change
    touched, their keys, and the keys to resolve (theirs still stored, and the changed ones)."""

    positions: list[int]
    old_keys: set[str]
    again: set[str]


def touched(
    changed: Set[str], deleted: Set[str], reached: Iterable[str], before: Before, previous: Mapping[str, str]
) -> Touched:
    """`reached`: the unchanged records a changed one reaches, as `reached` finds them (more
    serves too: resolving a whole untouched component again gives it back as it was)."""
    position = {pid: i for i, (pid, _) in enumerate(before.clusters)}
    seeds = {position[previous[key]] for key in (*changed, *deleted, *reached) if key in previous}
    components = np.asarray(before.components, dtype=np.int64)
    at = np.flatnonzero(np.isin(components, components[sorted(seeds)])).tolist() if seeds else []
    old_keys = {key for i in at for key in before.clusters[i][1]}
    return Touched(at, old_keys, (old_keys - deleted) | set(changed))


def resolve_part(
    identified: Iterable[tuple[str, Iterable[tuple[str, str]]]],
    again: Touched,
    previous: Mapping[str, str],
    age: Mapping[str, int],
    limits: Mapping[str, int] | None = None,
    max_profile: int = 1 << 30,
    names: Mapping[str, str] | None = None,
) -> Resolution:
    """The touched records resolved on their own (`identified`: each of `again.again` with its
    identifiers), no new id being one any profile holds."""
    return resolve(
        identified,
        {key: previous[key] for key in again.again if key in previous},
        age,
        limits=limits,
        max_profile=max_profile,
        names=names,
        taken=previous.values(),
    )


def merged(before: Before, again: Touched, part: Resolution, previous: Mapping[str, str], deleted: Set[str]) -> Delta:
    """The resolution of every record: the kept clusters and links with `part` in their place."""
    resolution = Resolution(aliases=part.aliases, created=part.created, shared=part.shared, refused=part.refused)
    resolution.clusters, resolution.components = _merged_clusters(before, set(again.positions), part)
    assignment = dict(previous)
    for key in deleted:
        assignment.pop(key, None)
    assignment.update(part.assignment)
    resolution.assignment = assignment
    kept: list[LinkRow] = []
    dropped: list[LinkRow] = []
    for link in before.links:
        (dropped if link[0] in again.old_keys else kept).append(link)
    made = [(link.a, link.b, link.kind, link.value) for link in part.links]
    removed = [before.clusters[at] for at in again.positions]
    return Delta(
        resolution, _merged_links(kept, made), len(again.again), removed, part.clusters, dropped, made, deleted
    )


def resolve_again(
    identified: Sequence[tuple[str, Sequence[tuple[str, str]]]],
    changed: Set[str],
    deleted: Set[str],
    before: Before,
    previous: Mapping[str, str],
    age: Mapping[str, int],
    limits: Mapping[str, int] | None = None,
    max_profile: int = 1 << 30,
    names: Mapping[str, str] | None = None,
) -> Delta:
    """`identified`: every current record's key and identifiers (as `resolve` takes them).
    `changed`: keys of records written since `before` (new or edited); `deleted`: keys gone since.
    `previous` must be `before`'s assignment: record key -> profile id."""
    again = touched(changed, deleted, reached(identified, changed), before, previous)
    rows = [(key, idents) for key, idents in identified if key in again.again]
    part = resolve_part(rows, again, previous, age, limits, max_profile, names)
    return merged(before, again, part, previous, deleted)


def reached(identified: Iterable[tuple[str, Sequence[tuple[str, str]]]], changed: Set[str]) -> set[str]:
    """The unchanged records a changed one reaches: holding one of its values, linking to it, or
    linked from it."""
    values: set[tuple[str, str]] = set()
    targets: set[str] = set()
    for key, idents in identified:
        if key in changed:
            for kind, value in idents:
                if kind == "record":
                    targets.add(value)
                else:
                    values.add((kind, value))
    reached = set()
    for key, idents in identified:
        if key in changed:
            continue
        if key in targets:
            reached.add(key)
            continue
        for ident in idents:
            if (ident[1] in changed) if ident[0] == "record" else (ident in values):
                reached.add(key)
                break
    return reached


def _merged_clusters(
    before: Before, touched: Set[int], part: Resolution
) -> tuple[list[tuple[str, list[str]]], list[int]]:
    """The untouched clusters and those resolved again, in the order of their smallest key, and
    each one's component as a full resolution numbers it (its first cluster's position)."""
    kept = [cluster for at, cluster in enumerate(before.clusters) if at not in touched]
    kept_components = [label for at, label in enumerate(before.components) if at not in touched]
    firsts = [keys[0] for _, keys in kept]
    offset = len(before.clusters)  # the part's components, told apart from the kept ones
    clusters: list[tuple[str, list[str]]] = []
    labels: list[int] = []
    done = 0
    for cluster, label in zip(part.clusters, part.components, strict=True):
        at = bisect_left(firsts, cluster[1][0], lo=done)
        clusters.extend(kept[done:at])
        labels.extend(kept_components[done:at])
        clusters.append(cluster)
        labels.append(offset + label)
        done = at
    clusters.extend(kept[done:])
    labels.extend(kept_components[done:])
    if not labels:
        return clusters, []
    _, first, inverse = np.unique(np.asarray(labels, dtype=np.int64), return_index=True, return_inverse=True)
    return clusters, first[inverse].tolist()


def _merged_links(kept: list[LinkRow], made: list[LinkRow]) -> list[LinkRow]:
    """`made` (in the order resolution made them) placed among `kept` (in a full resolution's
    order) where a full resolution would have made them."""
    merged: list[LinkRow] = []
    done = 0
    for link in made:
        at = bisect_left(kept, link_order(link), lo=done, key=link_order)
        merged.extend(kept[done:at])
        merged.append(link)
        done = at
    merged.extend(kept[done:])
    return merged
