"""Phone numbers to E.164 with `phonenumbers`, in the record's own country or the default one.

Only mobile numbers identify a person: a landline or a switchboard is shared by a household or a
company, so it is kept and shown but never used to join records. A number that cannot be parsed is
kept raw and flagged, never used to match. Dutch mobiles in their usual spellings take a fast path
(`phonenumbers` costs ~45 us a call, bench/RESULTS.md); everything else goes through the library,
cached by raw value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from mapping.model import made_per_record

MOBILE = "mobile"
LANDLINE = "landline"
OTHER = "other"
INVALID = "invalid"

_KIND = {
    PhoneNumberType.MOBILE: MOBILE,
    PhoneNumberType.FIXED_LINE: LANDLINE,
    PhoneNumberType.VOIP: LANDLINE,
    PhoneNumberType.TOLL_FREE: LANDLINE,
    PhoneNumberType.SHARED_COST: LANDLINE,
    PhoneNumberType.PREMIUM_RATE: LANDLINE,
    PhoneNumberType.UAN: LANDLINE,
}

# 06-12345678, 0612345678, 06 1234 5678, +31 6 12345678, +31 (0)6 1234 5678, 0031 6 1234 5678.
# Only the 06 ranges that `phonenumbers` itself calls MOBILE (its NL metadata: `6[1-58]\d{7}`):
# 066 is PAGER (kind "other"), and 060, 067 and 069 are not valid numbers at all, so those go down
# the library path like everything else and the fast path can never disagree with it. ASCII digits
# only: `\d` would let Arabic-Indic digits through into the E.164 form.
_NL_MOBILE = re.compile(r"^(?:\+31|0031)?\(?0?\)?6([1-58][0-9]{7})$")
_STRIP = re.compile(r"[\s\-./]")


@made_per_record  # one or more for every contact mapped: built without frozen's per-field setattr
class Phone:
    raw: str
    e164: str | None
    kind: str

    @property
    def identifies(self) -> bool:
        """Whether this number may join records: a valid mobile number."""
        return self.kind == MOBILE and self.e164 is not None


def parse_phone(raw: str, country: str | None, default_country: str = "NL") -> Phone | None:
    """None for an empty value; otherwise a Phone whose kind says what it is good for."""
    text = raw.strip()
    if not text:
        return None
    region = (country or default_country).upper()
    compact = _STRIP.sub("", text)
    # "0031" dials out only where the international prefix is 00 (not from the US: 011), so for a
    # foreign record only "+31" takes the fast path; the library knows each region's own prefix.
    if region == "NL" or compact.startswith("+31"):
        fast = _NL_MOBILE.match(compact)
        if fast:
            return Phone(text, f"+316{fast.group(1)}", MOBILE)
    phone = _parse(text, region)
    home = default_country.upper()
    if phone.kind == INVALID and region != home:
        # No number of the record's country: one of the merchant's own, kept by a customer who
        # lives abroad (a Dutch 06 on a Belgian address). A number that is valid in the record's
        # country stays that country's (Mannheim's 0621 is no Dutch mobile).
        return parse_phone(text, home, home)
    return phone


@lru_cache(maxsize=200_000)
def _parse(text: str, region: str) -> Phone:
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return Phone(text, None, INVALID)
    # `is_valid_number` is `number_type` other than UNKNOWN: both find the number's region and ask
    # the same pattern helper of that region's metadata (the one check only `is_valid_number`
    # makes, the region's calling code against the number's, holds for a region found by that
    # code). One call answers both, where two cost ~30 % of a library-parsed number.
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        return Phone(text, None, INVALID)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Phone(text, e164, _KIND.get(kind, OTHER))


def numbers_in_text(text: str, regions: Iterable[str]) -> set[str]:
    """The E.164 form of every valid number `phonenumbers` finds in free text (a note, a field's
    value), in any spelling it knows ("06-12 34 56 78", "+31 (0)6 1234 5678", "0031 6 ..."); a
    number written without its country code is read as one of each of `regions` (none given: only
    numbers written with theirs)."""
    found: set[str] = set()
    for region in regions or ("ZZ",):
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            found.add(phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164))
    return found


def phone_region(e164: str) -> str | None:
    """The region (ISO 3166 code, "001" for a number of no country) a number in E.164 form
    belongs to; None where none does."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except NumberParseException:
        return None


def digits_in(text: str) -> str:
    """Every digit `phonenumbers` reads in `text` (full-width, Arabic-Indic and other scripts'
    too), as ASCII digits in order, nothing else: what a number in the text must show in a row."""
    return phonenumbers.normalize_digits_only(text)


def national_digits(e164: str) -> str | None:
    """The digits every spelling of a number in E.164 form holds in a row, whatever its
    separators, trunk or international prefix ("612345678" of +31612345678): what tells cheaply
    that a text cannot hold it."""
    try:
        return str(phonenumbers.parse(e164, None).national_number)
    except NumberParseException:
        return None
