"""The fault matrix: every registered connector against every fault kind of CONTRACTS §5 that
applies to it, injected on its reads and (where it writes) on its writes.

A cell runs one cycle with the fault armed, against a sandbox of that vendor alone, and compares
the final state with a clean run's (same data, same clock). Outcomes:

- `survived`: the faulted cycle itself ended in the clean run's state;
- `survived after the next cycle`: a fault that leaves the vendor in a state the cycle cannot
  see (a write the server carried out after the client gave up on it), repaired by the next cycle;
- `survived after the next reconciliation`: a page that silently left out a record (no totals to
  notice it by); the next full read (`reconcile_every`) brings it in;
- `stopped cleanly (exit 3)`: refused credentials end that system's cycle with an error naming it
  (exit code 3), and the next cycle with working credentials ends in the clean state;
- `failed`: anything else, with the differences.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.registry import TYPES, connector_class, vendor
from sync.demo import demo_data
from tests.chaos.lab import Lab, differences

PEOPLE = 30
SEED = 11
# Small pages so that every read has several, small write batches so that every write-back has
# several, a read timeout below the `timeout` fault's delay, and quick retries.
OVERRIDES = "\n".join(
    [
        "page_size = 4",
        "write_batch = 3",
        'read_timeout = "0.5s"',
        'retry = { attempts = 6, backoff_initial = "20ms", backoff_max = "200ms", max_retry_after = "2s" }',
        # The matrix keeps its clock still; the reconciliation cycle runs a moment later.
        'reconcile_every = "1ms"',
    ]
)
VENDOR_OVERRIDES = {"silvasoft": 'ratelimit_wait = "200ms"'}
RECONCILE_AFTER = timedelta(milliseconds=2)


@dataclass(frozen=True)
class Fault:
    """A row of the table: the fault spec posted to /_sandbox/faults (without `match`)."""

    name: str
    spec: Mapping[str, Any]
    on_writes: bool = True  # list faults only happen on list reads
    settings: str = ""  # TOML lines this fault's cells add to the system's section


FAULTS: tuple[Fault, ...] = (
    Fault("429 + Retry-After", {"fault": "429", "retry_after": 1, "times": 1}),
    Fault("429, no Retry-After", {"fault": "429", "times": 2}),
    Fault("vendor slow-down", {"fault": "vendor-throttle", "retry_after": 0.3, "times": 1}),
    Fault("500", {"fault": "500", "times": 2}),
    Fault("502", {"fault": "502", "times": 2}),
    Fault("503", {"fault": "503", "times": 2}),
    Fault("read timeout", {"fault": "timeout", "seconds": 1.0, "times": 1}),
    Fault("reset mid-body", {"fault": "reset", "times": 2}),
    Fault("truncated JSON", {"fault": "truncate", "times": 2}),
    Fault("invalid JSON", {"fault": "bad-json", "times": 2}),
    Fault("page repeats an item", {"fault": "repeat-item", "times": 3}, on_writes=False),
    Fault("page skips an item", {"fault": "skip-item", "times": 1}, on_writes=False),
    # ... and again when the short page is asked for a second time: only a full read finds it.
    Fault("page skips an item twice", {"fault": "skip-item", "times": 2}, on_writes=False),
    Fault("401 mid-run", {"fault": "auth", "times": 1}),
    # Slow, not timed out: the matrix's 0.5 s read timeout (which the timeout row needs) left 0.2 s
    # over the 0.3 s delay, and ten cells sharing one busy process used that up now and then: the
    # Lightspeed POST then timed out and its write went unconfirmed. These cells wait 2 s.
    Fault("slow responses", {"fault": "slow", "seconds": 0.3, "times": 3}, settings='read_timeout = "2s"'),
)

SURVIVED = "survived"
NEXT_CYCLE = "survived after the next cycle"
RECONCILED = "survived after the next reconciliation"
STOPPED = "stopped cleanly (exit 3)"
FAILED = "failed"
GOOD = frozenset({SURVIVED, NEXT_CYCLE, RECONCILED, STOPPED})


@dataclass(frozen=True)
class Column:
    """A connector as configured for one column of the table."""

    name: str
    system_type: str
    settings: str = ""  # TOML lines added to the system's section
    drop: tuple[str, ...] = ()  # keys taken out of it


# Every registered connector as the sandbox's own config sets it up, and SuperOffice once more with
# the segments as Interests (its other way of writing, with list items it creates).
COLUMNS = (
    *(Column(t, t) for t in TYPES),
    Column("superoffice/interests", "superoffice", 'segments_as = "interests"', ("segments_field",)),
)


@dataclass(frozen=True)
class Cell:
    column: Column
    fault: Fault
    target: str  # "reads" or "writes"

    @property
    def system_type(self) -> str:
        return self.column.system_type

    @property
    def id(self) -> str:
        return f"{self.column.name.replace('/', '-')}-{self.target}-{self.fault.spec['fault']}-{self.fault.name}"


@dataclass
class Outcome:
    cell: Cell
    result: str
    detail: str = ""
    fired: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.cell.column.name,
            "fault": self.cell.fault.name,
            "target": self.cell.target,
            "result": self.result,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Outcome:
        fault = next(f for f in FAULTS if f.name == data["fault"])
        column = next(c for c in COLUMNS if c.name == data["system"])
        return cls(Cell(column, fault, data["target"]), data["result"], data["detail"])


def expected(cell: Cell) -> frozenset[str]:
    """What a cell must end in: refused credentials stop the system, except where crmsync holds an
    expiring token (Shopify's client-credentials token, SuperOffice's system-user ticket): one 401
    is an expired token, renewed once, and the request goes through; a page that lost a record
    twice over needs a full read; a write the server carries out after the client gave up on it
    may need the next cycle to look; everything else survives within the cycle."""
    kind = cell.fault.spec["fault"]
    if kind == "auth":
        return frozenset({SURVIVED}) if cell.system_type in RENEWS_TOKENS else frozenset({STOPPED})
    if kind == "skip-item" and cell.fault.spec.get("times", 1) > 1:
        return frozenset({SURVIVED, NEXT_CYCLE, RECONCILED})
    if kind == "timeout" and cell.target == "writes":
        return frozenset({SURVIVED, NEXT_CYCLE})
    if cell.column.name in CREATES and cell.target == "writes" and kind in LOST_REPLIES:
        # A create whose reply was lost is not sent again in that cycle (it may still be carried
        # out); the next cycle finds what the vendor holds and finishes the job.
        return frozenset({SURVIVED, NEXT_CYCLE})
    return frozenset({SURVIVED})


# Systems whose sandbox config signs in with an expiring token that crmsync renews after a 401,
# and columns whose write-back creates things (a POST adds a row or a list item every time).
RENEWS_TOKENS = frozenset(t for t in TYPES if vendor(t).emulated.renews_tokens)
CREATES = frozenset(column for t in TYPES for column in vendor(t).emulated.creates)
LOST_REPLIES = frozenset({"500", "502", "503", "timeout", "reset", "truncate", "bad-json"})


def writes(system_type: str) -> bool:
    caps = connector_class(system_type).capabilities
    return caps.write_tags or caps.write_fields


def cells(columns: tuple[Column, ...] = COLUMNS) -> list[Cell]:
    out = []
    for column in columns:
        for fault in FAULTS:
            out.append(Cell(column, fault, "reads"))
            if fault.on_writes and writes(column.system_type):
                out.append(Cell(column, fault, "writes"))
    return out


def matrix_data() -> dict[str, dict[str, Any]]:
    return demo_data(PEOPLE, seed=SEED)


def overrides(column: Column, fault: Fault | None = None) -> dict[str, str]:
    """The system's section for a cell: a fault's own settings come last and win."""
    lines = [OVERRIDES, VENDOR_OVERRIDES.get(column.system_type, ""), column.settings, fault.settings if fault else ""]
    chosen: dict[str, str] = {}
    for line in "\n".join(line for line in lines if line).splitlines():
        chosen[line.split("=", 1)[0].strip()] = line
    return {column.system_type: "\n".join(chosen.values())}


class Matrix:
    """Runs cells against fresh sandboxes; the clean run per vendor is computed once."""

    def __init__(self, data: Mapping[str, Mapping[str, Any]], workdir: Path, now: datetime) -> None:
        self.data = data
        self.workdir = workdir
        self.now = now
        self._clean: dict[str, dict[str, Any]] = {}

    def lab(self, column: Column, name: str, fault: Fault | None = None) -> Lab:
        lab = Lab.start(self.data, self.workdir / name, types=[column.system_type], overrides=overrides(column, fault))
        assert lab.config is not None
        lines = lab.config.read_text().splitlines()
        kept = [line for line in lines if line.split("=", 1)[0].strip() not in column.drop]
        lab.config.write_text("\n".join(kept) + "\n")
        return lab

    def clean(self, column: Column) -> dict[str, Any]:
        if column.name not in self._clean:
            with self.lab(column, f"{column.name.replace('/', '-')}-clean") as lab:
                report = lab.cycle(self.now)
                assert report.systems[column.system_type].status == "ok", report.systems[column.system_type].error
                self._clean[column.name] = lab.final_state()
        return self._clean[column.name]

    def run(self, cell: Cell) -> Outcome:
        expected = self.clean(cell.column)
        name = cell.id.replace(" ", "_").replace(",", "").replace("+", "plus")
        with self.lab(cell.column, name, cell.fault) as lab:
            if cell.target == "writes":
                # Let crmsync know every record first (a dry run reads and plans, writes nothing),
                # so the fault meets the write-back, not the first read.
                lab.cycle(self.now, "plan")
            lab.fault(cell.system_type, match=cell.target, **cell.fault.spec)
            report = lab.cycle(self.now)
            outcome = report.systems[cell.system_type]
            fired = _fired(lab, cell.system_type)
            lab.clear_faults()
            if not fired:
                return Outcome(cell, FAILED, "the fault never met a request: this cell proves nothing", fired)
            if outcome.status == "failed":
                named = (outcome.error or "").startswith(f"{cell.system_type}: ")
                if cell.fault.spec["fault"] != "auth" or not named or report.exit_code() != 3:
                    return Outcome(cell, FAILED, f"cycle failed: {outcome.error}", fired)
                lab.cycle(self.now)  # the credentials work again
                diff = differences(expected, lab.final_state())
                return Outcome(cell, STOPPED if not diff else FAILED, "; ".join(diff) or (outcome.error or ""), fired)
            if outcome.status != "ok":
                return Outcome(cell, FAILED, f"status {outcome.status}: {outcome.error}", fired)
            diff = differences(expected, lab.final_state())
            if not diff:
                # Nothing is written twice: the next cycle sends no state-changing request (it may
                # look again at a record whose write was not confirmed).
                before = lab.sandboxes.stats(cell.system_type)["writes"]
                lab.cycle(self.now)
                again = lab.sandboxes.stats(cell.system_type)["writes"] - before
                if again:
                    return Outcome(cell, FAILED, f"the next cycle sent {again} writes again", fired)
                return Outcome(cell, SURVIVED, "", fired)
            lab.cycle(self.now)
            if not (again := differences(expected, lab.final_state())):
                return Outcome(cell, NEXT_CYCLE, "; ".join(diff), fired)
            lab.cycle(self.now + RECONCILE_AFTER)
            if not differences(expected, _at(lab, expected)):
                return Outcome(cell, RECONCILED, "; ".join(diff), fired)
            return Outcome(cell, FAILED, "; ".join(again), fired)

    def run_all(self, chosen: list[Cell], workers: int = 10) -> Iterator[Outcome]:
        for column in {c.column for c in chosen}:
            self.clean(column)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cell") as pool:
            yield from pool.map(self.run, chosen)


def _fired(lab: Lab, system_type: str) -> bool:
    """Whether the armed fault met a request (a cell whose fault never fired proves nothing)."""
    return bool(lab.sandboxes.app(system_type).faults.fired)


def _at(lab: Lab, expected: Mapping[str, Any]) -> dict[str, Any]:
    return lab.final_state()


def render_rows(outcomes: list[Outcome]) -> str:
    """The table: one row per fault and target, one column per connector."""
    types = [c.name for c in COLUMNS if any(o.cell.column == c for o in outcomes)]
    by_key = {(o.cell.fault.name, o.cell.target, o.cell.column.name): o for o in outcomes}
    short = {
        SURVIVED: "survived",
        NEXT_CYCLE: "survived*",
        RECONCILED: "survived**",
        STOPPED: "exit 3 ok",
        FAILED: "FAILED",
    }
    rows: list[tuple[str, ...]] = [("fault", "on", *types)]
    for fault in FAULTS:
        for target in ("reads", "writes"):
            found = [by_key.get((fault.name, target, t)) for t in types]
            if all(c is None for c in found):
                continue
            rows.append((fault.name, target, *(short[c.result] if c else "-" for c in found)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    good = sum(1 for o in outcomes if o.result in GOOD)
    lines.append("")
    lines.append(f"{good} of {len(outcomes)} cells survived, {len(outcomes) - good} failed.")
    lines.append("survived* = after the next cycle; survived** = after the next reconciliation (reconcile_every);")
    lines.append("exit 3 ok = refused credentials stop that system, exit 3 naming it; the next cycle ends clean.")
    for outcome in outcomes:
        if outcome.result not in GOOD:
            lines.append(f"FAILED {outcome.cell.id}: {outcome.detail}")
    return "\n".join(lines)
