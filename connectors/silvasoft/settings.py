"""Silvasoft's settings and the API facts the connector is built on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from connectors.settings import Duration, RateWindow, SystemSettings

API = "/rest"
MAX_RELATIONS = 200
MAX_INVOICES = 100
# Credited and cancelled invoices never count toward a customer's value; concepts were never sent.
NOT_COUNTED_STATUSES = frozenset({"credited", "cancelled", "concept"})
# Every status crmsync knows how to count (the response's words are assumed, api-notes/silvasoft.md
# §4): another one may be a credit or a draft in words not met before, so its invoice is held.
INVOICE_STATUSES = NOT_COUNTED_STATUSES | {"open", "paid"}
READ_ONLY = (
    "read-only: crmsync writes nothing to Silvasoft, because its API documents no tag, category or custom "
    "field on a relation that could hold segments or a loyalty tier; its customers and invoices still count "
    "toward profiles and segments"
)


def _documented_limits() -> list[RateWindow]:
    # developers.silvasoft.nl: "maximum 50 requests per minute, maximum 2 requests per second".
    return [RateWindow(requests=2, per_seconds=1), RateWindow(requests=50, per_seconds=60)]


class SilvasoftSettings(SystemSettings):
    type: Literal["silvasoft"]
    api_key: SecretStr
    # The Silvasoft user's e-mail address: it names the account, the API key is the secret.
    username: str = Field(min_length=3)
    rate_limit: list[RateWindow] = Field(default_factory=_documented_limits)
    ratelimit_wait: Duration = Field(
        default=60.0, gt=0, description="wait after a 401 'Ratelimit exceeded' (Silvasoft sends no Retry-After)"
    )
    page_size: int | None = Field(default=None, ge=1, le=MAX_RELATIONS)
    # Invoices are asked for by invoice date, the only filter `listsalesinvoices` has, not by when
    # they were entered or changed: one entered late with an earlier date, or credited, within
    # this span of the newest date read is read at the next cycle; older ones at the full read
    # (`reconcile_every`). Two weeks of invoices is a few requests a cycle for a small business.
    lookback: Duration = Field(
        default=14 * 86400.0, description="how far before the newest invoice date each invoice read starts"
    )
    # Offset paging needs a stable order. Silvasoft advises creation date or GUID; the GUID is
    # unique, which matters when a bulk import gave many relations the same creation time.
    relation_sorting: Literal["createdDate", "RelationGUID"] = "createdDate"
