"""Silvasoft connector: REST API (`https://rest-api.silvasoft.nl/rest/<endpoint>/`), read-only.

Relations (`listrelations`) have no modified-since filter, so every cycle scans the customers in
creation order with `Limit`/`Offset` (at most 200 per call); the API gives no totals, so a page
shorter than asked for (asked for a second time, in case a reply lost an item on the way) is the
last one, and an exactly full page costs one more request. The scan is cheap downstream:
unchanged relations hash the same and are skipped. Customer value comes from
sales invoices (`listsalesinvoices`, newest number first, at most 100 per call), read from the
last invoice date seen minus the look-back with the documented `DateFrom` filter.

A relation's record id is its customer number: that is what invoices name, what people see in
Silvasoft, and what web-shop plugins often fill with the shop's own customer number (configure
`links = { <shop> = "CustomerNumber" }` then).

Silvasoft documents no tag, category or custom field on a relation, so crmsync writes nothing
here: `capabilities` say so, the planner plans nothing, `write` raises NotImplementedError (no
`write_one`), and `crmsync check` (which proves the two reads, relations and sales invoices, with
one item each) says it in a warning.

The vendor signals its rate limit with HTTP 401 "Ratelimit exceeded" and no Retry-After: see
rules.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from connectors.auth import HeaderAuth
from connectors.base import Capabilities, CheckReport, Connector, Permission
from connectors.errors import ApiError
from connectors.http import ApiClient, ApiResponse, Rule, Verdict, classify_by
from connectors.paging import OffsetPaginator, Reply
from connectors.silvasoft.rules import RULES, error_text, throttle_rule
from connectors.silvasoft.settings import (
    API,
    INVOICE_STATUSES,
    MAX_INVOICES,
    MAX_RELATIONS,
    NOT_COUNTED_STATUSES,
)
from connectors.silvasoft.settings import READ_ONLY as READ_ONLY  # the tests import it from here
from connectors.silvasoft.settings import SilvasoftSettings as SilvasoftSettings
from connectors.streams import RecordSpec, Stream
from connectors.window import Window
from mapping.model import FieldSpec, Kind, RecordProblem
from mapping.normalize.dates import normalise_date_dmy


def customer_number(value: Any) -> str:
    """A customer always has a number; one without (0, null) gets no id and is quarantined as such."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else ""


def invoice_date(text: str) -> datetime:
    """`dd-MM-yyyy`, as midnight UTC of that day."""
    dated = normalise_date_dmy(text)
    if not isinstance(dated, datetime):
        raise ValueError(f"not a dd-MM-yyyy date: {text!r}")
    return dated


# Relations carry no modification time: the content hash tells what changed.
RELATION = RecordSpec("CustomerNumber", id_rule=customer_number)
INVOICE = RecordSpec("InvoiceNumber", ("InvoiceDate",), parse_time=invoice_date)


class SilvasoftConnector(Connector):
    type = "silvasoft"
    settings_class = SilvasoftSettings
    api_name = "Silvasoft REST API"
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=False, write_fields=False
    )
    # Documented on the relation for updates; that list replies carry it too is assumed.
    optional_fields = frozenset({"country"})
    contact_fields = {
        "email": FieldSpec("Email", "email"),
        "phone": FieldSpec("Phone", "phone"),
        "first_name": FieldSpec("Relation_Contact.0.FirstName"),
        "last_name": FieldSpec("Relation_Contact.0.LastName"),
        # The correspondence address's ISO code, for reading phone numbers in its format.
        "country": FieldSpec("Address_CountryCode", "country"),
    }
    order_fields = {
        "customer_id": FieldSpec("CustomerNumber", "id"),
        "email": FieldSpec("CustomerEmail", "email"),
        "amount": FieldSpec("TotalAmountInclTax", "money"),
        "currency": FieldSpec("Currency", "currency"),
        "created_at": FieldSpec("InvoiceDate", "date_dmy"),
    }
    numeric_ids = True
    rules = RULES

    settings: SilvasoftSettings

    def make_client(self) -> ApiClient:
        return self.api_client(auth=HeaderAuth({"ApiKey": self.settings.api_key, "Username": self.settings.username}))

    # ----- what replies mean ---------------------------------------------------------------------
    @cached_property
    def reply_rules(self) -> tuple[Rule, ...]:
        """The class's rules behind this instance's throttle rule (it waits the configured time)."""
        return (throttle_rule(self.settings.ratelimit_wait), *self.rules)

    def classify(self, response: ApiResponse) -> Verdict:
        if 200 <= response.status < 300:
            return Verdict.ok()  # without building an error message from every page's text
        return classify_by(self.reply_rules, response, message=error_text(response))

    def get(self, endpoint: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """One list call; Silvasoft answers "nothing found" with 200 and an empty body, `{}` or `[]`."""
        body = self.client.request("GET", f"{API}/{endpoint}/", params=dict(params)).body
        if body is None or body == {} or body == []:
            return []
        if not isinstance(body, list):
            raise ApiError(self.name, f"GET {API}/{endpoint}/: expected a JSON list, got {type(body).__name__}")
        return [item for item in body if isinstance(item, dict)]

    def check(self) -> CheckReport:
        """Proves the credentials and both reads, one item each; a 401 for wrong credentials
        raises AuthError. Nothing is written, and nothing can be: the warning says so."""
        self.get("listrelations", {"RelationType": "Customer", "Limit": 1})
        self.get("listsalesinvoices", {"Limit": 1})
        capabilities = Capabilities(
            read_contacts=True,
            read_orders=True,
            incremental=True,  # invoices are read from a date on (DateFrom)
            write_tags=False,
            write_fields=False,
        )
        permissions = [Permission("read_relations", True), Permission("read_sales_invoices", True)]
        return CheckReport(capabilities, permissions, [READ_ONLY])

    # ----- reads --------------------------------------------------------------------------------
    @property
    def relations_page(self) -> int:
        return min(self.settings.page_size or MAX_RELATIONS, MAX_RELATIONS)

    @property
    def invoices_page(self) -> int:
        return min(self.settings.page_size or MAX_INVOICES, MAX_INVOICES)

    def contacts_stream(self) -> Stream:
        """A full scan, oldest first: relations added meanwhile come at the end, so the offsets
        of the pages already read stay valid. A finished scan leaves `{}`: the next cycle scans
        from the start."""
        return self.stream(
            Kind.CONTACT,
            self._fetch_relations,
            lambda at: OffsetPaginator(self.name, self.relations_page, at),
            RELATION,
            incremental=False,
        )

    def _fetch_relations(self, offset: int, window: Window) -> Reply:
        params = {"RelationType": "Customer", "Sorting": self.settings.relation_sorting, "SortDir": "ASC"}
        return Reply(self.get("listrelations", {**params, "Limit": self.relations_page, "Offset": offset}))

    def orders_stream(self) -> Stream:
        """Sales invoices dated from the window's lower bound on (newest number first); the
        bound is fixed for the pass, so a resumed read pages the same list."""
        return self.stream(
            Kind.ORDER,
            self._fetch_invoices,
            lambda at: OffsetPaginator(self.name, self.invoices_page, at),
            INVOICE,
        )

    def _fetch_invoices(self, offset: int, window: Window) -> Reply:
        params: dict[str, Any] = {"Limit": self.invoices_page, "Offset": offset}
        if window.since:
            # `DateFrom` has day resolution and Silvasoft does not say whether it is inclusive:
            # start a day earlier.
            params["DateFrom"] = (window.since - timedelta(days=1)).strftime("%d-%m-%Y")
        return Reply(self.get("listsalesinvoices", params))

    # ----- mapping hooks ------------------------------------------------------------------------
    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        """Open and paid invoices count. A status crmsync does not know (or none) is quarantined, as
        SuperOffice's are: counted, a credit note in other words would add to the revenue."""
        status = payload.get("InvoiceStatus")
        folded = status.casefold() if isinstance(status, str) else None
        if folded not in INVOICE_STATUSES:
            raise RecordProblem(
                "unknown_invoice_status",
                f"InvoiceStatus {status!r} is none of {', '.join(sorted(INVOICE_STATUSES))}",
            )
        return folded not in NOT_COUNTED_STATUSES


CONNECTOR = SilvasoftConnector
