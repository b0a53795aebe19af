"""The Dutch-mobile fast path in `parse_phone` against `phonenumbers` alone (issue 13).

Only mobiles join records, so a number must get one E.164 form and one kind however it is written:
the fast path may claim only what the library would say itself, for every Dutch range and spelling.
"""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberType

from mapping.normalize import phone as phone_module
from mapping.normalize.phone import _KIND, INVALID, MOBILE, OTHER, parse_phone

Result = tuple[str | None, str]


# Any Dutch national number, as the library's metadata has it: a bare "31" is taken for the
# country code only when the digits with it could not be a national number themselves.
def _nl_national_pattern() -> re.Pattern[str]:
    metadata = PhoneMetadata.metadata_for_region("NL")
    assert metadata is not None and metadata.general_desc is not None
    pattern = metadata.general_desc.national_number_pattern
    assert isinstance(pattern, str)
    return re.compile(pattern)


_NL_NATIONAL = _nl_national_pattern()

AGREEMENT = settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def library_only(text: str, region: str) -> Result:
    """What `phonenumbers` alone says about `text`, in the module's kinds: no fast path, no cache."""
    try:
        number = phonenumbers.parse(text.strip(), region)
    except NumberParseException:
        return None, INVALID
    if not phonenumbers.is_valid_number(number):
        return None, INVALID
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, _KIND.get(phonenumbers.number_type(number), OTHER)


def reference(text: str, country: str | None) -> Result:
    """What `parse_phone` must say: the library's reading in the record's country, and where that
    is no number at all, its reading in the default country (NL): a Dutch number kept abroad."""
    region = (country or "NL").upper()
    found = library_only(text, region)
    return library_only(text, "NL") if found[1] == INVALID and region != "NL" else found


def module(text: str, region: str | None) -> Result:
    parsed = parse_phone(text, region)
    assert parsed is not None
    return parsed.e164, parsed.kind


# ----- every Dutch range, as (area code, subscriber digits) without the trunk 0 ----------------
_MOBILE_LIKE = [(f"6{second}", 7) for second in range(10)]  # 060 ... 069, pagers and data ranges included
_AREA_2 = ["10", "13", "15", "20", "23", "24", "26", "30", "33", "35", "36", "38", "40", "43", "45", "46"]
_AREA_2 += ["50", "53", "55", "58", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79"]
_AREA_3 = ["111", "113", "114", "115", "117", "118", "161", "162", "164", "165", "166", "167", "168", "172"]
_AREA_3 += ["174", "180", "181", "182", "183", "184", "186", "187", "222", "223", "224", "226", "227", "228"]
_AREA_3 += ["229", "251", "252", "255", "294", "297", "299", "313", "314", "315", "316", "317", "318", "320"]
_AREA_3 += ["321", "341", "342", "343", "344", "345", "346", "347", "348", "411", "412", "413", "416", "418"]
_AREA_3 += ["475", "478", "481", "485", "486", "487", "488", "492", "493", "495", "497", "499", "511", "512"]
_AREA_3 += ["513", "514", "515", "516", "517", "518", "519", "521", "522", "523", "524", "525", "527", "528"]
_AREA_3 += ["529", "541", "543", "544", "545", "546", "547", "548", "561", "562", "566", "570", "571", "572"]
_AREA_3 += ["573", "575", "577", "578", "591", "592", "593", "594", "595", "596", "597", "598", "599"]
_RANGES = (
    _MOBILE_LIKE
    + [(area, 7) for area in _AREA_2]
    + [(area, 6) for area in _AREA_3]
    + [("85", 7), ("88", 7), ("84", 7), ("87", 7), ("91", 7)]  # VOIP / UAN / personal
    + [("800", n) for n in (4, 5, 6, 7)]  # toll free
    + [(code, n) for code in ("900", "906", "909") for n in (4, 5, 6, 7)]  # premium rate
    + [("970", 8), ("97", 9), ("97", 7)]  # M2M: 097 0x xxxxxxx, and a wrong length
    + [("6", 7), ("6", 9), ("66", 6), ("66", 8), ("61", 6), ("61", 8)]  # one digit short or long
)


@st.composite
def dutch_numbers(draw: st.DrawFn) -> tuple[str, str]:
    area, length = draw(st.sampled_from(_RANGES))
    subscriber = draw(st.text("0123456789", min_size=length, max_size=length))
    return area, subscriber


_SEPARATORS = ["", " ", "-", ".", " - ", "/", "  "]
_PADDING = ["", " ", "  ", "\t", " \n"]


@st.composite
def spellings(draw: st.DrawFn, area: str, subscriber: str) -> str:
    """One way a person or a form could have written 0<area><subscriber>."""
    head_sep = draw(st.sampled_from(["", " ", "-"]))
    head = draw(
        st.sampled_from(
            [
                f"0{area}",
                f"(0{area})",
                f"(0){area}",
                f"+31{head_sep}{area}",
                f"+31{head_sep}(0){area}",
                f"+31{head_sep}(0) {area}",
                f"+31{head_sep}0{area}",
                f"0031{head_sep}{area}",
                f"0031{head_sep}(0){area}",
                f"31{head_sep}{area}",
            ]
        )
    )
    sep = draw(st.sampled_from(_SEPARATORS))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(subscriber) - 1)), max_size=3)))
    groups = [subscriber[start:end] for start, end in zip([0, *cuts], [*cuts, len(subscriber)], strict=True)]
    between = draw(st.sampled_from(["", " ", "-", " - ", "."]))
    body = sep.join(group for group in groups if group)
    return draw(st.sampled_from(_PADDING)) + head + between + body + draw(st.sampled_from(_PADDING))


@AGREEMENT
@given(st.data(), dutch_numbers(), st.sampled_from(["NL", "nl", None, "BE", "DE", "GB", "US", "JP"]))
def test_parse_phone_agrees_with_phonenumbers_on_every_dutch_range(
    data: st.DataObject, number: tuple[str, str], country: str | None
) -> None:
    text = data.draw(spellings(*number))
    assert module(text, country) == reference(text, country)


@AGREEMENT
@given(st.data(), dutch_numbers())
def test_every_spelling_of_one_dutch_number_gives_one_result(data: st.DataObject, number: tuple[str, str]) -> None:
    area, subscriber = number
    canonical = library_only(f"+31{area}{subscriber}", "NL")  # valid or not, every spelling must say the same
    for _ in range(5):
        text = data.draw(spellings(area, subscriber))
        if text.strip().startswith("31") and _NL_NATIONAL.fullmatch(f"31{area}{subscriber}"):
            continue  # "31 800 1234" is also the national number 0318 001234: the library reads it so
        assert module(text, "NL") == canonical, text


# ----- the fast path's 06 ranges are exactly the ones the library calls MOBILE ---------------
@pytest.mark.parametrize("second", range(10))
def test_fast_path_takes_an_06_range_only_if_phonenumbers_calls_it_mobile(
    second: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    tails = [f"{n:07d}" for n in range(0, 10_000_000, 99_991)]  # ~100 spread over the whole range
    library_types = {phonenumbers.number_type(phonenumbers.parse(f"+316{second}{tail}", "NL")) for tail in tails}
    library_says_mobile = library_types == {PhoneNumberType.MOBILE}
    assert len(library_types) == 1, f"06{second} is split by the library: {library_types}"

    taken = all(phone_module._NL_MOBILE.match(f"06{second}{tail}") for tail in tails)
    skipped = not any(phone_module._NL_MOBILE.match(f"06{second}{tail}") for tail in tails)
    assert taken or skipped
    assert taken == library_says_mobile, f"06{second}: library says {library_types}, fast path taken={taken}"

    if taken:  # and it really is fast: no trip to the library for a mobile
        monkeypatch.setattr(phone_module, "_parse", _no_library)
        assert module(f"06-{second}1234567", "NL") == (f"+316{second}1234567", MOBILE)


def _no_library(text: str, region: str) -> phone_module.Phone:
    raise AssertionError(f"the fast path sent {text!r} ({region}) to phonenumbers")


def test_pager_number_is_one_thing_however_written() -> None:
    dashed = parse_phone("06-61234567", "NL")
    bracketed = parse_phone("(06) 61234567", "NL")
    assert dashed is not None and bracketed is not None
    assert (dashed.e164, dashed.kind) == (bracketed.e164, bracketed.kind)
    assert dashed.kind != MOBILE and not dashed.identifies and not bracketed.identifies


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("06١٢٣٤٥٦٧٨", "NL"),  # Arabic-Indic digits: the E.164 form must be ASCII
        ("0031 6 12345678", "US"),  # 00 does not dial out from the US (011 does): read as Dutch then
        ("0031 6 12345678", "JP"),
        ("06-71234567", "NL"),
        ("06-91234567", "NL"),
        ("06-01234567", "NL"),
        ("31 800 1234", "NL"),  # read as the 0318 landline, by the library too
    ],
)
def test_fast_path_edge_cases_match_the_library(raw: str, country: str) -> None:
    assert module(raw, country) == reference(raw, country)
