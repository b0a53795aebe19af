"""efficy's settings, the JSON RPC's limits and the names crmsync reads by.

Field names are configured (`segments_field`, `tier_field`): `FIELD` for a field of the contact's
main table, `CONT$CATEGORY.FIELD` for a field of one of its categories.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors.settings import Duration, SystemSettings

MAX_PAGE = 1000
MAX_CONTEXTS = 100
DEFAULT_PAGE = 100
# The keyset position before any record: every row has a later D_CHANGE.
START = ("1900-01-01T00:00:00", 0)
CONTACT_KEY = "K_CONTACT"
OPPORTUNITY_KEY = "K_OPPORTUNITY"
CHANGED = "D_CHANGE"
# Contacts `check` consults to see crmsync's fields: a category shows its fields only on a contact
# where it is active, so one contact is too few (one request, a fraction of MAX_CONTEXTS).
PROBE_CONTACTS = 25

_FIELD = re.compile(r"^(?:(CONT\$[A-Z0-9_]+)\.)?([A-Z_][A-Z0-9_]*)$")
# Columns of efficy's own contact table that a bare field name must never be: those crmsync reads
# and the person's details and notes beside them (a typo in `segments_field` would overwrite them
# on every contact). Keys (K_) and dates (D_) are efficy's own by their prefix.
OWN_COLUMNS = frozenset(
    [
        "NAME",
        "FIRSTNAME",
        "MIDDLENAME",
        "TITLE",
        "EMAIL1",
        "EMAIL2",
        "EMAIL3",
        "PHONE1",
        "PHONE2",
        "PHONE3",
        "MOBILE",
        "FAX",
        "MEMO",
        "POSITION",
        "DEPARTMENT",
        "LANGUAGE",
        "SEX",
        "BIRTHDATE",
        "WEBSITE",
        "ADDRESS1",
        "ADDRESS2",
        "POSTCODE",
        "CITY",
        "COUNTRY",
    ]
)


class EfficySettings(SystemSettings):
    type: Literal["efficy"]
    api_key: SecretStr
    customer: str | None = Field(default=None, description="X-Efficy-Customer, when several customers share one URL")
    language: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="X-Efficy-Lang, e.g. NL")
    contacts_query: int = Field(ge=1, description="K_QUERY of the saved contacts query")
    orders_query: int | None = Field(default=None, ge=1, description="K_QUERY of the saved opportunities query")
    counted_statuses: list[str] = Field(default_factory=lambda: ["WON"], min_length=1)
    segments_field: str | None = None
    tier_field: str | None = None
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE)
    # D_CHANGE is the server's local time: an hour and five minutes covers the repeated hour when
    # the clocks go back, and re-reading it costs nothing (unchanged records hash the same).
    lookback: Duration = Field(default=3900.0, description="how far before the cursor each read starts")

    @field_validator("segments_field", "tier_field")
    @classmethod
    def _efficy_field(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().upper()
        if not _FIELD.match(name):
            raise ValueError("expected FIELD (main table) or CONT$CATEGORY.FIELD, e.g. CONT$CRMSYNC.SEGMENTS")
        if "." not in name and (name in OWN_COLUMNS or name.startswith(("K_", "D_"))):
            raise ValueError(
                f"{name} is a column of efficy's own contact table, which crmsync never writes: name a field "
                "added for crmsync (CONT$CRMSYNC.SEGMENTS, or a main-table field such as CRMSYNC_TIER)"
            )
        return name


def split_field(name: str) -> tuple[str | None, str]:
    """`CONT$CRMSYNC.SEGMENTS` -> ("CONT$CRMSYNC", "SEGMENTS"); `SEGMENTS` -> (None, "SEGMENTS")."""
    category, dot, field = name.rpartition(".")
    return (category, field) if dot else (None, name)


def efficy_time(moment: datetime) -> str:
    """A pass's lower bound as a saved query's parameter: UTC, ISO 8601 without a zone, in whole
    seconds (cut: the bound only moves earlier). A position inside a pass is the row's own
    D_CHANGE text instead (`EfficyConnector._after`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
