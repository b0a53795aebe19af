"""Identity resolution: which source records are the same person, under stable profile ids.

Records are joined by union-find over shared identifiers (today: the normalised email). The result
depends only on the set of inputs, never their order. Profile ids survive across runs: when two
profiles merge, the older id survives and the other becomes an alias; when a profile splits, the
part holding most of its previous records keeps the id and the rest get new ones.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        parent = self.parent.setdefault(item, item)
        if parent == item:
            return item
        root = self.find(parent)
        self.parent[item] = root
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller key becomes the root, so the structure is the same for any input order.
            low, high = sorted((ra, rb))
            self.parent[high] = low


@dataclass(frozen=True)
class Link:
    """Why two records were joined: they share `value` of identifier `kind`."""

    a: str
    b: str
    kind: str
    value: str


@dataclass
class Resolution:
    assignment: dict[str, str] = field(default_factory=dict)  # record key -> profile id
    aliases: dict[str, str] = field(default_factory=dict)  # retired profile id -> surviving id
    created: set[str] = field(default_factory=set)
    links: list[Link] = field(default_factory=list)

    def members(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for key, profile in sorted(self.assignment.items()):
            out[profile].append(key)
        return dict(out)


def new_profile_id(seed: str, taken: set[str]) -> str:
    """A deterministic id from the cluster's smallest record key, unique among `taken`."""
    attempt = 0
    while True:
        digest = hashlib.sha1(f"{seed}#{attempt}".encode()).hexdigest()[:12]
        candidate = f"p_{digest}"
        if candidate not in taken:
            return candidate
        attempt += 1


def resolve(
    identifiers: Iterable[tuple[str, Iterable[tuple[str, str]]]],
    previous: Mapping[str, str],
    age: Mapping[str, int],
) -> Resolution:
    """Cluster records and name the clusters.

    `identifiers`: per record key, its (kind, value) identifiers. `previous`: record key -> the
    profile id it had. `age`: profile id -> creation rank (smaller is older)."""
    union = UnionFind()
    first_holder: dict[tuple[str, str], str] = {}
    links: list[Link] = []
    keys: list[str] = []
    for key, idents in sorted(((k, sorted(set(v))) for k, v in identifiers), key=lambda item: item[0]):
        keys.append(key)
        union.find(key)
        for ident in idents:
            holder = first_holder.setdefault(ident, key)
            if holder != key:
                union.union(holder, key)
                links.append(Link(holder, key, ident[0], ident[1]))

    clusters: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        clusters[union.find(key)].append(key)
    ordered = sorted(clusters.values(), key=lambda members: members[0])

    # Every previous id goes to the cluster that holds most of its former records.
    # Ties go to the cluster with the smallest record key, so the outcome never depends on order.
    claims: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for index, members in enumerate(ordered):
        counts: dict[str, int] = defaultdict(int)
        for key in members:
            if key in previous:
                counts[previous[key]] += 1
        for profile_id, count in counts.items():
            claims[profile_id].append((count, members[0], index))
    won: dict[int, list[str]] = defaultdict(list)
    for profile_id, candidates in claims.items():
        _, _, index = min(candidates, key=lambda c: (-c[0], c[1]))
        won[index].append(profile_id)

    result = Resolution(links=links)
    taken = set(age) | set(previous.values())
    for index, members in enumerate(ordered):
        ids = sorted(won.get(index, []), key=lambda pid: (age.get(pid, 1 << 62), pid))
        if ids:
            survivor = ids[0]
            for retired in ids[1:]:
                result.aliases[retired] = survivor
        else:
            survivor = new_profile_id(members[0], taken)
            taken.add(survivor)
            result.created.add(survivor)
        for key in members:
            result.assignment[key] = survivor
    return result
