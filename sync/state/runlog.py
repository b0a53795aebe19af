"""Runs and meta: one row per cycle and per system (what `status` shows), and the state's own marks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, update

from sync.state.schema import meta, runs, system_runs
from sync.state.sql import Database, upsert_many

# How a run's summary (its cycle document, `json.dumps`'d) says it was a dry run.
DRY_SUMMARY = '%"dry_run": true%'


def take_cycle(entry: dict[str, Any], record: Mapping[str, Any]) -> None:
    """One system's entry of `last_system_runs` after a cycle that was no dry run (`record`: its
    status, error, finish and counts), read from the state or taken in by the running daemon."""
    entry["last"] = record
    stopped = record["status"] == "interrupted"
    entry["interrupted_in_a_row"] = entry.get("interrupted_in_a_row", 0) + 1 if stopped else 0
    if not stopped:
        entry["last_settled"] = record
    if record["status"] == "ok":
        entry["last_ok"] = record


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

    def last_seq(self) -> int:
        """The sequence number of the latest run begun (0 before the first)."""
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.max(runs.c.seq))).scalar() or 0)

    def last_started(self, command: str) -> datetime | None:
        """When the latest run of `command` that ran to its end began (None before the first): one
        still `running` (its process killed with the daemon), `interrupted` (stopped part-way) or
        closed as crashed (its process died: `record_crash`) does not count."""
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(runs.c.started_at, runs.c.summary)
                .where(runs.c.command == command, runs.c.status.not_in(("running", "interrupted")))
                .order_by(runs.c.seq.desc())
            )
            for stamp, summary in rows:
                if json.loads(summary or "{}").get("outcome") != "crashed":
                    return datetime.fromisoformat(str(stamp))
        return None

    def record_crash(self, after_seq: int, summary: Mapping[str, Any], now: datetime) -> None:
        """A cycle whose process ended without a result (`metrics.crash_summary`): the run it began
        after `after_seq` and left `running` (or, when it began none, a run of its own) is closed
        as failed, with every system failed in it, so that `status` and a restarted daemon's
        /healthz say what the running daemon's /healthz said."""
        with self.db.engine.connect() as conn:
            seq = conn.execute(
                select(func.max(runs.c.seq)).where(runs.c.seq > after_seq, runs.c.status == "running")
            ).scalar()
        run = RunHandle(str(summary.get("run_id") or ""), int(seq)) if seq is not None else self.begin_run("run", now)
        for system, outcome in (summary.get("systems") or {}).items():
            self.record_system_run(run, system, "failed", outcome.get("error"), {"dry_run": False}, now)
        self.finish_run(run, "failed", summary, now)

    def last_system_runs(self) -> dict[str, dict[str, Any]]:
        """Per system: the latest cycle (`last`), the latest one not stopped part-way (`last_settled`:
        a SIGTERM says nothing of whether syncing works; `interrupted_in_a_row` counts those after
        it) and the latest successful one (`last_ok`),
        none of them a dry run, and the latest dry run (`last_dry_run`: `sync --dry-run` or `plan`,
        which wrote nothing anywhere, so they say nothing about whether syncing works). Each entry
        names its command and whether it was a dry run."""
        # Rows written before dry runs were marked in their counts are told by their run: `plan`,
        # or a summary that says so (a run's summary is its cycle document).
        dry = or_(runs.c.command == "plan", runs.c.command.like("%--dry-run"), runs.c.summary.like(DRY_SUMMARY))
        query = (
            select(system_runs, runs.c.command, dry.label("dry"))
            .select_from(system_runs.outerjoin(runs, runs.c.seq == system_runs.c.run_seq))
            .order_by(system_runs.c.run_seq)
        )
        out: dict[str, dict[str, Any]] = {}
        with self.db.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                entry = out.setdefault(
                    row["system"], {"last": None, "last_ok": None, "last_settled": None, "last_dry_run": None}
                )
                counts = json.loads(row["counts"])
                dry_run = bool(counts["dry_run"]) if "dry_run" in counts else bool(row["dry"])
                record = {
                    "status": row["status"],
                    "error": row["error"],
                    "finished_at": row["finished_at"],
                    "counts": counts,
                    "command": row["command"],
                    "dry_run": dry_run,
                }
                if dry_run:
                    entry["last_dry_run"] = record
                    continue
                take_cycle(entry, record)
        return out

    def last_run(self) -> dict[str, Any] | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(runs).order_by(runs.c.seq.desc()).limit(1)).mappings().first()
            return dict(row) if row else None
