"""SuperOffice CRM Online connector: WebAPI REST v1 (`https://<env>.superoffice.com/<tenant>/api/v1`).

Reads persons from the Person archive (`GET /api/v1/Person` with `$select`, `$filter`,
`$orderBy`, `$top`) and sales from the Sale archive, a page at a time by id (reads.py says why by
id, and why `odata.nextLink` is not followed). The interest ids of a person are named while
reading, so mapping a record never calls the API.

A sale counts when its status is Sold. The archive shows list values as display text in the
request's language (else the tenant's: "Verkocht" in a Dutch tenant), so crmsync asks for English
(`SO-Language: en`) and quarantines a sale whose status it does not recognise rather than guess.

Write-back goes into the custom fields named by `segments_field` / `tier_field` (a UDF by ProgId
or `SuperOffice:<n>`, or an extra field `x_...`) with a JSON Merge Patch that names only those
keys, so every other UDF stays as it is; or, with `segments_as = "interests"`, into Interests
named `<prefix><segment>`, switched on or off by id with the Person agent's `UpdateInterests`,
which touches no other interest, so a merchant's edit is never overwritten. See writes.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.auth import token_classify
from connectors.base import Capabilities, CheckReport, Connector
from connectors.errors import RejectedRecord
from connectors.http import ApiClient, ApiResponse, Verdict, classify_by
from connectors.paging import KeysetPaginator
from connectors.streams import RecordSpec, Stream, last_per_id
from connectors.superoffice.auth import sign_in
from connectors.superoffice.check import check_tenant
from connectors.superoffice.reads import (
    INTEREST_NAMES,
    INTERESTS_COLUMN,
    NEVER_SET,
    PERSON_COLUMNS,
    SALE_COLUMNS,
    ArchiveQuery,
    InterestNames,
    Refine,
    chain,
    field_column,
)
from connectors.superoffice.rules import RULES, error_message
from connectors.superoffice.settings import DEFAULT_PAGE
from connectors.superoffice.settings import SuperOfficeSettings as SuperOfficeSettings
from connectors.superoffice.writes import InterestList, PersonWrites
from mapping.model import FieldSpec, Kind, RecordProblem, RemoteState, WriteBack

COUNTED_SALE_STATUSES = frozenset({"Sold"})
# The salestatus list (docs: mdo-providers/reference/salestatus.md) by its English names.
SALE_STATUSES = frozenset({"Unknown", "Open", "Sold", "Lost", "Stalled"})


class SuperOfficeConnector(Connector):
    type = "superoffice"
    settings_class = SuperOfficeSettings
    api_name = "SuperOffice WebAPI REST"
    api_version = "v1"
    # Tags are Interests and fields are UDFs / extra fields; which of them a tenant uses is a setting.
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=True, write_fields=True
    )
    contact_fields = {
        "email": FieldSpec("email/emailAddress", "email"),
        "phone": FieldSpec("personMobilePhone/formattedNumber", "phone"),
        "first_name": FieldSpec("firstName"),
        "last_name": FieldSpec("lastName"),
        # The person's country by name (in English: the reads ask for it): phones are read in its format.
        "country": FieldSpec("personCountry", "country"),
    }
    order_fields = {
        "customer_id": FieldSpec("person/personId", "id"),
        "email": FieldSpec("person/email/emailAddress", "email"),
        "amount": FieldSpec("amount", "money"),
        "currency": FieldSpec("currency", "currency"),
        "created_at": FieldSpec("date", "datetime"),
    }
    # One person per PATCH: the REST API has no batch update for entities.
    max_write_batch = 1
    # A UDF cannot be deleted, only emptied.
    empty_field_value = ""
    numeric_ids = True
    rules = RULES

    settings: SuperOfficeSettings

    def make_client(self) -> ApiClient:
        auth, self.token_client = sign_in(
            self.name,
            self.settings,
            lambda: self.api_client(base_url=self.settings.login_origin, classify=token_classify, paced=False),
        )
        # Display values (a sale's status above all) come in the language asked for, else in the
        # tenant's: crmsync always asks for English, so "Sold" means sold in every tenant.
        client = self.api_client(auth=auth, headers={"SO-Language": "en", "Accept-Language": "en"})
        self.interests = InterestList(self.name, client, self.api)
        self.writes = PersonWrites(self.name, client, self.api, self.interests)
        return client

    def close(self) -> None:
        super().close()
        if self.token_client is not None:
            self.token_client.close()

    @property
    def api(self) -> str:
        return f"/{self.settings.tenant}/api/v1"

    @property
    def page_size(self) -> int:
        return self.settings.page_size or DEFAULT_PAGE

    @property
    def writes_tags(self) -> bool:
        return self.settings.segments_as == "interests"

    def classify(self, response: ApiResponse) -> Verdict:
        return classify_by(self.rules, response, message=error_message(response))

    def check(self) -> CheckReport:
        return check_tenant(self)

    # ----- reads --------------------------------------------------------------------------------
    def person_columns(self) -> list[str]:
        """The Person archive columns a read selects: crmsync's own, its fields, and every path of
        the field map, which holds the configured `fields` and `links` (an archive answers only
        the columns asked for)."""
        columns = list(PERSON_COLUMNS)
        columns += [field_column(n) for n in (self.segments_field, self.tier_field) if n]
        mapped = (spec.path for spec in self.contact_fieldmap.values())
        columns += [path for path in dict.fromkeys(mapped) if path not in columns]
        if self.writes_tags:
            columns.append(INTERESTS_COLUMN)
        return columns

    def read_shape(self) -> Any:
        return {"persons": self.person_columns(), "sales": [*SALE_COLUMNS, *self._orders_source()]}

    def _orders_source(self) -> tuple[str, str | None]:
        archive = self.settings.orders_archive
        return ("Sale" if archive.lower() == "sale" else f"Archive/{archive}", self.settings.orders_filter)

    def contacts_stream(self) -> Stream:
        refine: Refine = last_per_id
        if self.writes_tags:
            refine = chain(last_per_id, InterestNames(self.interests))
        columns = self.person_columns()
        return self._archive_stream(
            Kind.CONTACT, "Person", columns, ("personUpdatedDate", "personRegisteredDate"), "personId", refine=refine
        )

    def orders_stream(self) -> Stream:
        path, extra = self._orders_source()
        stamps = ("updatedDate", "registeredDate")
        return self._archive_stream(Kind.ORDER, path, list(SALE_COLUMNS), stamps, "saleId", extra, last_per_id)

    def _archive_stream(
        self,
        kind: Kind,
        path: str,
        columns: list[str],
        stamps: tuple[str, str],
        key: str,
        extra_filter: str | None = None,
        refine: Refine | None = None,
    ) -> Stream:
        """`stamps`: the update-time column and the creation-time one, which a row never edited
        is found and dated by."""
        updated, registered = stamps
        query = ArchiveQuery(
            self.name,
            self.client,
            f"{self.api}/{path}",
            columns,
            updated,
            key,
            self.page_size,
            extra_filter,
            registered,
        )
        return self.stream(
            kind,
            query.fetch,
            lambda at: KeysetPaginator(self.name, self.page_size, query.after, at),
            RecordSpec(key, stamps, never=NEVER_SET),
            refine=refine,
        )

    # ----- mapping hooks: they read the payload only --------------------------------------------
    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        if field_column(name) in payload:  # an archive row
            value = payload[field_column(name)]
        else:  # a PersonEntity
            buckets = [payload.get(b) for b in ("CustomFields", "UserDefinedFields", "ExtraFields")]
            value = next((b[name] for b in buckets if isinstance(b, dict) and name in b), None)
        return value if isinstance(value, str) or value is None else str(value)

    def owned_state(self, payload: Mapping[str, Any]) -> RemoteState:
        """Unknown for an archive row holding interest ids but not their names (stored by an
        earlier crmsync, mapped again after an upgrade): naming them would need the API."""
        ids = payload.get(INTERESTS_COLUMN)
        if isinstance(ids, str) and ids.strip() and INTEREST_NAMES not in payload:
            return RemoteState.unknown()
        return super().owned_state(payload)

    def payload_tags(self, payload: Mapping[str, Any]) -> list[str]:
        interests = payload.get("Interests")
        if isinstance(interests, list):  # a PersonEntity: the whole list, with Selected flags
            return [str(i.get("Name")) for i in interests if isinstance(i, dict) and i.get("Selected")]
        names = payload.get(INTEREST_NAMES)  # an archive row: the names were looked up when it was read
        return [str(name) for name in names if name] if isinstance(names, list) else []

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        """Only sold sales are revenue; open, lost and stalled ones are not. A status that is none
        of the English names crmsync asked for cannot be read safely: the sale is quarantined."""
        status = payload.get("saleStatus", payload.get("Status"))
        if status not in SALE_STATUSES:
            raise RecordProblem(
                "unknown_sale_status",
                f"saleStatus {status!r} is none of {', '.join(sorted(SALE_STATUSES))} (crmsync asks for "
                "English display values with SO-Language: en)",
            )
        return status in COUNTED_SALE_STATUSES

    def verify_owned(self, record_ids: Sequence[str]) -> dict[str, RemoteState]:
        """crmsync's interests and fields on these persons as they stand now: each PersonEntity
        (its `Interests`, the whole list with `Selected` flags), a GET per person; a person deleted
        since (404) or an id that is no person's is left out."""
        found: dict[str, RemoteState] = {}
        for record_id in dict.fromkeys(record_ids):
            person_id = self.canonical_id(record_id)
            if person_id is None:
                continue
            try:
                entity = self.client.request("GET", f"{self.api}/Person/{person_id}").body
            except RejectedRecord:
                continue
            if isinstance(entity, dict):
                found[record_id] = self.owned_state(entity)
        return found

    def gone_contacts(self, record_ids: Sequence[str]) -> set[str]:
        """Those of these persons SuperOffice no longer has: a GET each, 404 for a person deleted
        (documented)."""
        return self.gone_one_by_one(record_ids, lambda person_id: f"{self.api}/Person/{person_id}")

    # ----- writes -------------------------------------------------------------------------------
    def write_one(self, change: WriteBack) -> bool:
        person_id = self.canonical_id(change.record_id)
        if person_id is None:
            raise RejectedRecord(self.name, f"{change.record_id!r} is not a person id", change.record_id)
        return self.writes.write(person_id, change)


CONNECTOR = SuperOfficeConnector
