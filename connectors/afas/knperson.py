"""KnPerson as AFAS publishes it: the fields of the `PUT /connectors/KnPerson` request schema in
AFAS's OpenAPI specification (github.com/AFASSoftware/OASContent, file
`OpenApiSpecs/profit/en/Organisaties en personen.json`, schema `KnPerson_PUT`, commit 64278d2),
trimmed to what the sandbox checks: the data type, the maximum length and short enumerations.

`derive_fields(spec)` rebuilds the table from a newer copy of that file; print it with
`python -m connectors.afas.knperson "<path to the spec>"` and paste the output over `FIELDS`.
Free fields (`U` + 32 hex digits) are not in the schema: they differ per environment and are
listed by `GET /metainfo/update/KnPerson`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NamedTuple


class FieldRule(NamedTuple):
    data_type: str  # string | boolean | integer | date
    max_length: int | None
    values: tuple[str, ...] | None  # the allowed codes, when the schema lists at most 20
    label: str


FIELDS: dict[str, FieldRule] = {
    "PadAdr": FieldRule("boolean", None, None, "Postadres is adres"),
    "AutoNum": FieldRule("boolean", None, None, "Autonummering"),
    "MatchPer": FieldRule("string", 1, ("0", "1", "2", "3", "4", "5", "6", "7"), "Persoon vergelijken op"),
    "BcId": FieldRule("integer", None, None, "Organisation/Person (internal)"),
    "BcCo": FieldRule("string", 15, None, "Number"),
    "SeNm": FieldRule("string", 10, None, "Search name"),
    "CaNm": FieldRule("string", 80, None, "Usual name"),
    "FiNm": FieldRule("string", 50, None, "First name"),
    "In": FieldRule("string", 15, None, "Initials"),
    "Is": FieldRule("string", 15, None, "Prefix"),
    "LaNm": FieldRule("string", 80, None, "Last name"),
    "SpNm": FieldRule("boolean", None, None, "Enter surname at birth seperately"),
    "IsBi": FieldRule("string", 15, None, "Birth name prefix"),
    "NmBi": FieldRule("string", 80, None, "Surname at birth"),
    "IsPa": FieldRule("string", 15, None, "Prefix partner"),
    "NmPa": FieldRule("string", 80, None, "Partner's usual name"),
    "ViUs": FieldRule("string", 20, ("0", "1", "2", "3"), "Name use"),
    "ViGe": FieldRule("string", 20, ("M", "O", "V", "X"), "Gender"),
    "PsNa": FieldRule("string", 20, None, "Nationality"),
    "DaBi": FieldRule("date", None, None, "Date of birth"),
    "CoBi": FieldRule("string", 3, None, "Country of birth"),
    "RsBi": FieldRule("string", 50, None, "Place of birth"),
    "SoSe": FieldRule("string", 25, None, "'BSN'"),
    "Sdla": FieldRule("string", 10, None, "Personal ID"),
    "ViCs": FieldRule("string", 20, ("DZ", "GH", "GP", "GS", "OG", "OV", "WE"), "Marital status"),
    "DaMa": FieldRule("date", None, None, "Wedding date"),
    "DaDi": FieldRule("date", None, None, "Datum scheiding"),
    "DaDe": FieldRule("date", None, None, "Date deceased"),
    "TtId": FieldRule("string", 3, None, "Title/salutation"),
    "TtEx": FieldRule("string", 3, None, "Secondary title"),
    "LeHe": FieldRule("string", 255, None, "Salutation"),
    "TeNr": FieldRule("string", 255, None, "Work phone no."),
    "TeN2": FieldRule("string", 255, None, "Personal phone no."),
    "FaNr": FieldRule("string", 255, None, "Work fax"),
    "MbNr": FieldRule("string", 255, None, "Work mobile no."),
    "MbN2": FieldRule("string", 255, None, "Private mobile no."),
    "EmAd": FieldRule("string", 255, None, "Work e-mail"),
    "EmA2": FieldRule("string", 255, None, "Personal e-mail"),
    "HoPa": FieldRule("string", 255, None, "Website"),
    "Corr": FieldRule("boolean", None, None, "Correspondence"),
    "ViMd": FieldRule("string", 20, ("EMA", "FAX", "PRS", "PST", "TEL"), "Preferred medium"),
    "Re": FieldRule("string", None, None, "Remark"),
    "StId": FieldRule("string", 20, None, "Status"),
    "SocN": FieldRule("string", 255, None, "Social media"),
    "CrIb": FieldRule("string", 9, None, "CRIB number"),
    "Face": FieldRule("string", 255, None, "Facebook"),
    "Link": FieldRule("string", 255, None, "LinkedIn"),
    "Twtr": FieldRule("string", 255, None, "X (formerly Twitter)"),
    "LgId": FieldRule("string", 3, None, "Language"),
    "CoLw": FieldRule("string", 2, None, "Legislative country"),
    "CcNr": FieldRule("string", 30, None, "COC number"),
    "CcDa": FieldRule("date", None, None, "CoC date"),
    "BrNr": FieldRule("string", 30, None, "Branch number"),
    "FiNr": FieldRule("string", 9, None, "Fiscal number"),
    "EmAm": FieldRule(
        "string", 20, ("01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"), "Number of employees"
    ),
    "SBIc": FieldRule("string", 10, None, "SBI code"),
    "FileId": FieldRule("string", 32, None, "Bestand"),
    "FileName": FieldRule("string", 255, None, "Naam bestand"),
    "FileStream": FieldRule("string", None, None, "Afbeelding"),
    "AddToPortal": FieldRule("boolean", None, None, "Persoon toegang geven tot afgeschermde deel van de portal(s)"),
    "EmailPortal": FieldRule("string", 255, None, "E-mail toegang"),
}


def derive_fields(spec: dict[str, Any]) -> dict[str, FieldRule]:
    schema = spec["components"]["schemas"]["KnPerson_PUT"]
    element = schema["properties"]["KnPerson"]["properties"]["Element"]
    fields: dict[str, FieldRule] = {}
    for name, rule in element["properties"]["Fields"]["properties"].items():
        data_type = "date" if rule.get("format") == "date" else str(rule.get("type"))
        values = rule.get("enum")
        fields[name] = FieldRule(
            data_type,
            rule.get("maxLength"),
            tuple(values) if values and len(values) <= 20 else None,
            str(rule.get("description", "")).split("\n")[0].strip(),
        )
    return fields


if __name__ == "__main__":
    derived = derive_fields(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
    for key, rule in derived.items():
        print(f"    {key!r}: {rule!r},")
