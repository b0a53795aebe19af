"""Holdouts (CONTRACTS §6): a segment with `holdout = x` leaves that share of its members untagged,
so a campaign aimed at the segment can be measured against people it did not reach.

Who is held out is decided by a hash of the segment name and the profile id, nothing else: the
same people on every run, whatever order the records came in, and a merge keeps the choice made
for the profile id that survives. A profile is in or out of each segment's holdout independently.
The segment membership itself (stored, reported, explained) is untouched; only what is written to
the systems leaves the held-out segment out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from mapping.model import Membership

_SCALE = 1 << 64


def held_out(segment: str, profile_id: str, share: float) -> bool:
    """Whether this profile is in the segment's holdout (of `share`, 0..1)."""
    digest = hashlib.sha256(f"crmsync-holdout\x1f{segment}\x1f{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < share * _SCALE


class Holdouts:
    """The configured holdouts, applied to each profile's membership before its desired state is
    built. Memberships without a held segment pass through as the same object (the planner shares
    states by object); the others are interned, so equal results stay one object."""

    def __init__(self, shares: Mapping[str, float]) -> None:
        self.shares = {name: float(share) for name, share in shares.items() if share > 0}
        self.names = frozenset(self.shares)
        self._interned: dict[Membership, Membership] = {}

    def __bool__(self) -> bool:
        return bool(self.shares)

    def held(self, profile_id: str, membership: Membership) -> frozenset[str]:
        """The segments of this membership whose holdout the profile is in."""
        return frozenset(
            name for name in membership.segments & self.names if held_out(name, profile_id, self.shares[name])
        )

    def written(self, profile_id: str, membership: Membership) -> Membership:
        """The membership as it is written to the systems."""
        if not self.shares or not (membership.segments & self.names):
            return membership
        held = self.held(profile_id, membership)
        if not held:
            return membership
        result = Membership(membership.segments - held, membership.tier)
        return self._interned.setdefault(result, result)
