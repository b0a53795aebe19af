"""Crash recovery: `crmsync sync` (a subprocess) killed with SIGKILL at seeded random moments across
extract, plan and apply, then run again; every sandbox must end as after an uninterrupted run.

A lane is one set of victim sandboxes with its state folder, and one set of reference sandboxes
synced without interruption, both from the same data. Round `i` moves `$CRMSYNC_NOW` (alternating
between instants far apart, so every round has segments to write back), kills a sync of the
victim at a moment chosen by the seeded random generator, checks that the state still opens and is
sound (SQLite: `PRAGMA integrity_check`; on both backends the state's own consistency check, every
mapped row, member, link and ledger row naming a stored record), runs the sync again to the end,
and compares the victim's final state with the reference's after one uninterrupted sync at the same
`now`. On PostgreSQL (`run_lanes(postgres=<database URL>)`) each lab is a deployment in a schema of
its own in that database.

A moment is drawn per kill from the seeded generator: in extract, while the k-th read request is
being answered (k random); in plan, a random few milliseconds after the last stream logged
"extracted" (plan here includes resolving and computing); in apply, while the k-th write request
is being answered. Slow responses (the sandboxes' `slow` fault) stretch extract and apply so that
the kill lands while a request is in flight. Which phase a kill really hit is read from what had
happened by then: a write request seen by a sandbox means apply; every stream's "extracted" line
without a write means plan; anything earlier is extract.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from connectors.registry import connector_class
from tests.chaos.lab import Lab, differences, soundness
from tests.kit import spawn, wait_until

PHASES = ("extract", "plan", "apply")
DEFAULT_SEED = 20261125
# Small pages and batches: many requests per phase, many moments between them.
OVERRIDES = 'page_size = 5\nwrite_batch = 3\nretry = { backoff_initial = "20ms", backoff_max = "200ms" }'
# Far enough apart that lifecycle, quadrant and tier move for many profiles each round.
OFFSETS = (timedelta(0), timedelta(days=400), timedelta(days=150))


@dataclass
class Kill:
    number: int
    target: str
    phase: str
    moment: str  # where in the target phase the kill was aimed
    integrity: str
    recovered: bool
    detail: str = ""
    writes_before_kill: int = 0


def streams(data: Mapping[str, Any]) -> int:
    """How many "extracted" lines a complete extract logs."""
    total = 0
    for system_type in data:
        caps = connector_class(system_type).capabilities
        total += int(caps.read_contacts) + int(caps.read_orders)
    return total


class Lane:
    def __init__(
        self,
        data: Mapping[str, Mapping[str, Any]],
        folder: Path,
        base: datetime,
        name: str,
        postgres: str | None = None,
    ) -> None:
        overrides = {system_type: OVERRIDES for system_type in data}
        self.name = name
        self.base = base
        self.reference = Lab.start(
            data,
            folder / f"{name}-reference",
            overrides=overrides,
            state=postgres,
            schema=_schema(postgres, name, "ref"),
        )
        self.victim = Lab.start(
            data,
            folder / f"{name}-victim",
            overrides=overrides,
            state=postgres,
            schema=_schema(postgres, name, "victim"),
        )
        self.streams = streams(data)

    def close(self) -> None:
        self.reference.stop()
        self.victim.stop()

    def _requests(self) -> list[dict[str, Any]]:
        return [entry for sandbox in self.victim.sandboxes.running for entry in _log(sandbox.url)]

    def _writes(self) -> int:
        return sum(1 for entry in self._requests() if entry["write"])

    def kill_once(self, number: int, target: str, rng: random.Random) -> Kill:
        now = self.base + OFFSETS[number % len(OFFSETS)]
        env = {"CRMSYNC_NOW": now.isoformat()}
        self.reference.cycle(now)  # the uninterrupted run this round is compared with
        victim = self.victim
        for sandbox in victim.sandboxes.running:
            requests.delete(f"{sandbox.url}/_sandbox/stats", timeout=5).raise_for_status()
            victim.fault(sandbox.type, match="reads", fault="slow", seconds=0.02, times=10_000)
            victim.fault(sandbox.type, match="writes", fault="slow", seconds=0.05, times=10_000)
        assert victim.config is not None
        process = spawn("sync", "-c", str(victim.config), "--log-level", "debug", env=env)
        extracted = lambda: process.stderr().count('"event": "extracted"')  # noqa: E731
        reads = lambda: sum(1 for entry in self._requests() if not entry["write"])  # noqa: E731
        try:
            if target == "extract":
                k = rng.randint(1, 20)
                moment = f"read request {k}"
                wait_until(lambda: reads() >= k or process.poll() is not None, timeout=60)
            elif target == "plan":
                delay = rng.uniform(0.0, 0.01)
                moment = f"{delay * 1000:.0f} ms after the last read"
                done = lambda: extracted() >= self.streams or process.poll() is not None  # noqa: E731
                wait_until(done, timeout=60, interval=0.001)
                threading.Event().wait(delay)
            else:
                k = rng.randint(1, 6)
                moment = f"write request {k}"
                wait_until(lambda: self._writes() >= k or process.poll() is not None, timeout=60)
            finished_first = process.poll() is not None
        finally:
            process.kill()
        writes = self._writes()
        phase = "apply" if writes else ("plan" if extracted() >= self.streams else "extract")
        if finished_first:
            phase = "none (finished first)"
        victim.settle()
        verdict = soundness(victim)
        victim.clear_faults()
        rerun = spawn("sync", "-c", str(victim.config), "--json", env=env).result(timeout=120)
        kill = Kill(number, target, phase, moment, verdict, False, writes_before_kill=writes)
        if rerun.returncode != 0:
            kill.detail = f"the rerun exited {rerun.returncode}: {rerun.stderr[-500:]}"
            return kill
        diff = differences(self.reference.final_state(), victim.final_state())
        diff += duplicates(victim)
        after = soundness(victim)  # and sound again after the rerun
        kill.recovered = verdict == "ok" and after == "ok" and not diff
        kill.detail = "; ".join(diff) if diff else "; ".join(v for v in (verdict, after) if v != "ok")
        return kill

    def run(self, numbers: list[int], seed: int) -> list[Kill]:
        kills = []
        for number in numbers:
            rng = random.Random(f"{seed}/{number}")
            kills.append(self.kill_once(number, PHASES[number % len(PHASES)], rng))
        return kills


def duplicates(lab: Lab) -> list[str]:
    """Spelled out beside the comparison: no tag twice, no metafield key of crmsync's twice."""
    return duplicated_rows(lab.final_state()["sandboxes"])


def duplicated_rows(state: dict[str, Any]) -> list[str]:
    """In sandboxes' final customers (by key): a tag twice, or a metafield key of crmsync's twice."""
    problems = []
    for key, customer in state.items():
        if not isinstance(customer, dict):
            continue
        tags = customer.get("tags") or []
        if isinstance(tags, list) and len({str(t).casefold() for t in tags}) != len(tags):
            problems.append(f"{key}: a tag twice")
        rows = [r.get("key") for r in customer.get("metafields") or [] if isinstance(r, dict) and "namespace" not in r]
        mine = [k for k in rows if isinstance(k, str) and k.startswith("crmsync_")]
        if len(mine) != len(set(mine)):
            problems.append(f"{key}: a crmsync metafield row twice")
    return problems


def _schema(postgres: str | None, lane: str, role: str) -> str | None:
    return None if postgres is None else f"{lane}_{role}"


def _log(url: str) -> list[dict[str, Any]]:
    return requests.get(f"{url}/_sandbox/requests", timeout=5).json()  # type: ignore[no-any-return]


def run_lanes(
    data: Mapping[str, Mapping[str, Any]],
    folder: Path,
    kills: int,
    seed: int,
    lanes: int = 2,
    postgres: str | None = None,
) -> list[Kill]:
    """`kills` kills spread over `lanes` independent lanes running side by side; with `postgres` (a
    database URL) every lab's state is a schema of that database."""
    base = datetime.now(UTC).replace(microsecond=0)
    numbers = [list(range(lane, kills, lanes)) for lane in range(lanes)]
    results: list[list[Kill]] = [[] for _ in range(lanes)]
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            lane = Lane(data, folder, base, f"lane{index}", postgres)
        except BaseException as exc:  # a lane that could not start is a failure, not fewer kills
            errors.append(exc)
            return
        try:
            results[index] = lane.run(numbers[index], seed)
        except BaseException as exc:  # surfaced below, in the caller's thread
            errors.append(exc)
        finally:
            lane.close()

    threads = [threading.Thread(target=work, args=(i,), name=f"crash-lane-{i}") for i in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sorted((k for lane in results for k in lane), key=lambda k: k.number)


def to_json(kills: list[Kill], seed: int) -> dict[str, Any]:
    return {"seed": seed, "kills": [asdict(k) for k in kills]}
