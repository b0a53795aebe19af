"""Canonical JSON is byte for byte what the standard library writes (the text and hash every stored
record already has), whichever encoder writes it; numbers JSON cannot hold survive a read, a store
and a remap as what the vendor sent."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping import jsontext
from sync.state.extracts import canonical_json


def standard(payload: Any) -> str:
    """The reference, written out here rather than taken from the module under test."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def scalars(non_finite: bool) -> st.SearchStrategy[Any]:
    return (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=non_finite, allow_infinity=non_finite)
        | st.text()
    )


def payloads(non_finite: bool) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars(non_finite),
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
        max_leaves=30,
    )


@settings(max_examples=400)
@given(payloads(non_finite=False))
def test_canonical_text_is_the_standard_encoders(payload: Any) -> None:
    assert canonical_json(payload) == standard(payload)


@settings(max_examples=300)
@given(payloads(non_finite=True))
def test_whatever_a_vendor_sends_is_stored_as_the_standard_encoder_writes_it(payload: Any) -> None:
    """NaN and infinities included: what `loads` reads from a vendor's text (as every connector and
    `remap` read it) is written back as the standard encoder writes the same values (a NUL, which
    no PostgreSQL text holds, as U+FFFD)."""
    sent = json.dumps(payload)
    assert canonical_json(jsontext.loads(sent)) == standard(replaced(json.loads(sent)))


@settings(max_examples=300)
@given(payloads(non_finite=True))
def test_the_bytes_hashed_are_the_canonical_texts_utf8(payload: Any) -> None:
    """`canonical_utf8`, what the extract store hashes and decodes for the stored text, is the
    canonical text encoded, on orjson's path and the standard encoder's alike (a lone surrogate,
    which UTF-8 cannot carry, refused by both)."""
    try:
        expected = canonical_json(payload).encode()
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            jsontext.canonical_utf8(payload)
        return
    assert jsontext.canonical_utf8(payload) == expected
    read = jsontext.loads(json.dumps(payload))
    assert jsontext.canonical_utf8(read) == canonical_json(read).encode()


def test_every_decade_of_floats_is_written_as_python_writes_it() -> None:
    """orjson and Python disagree on notation between 1e-9 and 1e-4 (`0.00001` against `1e-05`);
    every decade, both signs, random digits."""
    rng = random.Random(17)
    for exponent in range(-330, 309):
        for _ in range(30):
            value = rng.random() * 10.0**exponent if exponent > -308 else rng.random() * 1e-308
            for number in (value, -value, {"amount": value, "note": "e-mail 0.0000"}):
                assert canonical_json(number) == standard(number), number


def test_values_json_cannot_write_natively_are_written_as_the_standard_encoder_does() -> None:
    class Colour(StrEnum):
        RED = "red"

    odd = {
        "keys": {2: "an int key", 1: "another"},
        "big": 2**64 + 1,
        "small": -(2**63) - 1,
        "when": datetime(2026, 12, 5, 1, 2, 3, tzinfo=UTC),
        "price": Decimal("12.50"),
        "colour": Colour.RED,
        "controls": "\x00\x08\x0c\n\r\t\x1f\x7f\u2028\u0085",
        "tiny": 5.5e-07,
    }
    assert canonical_json(odd) == standard(odd)
    assert jsontext.canonical_utf8(odd) == standard(odd).encode()


def test_numbers_json_cannot_hold_are_kept_as_the_vendor_sent_them() -> None:
    """A vendor writing NaN or Infinity (Python's reader takes them; orjson would write `null`): the
    stored text says NaN, and a remap of the stored text reads NaN again."""
    body = jsontext.loads('{"total": NaN, "limit": Infinity, "floor": -Infinity, "huge": 1e400, "ok": 1.5}')
    assert all(isinstance(body[key], jsontext.NonFinite) for key in ("total", "limit", "floor", "huge"))
    assert type(body["ok"]) is float
    text = canonical_json(body)
    assert text == '{"floor":-Infinity,"huge":Infinity,"limit":Infinity,"ok":1.5,"total":NaN}'
    again = jsontext.loads(text)
    assert math.isnan(again["total"]) and again["huge"] == math.inf
    assert canonical_json(again) == text


@settings(max_examples=300)
@given(payloads(non_finite=True))
def test_a_reply_is_read_as_the_standard_library_reads_it(payload: Any) -> None:
    """Integers beyond 64 bits (which orjson would read as floats), NaN: every value comes back as
    `json.loads` gives it, of the same type (a NUL as U+FFFD)."""
    sent = json.dumps(payload)
    assert same(jsontext.loads(sent), replaced(json.loads(sent)))
    assert same(jsontext.loads(sent.encode()), replaced(json.loads(sent)))


def test_long_numbers_in_a_reply_keep_every_digit() -> None:
    text = '{"id": 123456789012345678901, "low": -9223372036854775809, "ok": 18446744073709551615}'
    body = jsontext.loads(text)
    assert body == {"id": 123456789012345678901, "low": -9223372036854775809, "ok": 18446744073709551615}
    assert all(type(value) is int for value in body.values())


def same(got: Any, expected: Any) -> bool:
    """Equal, of the same types all the way down, NaN equal to NaN."""
    if isinstance(expected, float) and isinstance(got, float):
        return (math.isnan(expected) and math.isnan(got)) or got == expected
    if type(got) is not type(expected):
        return False
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in expected)
    if isinstance(expected, list):
        return len(got) == len(expected) and all(same(g, e) for g, e in zip(got, expected, strict=True))
    return bool(got == expected)


# Text with lone surrogates (half of an emoji, as a UTF-16 writer leaves it) and NULs among other
# characters.
UNSTORABLE = st.characters(codec=None, categories=["Cs", "Ll", "So"], include_characters="\x00")
SURROGATE_TEXT = st.text(UNSTORABLE, max_size=6)
SURROGATE_PAYLOADS = st.recursive(
    SURROGATE_TEXT | st.integers(min_value=-(2**70), max_value=2**70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SURROGATE_TEXT, inner, max_size=4),
    max_leaves=12,
)


def replaced(value: Any) -> Any:
    """The reference: every lone surrogate and NUL as U+FFFD, written out here."""
    if isinstance(value, str):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF or c == "\x00" else c for c in value)
    if isinstance(value, list):
        return [replaced(v) for v in value]
    if isinstance(value, dict):
        return {replaced(k): replaced(v) for k, v in value.items()}
    return value


@settings(max_examples=300)
@given(SURROGATE_PAYLOADS)
def test_lone_surrogates_and_nul_are_read_as_replacement_characters(payload: Any) -> None:
    """Escaped (as JavaScript writes them) or a surrogate as raw bytes (read with "surrogatepass"),
    long numbers beside them or not: the values are the standard reader's with every lone
    surrogate and NUL as U+FFFD, and what is stored of them is UTF-8 without NUL."""
    sent = json.dumps(payload)  # ASCII: every surrogate as an escape
    raw = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    for text in (sent, sent.encode(), raw):
        assert same(jsontext.loads(text), replaced(json.loads(text)))
        stored = canonical_json(jsontext.loads(text))
        assert "\x00" not in stored and stored.encode()  # a store can hold it


@settings(max_examples=300)
@given(SURROGATE_PAYLOADS | payloads(non_finite=True), st.booleans())
def test_a_reply_read_from_its_bytes_is_read_as_from_its_text(payload: Any, ascii_only: bool) -> None:
    """`loads_reply` reads a reply's bytes where `loads` read the text requests decoded from them
    (UTF-8, invalid bytes replaced): the same values, of the same types, whatever the bytes hold
    (non-ASCII text, surrogates as raw bytes, which are no UTF-8, long numbers, NaN)."""
    content = json.dumps(payload, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    text = content.decode("utf-8", "replace")
    assert same(jsontext.loads_reply(content, text), jsontext.loads(text))


def test_a_reply_with_bytes_that_are_no_utf8_reads_as_its_replaced_text() -> None:
    content = b'{"name": "Ren\xe9e", "id": 123456789012345678901}'  # Latin-1 in a UTF-8 reply
    text = content.decode("utf-8", "replace")
    assert jsontext.loads_reply(content, text) == {"name": "Ren\ufffde", "id": 123456789012345678901}
    with pytest.raises(ValueError):
        jsontext.loads_reply(b'{"cut": ', '{"cut": ')
    # Nested deeper than the standard reader goes: orjson still reads the replaced text, as before.
    deep = b"[" * 1000 + b'"\xff"' + b"]" * 1000
    value = jsontext.loads_reply(deep, deep.decode("utf-8", "replace"))
    for _ in range(1000):
        [value] = value
    assert value == "\ufffd"


def test_a_surrogate_pair_stays_the_character_it_makes() -> None:
    assert jsontext.loads('{"n": "Sanne \\ud83c\\udf37", "big": 123456789012345678901}')["n"] == "Sanne 🌷"
    assert jsontext.loads('["\\ud83c", "\\udf37"]') == ["\ufffd", "\ufffd"]  # two halves apart
