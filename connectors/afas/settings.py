"""AFAS Profit's settings, the constants of its App Connector REST API, and how the token is sent."""

from __future__ import annotations

import base64
import re
from typing import Literal

from pydantic import Field, SecretStr

from connectors.settings import SystemSettings

API = "/ProfitRestServices"
UPDATE_CONNECTOR = "KnPerson"
MAX_TAKE = 10_000  # (assumed) no maximum is documented; far above this Profit runs out of memory
DEFAULT_TAKE = 500  # AFAS: columns x rows below ~150,000 per call; the persons view has ~25 columns
PERSON_KEY = "PersonId"
INVOICE_KEY = "InvoiceId"
CONNECTOR_NAME = r"^[A-Za-z0-9_]+$"
FIELD_NAME = r"^[A-Za-z0-9_ ]+$"
FREE_FIELD_ID = re.compile(r"^U[0-9A-Fa-f]{32}$")
MAX_CODE_LENGTH = 15  # KnPerson.BcCo, the person number
APP_CONNECTORS = "Profit: Algemeen > Beheer > App connectoren"
# (assumed) The shortest free fields that hold what crmsync writes: the built-in segment names
# alone ("acquaintances,lifecycle-at-risk,tier-...") take about 50 characters, rule segments more;
# a tier name is a short word. A length of 0 in the metainfo is taken as "no fixed maximum" (memo).
MIN_LENGTH = {"segments": 100, "tier": 20}


class AfasSettings(SystemSettings):
    type: Literal["afas"]
    token: SecretStr = Field(
        description="the app connector token: its data part, or the whole <token>...</token> as Profit shows it"
    )
    contacts_connector: str = Field(default="Profit_CRM_Persons", pattern=CONNECTOR_NAME)
    orders_connector: str = Field(default="Profit_CRM_SalesInvoices", pattern=CONNECTOR_NAME)
    modified_field: str = Field(
        default="ModifiedDate", pattern=FIELD_NAME, description="the audit column both GetConnectors filter on"
    )
    segments_field: str = Field(
        default="crmsync_segments", pattern=FIELD_NAME, description="KnPerson free field: its id or its label"
    )
    tier_field: str = Field(default="crmsync_loyalty_tier", pattern=FIELD_NAME)
    segments_column: str | None = Field(
        default=None, pattern=FIELD_NAME, description="persons GetConnector column showing it (default: the same)"
    )
    tier_column: str | None = Field(default=None, pattern=FIELD_NAME)
    language: str = Field(default="nl-nl", description="Accept-Language: the language of Profit's messages")
    page_size: int | None = Field(default=None, ge=1, le=MAX_TAKE)


def token_header(token: str) -> str:
    """`AfasToken ` + base64 of the whole XML envelope (mandatory since Profit 6: a plain token is
    answered with a 500 from the end of 2025, OASContent news-profit6.md)."""
    envelope = token.strip()
    if not envelope.startswith("<token>"):
        envelope = f"<token><version>1</version><data>{envelope}</data></token>"
    return "AfasToken " + base64.b64encode(envelope.encode("utf-8")).decode("ascii")
