"""efficy's JSON RPC: the contexts crmsync sends and how its replies are read.

Everything is one POST of a list of contexts, each echoed back with `#result` datasets
(`{"#class": "dataset", "#data": [...]}`) or an `#error` added: on a function, on its context or,
for the whole request, as a top-level object or an `exception` context.

Parameter keys go in lowercase (`recordcount`, `queryparams`): the JSON RPC is case sensitive and
ignores a key spelt otherwise (efficy's own client sent `recordCount` and got the whole query).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.efficy.settings import CHANGED, CONTACT_KEY, OPPORTUNITY_KEY
from connectors.streams import RecordSpec

_KEY = re.compile(r"^\d+(?:\.0+)?$")


# ----- reading efficy's replies ---------------------------------------------------------------------
def error_of(node: Any) -> Mapping[str, Any] | None:
    """The `#error` of a reply node as an object, or None. efficy writes it as an object
    ({errorcode, errorstring, detail}), a string, or `true` with the message in `#message`."""
    if not isinstance(node, Mapping):
        return None
    error = node.get("#error")
    if isinstance(error, Mapping):
        return error
    if isinstance(error, str) and error:
        return {"errorstring": error}
    if error is True:
        return {"errorstring": str(node.get("#message") or "error")}
    if node.get("error") is True:  # the newer {error, code, message} form
        return {"errorcode": node.get("code"), "errorstring": node.get("message")}
    return None


def is_exception(node: Any) -> bool:
    return isinstance(node, Mapping) and node.get("@name") == "exception"


def request_error(body: Any) -> Mapping[str, Any] | None:
    """An error about the whole request: a top-level `#error` object, or an `exception` node that
    no context of the reply accounts for. efficy ends a reply in which anything failed with that
    node (where its employee's clients read failures); when a context carries the error itself,
    the node repeats it, and the context's own error is what counts."""
    if isinstance(body, Mapping):
        return error_of(body)
    if isinstance(body, list):
        for node in body:
            if is_exception(node):
                if any(context_error(c) is not None for c in body if not is_exception(c)):
                    return None
                return error_of(node) or {"errorstring": "exception"}
    return None


def context_error(context: Any) -> Mapping[str, Any] | None:
    """The error of a context, or of its first function that failed: when a function fails,
    efficy flags the context with `#error: true` and the function holds the message."""
    own = error_of(context)
    if own is not None and context.get("#error") is not True:
        return own
    funcs = context.get("@func") if isinstance(context, Mapping) else None
    for func in funcs if isinstance(funcs, list) else []:
        if (inner := error_of(func)) is not None:
            return inner
    return own


def describe(error: Mapping[str, Any]) -> str:
    code, text, detail = (str(error.get(k) or "").strip() for k in ("errorcode", "errorstring", "detail"))
    message = f"{code}: {text}" if code and text else code or text or "unspecified error"
    return f"{message} ({detail})" if detail else message


def dataset_rows(func: Mapping[str, Any]) -> list[Any] | None:
    """The rows of a function's dataset result (`#result: {"#class": "dataset", "#data": [...]}`)."""
    result = func.get("#result")
    if isinstance(result, Mapping) and isinstance(result.get("#data"), list):
        return list(result["#data"])
    return None


def function_of(context: Any, name: str) -> Mapping[str, Any] | None:
    funcs = context.get("@func") if isinstance(context, Mapping) else None
    for func in funcs if isinstance(funcs, list) else []:
        if isinstance(func, Mapping) and func.get("@name") == name:
            return func
    return None


def key_text(value: Any) -> str | None:
    """An efficy record key as crmsync writes ids: `40001`, also from 40001.0 or "40001"."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    text = str(value).strip()
    if not _KEY.match(text):
        return None
    number = int(text.split(".")[0])
    return str(number) if number > 0 else None


def _id(value: Any) -> str:
    return key_text(value) or ""


# Where a saved query's row keeps its key and its modification time.
CONTACTS = RecordSpec(CONTACT_KEY, (CHANGED,), id_rule=_id)
OPPORTUNITIES = RecordSpec(OPPORTUNITY_KEY, (CHANGED,), id_rule=_id)


# ----- the contexts crmsync sends ---------------------------------------------------------------------
def query_context(query: int, position: Sequence[Any], count: int) -> dict[str, Any]:
    """A saved query run for `count` rows after a keyset position (D_CHANGE, key)."""
    func = {"@name": "query", "key": query, "queryparams": f"{position[0]}|{position[1]}", "recordcount": count}
    return {"@name": "api", "@func": [func]}


def owned_functions(owned: Sequence[tuple[str | None, str]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The categories crmsync's fields live in, and the consult functions that fetch them: one
    per category, and the main table's (`master`, table view 0) when a field lives there."""
    categories = sorted({category for category, _ in owned if category})
    funcs: list[dict[str, Any]] = [{"@name": "category", "category": c} for c in categories]
    if any(category is None for category, _ in owned):
        funcs.append({"@name": "master", "tableview": 0})
    return categories, funcs


def consult_context(ref: str, row: Mapping[str, Any], funcs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "@name": "consult",
        "#id": ref,
        "entity": "Cont",
        "key": int(key_text(row.get(CONTACT_KEY)) or 0),
        "closecontext": True,
        "@func": [dict(f) for f in funcs],
    }


def attach(
    row: dict[str, Any], answer: Mapping[str, Any], categories: Sequence[str], master_fields: Sequence[str]
) -> dict[str, Any]:
    """The query row plus the consulted category rows (an inactive category is an empty object)."""
    payload = dict(row)
    payload["categories"] = {}
    for category in categories:
        func = next((f for f in answer.get("@func") or [] if isinstance(f, dict) and f.get("category") == category), {})
        rows = dataset_rows(func) or []
        first = rows[0] if rows and isinstance(rows[0], dict) else {}
        payload["categories"][category] = {k: v for k, v in first.items() if k != CONTACT_KEY}
    master = dataset_rows(function_of(answer, "master") or {}) or []
    if master and isinstance(master[0], dict):
        payload.update({field: master[0].get(field) for field in master_fields})
    return payload
