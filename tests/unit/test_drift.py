"""The drift guard's evidence rules: strong evidence only (a page of at least `min_records` where
at least `share` lack one declared field or are refused for one reason), nulls and short lists are
data, not drift."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapping.model import Contact, Kind, Rejection, SourceRecord
from sync.drift import DriftDetected, DriftGuard, path_absent

GUARD = DriftGuard("shop", "contacts", "Example API v9", ("email", "address.zip"), min_records=10, share=0.9)


def records(payloads: list[dict[str, Any]]) -> list[SourceRecord]:
    return [SourceRecord("shop", Kind.CONTACT, str(i), None, p) for i, p in enumerate(payloads)]


def test_a_missing_key_is_absent_but_a_null_or_a_short_list_is_an_empty_value() -> None:
    assert path_absent({}, "email")
    assert path_absent({"address": {}}, "address.zip")
    assert not path_absent({"email": None}, "email")
    assert not path_absent({"address": None}, "address.zip")  # no address: the zip is empty
    assert not path_absent({"contacts": []}, "contacts.0.name")  # no contact person


def test_a_page_where_nearly_every_record_lacks_a_field_stops_the_stream() -> None:
    page = records([{"e_mail": f"p{i}@x.nl", "address": None} for i in range(9)] + [{"email": "a@x.nl"}])
    with pytest.raises(DriftDetected, match=r"Example API v9: the contacts stream stopped: 9 of 10 .*'email'"):
        GUARD.check_page(page, 3)


@pytest.mark.parametrize(
    "payloads",
    [
        [{"e_mail": "x", "address": None}] * 9,  # too few records to tell
        [{"e_mail": "x", "address": None}] * 8 + [{"email": "a", "address": None}] * 2,  # 80 %: below the share
        [{"email": None, "address": {"zip": None}}] * 50,  # empty values everywhere: data, not drift
    ],
)
def test_weak_evidence_lets_the_page_through(payloads: list[dict[str, Any]]) -> None:
    GUARD.check_page(records(payloads), 1)


def test_mapped_records_refused_for_one_reason_stop_the_stream() -> None:
    refused = [Rejection("missing_amount", "order has no total")] * 9
    with pytest.raises(
        DriftDetected, match=r"9 of 10 records would be quarantined for the same reason \(missing_amount"
    ):
        GUARD.check_mapped([*refused, Contact("shop", "x", None)])
    mixed = [Rejection("missing_amount", "m")] * 5 + [Rejection("invalid_email", "e")] * 5
    GUARD.check_mapped(mixed)  # refused, but not for one reason: the bad-input kind of page
    GUARD.check_mapped([Rejection("missing_amount", "m")] * 9)  # fewer than min_records


@given(
    holds=st.lists(st.booleans(), min_size=10, max_size=60),
    share=st.sampled_from([0.5, 0.8, 0.9, 0.95, 1.0]),
)
def test_the_guard_stops_exactly_where_counting_every_record_would(holds: list[bool], share: float) -> None:
    """The guard stops looking at a field once enough records hold it; wherever the records that
    hold it sit on the page, it fires exactly when the full count reaches the share, and names it."""
    guard = DriftGuard("shop", "contacts", "Example API v9", ("email",), min_records=10, share=share)
    page = records([{"email": "a@x.nl"} if held else {"e_mail": "a@x.nl"} for held in holds])
    missing = holds.count(False)
    if missing >= share * len(holds):
        with pytest.raises(DriftDetected, match=rf"stopped: {missing} of {len(holds)} records"):
            guard.check_page(page, 1)
    else:
        guard.check_page(page, 1)
