"""Dutch and Flemish personal names: given name, tussenvoegsel, family name, and the sort key.

`VAN DER BERG` -> family `Berg`, tussenvoegsel `van der`, shown `van der Berg`, sorted under `Berg`.
Systems split names differently (AFAS has an infix field, Shopify only first/last, some only a full
name); this module takes whatever parts exist and returns the same answer for the same person.
Flemish names keep a capital tussenvoegsel (`Van Damme`) only when the source wrote it so: without a
given name before it, Dutch lower case is the convention we use.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from mapping.model import made_per_record

# Longest first, so "van der" wins over "van".
_TUSSENVOEGSEL_TEXT = """
van|de|der|den|het|'t|te|ten|ter|in|op|onder|uit|voor|aan|bij|over|tot|la|le|du|di|da|del|della|von|zu|
vom|van de|van der|van den|van het|van 't|van ter|van ten|van te|in de|in den|in het|in 't|op de|op den|
op het|op 't|op ten|op ter|uit de|uit den|uit het|uit 't|voor de|voor den|voor in 't|aan de|aan den|
aan het|aan 't|bij de|bij den|over de|onder de|onder den|de la|de le|von der|von dem|van de la|tot de|ten de
"""
TUSSENVOEGSELS = tuple(
    sorted(
        {t.strip() for t in _TUSSENVOEGSEL_TEXT.replace("\n", "").split("|") if t.strip()},
        key=lambda t: (-len(t.split()), t),
    )
)
_TV_SET = frozenset(TUSSENVOEGSELS)
_INITIALS = re.compile(r"^(?:[A-Za-z]\.?){1,4}$")
_SPACES = re.compile(r"\s+")


@made_per_record  # one or more for every contact mapped: built without frozen's per-field setattr
class Name:
    given: str | None
    infix: str | None  # the tussenvoegsel, lower case ("van der")
    family: str | None
    initials: str | None  # "J.P." when the given name is only initials

    @property
    def sort_key(self) -> str | None:
        """Family name without tussenvoegsel: `van der Berg` sorts under B."""
        return self.family.casefold() if self.family else None

    @property
    def family_display(self) -> str | None:
        if not self.family:
            return None
        return f"{self.infix} {self.family}" if self.infix else self.family

    @property
    def display(self) -> str:
        return " ".join(p for p in (self.given or self.initials, self.family_display) if p)


def parse_name(given: str | None, infix: str | None, family: str | None, full: str | None = None) -> Name | None:
    """From separate parts when the source has them, else from a full name."""
    parts = (_clean(given), _clean(infix), _clean(family), _clean(full))
    if not any(parts):
        return None
    return _parse(*parts)


def _clean(text: str | None) -> str | None:
    if not text:
        return None
    return _cleaned(text)


# Given and family names repeat across a base (and across its systems): cleaning one again costs
# a Unicode normalisation and a regular expression, a look-up here a tenth of that.
@lru_cache(maxsize=100_000)
def _cleaned(text: str) -> str | None:
    text = _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip(" ,;")
    return text or None


@lru_cache(maxsize=200_000)
def _parse(given: str | None, infix: str | None, family: str | None, full: str | None) -> Name:
    if family is None and given is None and full:
        given, infix, family = _split_full(full)
    elif family is not None and infix is None:
        # "Vries, de" (the sorted form some systems store) and "de Vries" in the family field.
        if "," in family:
            surname, _, prefix = family.partition(",")
            if prefix.strip().lower() in _TV_SET:
                infix, family = prefix.strip(), surname.strip()
        if infix is None:
            infix, family = _leading_infix(family)
    initials = None
    if given and _looks_like_initials(given):
        initials = ".".join(c.upper() for c in given if c.isalpha()) + "."
        given = None
    return Name(
        given=_capitalise(given) if given else None,
        infix=infix.lower() if infix else None,
        family=_capitalise(family) if family else None,
        initials=initials,
    )


def _looks_like_initials(given: str) -> bool:
    """`J.P.`, `J. P.`, `JP`: dotted letters, or a few capitals without a vowel (not `BO`, `JAN`)."""
    compact = given.replace(" ", "")
    if not _INITIALS.match(compact):
        return False
    return "." in compact or (compact.isupper() and len(compact) <= 3 and not set(compact) & set("AEIOUY"))


def _leading_infix(family: str) -> tuple[str | None, str]:
    words = family.split(" ")
    for size in (3, 2, 1):
        if len(words) > size and " ".join(words[:size]).lower() in _TV_SET:
            return " ".join(words[:size]), " ".join(words[size:])
    return None, family


def _split_full(full: str) -> tuple[str | None, str | None, str | None]:
    """`Jan de Vries`, `J.P. van der Berg`, `Vries, Jan de`."""
    if "," in full:
        family_part, _, rest = full.partition(",")
        rest_words = rest.split()
        infix_words: list[str] = []
        while rest_words and rest_words[-1].lower() in {w for t in _TV_SET for w in t.split()}:
            infix_words.insert(0, rest_words.pop())
        return (" ".join(rest_words) or None, " ".join(infix_words) or None, family_part.strip() or None)
    words = full.split(" ")
    if len(words) == 1:
        return None, None, words[0]
    if words[0].islower():
        # "de Vries": a name that starts with a tussenvoegsel in lower case, the rest capitalised,
        # has no given name ("Van Dijk" may be a given name and a family name: that stays as
        # written). Typed all in lower case, only a tussenvoegsel of several words ("van der
        # berg") says so: "di huang" and "le thi hoa" start with a given name, which a phone's
        # join must then agree with (a given name dropped would let it join anybody).
        infix, family = _leading_infix(full)
        if infix is not None and (not full.islower() or " " in infix):
            return None, infix, family
    given = words[0]
    infix, family = _leading_infix(" ".join(words[1:]))
    # Two given names ("Jan Willem de Vries"): the infix marks where the family name starts.
    if infix is None:
        for i in range(2, len(words)):
            candidate, rest = _leading_infix(" ".join(words[i:]))
            if candidate is not None:
                return " ".join(words[:i]), candidate, rest
    return given, infix, family


def _capitalise(text: str) -> str:
    """`JANSEN-DE VRIES` -> `Jansen-de Vries`; a name already in mixed case (`McDonald`,
    `d'Ancona`) is kept as the source wrote it."""
    if text != text.upper() and text != text.lower():
        return text
    segments = text.lower().split("-")
    out = [_capitalise_words(segments[0])]
    for segment in segments[1:]:
        # A double family name keeps the second name's tussenvoegsel in lower case.
        infix, rest = _leading_infix(segment)
        out.append(f"{infix.lower()} {_capitalise_words(rest)}" if infix else _capitalise_words(segment))
    return "-".join(out)


def _capitalise_words(text: str) -> str:
    """Each word (and each part after an apostrophe) with a capital; Dutch `ij` is one letter,
    capitalised whole: `ijzerman` -> `IJzerman`, `ijsbrand` -> `IJsbrand`. Only before a
    consonant: no Dutch word opens with `ij` and a vowel, names from elsewhere do (`Ijeoma`)."""
    words = []
    for word in text.split(" "):
        pieces = re.split(r"(')", word)
        words.append("".join(_capital(p) if p != "'" else p for p in pieces))
    return " ".join(words)


_VOWELS = frozenset("aeiouyáàâäéèêëíìîïóòôöúùûü")


def _capital(piece: str) -> str:
    if piece[:2] == "ij" and piece[2:3] not in _VOWELS:
        return "IJ" + piece[2:]
    return piece[:1].upper() + piece[1:]
