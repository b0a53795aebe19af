"""Orders as read, merged by difference (sync/order_sources.py): the orders read again take their
old rows' places, new ones go where their row numbers say, and an order that moved from plain to
other (its contact deleted: now a guest's) leaves one part for the other."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from sync.order_sources import SOURCE_COLUMNS, OrderSources, attach_orders, merge_sources


def sources(plain: list[tuple[int, int, int]], others: list[tuple[int, int, int, str | None]]) -> OrderSources:
    """Rows of (order row, contact row, cents[, email]): plain ones, then the others."""
    rows = [(*row, None) for row in plain] + list(others)
    n = len(rows)
    return OrderSources(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.int64),
        np.arange(n, dtype=np.int64),
        np.ones(n, dtype=np.bool_),
        np.ones(n, dtype=np.bool_),
        plain=len(plain),
        emails=[r[3] for r in others],
    )


def rows_of(merged: OrderSources) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int, str | None]]]:
    order, contact, cents = merged.order.tolist(), merged.contact.tolist(), merged.cents.tolist()
    plain = [(order[i], contact[i], cents[i]) for i in range(merged.plain)]
    others = [
        (order[i], contact[i], cents[i], merged.emails[i - merged.plain]) for i in range(merged.plain, merged.size)
    ]
    return plain, others


def test_read_again_replace_new_insert_and_moved_change_part() -> None:
    stored = sources([(1, 10, 100), (3, 11, 300), (5, 12, 500)], [(2, -1, 200, "a@x.nl"), (6, 13, 600, None)])
    fresh = sources([(3, 11, 333), (7, 14, 700)], [(0, -1, 1, "z@x.nl"), (5, -1, 555, "b@x.nl")])
    merged = merge_sources(stored, fresh)
    assert merged is not None
    assert rows_of(merged) == (
        [(1, 10, 100), (3, 11, 333), (7, 14, 700)],
        [(0, -1, 1, "z@x.nl"), (2, -1, 200, "a@x.nl"), (5, -1, 555, "b@x.nl"), (6, 13, 600, None)],
    )
    for name in SOURCE_COLUMNS:
        assert merged.column(name).shape == (7,), name


def test_nothing_read_again_keeps_every_row_and_an_unordered_part_is_refused() -> None:
    stored = sources([(1, 10, 100), (3, 11, 300)], [(2, -1, 200, "a@x.nl")])
    same = merge_sources(stored, sources([], []))
    assert same is not None and rows_of(same) == rows_of(stored)
    assert merge_sources(sources([(3, 11, 300), (1, 10, 100)], []), sources([], [])) is None


def test_orders_attach_by_contact_row_else_a_guest_by_email() -> None:
    merged = sources([(1, 0, 100), (2, 2, 50)], [(3, -1, 10, "a@x.nl"), (4, -1, 20, "b@x.nl"), (5, 1, 5, None)])
    merged.known[4] = False  # another currency without a rate
    asked: list[set[str | None]] = []

    def guests(emails: Iterable[str | None]) -> dict[str | None, int]:
        asked.append(set(emails))
        return {"a@x.nl": 1}

    columns, unconverted = attach_orders(merged, np.array([0, -1, 1]), guests)
    assert asked == [{"a@x.nl", "b@x.nl"}]  # once, for the guests' addresses only
    assert columns.profile.tolist() == [0, 1, 1, -1, -1]
    assert columns.counts.tolist() == [True, True, True, False, False]
    assert unconverted == 0  # the order without a rate has no profile either: it would not count
    merged.contact[4] = 0
    columns, unconverted = attach_orders(merged, np.array([0, -1, 1]), lambda emails: {})
    assert columns.profile.tolist()[4] == 0 and not columns.counts[4] and unconverted == 1
    merged.contact[4] = 3  # past the contact rows read: refused, never clipped to another contact
    with pytest.raises(ValueError, match="contact row"):
        attach_orders(merged, np.array([0, -1, 1]), lambda emails: {})
