"""The chaos tables: faults survived per connector, crash points recovered, bad inputs quarantined
or normalised, broken configs refused, the daemon's memory per cycle, and secrets found.

    python -m tests.chaos.report          # run the chaos suite (pytest tests/chaos) now, then print
    python -m tests.chaos.report --last   # print what the last `make test` / pytest run recorded

The chaos tests record their outcomes in `.chaos/results.json` (one section each); `make test`
prints them with `--last` after the suite, so the tables come from the very run that passed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

LAST_FAILED = Path(__file__).resolve().parents[2] / ".pytest_cache" / "v" / "cache" / "lastfailed"
# `make test` has pytest write its JUnit XML here: the reason each failed test gave, printed under
# its name (a flaky test seen once in a clone's log is otherwise a name without a cause).
LAST_RUN = Path(__file__).resolve().parents[2] / ".pytest_cache" / "last-run.xml"
REASON_LINES = 12  # of pytest's "E " lines per failed test
REASON_WIDTH = 300  # characters per line
RESULTS = Path(os.environ.get("CRMSYNC_CHAOS_RESULTS", Path(__file__).resolve().parents[2] / ".chaos" / "results.json"))
_lock = threading.Lock()


def reset() -> None:
    with _lock:
        RESULTS.unlink(missing_ok=True)


def _update(change: Callable[[dict[str, Any]], None]) -> None:
    """Read, change and write the results under a file lock: with `pytest -n`, several worker
    processes record into the same file."""
    with _lock:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS.with_suffix(".lock"), "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            change(data)
            RESULTS.write_text(json.dumps(data, indent=1, default=str))


def record(section: str, payload: Any) -> None:
    """Keep one section of the results (replacing an earlier one of the same name)."""
    _update(lambda data: data.__setitem__(section, payload))


def add_up(section: str, counts: dict[str, int]) -> None:
    """Add counts to a section (the secrets scan of each test worker)."""

    def change(data: dict[str, Any]) -> None:
        entry = data.setdefault(section, {})
        for name, value in counts.items():
            entry[name] = entry.get(name, 0) + value

    _update(change)


def load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_crash(data: dict[str, Any]) -> str:
    kills = data["kills"]
    phases = ["extract", "plan", "apply"]
    rows = [("phase", "kills", "state readable", "recovered")]
    for phase in phases:
        hit = [k for k in kills if k["phase"] == phase]
        rows.append(
            (
                phase,
                str(len(hit)),
                str(sum(1 for k in hit if k["integrity"] == "ok")),
                str(sum(1 for k in hit if k["recovered"])),
            )
        )
    rows.append(
        (
            "total",
            str(len(kills)),
            str(sum(1 for k in kills if k["integrity"] == "ok")),
            str(sum(1 for k in kills if k["recovered"])),
        )
    )
    out = [table(rows), f"seed {data['seed']} (replay: CRMSYNC_CHAOS_SEED={data['seed']} pytest tests/chaos -k crash)"]
    out += [f"FAILED kill {k['number']} ({k['phase']}): {k['detail']}" for k in kills if not k["recovered"]]
    return "\n".join(out)


def render_bad_input(data: dict[str, Any]) -> str:
    rows = [("system", "cases", "quarantined", "normalised", "as expected")]
    for system, entry in data["systems"].items():
        rows.append(
            (
                system,
                str(entry["cases"]),
                str(entry["quarantined"]),
                str(entry["normalised"]),
                str(entry["as_expected"]),
            )
        )
    total = data["total"]
    rows.append(
        ("total", str(total["cases"]), str(total["quarantined"]), str(total["normalised"]), str(total["as_expected"]))
    )
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(data["reasons"].items()))
    return table(rows) + f"\nquarantine reasons: {reasons}"


def render(data: dict[str, Any]) -> str:
    from tests.chaos.matrix import Outcome, render_rows

    parts = []
    if "faults" in data:
        parts.append("== Fault matrix (per connector and fault; one cycle against its sandbox)")
        parts.append(render_rows([Outcome.from_json(o) for o in data["faults"]]))
    if "crash" in data:
        parts.append("== Crash recovery (SIGKILL of `crmsync sync`, then a rerun, vs an uninterrupted run)")
        parts.append(render_crash(data["crash"]))
    if "crash_postgresql" in data:
        parts.append("== Crash recovery on PostgreSQL (the same kills; the state's consistency check for integrity)")
        parts.append(render_crash(data["crash_postgresql"]))
    if "bad_input" in data:
        parts.append("== Bad input corpus (tests/fixtures/bad_input/, read through the sandboxes)")
        parts.append(render_bad_input(data["bad_input"]))
    if "bad_config" in data:
        entry = data["bad_config"]
        parts.append("== Bad config corpus")
        parts.append(
            f"{entry['refused']} of {entry['cases']} broken configs: exit 2, one line naming the key, "
            "no traceback, no secret"
        )
    if "daemon" in data:
        entry = data["daemon"]
        parts.append("== Daemon over time (`crmsync run`, time moved by $CRMSYNC_NOW_SPEED)")
        rows = [("cycle", "now (moved)", "peak RSS MB", "RSS MB")]
        rows += [(str(c["cycle"]), c["now"][:19], str(c["peak_rss_mb"]), str(c["rss_mb"])) for c in entry["cycles"]]
        parts.append(table(rows))
    if "tokens" in data:
        entry = data["tokens"]
        parts.append("== Expiring tokens (`crmsync run` with Shopify's 24-hour client-credentials tokens)")
        parts.append(
            f"{entry['token_requests']} token requests over {entry['simulated_days']} simulated days and "
            f"{entry['cycles']} cycles (expiries + 1; the daemon hands its token to each cycle process)"
        )
    if "secrets" in data:
        entry = data["secrets"]
        parts.append("== Secrets")
        parts.append(
            f"secrets found: {entry['hits']} ({data.get('secrets_searched', '?')} secrets and every token an "
            f"emulator issued, searched in {entry['files']} files crmsync printed or wrote during the session"
            f"{', over ' + str(entry['workers']) + ' test workers' if entry.get('workers', 1) > 1 else ''})"
        )
    return "\n\n".join(parts) if parts else "no chaos results recorded yet"


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description="Print the chaos tables (running the chaos suite first).")
    parser.add_argument("--last", action="store_true", help="print what the last test run recorded; run nothing")
    parser.add_argument("--failed", action="store_true", help="then list the tests the last pytest run failed")
    args = parser.parse_args(argv)
    code = 0
    if not args.last:
        # The chaos suite itself: fault matrix, crash recovery, cursor boundary, rejections, bad
        # input and config corpora, daemon, single writer, and the secrets scan of all of it.
        code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/chaos"])
    out(render(load()))
    if args.failed:
        out(failed_tests())
    return code


def failed_tests(cache: Path = LAST_FAILED, junit: Path = LAST_RUN) -> str:
    """The tests pytest's cache lists as failed, each with the reason it gave (from the run's
    JUnit XML, when there is one): printed last by `make test` when the suite fails, because CI logs
    are read from the bottom and the tables above push pytest's own summary away."""
    failed = sorted(json.loads(cache.read_text())) if cache.exists() else []
    if not failed:
        return "\n== Failed tests\n\nnone recorded in pytest's cache"
    reasons = failure_reasons(junit)
    lines = ["", "== Failed tests", ""]
    for nodeid in failed:
        lines.append(nodeid)
        lines.extend(f"    {line}" for line in reasons.get(junit_name(nodeid), []))
    return "\n".join(lines)


def junit_name(nodeid: str) -> tuple[str, str]:
    """A pytest node id as JUnit XML names the test case: (classname, name)."""
    path, _, rest = nodeid.partition("::")
    *classes, name = rest.split("::")
    module = path.removesuffix(".py").replace("/", ".")
    return ".".join([module, *classes]), name


def failure_reasons(junit: Path) -> dict[tuple[str, str], list[str]]:
    """Per failed or erroring test case of a JUnit XML file, the lines saying why: pytest's "E "
    lines (the assertion and what it compared), else the failure's message; each line cut short."""
    try:
        root = ElementTree.parse(junit).getroot()
    except (OSError, ElementTree.ParseError):
        return {}
    reasons: dict[tuple[str, str], list[str]] = {}
    for case in root.iter("testcase"):
        for problem in (*case.findall("failure"), *case.findall("error")):
            text = problem.text or ""
            said = [line for line in text.splitlines() if line.startswith("E ")]
            if not said:
                said = (problem.get("message") or "").splitlines()
            key = (case.get("classname", ""), case.get("name", ""))
            reasons.setdefault(key, []).extend(_cut(line) for line in said[:REASON_LINES])
    return reasons


def _cut(line: str) -> str:
    return line if len(line) <= REASON_WIDTH else line[: REASON_WIDTH - 3] + "..."


if __name__ == "__main__":
    raise SystemExit(main())
