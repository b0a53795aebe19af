"""`check` for AFAS Profit: what the token and its app connector let crmsync do, proven from
Profit's metainfo alone (no data call, nothing written).

- the token: `GET /metainfo`; a 401 there is a wrong or expired token (AuthError);
- which connectors the app connector holds: the same reply lists only those;
- the columns crmsync pages, filters and reads back on: `GET /metainfo/get/<id>`;
- with write-back on, that KnPerson's free fields named by the settings exist as text long enough:
  `GET /metainfo/update/KnPerson`.

A connector the app connector lacks answers 401 with an empty body, like a wrong token, so only
the first call can tell the two apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from connectors.afas.settings import API, APP_CONNECTORS, INVOICE_KEY, MIN_LENGTH, PERSON_KEY, UPDATE_CONNECTOR
from connectors.afas.writes import KNPERSON_META, free_field_matches, update_fields
from connectors.base import Capabilities, CheckReport, Permission
from connectors.errors import ApiError, AuthError

if TYPE_CHECKING:
    from connectors.afas.client import AfasConnector


def prove(crm: AfasConnector) -> CheckReport:
    """The permissions and capabilities of this configured system. A wrong or expired token
    raises AuthError."""
    listing = crm.client.request("GET", f"{API}/metainfo").body
    gets, updates = _listed(listing, "getConnectors"), _listed(listing, "updateConnectors")
    if gets is None or updates is None:
        raise ApiError(crm.name, f"GET {API}/metainfo: expected {{updateConnectors, getConnectors, info}}")
    settings = crm.settings
    writes = settings.writeback
    permissions: list[Permission] = []
    warnings: list[str] = []
    # The persons columns showing crmsync's free fields, and the setting naming each.
    owned = {crm.column(n) or n: f"{kind}_column" for kind, n in crm.owned_settings()} if writes else {}
    readable: dict[str, bool] = {}
    incremental: dict[str, bool] = {}
    for role, connector, key, extra in (
        ("persons", settings.contacts_connector, PERSON_KEY, owned),
        ("sales invoices", settings.orders_connector, INVOICE_KEY, {}),
    ):
        columns = _get_connector_columns(crm, connector) if connector in gets else None
        permissions.append(
            Permission(
                f"getconnector {connector}",
                columns is not None,
                f"add GetConnector {connector} (the {role}) to the app connector in {APP_CONNECTORS}",
            )
        )
        if columns is None:
            readable[connector] = incremental[connector] = False
            continue
        missing = [c for c in (key, settings.modified_field, *extra) if c not in columns]
        for column in missing:
            fix = f"add the column {column} to GetConnector {connector} in Profit"
            if column in extra:
                fix += f" (crmsync reads back what it wrote there), or set {extra[column]} to the column showing it"
            else:
                fix += " (crmsync pages and filters on it)"
            permissions.append(Permission(f"column {connector}.{column}", False, fix))
        readable[connector] = key in columns
        incremental[connector] = settings.modified_field in columns
    written = False
    if writes:
        fields = _knperson_metainfo(crm) if UPDATE_CONNECTOR in updates else None
        fix = f"add UpdateConnector {UPDATE_CONNECTOR} to the app connector in {APP_CONNECTORS}"
        permissions.append(Permission(f"updateconnector {UPDATE_CONNECTOR}", fields is not None, fix))
        if fields is None:
            warnings.append(f"the free fields were not checked: UpdateConnector {UPDATE_CONNECTOR} is not usable")
        else:
            proven = [_field_permission(fields, kind, n) for kind, n in crm.owned_settings()]
            permissions += proven
            written = all(p.ok for p in proven)
    reads_contacts = readable[settings.contacts_connector]
    reads_orders = readable[settings.orders_connector]
    capabilities = Capabilities(
        read_contacts=reads_contacts,
        read_orders=reads_orders,
        incremental=reads_contacts
        and incremental[settings.contacts_connector]
        and (not reads_orders or incremental[settings.orders_connector]),
        write_tags=False,
        write_fields=written,
    )
    return CheckReport(capabilities, permissions, warnings)


def _get_connector_columns(crm: AfasConnector, connector: str) -> set[str] | None:
    """The column ids of a GetConnector (`GET /metainfo/get/<id>`); None when Profit refuses it."""
    try:
        body = crm.client.request("GET", f"{API}/metainfo/get/{connector}").body
    except AuthError:
        return None  # 401 after /metainfo proved the token: the connector is not usable
    fields = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, list):
        raise ApiError(crm.name, f"GET {API}/metainfo/get/{connector}: expected {{name, description, fields}}")
    return {str(f["id"]) for f in fields if isinstance(f, dict) and f.get("id") is not None}


def _knperson_metainfo(crm: AfasConnector) -> list[dict[str, Any]] | None:
    """KnPerson's fields, free fields included; None when Profit refuses the UpdateConnector:
    401 as documented, or (seen by a third party) a 500 with a Profit message."""
    try:
        response = crm.client.request("GET", KNPERSON_META)
    except AuthError:
        return None
    except ApiError as exc:
        if exc.status == 500:
            return None
        raise
    return update_fields(response.body)


def _field_permission(fields: Sequence[Mapping[str, Any]], kind: str, name: str) -> Permission:
    """One configured free field: there once, as text, long enough for what crmsync writes."""
    setting = f"{kind}_field"
    least = MIN_LENGTH[kind]
    create = (
        f"create it as a free field on Persoon in Profit (type text, at least {least} characters) and set "
        f"{setting} to its label or id"
    )
    found = free_field_matches(fields, name)
    if not found:
        return Permission(f"field {name}", False, f"KnPerson has no free field {name!r}: {create}")
    if len(found) > 1:
        return Permission(
            f"field {name}",
            False,
            f"more than one KnPerson free field is labelled {name!r}: set {setting} to the free field's id "
            "(U + 32 hex digits, shown in Profit's metainfo)",
        )
    field = found[0]
    data_type = str(field.get("dataType", ""))
    length = field.get("length")
    if data_type.casefold() != "string":
        return Permission(f"field {name}", False, f"KnPerson free field {name!r} is of type {data_type!r}: {create}")
    if field.get("values"):
        # Linked to a table: Profit validates the value as a key of it (custom-fields.md), so the
        # segment names crmsync writes would be refused.
        return Permission(
            f"field {name}", False, f"KnPerson free field {name!r} takes only the codes of a table: {create}"
        )
    if isinstance(length, int) and not isinstance(length, bool) and 0 < length < least:
        return Permission(
            f"field {name}", False, f"KnPerson free field {name!r} holds {length} characters, too few: {create}"
        )
    return Permission(f"field {name}", True)


def _listed(listing: Any, key: str) -> set[str] | None:
    """The connector ids `GET /metainfo` lists under `key`; None when the reply has no such list."""
    items = listing.get(key) if isinstance(listing, dict) else None
    if not isinstance(items, list):
        return None
    return {str(item["id"]) for item in items if isinstance(item, dict) and item.get("id") is not None}
