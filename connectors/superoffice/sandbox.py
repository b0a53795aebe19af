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
/Person/{id}`; `GET /Person/CustomField`; `GET`/`POST /List/PersonInterest/Items`. Auth is
`Authorization: Bearer <token>` (or `SOTicket <ticket>`) plus `SO-AppToken`, both required as for
a server calling Online. Errors use the vendor JSON `{Error, ErrorType, ErrorMessage,
ErrorSource}`. (assumed) The rate limit: 10 requests a second per tenant, answered with 429 and
`Retry-After`; the notes found no published figure.

Signing in, as documented (../shared/api-notes/superoffice.md, "Auth"): the OIDC refresh grant at
`/login/common/oauth/tokens` (an access token of an hour, `token_ttl_s`; the refresh token is not
rotated), and the system-user exchange at `/Login/api/PartnerSystemUser/Authenticate`: the
system user token signed with the application's private key (checked against its public key,
within ten minutes of the wall clock) buys a JWT signed with the emulator's own key (served
at `/login/.well-known/jwks`) whose ticket claim lives six hours after each use. `--write-config`
writes the system-user flow; the fixed token and ticket of older installations keep working.

Display values follow the request's language (`SO-Language`, else `Accept-Language`, else the
tenant's: Dutch for the Dutch demo tenant): a sale's status is "Verkocht" to a client that does not
ask for English. `next_link` (`/_sandbox/app`) leaves `odata.nextLink` out, which the documentation
does not promise; `person_rights` sets the role's rights on persons (`TableRight.Mask`).
"""

from __future__ import annotations

import base64
import copy
import email.utils
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from werkzeug.wrappers import Request, Response

from connectors.ratelimit import Window
from connectors.sandbox import FixtureError, Route, SandboxApp, VendorError, json_response, utcnow
from connectors.superoffice.archive import (
    ArchiveError,
    Column,
    ColumnKind,
    Provider,
    format_date,
    parse_date,
    parse_query,
    run_query,
)

API = "/<tenant>/api/v1"
DEFAULT_TENANT = "Cust12345"
DEFAULT_TOKEN = "8A:Cust12345.sandbox-access-token-0123456789"
DEFAULT_APP_TOKEN = "sandbox-application-secret-0123456789"
ERROR_SOURCE = "SuperOffice.Services.Implementation"
SEGMENTS_UDF = "SuperOffice:8"
TIER_UDF = "SuperOffice:9"
SALE_STATUSES = ("Unknown", "Open", "Sold", "Lost", "Stalled")
# The salestatus list's display names per language (English from the MDO list; Dutch assumed).
STATUS_NAMES = {
    "en": {"Unknown": "Unknown", "Open": "Open", "Sold": "Sold", "Lost": "Lost", "Stalled": "Stalled"},
    "nl": {"Unknown": "Onbekend", "Open": "Open", "Sold": "Verkocht", "Lost": "Verloren", "Stalled": "Gestopt"},
}
DEFAULT_CLIENT_ID = "sandbox-superoffice-client-0123456789"
DEFAULT_REFRESH_TOKEN = "sandbox-superoffice-refresh-token-0123456789"
DEFAULT_SYSTEM_USER_TOKEN = "crmsync-sandbox-system-user-0123456789"
OIDC_TOKEN_TTL = 3600.0
TICKET_TTL = 6 * 3600.0
SIGNATURE_WINDOW = 600.0  # (assumed) how far the signed token's minute may be from the emulator's clock
ISSUER = "SuperOffice AS"
TICKET_CLAIM = "http://schemes.superoffice.net/identity/ticket"
FULL_RIGHTS = "Select, Update, Insert, Delete"
# Text UDF lengths (assumed: short text 40, long text 200 characters, as in SuperOffice admin).
TEXT_LIMITS = {"ShortText": 40, "LongText": 200}
_FIELD_NAME = re.compile(r"^(SuperOffice:\d+|[A-Za-z_][\w.-]*)$")
_KIT_ERRORS = {"rest_no_route": "SoNotFoundException", "method_not_allowed": "MethodNotAllowedException"}


@dataclass(frozen=True)
class FieldDef:
    """A published custom field on PersonEntity: a UDF (`SuperOffice:n` or ProgId) or an extra
    field (`x_...`)."""

    name: str
    label: str
    kind: str = "ShortText"
    read_only: bool = False

    @property
    def is_extra(self) -> bool:
        return self.name.startswith("x_")

    def to_json(self, rank: int) -> dict[str, Any]:
        return {
            "FieldType": self.kind,
            "FieldName": self.name,
            "DisplayName": self.label,
            "Description": "",
            "ShortLabel": "",
            "HideLabel": False,
            "HideField": False,
            "IsIndexed": False,
            "IsMandatory": False,
            "IsReadOnly": self.read_only,
            "IsExternal": False,
            "IsDisplayField": False,
            "Rank": rank,
            "TemplateVariableName": None if self.is_extra else f"cs{rank:02d}",
        }


# The emulated tenant's person card: a webshop customer number, notes and a newsletter checkbox
# kept by people, an ERP number nobody may edit, and the two UDFs set up for crmsync.
DEFAULT_FIELDS = (
    FieldDef("SuperOffice:1", "Webshop klantnummer"),
    FieldDef("SuperOffice:2", "Opmerking", "LongText"),
    FieldDef("SuperOffice:3", "Nieuwsbrief", "Checkbox"),
    FieldDef("SuperOffice:5", "Debiteurnummer (ERP)", read_only=True),
    FieldDef(SEGMENTS_UDF, "crmsync segmenten", "LongText"),
    FieldDef(TIER_UDF, "crmsync loyaliteit"),
    FieldDef("x_klantkaart", "Klantkaart"),
)
DEFAULT_INTERESTS = ("Nieuwsbrief", "Beurzen", "Productnieuws", "Zakelijk")

# PersonEntity properties (docs: PATCH Person/{id} response body). Read-only ones are ignored in
# a patch, as the entity agent ignores them on save; anything not listed is refused.
_PROPERTY_NAMES = (
    "PersonId Firstname MiddleName Lastname Mrmrs Title UpdatedDate CreatedDate BirthDate CreatedBy "
    "Emails Description IsAssociate PrivatePhones Faxes MobilePhones OfficePhones OtherPhones Position "
    "UpdatedBy Contact Country Interests PersonNumber FullName NoMailing UsePersonAddress Retired Urls "
    "FormalName Address Post3 Post2 Post1 Kanalname Kanafname CorrespondingAssociate Category Business "
    "Associate Salutation ActiveInterests SupportAssociate TicketPriority CustomerLanguage DbiAgentId "
    "DbiKey DbiLastModified DbiLastSyncronized SentInfo ShowContactTickets UserInfo ChatEmails "
    "InternetPhones Source ActiveErpLinks ShipmentTypes Consents BounceEmails ActiveStatusMonitorId "
    "CreatedByFormId UserDefinedFields ExtraFields CustomFields TableRight FieldProperties"
)
PERSON_PROPERTIES = frozenset(_PROPERTY_NAMES.split())
READ_ONLY = frozenset(
    {"PersonId", "UpdatedDate", "CreatedDate", "CreatedBy", "UpdatedBy", "IsAssociate", "FullName", "FormalName"}
    | {"ActiveInterests", "TableRight", "FieldProperties", "ActiveErpLinks", "BounceEmails", "_Links"}
)
CUSTOM_BUCKETS = ("CustomFields", "UserDefinedFields", "ExtraFields")
PHONE_LISTS = ("Emails", "MobilePhones", "OfficePhones", "PrivatePhones", "OtherPhones", "Faxes")


def _first_value(entity: Mapping[str, Any], key: str) -> Any:
    items = entity.get(key)
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0].get("Value")
    return None


def _nested(entity: Mapping[str, Any], key: str, inner: str) -> Any:
    value = entity.get(key)
    return value.get(inner) if isinstance(value, dict) else None


_KEYS: dict[str, rsa.RSAPrivateKey] = {}
_KEYS_LOCK = threading.Lock()


def _key(name: str) -> rsa.RSAPrivateKey:
    """One RSA key per name and process (they take a while to make), made once even when several
    emulators start at the same moment on different threads: a second key would not match the
    private key an earlier config was written with."""
    with _KEYS_LOCK:
        if name not in _KEYS:
            _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _KEYS[name]


def _app_key() -> rsa.RSAPrivateKey:
    """The application's key pair: the merchant keeps the private half (in the written config)."""
    return _key("application")


def _signing_key() -> rsa.RSAPrivateKey:
    """The emulator's own key, that signs the system-user JWTs (published at /login/.well-known/jwks)."""
    return _key("jwt")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class SuperOfficeSandbox(SandboxApp):
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
        self.persons: dict[int, dict[str, Any]] = {}
        self.selected: dict[int, set[int]] = {}
        self.sales: dict[int, dict[str, Any]] = {}
        super().__init__(data, **kwargs)

    # ----- routes, auth, error shape ----------------------------------------------------------
    def routes(self) -> Sequence[Route]:
        return [
            Route(f"{API}/Person", ("GET",), self.list_persons, lists=True),
            Route(f"{API}/Sale", ("GET",), self.list_sales, lists=True),
            Route(f"{API}/Archive/<provider>", ("GET",), self.list_archive, lists=True),
            Route(f"{API}/Person/<int:person_id>", ("GET",), self.get_person),
            Route(f"{API}/Person/<int:person_id>", ("PATCH",), self.patch_person),
            Route(f"{API}/Person/CustomField", ("GET",), self.custom_fields),
            Route(f"{API}/List/PersonInterest/Items", ("GET",), self.list_interests),
            Route(f"{API}/List/PersonInterest/Items", ("POST",), self.create_interest),
            Route("/login/common/oauth/tokens", ("POST",), self.oidc_tokens, token=True),
            Route("/Login/api/PartnerSystemUser/Authenticate", ("POST",), self.system_user_authenticate, token=True),
            Route("/login/.well-known/jwks", ("GET",), self.jwks, token=True),
        ]

    def client_settings(self) -> dict[str, Any]:
        # Server to server: the system-user flow a daemon uses.
        private_pem = _app_key().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "tenant": self.tenant,
            "auth": "system_user",
            "app_token": self.app_token,
            "private_key": private_pem.decode(),
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

    def _ttl(self, default: float) -> float:
        return self.token_ttl_s if self.token_ttl_s is not None else default

    # ----- signing in ------------------------------------------------------------------------------
    def oidc_tokens(self, request: Request) -> Response:
        """The refresh-token grant (form-encoded, as SuperOffice's samples send it)."""
        form = request.form
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.app_token:
            return json_response({"error": "invalid_client", "error_description": "Unknown client"}, 400)
        if form.get("grant_type") != "refresh_token":
            return json_response({"error": "unsupported_grant_type"}, 400)
        if form.get("refresh_token") != self.refresh_token:
            return json_response({"error": "invalid_grant", "error_description": "Invalid refresh token"}, 400)
        ttl = self._ttl(OIDC_TOKEN_TTL)
        with self.lock:
            token = self.issue_token(f"8A:{self.tenant}.", ttl)
        return json_response({"token_type": "Bearer", "access_token": token, "expires_in": int(ttl), "id_token": ""})

    def system_user_authenticate(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._system_user_failure("The request body is not a JSON object")
        if body.get("ApplicationToken") != self.app_token:
            return self._system_user_failure("Invalid application token")
        if body.get("ContextIdentifier") != self.tenant:
            return self._system_user_failure(f"Unknown context identifier {body.get('ContextIdentifier')!r}")
        problem = self._signature_problem(str(body.get("SignedSystemToken") or ""))
        if problem:
            return self._system_user_failure(problem)
        with self.lock:
            ticket = self.issue_token("7T:", self._ttl(TICKET_TTL))
        return json_response({"IsSuccessful": True, "Token": self._jwt(ticket), "ErrorMessage": None})

    def _system_user_failure(self, message: str) -> Response:
        return json_response({"IsSuccessful": False, "Token": None, "ErrorMessage": message})

    def _signature_problem(self, signed: str) -> str | None:
        parts = signed.rsplit(".", 2)
        if len(parts) != 3:
            return "SignedSystemToken is not <token>.<yyyyMMddHHmm>.<signature>"
        token, minute, signature = parts
        if token != self.system_user_token:
            return "Unknown system user token"
        try:
            stamp = datetime.strptime(minute, "%Y%m%d%H%M").replace(tzinfo=UTC)
            _app_key().public_key().verify(
                base64.b64decode(signature), f"{token}.{minute}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (ValueError, InvalidSignature):
            return "InvalidSignature"
        # Against the wall clock, as SuperOffice's own: the emulator's "now" may be a test's.
        if abs((stamp - datetime.now(UTC)).total_seconds()) > SIGNATURE_WINDOW:
            return "InvalidTimestamp"
        return None

    def _jwt(self, ticket: str) -> str:
        moment = int(self.now().timestamp())
        header = {"alg": "RS256", "typ": "JWT", "kid": "sandbox"}
        claims = {
            "iss": ISSUER,
            "aud": "spn:sandbox",
            "iat": moment,
            "exp": moment + 300,
            TICKET_CLAIM: ticket,
            "http://schemes.superoffice.net/identity/ctx": self.tenant,
        }
        signed = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = _signing_key().sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64url(signature)}"

    def jwks(self, request: Request) -> Response:
        numbers = _signing_key().public_key().public_numbers()
        key = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": "sandbox",
            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }
        return json_response({"keys": [key]})

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
        for index, item in enumerate(data.get("customers") or []):
            self._load_person(f"superoffice/customers.json item {index}", item)
        for index, item in enumerate(data.get("orders") or []):
            self._load_sale(f"superoffice/orders.json item {index}", item)

    def _load_person(self, where: str, item: Any) -> None:
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
        person["CreatedDate"] = person["CreatedDate"] or now
        person["UpdatedDate"] = person["UpdatedDate"] or person["CreatedDate"]
        for key in PHONE_LISTS:
            person.setdefault(key, [])
        for key, default in (("Firstname", ""), ("MiddleName", ""), ("Lastname", ""), ("Contact", None)):
            person.setdefault(key, default)
        self.persons[person_id] = person

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

    def _load_sale(self, where: str, item: Any) -> None:
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
        sale["CreatedDate"] = sale["CreatedDate"] or sale["Saledate"] or format_date(utcnow())
        sale["Saledate"] = sale["Saledate"] or sale["CreatedDate"]
        sale["UpdatedDate"] = sale["UpdatedDate"] or sale["CreatedDate"]
        sale.setdefault("Status", "Open")
        sale.setdefault("Currency", {"Id": 1, "Value": "EUR"})
        self.sales[sale_id] = sale

    # ----- interests (the persint list) ---------------------------------------------------------
    def _new_interest(self, name: str, wanted_id: Any = None) -> int:
        usable = isinstance(wanted_id, int) and wanted_id > 0 and wanted_id not in self.interests
        new_id = wanted_id if usable else max(self.interests, default=0) + 1
        self.interests[new_id] = {"Id": new_id, "Name": name, "Tooltip": "", "Deleted": False, "Rank": new_id}
        return new_id

    def _interest_id(self, item: Mapping[str, Any]) -> int | None:
        if isinstance(item.get("Id"), int) and item["Id"] in self.interests:
            return int(item["Id"])
        name = item.get("Name")
        return next((i for i, it in self.interests.items() if it["Name"] == name and name), None)

    def _interest_list(self, person_id: int) -> list[dict[str, Any]]:
        chosen = self.selected.get(person_id, set())
        return [
            {
                "Id": it["Id"],
                "Name": it["Name"],
                "ToolTip": it["Tooltip"],
                "Deleted": it["Deleted"],
                "Rank": it["Rank"],
                "Type": "persint",
                "Selected": it["Id"] in chosen,
            }
            for it in sorted(self.interests.values(), key=lambda it: (it["Rank"], it["Id"]))
        ]

    # ----- the entity as the API shows it -------------------------------------------------------------
    def _render(self, person_id: int) -> dict[str, Any]:
        stored = self.persons[person_id]
        entity = copy.deepcopy(stored)
        custom: dict[str, Any] = entity["CustomFields"]
        entity["UserDefinedFields"] = {k: v for k, v in custom.items() if not k.startswith("x_")}
        entity["ExtraFields"] = {k: v for k, v in custom.items() if k.startswith("x_")}
        entity["Interests"] = self._interest_list(person_id)
        entity["ActiveInterests"] = len(self.selected.get(person_id, ()))
        names = (stored.get("Firstname"), stored.get("MiddleName"), stored.get("Lastname"))
        entity.setdefault("FullName", " ".join(n for n in names if n))
        entity.setdefault("TableRight", {"Mask": self.person_rights, "Reason": ""})
        return entity

    def customer_fixture(self, customer_id: str) -> dict[str, Any] | None:
        person_id = int(customer_id) if customer_id.isdigit() else -1
        return self._render(person_id) if person_id in self.persons else None

    def patch_customer(self, customer_id: str, partial: Mapping[str, Any]) -> dict[str, Any] | None:
        person_id = int(customer_id) if customer_id.isdigit() else -1
        if person_id not in self.persons:
            return None
        # A person editing the card in SuperOffice: same merge rules as the API, stamped as changed.
        self._merge(person_id, partial, strict=False)
        self._touch(person_id)
        return self._render(person_id)

    def _touch(self, person_id: int) -> None:
        self.persons[person_id]["UpdatedDate"] = format_date(utcnow())

    # ----- archive providers ----------------------------------------------------------------------
    def _person_column(self, name: str) -> Column | None:
        simple: dict[str, Column] = {
            "personId": Column("int", lambda p: p["PersonId"]),
            "firstName": Column("string", lambda p: p.get("Firstname")),
            "middleName": Column("string", lambda p: p.get("MiddleName")),
            "lastName": Column("string", lambda p: p.get("Lastname")),
            "fullName": Column("string", lambda p: self._render_name(p)),
            "title": Column("string", lambda p: p.get("Title")),
            "personNumber": Column("string", lambda p: p.get("PersonNumber")),
            "contactId": Column("int", lambda p: _nested(p, "Contact", "ContactId")),
            "personContact/name": Column("string", lambda p: _nested(p, "Contact", "Name")),
            "personUpdatedDate": Column("date", lambda p: p.get("UpdatedDate")),
            "personRegisteredDate": Column("date", lambda p: p.get("CreatedDate")),
            "email/emailAddress": Column("string", lambda p: _first_value(p, "Emails")),
            "personMobilePhone/formattedNumber": Column("string", lambda p: _first_value(p, "MobilePhones"), False),
            "personDirectPhone/formattedNumber": Column("string", lambda p: _first_value(p, "OfficePhones"), False),
            "personPrivate/formattedNumber": Column("string", lambda p: _first_value(p, "PrivatePhones"), False),
            "personNoMail": Column("bool", lambda p: bool(p.get("NoMailing"))),
            "retired": Column("bool", lambda p: bool(p.get("Retired"))),
            "personCountry": Column("string", lambda p: _nested(p, "Country", "Name")),
            "personInterestIds": Column("ids", lambda p: self.selected.get(p["PersonId"], set()), False),
        }
        if name in simple:
            return simple[name]
        bucket, _, field = name.partition("/")
        definition = self.fields.get(field)
        if definition is None or bucket != ("personExtra" if definition.is_extra else "personUdef"):
            return None
        kind: ColumnKind = "int" if definition.kind == "Integer" else "string"
        return Column(kind, lambda p: _custom_value(p["CustomFields"].get(field), definition))

    @staticmethod
    def _render_name(person: Mapping[str, Any]) -> str:
        parts = (person.get("Firstname"), person.get("MiddleName"), person.get("Lastname"))
        return str(person.get("FullName") or " ".join(p for p in parts if p))

    def _sale_column(self, name: str) -> Column | None:
        def person_email(sale: Mapping[str, Any]) -> Any:
            person = self.persons.get(_nested(sale, "Person", "PersonId") or -1)
            return _first_value(person, "Emails") if person else None

        columns: dict[str, Column] = {
            "saleId": Column("int", lambda s: s["SaleId"]),
            "heading": Column("string", lambda s: s.get("Heading")),
            "saleNumber": Column("string", lambda s: s.get("Number")),
            "amount": Column("decimal", lambda s: s.get("Amount")),
            "currency": Column("string", lambda s: _currency(s.get("Currency"))),
            "date": Column("date", lambda s: s.get("Saledate")),
            "saleStatus": Column("string", lambda s: self._status_name(s.get("Status"))),
            "personId": Column("int", lambda s: _nested(s, "Person", "PersonId")),
            "person/personId": Column("int", lambda s: _nested(s, "Person", "PersonId")),
            "person/email/emailAddress": Column("string", person_email),
            "contactId": Column("int", lambda s: _nested(s, "Contact", "ContactId")),
            "updatedDate": Column("date", lambda s: s.get("UpdatedDate")),
            "registeredDate": Column("date", lambda s: s.get("CreatedDate")),
        }
        return columns.get(name)

    def _status_name(self, status: Any) -> Any:
        """A list column shows the item's name in the request's language (`_display_language`)."""
        names = STATUS_NAMES.get(self._display_language, STATUS_NAMES["en"])
        return names.get(str(status), status)

    def _request_language(self, request: Request) -> str:
        for header in ("SO-Language", "Accept-Language"):
            value = request.headers.get(header, "").strip()[:2].lower()
            if value in STATUS_NAMES:
                return value
        return self.language

    def _provider(self, name: str) -> tuple[Provider, list[dict[str, Any]]]:
        if name.lower() == "person":
            key = lambda p: int(p["PersonId"])  # noqa: E731
            provider = Provider("Person", "person", key, self._person_column, ("personId", "fullName"))
            return provider, list(self.persons.values())
        if name.lower() == "sale":
            provider = Provider("Sale", "sale", lambda s: s["SaleId"], self._sale_column, ("saleId", "heading"))
            return provider, list(self.sales.values())
        raise VendorError(400, "ArgumentException", f"Unknown archive provider '{name}'")

    def _archive(self, request: Request, provider_name: str) -> Response:
        with self.lock:
            self._display_language = self._request_language(request)
            provider, rows = self._provider(provider_name)
            try:
                query = parse_query(request.args, provider)
                page, more = run_query(query, provider, rows)
            except ArchiveError as exc:
                raise VendorError(400, exc.error_type, str(exc)) from None
        page = self.apply_item_fault(request, page)
        origin = request.host_url.rstrip("/")
        body: dict[str, Any] = {"odata.metadata": f"{origin}/{self.tenant}/api/v1/archive$metadata"}
        if more and self.next_link:
            args = {k: v for k, v in request.args.items() if k.lower() != "$skip"}
            body["odata.nextLink"] = f"{request.base_url}?{urlencode({**args, '$skip': query.skip + query.top})}"
        body["value"] = page
        return json_response(body)

    def list_persons(self, request: Request, tenant: str) -> Response:
        return self._archive(request, "Person")

    def list_sales(self, request: Request, tenant: str) -> Response:
        return self._archive(request, "Sale")

    def list_archive(self, request: Request, tenant: str, provider: str) -> Response:
        return self._archive(request, provider)

    # ----- entities ----------------------------------------------------------------------------------
    def _not_found(self, person_id: int) -> VendorError:
        return VendorError(404, "SoNotFoundException", f"Person id {person_id} not found")

    def get_person(self, request: Request, tenant: str, person_id: int) -> Response:
        with self.lock:
            if person_id not in self.persons:
                raise self._not_found(person_id)
            return json_response(_select(self._render(person_id), request.args.get("$select")))

    def patch_person(self, request: Request, tenant: str, person_id: int) -> Response:
        content_type = (request.mimetype or "application/json").lower()
        if content_type not in ("application/json", "application/merge-patch+json", "application/json-patch+json"):
            raise VendorError(415, "UnsupportedMediaTypeException", f"Content-Type '{content_type}' is not supported")
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            raise VendorError(400, "JsonReaderException", "The request body is not valid JSON") from None
        with self.lock:
            if person_id not in self.persons:
                raise self._not_found(person_id)
            if "Update" not in self.person_rights:
                # (assumed) the shape of Sentry's refusal of a save without the right
                raise VendorError(403, "SoAccessDeniedException", f"No update rights on person {person_id}")
            self._check_unmodified(request, person_id)
            if isinstance(body, list) and content_type != "application/merge-patch+json":
                changed = self._json_patch(person_id, body)
            elif isinstance(body, dict) and content_type != "application/json-patch+json":
                changed = self._merge(person_id, body, strict=True)
            else:
                raise VendorError(400, "ArgumentException", "Expected a JSON Patch array or a JSON Merge Patch object")
            if changed:
                self._touch(person_id)
            return json_response(_select(self._render(person_id), request.args.get("$select")))

    def _check_unmodified(self, request: Request, person_id: int) -> None:
        header = request.headers.get("If-Unmodified-Since")
        if not header:
            return
        try:
            since = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            raise VendorError(400, "ArgumentException", "If-Unmodified-Since is not an HTTP date") from None
        if parse_date(self.persons[person_id]["UpdatedDate"]) > since:
            raise VendorError(412, "PreconditionFailedException", f"Person {person_id} has changed since {header}")

    def _merge(self, person_id: int, body: Mapping[str, Any], *, strict: bool) -> bool:
        """A JSON Merge Patch (RFC 7396) on the entity: named members change, others stay.
        Custom-field buckets merge key by key (a UDF cannot be removed, only emptied); the
        Interests list, like every array, replaces: its `Selected` flags become the selection."""
        person = self.persons[person_id]
        changed = False
        for raw_key, value in body.items():
            key = _property(raw_key)
            if key is None:
                if strict:
                    raise VendorError(400, "ArgumentException", f"PersonEntity has no property '{raw_key}'")
                person[raw_key] = copy.deepcopy(value)
                changed = True
            elif key in READ_ONLY:
                continue
            elif key in CUSTOM_BUCKETS:
                if not isinstance(value, dict):
                    raise VendorError(400, "ArgumentException", f"{key} must be an object of field name -> value")
                for name, field_value in value.items():
                    changed |= self._set_custom(person, name, field_value, enforce=strict)
            elif key == "Interests":
                changed |= self._set_interests(person_id, value, replace=strict)
            elif person.get(key) != value:
                person[key] = copy.deepcopy(value)
                changed = True
        return changed

    def _json_patch(self, person_id: int, operations: list[Any]) -> bool:
        """JSON Patch (RFC 6902): add, replace, remove and test; paths case-insensitive with an
        optional leading slash, into top-level properties and the custom-field buckets."""
        person = self.persons[person_id]
        changed = False
        for operation in operations:
            if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
                raise VendorError(400, "ArgumentException", "Each operation needs 'op' and 'path'")
            op = str(operation.get("op", "")).lower()
            if op not in ("add", "replace", "remove", "test"):
                raise VendorError(400, "NotSupportedException", f"JSON Patch operation '{op}' is not supported")
            parts = [p for p in operation["path"].strip("/").split("/") if p]
            key = _property(parts[0]) if parts else None
            if key is None:
                raise VendorError(400, "ArgumentException", f"PersonEntity has no property '{operation['path']}'")
            value = None if op == "remove" else operation.get("value")
            if key in CUSTOM_BUCKETS and len(parts) == 2:
                current = person["CustomFields"].get(parts[1])
                if op == "test":
                    if current != value:
                        raise VendorError(409, "ConflictException", f"Test failed for {operation['path']}")
                    continue
                changed |= self._set_custom(person, parts[1], value, enforce=True)
            elif len(parts) == 1:
                rendered = self._render(person_id)
                if op == "test":
                    if rendered.get(key) != value:
                        raise VendorError(409, "ConflictException", f"Test failed for {operation['path']}")
                    continue
                changed |= self._merge(person_id, {key: value}, strict=True)
            else:
                raise VendorError(400, "NotSupportedException", f"Path '{operation['path']}' is not supported")
        return changed

    def _set_custom(self, person: dict[str, Any], name: str, value: Any, *, enforce: bool) -> bool:
        definition = self.fields.get(name)
        if definition is None:
            raise VendorError(400, "ArgumentException", f"Unknown user-defined or extra field '{name}' on PersonEntity")
        if value is not None and not isinstance(value, str | int | float):
            raise VendorError(400, "ArgumentException", f"Field '{name}' takes a string value")
        text = "" if value is None else str(value)
        if enforce and definition.read_only:
            raise VendorError(400, "SoFieldReadOnlyException", f"Field '{name}' ({definition.label}) is read-only")
        limit = TEXT_LIMITS.get(definition.kind)
        if enforce and limit is not None and len(text) > limit:
            message = f"Value for '{name}' is {len(text)} characters; {definition.kind} holds {limit}"
            raise VendorError(400, "ArgumentException", message)
        if person["CustomFields"].get(name) == text:
            return False
        person["CustomFields"][name] = text
        return True

    def _set_interests(self, person_id: int, items: Any, *, replace: bool) -> bool:
        """Through the API the list is the whole selection (an array replaces); a person ticking
        boxes in the UI (the test route) changes only the items named, creating new ones."""
        if not isinstance(items, list):
            raise VendorError(400, "ArgumentException", "Interests must be a list of {Id, Selected} items")
        chosen: set[int] = set() if replace else set(self.selected.get(person_id, set()))
        for item in items:
            interest_id = self._interest_id(item) if isinstance(item, dict) else None
            if interest_id is None and not replace and isinstance(item, dict) and item.get("Name"):
                interest_id = self._new_interest(str(item["Name"]))
            if interest_id is None:
                raise VendorError(400, "ArgumentException", f"No interest {item!r} in the list 'persint'")
            if item.get("Selected", True):
                chosen.add(interest_id)
            else:
                chosen.discard(interest_id)
        if chosen == self.selected.get(person_id, set()):
            return False
        self.selected[person_id] = chosen
        return True

    # ----- metadata and lists --------------------------------------------------------------------
    def custom_fields(self, request: Request, tenant: str) -> Response:
        with self.lock:
            return json_response([f.to_json(rank) for rank, f in enumerate(self.fields.values(), start=1)])

    def list_interests(self, request: Request, tenant: str) -> Response:
        with self.lock:
            return json_response([_list_item(it) for it in self.interests.values()])

    def create_interest(self, request: Request, tenant: str) -> Response:
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            raise VendorError(400, "JsonReaderException", "The request body is not valid JSON") from None
        name = body.get("Name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise VendorError(400, "ArgumentException", "A list item needs a Name")
        if len(name) > 254:
            raise VendorError(400, "ArgumentException", "A list item name holds at most 254 characters")
        with self.lock:
            new_id = self._new_interest(name)
            return json_response(_list_item(self.interests[new_id]))


def _is_value_item(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("Value"), str)


def _list_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Id": item["Id"],
        "Name": item["Name"],
        "Tooltip": item["Tooltip"],
        "Deleted": item["Deleted"],
        "UdListDefinitionId": 0,
        "Rank": item["Rank"],
        "TableRight": None,
        "FieldProperties": {},
    }


def _custom_value(value: Any, definition: FieldDef) -> Any:
    """A custom field as an archive column shows it: integers as numbers (stored `[I:5]`)."""
    if definition.kind == "Integer" and isinstance(value, str):
        match = re.match(r"^\[I:(-?\d+)\]$", value)
        return int(match.group(1)) if match else None
    return value


def _currency(value: Any) -> Any:
    return value.get("Value") if isinstance(value, dict) else value


def _property(raw: str) -> str | None:
    wanted = raw.lower()
    return next((name for name in sorted(PERSON_PROPERTIES) if name.lower() == wanted), None)


def _select(entity: dict[str, Any], select: str | None) -> dict[str, Any]:
    """`$select` on an entity: other properties are nulled out (documented for PATCH and GET)."""
    if not select:
        return entity
    wanted = {part.strip().split("/")[0].lower() for part in select.split(",") if part.strip()}
    return {key: (value if key.lower() in wanted else None) for key, value in entity.items()}


SANDBOX = SuperOfficeSandbox
