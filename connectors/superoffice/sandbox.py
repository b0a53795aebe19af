"""SuperOffice CRM Online WebAPI (REST v1) emulator for tests and the demo.

Follows ../shared/api-notes/superoffice.md, corrected where SuperOffice's own material says more:
the archive column names and types of the Person and Sale providers (SuperOfficeDocs/
superoffice-docs, docs/en/api/archive-providers/reference/person.md, sale.md: `personUpdatedDate`,
`email/emailAddress`, `personUdef/SuperOffice:1`, `personExtra/x_...`, `personInterestIds`), the
PATCH contract (JSON Patch or JSON Merge Patch, paths case-insensitive, 409 for a failed `test`,
412 for `If-Unmodified-Since`), `GET /api/v1/Person/CustomField` for the published UDF + extra
fields, and the entity shapes of the official `@superoffice/webapi` client (12.4; its captured
`Person210.json`: `UserDefinedFields` / `CustomFields` as string dictionaries keyed by ProgId or
`SuperOffice:<n>`, `Interests` as the whole list with `Selected` flags).

Implemented: `/{tenant}/api/v1/Person`, `/Sale`, `/Archive/{provider}` (Person, Sale) with
`$select`, `$filter`, `$orderBy`, `$top`, `$skip` and `odata.nextLink`; `GET`/`PATCH
/Person/{id}`; `POST /Agents/Person/UpdateInterests` (the ids named switched on or off, no other
interest touched, 204); `GET /Person/CustomField`; `GET`/`POST /List/PersonInterest/Items`. Auth is
`Authorization: Bearer <token>` (or `SOTicket <ticket>`) plus `SO-AppToken`, both required as for
a server calling Online. Errors use the vendor JSON `{Error, ErrorType, ErrorMessage,
ErrorSource}`. (assumed) The rate limit: 10 requests a second per tenant, answered with 429 and
`Retry-After`; the notes found no published figure.

Signing in (sandbox_signin.py): the OIDC refresh grant and the system-user exchange, as
documented. `--write-config` writes the system-user flow; the fixed token and ticket of older
installations keep working.

The emulator is split by job: this module (credentials, error shape, fixtures, test routes),
sandbox_signin.py (token routes), sandbox_persons.py (PersonEntity, custom fields, interests)
and sandbox_archive.py (the archive lists over archive.py's query language).

Display values follow the request's language (`SO-Language`, else `Accept-Language`, else the
tenant's: Dutch for the Dutch demo tenant): a sale's status is "Verkocht" to a client that does not
ask for English. `next_link` (`/_sandbox/app`) leaves `odata.nextLink` out, which the documentation
does not promise; `person_rights` sets the role's rights on persons (`TableRight.Mask`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from connectors.ratelimit import Window
from connectors.sandbox import FixtureError, Route, VendorError, json_response, utcnow
from connectors.sandbox.store import FixtureStore
from connectors.superoffice.archive import NEVER, ArchiveError, format_date, parse_date
from connectors.superoffice.sandbox_archive import SALE_STATUSES, STATUS_NAMES, ArchiveRoutes, _nested
from connectors.superoffice.sandbox_persons import (
    CUSTOM_BUCKETS,
    DEFAULT_FIELDS,
    DEFAULT_INTERESTS,
    FULL_RIGHTS,
    PHONE_LISTS,
    FieldDef,
    PersonRoutes,
    stamp_updated,
)
from connectors.superoffice.sandbox_persons import SEGMENTS_UDF as SEGMENTS_UDF
from connectors.superoffice.sandbox_persons import TIER_UDF as TIER_UDF
from connectors.superoffice.sandbox_signin import TICKET_TTL, SignInRoutes, app_private_pem

API = "/<tenant>/api/v1"
DEFAULT_TENANT = "Cust12345"
DEFAULT_TOKEN = "8A:Cust12345.sandbox-access-token-0123456789"
DEFAULT_APP_TOKEN = "sandbox-application-secret-0123456789"
ERROR_SOURCE = "SuperOffice.Services.Implementation"
DEFAULT_CLIENT_ID = "sandbox-superoffice-client-0123456789"
DEFAULT_REFRESH_TOKEN = "sandbox-superoffice-refresh-token-0123456789"
DEFAULT_SYSTEM_USER_TOKEN = "crmsync-sandbox-system-user-0123456789"
_FIELD_NAME = re.compile(r"^(SuperOffice:\d+|[A-Za-z_][\w.-]*)$")
_KIT_ERRORS = {"rest_no_route": "SoNotFoundException", "method_not_allowed": "MethodNotAllowedException"}


class SuperOfficeSandbox(SignInRoutes, PersonRoutes, ArchiveRoutes):
    type = "superoffice"
    rate_limits = (Window(10, 1.0),)
    issues_tokens = True

    def __init__(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
        access_token: str = DEFAULT_TOKEN,
        app_token: str = DEFAULT_APP_TOKEN,
        client_id: str = DEFAULT_CLIENT_ID,
        refresh_token: str = DEFAULT_REFRESH_TOKEN,
        system_user_token: str = DEFAULT_SYSTEM_USER_TOKEN,
        language: str = "nl",
        **kwargs: Any,
    ) -> None:
        self.tenant = tenant
        self.access_token = access_token
        self.app_token = app_token  # the application's client secret
        self.client_id = client_id
        self.refresh_token = refresh_token
        self.system_user_token = system_user_token
        self.language = language
        self.token_ttl_s: float | None = None  # vendor lifetimes unless a test sets one
        self.next_link = True
        self.person_rights = FULL_RIGHTS
        self._display_language = language
        self.fields: dict[str, FieldDef] = {f.name: f for f in DEFAULT_FIELDS}
        self.interests: dict[int, dict[str, Any]] = {}
        for name in DEFAULT_INTERESTS:
            self._new_interest(name)
        # `persons` and `sales` are the stores' own dicts: tests and the fault lab edit them in place.
        self.people = FixtureStore("persons", key="PersonId", touch=stamp_updated, fixed=("PersonId", "CreatedDate"))
        self.persons = self.people.records
        self.selected: dict[int, set[int]] = {}
        self.sale_store = FixtureStore("sales", key="SaleId", fixed=("SaleId", "CreatedDate"))
        self.sales = self.sale_store.records
        super().__init__(data, **kwargs)

    # ----- routes, auth, error shape ----------------------------------------------------------
    def routes(self) -> Sequence[Route]:
        return [
            Route(f"{API}/Person", ("GET",), self.list_persons, lists=True),
            Route(f"{API}/Sale", ("GET",), self.list_sales, lists=True),
            Route(f"{API}/Archive/<provider>", ("GET",), self.list_archive, lists=True),
            Route(f"{API}/Person/<int:person_id>", ("GET",), self.get_person),
            Route(f"{API}/Person/<int:person_id>", ("PATCH",), self.patch_person),
            Route(f"{API}/Agents/Person/UpdateInterests", ("POST",), self.update_interests),
            Route(f"{API}/Person/CustomField", ("GET",), self.custom_fields),
            Route(f"{API}/List/PersonInterest/Items", ("GET",), self.list_interests),
            Route(f"{API}/List/PersonInterest/Items", ("POST",), self.create_interest),
            Route("/login/common/oauth/tokens", ("POST",), self.oidc_tokens, token=True),
            Route("/Login/api/PartnerSystemUser/Authenticate", ("POST",), self.system_user_authenticate, token=True),
            Route("/login/.well-known/jwks", ("GET",), self.jwks, token=True),
        ]

    def client_settings(self) -> dict[str, Any]:
        # Server to server: the system-user flow a daemon uses.
        return {
            "tenant": self.tenant,
            "auth": "system_user",
            "app_token": self.app_token,
            "private_key": app_private_pem(),
            "system_user_token": self.system_user_token,
            "segments_field": SEGMENTS_UDF,
            "tier_field": TIER_UDF,
            **super().client_settings(),
        }

    def known_secrets(self) -> list[str]:
        return [self.access_token, self.app_token, self.refresh_token, self.system_user_token]

    # ----- the application: token lifetimes, rights, language, paging ---------------------------
    def app_settings(self) -> dict[str, Any]:
        return {
            "token_ttl_s": self.token_ttl_s,
            "language": self.language,
            "next_link": self.next_link,
            "person_rights": self.person_rights,
            **super().app_settings(),
        }

    def change_app(self, partial: Mapping[str, Any]) -> None:
        rest = dict(partial)
        if "token_ttl_s" in rest:
            ttl = rest.pop("token_ttl_s")
            if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
                raise VendorError(400, "ArgumentException", "token_ttl_s is a positive number of seconds")
            self.token_ttl_s = None if ttl is None else float(ttl)
        if "language" in rest:
            language = rest.pop("language")
            if language not in STATUS_NAMES:
                raise VendorError(400, "ArgumentException", f"language is one of {', '.join(STATUS_NAMES)}")
            self.language = str(language)
        if "next_link" in rest:
            self.next_link = bool(rest.pop("next_link"))
        if "person_rights" in rest:
            self.person_rights = str(rest.pop("person_rights"))
        super().change_app(rest)

    # ----- error shape and credentials ------------------------------------------------------------
    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        body = {"Error": True, "ErrorType": _KIT_ERRORS.get(code, code), "ErrorMessage": message}
        return json_response({**body, "ErrorSource": ERROR_SOURCE, **extra}, status)

    def auth_failure(self) -> Response:
        return self._unauthorized("The access token is not valid or has expired")

    def _unauthorized(self, message: str) -> Response:
        response = self.error(401, "UnauthorizedAccessException", message)
        response.headers["WWW-Authenticate"] = 'Bearer realm="SuperOffice"'
        return response

    def throttled(self, retry_after: float | None) -> Response:
        response = self.error(429, "TooManyRequestsException", "Too many requests for this tenant; slow down")
        response.headers["Retry-After"] = str(max(1, int(-(-(retry_after or 1.0) // 1))))
        return response

    def authenticate(self, request: Request) -> Response | None:
        scheme, _, credential = request.headers.get("Authorization", "").strip().partition(" ")
        if not scheme:
            return self._unauthorized("Authorization header is missing: send 'Bearer <access token>'")
        if scheme.lower() not in ("bearer", "soticket"):
            return self._unauthorized(f"Authorization scheme '{scheme}' is not supported by SuperOffice Online")
        credential = credential.strip()
        if credential != self.access_token:
            if self.token_status(credential) != "valid":
                return self.auth_failure()
            if scheme.lower() == "soticket":
                self.extend_token(credential, self._ttl(TICKET_TTL))  # a ticket lives on while used
        app_token = request.headers.get("SO-AppToken")
        if not app_token:
            return self._unauthorized("SO-AppToken header is missing; it is required when calling Online from a server")
        if app_token != self.app_token:
            return self._unauthorized("SO-AppToken is not valid for this application")
        tenant = request.path.split("/")[1] if request.path.count("/") > 1 else ""
        if tenant != self.tenant:
            return self._unauthorized(f"The access token is not valid for tenant '{tenant}'")
        return None

    # ----- fixtures ---------------------------------------------------------------------------
    def load(self, data: Mapping[str, Any]) -> None:
        self.people.load(data.get("customers"), self._load_person, "superoffice/customers.json")
        self.sale_store.load(data.get("orders"), self._load_sale, "superoffice/orders.json")

    def _load_person(self, where: str, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected a PersonEntity object")
        person_id = item.get("PersonId")
        if not isinstance(person_id, int) or isinstance(person_id, bool) or person_id <= 0:
            raise FixtureError(f"{where}: PersonId must be a positive integer")
        person = copy.deepcopy(item)
        for key in ("Firstname", "MiddleName", "Lastname", "Title", "PersonNumber"):
            if person.get(key) is not None and not isinstance(person[key], str):
                raise FixtureError(f"{where}: {key} must be a string")
        for key in PHONE_LISTS:
            items = person.get(key, [])
            if not isinstance(items, list) or not all(_is_value_item(i) for i in items):
                raise FixtureError(f"{where}: {key} must be a list of {{Value, Description}} objects")
        if person.get("Contact") is not None and not isinstance(person["Contact"], dict):
            raise FixtureError(f"{where}: Contact must be an object or null")
        person["CustomFields"] = self._load_custom(where, person)
        for key in ("UserDefinedFields", "ExtraFields"):
            person.pop(key, None)
        self.selected[person_id] = self._load_interests(where, person.pop("Interests", []))
        now = format_date(utcnow())
        for key in ("CreatedDate", "UpdatedDate"):
            try:
                person[key] = format_date(parse_date(str(person[key]))) if person.get(key) else None
            except ArchiveError:
                raise FixtureError(f"{where}: {key} is not an ISO-8601 date") from None
        person["CreatedDate"] = person["CreatedDate"] or person["UpdatedDate"] or now  # made by then
        person["UpdatedDate"] = person["UpdatedDate"] or NEVER  # created and never edited
        for key in PHONE_LISTS:
            person.setdefault(key, [])
        for key, default in (("Firstname", ""), ("MiddleName", ""), ("Lastname", ""), ("Contact", None)):
            person.setdefault(key, default)
        return person

    def _load_custom(self, where: str, person: Mapping[str, Any]) -> dict[str, Any]:
        """UserDefinedFields, ExtraFields and CustomFields folded into one bucket (CustomFields is
        the union of the other two in SuperOffice). A field the tenant does not have yet is
        published for it, so real exports load as they are."""
        merged: dict[str, Any] = {}
        for key in CUSTOM_BUCKETS:
            values = person.get(key) or {}
            if not isinstance(values, dict):
                raise FixtureError(f"{where}: {key} must be an object of field name -> value")
            for name, value in values.items():
                if name.endswith(":org"):
                    continue  # the client's copy of the loaded value; derived, not stored
                if value is not None and not isinstance(value, str | int | float):
                    raise FixtureError(f"{where}: {key}.{name} must be a string")
                merged[name] = value
                if _FIELD_NAME.match(name) and name not in self.fields:
                    self.fields[name] = FieldDef(name, name, "LongText" if len(str(value or "")) > 40 else "ShortText")
        return merged

    def _load_interests(self, where: str, items: Any) -> set[int]:
        if not isinstance(items, list):
            raise FixtureError(f"{where}: Interests must be a list of {{Id, Name, Selected}} objects")
        selected: set[int] = set()
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("Name", ""), str):
                raise FixtureError(f"{where}: Interests must be a list of {{Id, Name, Selected}} objects")
            interest_id = self._interest_id(item)
            if interest_id is None:
                interest_id = self._new_interest(str(item.get("Name") or ""), item.get("Id"))
            if item.get("Selected", True):
                selected.add(interest_id)
        return selected

    def _load_sale(self, where: str, item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            raise FixtureError(f"{where}: expected a SaleEntity object")
        sale_id = item.get("SaleId")
        if not isinstance(sale_id, int) or isinstance(sale_id, bool) or sale_id <= 0:
            raise FixtureError(f"{where}: SaleId must be a positive integer")
        sale = copy.deepcopy(item)
        amount = sale.get("Amount", 0)
        if isinstance(amount, bool) or not isinstance(amount, int | float | str):
            raise FixtureError(f"{where}: Amount must be a number")
        if sale.get("Status", "Open") not in SALE_STATUSES:
            raise FixtureError(f"{where}: Status must be one of {', '.join(SALE_STATUSES)}")
        for key in ("Person", "Contact", "Currency"):
            if sale.get(key) is not None and not isinstance(sale[key], dict):
                raise FixtureError(f"{where}: {key} must be an object or null")
        person_id = _nested(sale, "Person", "PersonId")
        if person_id is not None and not isinstance(person_id, int):
            raise FixtureError(f"{where}: Person.PersonId must be an integer")
        for key in ("Saledate", "CreatedDate", "UpdatedDate"):
            try:
                sale[key] = format_date(parse_date(str(sale[key]))) if sale.get(key) else None
            except ArchiveError:
                raise FixtureError(f"{where}: {key} is not an ISO-8601 date") from None
        sale["CreatedDate"] = sale["CreatedDate"] or sale["UpdatedDate"] or sale["Saledate"] or format_date(utcnow())
        sale["Saledate"] = sale["Saledate"] or sale["CreatedDate"]
        sale["UpdatedDate"] = sale["UpdatedDate"] or NEVER  # created and never edited
        sale.setdefault("Status", "Open")
        sale.setdefault("Currency", {"Id": 1, "Value": "EUR"})
        return sale

    # ----- the test routes ---------------------------------------------------------------------------
    def stamp_customer(self, customer_id: str, moment: datetime) -> None:
        """Sets a customer's modification time as the vendor would have written it (a test moves
        records onto a read's boundary)."""
        self.persons[int(customer_id)]["UpdatedDate"] = format_date(moment)

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        person_id = self.people.id_of(customer_id)
        return self._render(person_id) if person_id is not None and person_id in self.persons else None

    def delete_customer(self, customer_id: str) -> dict[str, Any] | None:
        fixture = self.customer_fixture(customer_id)
        if fixture is not None:
            self.people.remove(customer_id)
        return fixture

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        """A person editing the card in SuperOffice: same merge rules as the API (every key the
        entity's way, none merged the store's way), stamped as changed."""
        found = self.people.id_of(customer_id)
        if found is None or found not in self.persons:
            return None
        person_id: int = found

        def by_hand(person: dict[str, Any], key: str, value: Any) -> bool:
            self._merge_member(person_id, key, value, strict=False)
            return True

        self.people.patch(customer_id, partial, merge=by_hand)
        return self._render(person_id)


def _is_value_item(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("Value"), str)


SANDBOX = SuperOfficeSandbox
