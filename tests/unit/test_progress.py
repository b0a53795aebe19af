"""Progress bars end with their stream and show the vendor's totals where it gives them: the read
loop hands the totals on with each page, extract reports them and each stream's end, and the
display draws a real bar (sync/progress.py). Fake vendor lists, no HTTP."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from connectors.base import Capabilities, Page
from connectors.errors import ApiError
from connectors.paging import OffsetPaginator, PageNumberPaginator, Reply
from connectors.streams import RecordSpec, Stream, read_stream
from connectors.window import Window
from mapping.model import Contact, FieldSpec, Kind, SourceRecord
from sync.config import load_config
from sync.pipeline import Cycle, SystemOutcome
from sync.progress import RecordProgress
from sync.state import StateStore
from tests.kit import UNREACHABLE_SHOP_CONFIG

NOW = datetime(2026, 11, 25, tzinfo=UTC)


class PagedList:
    """Seven records, `size` to a page, answered by page number with the page total (as
    WooCommerce's X-WP-TotalPages)."""

    def __init__(self, size: int = 2, totals: bool = True) -> None:
        self.items = [{"id": str(n), "updated": NOW.isoformat()} for n in range(7)]
        self.size = size
        self.totals = totals

    def fetch(self, page: Any, window: Window) -> Reply:
        chunk = self.items[(int(page) - 1) * self.size : int(page) * self.size]
        pages = -(-len(self.items) // self.size)
        return Reply(chunk, total_pages=pages if self.totals else None)


def _stream(vendor: PagedList) -> Stream:
    return Stream(
        "x",
        Kind.CONTACT,
        vendor.fetch,
        lambda at: PageNumberPaginator("x", vendor.size, at),
        RecordSpec("id", ("updated",)),
        incremental=False,
    )


def test_pages_carry_the_vendors_page_total_and_count_on_when_a_read_resumes() -> None:
    pages = list(read_stream(_stream(PagedList()), None))
    assert [(p.number, p.total_pages, p.total) for p in pages] == [
        (1, 4, None),
        (2, 4, None),
        (3, 4, None),
        (4, 4, None),
    ]
    resumed = list(read_stream(_stream(PagedList()), pages[1].checkpoint))  # stopped after page two
    assert [(p.number, p.total_pages) for p in resumed] == [(3, 4), (4, 4)]
    assert [len(p.records) for p in resumed] == [2, 1]


def test_a_list_without_totals_says_none() -> None:
    vendor = PagedList(totals=False)
    offsets = Stream(
        "x",
        Kind.CONTACT,
        lambda at, window: Reply(vendor.items[at : at + 3]),
        lambda at: OffsetPaginator("x", 3, at),
        RecordSpec("id", ("updated",)),
    )
    assert {(p.total_pages, p.total) for p in read_stream(offsets, None)} == {(None, None)}
    assert {p.total_pages for p in read_stream(_stream(vendor), None)} == {None}


def _render(progress: RecordProgress) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(progress.make_tasks_table(progress.tasks))
    return str(console.file.getvalue())  # type: ignore[attr-defined]


def test_a_bar_with_the_page_total_shows_its_share_and_ends_with_a_check_mark() -> None:
    progress = RecordProgress(Console(file=io.StringIO()))
    progress.advance("woo", "contacts", 50)
    progress.expect("woo", "contacts", records=None, pages=4, page=1)
    [task] = progress.tasks
    assert (task.completed, task.total, task.finished) == (1, 4, False)
    assert "25%" in _render(progress) and "page 1/4" in _render(progress)
    progress.advance("woo", "contacts", 150)
    progress.expect("woo", "contacts", records=None, pages=4, page=4)
    progress.finish("woo", "contacts", complete=True)
    [task] = progress.tasks
    assert task.finished and task.completed == task.total == 4
    line = _render(progress)
    assert line.lstrip().startswith("✓ woo contacts") and "100%" in line and "200 records" in line


def test_a_record_total_makes_a_record_bar() -> None:
    progress = RecordProgress(Console(file=io.StringIO()))
    progress.advance("shop", "contacts", 30)
    progress.expect("shop", "contacts", records=120, pages=None, page=1)
    [task] = progress.tasks
    assert (task.completed, task.total) == (30, 120)
    assert "30/120 records" in _render(progress) and "25%" in _render(progress)


def test_a_bar_without_totals_fills_when_its_stream_ends_and_a_stopped_one_shows_a_cross() -> None:
    progress = RecordProgress(Console(file=io.StringIO()))
    progress.advance("afas", "contacts", 9)
    progress.advance("afas", "orders", 3)
    [contacts, orders] = progress.tasks
    assert contacts.total is None and not contacts.finished
    progress.finish("afas", "contacts", complete=True)
    progress.finish("afas", "orders", complete=False)
    [contacts, orders] = progress.tasks
    assert contacts.finished and contacts.percentage == 100
    assert not orders.finished and orders.stop_time is not None  # its clock stopped too
    lines = _render(progress).splitlines()
    assert lines[0].lstrip().startswith("✓ afas contacts") and lines[1].lstrip().startswith("✗ afas orders")


# ----- extract reports to the display ----------------------------------------------------------------


class Recorder:
    """A StreamProgress that writes down what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def advance(self, system: str, stream: str, records: int) -> None:
        self.calls.append(("advance", system, stream, records))

    def expect(self, system: str, stream: str, *, records: int | None, pages: int | None, page: int) -> None:
        self.calls.append(("expect", system, stream, records, pages, page))

    def finish(self, system: str, stream: str, *, complete: bool) -> None:
        self.calls.append(("finish", system, stream, complete))


class Connector:
    """Three pages of four contacts out of a list of three pages; fails on page `fail` if set."""

    name = "shop"
    capabilities = Capabilities(
        read_contacts=True, read_orders=False, incremental=True, write_tags=False, write_fields=False
    )
    contact_fields = {"email": FieldSpec("email", "email")}
    order_fields: dict[str, FieldSpec] = {}

    def __init__(self, fail: int | None = None) -> None:
        self.fail = fail

    def api_label(self) -> str:
        return "a paged test API"

    def reader(self, stream: str) -> Callable[[Mapping[str, Any] | None], Iterator[Page]]:
        return self.read_contacts

    def drift_paths(self, stream: str, kind: Kind) -> tuple[str, ...]:
        return ("email",)

    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        for number in range(1, 4):
            if number == self.fail:
                raise ApiError("shop", "the vendor fell over")
            records = [
                SourceRecord("shop", Kind.CONTACT, f"{number}-{i}", NOW, {"email": f"p{number}.{i}@x.nl"})
                for i in range(4)
            ]
            yield Page(records, {"page": number}, number, None, 3)


def _mapper(record: SourceRecord) -> Contact:
    return Contact(record.system, record.id, record.updated_at, email=record.payload["email"])


def _extract(tmp_path: Path, connector: Connector, progress: Recorder) -> None:
    (tmp_path / "crmsync.toml").write_text(UNREACHABLE_SHOP_CONFIG)
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    try:
        cycle = Cycle(loaded, store, clock=lambda: NOW, stop_event=threading.Event(), progress=progress)
        run = store.begin_run("test", NOW)
        cycle._extract_stream(connector, SystemOutcome("woocommerce"), run, "contacts", Kind.CONTACT, _mapper, False)  # type: ignore[arg-type]
    finally:
        store.close()


def test_extract_reports_the_page_total_and_the_end_of_each_stream(tmp_path: Path) -> None:
    progress = Recorder()
    _extract(tmp_path, Connector(), progress)
    advanced = sum(call[3] for call in progress.calls if call[0] == "advance")
    expected = [call for call in progress.calls if call[0] == "expect"]
    assert advanced == 12
    assert expected and all(call[3:5] == (None, 3) for call in expected) and expected[-1][5] == 3
    assert progress.calls[-1] == ("finish", "shop", "contacts", True)


def test_a_stream_that_fails_ends_its_bar_as_stopped(tmp_path: Path) -> None:
    progress = Recorder()
    with pytest.raises(ApiError):
        _extract(tmp_path, Connector(fail=2), progress)
    assert progress.calls[-1] == ("finish", "shop", "contacts", False)
    assert sum(call[3] for call in progress.calls if call[0] == "advance") == 4  # page one was stored
