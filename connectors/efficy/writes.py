"""efficy write-back: `edit` contexts, one per contact and up to 100 per request, each activating
crmsync's category and updating only crmsync's fields. efficy answers each context on its own, so
one refused contact never sinks the others.
"""

from __future__ import annotations

from typing import Any

from connectors.efficy.rpc import key_text
from connectors.efficy.settings import split_field
from mapping.model import WriteBack


def is_key(change: WriteBack) -> bool:
    """Whether the change names an efficy contact key as crmsync writes them."""
    return key_text(change.record_id) == change.record_id


def edit_context(change: WriteBack) -> dict[str, Any]:
    """One contact's edit: per category, activate it (a no-op when active) and update only
    crmsync's fields; main-table fields go to table view 0. Committed and closed at once."""
    grouped: dict[str | None, dict[str, str]] = {}
    for name, value in change.set_fields.items():
        category, field = split_field(name)
        grouped.setdefault(category, {})[field] = value or ""
    funcs: list[dict[str, Any]] = []
    for category, data in grouped.items():
        if category is None:
            funcs.append({"@name": "update", "tableview": 0, "@data": data})
        else:
            funcs.append({"@name": "activateCategory", "category": category})
            funcs.append({"@name": "update", "category": category, "@data": data})
    return {
        "@name": "edit",
        "#id": change.record_id,
        "entity": "Cont",
        "key": int(change.record_id),
        "commit": True,
        "closecontext": True,
        "@func": funcs,
    }
