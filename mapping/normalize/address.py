"""Countries, postcodes and house numbers, Dutch first.

Countries from codes, English and Dutch names and common aliases to ISO 3166 alpha-2 (pycountry,
its Dutch translations of the country names, plus an alias table). Postcodes are checked by
country (NL `1234 AB`, BE and AT `1234`, DE `12345`).
House numbers split into number and addition (`12-A`, `12 bis`, `12hs`, `12 III`).
"""

from __future__ import annotations

import gettext
import re
import unicodedata
from functools import lru_cache
from typing import Any

import pycountry

from mapping.model import made_per_record
from mapping.normalize.base import Invalid, type_name

_ALIASES = {
    "nederland": "NL", "holland": "NL", "the netherlands": "NL", "netherlands": "NL", "nl": "NL",
    "nld": "NL", "pays-bas": "NL", "niederlande": "NL", "nederlân": "NL", "hollande": "NL",
    "belgie": "BE", "belgië": "BE", "belgique": "BE", "belgium": "BE", "belgien": "BE", "bel": "BE",
    "duitsland": "DE", "deutschland": "DE", "germany": "DE", "allemagne": "DE", "deu": "DE",
    "frankrijk": "FR", "france": "FR", "luxemburg": "LU", "luxembourg": "LU", "engeland": "GB",
    "england": "GB", "verenigd koninkrijk": "GB", "united kingdom": "GB", "uk": "GB", "great britain": "GB",
    "groot-brittannie": "GB", "groot-brittannië": "GB", "spanje": "ES", "italie": "IT", "italië": "IT",
    "oostenrijk": "AT", "zwitserland": "CH", "denemarken": "DK", "zweden": "SE", "noorwegen": "NO",
    "polen": "PL", "portugal": "PT", "ierland": "IE", "verenigde staten": "US", "usa": "US",
    "united states": "US", "curacao": "CW", "curaçao": "CW", "suriname": "SR", "aruba": "AW",
    "amerika": "US", "schotland": "GB", "scotland": "GB", "wales": "GB", "noord-ierland": "GB",
    "northern ireland": "GB", "bonaire": "BQ", "sint eustatius": "BQ", "saba": "BQ", "sint maarten": "SX",
}  # fmt: skip


def _fold(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(plain.lower().replace(".", "").split())


_FOLDED_ALIASES = {_fold(k): v for k, v in _ALIASES.items()}


def normalise_country(value: Any) -> str | Invalid | None:
    if value is None or value is False or value == "":
        return None
    if not isinstance(value, str):
        return Invalid("wrong_type", f"expected a country, got {type_name(value)}")
    return _country(value.strip())


@lru_cache(maxsize=4096)
def _country(text: str) -> str | Invalid | None:
    if not text:
        return None
    folded = _fold(text)
    if folded in _FOLDED_ALIASES:
        return _FOLDED_ALIASES[folded]
    found = None
    if len(folded) == 2:
        found = pycountry.countries.get(alpha_2=folded.upper())
    elif len(folded) == 3:
        found = pycountry.countries.get(alpha_3=folded.upper())
    if found is None:
        try:
            found = pycountry.countries.lookup(text)
        except LookupError:
            found = None
    if found is None:
        code = _dutch_names().get(folded)
        return code if code is not None else Invalid("unknown_country", "not a country name or code")
    return str(found.alpha_2)


@lru_cache(maxsize=1)
def _dutch_names() -> dict[str, str]:
    """Folded Dutch country name -> alpha-2 (`Turkije` -> TR, `Tsjechië` -> CZ), from the
    ISO 3166-1 translations pycountry ships (package data, read once, like its own database). A
    Dutch name that two countries share is left out: it cannot say which one."""
    try:
        dutch = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["nl"])
    except OSError:
        return {}
    found: dict[str, str | None] = {}
    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            english = getattr(country, attr, None)
            if english:
                name = _fold(dutch.gettext(english))
                code = str(country.alpha_2)
                found[name] = code if found.get(name, code) == code else None
    return {name: code for name, code in found.items() if code is not None}


_NL_POSTCODE = re.compile(r"^([1-9]\d{3})\s?([A-Za-z]{2})$")
_FOUR_DIGITS = re.compile(r"^(?:[A-Za-z]{1,2}-?)?([1-9]\d{3})$")  # B-1000 is still written
_DE_POSTCODE = re.compile(r"^(?:D-?)?(\d{5})$", re.I)


def normalise_postcode(value: str, country: str | None) -> str | Invalid:
    """`1234ab` -> `1234 AB` for NL (SA, SD and SS are never issued); `B-1000` -> `1000` for BE."""
    text = value.strip().upper()
    if country in (None, "NL"):
        match = _NL_POSTCODE.match(text)
        if match and match.group(2) not in ("SA", "SD", "SS"):
            return f"{match.group(1)} {match.group(2)}"
        if country == "NL":
            return Invalid("invalid_postcode", "not a Dutch postcode (1234 AB)")
    if country in ("BE", "AT", "LU", "CH", "DK"):
        match = _FOUR_DIGITS.match(text.replace(" ", ""))
        return match.group(1) if match else Invalid("invalid_postcode", f"not a {country} postcode (four digits)")
    if country == "DE":
        match = _DE_POSTCODE.match(text.replace(" ", ""))
        return match.group(1) if match else Invalid("invalid_postcode", "not a German postcode (five digits)")
    return " ".join(text.split()) if text else Invalid("invalid_postcode", "empty postcode")


_HOUSE = re.compile(
    r"^(\d{1,5})\s*(?:[-/]\s*)?([A-Za-z0-9]{0,6}(?:\s?(?:bis|hs|huis|boven|beneden|bg|rd|[IVX]{1,4}))?)$", re.I
)
_STREET_NUMBER = re.compile(r"^(.*?\D)\s+(\d{1,5}\s*[-/]?\s*[A-Za-z0-9]{0,6}(?:\s?\S{0,6})?)$")


@made_per_record  # one or more for every contact mapped: built without frozen's per-field setattr
class HouseNumber:
    number: int
    addition: str | None


def split_house_number(value: str) -> HouseNumber | None:
    """`12-A` -> 12, `A`; `12 bis` -> 12, `bis`; `12hs` -> 12, `hs`; `12` -> 12, None."""
    text = " ".join(value.strip().split())
    match = _HOUSE.match(text)
    if not match:
        return None
    addition = match.group(2).strip() or None
    if addition and addition.isalpha() and len(addition) == 1:
        addition = addition.upper()
    return HouseNumber(int(match.group(1)), addition)


def split_street(value: str) -> tuple[str, HouseNumber | None]:
    """`Hoofdstraat 12-A` -> (`Hoofdstraat`, 12 / A); a street without a number stays whole."""
    text = " ".join(value.strip().split())
    match = _STREET_NUMBER.match(text)
    if match:
        number = split_house_number(match.group(2))
        if number is not None:
            return match.group(1).strip(), number
    return text, None
