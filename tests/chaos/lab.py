"""The chaos suite's workbench: sandboxes of one or more vendors, a state folder, cycles run in
this process (fast; the command-line promises are tested with subprocesses elsewhere), and the
"final state" that runs are compared by.

The final state is everything a sync may touch or conclude: every customer as the sandbox holds it
(tags, fields, metafield rows, foreign ones included, without the timestamps and row ids that
differ between runs), which records crmsync stored or quarantined, and the segments of each
record's profile.

A lab's state is the SQLite file in its folder, or (`state=` a PostgreSQL URL, `schema=` its
schema) a deployment on a PostgreSQL server.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from connectors.registry import vendor
from sync.config import load_config
from sync.pipeline import Cycle, CycleReport
from sync.runtime import open_state
from sync.sandboxes import RunningSandbox, start_sandboxes, stop_sandboxes
from sync.state import StateStore
from sync.state.sql import with_schema
from tests.kit import Sandboxes, requests_ended, wait_until

# Modification times the vendor sets on every change: they differ between two runs by design.
VOLATILE = frozenset(
    {"updatedAt", "date_modified", "date_modified_gmt", "ModifiedDate", "UpdatedDate", "D_CHANGE", "createdAt"}
)
# Keys of a row in a list of rows (metafields, meta_data, SuperOffice's interest list) that the
# vendor assigns per write: the same rows created in another order get other ids.
ROW_VOLATILE = frozenset({"id", "Id", "Rank", "createdAt", "updatedAt", "ownerId"})


def customer_ids(data: Mapping[str, Any], system_type: str) -> list[str]:
    key = vendor(system_type).emulated.contact_key
    return [str(item[key]) for item in data.get("customers", [])]


def normalise(value: Any, *, top: bool = True) -> Any:
    """A customer document without what differs between two identical runs; lists of rows become
    sorted lists (duplicates kept: a second row of the same key is a difference)."""
    if isinstance(value, dict):
        drop = VOLATILE if top else ROW_VOLATILE
        return {k: normalise(v, top=False) for k, v in sorted(value.items()) if k not in drop}
    if isinstance(value, list):
        items = [normalise(v, top=False) for v in value]
        if all(isinstance(v, str) for v in items):
            return sorted(items)  # tags: order is not state
        if all(isinstance(v, dict) and ("key" in v or "namespace" in v or "Name" in v) for v in items):
            return sorted(items, key=repr)
        return items
    return value


def sandbox_state(sandboxes: Sandboxes, data: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Every fixture customer as each running sandbox holds it now, normalised."""
    state: dict[str, Any] = {}
    for system_type in sandboxes.by_type:
        for customer_id in customer_ids(data[system_type], system_type):
            response = requests.get(f"{sandboxes.url(system_type)}/_sandbox/customers/{customer_id}", timeout=10)
            state[f"{system_type}:{customer_id}"] = normalise(response.json()) if response.ok else None
    return state


def crmsync_view(state: Path | str) -> dict[str, Any]:
    """What crmsync concluded: the records it stored, the ones it quarantined (with the reason) and
    the segments of each record's profile. `state`: a SQLite file, or a state's URL."""
    if isinstance(state, Path):
        with closing(sqlite3.connect(state)) as db:
            return _view(lambda sql: db.execute(sql).fetchall())
    store = StateStore(state)
    try:
        with store.db.reading() as conn:
            return _view(lambda sql: conn.exec_driver_sql(sql).all())
    finally:
        store.close()


def _view(query: Callable[[str], Iterable[Any]]) -> dict[str, Any]:
    contacts = sorted(f"{s}:{r}" for s, r in query("SELECT system, record_id FROM contacts"))
    orders = sorted(f"{s}:{r}" for s, r in query("SELECT system, order_id FROM orders"))
    quarantine = sorted(
        f"{s}:{k}:{r}:{reason}" for s, k, r, reason in query("SELECT system, kind, record_id, reason FROM quarantine")
    )
    segments = {
        f"{s}:{r}": seg
        for s, r, seg in query(
            "SELECT m.system, m.record_id, p.segments FROM profile_members m JOIN profiles p USING (profile_id)"
        )
    }
    return {"contacts": contacts, "orders": orders, "quarantine": quarantine, "segments": segments}


def integrity(state_file: Path) -> str:
    """`PRAGMA integrity_check` of a state file, and proof that its tables read."""
    with closing(sqlite3.connect(state_file)) as db:
        verdict = str(db.execute("PRAGMA integrity_check").fetchone()[0])
        db.execute("SELECT count(*) FROM runs").fetchone()
        db.execute("SELECT count(*) FROM checkpoints").fetchone()
    return verdict


def soundness(lab: Lab) -> str:
    """ "ok", or what is wrong with a lab's state: on SQLite `PRAGMA integrity_check` first, then on
    both backends the state's own consistency check (`StateStore.consistency_problems`: every
    mapped row, member, link and ledger row names a record the state holds)."""
    if lab.postgres is None:
        verdict = integrity(lab.state_file)
        if verdict != "ok":
            return f"integrity_check: {verdict}"
    store = StateStore(lab.state_url)
    try:
        problems = store.consistency_problems()
    finally:
        store.close()
    return "ok" if not problems else "consistency: " + "; ".join(problems)


@dataclass
class Lab:
    """Running sandboxes (of the given data) and one crmsync state folder beside them."""

    data: Mapping[str, Mapping[str, Any]]
    folder: Path
    running: list[RunningSandbox] = field(default_factory=list)
    config: Path | None = None
    postgres: str | None = None  # the state's PostgreSQL URL, schema included; None: SQLite

    @classmethod
    def start(
        cls,
        data: Mapping[str, Mapping[str, Any]],
        folder: Path,
        *,
        types: Iterable[str] | None = None,
        time_scale: float = 50,
        overrides: Mapping[str, str] | None = None,
        extra: str = "",
        state: str | None = None,
        schema: str | None = None,
    ) -> Lab:
        """`state`: a PostgreSQL URL (the database), `schema` the deployment's schema in it; by
        default the state is `crmsync.db` in `folder`."""
        chosen = {t: data[t] for t in (types or data)}
        folder.mkdir(parents=True, exist_ok=True)
        lab = cls(chosen, folder, start_sandboxes(chosen, time_scale=time_scale))
        chosen_overrides = {t: o for t, o in (overrides or {}).items() if t in chosen}
        if state is None:
            lab.config = lab.sandboxes.config(folder, extra, **chosen_overrides)
            return lab
        config = lab.sandboxes.config(folder, extra, state=state, **chosen_overrides)
        if schema is not None:
            lines = config.read_text().split("\n")
            at = lines.index(f"url = {json.dumps(state)}")
            lines.insert(at + 1, f"schema = {json.dumps(schema)}")
            config.write_text("\n".join(lines))
        lab.config, lab.postgres = config, with_schema(state, schema)
        return lab

    @property
    def sandboxes(self) -> Sandboxes:
        return Sandboxes(self.running)

    @property
    def state_file(self) -> Path:
        return self.folder / "crmsync.db"

    @property
    def state_url(self) -> str:
        return self.postgres or f"sqlite:///{self.state_file}"

    def cycle(self, now: datetime, command: str = "sync", *, full: Iterable[str] = ()) -> CycleReport:
        """One cycle in this process, as `crmsync <command>` runs it, with the clock at `now`."""
        assert self.config is not None
        loaded = load_config(self.config)
        with open_state(loaded, command) as store:
            return Cycle(loaded, store, clock=_fixed(now)).run(command, dry_run=command == "plan", full=full)

    def fault(self, system_type: str, **spec: Any) -> None:
        self.sandboxes.fault(system_type, **spec)

    def clear_faults(self) -> None:
        for sandbox in self.running:
            requests.delete(f"{sandbox.url}/_sandbox/faults", timeout=5).raise_for_status()

    def settle(self, timeout: float = 10) -> None:
        """Wait until no sandbox is still answering a request: a request the client gave up on
        (timeout) may still change the vendor's state when its handler finishes."""
        for system_type in self.sandboxes.by_type:
            app = self.sandboxes.app(system_type)

            def idle(app: Any = app) -> bool:
                return requests_ended(app)

            assert wait_until(idle, timeout=timeout), f"{system_type}: requests still in flight after {timeout} s"

    def final_state(self) -> dict[str, Any]:
        self.settle()
        view = crmsync_view(self.state_file if self.postgres is None else self.postgres)
        return {"sandboxes": sandbox_state(self.sandboxes, self.data), "crmsync": view}

    def stop(self) -> None:
        stop_sandboxes(self.running)
        self.running = []

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def differences(expected: Any, actual: Any, limit: int = 6, path: str = "") -> list[str]:
    """Where two final states differ, one short line per differing leaf (for failure messages)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(actual), key=str):
            out += differences(expected.get(key), actual.get(key), limit, f"{path}.{key}" if path else str(key))
            if len(out) >= limit:
                break
        return out[:limit]
    if expected == actual:
        return []
    if isinstance(expected, list) and isinstance(actual, list):
        missing = [v for v in expected if v not in actual]
        extra = [v for v in actual if v not in expected] or [v for v in actual if actual.count(v) > expected.count(v)]
        return [f"{path}: missing {_short(missing)}, extra {_short(extra)}"]
    return [f"{path}: expected {_short(expected)}, got {_short(actual)}"]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 200 else text[:200] + "..."
