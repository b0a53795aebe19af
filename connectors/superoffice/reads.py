"""Reading SuperOffice archives (Person, Sale, `Archive/<provider>`) a page at a time by id.

Each page asks for `<key> gt <last id>` with `$orderBy=<key> asc` until a page comes back
shorter than `$top` (the shared read loop asks for a short page twice, the longer answer
winning). `odata.nextLink` is not followed: the documentation does not say when it is given, and
replies without it are seen, so a read that stopped where the link stopped could move the cursor
after one page. Rows are ordered by their id, not by their update time: an edit during the read
then leaves every row where it was, where ordering by `personUpdatedDate` would move the edited
row to the end and shift the page boundaries past a row nobody read. The update-time filter
still makes each cycle incremental (`(personUpdatedDate afterTime '<cursor - lookback>' or
personRegisteredDate afterTime '<...>')`: a person never edited since it was created has an empty
update date); the checkpoint mid-read remembers the last id, so a resumed read continues under
the same filter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from connectors.errors import ApiError
from connectors.http import ApiClient, ApiResponse
from connectors.paging import Reply
from connectors.superoffice.writes import InterestList
from connectors.window import Window
from mapping.model import SourceRecord

# How the archive writes a date never set (sandbox's `archive.NEVER`; 1760-01-01 in the database).
NEVER_SET = ("0001-01-01", "1760-01-01")
PERSON_COLUMNS = (
    "personId",
    "firstName",
    "middleName",
    "lastName",
    "email/emailAddress",
    "personMobilePhone/formattedNumber",
    "personCountry",
    "personUpdatedDate",
    "personRegisteredDate",
)
SALE_COLUMNS = (
    "saleId",
    "heading",
    "amount",
    "currency",
    "date",
    "saleStatus",
    "person/personId",
    "person/email/emailAddress",
    "updatedDate",
    "registeredDate",
)
INTERESTS_COLUMN = "personInterestIds"
Refine = Callable[[list[SourceRecord]], list[SourceRecord]]
# Where a read puts the names of the person's interests (the archive gives only their ids): the
# names are looked up while reading, so mapping a record never needs the API.
INTEREST_NAMES = "crmsync:interestNames"


def field_column(name: str) -> str:
    """The Person archive column of a custom field: extra fields are `personExtra/x_...`."""
    return f"personExtra/{name}" if name.startswith("x_") else f"personUdef/{name}"


def rows_of(system: str, response: ApiResponse) -> list[dict[str, Any]]:
    body = response.body
    rows = body.get("value") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise ApiError(system, f"GET {response.path}: expected an OData reply with 'value'")
    return [row for row in rows if isinstance(row, dict)]


@dataclass(frozen=True)
class ArchiveQuery:
    """One archive list: `fetch(after_id, window)` asks for the page after `after_id` (None: the
    first), under the window's update-time bound and the configured extra filter."""

    system: str
    client: ApiClient
    path: str
    columns: Sequence[str]
    stamp: str
    key: str
    top: int
    extra_filter: str | None = None
    registered: str | None = None  # the creation-time column, for rows never edited since

    def fetch(self, after_id: Any, window: Window) -> Reply:
        conditions = []
        if window.since is not None:
            # `afterTime`, not `after`: these columns are of RestrictionType `date`, on which
            # `after` compares the day alone, so `after` a moment of today would skip every row
            # changed later today (api-notes/superoffice.md). `afterTime` compares the time too
            # and is "After or equal to Datetime": the row at the cursor's own second is read again.
            bound = f"'{window.since:%Y-%m-%dT%H:%M:%S}'"
            changed = f"{self.stamp} afterTime {bound}"
            # A row created and never edited has an empty update date (SuperOffice stores none
            # as null: `NEVER`), so it is found by its creation date.
            conditions.append(f"({changed} or {self.registered} afterTime {bound})" if self.registered else changed)
        if self.extra_filter:
            # In brackets: a configured filter may join its own restrictions with `or`, which
            # binds looser than the `and` that joins it to the bound and the key.
            conditions.append(f"({self.extra_filter})")
        if after_id is not None:
            conditions.append(f"{self.key} gt {int(after_id)}")
        params = {"$select": ",".join(self.columns), "$orderBy": f"{self.key} asc", "$top": str(self.top)}
        if conditions:
            params["$filter"] = " and ".join(conditions)
        return Reply(rows_of(self.system, self.client.request("GET", self.path, params=params)))

    def after(self, reply: Reply, position: Any) -> int | None:
        """The id the next page starts after: the last row's (None when it has no whole-number id;
        the paginator refuses to page then, as it refuses an id not after `position`)."""
        last = reply.items[-1].get(self.key) if reply.items else None
        return last if isinstance(last, int) and not isinstance(last, bool) else None


class InterestNames:
    """The names of a person's interests, written into each row of one read (`refine`). The
    interest list is loaded once per read, and again only for an id it does not know (an
    interest created since): after that an unknown id (a deleted item) is left out."""

    def __init__(self, interests: InterestList) -> None:
        self.interests = interests
        self.loaded = False
        self.unknown: set[int] = set()

    def __call__(self, records: list[SourceRecord]) -> list[SourceRecord]:
        return [self.named(record) for record in records]

    def named(self, record: SourceRecord) -> SourceRecord:
        payload = record.payload
        if not isinstance(payload, Mapping) or INTERESTS_COLUMN not in payload:
            return record
        ids = _ids(payload.get(INTERESTS_COLUMN))
        fresh = bool(ids) and not self.loaded
        if fresh:
            self.interests.load()
            self.loaded = True
        missing = {i for i in ids if i not in self.interests.names} - self.unknown
        if missing and not fresh:
            self.interests.load()
        self.unknown |= {i for i in missing if i not in self.interests.names}
        names = [self.interests.names[i] for i in ids if self.interests.names.get(i)]
        return replace(record, payload={**payload, INTEREST_NAMES: names})


def _ids(raw: Any) -> list[int]:
    if not isinstance(raw, str) or not raw.strip():
        return []
    return [int(part) for part in raw.split(",") if part.strip().isdigit()]


def chain(*steps: Refine) -> Refine:
    def refine(records: list[SourceRecord]) -> list[SourceRecord]:
        for step in steps:
            records = step(records)
        return records

    return refine
