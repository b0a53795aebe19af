"""Postcode to region (mapping/regions.py): real postcodes land in their province or Land, the edges of the range
tables are where the sources put them, codes on a border or outside the tables give None, and the tables are sorted,
disjoint and name only real ISO 3166-2 subdivisions."""

from __future__ import annotations

from itertools import pairwise

import pycountry
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mapping.regions import RANGES, region_of

# Every code a table may return, so a table that forgets a region fails here rather than in a mailing.
ALL_CODES = {
    "NL": {f"NL-{c}" for c in ("DR", "FL", "FR", "GE", "GR", "LI", "NB", "NH", "OV", "UT", "ZE", "ZH")},
    "BE": {f"BE-{c}" for c in ("BRU", "VAN", "VBR", "VLI", "VOV", "VWV", "WBR", "WHT", "WLG", "WLX", "WNA")},
    "DE": {
        f"DE-{c}"
        for c in ("BW", "BY", "BE", "BB", "HB", "HH", "HE", "MV", "NI", "NW", "RP", "SL", "SN", "ST", "SH", "TH")
    },
}

# (country, postcode, place, region): checked against the place's province or Land, not against the tables.
REAL = [
    ("NL", "1012 AB", "Amsterdam", "NL-NH"),
    ("NL", "2011 AA", "Haarlem", "NL-NH"),
    ("NL", "1381 AA", "Weesp", "NL-NH"),
    ("NL", "1791 AA", "Den Burg (Texel)", "NL-NH"),
    ("NL", "3511 AA", "Utrecht", "NL-UT"),
    ("NL", "3811 AA", "Amersfoort", "NL-UT"),
    ("NL", "3901 AA", "Veenendaal", "NL-UT"),
    ("NL", "4141 AA", "Leerdam", "NL-UT"),
    ("NL", "2511 AA", "Den Haag", "NL-ZH"),
    ("NL", "3311 AA", "Dordrecht", "NL-ZH"),
    ("NL", "4201 AA", "Gorinchem", "NL-ZH"),
    ("NL", "9711 AA", "Groningen", "NL-GR"),
    ("NL", "9501 AA", "Stadskanaal", "NL-GR"),
    ("NL", "8911 AA", "Leeuwarden", "NL-FR"),
    ("NL", "9201 AA", "Drachten", "NL-FR"),
    ("NL", "8881 AA", "West-Terschelling", "NL-FR"),
    ("NL", "9401 AA", "Assen", "NL-DR"),
    ("NL", "7811 AA", "Emmen", "NL-DR"),
    ("NL", "7941 AA", "Meppel", "NL-DR"),
    ("NL", "9301 AA", "Roden", "NL-DR"),
    ("NL", "8011 AA", "Zwolle", "NL-OV"),
    ("NL", "7511 AA", "Enschede", "NL-OV"),
    ("NL", "7411 AA", "Deventer", "NL-OV"),
    ("NL", "8261 AA", "Kampen", "NL-OV"),
    ("NL", "6811 AA", "Arnhem", "NL-GE"),
    ("NL", "6511 AA", "Nijmegen", "NL-GE"),
    ("NL", "3841 AA", "Harderwijk", "NL-GE"),
    ("NL", "5301 AA", "Zaltbommel", "NL-GE"),
    ("NL", "1315 AA", "Almere", "NL-FL"),
    ("NL", "8232 AA", "Lelystad", "NL-FL"),
    ("NL", "8301 AA", "Emmeloord", "NL-FL"),
    ("NL", "3891 AA", "Zeewolde", "NL-FL"),
    ("NL", "4331 AA", "Middelburg", "NL-ZE"),
    ("NL", "4381 AA", "Vlissingen", "NL-ZE"),
    ("NL", "4531 AA", "Terneuzen", "NL-ZE"),
    ("NL", "5611 AA", "Eindhoven", "NL-NB"),
    ("NL", "4811 AA", "Breda", "NL-NB"),
    ("NL", "4611 AA", "Bergen op Zoom", "NL-NB"),
    ("NL", "6021 AA", "Budel", "NL-NB"),
    ("NL", "6211 AA", "Maastricht", "NL-LI"),
    ("NL", "5911 AA", "Venlo", "NL-LI"),
    ("NL", "6001 AA", "Weert", "NL-LI"),
    ("BE", "1000", "Brussel", "BE-BRU"),
    ("BE", "1050", "Ixelles", "BE-BRU"),
    ("BE", "1200", "Woluwe-Saint-Lambert", "BE-BRU"),
    ("BE", "1300", "Wavre", "BE-WBR"),
    ("BE", "1348", "Louvain-la-Neuve", "BE-WBR"),
    ("BE", "1500", "Halle", "BE-VBR"),
    ("BE", "1800", "Vilvoorde", "BE-VBR"),
    ("BE", "3000", "Leuven", "BE-VBR"),
    ("BE", "3300", "Tienen", "BE-VBR"),
    ("BE", "2000", "Antwerpen", "BE-VAN"),
    ("BE", "2800", "Mechelen", "BE-VAN"),
    ("BE", "3500", "Hasselt", "BE-VLI"),
    ("BE", "3600", "Genk", "BE-VLI"),
    ("BE", "3790", "Voeren", "BE-VLI"),
    ("BE", "4000", "Liège", "BE-WLG"),
    ("BE", "4700", "Eupen", "BE-WLG"),
    ("BE", "5000", "Namur", "BE-WNA"),
    ("BE", "5500", "Dinant", "BE-WNA"),
    ("BE", "6000", "Charleroi", "BE-WHT"),
    ("BE", "7000", "Mons", "BE-WHT"),
    ("BE", "7700", "Mouscron", "BE-WHT"),
    ("BE", "6600", "Bastogne", "BE-WLX"),
    ("BE", "6700", "Arlon", "BE-WLX"),
    ("BE", "8000", "Brugge", "BE-VWV"),
    ("BE", "8500", "Kortrijk", "BE-VWV"),
    ("BE", "9000", "Gent", "BE-VOV"),
    ("BE", "9300", "Aalst", "BE-VOV"),
    ("DE", "10115", "Berlin", "DE-BE"),
    ("DE", "20095", "Hamburg", "DE-HH"),
    ("DE", "22041", "Hamburg-Wandsbek", "DE-HH"),
    ("DE", "27499", "Neuwerk (Hamburg)", "DE-HH"),
    ("DE", "28195", "Bremen", "DE-HB"),
    ("DE", "27568", "Bremerhaven", "DE-HB"),
    ("DE", "80331", "München", "DE-BY"),
    ("DE", "97070", "Würzburg", "DE-BY"),
    ("DE", "63739", "Aschaffenburg", "DE-BY"),
    ("DE", "70173", "Stuttgart", "DE-BW"),
    ("DE", "68159", "Mannheim", "DE-BW"),
    ("DE", "78266", "Büsingen am Hochrhein", "DE-BW"),
    ("DE", "60311", "Frankfurt am Main", "DE-HE"),
    ("DE", "34117", "Kassel", "DE-HE"),
    ("DE", "50667", "Köln", "DE-NW"),
    ("DE", "49074", "Osnabrück", "DE-NI"),
    ("DE", "01067", "Dresden", "DE-SN"),
    ("DE", "04109", "Leipzig", "DE-SN"),
    ("DE", "02826", "Görlitz", "DE-SN"),
    ("DE", "39104", "Magdeburg", "DE-ST"),
    ("DE", "06108", "Halle (Saale)", "DE-ST"),
    ("DE", "99084", "Erfurt", "DE-TH"),
    ("DE", "07545", "Gera", "DE-TH"),
    ("DE", "14467", "Potsdam", "DE-BB"),
    ("DE", "03046", "Cottbus", "DE-BB"),
    ("DE", "19053", "Schwerin", "DE-MV"),
    ("DE", "17489", "Greifswald", "DE-MV"),
    ("DE", "24103", "Kiel", "DE-SH"),
    ("DE", "23552", "Lübeck", "DE-SH"),
    ("DE", "27498", "Helgoland", "DE-SH"),
    ("DE", "30159", "Hannover", "DE-NI"),
    ("DE", "55116", "Mainz", "DE-RP"),
    ("DE", "54290", "Trier", "DE-RP"),
    ("DE", "66111", "Saarbrücken", "DE-SL"),
    ("DE", "66424", "Homburg", "DE-SL"),
]


@pytest.mark.parametrize(("country", "postcode", "place", "region"), REAL, ids=[f"{r[0]}-{r[2]}" for r in REAL])
def test_real_postcodes_land_in_their_region(country: str, postcode: str, place: str, region: str) -> None:
    assert region_of(country, postcode) == region, place


def test_the_real_postcodes_cover_every_region() -> None:
    for country, codes in ALL_CODES.items():
        assert {region for c, _, _, region in REAL if c == country} == codes


@pytest.mark.parametrize(
    ("country", "postcode", "region"),
    [
        # Belgium: both ends of every province's range, and the number below the first.
        ("BE", "0999", None),
        ("BE", "1000", "BE-BRU"),
        ("BE", "1299", "BE-BRU"),
        ("BE", "1300", "BE-WBR"),
        ("BE", "1499", "BE-WBR"),
        ("BE", "1500", "BE-VBR"),
        ("BE", "1999", "BE-VBR"),
        ("BE", "2000", "BE-VAN"),
        ("BE", "2999", "BE-VAN"),
        ("BE", "3000", "BE-VBR"),
        ("BE", "3499", "BE-VBR"),
        ("BE", "3500", "BE-VLI"),
        ("BE", "3999", "BE-VLI"),
        ("BE", "4000", "BE-WLG"),
        ("BE", "4999", "BE-WLG"),
        ("BE", "5000", "BE-WNA"),
        ("BE", "5999", "BE-WNA"),
        ("BE", "6000", "BE-WHT"),
        ("BE", "6599", "BE-WHT"),
        ("BE", "6600", "BE-WLX"),
        ("BE", "6999", "BE-WLX"),
        ("BE", "7000", "BE-WHT"),
        ("BE", "7999", "BE-WHT"),
        ("BE", "8000", "BE-VWV"),
        ("BE", "8999", "BE-VWV"),
        ("BE", "9000", "BE-VOV"),
        ("BE", "9999", "BE-VOV"),
        # Netherlands: Amsterdam's PO boxes start the table; 1234 is contested between its two neighbours.
        ("NL", "0999", None),
        ("NL", "1000", "NL-NH"),
        ("NL", "1233", "NL-NH"),
        ("NL", "1234", None),
        ("NL", "1235", "NL-NH"),
        ("NL", "1277", "NL-NH"),
        ("NL", "1278", None),
        ("NL", "1299", None),
        ("NL", "1300", "NL-FL"),
        ("NL", "1364", "NL-FL"),
        ("NL", "1365", None),
        ("NL", "3999", "NL-UT"),
        ("NL", "4000", "NL-GE"),
        ("NL", "7991", "NL-DR"),
        ("NL", "7992", None),
        ("NL", "7999", None),
        ("NL", "8000", "NL-OV"),
        ("NL", "9399", None),
        ("NL", "9400", "NL-DR"),
        ("NL", "9998", "NL-GR"),
        ("NL", "9999", None),
        # Germany: the first and last PLZ in use, and the Austrian places with German PLZs.
        ("DE", "01001", None),
        ("DE", "01052", None),
        ("DE", "01053", "DE-SN"),
        ("DE", "99998", "DE-TH"),
        ("DE", "99999", None),
        ("DE", "87490", "DE-BY"),
        ("DE", "87491", None),
        ("DE", "87492", "DE-BY"),
        ("DE", "87566", "DE-BY"),
        ("DE", "87567", None),
        ("DE", "87569", None),
        ("DE", "87570", "DE-BY"),
        ("DE", "12528", "DE-BE"),
        ("DE", "12529", None),
        ("DE", "12530", "DE-BE"),
        ("DE", "21038", "DE-HH"),
        ("DE", "21039", None),
        ("DE", "27553", None),
        ("DE", "27554", "DE-HB"),
        ("DE", "27580", "DE-HB"),
    ],
)
def test_range_edges(country: str, postcode: str, region: str | None) -> None:
    assert region_of(country, postcode) == region


@pytest.mark.parametrize(
    ("country", "postcode"),
    [
        ("NL", "3651"),  # Woerdense Verlaat (ZH) and Zegveld (UT)
        ("NL", "9354"),  # Nieuw-Roden (DR) and Zevenhuizen (GR)
        ("NL", "7887"),  # Erica (DR) and Collendoorn (OV)
        ("DE", "07919"),  # Sachsen and Thüringen
        ("DE", "14715"),  # Brandenburg and Sachsen-Anhalt
        ("DE", "19357"),  # Brandenburg and Mecklenburg-Vorpommern
        ("DE", "22145"),  # Hamburg and Schleswig-Holstein
        ("DE", "65391"),  # Hessen and Rheinland-Pfalz
        ("DE", "97896"),  # Baden-Württemberg and Bayern
    ],
)
def test_a_postcode_on_a_border_has_no_region(country: str, postcode: str) -> None:
    assert region_of(country, postcode) is None


@pytest.mark.parametrize(
    ("country", "postcode"),
    [
        (None, "1012 AB"),
        ("", "1012 AB"),
        ("FR", "75001"),
        ("LU", "1009"),
        ("NLD", "1012 AB"),
        ("XX", "1012"),
        ("NL", None),
        ("NL", ""),
        ("NL", "   "),
        ("NL", "ABCD"),
        ("NL", "123"),
        ("NL", "0999"),
        ("NL", "0999 AB"),
        ("NL", "12345"),
        ("NL", "1012 A"),
        ("NL", "1012 ABC"),
        ("NL", "1012-AB"),
        ("NL", "AB 1012"),
        ("NL", "10 12AB"),
        ("NL", "١٠١٢ AB"),
        ("BE", "123"),
        ("BE", "12345"),
        ("BE", "0999"),
        ("BE", "1000 AB"),
        ("BE", "D-2000"),
        ("DE", "8033"),
        ("DE", "1067"),
        ("DE", "803311"),
        ("DE", "00000"),
        ("DE", "01000"),
        ("DE", "99999"),
        ("DE", "80331 München"),
        ("DE", "B-80331"),
    ],
)
def test_malformed_input_has_no_region(country: str | None, postcode: str | None) -> None:
    assert region_of(country, postcode) is None


@pytest.mark.parametrize(
    ("country", "postcodes", "region"),
    [
        ("NL", ["1012 AB", "1012ab", "1012AB", " 1012AB ", "1012\tAB", "1012", "NL-1012 AB", "nl 1012ab"], "NL-NH"),
        ("nl", ["1012 AB", "1012ab"], "NL-NH"),
        (" Nl ", ["1012 AB"], "NL-NH"),
        ("BE", ["2000", " 2000 ", "B-2000", "BE-2000", "B 2000", "b-2000"], "BE-VAN"),
        ("be", ["2000"], "BE-VAN"),
        ("DE", ["80331", " 80331 ", "D-80331", "DE-80331", "D 80331", "d-80331"], "DE-BY"),
        ("de", ["01067", "D-01067"], "DE-SN"),
    ],
)
def test_formatting_variants_give_the_same_answer(country: str, postcodes: list[str], region: str) -> None:
    assert {p: region_of(country, p) for p in postcodes} == dict.fromkeys(postcodes, region)


def test_every_code_is_a_real_subdivision_of_its_country() -> None:
    for country, ranges in RANGES.items():
        codes = {code for _, _, code in ranges}
        assert codes == ALL_CODES[country]
        for code in codes:
            subdivision = pycountry.subdivisions.get(code=code)
            assert subdivision is not None, code
            assert subdivision.country_code == country


def test_tables_are_sorted_disjoint_within_bounds_and_merged() -> None:
    bounds = {"NL": (1000, 9999), "BE": (1000, 9999), "DE": (1001, 99998)}
    assert set(RANGES) == set(bounds)
    for country, ranges in RANGES.items():
        low, high = bounds[country]
        assert ranges, country
        assert ranges[0][0] >= low and ranges[-1][1] <= high
        for first, last, _ in ranges:
            assert first <= last
        for (_, last, code), (first, _, next_code) in pairwise(ranges):
            assert last < first, (country, last, first)
            # Touching ranges with one code should have been written as one.
            assert not (last + 1 == first and code == next_code), (country, last, first)


def _scan(country: str, number: int) -> str | None:
    for first, last, code in RANGES[country]:
        if first <= number <= last:
            return code
    return None


@given(st.sampled_from(["NL", "BE", "DE"]), st.integers(min_value=0, max_value=99_999))
def test_lookup_agrees_with_a_linear_scan(country: str, number: int) -> None:
    postcode = f"{number:05d}" if country == "DE" else f"{number:04d}"
    expected = _scan(country, number) if len(postcode) == (5 if country == "DE" else 4) else None
    assert region_of(country, postcode) == expected


@given(st.one_of(st.none(), st.text(max_size=4)), st.one_of(st.none(), st.text(max_size=12)))
def test_never_raises(country: str | None, postcode: str | None) -> None:
    result = region_of(country, postcode)
    assert result is None or result in ALL_CODES[result[:2]]
