"""Declarative reply rules and the emulators' fixture store, without HTTP."""

from __future__ import annotations

import re
from typing import Any

import pytest

from connectors.http import ApiResponse, Rule, classify_by
from connectors.sandbox import FixtureError
from connectors.sandbox.store import FixtureStore, page


def _reply(status: int, body: Any = None, path: str = "/x", method: str = "GET") -> ApiResponse:
    return ApiResponse(status, {"Retry-After": "7"}, body, "", method, path, 0.0)


RULES = (
    Rule("denied", status=401, message=re.compile("does not have write permissions")),
    Rule("ok", status=404, path=re.compile("/probe$"), code=re.compile("^rest_no_route$")),
    Rule("throttled", status=401, message=re.compile("Ratelimit"), retry_after=60.0),
    Rule("fatal", status=(400, 400), method="GET", says="refused as malformed"),
)


def test_the_first_matching_rule_decides_and_the_rest_is_read_the_http_way() -> None:
    assert classify_by(RULES, _reply(401, {"message": "The key does not have write permissions"})).kind == "denied"
    assert classify_by(RULES, _reply(401, {"message": "Invalid key"})).kind == "auth"  # no rule: default
    assert classify_by(RULES, _reply(404, {"code": "rest_no_route"}, path="/probe")).kind == "ok"
    assert classify_by(RULES, _reply(404, {"code": "rest_no_route"}, path="/other")).kind == "fatal"
    throttled = classify_by(RULES, _reply(401, {"message": "Ratelimit exceeded"}))
    assert (throttled.kind, throttled.retry_after) == ("throttled", 60.0)  # the documented wait
    malformed = classify_by(RULES, _reply(400, {"message": "bad"}))
    assert (malformed.kind, malformed.message) == ("fatal", "refused as malformed")
    assert classify_by(RULES, _reply(400, {"message": "bad"}, method="POST")).kind == "rejected"
    retried = classify_by((), _reply(503))
    assert (retried.kind, retried.retry_after) == ("retry", 7.0)


def _build(where: str, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        raise FixtureError(f"{where}: id must be an integer")
    return {"tags": [], "address": {"city": ""}, **item}


def test_the_store_names_a_bad_item_and_replaces_or_refuses_a_repeat() -> None:
    store = FixtureStore("shop/customers.json")
    with pytest.raises(FixtureError, match=r"^shop/customers\.json item 1: id must be"):
        store.load([{"id": 1}, {"id": "two"}], _build)
    store = FixtureStore("shop/customers.json")
    store.load([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}], _build)
    assert len(store) == 1 and store.find("1")["name"] == "b"  # an export read as the vendor stores it
    with pytest.raises(FixtureError, match="item 1: id 1 appears twice"):
        FixtureStore("s").load([{"id": 1}, {"id": 1}], _build, unique=True)


def test_a_hand_edit_merges_objects_keeps_fixed_keys_and_touches_the_record() -> None:
    touched: list[int] = []
    store = FixtureStore("s", touch=lambda record: touched.append(record["id"]))
    store.load([{"id": 7, "address": {"city": "Delft", "street": "Markt"}}], _build)
    patched = store.patch("7", {"id": 9, "address": {"city": "Gouda"}, "name": "x"})
    assert patched == {"id": 7, "tags": [], "address": {"city": "Gouda", "street": "Markt"}, "name": "x"}
    assert touched == [7]
    assert store.patch("0", {"name": "y"}) is None and store.find("seven") is None  # no such id
    patched["address"]["city"] = "changed outside"
    assert store.get(7)["address"]["city"] == "Gouda"  # what leaves the store is a copy
    listed = page(store.sorted(), 0, 10)
    listed[0]["name"] = "changed outside"
    assert store.get(7)["name"] == "x"
