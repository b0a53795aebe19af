"""`crmsync report --members SEGMENT --csv`: the segment's members now, to take to a mail tool.

Columns (CONTRACTS §6): profile_id, email, given_name, family_name, systems, member_since. The
name and email are the profile's by survivorship (as `explain` shows them); `systems` lists the
systems holding one of the person's records; `member_since` is when they last entered the
segment (UTC ISO-8601). People in the segment's holdout are left out: mailing them would spoil
the comparison the holdout is for. For a segment that needs consent, the email is one whose own
records opted in (a person without one is left out). Profiles in order of profile id, so two
exports compare.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from mapping.bases import consented_records
from mapping.holdout import held_out
from mapping.identity import survive
from mapping.model import Contact
from sync.config import CrmsyncConfig
from sync.state import StateStore

COLUMNS = ("profile_id", "email", "given_name", "family_name", "systems", "member_since")


def member_rows(store: StateStore, config: CrmsyncConfig, segment: str) -> list[dict[str, str]]:
    share = config.segments.holdout.get(segment, 0.0)
    marked = config.segments.needs_consent(segment)
    rows = []
    for profile_id, since in store.members_since(segment):
        if share and held_out(segment, profile_id, share):
            continue
        contacts = store.profile_detail(profile_id)["contacts"]
        fields = {name: choice.value for name, choice in survive(contacts, config.identity.source_priority).items()}
        if marked:
            address = consented_address(contacts, fields.get("email"))
            if address is None:
                continue
            fields["email"] = address
        # Mail tools have no infix column: "van der" goes with the family name, as people write it.
        family = " ".join(str(part) for part in (fields.get("infix"), fields.get("family_name")) if part)
        rows.append(
            {
                "profile_id": profile_id,
                "email": str(fields.get("email") or ""),
                "given_name": str(fields.get("given_name") or ""),
                "family_name": family,
                "systems": ",".join(sorted({c.system for c in contacts})),
                "member_since": since,
            }
        )
    return rows


def consented_address(contacts: Sequence[Contact], surviving: str | None) -> str | None:
    """The address a consent-marked segment's list may give for a person: one whose own records
    opted in (as only those records get the tag), the surviving one if it did, else the first in
    order; None when none did."""
    allowed = consented_records(contacts)
    addresses = sorted({c.email for c in contacts if c.key in allowed and c.email})
    if not addresses:
        return None
    return surviving if surviving in addresses else addresses[0]


def to_csv(rows: Iterable[dict[str, str]]) -> str:
    out = io.StringIO()
    # CRLF between rows (RFC 4180): the csv module quotes a field that holds a character of its
    # line terminator, so a carriage return inside a name is quoted too (with "\n" alone it went
    # out bare, and a spreadsheet could read it as the start of a row).
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        # A cell that a spreadsheet would run as a formula is quoted as text (CSV injection).
        # (OWASP's list: = + - @, and a tab or carriage return before them.)
        writer.writerow({k: ("'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v) for k, v in row.items()})
    return out.getvalue()
