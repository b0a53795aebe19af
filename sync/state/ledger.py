"""The ledger: what each system last accepted from crmsync (`pushed`), the records a vendor refused
(`pending`, retried every cycle), and what plan and the owned-state verification read and write of
the remote records' state."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, select

from mapping import jsontext
from mapping.model import RemoteState, WriteBack, WriteResult
from sync.state.schema import pending, pushed
from sync.state.sql import Database, raw_many, raw_rows, upsert_many


@dataclass(frozen=True)
class KnownState:
    """What crmsync believes a remote record holds now: the newer of the last read and the ledger."""

    owned: RemoteState
    changed_seq: int
    pushed: RemoteState | None
    pushed_seq: int

    @property
    def current(self) -> RemoteState:
        return current_state(self.owned, self.changed_seq, self.pushed, self.pushed_seq)


def current_state(owned: RemoteState, changed_seq: int, pushed: RemoteState | None, pushed_seq: int) -> RemoteState:
    """The newer of the last read (`owned`, at `changed_seq`) and the last push; a push also wins
    over a read that could not see crmsync's own state."""
    if pushed is not None and (pushed_seq >= changed_seq or not owned.known):
        return pushed
    return owned


def _parser(parsed: dict[str, RemoteState]) -> Callable[[str], RemoteState]:
    """A state from its stored JSON, parsed once per distinct text into `parsed`: records that hold
    the same state share one object (the planner relies on it for speed)."""

    def state(text: str) -> RemoteState:
        found = parsed.get(text)
        if found is None:
            found = parsed[text] = RemoteState.from_json(json.loads(text))
        return found

    return state


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db

    def known_states(self, system: str) -> dict[str, KnownState]:
        """Per record of `system`: its owned state as last read and as last pushed. Records that
        hold the same state share one RemoteState object (the planner relies on it for speed)."""
        return {rid: KnownState(*known) for rid, known in self._known_rows(system)}

    def current_states(self, system: str) -> dict[str, RemoteState]:
        """Per record of `system`: `KnownState.current`, without an object per record. The plan
        reads every record of every system, every cycle, and they hold few distinct states: the
        records come grouped by (state read, state pushed, which is newer), each group's ids in
        one aggregate, and the newer state is found once per group (at 200,000 records, 0.62-0.77 s
        against 0.82-0.93 s for a row and a Python step per record, bench/RESULTS.md)."""
        parsed: dict[str, RemoteState] = {}
        state = _parser(parsed)
        out: dict[str, RemoteState] = {}
        for owned, last_push, newer, ids in self._ledger_groups(system):
            read = state(owned)
            current = state(last_push) if last_push is not None and (newer or not read.known) else read
            out.update(dict.fromkeys(orjson.loads(ids) if isinstance(ids, str) else ids, current))
        return out

    def _ledger_groups(self, system: str) -> list[tuple[Any, ...]]:
        """(owned state's JSON, pushed state's JSON, pushed at least as late as read, record ids)
        per distinct triple: the ids as a JSON array on SQLite, a list on PostgreSQL."""
        ids = "array_agg(c.record_id)" if self.db.is_postgres else "json_group_array(c.record_id)"
        sql = (
            f"SELECT c.owned, p.state, p.pushed_seq >= c.changed_seq, {ids} FROM contacts c "
            "LEFT JOIN pushed p ON p.system = c.system AND p.record_id = c.record_id WHERE c.system = ? "
            "GROUP BY c.owned, p.state, p.pushed_seq >= c.changed_seq"
        )
        with self.db.engine.connect() as conn:
            return raw_rows(conn, sql, (system,))

    def _known_rows(self, system: str) -> Iterator[tuple[str, tuple[RemoteState, int, RemoteState | None, int]]]:
        state = _parser({})
        for rid, owned, seq, pushed_state, pushed_seq in self._ledger_rows(system):
            yield (
                rid,
                (
                    state(owned),
                    int(seq),
                    None if pushed_state is None else state(pushed_state),
                    -1 if pushed_seq is None else int(pushed_seq),
                ),
            )

    def _ledger_rows(self, system: str) -> list[tuple[Any, ...]]:
        """(record id, owned state's JSON, changed_seq, pushed state's JSON, pushed_seq) per record."""
        sql = (
            "SELECT c.record_id, c.owned, c.changed_seq, p.state, p.pushed_seq FROM contacts c "
            "LEFT JOIN pushed p ON p.system = c.system AND p.record_id = c.record_id WHERE c.system = ?"
        )
        with self.db.engine.connect() as conn:
            return raw_rows(conn, sql, (system,))

    def set_owned(self, system: str, states: Mapping[str, RemoteState], run_seq: int) -> None:
        """What a verification saw on the remote records: the newest word on them (`changed_seq`)."""
        rows = [(jsontext.compact(state.to_json()), run_seq, system, rid) for rid, state in states.items()]
        if not rows:
            return
        with self.db.writing() as conn:
            raw_many(conn, "UPDATE contacts SET owned = ?, changed_seq = ? WHERE system = ? AND record_id = ?", rows)

    def contact_ids_after(self, system: str, after: str, limit: int) -> list[str]:
        """The next `limit` record ids of a system after `after`, in id order, wrapping round once."""
        binary = self.db.binary  # in Python's (code point) order on both backends
        sql = (
            f"SELECT record_id FROM contacts WHERE system = ? AND record_id{binary} > ? "
            f"ORDER BY record_id{binary} LIMIT ?"
        )
        with self.db.engine.connect() as conn:
            ids = [str(row[0]) for row in raw_rows(conn, sql, (system, after, limit))]
            if len(ids) < limit and after:
                more = raw_rows(conn, sql, (system, "", limit - len(ids)))
                ids += [str(row[0]) for row in more if str(row[0]) not in ids]
        return ids

    def record_results(
        self, system: str, changes: Sequence[WriteBack], results: Iterable[WriteResult], run_seq: int, now: datetime
    ) -> None:
        """The ledger after one batch: accepted targets become the pushed state (unless the vendor's
        answer was not conclusive: see `WriteResult.confirmed`), refusals go pending."""
        by_id = {c.record_id: c for c in changes}
        stamp = now.isoformat()
        with self.db.writing() as conn:
            accepted = []
            refused = []
            done = []  # no longer pending
            for result in results:
                change = by_id.get(result.record_id)
                if change is None:
                    continue
                if result.ok and result.confirmed:
                    done.append(result.record_id)
                    target = jsontext.compact(change.target.to_json())
                    accepted.append((system, result.record_id, target, run_seq, stamp))
                else:  # refused, or accepted without a conclusive answer: pending, its attempts counted
                    refused.append((result.record_id, result.message))
            upsert_many(conn, pushed, accepted, ("system", "record_id", "state", "pushed_seq", "pushed_at"))
            for start in range(0, len(done), 500):
                conn.execute(
                    delete(pending).where(
                        pending.c.system == system, pending.c.record_id.in_(done[start : start + 500])
                    )
                )
            for rid, message in refused:
                current = conn.execute(
                    select(pending.c.attempts, pending.c.first_at).where(
                        pending.c.system == system, pending.c.record_id == rid
                    )
                ).first()
                upsert_many(
                    conn,
                    pending,
                    [
                        (
                            system,
                            rid,
                            message,
                            (current[0] if current else 0) + 1,
                            current[1] if current else stamp,
                            stamp,
                        )
                    ],
                    ("system", "record_id", "message", "attempts", "first_at", "last_at"),
                )

    def pending_records(self) -> list[dict[str, Any]]:
        with self.db.engine.connect() as conn:
            return [
                dict(r)
                for r in conn.execute(select(pending).order_by(pending.c.system, pending.c.record_id)).mappings()
            ]
