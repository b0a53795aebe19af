"""The region (ISO 3166-2 subdivision) a postcode lies in, for the Netherlands (province), Belgium (province,
Brussels as BE-BRU) and Germany (Land); no network, no I/O, data as module-level tuples of ranges.

Every table is a sorted tuple of inclusive, non-overlapping `(first, last, code)` ranges over the numeric part of
the postcode; a number that falls between ranges has no region on purpose and looks up as None. None is always
preferred to a guess: a wrong region would put someone in the wrong mailing.

Sources
-------
Belgium: bpost's numbering by province (https://en.wikipedia.org/wiki/Postal_codes_in_Belgium). Checked against
all 1,146 Belgian postcodes of the GeoNames postal-code dump (https://download.geonames.org/export/zip/, as converted
in https://github.com/zauberware/postal-codes-json-xml-csv, data/BE.zip, update of 2026-03-30): each lies in the
province the 13 ranges below give it, so no postcode needs an exception.

Netherlands: derived per PC4 from two tables, then collapsed into ranges.
  1. CBS: PC4 areas intersected with the CBS province map (CBS "Gebiedsindelingen" 2022, PC4 2021), as published
     in the `postcodes` data set of https://github.com/certe-medical-epidemiology/certegis (data/postcodes.rda).
  2. GeoNames: data/NL.zip of https://github.com/zauberware/postal-codes-json-xml-csv (update of 2026-03-30).
  A PC4 keeps its province where both agree. Left out are the PC4s the two place in different provinces, 2324,
  2967, 3523, 3633, 3651, 3981, 7571, 7887, 7973, 8611, 9354 and 9999 (some straddle a border, as 3651 Woerdense
  Verlaat/Zegveld and 9354 Nieuw-Roden/Zevenhuizen; in others one source is wrong, and we cannot tell which), and
  those GeoNames alone lists in a province neither neighbour is in: 1234 (a dummy code), 1954, 5217 and 7146.

Germany: derived per 5-digit PLZ from two tables, then collapsed into ranges.
  1. OpenStreetMap PLZ areas per municipality (AGS) as published by suche-postleitzahl.org
     (`zuordnung_plz_ort.csv`, 2022 copy in https://github.com/Sammeeey/ccallmaps).
  2. GeoNames: data/DE.zip of https://github.com/zauberware/postal-codes-json-xml-csv (update of 2026-03-30),
     which adds PO-box and large-customer PLZs that have no area.
  A PLZ the two sources, between them, place in two Länder is left out, e.g. 07919 (SN/TH), 12529 (BE/BB), 14715
  (BB/ST), 17337 and 19357 (BB/MV), 19273 (MV/NI), 21039, 22113 and 22145 (HH/SH), 34355 (HE/NI), 59969 (HE/NW),
  63928, 74731, 89081 and 97896 (BW/BY), 64754, 69412 and 69434 (BW/HE), 65391 (HE/RP); so are large-customer PLZs
  that GeoNames puts in a Land other than the one on either side of them (10858, among Berlin's, listed in
  Brandenburg). 87491 (Jungholz) and 87567-87569 (Kleinwalsertal) are left out by hand: German PLZs, Austrian soil.

How the per-code answers became ranges (NL and DE alike): a code known from one source only is kept when it agrees
with the nearest code known from both on at least one side; a number neither source knows takes the region of the
nearest codes that have one, below and above it, when both have the same, and is left out when they differ, since
nothing says on which side of the border it lies. For NL only, the unknown numbers at the start of a two-digit region
up to its first known PC4 take that PC4's province: Dutch codes ending in 0 are PO boxes, xx00-xx09 the PO boxes of
the region's main town (e.g. 8000 for Zwolle, 9400 for Assen).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

Range = tuple[int, int, str]

_BE: tuple[Range, ...] = (
    (1000, 1299, "BE-BRU"),
    (1300, 1499, "BE-WBR"),
    (1500, 1999, "BE-VBR"),
    (2000, 2999, "BE-VAN"),
    (3000, 3499, "BE-VBR"),
    (3500, 3999, "BE-VLI"),
    (4000, 4999, "BE-WLG"),
    (5000, 5999, "BE-WNA"),
    (6000, 6599, "BE-WHT"),
    (6600, 6999, "BE-WLX"),
    (7000, 7999, "BE-WHT"),
    (8000, 8999, "BE-VWV"),
    (9000, 9999, "BE-VOV"),
)

_NL: tuple[tuple[int, int, str], ...] = (
    (1000, 1233, "NL-NH"),
    (1235, 1277, "NL-NH"),
    (1300, 1364, "NL-FL"),
    (1381, 1384, "NL-NH"),
    (1391, 1393, "NL-UT"),
    (1394, 1394, "NL-NH"),
    (1396, 1396, "NL-UT"),
    (1398, 1424, "NL-NH"),
    (1426, 1427, "NL-UT"),
    (1428, 1428, "NL-ZH"),
    (1431, 1953, "NL-NH"),
    (1955, 2158, "NL-NH"),
    (2159, 2163, "NL-ZH"),
    (2165, 2165, "NL-NH"),
    (2171, 2323, "NL-ZH"),
    (2325, 2966, "NL-ZH"),
    (2968, 3381, "NL-ZH"),
    (3400, 3464, "NL-UT"),
    (3465, 3466, "NL-ZH"),
    (3467, 3522, "NL-UT"),
    (3524, 3621, "NL-UT"),
    (3625, 3625, "NL-NH"),
    (3626, 3632, "NL-UT"),
    (3634, 3648, "NL-UT"),
    (3652, 3653, "NL-ZH"),
    (3700, 3769, "NL-UT"),
    (3771, 3785, "NL-GE"),
    (3791, 3791, "NL-UT"),
    (3792, 3794, "NL-GE"),
    (3800, 3836, "NL-UT"),
    (3841, 3888, "NL-GE"),
    (3891, 3899, "NL-FL"),
    (3900, 3922, "NL-UT"),
    (3925, 3925, "NL-GE"),
    (3927, 3980, "NL-UT"),
    (3982, 3999, "NL-UT"),
    (4000, 4119, "NL-GE"),
    (4121, 4145, "NL-UT"),
    (4147, 4161, "NL-GE"),
    (4163, 4163, "NL-UT"),
    (4171, 4197, "NL-GE"),
    (4200, 4209, "NL-ZH"),
    (4211, 4212, "NL-GE"),
    (4213, 4213, "NL-ZH"),
    (4214, 4214, "NL-GE"),
    (4221, 4225, "NL-ZH"),
    (4231, 4235, "NL-UT"),
    (4241, 4241, "NL-ZH"),
    (4243, 4247, "NL-UT"),
    (4251, 4288, "NL-NB"),
    (4300, 4589, "NL-ZE"),
    (4600, 4671, "NL-NB"),
    (4675, 4675, "NL-ZE"),
    (4681, 4681, "NL-NB"),
    (4691, 4698, "NL-ZE"),
    (4700, 5216, "NL-NB"),
    (5218, 5298, "NL-NB"),
    (5300, 5335, "NL-GE"),
    (5341, 5764, "NL-NB"),
    (5766, 5817, "NL-LI"),
    (5821, 5846, "NL-NB"),
    (5851, 6019, "NL-LI"),
    (6021, 6029, "NL-NB"),
    (6031, 6471, "NL-LI"),
    (6500, 6582, "NL-GE"),
    (6584, 6599, "NL-LI"),
    (6600, 7145, "NL-GE"),
    (7147, 7399, "NL-GE"),
    (7400, 7437, "NL-OV"),
    (7439, 7439, "NL-GE"),
    (7441, 7570, "NL-OV"),
    (7572, 7702, "NL-OV"),
    (7705, 7705, "NL-DR"),
    (7707, 7739, "NL-OV"),
    (7741, 7766, "NL-DR"),
    (7771, 7798, "NL-OV"),
    (7800, 7886, "NL-DR"),
    (7888, 7944, "NL-DR"),
    (7946, 7946, "NL-OV"),
    (7948, 7949, "NL-DR"),
    (7951, 7955, "NL-OV"),
    (7957, 7972, "NL-DR"),
    (7974, 7991, "NL-DR"),
    (8000, 8045, "NL-OV"),
    (8051, 8052, "NL-GE"),
    (8055, 8066, "NL-OV"),
    (8071, 8097, "NL-GE"),
    (8100, 8154, "NL-OV"),
    (8161, 8194, "NL-GE"),
    (8196, 8198, "NL-OV"),
    (8200, 8256, "NL-FL"),
    (8261, 8294, "NL-OV"),
    (8300, 8323, "NL-FL"),
    (8325, 8347, "NL-OV"),
    (8351, 8351, "NL-DR"),
    (8355, 8378, "NL-OV"),
    (8381, 8387, "NL-DR"),
    (8388, 8435, "NL-FR"),
    (8437, 8439, "NL-DR"),
    (8441, 8610, "NL-FR"),
    (8612, 9299, "NL-FR"),
    (9300, 9343, "NL-DR"),
    (9351, 9353, "NL-GR"),
    (9355, 9367, "NL-GR"),
    (9400, 9475, "NL-DR"),
    (9479, 9479, "NL-GR"),
    (9481, 9497, "NL-DR"),
    (9500, 9503, "NL-GR"),
    (9511, 9537, "NL-DR"),
    (9541, 9563, "NL-GR"),
    (9564, 9564, "NL-DR"),
    (9566, 9566, "NL-GR"),
    (9571, 9574, "NL-DR"),
    (9581, 9651, "NL-GR"),
    (9654, 9659, "NL-DR"),
    (9661, 9747, "NL-GR"),
    (9749, 9749, "NL-DR"),
    (9751, 9756, "NL-GR"),
    (9761, 9766, "NL-DR"),
    (9771, 9845, "NL-GR"),
    (9851, 9853, "NL-FR"),
    (9861, 9866, "NL-GR"),
    (9871, 9873, "NL-FR"),
    (9881, 9998, "NL-GR"),
)

# PLZs as ints: 01067 is 1067.
_DE: tuple[tuple[int, int, str], ...] = (
    (1053, 1936, "DE-SN"),
    (1945, 1998, "DE-BB"),
    (2619, 2999, "DE-SN"),
    (3039, 3074, "DE-BB"),
    (3076, 3253, "DE-BB"),
    (4022, 4159, "DE-SN"),
    (4161, 4579, "DE-SN"),
    (4600, 4639, "DE-TH"),
    (4643, 4889, "DE-SN"),
    (4895, 4938, "DE-BB"),
    (6073, 6547, "DE-ST"),
    (6553, 6578, "DE-TH"),
    (6618, 6928, "DE-ST"),
    (7318, 7918, "DE-TH"),
    (7920, 7950, "DE-TH"),
    (7952, 7952, "DE-SN"),
    (7955, 7980, "DE-TH"),
    (7985, 7985, "DE-SN"),
    (7987, 7989, "DE-TH"),
    (8037, 9669, "DE-SN"),
    (10026, 10857, "DE-BE"),
    (10859, 10874, "DE-BE"),
    (10876, 10897, "DE-BE"),
    (10899, 10907, "DE-BE"),
    (10911, 11511, "DE-BE"),
    (11513, 12520, "DE-BE"),
    (12522, 12528, "DE-BE"),
    (12530, 12677, "DE-BE"),
    (12679, 12711, "DE-BE"),
    (12713, 13659, "DE-BE"),
    (13661, 14199, "DE-BE"),
    (14322, 14322, "DE-BB"),
    (14328, 14328, "DE-BE"),
    (14329, 14456, "DE-BB"),
    (14457, 14457, "DE-BE"),
    (14458, 14714, "DE-BB"),
    (14716, 15226, "DE-BB"),
    (15228, 16949, "DE-BB"),
    (17030, 17239, "DE-MV"),
    (17241, 17259, "DE-MV"),
    (17268, 17291, "DE-BB"),
    (17305, 17322, "DE-MV"),
    (17326, 17326, "DE-BB"),
    (17328, 17336, "DE-MV"),
    (17338, 19272, "DE-MV"),
    (19274, 19306, "DE-MV"),
    (19309, 19348, "DE-BB"),
    (19367, 19417, "DE-MV"),
    (20038, 20082, "DE-HH"),
    (20084, 21038, "DE-HH"),
    (21040, 21170, "DE-HH"),
    (21172, 21172, "DE-NI"),
    (21175, 21175, "DE-HH"),
    (21217, 21449, "DE-NI"),
    (21462, 21521, "DE-SH"),
    (21522, 21522, "DE-NI"),
    (21524, 21529, "DE-SH"),
    (21614, 21789, "DE-NI"),
    (22032, 22032, "DE-HH"),
    (22034, 22112, "DE-HH"),
    (22114, 22138, "DE-HH"),
    (22141, 22144, "DE-HH"),
    (22146, 22757, "DE-HH"),
    (22759, 22779, "DE-HH"),
    (22782, 22799, "DE-HH"),
    (22839, 22865, "DE-SH"),
    (22867, 23919, "DE-SH"),
    (23923, 23999, "DE-MV"),
    (24088, 25999, "DE-SH"),
    (26090, 27478, "DE-NI"),
    (27498, 27498, "DE-SH"),
    (27499, 27499, "DE-HH"),
    (27554, 27580, "DE-HB"),
    (27607, 27809, "DE-NI"),
    (28100, 28103, "DE-HB"),
    (28104, 28104, "DE-NI"),
    (28105, 28181, "DE-HB"),
    (28182, 28182, "DE-NI"),
    (28183, 28779, "DE-HB"),
    (28788, 29399, "DE-NI"),
    (29410, 29416, "DE-ST"),
    (29439, 30685, "DE-NI"),
    (30687, 31130, "DE-NI"),
    (31132, 31773, "DE-NI"),
    (31775, 31828, "DE-NI"),
    (31830, 31868, "DE-NI"),
    (32042, 33686, "DE-NW"),
    (33688, 33829, "DE-NW"),
    (34105, 34329, "DE-HE"),
    (34346, 34346, "DE-NI"),
    (34359, 34399, "DE-HE"),
    (34414, 34439, "DE-NW"),
    (34454, 35507, "DE-HE"),
    (35509, 36399, "DE-HE"),
    (36404, 36469, "DE-TH"),
    (37069, 37199, "DE-NI"),
    (37213, 37299, "DE-HE"),
    (37308, 37359, "DE-TH"),
    (37412, 37649, "DE-NI"),
    (37669, 37688, "DE-NW"),
    (37691, 37691, "DE-NI"),
    (37696, 37696, "DE-NW"),
    (37697, 38479, "DE-NI"),
    (38486, 38489, "DE-ST"),
    (38516, 38729, "DE-NI"),
    (38817, 38998, "DE-ST"),
    (39000, 39649, "DE-ST"),
    (40180, 42894, "DE-NW"),
    (42896, 47788, "DE-NW"),
    (47790, 48432, "DE-NW"),
    (48455, 48465, "DE-NI"),
    (48477, 48477, "DE-NW"),
    (48480, 48480, "DE-NI"),
    (48485, 48485, "DE-NW"),
    (48488, 48488, "DE-NI"),
    (48493, 48496, "DE-NW"),
    (48499, 48531, "DE-NI"),
    (48563, 48739, "DE-NW"),
    (49068, 49446, "DE-NI"),
    (49448, 49459, "DE-NI"),
    (49475, 49549, "DE-NW"),
    (49562, 49849, "DE-NI"),
    (50123, 50422, "DE-NW"),
    (50425, 50605, "DE-NW"),
    (50607, 51597, "DE-NW"),
    (51598, 51598, "DE-RP"),
    (51641, 53288, "DE-NW"),
    (53290, 53359, "DE-NW"),
    (53423, 53579, "DE-RP"),
    (53604, 53604, "DE-NW"),
    (53619, 53619, "DE-RP"),
    (53637, 53949, "DE-NW"),
    (54187, 55239, "DE-RP"),
    (55246, 55252, "DE-HE"),
    (55257, 55540, "DE-RP"),
    (55542, 56475, "DE-RP"),
    (56477, 56869, "DE-RP"),
    (57068, 57489, "DE-NW"),
    (57517, 57648, "DE-RP"),
    (58079, 59964, "DE-NW"),
    (60060, 60646, "DE-HE"),
    (60648, 60650, "DE-HE"),
    (60653, 63474, "DE-HE"),
    (63476, 63699, "DE-HE"),
    (63715, 63927, "DE-BY"),
    (63929, 63939, "DE-BY"),
    (64271, 64517, "DE-HE"),
    (64519, 64753, "DE-HE"),
    (64755, 65163, "DE-HE"),
    (65165, 65390, "DE-HE"),
    (65392, 65556, "DE-HE"),
    (65558, 65582, "DE-RP"),
    (65589, 65620, "DE-HE"),
    (65623, 65626, "DE-RP"),
    (65627, 65627, "DE-HE"),
    (65629, 65629, "DE-RP"),
    (65717, 65936, "DE-HE"),
    (66087, 66459, "DE-SL"),
    (66482, 66509, "DE-RP"),
    (66538, 66839, "DE-SL"),
    (66849, 67829, "DE-RP"),
    (68051, 68309, "DE-BW"),
    (68517, 68519, "DE-HE"),
    (68526, 68549, "DE-BW"),
    (68619, 68649, "DE-HE"),
    (68721, 69234, "DE-BW"),
    (69239, 69239, "DE-HE"),
    (69242, 69411, "DE-BW"),
    (69413, 69433, "DE-BW"),
    (69435, 69469, "DE-BW"),
    (69483, 69488, "DE-HE"),
    (69493, 69502, "DE-BW"),
    (69509, 69509, "DE-HE"),
    (69514, 69514, "DE-BW"),
    (69517, 69518, "DE-HE"),
    (70131, 70789, "DE-BW"),
    (70791, 71028, "DE-BW"),
    (71030, 74063, "DE-BW"),
    (74065, 74070, "DE-BW"),
    (74072, 74730, "DE-BW"),
    (74732, 75012, "DE-BW"),
    (75014, 76709, "DE-BW"),
    (76725, 76891, "DE-RP"),
    (77633, 78457, "DE-BW"),
    (78459, 79879, "DE-BW"),
    (80097, 86134, "DE-BY"),
    (86136, 87490, "DE-BY"),
    (87492, 87566, "DE-BY"),
    (87570, 87789, "DE-BY"),
    (88038, 88099, "DE-BW"),
    (88129, 88145, "DE-BY"),
    (88147, 88147, "DE-BW"),
    (88149, 88179, "DE-BY"),
    (88209, 88296, "DE-BW"),
    (88298, 89069, "DE-BW"),
    (89071, 89080, "DE-BW"),
    (89082, 89089, "DE-BW"),
    (89091, 89198, "DE-BW"),
    (89229, 89449, "DE-BY"),
    (89516, 89619, "DE-BW"),
    (90051, 90743, "DE-BY"),
    (90745, 96034, "DE-BY"),
    (96036, 96038, "DE-BY"),
    (96040, 96062, "DE-BY"),
    (96064, 96075, "DE-BY"),
    (96077, 96489, "DE-BY"),
    (96515, 96528, "DE-TH"),
    (97024, 97418, "DE-BY"),
    (97420, 97859, "DE-BY"),
    (97877, 97877, "DE-BW"),
    (97892, 97892, "DE-BY"),
    (97900, 97900, "DE-BW"),
    (97901, 97909, "DE-BY"),
    (97922, 97999, "DE-BW"),
    (98496, 99998, "DE-TH"),
)

RANGES: Final[Mapping[str, tuple[Range, ...]]] = MappingProxyType({"BE": _BE, "DE": _DE, "NL": _NL})
"""Per country (ISO 3166-1 alpha-2), the sorted `(first, last, code)` ranges; numbers outside them have no region."""

_STARTS: Final[Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {country: tuple(first for first, _, _ in ranges) for country, ranges in RANGES.items()}
)

# A country prefix ("D-80331", "B-2000", "NL-1012 AB") is how people copy addresses from letters; the letters of a
# Dutch postcode say nothing about the province, so they are allowed but not required.
_PATTERNS: Final[Mapping[str, re.Pattern[str]]] = MappingProxyType(
    {
        "NL": re.compile(r"(?:NL\s*-?\s*)?(\d{4})(?:\s*[A-Z]{2})?", re.ASCII),
        "BE": re.compile(r"(?:BE?\s*-?\s*)?(\d{4})", re.ASCII),
        "DE": re.compile(r"(?:DE?\s*-?\s*)?(\d{5})", re.ASCII),
    }
)

# Lowest and highest postcode in use: anything outside is a typo (or a leading zero lost in a spreadsheet).
_BOUNDS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {"NL": (1000, 9999), "BE": (1000, 9999), "DE": (1001, 99998)}
)


def _number(country: str, postcode: str) -> int | None:
    match = _PATTERNS[country].fullmatch(postcode.strip().upper())
    if match is None:
        return None
    number = int(match.group(1))
    low, high = _BOUNDS[country]
    return number if low <= number <= high else None


def region_of(country: str | None, postcode: str | None) -> str | None:
    """ISO 3166-2 code in upper case ("NL-NH", "BE-VAN", "DE-BY"), or None when the country is not
    one of NL/BE/DE, the postcode is missing or malformed, or the postcode lies in a range that
    spans two regions (never guess: a wrong region would put someone in the wrong mailing)."""
    if not country or not postcode:
        return None
    key = country.strip().upper()
    ranges = RANGES.get(key)
    if ranges is None:
        return None
    number = _number(key, postcode)
    if number is None:
        return None
    index = bisect_right(_STARTS[key], number) - 1
    if index < 0:
        return None
    _, last, code = ranges[index]
    return code if number <= last else None
