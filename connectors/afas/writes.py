"""Writes through the UpdateConnector KnPerson, and finding the free fields they land in.

`PUT /connectors/KnPerson` with `MatchPer` 0 (find the person by number) and only crmsync's two
free fields, one person per call (the published KnPerson schema has one `Element`). Free fields
are named by their id (`U` + 32 hex digits) or by their label, which is looked up once in
`GET /metainfo/update/KnPerson`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.afas.settings import API, FREE_FIELD_ID, UPDATE_CONNECTOR
from connectors.errors import ApiError
from connectors.http import ApiClient
from mapping.model import WriteBack

KNPERSON_PATH = f"{API}/connectors/{UPDATE_CONNECTOR}"
KNPERSON_META = f"{API}/metainfo/update/{UPDATE_CONNECTOR}"


def knperson_body(change: WriteBack, ids: Mapping[str, str]) -> dict[str, Any]:
    """One person's element: found by number (`MatchPer` 0 + `BcCo`), only the free fields sent
    change; "" clears one."""
    fields: dict[str, Any] = {"MatchPer": "0", "BcCo": change.record_id}
    fields.update({ids[name]: value or "" for name, value in sorted(change.set_fields.items())})
    return {UPDATE_CONNECTOR: {"Element": {"Fields": fields}}}


def free_field_ids(client: ApiClient, system: str, names: Sequence[str]) -> dict[str, str]:
    """Setting name -> KnPerson field id; labels are looked up in the metainfo (one call)."""
    ids = {n: n.upper() for n in names if FREE_FIELD_ID.match(n)}
    labels = [n for n in names if n not in ids]
    if labels:
        known = update_fields(client.request("GET", KNPERSON_META).body)
        for label in labels:
            found = [str(f["fieldId"]) for f in free_field_matches(known, label)]
            if len(found) != 1:
                problem = "no" if not found else "more than one"
                raise ApiError(
                    system,
                    f"KnPerson has {problem} free field labelled {label!r}: create it in Profit, "
                    "or set the field's id (U + 32 hex digits) in the config",
                )
            ids[label] = found[0]
    return ids


def free_field_matches(fields: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """The KnPerson free fields a setting names, found the way the writer finds them: by id (U + 32
    hex digits), else by `label` (any case). Only free fields: KnPerson's own fields (`Re`,
    "Remark"; `HoPa`, "Website") hold the merchant's data, which crmsync must never write over."""
    free = [f for f in fields if FREE_FIELD_ID.match(str(f.get("fieldId", "")))]
    if FREE_FIELD_ID.match(name):
        return [f for f in free if str(f["fieldId"]).upper() == name.upper()]
    return [f for f in free if str(f.get("label", "")).casefold() == name.casefold()]


def update_fields(body: Any) -> list[dict[str, Any]]:
    """The top-level fields of an UpdateConnector's metainfo (`{name, description, fields,
    objects}`); KnPerson's own free fields are among them, sub-objects' fields are not."""
    fields = body.get("fields") if isinstance(body, dict) else body
    return [f for f in fields if isinstance(f, dict)] if isinstance(fields, list) else []
