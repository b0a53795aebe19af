"""The bad input corpus (tests/fixtures/bad_input/) served by the sandboxes and read by crmsync:
loading it, feeding in the garbage the fixture loaders refuse, and judging every case."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from connectors.registry import vendor
from sync.sandboxes import load_fixture_dir
from tests.kit import Sandboxes

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "bad_input"
LONG_ID = int("9" * 300)  # an id of 300 digits, as tests/fixtures/bad_input/build.py expects it


def corpus() -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """(fixtures per vendor, cases)."""
    return load_fixture_dir(CORPUS), json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))


def nested(path: str, value: Any) -> dict[str, Any]:
    """`{"a": {"b": value}}` from `a.b`; a numeric part makes a list (`Emails.0.Value`)."""
    parts = path.split(".")
    out: Any = value
    for part in reversed(parts[1:]):
        out = [out] if part.isdigit() else {part: out}
    return {parts[0]: out}


def _store(app: Any, system_type: str, kind: str) -> tuple[dict[Any, dict[str, Any]], str]:
    emulated = vendor(system_type).emulated
    attribute, id_field = emulated.customers if kind == "customers" else emulated.orders
    store: Any = app
    for part in attribute.split("."):
        store = getattr(store, part)
    return store, id_field


def _edit_store(app: Any, system_type: str, patch: Mapping[str, Any]) -> None:
    """An edit of the sandbox's stored record, for what its test route cannot do: orders (no
    route), a record that lost its id, a record listed twice under one id."""
    store, id_field = _store(app, system_type, patch["kind"])
    key = next(k for k, record in store.items() if str(record.get(id_field)) == str(patch["id"]))
    op = patch.get("op", "set")
    if op == "null id":
        store[key][id_field] = None
    elif op == "long id":
        store[key][id_field] = LONG_ID
    elif op == "duplicate":
        copy_key: Any = f"{key}-again" if isinstance(key, str) else max(k for k in store if isinstance(k, int)) + 1
        store[copy_key] = json.loads(json.dumps(store[key]))
    else:
        for field_path, value in patch["set"].items():
            _set(store[key], field_path, value)


def _set(record: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    target: Any = record
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    if isinstance(target, list):
        target[int(parts[-1])] = value
    else:
        target[parts[-1]] = value


def feed_patches(sandboxes: Sandboxes) -> int:
    """Garbage the loaders refuse, put in as the vendor would serve it: customers through
    PATCH /_sandbox/customers/<id> (as a person editing the record), orders (which have no test
    route) by editing the stored order."""
    fed = 0
    for system_type in sandboxes.by_type:
        path = CORPUS / system_type / "patches.json"
        for patch in json.loads(path.read_text(encoding="utf-8")) if path.exists() else []:
            if patch["kind"] == "customers" and "set" in patch:
                partial: dict[str, Any] = {}
                for field_path, value in patch["set"].items():
                    partial.update(nested(field_path, value))
                sandboxes.patch_customer(system_type, str(patch["id"]), partial)
            else:
                app = sandboxes.app(system_type)
                with app.lock:
                    _edit_store(app, system_type, patch)
            fed += 1
    return fed


def _same(expected: Any, actual: Any, name: str) -> bool:
    if name == "amount" and expected is not None and actual is not None:
        return Decimal(str(expected)) == Decimal(str(actual))
    if name == "flags":
        return set(expected) <= set(actual or [])  # the flags named are there (others may be too)
    return bool(expected == actual)


def judge(state_url: str, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every case with what became of it (`outcome`: quarantined / normalised / missing) and
    whether that is what the corpus expects (`ok`, with `why` when not)."""
    engine = create_engine(state_url)
    with engine.connect() as conn:
        db = conn.exec_driver_sql
        quarantine = {
            (s, k, r): (reason, message)
            for s, k, r, reason, message in db("SELECT system, kind, record_id, reason, message FROM quarantine")
        }
        contacts = {
            (s, r): {"email": e, "phone": p, "phone_kind": pk, **json.loads(d)}
            for s, r, e, p, pk, d in db("SELECT system, record_id, email, phone, phone_kind, details FROM contacts")
        }
        orders = {
            (s, r): {"amount": a, "currency": c, "created_at": t}
            for s, r, a, c, t in db("SELECT system, order_id, amount, currency, created_at FROM orders")
        }
    engine.dispose()
    judged = []
    for case in cases:
        kind = "contact" if case["kind"] == "customers" else "order"
        key = (case["system"], case["id"])
        stored = (contacts if kind == "contact" else orders).get(key)
        held = quarantine.get((case["system"], kind, case["id"]))
        outcome = "quarantined" if held else ("normalised" if stored is not None else "missing")
        why = ""
        if "quarantine" in case:
            ok = held is not None and held[0] == case["quarantine"]
            if not ok:
                why = f"expected quarantine {case['quarantine']}, got {held or stored}"
        else:
            wrong = {
                name: (want, (stored or {}).get(name))
                for name, want in case["normalised"].items()
                if stored is None or not _same(want, stored.get(name), name)
            }
            ok = stored is not None and not held and not wrong
            if not ok:
                why = f"expected {case['normalised']}, got {held or stored}; differs: {wrong}"
        judged.append({**case, "outcome": outcome, "reason": held[0] if held else None, "ok": ok, "why": why})
    return judged


def summary(judged: list[dict[str, Any]]) -> dict[str, Any]:
    systems: dict[str, dict[str, int]] = {}
    for case in judged:
        entry = systems.setdefault(case["system"], {"cases": 0, "quarantined": 0, "normalised": 0, "as_expected": 0})
        entry["cases"] += 1
        entry["quarantined"] += case["outcome"] == "quarantined"
        entry["normalised"] += case["outcome"] == "normalised"
        entry["as_expected"] += bool(case["ok"])
    total = {k: sum(e[k] for e in systems.values()) for k in ("cases", "quarantined", "normalised", "as_expected")}
    reasons = Counter(case["reason"] for case in judged if case["reason"])
    return {"systems": systems, "total": total, "reasons": dict(reasons)}
