"""What `check` proves of a SuperOffice tenant, with calls that change nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.base import Capabilities, CheckReport, Permission
from connectors.errors import ApiError
from connectors.superoffice.reads import rows_of

if TYPE_CHECKING:
    from connectors.superoffice.client import SuperOfficeConnector


def _first(key: str) -> dict[str, str]:
    return {"$select": key, "$orderBy": f"{key} asc", "$top": "1"}


def check_tenant(connector: SuperOfficeConnector) -> CheckReport:
    """Proves the credentials and read rights (one person and one sale), and for write-back the
    role's right to update persons (`TableRight` of a person as the API shows it to this user),
    each configured field (published on the person card and not read-only) or the Interests
    list."""
    client, api, name = connector.client, connector.api, connector.name
    persons = rows_of(name, client.request("GET", f"{api}/Person", params=_first("personId")))
    rows_of(name, client.request("GET", f"{api}/Sale", params=_first("saleId")))
    permissions: list[Permission] = []
    warnings: list[str] = []
    writes = connector.settings.writeback
    if writes and persons:
        person_id = persons[0].get("personId")
        entity = client.request("GET", f"{api}/Person/{person_id}", params={"$select": "TableRight"})
        right = entity.body.get("TableRight") if isinstance(entity.body, dict) else None
        mask = str(right.get("Mask") or "") if isinstance(right, dict) else ""
        permissions.append(
            Permission(
                "update persons",
                "Update" in mask.replace(" ", "").split(","),
                "give the user crmsync signs in as a role with the right to update persons (SuperOffice "
                f"Settings and maintenance > Roles); it has {mask or 'no rights'} on person {person_id}",
            )
        )
    elif writes:
        warnings.append("no person to read the update rights from: the first sync's writes will show them")
    if writes and connector.writes_tags:
        interests = client.request("GET", f"{api}/List/PersonInterest/Items").body
        permissions.append(
            Permission(
                "interests list",
                isinstance(interests, list),
                "the PersonInterest list (persint) must be readable to the user crmsync signs in as",
            )
        )
    fields = [n for n in (connector.segments_field, connector.tier_field) if n]
    if writes and fields:
        response = client.request("GET", f"{api}/Person/CustomField")
        if not isinstance(response.body, list):
            raise ApiError(name, "unexpected reply to GET Person/CustomField")
        published = {item.get("FieldName"): item for item in response.body if isinstance(item, dict)}
        for field in fields:
            found = published.get(field)
            fix = (
                f"create {field!r} on the person card (Settings and maintenance > Preferences > User-defined "
                "fields > Person: a text field, published; or an extra field x_...)"
                if found is None
                else f"{field!r} ({found.get('DisplayName')}) is read-only: crmsync needs a writable text field"
            )
            permissions.append(Permission(f"field {field}", found is not None and not found.get("IsReadOnly"), fix))
    granted = {p.name for p in permissions if p.ok}
    caps = connector.current_capabilities()
    writable = writes and ("update persons" in granted or not persons)
    return CheckReport(
        Capabilities(
            read_contacts=True,
            read_orders=True,
            incremental=True,
            write_tags=writable and caps.write_tags and "interests list" in granted,
            write_fields=writable and caps.write_fields and all(f"field {n}" in granted for n in fields),
        ),
        permissions,
        warnings,
    )
