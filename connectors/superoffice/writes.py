"""Write-back to SuperOffice persons: custom fields by JSON Merge Patch, Interests switched in place.

Fields go into the UDFs / extra fields named by `segments_field` / `tier_field` with a merge
patch that names only those keys, so every other UDF stays as it is. Interests are named
`<prefix><segment>`: the person's current interests are read, crmsync's are switched on or off,
the rest are sent back as they were, guarded by `If-Unmodified-Since` so an edit made in between
is never overwritten (412: read again, try again).
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.errors import ApiError, RejectedRecord, TransientError
from connectors.http import ApiClient, ApiResponse
from mapping.model import WriteBack, parse_timestamp

ATTEMPTS_ON_CONFLICT = 3


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


class InterestList:
    """The PersonInterest list (persint) as crmsync knows it in this cycle: names by item id and
    item ids by casefolded name, shared by the reads (which name a person's interests) and the
    writes (which find or create crmsync's)."""

    def __init__(self, system: str, client: ApiClient, api: str) -> None:
        self.system = system
        self.client = client
        self.path = f"{api}/List/PersonInterest/Items"
        self.names: dict[int, str] = {}
        self.ids: dict[str, int] = {}  # casefolded name -> list item id
        self.lost_creates: set[str] = set()  # names whose POST lost its reply in this cycle

    def load(self) -> None:
        response = self.client.request("GET", self.path)
        items = response.body if isinstance(response.body, list) else []
        valid = [i for i in items if isinstance(i, dict) and isinstance(i.get("Id"), int)]
        self.names = {int(i["Id"]): str(i.get("Name") or "") for i in valid}
        self.ids = {}
        for item_id, name in sorted(self.names.items()):
            self.ids.setdefault(name.casefold(), item_id)

    def ensure(self, names: Sequence[str]) -> tuple[dict[str, int], bool]:
        """The list item of every name, looked up first and created only when missing (a POST
        always adds an item, even one with a name that exists), and whether a name was left out.

        A POST whose reply was lost is never sent again in the same cycle: the server may still
        carry it out, and a second POST would leave two items of one name. The name is left out
        of this write (reported unconfirmed), and the next cycle finds the item or creates it then."""
        if any(n.casefold() not in self.ids for n in names):
            self.load()
        for name in names:
            if name.casefold() not in self.ids and name.casefold() not in self.lost_creates:
                self.create(name)
        left_out = any(n.casefold() not in self.ids for n in names)
        return {name: self.ids[name.casefold()] for name in names if name.casefold() in self.ids}, left_out

    def create(self, name: str) -> None:
        body = {"Name": name, "Tooltip": "crmsync segment: set and cleared by crmsync"}
        try:
            created = self.client.request("POST", self.path, json_body=body, idempotent=False).body
        except TransientError:
            self.load()  # the reply was lost, not necessarily the item
            if name.casefold() not in self.ids:
                self.lost_creates.add(name.casefold())
            return
        if not isinstance(created, dict) or not isinstance(created.get("Id"), int):
            raise ApiError(self.system, "creating an interest answered without an Id")
        self.ids[name.casefold()] = created["Id"]
        self.names[created["Id"]] = name


class PersonWrites:
    def __init__(self, system: str, client: ApiClient, api: str, interests: InterestList) -> None:
        self.system = system
        self.client = client
        self.api = api
        self.interests = interests

    def write(self, person_id: str, change: WriteBack) -> bool:
        """One person's change; False when an interest it needed may or may not exist yet."""
        body: dict[str, Any] = {}
        if change.set_fields:
            # Merge patch semantics: only the keys named here change; every other UDF stays.
            body["CustomFields"] = {name: value or "" for name, value in sorted(change.set_fields.items())}
        if change.add_tags or change.remove_tags:
            return self.write_interests(person_id, change, body)
        if body:
            self.patch(person_id, body)
        return True

    def write_interests(self, person_id: str, change: WriteBack, body: dict[str, Any]) -> bool:
        adding, left_out = self.interests.ensure(change.add_tags)
        removing = {tag.casefold() for tag in change.remove_tags}
        for _ in range(ATTEMPTS_ON_CONFLICT):
            entity = self.client.request(
                "GET", f"{self.api}/Person/{person_id}", params={"$select": "Interests,UpdatedDate"}
            ).body
            current = entity.get("Interests") if isinstance(entity, dict) else None
            if not isinstance(current, list) or not isinstance(entity.get("UpdatedDate"), str):
                raise ApiError(self.system, f"GET Person/{person_id} answered without Interests")
            body["Interests"] = switch_interests(current, set(adding.values()), removing)
            unmodified = http_date(parse_timestamp(entity["UpdatedDate"]))
            if self.patch(person_id, body, unmodified).status != 412:
                return not left_out
        raise RejectedRecord(self.system, f"person {person_id} kept changing while crmsync wrote its interests")

    def patch(self, person_id: str, body: Mapping[str, Any], unmodified_since: str | None = None) -> ApiResponse:
        headers = {"Content-Type": "application/merge-patch+json"}
        if unmodified_since:
            headers["If-Unmodified-Since"] = unmodified_since
        return self.client.request(
            "PATCH",
            f"{self.api}/Person/{person_id}",
            params={"$select": "PersonId,UpdatedDate"},
            data=json.dumps(body).encode(),
            headers=headers,
        )


def switch_interests(current: Sequence[Any], add_ids: set[int], remove_names: set[str]) -> list[dict[str, Any]]:
    """The whole interest list back, with only crmsync's items switched: on for `add_ids`, off for
    the names in `remove_names`; every other item keeps its `Selected` exactly as read."""
    items = []
    seen = set()
    for item in current:
        if not isinstance(item, dict):
            continue
        seen.add(item.get("Id"))
        selected = bool(item.get("Selected"))
        if item.get("Id") in add_ids:
            selected = True
        elif str(item.get("Name", "")).casefold() in remove_names:
            selected = False
        items.append({**item, "Selected": selected})
    items += [{"Id": item_id, "Selected": True} for item_id in sorted(add_ids - seen)]
    return items
