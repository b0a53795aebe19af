"""What a cycle reports: per system and for the whole cycle (CONTRACTS §1 and §6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mapping.model import WriteBack
from sync.gate import Held
from sync.timefmt import for_json


class Progress(Protocol):
    def advance(self, system: str, stream: str, records: int) -> None: ...


@dataclass
class SystemOutcome:
    type: str
    status: str = "ok"
    error: str | None = None
    read_contacts: int = 0
    read_orders: int = 0
    changed: int = 0
    quarantined: int = 0
    planned: int = 0
    written: int = 0
    rejected: int = 0
    write_calls: int = 0
    rejections: list[tuple[str, str]] = field(default_factory=list)
    deleted: int = 0  # contacts deleted at the vendor (absent from full reads over absent_for), removed from the state
    warnings: list[str] = field(default_factory=list)  # what held back a change the cycle would have made
    # Per stream: a full read that left out too many stored records to take any for deleted
    # (`{"absent": n, "stored": n}`), for the metrics summary and the `read_swing` alert.
    absent_held: dict[str, dict[str, int]] = field(default_factory=dict)

    def fail(self, status: str, error: str) -> None:
        # The first failure is the one worth reporting; an interruption never hides a failure.
        if self.status == "ok" or (self.status == "interrupted" and status == "failed"):
            self.status, self.error = status, error

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "error": self.error,
            "read": {"contacts": self.read_contacts, "orders": self.read_orders},
            "quarantined": self.quarantined,
            "planned": self.planned,
            "written": self.written,
            "rejected": self.rejected,
            "write_calls": self.write_calls,
            **({"deleted": self.deleted} if self.deleted else {}),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
        }


@dataclass
class CycleReport:
    run_id: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    profiles: int = 0
    systems: dict[str, SystemOutcome] = field(default_factory=dict)
    changes: list[WriteBack] = field(default_factory=list)
    interrupted: bool = False
    held: Held | None = None  # the write gate held this cycle's writes, and why
    caveats: list[str] = field(default_factory=list)  # limits of the picture (a shop's 60 days of orders)

    @property
    def quarantined(self) -> int:
        return sum(s.quarantined for s in self.systems.values())

    def to_json(self, *, with_changes: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "started_at": for_json(self.started_at),
            "finished_at": for_json(self.finished_at),
            "profiles": self.profiles,
            "quarantined": self.quarantined,
            "systems": {name: outcome.to_json() for name, outcome in self.systems.items()},
            "held": self.held.to_json() if self.held else None,
        }
        if self.caveats:
            doc["caveats"] = list(self.caveats)
        if with_changes:
            doc["changes"] = [change.to_json() for change in self.changes]
        return doc

    def exit_code(self) -> int:
        """CONTRACTS §1 and §6: 3 when a system failed or the writes were held, 1 when records were
        rejected, else 0."""
        if self.held is not None or any(s.status == "failed" for s in self.systems.values()):
            return 3
        if any(s.rejected for s in self.systems.values()):
            return 1
        return 0
