"""The segment health report (`crmsync report`): is each segment worth acting on?

Per segment: size and share of the base, revenue share and average value, stability (members of
the previous run, and of the run about `window_days` ago, still in it now), distinctness (the
largest overlap with another segment, as Jaccard), growth (net change), and churn into at-risk
and lapsed: from which lifecycle stage, quadrant and system people left. A segment that fails a
criterion is flagged with the reason. Everything comes from the state (membership history and
sizes per run); the report itself writes nothing.

`build_report` makes the JSON document (CONTRACTS §2, plus detail), `report_tables` the terminal
view and `sync.report_html.render_html` the self-contained HTML page.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from rich.console import Group
from rich.table import Table

from mapping.bases import base_of
from mapping.model import parse_timestamp
from mapping.segments import QUADRANTS, SegmentSettings, describe
from sync.report_guide import DUTCH_LABELS, FLAGS, calendar_zone, frozen_line, text_of, zone_note
from sync.report_guide import family_of as family
from sync.segmenting import segment_calendar
from sync.state import SegmentSnapshot, StateStore
from sync.timefmt import for_json, for_people

MAX_POINTS = 60
CHURN_INTO = ("lifecycle-at-risk", "lifecycle-lapsed")


def build_report(store: StateStore, settings: SegmentSettings, now: datetime, language: str = "en") -> dict[str, Any]:
    health = settings.health
    say = FLAGS[language]
    snapshots = store.segment_snapshots()
    by_seq: dict[int, dict[str, SegmentSnapshot]] = defaultdict(dict)
    for snap in snapshots:
        by_seq[snap.seq][snap.segment] = snap
    seqs = sorted(by_seq)
    doc: dict[str, Any] = {
        "generated_at": for_json(now),
        "language": language,
        "base_currency": settings.base_currency,
        "window_days": health.window_days,
        # The calendar `window_days` counts on (`[segments] timezone`; UTC's without one).
        "timezone": settings.timezone or "UTC",
        "segments": [],
        "quarantine": store.quarantine_summary(),
        "frozen": store.frozen_counts(),  # held contacts still carrying crmsync's tags or fields
    }
    if not seqs:
        doc.update(
            profiles=0,
            revenue=0.0,
            runs={},
            details={},
            matrix={},
            churn=_churn([], {}, {}, health.window_days),
            flows={},
            history={"runs": [], "sizes": {}},
        )
        return doc
    latest = seqs[-1]
    previous = seqs[-2] if len(seqs) > 1 else None
    # The run of `window_days` ago: the latest that is that many days old on the merchant's
    # calendar (a run on the local date N days back counts, whatever its hour); without a zone,
    # N 24-hour periods, as before.
    calendar = segment_calendar(settings.timezone)
    older = [
        s for s in seqs[:-1] if calendar.days_since(now, parse_timestamp(_any(by_seq[s]).at)) >= health.window_days
    ]
    window = older[-1] if older else None
    current = by_seq[latest]
    # A segment of a family named from the data (region-nl-nh, interest-...) is recorded only at runs
    # where it has members; one that emptied since the previous run is still reported, empty.
    emptied = (
        {n for n in by_seq[previous] if n not in current and _at(current, n) is not None and settings.knows(n)}
        if previous is not None
        else set()
    )
    names = [
        *(n for n in settings.segment_names() if n in current),
        *sorted((set(current) | emptied) - set(settings.segment_names())),
    ]
    total = _any(current).profiles
    total_revenue = _any(current).total_revenue_cents
    kept_prev = store.still_members(previous) if previous is not None else {}
    kept_window = store.still_members(window) if window is not None else {}
    overlap = _overlaps(store.current_members(), names)
    defaults = DUTCH_LABELS if language == "nl" else {}
    labels = {name: settings.labels.get(name) or defaults.get(name, name) for name in names}
    meaning = describe(settings)
    details: dict[str, Any] = {}
    for name in names:
        found = _at(current, name)
        assert found is not None  # every name is recorded now, or emptied since the previous run
        snap = found
        size = snap.size
        share = size / total if total else 0.0
        stability = _stability(kept_prev, by_seq.get(previous or -1, {}), name)
        stability_window = _stability(kept_window, by_seq.get(window or -1, {}), name)
        before = _at(by_seq[previous], name) if previous is not None else None
        then = _at(by_seq[window], name) if window is not None else None
        growth = size - before.size if before is not None else None
        other, jaccard = overlap.get(name, (None, 0.0))
        flags: list[str] = []
        reasons: list[str] = []
        if size < health.min_size:
            flags.append("too-small")
            reasons.append(say["too_few"].format(size=size, minimum=health.min_size))
        elif share < health.min_share:
            flags.append("too-small")
            reasons.append(say["too_small_share"].format(share=f"{share:.1%}", minimum=f"{health.min_share:.1%}"))
        unstable = [
            (label, value)
            for label, value in (
                (say["previous_run"], stability),
                (say["days_ago"].format(days=health.window_days), stability_window),
            )
            if value is not None and value < health.min_stability
        ]
        if unstable:
            flags.append("unstable")
            reasons.extend(
                say["unstable"].format(kept=f"{value:.0%}", when=label, minimum=f"{health.min_stability:.0%}")
                for label, value in unstable
            )
        if other is not None and jaccard >= health.max_overlap:
            flags.append("overlapping")
            reasons.append(say["overlapping"].format(share=f"{jaccard:.0%}", other=labels.get(other, other)))
        doc["segments"].append(
            {
                "name": name,
                "size": size,
                "share": round(share, 6),
                "revenue_share": round(snap.revenue_cents / total_revenue, 6) if total_revenue else 0.0,
                "stability": stability,
                "max_overlap": {"with": other, "jaccard": round(jaccard, 6)},
                "growth": growth,
                "flags": flags,
            }
        )
        details[name] = {
            "label": labels[name],
            "family": family(name),
            "description": meaning.get(name, ""),
            "revenue": snap.revenue_cents / 100,
            "average_value": round(snap.revenue_cents / size / 100, 2) if size else 0.0,
            "stability_window": stability_window,
            "growth_window": size - then.size if then is not None else None,
            "reasons": reasons,
        }
    since = window if window is not None else seqs[0]
    transitions = store.transitions(since)
    doc.update(
        profiles=total,
        revenue=total_revenue / 100,
        runs={
            "latest": {"seq": latest, "at": for_json(current[names[0]].at) if names else None},
            "previous": {"seq": previous, "at": for_json(_any(by_seq[previous]).at)} if previous is not None else None,
            "window": {"seq": window, "at": for_json(_any(by_seq[window]).at)} if window is not None else None,
            "count": len(seqs),
        },
        details=details,
        matrix={
            q: {
                "label": settings.labels.get(q) or defaults.get(q, q),
                "count": current[q].size if q in current else 0,
                "share": round(current[q].size / total, 6) if q in current and total else 0.0,
                "revenue_share": round(current[q].revenue_cents / total_revenue, 6)
                if q in current and total_revenue
                else 0.0,
            }
            for q in QUADRANTS
        },
        churn=_churn_from(store, transitions, health.window_days),
        flows=_flows(transitions),
        history=_history(by_seq, seqs, names),
    )
    return doc


def _any(snaps: Mapping[str, SegmentSnapshot]) -> SegmentSnapshot:
    return next(iter(snaps.values()))


def _at(snaps: Mapping[str, SegmentSnapshot], name: str) -> SegmentSnapshot | None:
    """The segment at one run. A segment of a family whose names come from the data (region-*,
    interest-*) is recorded only when it has members: missing at a run that recorded others of its
    family, it had none then (an empty snapshot), as an empty segment of a fixed name is recorded.
    None: not computed at that run (a rule or base added since)."""
    snap = snaps.get(name)
    if snap is not None:
        return snap
    base = base_of(name)
    if base is None or base == name or not any(base_of(other) == base for other in snaps):
        return None
    seen = _any(snaps)
    return SegmentSnapshot(seen.seq, seen.at, name, 0, 0, seen.profiles, seen.total_revenue_cents)


def _stability(kept: Mapping[str, int], then: Mapping[str, SegmentSnapshot], name: str) -> float | None:
    """Share of the members at that run who are still in the segment without a break; None when
    there is no such run or the segment was empty then."""
    snap = then.get(name)
    if snap is None or snap.size == 0:
        return None
    return round(kept.get(name, 0) / snap.size, 6)


def _overlaps(members: Mapping[str, Sequence[str]], names: Sequence[str]) -> dict[str, tuple[str | None, float]]:
    """Per segment: the other segment with the largest Jaccard overlap (ties: the first in report
    order), computed as one matrix product over the membership matrix."""
    index = {name: i for i, name in enumerate(names)}
    matrix = np.zeros((len(members), len(names)), dtype=np.float32)
    for row, segments in enumerate(members.values()):
        for segment in segments:
            if segment in index:
                matrix[row, index[segment]] = 1.0
    both = (matrix.T @ matrix).astype(np.int64)
    sizes = np.diag(both)
    out: dict[str, tuple[str | None, float]] = {}
    for i, name in enumerate(names):
        best: tuple[str | None, float] = (None, 0.0)
        for j, other in enumerate(names):
            if i == j:
                continue
            union = sizes[i] + sizes[j] - both[i, j]
            jaccard = float(both[i, j] / union) if union else 0.0
            if jaccard > best[1]:
                best = (other, jaccard)
        out[name] = best
    return out


def _churn_from(
    store: StateStore, transitions: Sequence[tuple[str, str | None, str, int]], window_days: int
) -> dict[str, Any]:
    into = [(pid, left, entered, seq) for pid, left, entered, seq in transitions if entered in CHURN_INTO and left]
    before: dict[str, list[str]] = {}
    for seq in sorted({t[3] for t in into}):
        pids = [t[0] for t in into if t[3] == seq]
        found = store.segments_before(pids, seq)
        for pid in pids:
            before[f"{pid}@{seq}"] = found.get(pid, [])
    traits = store.profile_traits() if into else {}
    systems = {pid: (traits.get(pid) or {}).get("last_order_system") or "unknown" for pid, *_ in into}
    return _churn(into, before, systems, window_days)


def _churn(
    into: Sequence[tuple[str, str | None, str, int]],
    before: Mapping[str, Sequence[str]],
    systems: Mapping[str, str],
    window_days: int,
) -> dict[str, Any]:
    rows: Counter[tuple[str, str, str, str]] = Counter()
    for pid, left, entered, seq in into:
        quadrant = next((s for s in before.get(f"{pid}@{seq}", []) if s in QUADRANTS), "none")
        rows[(entered, left or "none", quadrant, systems.get(pid, "unknown"))] += 1
    summary: dict[str, Counter[str]] = {
        key: Counter() for key in ("into", "from_lifecycle", "from_quadrant", "from_system")
    }
    for (entered, left, quadrant, system), n in rows.items():
        summary["into"][entered] += n
        summary["from_lifecycle"][left] += n
        summary["from_quadrant"][quadrant] += n
        summary["from_system"][system] += n
    return {
        "window_days": window_days,
        "total": sum(rows.values()),
        **{key: dict(sorted(counter.items())) for key, counter in summary.items()},
        "rows": [
            {"into": e, "from_lifecycle": lf, "from_quadrant": q, "from_system": s, "count": n}
            for (e, lf, q, s), n in sorted(rows.items(), key=lambda item: (-item[1], item[0]))
        ],
    }


def _flows(transitions: Sequence[tuple[str, str | None, str, int]]) -> dict[str, list[dict[str, Any]]]:
    """Moves within each family (lifecycle, quadrant, tier); `from` None: a profile seen for the
    first time."""
    counts: Counter[tuple[str, str | None, str]] = Counter()
    out: dict[str, list[dict[str, Any]]] = {"lifecycle": [], "quadrant": [], "tier": []}
    for _, left, entered, _seq in transitions:
        kind = family(entered)
        if kind in out:  # a profile is in one segment of each of these families at a time
            counts[(kind, left, entered)] += 1
    for (kind, left, entered), n in sorted(counts.items(), key=lambda item: (item[0][0], item[0][1] or "", item[0][2])):
        out[kind].append({"from": left, "to": entered, "count": n})
    return out


def _history(
    by_seq: Mapping[int, Mapping[str, SegmentSnapshot]], seqs: Sequence[int], names: Sequence[str]
) -> dict[str, Any]:
    """Sizes per run, at most MAX_POINTS runs (evenly spread, always the first and the latest)."""
    if len(seqs) > MAX_POINTS:
        picks = np.unique(np.linspace(0, len(seqs) - 1, MAX_POINTS).round().astype(int)).tolist()
        seqs = [seqs[i] for i in picks]
    return {
        "runs": [{"seq": s, "at": for_json(_any(by_seq[s]).at)} for s in seqs],
        "sizes": {name: [by_seq[s][name].size if name in by_seq[s] else 0 for s in seqs] for name in names},
    }


# ----- terminal ----------------------------------------------------------------------------------
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _todo_table(doc: Mapping[str, Any]) -> list[Table]:
    """What to do with each segment and where its members are, when the guide is in the document."""
    t = text_of(doc)
    details = doc.get("details", {})
    rows = [(seg["name"], details.get(seg["name"], {})) for seg in doc.get("segments", [])]
    rows = [(name, detail) for name, detail in rows if detail.get("guide")]
    if not rows:
        return []
    table = Table(title=t["todo"], title_justify="left", show_lines=True)
    for column in ("segment", "action", "at_stake", "where"):
        table.add_column(t[column], justify="right" if column == "at_stake" else "left")
    currency = doc.get("base_currency", "")
    for name, detail in rows:
        guide = detail["guide"]
        what = f"{guide['action']}: {guide['what_to_do']}" + (f"\n{guide['persona']}" if guide.get("persona") else "")
        where = "\n".join(entry["where"] for entry in guide["where"]) or t["not_written"]
        table.add_row(detail.get("label", name), what, f"{currency} {guide['revenue_12m']:,.2f}", where)
    return [table]


def report_tables(doc: Mapping[str, Any]) -> Group:
    """The report as rich tables: segments with their flags, the matrix, churn, quarantine."""
    t = text_of(doc)
    details = doc.get("details", {})
    runs = doc.get("runs") or {}
    latest = for_people((runs.get("latest") or {}).get("at"), calendar_zone(doc)) or "-"
    title = t["health_title"].format(profiles=doc.get("profiles", 0), at=latest) + zone_note(doc, t)
    table = Table(title=title, title_justify="left")
    for column, justify in (
        (t["segment"], "left"),
        (t["label"], "left"),
        (t["size"], "right"),
        (t["share"], "right"),
        (t["revenue_share"], "right"),
        (t["avg_value"], "right"),
        (t["stable_prev"], "right"),
        (t["stable_window"].format(days=doc.get("window_days", 30)), "right"),
        (t["largest_overlap"], "left"),
        (t["growth"], "right"),
        (t["flags"], "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for seg in doc.get("segments", []):
        detail = details.get(seg["name"], {})
        overlap = seg["max_overlap"]
        growth = seg["growth"]
        table.add_row(
            seg["name"],
            detail.get("label", seg["name"]),
            str(seg["size"]),
            _pct(seg["share"]),
            _pct(seg["revenue_share"]),
            f"{doc.get('base_currency', '')} {detail.get('average_value', 0):,.2f}",
            _pct(seg["stability"]),
            _pct(detail.get("stability_window")),
            f"{overlap['with']} {overlap['jaccard']:.0%}" if overlap["with"] else "-",
            "-" if growth is None else f"{growth:+d}",
            "[yellow]" + "; ".join(detail.get("reasons", [])) + "[/]" if seg["flags"] else f"[green]{t['ok']}[/]",
        )
    parts: list[Any] = [table, *_todo_table(doc)]
    matrix = doc.get("matrix") or {}
    if matrix:
        grid = Table(title=t["matrix_plain"], title_justify="left", show_lines=True)
        grid.add_column("")
        grid.add_column(t["low_value"])
        grid.add_column(t["high_value"])

        def cell(q: str) -> str:
            m = matrix[q]
            return f"{m['label']}: {m['count']} ({m['share']:.0%})"

        grid.add_row(t["high_loyalty"], cell("supporters"), cell("friends"))
        grid.add_row(t["low_loyalty"], cell("passers-by"), cell("acquaintances"))
        parts.append(grid)
    churn = doc.get("churn") or {}
    if churn.get("rows"):
        churn_table = Table(
            title=t["churn_title"].format(days=churn["window_days"], total=churn["total"]), title_justify="left"
        )
        for column in ("into", "left_stage", "quadrant_before", "last_ordered_in", "profiles"):
            churn_table.add_column(t[column])
        for row in churn["rows"][:20]:
            churn_table.add_row(
                row["into"], row["from_lifecycle"], row["from_quadrant"], row["from_system"], str(row["count"])
            )
        parts.append(churn_table)
    quarantine = doc.get("quarantine") or {}
    if quarantine.get("by_reason"):
        q_table = Table(title=t["quarantine"], title_justify="left")
        q_table.add_column(t["reason"])
        q_table.add_column(t["records"], justify="right")
        for reason, n in quarantine["by_reason"].items():
            q_table.add_row(reason, str(n))
        q_table.caption = f"{t['by_system']}: " + ", ".join(f"{k} {v}" for k, v in quarantine["by_system"].items())
        q_table.caption_justify = "left"
        parts.append(q_table)
    if doc.get("frozen"):
        parts.append(f"{t['note']}: {frozen_line(doc['frozen'], t)}")
    parts += [f"{t['note']}: {caveat}" for caveat in doc.get("caveats", [])]
    return Group(*parts)
