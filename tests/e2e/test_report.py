"""`crmsync report` and the segment tags as a user sees them: real sandboxes over HTTP, real state,
`$CRMSYNC_NOW` moving time, and the HTML page rendered by a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.kit import Sandboxes, json_out, run_crmsync

LIFECYCLE_TAGS = {f"lifecycle-{s}" for s in ("prospect", "new", "active", "at-risk", "lapsed")}
PREFIX = "crmsync:"


def stamp(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def shop_tags(sandboxes: Sandboxes, customer_id: str) -> set[str]:
    tags = sandboxes.customer("shopify", customer_id)["tags"]
    return {t[len(PREFIX) :] for t in tags if t.lower().startswith(PREFIX)}


def woo_segments(sandboxes: Sandboxes, customer_id: str) -> set[str]:
    meta = {m["key"]: m["value"] for m in sandboxes.customer("woocommerce", customer_id)["meta_data"]}
    return set(meta["crmsync_segments"].split(","))


def test_moving_crmsync_now_forward_moves_lifecycle_tags_in_the_sandboxes(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    shop_ids = [c["id"] for c in small_data["shopify"]["customers"]]
    woo_ids = [str(c["id"]) for c in small_data["woocommerce"]["customers"]]
    before = {i: shop_tags(sandboxes, i) & LIFECYCLE_TAGS for i in shop_ids}
    assert all(len(tags) == 1 for tags in before.values())  # exactly one stage each
    assert any(tags & {"lifecycle-active", "lifecycle-new"} for tags in before.values())
    buyers = {i for i, tags in before.items() if tags != {"lifecycle-prospect"}}
    assert buyers

    # 400 days on, every order is over a year old: lapsed (the at-risk window is 365 days)
    later = run_crmsync("sync", "-c", str(config), "--json", env={"CRMSYNC_NOW": stamp(400)})
    assert later.returncode == 0, later.stderr
    assert json_out(later)["systems"]["shopify"]["written"] > 0
    for shop_id in shop_ids:
        stage = shop_tags(sandboxes, shop_id) & LIFECYCLE_TAGS
        assert stage == ({"lifecycle-lapsed"} if shop_id in buyers else {"lifecycle-prospect"}), (shop_id, stage)
    for woo_id in woo_ids:
        assert len(woo_segments(sandboxes, woo_id) & {"lifecycle-lapsed", "lifecycle-prospect"}) == 1


def test_rule_segments_are_written_and_a_segment_can_be_switched_off_per_system(
    sandboxes: Sandboxes, small_data: dict[str, Any], tmp_path: Path
) -> None:
    rules = '[[segments.rules]]\nname = "repeat-buyers"\nwhen = "order_count >= 2"\n'
    config = sandboxes.config(tmp_path, extra=rules, woocommerce='skip_segments = ["repeat-buyers"]')
    result = run_crmsync("sync", "-c", str(config))
    assert result.returncode == 0, result.stderr
    tagged = [
        i for i in (c["id"] for c in small_data["shopify"]["customers"]) if "repeat-buyers" in shop_tags(sandboxes, i)
    ]
    assert tagged, "some shop customers ordered twice or more"
    for customer in small_data["woocommerce"]["customers"]:
        assert "repeat-buyers" not in woo_segments(sandboxes, str(customer["id"]))


def test_a_bad_rule_stops_before_anything_runs_with_exit_2(sandboxes: Sandboxes, tmp_path: Path) -> None:
    rules = '[[segments.rules]]\nname = "drifting"\nwhen = "last_order < now - 30"\n'
    result = run_crmsync("sync", "-c", str(sandboxes.config(tmp_path, extra=rules)))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "config error: segments.rules[0].when: rule 'drifting', column 14: cannot compute a date - a number"
    )
    assert sandboxes.stats("shopify")["reads"] == 0


def test_report_json_and_terminal_table(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path)
    missing = run_crmsync("report", "-c", str(config))
    assert missing.returncode == 2 and "run `crmsync sync` first" in missing.stderr
    for days in (-60, -30, 0):
        assert run_crmsync("sync", "-c", str(config), env={"CRMSYNC_NOW": stamp(days)}).returncode == 0
    result = run_crmsync("report", "-c", str(config), "--json", env={"CRMSYNC_NOW": stamp(0)})
    assert result.returncode == 0, result.stderr
    doc = json_out(result)
    assert doc["profiles"] == 40 and doc["runs"]["count"] == 3
    names = [s["name"] for s in doc["segments"]]
    assert names[:4] == ["friends", "supporters", "acquaintances", "passers-by"]
    assert sum(s["size"] for s in doc["segments"] if s["name"].startswith("lifecycle-")) == 40
    assert all(s["stability"] is not None or s["size"] == 0 or s["growth"] is not None for s in doc["segments"])
    assert doc["quarantine"] == {"by_reason": {}, "by_system": {}}
    human = run_crmsync("report", "-c", str(config))
    assert human.returncode == 0 and "segment health: 40 profiles" in human.stdout and "loyalty x value" in human.stdout


def test_the_demo_ends_by_writing_the_html_report_and_printing_its_path(tmp_path: Path) -> None:
    result = run_crmsync("demo", "--contacts", "30", "--dir", str(tmp_path / "demo"), timeout=120)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("Report:")
    page = Path(last.split()[1])
    assert page == (tmp_path / "demo" / "report.html").resolve() and page.exists()
    html = page.read_text()
    assert html.count('class="bar"') >= 12 and 'data-quadrant="friends"' in html
    assert html.count('class="point" data-segment="friends"') == 5  # three replayed runs, backfill, sync


# ----- the HTML page in a real browser -------------------------------------------------------------
def chromium() -> str:
    """The Chromium binary, which `make test` installs before the tests (`make debs`, Debian's
    package `chromium`): the test always runs, and fails naming the step when it is missing."""
    found = shutil.which("chromium")
    assert found, "needs headless Chromium: run `make debs` (apt-get install -y chromium) first"
    return found


def browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Marks(HTMLParser):
    """Every element carrying data-* attributes, as (tag, class, attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if any(k.startswith("data-") for k in values):
            self.marks.append((tag, values.get("class", ""), values))


@pytest.mark.timeout(1200)
def test_html_report_renders_in_chromium_with_charts_that_carry_the_data(sandboxes: Sandboxes, tmp_path: Path) -> None:
    binary = chromium()
    config = sandboxes.config(tmp_path)
    for days in (-60, -30, 0):
        assert run_crmsync("sync", "-c", str(config), env={"CRMSYNC_NOW": stamp(days)}).returncode == 0
    page = tmp_path / "report.html"
    result = run_crmsync("report", "-c", str(config), "--json", "--html", str(page), env={"CRMSYNC_NOW": stamp(0)})
    assert result.returncode == 0, result.stderr
    doc = json_out(result)

    shot = tmp_path / "report.png"
    taken = browser(binary, tmp_path / "profile-1", "--window-size=1280,1800", f"--screenshot={shot}", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 0, taken.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 24) or []
        total = pixels.width * pixels.height
        background = max(colours)[0]
        assert len(colours) > 200, "a blank or near-blank page"
        assert total - background > total * 0.2, "most of the page is one colour"
        # Chart ink: saturated colour (matrix cells, bars, lines, flows), whatever the data's flags.
        ink = sum(n for n, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 60)
        assert ink > total * 0.05, f"the charts are not on screen ({ink} coloured pixels of {total})"

    dumped = browser(binary, tmp_path / "profile-2", "--dump-dom", page.as_uri())
    assert dumped.returncode == 0 and "</html>" in dumped.stdout, dumped.stderr[-2000:]
    parser = Marks()
    parser.feed(dumped.stdout)
    marks = parser.marks
    bars = {a["data-segment"]: int(a["data-size"]) for tag, cls, a in marks if cls == "bar"}
    assert bars == {s["name"]: s["size"] for s in doc["segments"]}  # one bar per segment, its size
    cells = {a["data-quadrant"]: int(a["data-count"]) for tag, cls, a in marks if cls == "cell"}
    assert cells == {q: m["count"] for q, m in doc["matrix"].items()}
    assert sum(cells.values()) == doc["profiles"] == 40
    points = [a for tag, cls, a in marks if cls == "point"]
    assert len(points) == len(doc["segments"]) * 3  # a point per segment per recorded run
    latest = {
        a["data-segment"]: int(a["data-size"]) for a in points if int(a["data-seq"]) == doc["runs"]["latest"]["seq"]
    }
    assert latest == bars
    flows = [(a["data-from"], a["data-to"], int(a["data-count"])) for tag, cls, a in marks if cls == "flow"]
    expected = [(f["from"] or "first-seen", f["to"], f["count"]) for f in doc["flows"]["lifecycle"]]
    assert sorted(flows) == sorted(expected) and flows, "lifecycle flows: one band per move, with its count"


class Text(HTMLParser):
    """The page's visible text (what a person reads; not tags, attributes or styles)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "script")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


@pytest.mark.timeout(600)
def test_a_dutch_report_says_where_to_find_each_segment_and_has_no_english_action_words(
    sandboxes: Sandboxes, tmp_path: Path
) -> None:
    binary = chromium()
    persona = "Fien, 52, bestelt elke maand en leest elke nieuwsbrief"
    config = sandboxes.config(tmp_path, f'[report]\nlanguage = "nl"\npersonas = {{ friends = "{persona}" }}\n')
    sandboxes.reset_stats()
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    writers = {name for name in sandboxes.by_type if sandboxes.stats(name)["writes"] > 0}  # written to
    assert len(writers) >= 5, writers
    page = tmp_path / "rapport.html"
    result = run_crmsync("report", "-c", str(config), "--json", "--html", str(page))
    assert result.returncode == 0, result.stderr
    doc = json_out(result)
    dumped = browser(binary, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dumped.returncode == 0 and "</html>" in dumped.stdout, dumped.stderr[-2000:]

    marks = Marks()
    marks.feed(dumped.stdout)
    entries: dict[str, set[str]] = {}
    for tag, _, attrs in marks.marks:
        if tag == "li" and "data-system" in attrs:
            entries.setdefault(attrs["data-segment"], set()).add(attrs["data-system"])
    written = [s["name"] for s in doc["segments"] if s["size"] > 0]
    assert written and all(entries.get(name) == writers for name in written), (writers, entries)

    text = Text()
    text.feed(dumped.stdout)
    visible = " ".join(text.parts)
    english = re.findall(r"\b(retain|develop|bind|get acquainted|what to do|where to find|profiles|too few)\b", visible)
    assert english == [], english
    assert "behouden" in visible and "Wat te doen" in visible and persona in visible
    assert "vrienden" in visible and "klanten met de tag crmsync:friends" in visible
    friends = doc["details"]["friends"]["guide"]
    assert friends["action"] == "behouden" and friends["revenue_12m"] > 0
    # The 12-month revenue at stake is the members' 12-month spend, as each profile's traits hold it.
    with closing(sqlite3.connect(tmp_path / "crmsync.db")) as db:
        spend = sum(
            float(json.loads(traits)["spend_12m"])
            for segments, traits in db.execute("SELECT segments, traits FROM profiles")
            if "friends" in json.loads(segments)
        )
    assert friends["revenue_12m"] == round(spend, 2)
    assert f"{friends['revenue_12m']:,.2f}" in visible
