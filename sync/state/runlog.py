"""Runs and meta: one row per cycle and per system (what `status` shows), and the state's own marks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from sync.state.schema import meta, runs, system_runs
from sync.state.sql import Database, upsert_many


@dataclass(frozen=True)
class RunHandle:
    run_id: str
    seq: int


class RunLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ----- meta ----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.db.engine.connect() as conn:
            value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
            return str(value) if value is not None else None

    def set_meta(self, key: str, value: str) -> None:
        with self.db.writing() as conn:
            upsert_many(conn, meta, [(key, value)], ("key", "value"))

    # ----- runs ----------------------------------------------------------------------------------
    def begin_run(self, command: str, now: datetime) -> RunHandle:
        run_id = str(uuid.uuid4())
        with self.db.writing() as conn:
            seq = conn.execute(
                insert(runs).values(run_id=run_id, command=command, started_at=now.isoformat(), status="running")
            ).inserted_primary_key
        assert seq is not None
        return RunHandle(run_id, int(seq[0]))

    def finish_run(self, run: RunHandle, status: str, summary: Mapping[str, Any], now: datetime) -> None:
        with self.db.writing() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.seq == run.seq)
                .values(finished_at=now.isoformat(), status=status, summary=json.dumps(summary))
            )

    def record_system_run(
        self, run: RunHandle, system: str, status: str, error: str | None, counts: Mapping[str, Any], now: datetime
    ) -> None:
        with self.db.writing() as conn:
            upsert_many(
                conn,
                system_runs,
                [(run.seq, system, status, error, now.isoformat(), json.dumps(counts))],
                ("run_seq", "system", "status", "error", "finished_at", "counts"),
            )

    def last_system_runs(self) -> dict[str, dict[str, Any]]:
        """Per system: the latest cycle and the latest successful one."""
        out: dict[str, dict[str, Any]] = {}
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(system_runs).order_by(system_runs.c.run_seq)).mappings()
            for row in rows:
                entry = out.setdefault(row["system"], {"last": None, "last_ok": None})
                record = {
                    "status": row["status"],
                    "error": row["error"],
                    "finished_at": row["finished_at"],
                    "counts": json.loads(row["counts"]),
                }
                entry["last"] = record
                if row["status"] == "ok":
                    entry["last_ok"] = record
        return out

    def last_run(self) -> dict[str, Any] | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(runs).order_by(runs.c.seq.desc()).limit(1)).mappings().first()
            return dict(row) if row else None
