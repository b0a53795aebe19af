"""AFAS Profit connector: App Connector REST API (`/ProfitRestServices`).

Profit has no fixed "contacts" endpoint: an administrator builds GetConnectors (named views) and
adds them to the app connector whose token crmsync uses. crmsync reads a persons GetConnector and
a sales-invoices GetConnector (names configurable) whose columns follow the layout below, and
writes its verdict into two free fields (vrije velden) on KnPerson through the UpdateConnector
(writes.py, one person per call).

Reads page with `take` and `orderbyfieldids=<key column>`, filtering on the modified-date audit
column for incremental reads. Instead of walking `skip` (an insert or delete between two calls
shifts every later row by one, and AFAS says `skip` gets slow past 100,000), every next page
filters `key > last key seen` with `skip=0` (keyset paging; AFAS's advice for large sets is to
split by filter). A short or empty page ends the read, once it has been asked for a second time
(a reply that lost a row on the way must not end it early). The filter on the modified date stays
fixed during a pass, so a record changed mid-read is either read now or on the next cycle: the
cursor stored at the end never passes the moment the pass started. Both are the shared read loop's
(connectors/streams.py, connectors/window.py).

`check` reads only metainfo (check.py); what Profit's replies mean is in rules.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from pydantic import SecretStr

from connectors.afas.check import prove
from connectors.afas.profit_time import filter_value, parse_profit
from connectors.afas.rules import RULES, read_500, read_503
from connectors.afas.settings import API, DEFAULT_TAKE, INVOICE_KEY, MAX_CODE_LENGTH, PERSON_KEY
from connectors.afas.settings import AfasSettings as AfasSettings  # tests and the config import it from here
from connectors.afas.settings import token_header as token_header
from connectors.afas.writes import KNPERSON_PATH, free_field_ids, knperson_body
from connectors.auth import HeaderAuth
from connectors.base import Capabilities, CheckReport, Connector
from connectors.errors import ApiError
from connectors.http import ApiClient, ApiResponse, Verdict
from connectors.paging import KeysetPaginator, Reply
from connectors.streams import RecordSpec, Stream
from connectors.window import Window
from mapping.model import FieldSpec, Kind, WriteBack


class AfasConnector(Connector):
    type = "afas"
    settings_class = AfasSettings
    api_name = "AFAS Profit REST API"
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=False, write_fields=True
    )
    # Columns of the persons and invoices GetConnectors the administrator builds (see the config).
    contact_fields = {
        "email": FieldSpec("Email", "email"),
        "phone": FieldSpec("Mobile", "phone"),
        "first_name": FieldSpec("FirstName"),
        "last_name": FieldSpec("LastName"),
    }
    order_fields = {
        "customer_id": FieldSpec("PersonId", "id"),
        "amount": FieldSpec("AmountInclVat", "money"),
        "currency": FieldSpec("Currency", "currency"),
        # Profit's fake "Z" makes this read as UTC: an invoice time is off by the Amsterdam offset
        # (one or two hours); traits count days, so at worst an invoice moves across midnight.
        "created_at": FieldSpec("InvoiceDate", "datetime"),
    }
    max_write_batch = 1
    # GetConnectors show an empty free field as null, and PUT "" clears one: "" is "nothing of ours".
    empty_field_value = ""
    rules = RULES

    settings: AfasSettings

    def make_client(self) -> ApiClient:
        self._field_ids: dict[str, str] | None = None
        token = SecretStr(token_header(self.settings.token.get_secret_value()))
        return self.api_client(
            auth=HeaderAuth({"Authorization": token}), headers={"Accept-Language": self.settings.language}
        )

    @property
    def page_size(self) -> int:
        return self.settings.page_size or DEFAULT_TAKE

    def classify(self, response: ApiResponse) -> Verdict:
        """The rules, but a 500 and a 503 are read from their bodies (rules.py)."""
        if response.status == 500:
            return read_500(response)
        if response.status == 503:
            return read_503(response)
        return super().classify(response)

    def check(self) -> CheckReport:
        return prove(self)

    # ----- reads --------------------------------------------------------------------------------
    def contacts_stream(self) -> Stream:
        return self._stream(Kind.CONTACT, self.settings.contacts_connector, PERSON_KEY)

    def orders_stream(self) -> Stream:
        return self._stream(Kind.ORDER, self.settings.orders_connector, INVOICE_KEY)

    def _stream(self, kind: Kind, connector: str, key: str) -> Stream:
        """One GetConnector, by key, the rows changed since the cursor (all rows without one); the
        keyset position is the last key read."""
        after = partial(self._last_key, connector, key)
        return self.stream(
            kind,
            partial(self._rows, connector, key),
            # Profit orders a text key by its collation (any case): a next key only has to be new.
            lambda at: KeysetPaginator(self.name, self.page_size, after, at, ordered=False),
            RecordSpec(key, (self.settings.modified_field,), parse_profit),
        )

    def _rows(self, connector: str, key: str, after: Any, window: Window) -> Reply:
        filters = []
        if window.since is not None:
            filters.append((self.settings.modified_field, 2, filter_value(window.since)))  # 2: >=
        if after is not None:
            filters.append((key, 4, str(after)))  # 4: >
        params: dict[str, Any] = {"skip": 0, "take": self.page_size, "orderbyfieldids": key}
        params.update(filter_params(filters))
        response = self.client.request("GET", f"{API}/connectors/{connector}", params=params)
        rows = response.body.get("rows") if isinstance(response.body, dict) else None
        if not isinstance(rows, list):
            raise ApiError(self.name, f"GET {connector}: expected {{skip, take, rows}}")
        return Reply(rows)

    def _last_key(self, connector: str, key: str, reply: Reply, position: Any) -> Any:
        last = reply.items[-1] if reply.items else None
        found = last.get(key) if isinstance(last, dict) else None
        if found is None:
            raise ApiError(self.name, f"GET {connector}: cannot page on {key!r} (missing or not filterable)")
        return found

    # ----- mapping hooks ------------------------------------------------------------------------
    def canonical_id(self, raw: str) -> str | None:
        text = raw.strip()
        return text if text and len(text) <= MAX_CODE_LENGTH else None

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        column = self.column(name)
        value = payload.get(column) if column else None
        if value is None or isinstance(value, str):
            return value
        return str(value)

    def column(self, name: str) -> str | None:
        """The persons GetConnector column showing the free field `name` (crmsync's own two)."""
        if name == self.segments_field:
            return self.settings.segments_column or name
        if name == self.tier_field:
            return self.settings.tier_column or name
        return None

    def owned_settings(self) -> list[tuple[str, str]]:
        return [(kind, name) for kind, name in (("segments", self.segments_field), ("tier", self.tier_field)) if name]

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("Credited") is not True

    # ----- writes -------------------------------------------------------------------------------
    def write_one(self, change: WriteBack) -> bool:
        body = knperson_body(change, self._free_field_ids())
        self.client.request("PUT", KNPERSON_PATH, json_body=body, expect_json=False)
        return True

    def _free_field_ids(self) -> dict[str, str]:
        """Setting name -> KnPerson field id, looked up once."""
        if self._field_ids is None:
            self._field_ids = free_field_ids(self.client, self.name, [n for _, n in self.owned_settings()])
        return self._field_ids


def filter_params(filters: Sequence[tuple[str, int, str]]) -> dict[str, str]:
    """AND-ed conditions as the three parallel lists; as `filterjson` when a value holds one of the
    list separators (`,` AND, `;` OR), which the plain form cannot carry."""
    if not filters:
        return {}
    if any("," in value or ";" in value for _, _, value in filters):
        fields = [{"@FieldId": f, "@OperatorType": str(op), "#text": v} for f, op, v in filters]
        return {"filterjson": json.dumps({"Filters": {"Filter": [{"@FilterId": "Filter 1", "Field": fields}]}})}
    return {
        "filterfieldids": ",".join(f for f, _, _ in filters),
        "filtervalues": ",".join(v for _, _, v in filters),
        "operatortypes": ",".join(str(op) for _, op, _ in filters),
    }


CONNECTOR = AfasConnector
