"""Vendor JSON in, canonical JSON out: one reading of a payload, and one text (and so one content
hash) per payload however often it is read or stored.

`canonical` is what the extract store hashes and keeps of every record (sorted keys, no spaces,
UTF-8 as is), so a record is stored again only when its content changed, and a remap (after the
mapping code changed, `ExtractStore.remap`) maps exactly what was read. It is orjson's encoder,
about eight times faster than the standard library's (bench/extract.py), with the standard
library's output: the text is the one the stores hold since the first release, and any payload
orjson would write differently goes to the standard encoder:
- a value orjson does not write natively (an int beyond 64 bits, a key that is not a string, a
  subclass of a builtin, a date or a dataclass) reaches `default`, which refuses it;
- a number JSON cannot hold (NaN, Infinity, a literal beyond a double's range) is read by `loads` as a
  `NonFinite`, a float subclass, so it takes that path too: orjson would write it as `null`, and the
  stored text would no longer say what the vendor sent. Every vendor reply, bulk file and `remap`
  is read through `loads`; a NaN made some other way (no connector makes one) would be written as
  `null`. Finding those in the output would cost a walk of every payload holding a null (most of
  them), which is what orjson saves.
Floats orjson writes in another notation than Python (`1e-05` as `0.00001`) are written by the
standard encoder too: `_python_notation` finds them from orjson's output alone.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

_STANDARD = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


class NonFinite(float):
    """NaN or an infinity as a vendor's JSON wrote it (not valid JSON, but Python's reader takes it):
    a float everywhere, and marked, so `canonical` writes it as the standard encoder does."""


def _non_finite_constant(name: str) -> float:
    return NonFinite(name)


def _float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(value)


# Built once: `json.loads` with hooks builds a new decoder on every call, which a bulk file's
# hundred thousand lines would each pay for.
_STANDARD_READER = json.JSONDecoder(parse_constant=_non_finite_constant, parse_float=_float)
# Every byte that is a digit as "0", every other byte as " ": 19 zeros in a row are a number of 19
# digits or more, in a string or not. Translating and searching is one pass in C.
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_NUMBER = b"0" * 19


def loads(text: str | bytes) -> Any:
    """A vendor's JSON, exactly as the standard library reads it, with numbers JSON cannot hold
    marked. orjson reads it, about twice as fast, wherever that gives the same values: it refuses
    NaN, Infinity, a literal beyond a double's range and a lone surrogate (the standard reader then
    reads the text), and it reads an integer beyond 64 bits as a float, silently, so a text holding
    a run of 19 digits or more (where such an integer could be) is read by the standard reader.
    One difference is left: a document nested about a thousand deep, which the standard reader
    gives up on (RecursionError), orjson reads (up to 1,024).

    And two on purpose, characters a store cannot hold, read as U+FFFD (as a lenient UTF-8 decoder
    reads bytes it cannot decode): a lone surrogate (half of a UTF-16 pair, which JSON can escape
    and writers that work in UTF-16 emit for a string cut inside an emoji), which UTF-8 cannot
    carry, and NUL (`\\u0000`), which PostgreSQL's text cannot. Stored as they are, they failed the
    page's write every cycle, and the system read nothing past them."""
    try:
        value = _read_fast(text.encode() if isinstance(text, str) else text)
    except UnicodeEncodeError:  # a lone surrogate in a str
        value = _UNREAD
    if value is not _UNREAD:
        return value
    if not isinstance(text, str):
        text = text.decode(json.detect_encoding(text), "surrogatepass")  # as json.loads reads bytes
    return _read_standard(text)


def loads_reply(content: bytes, text: str) -> Any:
    """`loads(text)` of a reply whose `text` is its `content` decoded as UTF-8 (invalid bytes
    replaced), without encoding the text again: orjson reads the bytes as they came, and where it
    cannot (an invalid byte among them, a long number), `loads(text)` reads the text."""
    value = _read_fast(content)
    return loads(text) if value is _UNREAD else value


_UNREAD = object()


def _read_fast(data: bytes) -> Any:
    """orjson's reading of UTF-8 `data`, or _UNREAD where it could differ from the standard
    reader's (see `loads`)."""
    try:
        if data.translate(_DIGITS).find(_LONG_NUMBER) < 0:
            value = orjson.loads(data)  # it refuses lone surrogates; NUL it reads
            # Most replies hold no backslash at all: that one byte is found by memchr, the escape
            # (six bytes, mostly digits) is searched for only where it could be.
            return storable(value) if b"\\" in data and _NUL_ESCAPE in data else value
    except orjson.JSONDecodeError:
        pass
    return _UNREAD


def _read_standard(text: str) -> Any:
    value = _STANDARD_READER.decode(text)
    return storable(value) if _UNSTORABLE.search(text) else value


_NUL_ESCAPE = b"\\u0000"
# NUL or a surrogate as an escape, or a surrogate as itself (text decoded with "surrogatepass", or
# a str handed in). A pair of surrogates reads as one character, which `storable` leaves alone.
_UNSTORABLE = re.compile(r"\\u0000|\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")


def storable(value: Any) -> Any:
    """`value` with every NUL and lone surrogate in its strings, keys included, as U+FFFD: what
    `loads` does to a reply, for vendor text that is not JSON."""
    if isinstance(value, str):
        return _UNSTORABLE_CHARACTER.sub("\ufffd", value)
    if isinstance(value, list):
        return [storable(item) for item in value]
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    return value


def compact(value: Any) -> str:
    """JSON of crmsync's own values (a contact row's details, links and owned state, an order's
    categories, a pushed state): compact and UTF-8, read back by any JSON reader. Every contact
    stored writes three of these; orjson takes about a fifth of the standard encoder's time."""
    return orjson.dumps(value).decode()


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _python_notation(text: bytes) -> bool:
    """Whether no float in orjson's output can read otherwise than Python writes it. Both write the
    shortest digits that read back, but for magnitudes from 1e-9 to 1e-4 not alike: Python writes
    `1e-05` and `5.5e-07`, orjson `0.00001` and `5.5e-7` (tests/unit/test_jsontext.py checks every
    decade). Strings may hold the same marks; a payload where either appears goes to the standard
    encoder, so this only needs to be cheap and never wrong one way."""
    if b"0.0000" in text:
        return False
    at = text.find(b"e-")
    while at != -1:
        if text[at - 1 : at].isdigit() and text[at + 2 : at + 3].isdigit() and not text[at + 3 : at + 4].isdigit():
            return False
        at = text.find(b"e-", at + 2)
    return True


def canonical(payload: Any) -> str:
    """The payload's canonical JSON text: byte for byte what the standard encoder writes with sorted
    keys, compact separators and UTF-8 kept."""
    return canonical_utf8(payload).decode()


def canonical_utf8(payload: Any) -> bytes:
    """`canonical(payload)` as UTF-8, without a text in between where orjson wrote it: the bytes a
    content hash is taken of (the extract store hashes every record read, and then decodes the same
    bytes once for the stored text)."""
    try:
        text = orjson.dumps(payload, default=_refuse, option=_OPTIONS)
    except TypeError:
        pass
    else:
        if _python_notation(text):
            return text
    return _STANDARD.encode(payload).encode()
