"""Identity resolution: which source records are the same person, under stable profile ids.

Records are joined by union-find over shared identifiers, strongest kind first: a record's own id
(which other systems may store: an explicit link), then the email match key, then the E.164 mobile
number. Landlines, role addresses (`info@`) and unparseable values never join anyone. Merge
protection: an identifier held by more than N records of one system is a shared one (a shop's own
address on its B2B orders, a family phone) and joins nobody; a join that would make a profile larger
than M records is refused. The outcome depends only on the set of inputs, never their order.

Profile ids survive across runs: when profiles merge, the oldest id survives and the others become
aliases; when a profile splits, the part holding most of its former records keeps the id.
Survivorship picks each profile field from the configured most trusted source, then the most
recently updated record.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from itertools import chain, islice, pairwise, repeat
from operator import itemgetter, lt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mapping.model import PROFILE_FIELDS, Contact, key_system
from mapping.normalize.email import DEFAULT_ROLE_LOCALS, email_match_key

# Stronger kinds are joined first; with the profile size limit that decides which joins happen.
KIND_PRIORITY = {"record": 0, "email": 1, "mobile": 2}


class IdentitySettings(BaseModel):
    """The `[identity]` config section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_country: str = Field(default="NL", pattern=r"^[A-Z]{2}$", description="for phones and postcodes")
    role_addresses: list[str] = Field(default_factory=list, description="more local parts that name a role")
    personal_addresses: list[str] = Field(
        default_factory=list, description="local parts that are people here after all (a one-person info@)"
    )
    max_records_per_identifier: dict[str, int] = Field(
        default_factory=lambda: {"email": 3, "mobile": 3},
        description="records of ONE system an email or mobile may be on before it counts as shared",
    )
    max_records_per_profile: int = Field(default=25, ge=2)
    source_priority: list[str] = Field(default_factory=list, description="system names, most trusted first")

    @field_validator("max_records_per_identifier")
    @classmethod
    def _known_kinds(cls, value: dict[str, int]) -> dict[str, int]:
        for kind, limit in value.items():
            if kind not in ("email", "mobile"):
                raise ValueError(f"{kind!r} is not an identifier kind (email, mobile)")
            if limit < 1:
                raise ValueError(f"{kind}: the limit must be at least 1")
        return value

    def role_locals(self) -> frozenset[str]:
        extra = {r.strip().lower().rstrip("@") for r in self.role_addresses}
        return (DEFAULT_ROLE_LOCALS | extra) - {p.strip().lower() for p in self.personal_addresses}


def identifiers(contact: Contact) -> list[tuple[str, str]]:
    """What may join this record to others: the keys it stores of other systems' records (links;
    a record's own key is implied), its email unless that names a role, its mobile number."""
    email_key = email_match_key(contact.email) if contact.email else None
    return row_identifiers(contact.links, email_key, contact.email_role, contact.mobile)


def row_identifiers(
    links: Iterable[str], email_key: str | None, email_role: bool, mobile: str | None
) -> list[tuple[str, str]]:
    """`identifiers` from the stored columns of a contact. The cycle's identity read makes the
    same per row inline (`sync.resolve.identify`): a change here is a change there."""
    found = [("record", link) for link in links]
    if email_key and not email_role:
        found.append(("email", email_key))
    if mobile:
        found.append(("mobile", mobile))
    return found


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
    shared: dict[tuple[str, str], int] = field(default_factory=dict)  # identifier -> records holding it
    refused: list[Link] = field(default_factory=list)  # joins the profile size limit stopped
    # Per cluster, in the order of its smallest record key: its profile id and its keys in order.
    clusters: list[tuple[str, list[str]]] = field(default_factory=list)
    # Per cluster (as `clusters`), its component: the position of the first cluster that shares an
    # identifier with it, directly or through others, joined or not (a shared value, a refused
    # join). A cluster depends on the records of its component only (mapping/identity_delta.py).
    components: list[int] = field(default_factory=list)
    # The record keys in order, and per key the position of its cluster (as `clusters`): what
    # attaches each contact row to its profile without a look-up by key (sync/resolve.py).
    keys: list[str] = field(default_factory=list)
    cluster_of: list[int] = field(default_factory=list)

    def members(self) -> dict[str, list[str]]:
        """Profile id -> its record keys in key order, profiles in the order of their smallest key:
        the clusters as they were named (every cluster has an id of its own), so no sort of a
        million keys."""
        return dict(self.clusters)


def new_profile_id(seed: str, taken: set[str]) -> str:
    """A deterministic id from the cluster's smallest record key, unique among `taken`."""
    attempt = 0
    while True:
        candidate = "p_" + hashlib.sha1(f"{seed}#{attempt}".encode()).hexdigest()[:12]
        if candidate not in taken:
            return candidate
        attempt += 1


def resolve(
    identified: Iterable[tuple[str, Iterable[tuple[str, str]]]],
    previous: Mapping[str, str],
    age: Mapping[str, int],
    limits: Mapping[str, int] | None = None,
    max_profile: int = 1 << 30,
    names: Mapping[str, str] | None = None,
    taken: Iterable[str] = (),
) -> Resolution:
    """Cluster records and name the clusters.

    `identified`: per record key, its (kind, value) identifiers; a ("record", key) identifier on
    another record is a link to it. `previous`: record key -> the profile id it had. `age`: profile
    id -> creation rank (smaller is older). `limits`: per kind, how many records of one system may
    hold a value before it is shared. `max_profile`: the most records one profile may hold.
    `names`: record key -> given name. A family shares a phone, not a person, so a mobile number
    joins profiles-to-be (clusters), not records: never two whose given names disagree (each name
    of one against each of the other, whatever joined them), and where the names on a number
    disagree it joins no cluster without a name to anybody (whose record it is, the number cannot
    say). `taken`: profile ids a new id must not be, beyond those of `previous` and `age`."""
    items = list(identified)
    keys = [key for key, _ in items]
    # The identity read comes in key order: then a record's position is its place in the input,
    # and neither a set nor a sort of every key is needed. Any other input is sorted here.
    if all(map(lt, keys, islice(keys, 1, None))):
        mine: Iterable[int] = range(len(keys))
        index: dict[str, int] | None = None  # made when a link asks for it (few records link)
    else:
        keys = sorted(set(keys))
        index = {key: i for i, key in enumerate(keys)}
        mine = [index[key] for key, _ in items]
    # Identifier value -> the records holding it. Only values held twice end up in `multi`, so the
    # memory cost of a million single-holder identifiers stays one dict entry each.
    first: dict[tuple[str, str], int] = {}
    multi: dict[tuple[str, str], list[int]] = {}
    link_pairs: list[tuple[int, int, str]] = []
    for me, (_, idents) in zip(mine, items, strict=True):
        for token in idents:  # (kind, value): the tuple itself is the key, not a copy of it
            if token[0] == "record":
                if index is None:
                    index = {key: i for i, key in enumerate(keys)}
                target = index.get(token[1])
                if target is not None and target != me:
                    link_pairs.append((min(me, target), max(me, target), token[1]))
                continue
            held = first.setdefault(token, me)
            if held != me:
                multi.setdefault(token, [held]).append(me)
    del items, first, mine, index

    parent = list(range(len(keys)))
    size = [1] * len(keys)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    result = Resolution()
    loose: list[tuple[int, int]] = []  # records that share an identifier but were not joined by it

    def join(a: int, b: int, kind: str, value: str) -> None:
        ra, rb = find(a), find(b)
        if ra == rb:
            return
        link = Link(keys[a], keys[b], kind, value)
        if size[ra] + size[rb] > max_profile:
            result.refused.append(link)
            loose.append((a, b))
            return
        low, high = (ra, rb) if ra < rb else (rb, ra)
        if names:
            ours, theirs = names_of(low), names_of(high)
            named.pop(high, None)
            if ours or theirs:  # else none, as `low`'s own name is
                # One person's two records mostly carry one name: no new set for the same one.
                named[low] = ours if theirs <= ours else theirs if ours <= theirs else ours | theirs
        parent[high] = low
        size[low] += size[high]
        result.links.append(link)

    # The given names of each cluster that a join made, where it has any (a record alone has its
    # own): what a mobile number's join compares.
    named: dict[int, frozenset[str]] = {}
    # A record's own names by its given name: the same few first names on many records.
    own_names: dict[str | None, frozenset[str]] = {}

    def names_of(root: int) -> frozenset[str]:
        found = named.get(root)
        if found is None:
            if not names:
                return frozenset()
            name = names.get(keys[root])
            found = own_names.get(name)
            if found is None:
                found = own_names[name] = given_names(name)
        return found

    def join_by_mobile(holders: list[int], value: str) -> None:
        """Where the names on the number agree, every holder joins the first; where they disagree
        (a family's), each holder with a name joins the first one before it whose names agree
        with its own, and a cluster without a name joins nobody by it."""
        roots = {find(h) for h in holders}
        if len(roots) == 1:  # the same person's by a stronger identifier already
            return
        every = frozenset().union(*(names_of(root) for root in roots))
        anchor = holders[0]
        if names_agree(every, every):
            for other in holders[1:]:
                join(anchor, other, "mobile", value)
            return
        for at in range(1, len(holders)):
            other = holders[at]
            mine = names_of(find(other))
            mate = next((h for h in holders[:at] if agreeing(h, mine)), None) if mine else None
            if mate is None:
                loose.append((anchor, other))
            else:
                join(mate, other, "mobile", value)  # nothing, when one already holds the other

    def agreeing(holder: int, mine: frozenset[str]) -> bool:
        theirs = names_of(find(holder))
        return bool(theirs) and names_agree(mine, theirs)

    for a, b, value in sorted(set(link_pairs)):
        join(a, b, "record", value)
    limits = limits or {}
    for token in _in_priority_order(multi):
        kind, value = token
        group = multi[token]
        if len(group) == 2:  # by far the most common case: one person in two systems
            holders = [group[0], group[1]] if group[0] < group[1] else [group[1], group[0]]
        else:
            holders = sorted(set(group))
        limit = limits.get(kind)
        # Only a value on more records than the limit can have too many in one system.
        if limit is not None and len(holders) > limit and _most_per_system([keys[i] for i in holders]) > limit:
            result.shared[token] = len(holders)
            loose.extend((holders[0], other) for other in holders[1:])
            continue
        if kind == "mobile" and names:
            join_by_mobile(holders, value)
            continue
        anchor = holders[0]
        for other in holders[1:]:
            join(anchor, other, kind, value)

    # A cluster's root is its smallest record (`join` hangs the higher root under the lower), so
    # in key order a root comes before its other records: the clusters come out sorted by their
    # smallest key, and a record's root has its cluster already.
    position = [-1] * len(keys)  # root record -> its cluster's position
    cluster_of = [0] * len(keys)
    ordered: list[list[str]] = []
    for i, key in enumerate(keys):
        root = parent[i]
        if root == i:
            cluster_of[i] = position[i] = len(ordered)
            ordered.append([key])
            continue
        if parent[root] != root:
            root = find(i)
        at = cluster_of[i] = position[root]
        ordered[at].append(key)
    result.keys, result.cluster_of = keys, cluster_of
    result.components = _components(position, len(ordered), loose, find)
    del position
    _name_clusters(ordered, previous, age, result, taken)
    return result


def _in_priority_order(tokens: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (kind, value) tokens sorted by (KIND_PRIORITY of the kind, kind, value): sorted as
    tuples, whose runs of one kind are then put in priority order (a stable sort of a few runs, not
    a key made for every token)."""
    ordered = sorted(tokens)
    runs: list[tuple[int, int, int]] = []
    start = 0
    while start < len(ordered):
        kind = ordered[start][0]
        end = bisect_right(ordered, kind, lo=start, key=itemgetter(0))
        runs.append((KIND_PRIORITY.get(kind, 9), start, end))
        start = end
    if all(a[0] <= b[0] for a, b in pairwise(runs)):
        return ordered
    runs.sort(key=itemgetter(0))
    return [token for _, start, end in runs for token in ordered[start:end]]


def _components(
    position: Sequence[int], count: int, loose: Iterable[tuple[int, int]], find: Callable[[int], int]
) -> list[int]:
    """Per cluster (`position`: root record -> cluster position; `count` clusters), the smallest
    position of the clusters its `loose` pairs (records sharing an identifier, not joined by it)
    connect it to."""
    parent = list(range(count))

    def top(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    touched: set[int] = set()
    for a, b in loose:
        ra, rb = top(position[find(a)]), top(position[find(b)])
        if ra != rb:
            # The smaller position becomes the root: a component's root is its first cluster.
            parent[max(ra, rb)] = min(ra, rb)
            touched.update((ra, rb))
    for i in touched:  # only a former root was ever moved
        parent[i] = top(i)
    return parent


def given_names(name: str | None) -> frozenset[str]:
    """A record's given name as a cluster's names hold it: none when it is no name (missing, or
    dots and white space alone: see same_person_names)."""
    return frozenset((name,)) if name and _name_words(name) else frozenset()


def names_agree(ours: Set[str], theirs: Set[str]) -> bool:
    """Whether every given name of one set could be the person of every name of the other."""
    return all(same_person_names(a, b) for a in ours for b in theirs)


def same_person_names(a: str | None, b: str | None) -> bool:
    """Given names that could belong to one person: either unknown, or word by word the same as
    far as the shorter goes, a single letter standing for a word it begins (`J.` and `Jan`,
    `Jan` and `Jan Willem`, `J. W.` and `Jan Willem`; not `Ad` and `Anna`, not `Anne Marie` and
    `Anne Sophie`). Dots and white space alone (`.` where a form demanded a name, a line
    separator) are no name: unknown."""
    words_a, words_b = _name_words(a), _name_words(b)
    if not words_a or not words_b:
        return True
    return all(
        x == y or (len(x) == 1 and y.startswith(x)) or (len(y) == 1 and x.startswith(y))
        for x, y in zip(words_a, words_b, strict=False)  # as far as the shorter goes
    )


def _name_words(name: str | None) -> list[str]:
    """A given name's words, case-folded, without dots; a hyphen parts words (`Anne-Marie`)."""
    return (name or "").casefold().replace(".", " ").replace("-", " ").split()


def _most_per_system(records: Sequence[str]) -> int:
    per_system: dict[str, int] = defaultdict(int)
    for key in records:
        per_system[key_system(key)] += 1
    return max(per_system.values())


def _name_clusters(
    ordered: list[list[str]],
    previous: Mapping[str, str],
    age: Mapping[str, int],
    result: Resolution,
    taken_too: Iterable[str] = (),
) -> None:
    """`ordered`: clusters sorted by their smallest record key, each listing its keys in order.

    Every previous id goes to the cluster holding most of its former records; ties go to the
    cluster with the smallest record key, so the outcome never depends on order."""
    claims: dict[str, tuple[int, int]] = {}  # profile id -> (-count, position): smaller wins
    if previous:  # a first run has none to hand on
        for position, members in enumerate(ordered):
            counts: dict[str, int] | None = None
            for key in members:
                former = previous.get(key)
                if former is not None:
                    counts = counts or {}
                    counts[former] = counts.get(former, 0) + 1
            if counts:
                for profile_id, count in counts.items():
                    claim = (-count, position)
                    best = claims.get(profile_id)
                    if best is None or claim < best:
                        claims[profile_id] = claim
    won: dict[int, list[str]] = defaultdict(list)
    for profile_id, (_, position) in claims.items():
        won[position].append(profile_id)
    taken = set(age)
    taken.update(previous.values())
    taken.update(taken_too)
    assignment, aliases, created, clusters = result.assignment, result.aliases, result.created, result.clusters
    sha1 = hashlib.sha1
    for position, members in enumerate(ordered):
        ids = won.get(position) if won else None
        if ids:
            ids.sort(key=lambda pid: (age.get(pid, 1 << 62), pid))
            survivor = ids[0]
            for retired in ids[1:]:
                aliases[retired] = survivor
        else:
            # `new_profile_id`'s first attempt, inlined: a call per new profile is a tenth of its cost.
            survivor = "p_" + sha1(f"{members[0]}#0".encode()).hexdigest()[:12]
            if survivor in taken:
                survivor = new_profile_id(members[0], taken)
            taken.add(survivor)
            created.add(survivor)
        clusters.append((survivor, members))
    # Every record's profile, cluster by cluster in the order above, in one pass of C iterators.
    survivors = map(repeat, [survivor for survivor, _ in clusters], map(len, ordered))
    assignment.update(zip(chain.from_iterable(ordered), chain.from_iterable(survivors), strict=True))


# ----- survivorship --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FieldChoice:
    value: Any
    source: str  # record key
    why: str


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Fields that only make sense together come from one record: the record that wins the group's
# anchor fields gives every field of it, or none. One record's street with another's postcode and
# city is nobody's address ("Kerkstraat 1 C, 1012 LM Utrecht"), and one's infix with another's
# family name nobody's name ("Jan de Jansen").
GROUPS = (
    (("street", "postcode", "city"), ("street", "house_number", "house_addition", "postcode", "city", "country")),
    (("given_name", "family_name", "initials"), ("given_name", "infix", "family_name", "initials")),
)


def survive(
    members: Sequence[Contact], source_priority: Sequence[str], zone: tzinfo | None = None
) -> dict[str, FieldChoice]:
    """Each profile field from the most trusted source that has it, then the most recent update,
    then the smallest record key (so the choice never depends on order); an address and a name
    whole from one record (`GROUPS`), and a personal email before a role address. `zone`
    (`[segments] timezone`) dates the update a "most recent" reason names on the merchant's
    calendar; the choice itself compares moments and does not depend on it."""
    rank = {system: i for i, system in enumerate(source_priority)}
    ordered = sorted(members, key=lambda c: _trust_order(c, rank))
    grouped: dict[str, list[Contact]] = {}
    for anchors, fields in GROUPS:
        having = [c for c in ordered if any(_field(c, name) is not None for name in anchors)]
        for name in fields:
            grouped[name] = having if having and _field(having[0], name) is not None else []
    chosen: dict[str, FieldChoice] = {}
    for name in PROFILE_FIELDS:
        if name in grouped:
            holders = grouped[name]
        else:
            holders = [c for c in ordered if _field(c, name) is not None]
            if name == "email":  # a person's own address before a shared one
                holders.sort(key=lambda c: c.email_role)
        if not holders:
            continue
        winner = holders[0]
        if name == "email_consent":
            # Consent is not a fact any source can overrule: an opt-out anywhere wins.
            refused = [c for c in holders if c.email_consent is False]
            if refused:
                chosen[name] = FieldChoice(False, refused[0].key, f"not opted in at {refused[0].system}")
                continue
        chosen[name] = FieldChoice(_field(winner, name), winner.key, _why(winner, holders, rank, zone))
    return chosen


def _field(contact: Contact, name: str) -> Any:
    if name == "email" and contact.email_role:
        return contact.email  # still shown, it is just not an identifier
    value = getattr(contact, name)
    return None if value == "" else value


def _why(winner: Contact, holders: Sequence[Contact], rank: Mapping[str, int], zone: tzinfo | None = None) -> str:
    if len(holders) == 1:
        return "only source"
    runner = holders[1]
    if runner.email_role and not winner.email_role and _trust_order(runner, rank) < _trust_order(winner, rank):
        return "a personal address before a role address"
    if rank.get(winner.system, len(rank)) < rank.get(runner.system, len(rank)):
        return f"source priority: {winner.system} before {runner.system}"
    if (winner.updated_at or _EPOCH) > (runner.updated_at or _EPOCH):
        # The date the merchant would read: an edit at 00:30 on 2 January in Amsterdam is of the 2nd.
        updated = winner.updated_at.astimezone(zone) if zone is not None and winner.updated_at else winner.updated_at
        stamp = updated.date().isoformat() if updated else "?"
        return f"most recent: updated {stamp}"
    return "tie: smallest record key"


def _trust_order(contact: Contact, rank: Mapping[str, int]) -> tuple[int, float, str]:
    """`survive`'s order: trust, then recency, then record key."""
    return (rank.get(contact.system, len(rank)), -(contact.updated_at or _EPOCH).timestamp(), contact.key)
