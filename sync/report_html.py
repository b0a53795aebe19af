"""The segment health report as one self-contained HTML file: inline CSS and inline SVG drawn here,
no scripts, no fonts or images from elsewhere, so it opens offline and mails as one attachment.

Every chart mark carries its data as attributes (`data-segment`, `data-size`, `data-quadrant`,
`data-count`, `data-from`, `data-to`), so a test can check the picture against the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import tzinfo
from html import escape
from typing import Any

from mapping.segments import LIFECYCLE_SEGMENTS
from sync.report_guide import action, calendar_zone, frozen_line, text_of, zone_note
from sync.timefmt import for_people

PALETTE = (
    "#2f6fb0",
    "#e07b39",
    "#3a9a5b",
    "#c2423f",
    "#7d5ba6",
    "#8c6d4f",
    "#d467b0",
    "#6f7782",
    "#b5a333",
    "#2aa5b8",
    "#1d2430",
    "#9ccf6a",
    "#f2b134",
    "#5fa8e8",
)
FAMILY_COLOUR = {"quadrant": "#2f6fb0", "lifecycle": "#3a9a5b", "tier": "#b5a333", "rule": "#7d5ba6"}
STAGE_COLOUR = {
    "lifecycle-prospect": "#9aa3ad",
    "lifecycle-new": "#2aa5b8",
    "lifecycle-active": "#3a9a5b",
    "lifecycle-at-risk": "#e07b39",
    "lifecycle-lapsed": "#c2423f",
    None: "#6f7782",
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2430}
header{background:#1d2430;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#c9d1dc;font-size:13px}
main{padding:20px 28px;display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:20px}
section{background:#fff;border-radius:8px;padding:16px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
section.wide{grid-column:1/-1}
h2{font-size:16px;margin:0 0 10px} .note{color:#6f7782;font-size:12px;margin:6px 0 0}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid #e6e9ee;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.l,th.l{text-align:left}
td.flags{text-align:left;white-space:normal;color:#a4502a} td.ok{color:#3a9a5b;text-align:left}
svg text{font-family:inherit}
"""


def _attrs(**values: Any) -> str:
    return " ".join(f'{key.replace("_", "-")}="{escape(str(value))}"' for key, value in values.items())


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render_html(doc: Mapping[str, Any]) -> str:
    t = text_of(doc)
    runs = doc.get("runs") or {}
    zone = calendar_zone(doc)
    latest = for_people((runs.get("latest") or {}).get("at"), zone) or t["no_run"]
    generated = (for_people(doc.get("generated_at"), zone) or "") + zone_note(doc, t)
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{escape(str(doc.get("language") or "en"))}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{t['title']}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<header><h1>{t['title']}</h1>",
        f"<p>{doc.get('profiles', 0)} {t['profiles']} &middot; {t['revenue']} {doc.get('revenue', 0):,.2f} "
        f"{escape(str(doc.get('base_currency', '')))} &middot; {t['latest_run']} {escape(str(latest))} &middot; "
        f"{runs.get('count', 0)} {t['runs_recorded']} &middot; {t['generated']} {escape(generated)}</p>",
        "</header><main>",
        _section(t["matrix"], _matrix(doc)),
        _section(t["sizes"], _bars(doc)),
        _section(t["todo"], _todo(doc), wide=True),
        _section(t["over_time"], _lines(doc), wide=True),
        _section(t["flows"].format(days=doc.get("window_days", 30)), _flows(doc)),
        _section(t["churn"], _churn(doc)),
        _section(t["segments"], _table(doc), wide=True),
        _section(t["quarantine"], _quarantine(doc)),
        "</main></body></html>",
    ]
    return "\n".join(parts)


def run_labels(stamps: Sequence[str], zone: tzinfo | None = None) -> list[str]:
    """Axis labels for runs: the date, with the time where two runs share a date (on day one every
    run does), so no two labels read the same. In `zone` (the report's calendar) when given."""
    shown = [for_people(stamp, zone) or "" for stamp in stamps]
    dates = [text[:10] for text in shown]
    return [text[:16] if dates.count(date) > 1 else date for text, date in zip(shown, dates, strict=True)]


def _todo(doc: Mapping[str, Any]) -> str:
    """Per segment: the action, the 12-month revenue at stake, the persona, and where to find its
    members in each system crmsync writes to (one `li` per system, `data-segment`/`data-system`)."""
    t = text_of(doc)
    details = doc.get("details") or {}
    currency = escape(str(doc.get("base_currency", "")))
    out = [
        f'<table id="todo"><tr><th class="l">{t["segment"]}</th><th class="l">{t["action"]}</th>'
        f'<th>{t["at_stake"]}</th><th class="l">{t["where"]}</th></tr>'
    ]
    for seg in doc.get("segments") or []:
        detail = details.get(seg["name"], {})
        guide = detail.get("guide")
        if not guide:
            continue
        where = (
            "".join(
                f"<li {_attrs(data_segment=seg['name'], data_system=entry['system'])}>{escape(entry['where'])}</li>"
                for entry in guide["where"]
            )
            or f"<li>{t['not_written']}</li>"
        )
        persona = f"<br><em>{escape(guide['persona'])}</em>" if guide.get("persona") else ""
        out.append(
            f"<tr {_attrs(data_segment=seg['name'])}><td class='l'>{escape(str(detail.get('label', seg['name'])))}</td>"
            f"<td class='l' style='white-space:normal'><strong>{escape(guide['action'])}</strong>: "
            f"{escape(guide['what_to_do'])}{persona}</td>"
            f"<td>{currency} {guide['revenue_12m']:,.2f}</td>"
            f"<td class='l' style='white-space:normal'><ul style='margin:0;padding-left:16px'>{where}</ul></td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _section(title: str, body: str, *, wide: bool = False) -> str:
    return f'<section class="{"wide" if wide else ""}"><h2>{title}</h2>{body}</section>'


def _matrix(doc: Mapping[str, Any]) -> str:
    t = text_of(doc)
    matrix = doc.get("matrix") or {}
    if not matrix:
        return f'<p class="note">{t["none_yet"]}</p>'
    width, height, left, top = 560, 330, 40, 10
    cell_w, cell_h = (width - left - 10) / 2, (height - top - 40) / 2
    layout = {"supporters": (0, 0), "friends": (1, 0), "passers-by": (0, 1), "acquaintances": (1, 1)}
    strategy = {name: action(name, str(doc.get("language") or "en"))["action"] for name in layout}
    out = [f'<svg id="matrix" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for name, (col, row) in layout.items():
        cell = matrix.get(name, {"count": 0, "share": 0.0, "label": name})
        x, y = left + col * cell_w, top + row * cell_h
        opacity = 0.15 + 0.85 * min(1.0, float(cell["share"]) * 2)
        out.append(f'<g class="cell" {_attrs(data_quadrant=name, data_count=cell["count"])}>')
        out.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell_w - 4:.1f}" height="{cell_h - 4:.1f}" rx="6" '
            f'fill="#2f6fb0" fill-opacity="{opacity:.2f}"/>'
        )
        colour = "#fff" if opacity > 0.5 else "#1d2430"
        cx = x + (cell_w - 4) / 2
        out.append(
            f'<text x="{cx:.1f}" y="{y + 38:.1f}" text-anchor="middle" font-size="16" font-weight="600" '
            f'fill="{colour}">{escape(str(cell["label"]))}</text>'
        )
        out.append(
            f'<text x="{cx:.1f}" y="{y + 70:.1f}" text-anchor="middle" font-size="26" font-weight="700" '
            f'fill="{colour}" class="count">{cell["count"]}</text>'
        )
        out.append(
            f'<text x="{cx:.1f}" y="{y + 94:.1f}" text-anchor="middle" font-size="11" fill="{colour}">'
            f"{t['of_profiles'].format(share=_pct(cell['share']), revenue=_pct(cell.get('revenue_share')))}</text>"
        )
        out.append(
            f'<text x="{cx:.1f}" y="{y + 112:.1f}" text-anchor="middle" font-size="11" fill="{colour}" '
            f'font-style="italic">{strategy[name]}</text></g>'
        )
    out.append(
        f'<text x="{left + cell_w:.1f}" y="{height - 8}" text-anchor="middle" font-size="12" fill="#6f7782">'
        f"{t['value_axis']}</text>"
    )
    out.append(
        f'<text x="18" y="{top + cell_h:.1f}" text-anchor="middle" font-size="12" fill="#6f7782" '
        f'transform="rotate(-90 18 {top + cell_h:.1f})">{t["loyalty_axis"]}</text>'
    )
    out.append("</svg>")
    return "".join(out)


def _bars(doc: Mapping[str, Any]) -> str:
    segments: Sequence[Mapping[str, Any]] = doc.get("segments") or []
    if not segments:
        return f'<p class="note">{text_of(doc)["none_yet"]}</p>'
    details = doc.get("details") or {}
    bar_h, gap, label_w, width = 18, 6, 170, 520
    height = len(segments) * (bar_h + gap) + 10
    biggest = max(1, max(int(s["size"]) for s in segments))
    out = [f'<svg id="sizes" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, seg in enumerate(segments):
        y = 5 + i * (bar_h + gap)
        length = (width - label_w - 70) * int(seg["size"]) / biggest
        detail = details.get(seg["name"], {})
        colour = "#c2423f" if seg["flags"] else FAMILY_COLOUR.get(detail.get("family", "rule"), "#7d5ba6")
        label = detail.get("label", seg["name"])
        out.append(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end" font-size="12">{escape(str(label))}</text>')
        out.append(
            f'<rect class="bar" {_attrs(data_segment=seg["name"], data_size=seg["size"])} x="{label_w}" y="{y}" '
            f'width="{max(length, 1):.1f}" height="{bar_h}" rx="3" fill="{colour}"/>'
        )
        out.append(
            f'<text x="{label_w + max(length, 1) + 6:.1f}" y="{y + 13}" font-size="12">{seg["size"]} '
            f"({_pct(seg['share'])})</text>"
        )
    out.append("</svg>")
    return "".join(out) + f'<p class="note">{text_of(doc)["red_flagged"]}</p>'


def _lines(doc: Mapping[str, Any]) -> str:
    history = doc.get("history") or {}
    runs: Sequence[Mapping[str, Any]] = history.get("runs") or []
    sizes: Mapping[str, Sequence[int]] = history.get("sizes") or {}
    t = text_of(doc)
    if not runs:
        return f'<p class="note">{t["none_yet"]}</p>'
    details = doc.get("details") or {}
    width, height, left, right, top, bottom = 1100, 300, 50, 200, 15, 40
    labels = run_labels([str(run["at"]) for run in runs], calendar_zone(doc))
    plot_w, plot_h = width - left - right, height - top - bottom
    biggest = max([1, *(max(values) for values in sizes.values() if values)])
    n = len(runs)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(value: int) -> float:
        return top + plot_h - plot_h * value / biggest

    out = [f'<svg id="history" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for tick in range(5):
        value = round(biggest * tick / 4)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#e6e9ee"/>'
            f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="11" fill="#6f7782">'
            f"{value}</text>"
        )
    for i in sorted({0, n - 1, *range(0, n, max(1, n // 6))}):
        out.append(
            f'<text x="{x(i):.1f}" y="{height - 18}" text-anchor="middle" font-size="11" fill="#6f7782">'
            f"{escape(labels[i])}</text>"
        )
    for k, (name, values) in enumerate(sizes.items()):
        colour = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        out.append(
            f'<g class="series" {_attrs(data_segment=name)}><polyline fill="none" stroke="{colour}" '
            f'stroke-width="2" points="{points}"/>'
        )
        for i, v in enumerate(values):
            out.append(
                f'<circle class="point" {_attrs(data_segment=name, data_seq=runs[i]["seq"], data_size=v)} '
                f'cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>'
            )
        label = details.get(name, {}).get("label", name)
        out.append(
            f'<rect x="{left + plot_w + 16}" y="{top + k * 16}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + plot_w + 32}" y="{top + k * 16 + 9}" font-size="11">{escape(str(label))}</text></g>'
        )
    out.append("</svg>")
    note = t["one_point"] + (t["at_most"].format(n=n) if n >= 60 else ".")
    return "".join(out) + f'<p class="note">{note}</p>'


def _flows(doc: Mapping[str, Any]) -> str:
    flows: Sequence[Mapping[str, Any]] = (doc.get("flows") or {}).get("lifecycle") or []
    if not flows:
        empty = '<svg id="flows" width="520" height="40" data-flows="0"></svg>'
        return f'{empty}<p class="note">{text_of(doc)["no_flows"]}</p>'
    sources: list[str | None] = [None, *LIFECYCLE_SEGMENTS]
    used_from = [s for s in sources if any(f["from"] == s for f in flows)]
    used_to = [s for s in LIFECYCLE_SEGMENTS if any(f["to"] == s for f in flows)]
    total = sum(int(f["count"]) for f in flows)
    width, node_w, top = 520, 14, 10
    height = 320
    usable = height - top * 2 - 8 * max(len(used_from), len(used_to))

    def layout(nodes: Sequence[str | None], key: str) -> dict[str | None, tuple[float, float]]:
        pos: dict[str | None, tuple[float, float]] = {}
        cursor = float(top)
        for node in nodes:
            amount = sum(int(f["count"]) for f in flows if f[key] == node)
            size = max(2.0, usable * amount / total)
            pos[node] = (cursor, size)
            cursor += size + 8
        return pos

    left_pos, right_pos = layout(used_from, "from"), layout(used_to, "to")
    x0, x1 = 130, width - 130
    out = [f'<svg id="flows" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    left_fill = dict.fromkeys(left_pos, 0.0)
    right_fill = dict.fromkeys(right_pos, 0.0)
    for f in sorted(flows, key=lambda f: (sources.index(f["from"]), LIFECYCLE_SEGMENTS.index(f["to"]))):
        count = int(f["count"])
        ly, lsize = left_pos[f["from"]]
        ry, rsize = right_pos[f["to"]]
        band_l = lsize * count / max(1, sum(int(g["count"]) for g in flows if g["from"] == f["from"]))
        band_r = rsize * count / max(1, sum(int(g["count"]) for g in flows if g["to"] == f["to"]))
        a, b = ly + left_fill[f["from"]], ry + right_fill[f["to"]]
        left_fill[f["from"]] += band_l
        right_fill[f["to"]] += band_r
        mid = (x0 + node_w + x1) / 2
        path = (
            f"M{x0 + node_w},{a:.1f} C{mid},{a:.1f} {mid},{b:.1f} {x1},{b:.1f} "
            f"L{x1},{b + band_r:.1f} C{mid},{b + band_r:.1f} {mid},{a + band_l:.1f} {x0 + node_w},{a + band_l:.1f} Z"
        )
        out.append(
            f'<path class="flow" {_attrs(data_from=f["from"] or "first-seen", data_to=f["to"], data_count=count)} '
            f'd="{path}" fill="{STAGE_COLOUR.get(f["to"], "#6f7782")}" fill-opacity="0.45"/>'
        )
    for node, (pos, size) in left_pos.items():
        name = node[len("lifecycle-") :] if node else "first seen"
        out.append(
            f'<rect x="{x0}" y="{pos:.1f}" width="{node_w}" height="{size:.1f}" fill="{STAGE_COLOUR[node]}"/>'
            f'<text x="{x0 - 6}" y="{pos + size / 2 + 4:.1f}" text-anchor="end" font-size="12">{escape(name)}</text>'
        )
    for node, (pos, size) in right_pos.items():
        name = node[len("lifecycle-") :] if node else ""
        out.append(
            f'<rect x="{x1}" y="{pos:.1f}" width="{node_w}" height="{size:.1f}" fill="{STAGE_COLOUR[node]}"/>'
            f'<text x="{x1 + node_w + 6}" y="{pos + size / 2 + 4:.1f}" font-size="12">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out) + f'<p class="note">{text_of(doc)["moves"].format(total=total)}</p>'


def _churn(doc: Mapping[str, Any]) -> str:
    churn = doc.get("churn") or {}
    rows: Sequence[Mapping[str, Any]] = churn.get("rows") or []
    t = text_of(doc)
    if not rows:
        return f'<p class="note">{t["nobody_churned"].format(days=churn.get("window_days", 30))}</p>'
    out = [
        f"<p>{t['churned'].format(total=churn['total'], days=churn['window_days'])}</p>",
        f'<table id="churn"><tr><th class="l">{t["into"]}</th><th class="l">{t["left_stage"]}</th>'
        f'<th class="l">{t["quadrant_before"]}</th><th class="l">{t["last_ordered_in"]}</th>'
        f"<th>{t['profiles']}</th></tr>",
    ]
    for row in rows[:25]:
        out.append(
            f"<tr><td>{escape(row['into'])}</td><td class='l'>{escape(row['from_lifecycle'])}</td>"
            f"<td class='l'>{escape(row['from_quadrant'])}</td><td class='l'>{escape(row['from_system'])}</td>"
            f"<td>{row['count']}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _table(doc: Mapping[str, Any]) -> str:
    t = text_of(doc)
    details = doc.get("details") or {}
    window = doc.get("window_days", 30)
    currency = escape(str(doc.get("base_currency", "")))
    out = [
        f'<table id="segments"><tr><th>{t["segment"]}</th><th class="l">{t["label"]}</th><th>{t["size"]}</th>'
        f"<th>{t['share']}</th><th>{t['revenue_share']}</th><th>{t['avg_value']}</th><th>{t['stable_prev']}</th>"
        f"<th>{t['stable_window'].format(days=window)}</th>"
        f'<th class="l">{t["largest_overlap"]}</th><th>{t["growth"]}</th><th class="l">{t["flags"]}</th></tr>'
    ]
    for seg in doc.get("segments") or []:
        detail = details.get(seg["name"], {})
        overlap = seg["max_overlap"]
        growth = seg["growth"]
        reasons = "; ".join(detail.get("reasons", []))
        flag_cell = f'<td class="flags">{escape(reasons)}</td>' if seg["flags"] else f'<td class="ok">{t["ok"]}</td>'
        out.append(
            f"<tr {_attrs(data_segment=seg['name'], data_flags=','.join(seg['flags']))}>"
            f"<td>{escape(seg['name'])}</td><td class='l'>{escape(str(detail.get('label', '')))}</td>"
            f"<td>{seg['size']}</td><td>{_pct(seg['share'])}</td><td>{_pct(seg['revenue_share'])}</td>"
            f"<td>{currency} {detail.get('average_value', 0):,.2f}</td><td>{_pct(seg['stability'])}</td>"
            f"<td>{_pct(detail.get('stability_window'))}</td>"
            f"<td class='l'>{escape(str(overlap['with'] or '-'))} {_pct(overlap['jaccard']) if overlap['with'] else ''}"
            f"</td><td>{'-' if growth is None else f'{growth:+d}'}</td>{flag_cell}</tr>"
        )
    out.append("</table>")
    return "".join(out)


def _quarantine(doc: Mapping[str, Any]) -> str:
    quarantine = doc.get("quarantine") or {}
    by_reason: Mapping[str, int] = quarantine.get("by_reason") or {}
    t = text_of(doc)
    if not by_reason:
        return f'<p class="note">{t["no_quarantine"]}</p>'
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{v}</td></tr>" for k, v in by_reason.items())
    systems = ", ".join(f"{escape(k)}: {v}" for k, v in (quarantine.get("by_system") or {}).items())
    head = f"<tr><th>{t['reason']}</th><th>{t['records']}</th></tr>"
    frozen = doc.get("frozen") or {}
    held = f'<p class="note" id="frozen">{escape(frozen_line(frozen, t))}</p>' if frozen else ""
    return f'<table id="quarantine">{head}{rows}</table><p class="note">{systems}</p>{held}'
