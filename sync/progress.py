"""`backfill`'s progress display: one bar per system and stream, on stderr.

A stream's bar ends with its stream: a check mark when the stream was read to its end, a cross
when it stopped (interrupted or failed), never a spinner left turning. Where the vendor says how
much the list holds, the bar is a real one with a percentage: in records when the vendor gives a
record count, else in pages when it gives a page count (WooCommerce's `X-WP-TotalPages`; a page
count stays exact when a read resumes half-way, where this run's record count does not). Without
either, the bar counts records and fills when the stream ends.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

DONE, STOPPED = "✓", "✗"


class StateColumn(SpinnerColumn):
    """A spinner while the stream is read; a check mark when it ended, a cross when it stopped."""

    def render(self, task: Task) -> Text:
        if task.fields.get("state") == "stopped":
            return Text(STOPPED, style="red")
        return super().render(task)  # type: ignore[return-value]


class CountColumn(ProgressColumn):
    """Records read in this run, and the vendor's total where it gave one."""

    def render(self, task: Task) -> Text:
        records = int(task.fields.get("records", 0))
        of_records = task.fields.get("of_records")
        if of_records is not None:
            return Text(f"{records:>8}/{of_records} records")
        of_pages = task.fields.get("of_pages")
        if of_pages is not None:
            return Text(f"{records:>8} records, page {task.fields.get('page', 0)}/{of_pages}")
        return Text(f"{records:>8} records")


class RecordProgress(Progress):
    """What `sync/extract.py` reports to: `advance` after stored pages, `expect` with what the
    vendor said about the whole list, `finish` when a stream ended or stopped."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__(
            StateColumn(finished_text=Text(DONE, style="green")),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TaskProgressColumn(),
            CountColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self.tasks_by_key: dict[tuple[str, str], Any] = {}
        self.streams: dict[tuple[str, str], _Stream] = {}

    def _stream(self, system: str, stream: str) -> tuple[Any, _Stream]:
        key = (system, stream)
        if key not in self.tasks_by_key:
            self.streams[key] = _Stream()
            self.tasks_by_key[key] = self.add_task(f"{system} {stream}", total=None, records=0, state="reading")
        return self.tasks_by_key[key], self.streams[key]

    def advance(self, system: str, stream: str, records: int) -> None:  # type: ignore[override]
        task_id, seen = self._stream(system, stream)
        seen.records += records
        self.update(task_id, records=seen.records, completed=seen.completed)

    def expect(self, system: str, stream: str, *, records: int | None, pages: int | None, page: int) -> None:
        """What the vendor says the list holds (`records` and/or `pages`), and the page of the
        list read last (counted from the list's start, also when the read resumed)."""
        task_id, seen = self._stream(system, stream)
        seen.of_records, seen.of_pages, seen.page = records, pages, page
        total = seen.total
        self.update(
            task_id,
            of_records=records,
            of_pages=pages,
            page=page,
            total=None if total is None else max(total, seen.completed),
            completed=seen.completed,
        )

    def finish(self, system: str, stream: str, *, complete: bool) -> None:
        task_id, seen = self._stream(system, stream)
        if complete:
            # However the vendor's total compares with what was read, a stream read to its end
            # is whole: the bar is full (a list without records fills it too).
            total = seen.total
            done = total if total is not None and seen.completed >= total else max(seen.completed, 1)
            self.update(task_id, total=done, completed=done, state="done")
        else:
            self.update(task_id, state="stopped")
        self.stop_task(task_id)


class _Stream:
    """One stream's numbers: the bar moves by records, or by pages where only pages are known."""

    def __init__(self) -> None:
        self.records = 0
        self.of_records: int | None = None
        self.of_pages: int | None = None
        self.page = 0

    @property
    def by_pages(self) -> bool:
        return self.of_records is None and self.of_pages is not None

    @property
    def completed(self) -> int:
        return self.page if self.by_pages else self.records

    @property
    def total(self) -> int | None:
        return self.of_pages if self.by_pages else self.of_records
