"""Extract stores quickly read pages together, with the last page's checkpoint, and stores what was
read before it stops or fails."""

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Capabilities, Page
from connectors.errors import ApiError
from connectors.http import Cancelled
from mapping.model import Contact, FieldSpec, Kind, SourceRecord
from sync.config import load_config
from sync.pipeline import Cycle, SystemOutcome
from sync.state import StateStore
from tests.kit import UNREACHABLE_SHOP_CONFIG

NOW = datetime(2026, 11, 25, tzinfo=UTC)


class PagedConnector:
    """Five pages of ten contacts; `after(n)` runs once page n has been handed over."""

    name = "shop"
    capabilities = Capabilities(
        read_contacts=True, read_orders=False, incremental=True, write_tags=False, write_fields=False
    )

    contact_fields = {"email": FieldSpec("email", "email")}
    order_fields: dict[str, FieldSpec] = {}

    def __init__(self, after: Callable[[int], None] = lambda n: None) -> None:
        self.after = after

    def api_label(self) -> str:
        return "a paged test API"

    def reader(self, stream: str) -> Callable[[Mapping[str, Any] | None], Iterator[Page]]:
        return self.read_contacts

    def drift_paths(self, stream: str, kind: Kind) -> tuple[str, ...]:
        return ("email",)

    resumes = False  # a read starts at page 1 whatever its checkpoint (True: after the page it names)

    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        start = int(checkpoint["page"]) + 1 if checkpoint and self.resumes else 1
        for number in range(start, 6):
            records = [
                SourceRecord("shop", Kind.CONTACT, f"{number}-{i}", NOW, {"email": f"p{number}.{i}@x.nl"})
                for i in range(10)
            ]
            yield Page(records, {"page": number}, number)
            self.after(number)


def _mapper(record: SourceRecord) -> Contact:
    return Contact(record.system, record.id, record.updated_at, email=record.payload["email"])


def _extract(tmp_path: Path, connector: PagedConnector, stop: threading.Event) -> tuple[StateStore, list[int]]:
    (tmp_path / "crmsync.toml").write_text(UNREACHABLE_SHOP_CONFIG)
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    calls: list[int] = []
    store_page = store.store_page

    def counted(system: str, kind: Kind, records: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(records))
        return store_page(system, kind, records, *args, **kwargs)

    store.store_page = counted  # type: ignore[method-assign]
    cycle = Cycle(loaded, store, clock=lambda: NOW, stop_event=stop)
    run = store.begin_run("test", NOW)
    try:
        cycle._extract_stream(connector, SystemOutcome("woocommerce"), run, "contacts", Kind.CONTACT, _mapper, False)  # type: ignore[arg-type]
    finally:
        stored = store.checkpoint("shop", "contacts")
        calls.append(-1 if stored is None else int(stored["page"]))
    return store, calls


def _stored(store: StateStore) -> int:
    return sum(1 for _ in store.iter_contacts())


def test_quick_pages_go_in_one_transaction_with_the_last_checkpoint(tmp_path: Path) -> None:
    store, calls = _extract(tmp_path, PagedConnector(), threading.Event())
    assert calls == [50, 5]  # one store_page for all five pages; the stored checkpoint is page 5's
    assert _stored(store) == 50


def test_a_stop_stores_what_was_read_first(tmp_path: Path) -> None:
    stop = threading.Event()
    # The stop comes while page 3 is being read: page 3 is finished and stored, 4 and 5 never read.
    with pytest.raises(Cancelled):
        _extract(tmp_path, PagedConnector(after=lambda n: stop.set() if n == 2 else None), stop)
    store = StateStore(f"sqlite:///{tmp_path / 'crmsync.db'}")
    assert _stored(store) == 30
    assert store.checkpoint("shop", "contacts") == {"page": 3}


def test_a_failed_read_stores_the_pages_before_it(tmp_path: Path) -> None:
    def fail(number: int) -> None:
        if number == 3:
            raise ApiError("shop", "the vendor fell over")

    with pytest.raises(ApiError):
        _extract(tmp_path, PagedConnector(after=fail), threading.Event())
    store = StateStore(f"sqlite:///{tmp_path / 'crmsync.db'}")
    assert _stored(store) == 30
    assert store.checkpoint("shop", "contacts") == {"page": 3}


class _OrdersWithFacts:
    """The attributes `Extractor.facts_due` reads of a connector."""

    name = "shop"
    order_fields = {"discount": FieldSpec("discountCodes", "flag"), "categories": FieldSpec("lines", "labels")}

    def __init__(self, facts: bool, lines: bool) -> None:
        self.read_order_facts = facts
        self.read_order_lines = lines


def test_the_one_full_read_for_order_facts_starts_afresh_and_is_forgotten_when_facts_are_off(tmp_path: Path) -> None:
    from sync.extract import ORDER_FACTS

    (tmp_path / "crmsync.toml").write_text(UNREACHABLE_SHOP_CONFIG)
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    try:
        extractor = Cycle(loaded, store, clock=lambda: NOW, stop_event=threading.Event()).extractor
        run = store.begin_run("test", NOW)
        # A full read left half-way before the facts were asked for: its position is dropped.
        store.set_checkpoint("shop", "orders@backfill", {"cursor": "half-way"}, run.seq)
        assert extractor.facts_due(_OrdersWithFacts(True, True), "orders", run)  # type: ignore[arg-type]
        assert store.checkpoint("shop", "orders@backfill") is None
        assert store.checkpoint("shop", ORDER_FACTS) == {"lines": True, "pending": True}
        # Interrupted: the next cycle resumes that read (its own position is kept).
        store.set_checkpoint("shop", "orders@backfill", {"cursor": "facts read"}, run.seq)
        assert extractor.facts_due(_OrdersWithFacts(True, True), "orders", run)  # type: ignore[arg-type]
        assert store.checkpoint("shop", "orders@backfill") == {"cursor": "facts read"}
        store.set_checkpoint("shop", ORDER_FACTS, {"lines": True, "at": "done"}, run.seq)
        assert not extractor.facts_due(_OrdersWithFacts(True, True), "orders", run)  # type: ignore[arg-type]
        assert not extractor.facts_due(_OrdersWithFacts(True, True), "contacts", run)  # type: ignore[arg-type]
        # Lines no longer asked: remembered, so asking again reads everything again.
        assert not extractor.facts_due(_OrdersWithFacts(True, False), "orders", run)  # type: ignore[arg-type]
        assert store.checkpoint("shop", ORDER_FACTS) == {"lines": False, "at": "done"}
        assert extractor.facts_due(_OrdersWithFacts(True, True), "orders", run)  # type: ignore[arg-type]
        # No facts read at all: the marker goes, and a system whose orders carry none never re-reads.
        assert not extractor.facts_due(_OrdersWithFacts(False, False), "orders", run)  # type: ignore[arg-type]
        assert store.checkpoint("shop", ORDER_FACTS) is None
        plain = _OrdersWithFacts(True, True)
        plain.order_fields = {}  # type: ignore[assignment]
        assert not extractor.facts_due(plain, "orders", run)  # type: ignore[arg-type]
    finally:
        store.close()


class ResumingConnector(PagedConnector):
    """As PagedConnector, but a read goes on after the page its checkpoint names."""

    resumes = True


def test_a_resumed_backfill_completes_the_read_but_its_count_is_no_full_read_for_read_swing(tmp_path: Path) -> None:
    """A backfill stopped after three pages and run again reads only the last two: the stream is
    read in full (the write gate's), but 20 of 50 is not what the vendor holds, and read_swing must
    not take it for a full read's count."""
    from sync.metrics import _full_reads

    stop = threading.Event()
    (tmp_path / "crmsync.toml").write_text(UNREACHABLE_SHOP_CONFIG)
    loaded = load_config(tmp_path / "crmsync.toml")
    store = StateStore(loaded.state_url())
    try:

        def read(connector: PagedConnector) -> tuple[Any, SystemOutcome]:
            cycle = Cycle(loaded, store, clock=lambda: NOW, stop_event=stop)
            run = store.begin_run("backfill", NOW)
            outcome = SystemOutcome("woocommerce")
            with contextlib.suppress(Cancelled):
                cycle._extract_stream(connector, outcome, run, "contacts", Kind.CONTACT, _mapper, True)  # type: ignore[arg-type]
            return run, outcome

        first, _ = read(ResumingConnector())
        assert _full_reads(store, first.run_id) == {"shop": {"contacts"}}
        read(ResumingConnector(after=lambda n: stop.set() if n == 2 else None))
        stop.clear()
        resumed, outcome = read(ResumingConnector())
        assert outcome.read_contacts == 20
        assert store.checkpoint("shop", "contacts@full") is not None  # complete, for the write gate
        assert _full_reads(store, resumed.run_id) == {}
    finally:
        store.close()
