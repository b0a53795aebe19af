"""The AFAS sandbox's UpdateConnector KnPerson: one `Element` with `Fields`, each checked against
the published `KnPerson_PUT` schema (knperson.py) or the environment's free fields, and KnPerson's
metainfo in the shape custom-fields.md quotes. Refusals are Profit's 500s (worded by us, in Dutch).
"""

from __future__ import annotations

from typing import Any

from connectors.afas.knperson import FieldRule
from connectors.afas.profit_time import parse_wall
from connectors.afas.sandbox_tables import profit_error

# KnPerson fields that the persons GetConnector shows, by UpdateConnector field id.
UPDATE_TO_COLUMN = {
    "FiNm": "FirstName",
    "In": "Initials",
    "Is": "Prefix",
    "LaNm": "LastName",
    "EmAd": "Email",
    "TeNr": "Phone",
    "MbNr": "Mobile",
}

LOCATORS = ("MatchPer", "BcCo", "BcId")


def update_meta(field_id: str, rule: FieldRule) -> dict[str, Any]:
    return {
        "fieldId": field_id,
        "primaryKey": field_id == "BcId",
        "dataType": rule.data_type,
        "label": rule.label,
        "mandatory": False,
        "length": rule.max_length or 0,
        "decimals": 0,
        "decimalFieldId": "",
        "notzero": False,
        "controlType": 1,
        "values": [{"id": v, "description": v} for v in rule.values] if rule.values else None,
    }


def element_fields(body: Any) -> dict[str, Any]:
    """`{"KnPerson": {"Element": {"Fields": {...}}}}`: the published schema has one Element object."""
    element = body.get("KnPerson", {}).get("Element") if isinstance(body, dict) else None
    if isinstance(body, dict) and isinstance(body.get("KnPerson"), dict) and isinstance(element, list):
        raise profit_error("Ongeldig bericht: 'Element' van KnPerson is één object, geen lijst.")
    if not isinstance(element, dict) or not isinstance(element.get("Fields"), dict):
        raise profit_error('Ongeldig bericht: verwacht {"KnPerson": {"Element": {"Fields": {...}}}}.')
    return dict(element["Fields"])


def check_value(name: str, rule: FieldRule, value: Any) -> None:
    if value is None or value == "":
        return  # empty clears the field
    if rule.data_type == "boolean":
        if not (isinstance(value, bool) or str(value).lower() in ("0", "1", "true", "false")):
            raise profit_error(f"De waarde '{value}' bij '{rule.label}' is geen ja/nee-waarde.")
        return
    if rule.data_type == "integer":
        if isinstance(value, bool) or not str(value).lstrip("-").isdigit():
            raise profit_error(f"De waarde '{value}' bij '{rule.label}' is geen geheel getal.")
        return
    if isinstance(value, dict | list | bool):
        raise profit_error(f"De waarde bij '{rule.label}' ({name}) heeft een ongeldig type.")
    text = str(value)
    if rule.data_type == "date":
        try:
            parse_wall(text)
        except ValueError:
            raise profit_error(f"De waarde '{text}' bij '{rule.label}' is geen geldige datum.") from None
    if rule.max_length is not None and len(text) > rule.max_length:
        raise profit_error(f"De waarde bij '{rule.label}' is te lang (maximaal {rule.max_length} tekens).")
    if rule.values is not None and text not in rule.values:
        raise profit_error(f"De ingevulde waarde bij '{rule.label}' bestaat niet.")
