"""Write-back to SuperOffice persons: custom fields by JSON Merge Patch, Interests switched by id.

Fields go into the UDFs / extra fields named by `segments_field` / `tier_field` with a merge
patch that names only those keys, so every other UDF stays as it is. Interests are named
`<prefix><segment>` and switched with the Person agent's `UpdateInterests`, which sets the ids it
is given on or off and "does not touch any other interests" (the official client): no read of the
whole list, no write of it back, so a merchant's edit to another interest is never overwritten,
whenever it lands. Writing the whole list back under `If-Unmodified-Since` (what this did before)
lost an edit made in the same second as the one before crmsync's read: the header holds whole
seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import ApiError, TransientError
from connectors.http import ApiClient, ApiResponse
from mapping.model import WriteBack


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

    def ids_named(self, names: Sequence[str]) -> set[int]:
        """Every list item bearing one of these names (two items may share one)."""
        wanted = {name.casefold() for name in names}
        if wanted and not wanted <= self.ids.keys():
            self.load()
        return {item_id for item_id, name in self.names.items() if name.casefold() in wanted}

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
        disabling = self.interests.ids_named(change.remove_tags)
        request = {
            "PersonId": int(person_id),
            "EnableInterestIds": sorted(set(adding.values())),
            "DisableInterestIds": sorted(disabling - set(adding.values())),
        }
        if request["EnableInterestIds"] or request["DisableInterestIds"]:
            # Idempotent: each id ends switched as asked however often it is sent.
            path = f"{self.api}/Agents/Person/UpdateInterests"
            self.client.request("POST", path, json_body=request, expect_json=False)
        if body:
            self.patch(person_id, body)
        return not left_out

    def patch(self, person_id: str, body: Mapping[str, Any]) -> ApiResponse:
        headers = {"Content-Type": "application/merge-patch+json"}
        return self.client.request(
            "PATCH",
            f"{self.api}/Person/{person_id}",
            params={"$select": "PersonId,UpdatedDate"},
            data=json.dumps(body).encode(),
            headers=headers,
        )
