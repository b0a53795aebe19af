"""PersonEntity as the SuperOffice emulator keeps and shows it: `GET`/`PATCH /Person/{id}`,
`GET /Person/CustomField` and the PersonInterest list (`GET`/`POST /List/PersonInterest/Items`).

The PATCH contract (JSON Patch or JSON Merge Patch, paths case-insensitive, 409 for a failed
`test`, 412 for `If-Unmodified-Since`) and the entity shapes follow SuperOffice's documentation and
the official `@superoffice/webapi` client (12.4; its captured `Person210.json`:
`UserDefinedFields` / `CustomFields` as string dictionaries keyed by ProgId or `SuperOffice:<n>`,
`Interests` as the whole list with `Selected` flags).
"""

from __future__ import annotations

import copy
import email.utils
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from connectors.sandbox import SandboxApp, VendorError, json_response, utcnow
from connectors.sandbox.store import FixtureStore
from connectors.superoffice.archive import format_date, parse_date

SEGMENTS_UDF = "SuperOffice:8"
TIER_UDF = "SuperOffice:9"
FULL_RIGHTS = "Select, Update, Insert, Delete"
# Text UDF lengths (assumed: short text 40, long text 200 characters, as in SuperOffice admin).
TEXT_LIMITS = {"ShortText": 40, "LongText": 200}


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


def stamp_updated(person: dict[str, Any]) -> None:
    """A person changed: SuperOffice stamps `UpdatedDate` (what an incremental read filters on)."""
    person["UpdatedDate"] = format_date(utcnow())


class PersonRoutes(SandboxApp):
    """Persons, their custom fields and their interests (the sandbox sets the stores up)."""

    people: FixtureStore
    persons: dict[int, dict[str, Any]]
    selected: dict[int, set[int]]
    interests: dict[int, dict[str, Any]]
    fields: dict[str, FieldDef]
    person_rights: str

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

    def _touch(self, person_id: int) -> None:
        self.people.touch(self.persons[person_id])

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

    def update_interests(self, request: Request, tenant: str) -> Response:
        """The Person agent's `UpdateInterests` (documented: body `{PersonId, EnableInterestIds,
        DisableInterestIds}`, 204; "will throw exception if id is in both arrays"; the official
        client: sets the given ids and "not touch any other interests"). An agent call: the
        If-Unmodified-Since header does not apply (documented: "REST API (not Agents)"). Assumed:
        an unknown person or interest id is refused with the REST API's error shape, and the
        person's `UpdatedDate` moves when the selection changes."""
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            raise VendorError(400, "JsonReaderException", "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise VendorError(400, "ArgumentException", "Expected a Person_UpdateInterestsRequest object")
        fields = {str(key).casefold(): value for key, value in body.items()}
        person_id = fields.get("personid")
        enable, disable = fields.get("enableinterestids") or [], fields.get("disableinterestids") or []
        lists = isinstance(enable, list) and isinstance(disable, list)
        whole = lists and all(isinstance(i, int) and not isinstance(i, bool) for i in (*enable, *disable))
        if not isinstance(person_id, int) or not whole:
            raise VendorError(400, "ArgumentException", "PersonId and the interest ids must be integers")
        if set(enable) & set(disable):
            raise VendorError(400, "ArgumentException", "An interest id is in both arrays")
        with self.lock:
            if person_id not in self.persons:
                raise self._not_found(person_id)
            if "Update" not in self.person_rights:
                raise VendorError(403, "SoAccessDeniedException", f"No update rights on person {person_id}")
            unknown = sorted(i for i in (*enable, *disable) if i not in self.interests)
            if unknown:
                raise VendorError(400, "ArgumentException", f"No interest {unknown[0]} in the list 'persint'")
            before = self.selected.get(person_id, set())
            after = (before | set(enable)) - set(disable)
            if after != before:
                self.selected[person_id] = after
                self._touch(person_id)
            return Response(status=204)

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
        changed = False
        for raw_key, value in body.items():
            changed |= self._merge_member(person_id, raw_key, value, strict=strict)
        return changed

    def _merge_member(self, person_id: int, raw_key: str, value: Any, *, strict: bool) -> bool:
        """One member of a merge patch; `strict` is the API's (a hand edit in the UI may add a
        property of its own, tick interests that do not exist yet, and fill a read-only field)."""
        person = self.persons[person_id]
        key = _property(raw_key)
        if key is None:
            if strict:
                raise VendorError(400, "ArgumentException", f"PersonEntity has no property '{raw_key}'")
            person[raw_key] = copy.deepcopy(value)
            return True
        if key in READ_ONLY:
            return False
        if key in CUSTOM_BUCKETS:
            if not isinstance(value, dict):
                raise VendorError(400, "ArgumentException", f"{key} must be an object of field name -> value")
            changed = False
            for name, field_value in value.items():
                changed |= self._set_custom(person, name, field_value, enforce=strict)
            return changed
        if key == "Interests":
            return self._set_interests(person_id, value, replace=strict)
        if person.get(key) != value:
            person[key] = copy.deepcopy(value)
            return True
        return False

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


def _property(raw: str) -> str | None:
    wanted = raw.lower()
    return next((name for name in sorted(PERSON_PROPERTIES) if name.lower() == wanted), None)


def _select(entity: dict[str, Any], select: str | None) -> dict[str, Any]:
    """`$select` on an entity: other properties are nulled out (documented for PATCH and GET)."""
    if not select:
        return entity
    wanted = {part.strip().split("/")[0].lower() for part in select.split(",") if part.strip()}
    return {key: (value if key.lower() in wanted else None) for key, value in entity.items()}
