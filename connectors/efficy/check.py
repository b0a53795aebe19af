"""`check` for efficy: the key, the saved queries and crmsync's fields, proven with reads only.

One request proves the key (`currentuserfullname`, as efficy's own n8n credential test does) and
runs each saved query for a few rows; a second one consults the first contacts with crmsync's
category datasets (and the main table when a field lives there) and looks at the keys of the rows:
a field that is not among them does not exist or cannot be read. A category dataset comes back
null when the user has no rights on the category, and empty on a contact where the category is
not active, which proves nothing about its fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from connectors.base import Capabilities, CheckReport, Permission
from connectors.efficy.rpc import (
    consult_context,
    context_error,
    dataset_rows,
    describe,
    error_of,
    function_of,
    key_text,
    owned_functions,
    query_context,
)
from connectors.efficy.rules import verdict_for
from connectors.efficy.settings import (
    CHANGED,
    CONTACT_KEY,
    OPPORTUNITY_KEY,
    PROBE_CONTACTS,
    START,
    split_field,
)
from connectors.errors import ApiError

if TYPE_CHECKING:
    from connectors.efficy.client import EfficyConnector


def check(connector: EfficyConnector) -> CheckReport:
    """Proves the key, the saved queries and crmsync's fields with reads only (two requests)."""
    settings = connector.settings
    queries = [("contacts", settings.contacts_query, CONTACT_KEY, PROBE_CONTACTS)]
    if settings.orders_query is not None:
        queries.append(("orders", settings.orders_query, OPPORTUNITY_KEY, 1))
    who = {"@name": "api", "@func": [{"@name": "currentuserfullname"}]}
    reply = connector.rpc([who, *(query_context(q, START, n) for _, q, _, n in queries)], mutating=False)
    if len(reply) != 1 + len(queries):
        raise ApiError(connector.name, "check: expected one answer per context")
    if (error := context_error(reply[0])) is not None:
        raise connector.fail("check", error)
    user = function_of(reply[0], "currentuserfullname")
    if user is None or not isinstance(user.get("#result"), str):
        raise ApiError(connector.name, "unexpected reply to currentuserfullname")
    permissions: list[Permission] = []
    warnings: list[str] = []
    rows: dict[str, list[Any] | None] = {}
    for (role, query, key_field, _), context in zip(queries, reply[1:], strict=True):
        permission, rows[role] = query_permission(connector, role, query, key_field, context)
        permissions.append(permission)
    if settings.orders_query is None:
        warnings.append("orders_query is not set: no opportunities are read from efficy")
    contacts = rows["contacts"]
    written = False
    owned_fields = connector.owned_fields
    if settings.writeback and owned_fields:
        keys = [k for k in (key_text(r.get(CONTACT_KEY)) for r in contacts or [] if isinstance(r, dict)) if k]
        if contacts is None:
            warnings.append("crmsync's fields were not checked: the contacts query did not run")
        elif not keys:
            warnings.append(f"no contact to consult: {', '.join(owned_fields)} could not be checked")
        else:
            proven, unproven = field_permissions(connector, keys)
            permissions += proven
            warnings += unproven
            written = all(p.ok for p in proven)
    capabilities = Capabilities(
        read_contacts=contacts is not None,
        read_orders=rows.get("orders") is not None,
        incremental=contacts is not None,  # the query pages by D_CHANGE: proven with its rows
        write_tags=False,
        write_fields=written,
    )
    return CheckReport(capabilities, permissions, warnings)


def query_permission(
    connector: EfficyConnector, role: str, query: int, key_field: str, context: Any
) -> tuple[Permission, list[Any] | None]:
    """Whether a saved query runs for this key and returns the columns crmsync pages on; the
    rows it returned when it does."""
    name = f"query {query} ({role})"
    if (error := context_error(context)) is not None:
        if verdict_for(error).kind != "fatal":
            raise connector.fail(f"query {query}", error)
        fix = (
            f"create the saved {role} query for crmsync, share it with the API key's user and set "
            f"{role}_query to its K_QUERY (efficy said: {describe(error)})"
        )
        return Permission(name, False, fix), None
    func = function_of(context, "query")
    found = dataset_rows(func) if func is not None else None
    if found is None:
        raise ApiError(connector.name, f"query {query}: the reply holds no dataset")
    lacking = [c for c in (CHANGED, key_field) if any(isinstance(r, dict) and c not in r for r in found)]
    if lacking:
        fix = f"the saved {role} query must return {CHANGED} and {key_field} in every row; it lacks {lacking[0]}"
        return Permission(name, False, fix), None
    return Permission(name, True), found


def field_permissions(connector: EfficyConnector, keys: Sequence[str]) -> tuple[list[Permission], list[str]]:
    """crmsync's fields, seen in the rows of contacts consulted with its category datasets
    (and the main table's, for a main-table field); a field not proven is not assumed."""
    owned = [(name, *split_field(name)) for name in connector.owned_fields]
    _, funcs = owned_functions([(category, field) for _, category, field in owned])
    reply = connector.rpc(
        [consult_context(str(i), {CONTACT_KEY: k}, funcs) for i, k in enumerate(keys)], mutating=False
    )
    seen: dict[str | None, set[str]] = {}  # category (None: the main table) -> fields in its rows
    available: set[str] = set()  # categories answered with a dataset, rows or none
    refused: dict[str, str] = {}  # category -> what efficy said
    # A contact refused itself: deleted since the query ran (left out), or a refusal that stops
    # the check. efficy's words for a deleted record are not public: efficy is asked by the key.
    refused_contacts = {
        key_text(answer.get("key")) or "": own
        for answer in reply
        if (own := error_of(answer)) is not None and answer.get("#error") is not True
    }
    gone = connector.gone_contacts(list(refused_contacts)) if refused_contacts else set()
    for key, own in refused_contacts.items():
        if key not in gone:
            raise connector.fail("consult contact", own)
    consulted = 0
    for answer in reply:
        own = error_of(answer)
        if own is not None and answer.get("#error") is not True:
            continue  # deleted since the query ran
        consulted += 1
        for func in answer.get("@func") or []:
            if not isinstance(func, dict):
                continue
            error = error_of(func)
            target = func.get("category") if func.get("@name") == "category" else None
            if error is not None:
                if target is None or verdict_for(error).kind != "fatal":
                    raise connector.fail("consult contact", error)
                refused[str(target)] = describe(error)
                continue
            if target is not None and func.get("#result") is None:
                continue  # a null dataset: the category is not available to this user
            if target is not None:
                available.add(str(target))
            for row in (dataset_rows(func) or [])[:1]:
                if isinstance(row, dict):
                    seen.setdefault(target, set()).update(row)
    if consulted == 0:
        return [], [f"no contact to consult: {', '.join(connector.owned_fields)} could not be checked"]
    permissions: list[Permission] = []
    warnings: list[str] = []
    for name, category, field in owned:
        setting = "segments_field" if name == connector.segments_field else "tier_field"
        or_correct = f", or correct {setting}"
        if category is None:
            fix = f"contacts have no field {field}: create it as a text field on the contact table (Cont)"
            ok = field in seen.get(None, set())
            permissions.append(Permission(f"field {name}", ok, f"{fix} in efficy's customisation{or_correct}"))
        elif category in refused:
            fix = (
                f"efficy refused category {category}: create it on contacts with a text field {field} in "
                f"efficy's customisation{or_correct} (efficy said: {refused[category]})"
            )
            permissions.append(Permission(f"field {name}", False, fix))
        elif category not in available:
            fix = (
                f"category {category} is not available to the API key's user: grant the user rights on it in "
                f"efficy (it must hold a text field {field}){or_correct}"
            )
            permissions.append(Permission(f"field {name}", False, fix))
        elif category in seen:
            fix = f"category {category} has no field {field}: add it as a text field in efficy's customisation"
            permissions.append(Permission(f"field {name}", field in seen[category], fix + or_correct))
        else:
            # Available, but active on none of the contacts consulted: its fields cannot be seen.
            fix = f"make sure category {category} on contacts has a text field {field}"
            permissions.append(Permission(f"field {name}", False, fix, needed=False))
            warnings.append(
                f"{name} not proven: category {category} is active on none of the {consulted} contacts "
                "consulted, so its fields could not be seen (crmsync activates it on its first write)"
            )
    return permissions, warnings
