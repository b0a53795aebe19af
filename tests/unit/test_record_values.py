"""The values made for every record read (`mapping.model.made_per_record`): frozen to the type
checker, plain slots at run time (for speed), hashing and comparing as frozen dataclasses do."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from mypy import api as mypy_api

from mapping.model import Contact, Kind, Order, Rejection, SourceRecord

ROOT = Path(__file__).resolve().parents[2]


def test_equal_values_hash_alike_and_replace_makes_a_new_one() -> None:
    first = Order("shop", "1", "c1", None, Decimal("10.00"), "EUR", datetime(2026, 1, 2, tzinfo=UTC))
    second = Order("shop", "1", "c1", None, Decimal("10.00"), "EUR", datetime(2026, 1, 2, tzinfo=UTC))
    assert first == second and hash(first) == hash(second)
    assert len({first, second, dataclasses.replace(first, amount=Decimal("11.00"))}) == 2
    assert hash(SourceRecord("s", Kind.CONTACT, "1", None, "x")) == hash(
        SourceRecord("s", Kind.CONTACT, "1", None, "x")
    )
    assert Rejection("a", "b") == Rejection("a", "b") and hash(Rejection("a", "b")) == hash(Rejection("a", "b"))
    contact = Contact("s", "1", None, email="a@example.com", links=("t:2",))
    assert contact == Contact("s", "1", None, email="a@example.com", links=("t:2",))
    assert not hasattr(contact, "__dict__")  # slots: no stray attribute can be set on one


def test_the_type_checker_refuses_an_assignment_to_a_field(tmp_path: Path) -> None:
    snippet = tmp_path / "assigns.py"
    snippet.write_text(
        "from mapping.model import Contact, Order, RemoteState, SourceRecord\n"
        "def change(c: Contact, o: Order, s: SourceRecord, r: RemoteState) -> None:\n"
        "    c.email = 'x'\n"
        "    o.counts = False\n"
        "    s.payload = {}\n"
        "    r.known = False\n"
    )
    out, _, status = mypy_api.run([str(snippet), "--no-incremental", "--follow-imports=silent"])
    assert status == 1, out
    for line in (3, 4, 5, 6):
        assert f"assigns.py:{line}: error:" in out and "read-only" in out, out
