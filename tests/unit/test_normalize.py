"""Every normaliser against the messy forms merchants' data holds, plus idempotence properties."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mapping.normalize import Invalid
from mapping.normalize.address import normalise_country, normalise_postcode, split_house_number, split_street
from mapping.normalize.email import email_match_key, is_role_address, normalise_email
from mapping.normalize.names import parse_name
from mapping.normalize.phone import parse_phone


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Jan.Jansen@Example.NL", "jan.jansen@example.nl"),
        ("  jan@example.nl  ", "jan@example.nl"),
        ("Jan Jansen <JAN@example.nl>", "jan@example.nl"),
        ('"Jan" <jan@example.nl>', "jan@example.nl"),
        ("mailto:Jan@Example.nl", "jan@example.nl"),
        ("mailto:jan@example.nl?subject=hoi", "jan@example.nl"),
        ("J.de Vries@Gmail.com", "j.devries@gmail.com"),  # a typed space: no address has one
        ("jan@bücher.de", "jan@xn--bcher-kva.de"),  # IDN domain to its ASCII form
        ("JAN@XN--BCHER-KVA.DE", "jan@xn--bcher-kva.de"),
        ("jan.jansen@example.nl.", "jan.jansen@example.nl"),
        ("müller@example.de", "müller@example.de"),  # an internationalised local part is kept
        ("jan@example.nl <Jan@Example.nl>", "jan@example.nl"),  # a display name that is the address
        ("<jan@example.nl>, <JAN@example.nl>", "jan@example.nl"),  # one address, twice
        ("Jan (werk) <mailto:jan@example.nl>", "jan@example.nl"),
        ("", None),
        (None, None),
    ],
)
def test_email(raw: object, clean: str | None) -> None:
    assert normalise_email(raw) == clean


@pytest.mark.parametrize("raw", ["jan@", "@example.nl", "jan@@example.nl", "jan@example", "jan..x@example.nl", 42])
def test_unusable_email_says_why(raw: object) -> None:
    result = normalise_email(raw)
    assert isinstance(result, Invalid) and result.reason in ("invalid_email", "wrong_type")


@pytest.mark.parametrize(
    "raw",
    [
        "Jan Jansen <jan@jansen.nl>; Marie Jansen <marie@jansen.nl>",
        "marie@jansen.nl, Jan <jan@jansen.nl>",
        "<jan@jansen.nl> <mailto:marie@jansen.nl>",
    ],
)
def test_a_field_with_two_peoples_addresses_is_nobodys(raw: str) -> None:
    """It kept the first address silently, which joined Marie's record to Jan's by email (the
    same field without brackets was already refused): whose record it is, the field cannot say."""
    result = normalise_email(raw)
    assert isinstance(result, Invalid) and result.reason == "invalid_email"
    assert "more than one email address" in result.message


def test_email_match_key_and_role_addresses() -> None:
    assert email_match_key("jan.jansen+shop@gmail.com") == email_match_key("janjansen@googlemail.com")
    assert email_match_key("jan.jansen+shop@example.nl") == "jan.jansen@example.nl"
    assert email_match_key("jan.jansen@example.nl") != email_match_key("janjansen@example.nl")  # dots matter here
    assert is_role_address("info@bedrijf.nl") and is_role_address("noreply@shop.nl")
    assert is_role_address("klantenservice+nl@shop.nl")
    assert not is_role_address("jan@bedrijf.nl")


@pytest.mark.parametrize(
    "address",
    ["info.nl@groothandel.nl", "info-amsterdam@x.nl", "sales.benelux@x.nl", "no_reply@x.nl", "no.reply@x.nl",
     "debiteuren@groothandel.nl", "crediteuren@x.nl", "helpdesk@x.nl", "customer.service@x.nl", "customerservice@x.nl"],
)  # fmt: skip
def test_a_role_address_is_known_by_its_first_word_or_its_words_run_together(address: str) -> None:
    """They counted as personal, so "debiteuren@" (the accounts department's) joined two of a
    wholesaler's contacts into one person (one record per system: under the shared-value limit)."""
    assert is_role_address(address)


@pytest.mark.parametrize("address", ["jan.jansen@x.nl", "jan-willem@x.nl", "infante@x.nl", "salesman.jan@x.nl"])
def test_a_persons_address_stays_personal(address: str) -> None:
    assert not is_role_address(address)
    assert is_role_address("boss@x.nl", frozenset({"boss"}))


@pytest.mark.parametrize(
    ("raw", "country", "e164", "kind"),
    [
        ("06-12345678", None, "+31612345678", "mobile"),
        ("0612345678", None, "+31612345678", "mobile"),
        ("06 1234 5678", None, "+31612345678", "mobile"),
        ("+31 (0)6 12 34 56 78", None, "+31612345678", "mobile"),
        ("0031 6 12345678", None, "+31612345678", "mobile"),
        ("+31612345678", None, "+31612345678", "mobile"),
        ("020-1234567", None, "+31201234567", "landline"),
        ("+31 (0)20 123 4567", None, "+31201234567", "landline"),
        ("010 - 123 45 67", "NL", "+31101234567", "landline"),
        ("+32 470 12 34 56", None, "+32470123456", "mobile"),
        ("0470 12 34 56", "BE", "+32470123456", "mobile"),  # the record's own country decides
        ("02 511 11 11", "BE", "+3225111111", "landline"),
        ("0151 23456789", "DE", "+4915123456789", "mobile"),
        ("+49 30 1234567", None, "+49301234567", "landline"),
    ],
)
def test_phone(raw: str, country: str | None, e164: str, kind: str) -> None:
    phone = parse_phone(raw, country)
    assert phone is not None and (phone.e164, phone.kind) == (e164, kind)
    assert phone.identifies == (kind == "mobile")


@pytest.mark.parametrize("raw", ["12345", "call me", "06-1234", "+31 6 1234567890123"])
def test_unparseable_phone_is_kept_raw_and_never_identifies(raw: str) -> None:
    phone = parse_phone(raw, None)
    assert phone is not None and phone.e164 is None and phone.raw == raw.strip()
    assert not phone.identifies


def test_empty_phone() -> None:
    assert parse_phone("   ", None) is None


@pytest.mark.parametrize(
    ("parts", "given", "infix", "family", "initials", "display", "sort_key"),
    [
        (("Jan", None, "de Vries"), "Jan", "de", "Vries", None, "Jan de Vries", "vries"),
        (("JAN", None, "VAN DER BERG"), "Jan", "van der", "Berg", None, "Jan van der Berg", "berg"),
        (("J.P.", None, "van der Berg"), None, "van der", "Berg", "J.P.", "J.P. van der Berg", "berg"),
        (("JP", "Van 'T", "hof"), None, "van 't", "Hof", "J.P.", "J.P. van 't Hof", "hof"),
        (("BO", None, "de Wit"), "Bo", "de", "Wit", None, "Bo de Wit", "wit"),
        (("Anna", "op de", "Beeck"), "Anna", "op de", "Beeck", None, "Anna op de Beeck", "beeck"),
        ((None, None, "Vries, de"), None, "de", "Vries", None, "de Vries", "vries"),
        (
            ("Maria", None, "JANSEN-DE VRIES"),
            "Maria",
            None,
            "Jansen-de Vries",
            None,
            "Maria Jansen-de Vries",
            "jansen-de vries",
        ),
        (("Piet", None, "ter Horst"), "Piet", "ter", "Horst", None, "Piet ter Horst", "horst"),
        (("Sanne", None, "den Hartog"), "Sanne", "den", "Hartog", None, "Sanne den Hartog", "hartog"),
        (("Fleur", None, "McDonald"), "Fleur", None, "McDonald", None, "Fleur McDonald", "mcdonald"),
        # Dutch IJ is one letter: both capitals (IJsbrand, IJzendoorn), never "Ijsbrand".
        (
            ("IJSBRAND", None, "VAN IJZENDOORN"),
            "IJsbrand",
            "van",
            "IJzendoorn",
            None,
            "IJsbrand van IJzendoorn",
            "ijzendoorn",
        ),
        (("ijsbrand", None, "ijzerman"), "IJsbrand", None, "IJzerman", None, "IJsbrand IJzerman", "ijzerman"),
        # ... but only before a consonant: an Igbo `Ijeoma` typed in lower case is no IJ.
        (("ijeoma", None, "okafor"), "Ijeoma", None, "Okafor", None, "Ijeoma Okafor", "okafor"),
        (("IJEOMA", None, "IJFF"), "Ijeoma", None, "IJff", None, "Ijeoma IJff", "ijff"),
    ],
)
def test_names(
    parts: tuple[str | None, str | None, str | None],
    given: str | None,
    infix: str | None,
    family: str,
    initials: str | None,
    display: str,
    sort_key: str,
) -> None:
    name = parse_name(*parts)
    assert name is not None
    assert (name.given, name.infix, name.family, name.initials) == (given, infix, family, initials)
    assert (name.display, name.sort_key) == (display, sort_key)


@pytest.mark.parametrize(
    ("full", "display"),
    [
        ("Jan de Vries", "Jan de Vries"),
        ("J.P. van der Berg", "J.P. van der Berg"),
        ("Jan Willem van den Heuvel", "Jan Willem van den Heuvel"),
        ("Vries, Jan de", "Jan de Vries"),
        ("Kees Jansen", "Kees Jansen"),
        ("JANSSEN", "Janssen"),
        ("de Vries", "de Vries"),  # no given name "De"
        ("van der Berg", "van der Berg"),
        ("van der berg", "van der Berg"),
        ("Van Dijk", "Van Dijk"),
        # All in lower case, a one-word tussenvoegsel may be a given name: it stays one.
        ("di huang", "Di Huang"),
        ("le thi hoa", "Le Thi Hoa"),
    ],
)
def test_full_names(full: str, display: str) -> None:
    name = parse_name(None, None, None, full)
    assert name is not None and name.display == display


@pytest.mark.parametrize(
    ("raw", "alpha2"),
    [
        ("Nederland", "NL"),
        ("Holland", "NL"),
        ("NLD", "NL"),
        ("The Netherlands", "NL"),
        ("nl", "NL"),
        ("België", "BE"),
        ("Belgie", "BE"),
        ("BE", "BE"),
        ("Duitsland", "DE"),
        ("Deutschland", "DE"),
        ("Germany", "DE"),
        ("DEU", "DE"),
        ("Frankrijk", "FR"),
        ("U.K.", "GB"),
        ("Curaçao", "CW"),
        # Dutch names beyond the neighbours (pycountry's Dutch translations) and the islands.
        ("Turkije", "TR"),
        ("Marokko", "MA"),
        ("Griekenland", "GR"),
        ("Tsjechië", "CZ"),
        ("Tsjechie", "CZ"),
        ("Hongarije", "HU"),
        ("Nieuw-Zeeland", "NZ"),
        ("IJsland", "IS"),
        ("oekraïne", "UA"),
        ("Bonaire", "BQ"),
        ("Sint Maarten", "SX"),
        ("Schotland", "GB"),
    ],
)
def test_countries(raw: str, alpha2: str) -> None:
    assert normalise_country(raw) == alpha2


def test_unknown_country_says_why() -> None:
    result = normalise_country("Atlantis")
    assert isinstance(result, Invalid) and result.reason == "unknown_country"


@pytest.mark.parametrize(
    ("raw", "country", "clean"),
    [
        ("1234ab", "NL", "1234 AB"),
        ("1234 ab", None, "1234 AB"),
        (" 1234AB ", "NL", "1234 AB"),
        ("B-1000", "BE", "1000"),
        ("1000", "BE", "1000"),
        ("10115", "DE", "10115"),
        ("D-10115", "DE", "10115"),
    ],
)
def test_postcodes(raw: str, country: str | None, clean: str) -> None:
    assert normalise_postcode(raw, country) == clean


@pytest.mark.parametrize(
    ("raw", "country"), [("0123 AB", "NL"), ("1234 SA", "NL"), ("12345", "NL"), ("100", "BE"), ("1011", "DE")]
)
def test_invalid_postcodes(raw: str, country: str) -> None:
    assert isinstance(normalise_postcode(raw, country), Invalid)


@pytest.mark.parametrize(
    ("raw", "number", "addition"),
    [
        ("12", 12, None),
        ("12-A", 12, "A"),
        ("12a", 12, "A"),
        ("12 bis", 12, "bis"),
        ("12hs", 12, "hs"),
        ("12 III", 12, "III"),
        ("12-2", 12, "2"),
        ("12/3", 12, "3"),
        ("1234 B", 1234, "B"),
    ],
)
def test_house_numbers(raw: str, number: int, addition: str | None) -> None:
    parsed = split_house_number(raw)
    assert parsed is not None and (parsed.number, parsed.addition) == (number, addition)


def test_street_with_number() -> None:
    street, number = split_street("Laan van Meerdervoort  1234 bis")
    assert (
        street == "Laan van Meerdervoort" and number is not None and (number.number, number.addition) == (1234, "bis")
    )
    assert split_street("Kerkplein") == ("Kerkplein", None)


# ----- properties: normalising a clean value changes nothing ---------------------------------
@given(st.emails())
def test_email_is_idempotent(address: str) -> None:
    once = normalise_email(address)
    if isinstance(once, str):
        assert normalise_email(once) == once


@given(st.from_regex(r"\A(\+31|0031|0)?[ -]?6[ -]?\d{4}[ -]?\d{4}\Z"))
def test_phone_is_idempotent(raw: str) -> None:
    once = parse_phone(raw, "NL")
    if once is not None and once.e164:
        again = parse_phone(once.e164, "NL")
        assert again is not None and again.e164 == once.e164 and again.kind == once.kind


@given(
    st.sampled_from(["jan", "JAN", "Anne-Marie", "j.p.", "Kees"]),
    st.sampled_from([None, "de", "van der", "VAN 'T", "op de"]),
    st.sampled_from(["vries", "BERG", "Jansen-de Vries", "Hof", "McDonald"]),
)
def test_names_are_idempotent(given_name: str, infix: str | None, family: str) -> None:
    once = parse_name(given_name, infix, family)
    assert once is not None
    again = parse_name(once.given or once.initials, once.infix, once.family)
    assert again == once


@given(st.sampled_from(["Nederland", "nl", "NLD", "België", "Duitsland", "Germany", "fr", "Frankrijk"]))
def test_country_is_idempotent(raw: str) -> None:
    once = normalise_country(raw)
    assert isinstance(once, str) and normalise_country(once) == once


@given(st.from_regex(r"\A[1-9]\d{3} ?[A-RT-Za-rt-z][A-Za-z]\Z"))
def test_postcode_is_idempotent(raw: str) -> None:
    once = normalise_postcode(raw, "NL")
    if isinstance(once, str):
        assert normalise_postcode(once, "NL") == once


def test_an_amount_keeps_every_digit_a_price_or_float_has_and_refuses_more() -> None:
    from decimal import Decimal

    from mapping.normalize.money import normalise_money

    assert normalise_money(0.30000000000000004) == Decimal("0.30000000000000004")  # a float's 17 digits
    assert normalise_money("99999999.99") == Decimal("99999999.99")
    assert normalise_money("1." + "0" * 27) == Decimal(1)  # 28 digits: kept
    refused = normalise_money("1." + "0" * 28)
    assert isinstance(refused, Invalid) and refused.reason == "invalid_amount"


@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str)
    | st.from_regex(r"\A-?[0-9]{1,40}(\.[0-9]{0,40})?(E[-+]?[0-9]{1,2})?\Z")
)
def test_an_amount_is_refused_for_its_digits_exactly_when_it_has_more_than_28(text: str) -> None:
    """Only a text longer than the limit has its digits counted: never a wrong verdict."""
    from decimal import Decimal

    from mapping.normalize.money import MAX_AMOUNT, MAX_DIGITS, normalise_money

    amount = Decimal(text)
    result = normalise_money(text)
    if abs(amount) > MAX_AMOUNT:
        assert isinstance(result, Invalid) and result.reason == "absurd_amount"
    elif len(amount.as_tuple().digits) > MAX_DIGITS:
        assert isinstance(result, Invalid) and result.reason == "invalid_amount", text
    else:
        assert result == amount, text


class _Text(str):
    """A str subclass: read the general way, never from what the normalisers remember by text."""


@given(
    st.decimals(allow_nan=True, allow_infinity=True, places=None).map(str)
    | st.from_regex(r"\A\s?-?[0-9]{1,40}(\.[0-9]{0,40})?(E[-+]?[0-9]{1,2})?\s?\Z")
    | st.sampled_from(["", " ", "0.00", "-0.00", "1E+5", "abc", "NaN", "-10.00"])
)
@example("0.00")
def test_an_amount_remembered_by_its_text_is_the_one_read_afresh(text: str) -> None:
    """normalise_money and normalise_refunded remember what a text made (Shopify's total, total
    before returns and refund are mostly two texts an order): the same value, digits and sign."""
    from mapping.normalize.money import normalise_money, normalise_refunded

    for normalise in (normalise_money, normalise_refunded):
        fresh = repr(normalise(_Text(text)))
        assert repr(normalise(text)) == fresh
        assert repr(normalise(text)) == fresh  # the second read, from memory


def test_an_id_written_as_a_whole_float_is_that_number_and_any_other_float_is_refused() -> None:
    from mapping.normalize.text import normalise_id

    assert normalise_id(40001.0) == "40001" and normalise_id(40001) == "40001" and normalise_id(" 7 ") == "7"
    for odd in (40001.5, float("nan"), float("inf")):
        refused = normalise_id(odd)
        assert isinstance(refused, Invalid) and refused.reason == "wrong_type", odd
    assert normalise_id(0.0) is None  # as 0: no customer


def test_a_number_is_read_in_its_records_country_and_a_dutch_one_kept_abroad_as_dutch() -> None:
    """A number valid in the record's country is that country's (Mannheim's 0621 is no Dutch
    mobile); one that is no number there at all is read as the default country's (a Dutch 06 on a
    Belgian or British address), not thrown away, so it still joins its owner's records."""
    cases = {
        ("0621 123456", "DE"): ("+49621123456", "landline"),
        ("0470 12 34 56", "BE"): ("+32470123456", "mobile"),
        ("06 12345678", "BE"): ("+31612345678", "mobile"),
        ("06 12345678", "GB"): ("+31612345678", "mobile"),
        ("06 12345678", "FR"): ("+33612345678", "mobile"),  # a French mobile: valid in France
        ("12", "BE"): (None, "invalid"),
    }
    for (raw, country), expected in cases.items():
        phone = parse_phone(raw, country)
        assert phone is not None and (phone.e164, phone.kind) == expected, (raw, country, phone)
    # The default country is the merchant's: a German shop reads a bare 06 on a Belgian address as German.
    german_home = parse_phone("06 12345678", "BE", "DE")
    assert german_home is not None and german_home.e164 == "+49612345678"


@given(st.one_of(st.text(), st.integers(), st.integers(min_value=10**254, max_value=10**300), st.booleans()))
@example("  ")
@example(0)
@example(-7)
def test_normalise_id_of_a_str_or_int_is_what_the_general_path_makes(value: object) -> None:
    """normalise_id answers a str or an int before its general checks: the same answer."""
    from mapping.normalize.text import _normalise_other_id, normalise_id

    assert normalise_id(value) == _normalise_other_id(value)


def test_normalise_currency_answers_a_text_met_before_as_the_first_time() -> None:
    from mapping.normalize.money import normalise_currency

    for value in ("eur ", "EUR", "XXX", "ABC", "euro", "", "usd"):
        first = normalise_currency(value)
        assert normalise_currency(value) == first
    assert normalise_currency("eur ") == "EUR"
    assert normalise_currency("XXX") == Invalid("invalid_currency", "not an ISO 4217 currency code")
    assert normalise_currency(["EUR"]) == Invalid("wrong_type", "expected a currency code, got list")
    assert normalise_currency("") is None
