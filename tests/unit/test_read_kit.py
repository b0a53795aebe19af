"""The connector kit's read side without HTTP: paginators, the incremental window and the one read
loop, driven by fake vendor lists (plain functions, not mocks of requests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from connectors.errors import ApiError
from connectors.paging import (
    CursorPaginator,
    KeysetPaginator,
    NextLinkPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    PagingLoop,
    Reply,
)
from connectors.streams import RecordSpec, Stream, read_stream
from connectors.window import Window
from mapping.model import Kind, SourceRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _stamp(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def test_page_numbers_end_on_a_short_page_or_at_the_vendors_total() -> None:
    pages = PageNumberPaginator("x", 2)
    assert pages.advance(Reply([1, 2], total_pages=3)) and pages.position == 2
    assert pages.expects_more(Reply([1], total_pages=3))  # short while the totals promise more
    assert not pages.advance(Reply([1, 2], total_pages=2))  # full, but the last page by the total
    assert not PageNumberPaginator("x", 2).advance(Reply([1]))


def test_offsets_move_by_the_page_size() -> None:
    offsets = OffsetPaginator("x", 10, 20)
    assert offsets.advance(Reply(list(range(10)))) and offsets.position == 30
    assert not offsets.advance(Reply(list(range(9))))


def test_a_keyset_that_does_not_move_on_is_refused() -> None:
    keys = KeysetPaginator("x", 2, lambda reply, _: reply.items[-1]["id"])
    assert keys.advance(Reply([{"id": 1}, {"id": 5}])) and keys.position == 5
    with pytest.raises(PagingLoop):  # the vendor ignored the filter and sent the same rows
        keys.advance(Reply([{"id": 1}, {"id": 5}]))
    with pytest.raises(PagingLoop):  # or rows out of key order
        keys.advance(Reply([{"id": 9}, {"id": 3}]))
    with pytest.raises(ApiError, match="lacks the key"):
        KeysetPaginator("x", 1, lambda reply, _: None).advance(Reply([{}]))


def test_a_keyset_position_compares_after_a_json_round_trip() -> None:
    keys = KeysetPaginator("x", 1, lambda reply, _: (reply.items[-1], 1), position=["2026-01-01", 1])
    assert keys.advance(Reply(["2026-01-02"]))  # a list from a checkpoint against a tuple


def test_a_repeated_position_is_refused_by_every_paginator() -> None:
    links = NextLinkPaginator("x", 2, "https://shop.example.com/api")
    assert links.advance(Reply([1, 2], next_link="https://shop.example.com/api?page=2"))
    assert links.advance(Reply([1, 2], next_link="https://shop.example.com/api?page=3"))
    with pytest.raises(PagingLoop):
        links.advance(Reply([1, 2], next_link="https://shop.example.com/api?page=2"))
    cursors = CursorPaginator("x", 2)
    assert cursors.advance(Reply([1, 2], end_cursor="a", has_next=True))
    with pytest.raises(PagingLoop):
        cursors.advance(Reply([1, 2], end_cursor="a", has_next=True))
    assert not CursorPaginator("x", 2).advance(Reply([1], end_cursor="b", has_next=False))


def test_a_next_link_to_another_host_is_not_followed() -> None:
    links = NextLinkPaginator("x", 2, "https://shop.example.com")
    with pytest.raises(ApiError, match="another host"):
        links.advance(Reply([1, 2], next_link="https://evil.example.net/steal"))


def test_the_window_never_passes_the_start_of_its_pass_nor_goes_back() -> None:
    window = Window.open({"cursor": _stamp(0)}, lookback=600)
    assert window.since == T0 - timedelta(seconds=600)
    late = SourceRecord("x", Kind.CONTACT, "1", window.started + timedelta(hours=1), {})
    window.saw([late])  # changed after the pass began (or a vendor clock ahead of ours)
    assert window.close() == {"cursor": window.started.isoformat()}
    older = Window.open({"cursor": _stamp(30)}, lookback=0)
    older.saw([SourceRecord("x", Kind.CONTACT, "1", T0, {})])
    assert older.close() == {"cursor": _stamp(30)}  # never backwards
    assert Window.open({}, lookback=0, incremental=False).close() == {}


def test_the_window_keeps_the_newest_records_own_offset() -> None:
    shop = timezone(timedelta(hours=-5))
    window = Window.open(None, lookback=0)
    window.saw([SourceRecord("x", Kind.ORDER, "1", datetime(2026, 1, 1, 9, 0, tzinfo=shop), {})])
    assert window.close() == {"cursor": "2026-01-01T09:00:00-05:00"}
    resumed = Window.open(window.resume_at(3), lookback=0)
    assert resumed.newest is not None and resumed.newest.utcoffset() == timedelta(hours=-5)


class FakeList:
    """A vendor list of `count` records one minute apart, by offset; `lose` drops the item at that
    index from the first answer of its page only (a reply that lost an item on the way)."""

    def __init__(self, count: int, lose: int | None = None) -> None:
        self.items = [{"id": str(n), "updated": _stamp(n)} for n in range(count)]
        self.lose = lose
        self.calls: list[Any] = []

    def fetch(self, at: Any, window: Window) -> Reply:
        self.calls.append(at)
        page = self.items[at : at + 3]
        if self.lose is not None and at <= self.lose < at + 3 and self.calls.count(at) == 1:
            page = [item for item in page if item["id"] != str(self.lose)]
        return Reply(page)


def _stream(vendor: FakeList, incremental: bool = True, repeats_boundary: bool = False) -> Stream:
    return Stream(
        "x",
        Kind.CONTACT,
        vendor.fetch,
        lambda at: OffsetPaginator("x", 3, at),
        RecordSpec("id", ("updated",)),
        incremental=incremental,
        repeats_boundary=repeats_boundary,
    )


def test_the_read_loop_checkpoints_every_page_and_resumes_mid_pass() -> None:
    vendor = FakeList(8)
    pages = list(read_stream(_stream(vendor), None))
    assert [[r.id for r in p.records] for p in pages] == [["0", "1", "2"], ["3", "4", "5"], ["6", "7"]]
    assert pages[-1].checkpoint == {"cursor": _stamp(7)}
    assert pages[0].checkpoint["pass"]["at"] == 3 and "cursor" not in pages[0].checkpoint
    resumed = list(read_stream(_stream(FakeList(8)), pages[0].checkpoint))  # a crash after page one
    assert [r.id for p in resumed for r in p.records] == ["3", "4", "5", "6", "7"]
    assert [p.number for p in resumed] == [2, 3] and resumed[-1].checkpoint == {"cursor": _stamp(7)}


def test_a_short_page_is_asked_for_again_and_the_longer_answer_wins() -> None:
    vendor = FakeList(6, lose=4)  # the second page comes back short once: it looks like the end
    ids = [r.id for p in read_stream(_stream(vendor, incremental=False), None) for r in p.records]
    assert ids == ["0", "1", "2", "3", "4", "5"]
    assert vendor.calls.count(3) == 2


def test_a_boundary_record_sent_again_unchanged_is_passed_on_once() -> None:
    vendor = FakeList(6)
    vendor.items.insert(3, dict(vendor.items[2]))  # the boundary record again at the next page's head
    ids = [r.id for p in read_stream(_stream(vendor, repeats_boundary=True), None) for r in p.records]
    assert ids == ["0", "1", "2", "3", "4", "5"]


def test_a_repeat_that_changed_without_a_new_timestamp_is_passed_on() -> None:
    vendor = FakeList(6)
    vendor.items.insert(3, {**vendor.items[2], "status": "credited"})  # same id and time, new content
    pages = list(read_stream(_stream(vendor, repeats_boundary=True), None))
    copies = [r.payload for p in pages for r in p.records if r.id == "2"]
    assert len(copies) == 2 and copies[-1]["status"] == "credited"
    plain = [r.id for p in read_stream(_stream(FakeList(6)), None) for r in p.records]
    assert plain == ["0", "1", "2", "3", "4", "5"]


def test_keys_in_a_vendors_collation_need_only_be_new() -> None:
    keys = KeysetPaginator("x", 1, lambda reply, _: reply.items[-1], position="a1", ordered=False)
    assert keys.advance(Reply(["B2"]))  # after "a1" in Profit's order, before it in Python's
    with pytest.raises(PagingLoop):
        keys.advance(Reply(["a1"]))
