"""WooCommerce connector: REST API v3 (`/wp-json/wc/v3`).

Customers have no modified filter, so every cycle scans them by id (cheap: unchanged records hash
the same and cost nothing downstream). Orders are read incrementally with `modified_after`, sorted
by modification time; instead of walking `page=2, 3, ...` of one query (an order modified mid-read
would shift the pages and hide its neighbour), each next request moves `modified_after` up to the
last timestamp seen (keyset paging), re-reading the boundary second. Customers have no tags, so
crmsync's verdict goes into the meta keys `crmsync_segments` and `crmsync_loyalty_tier`, at most 100
customers per `customers/batch` call; other meta keys are never sent, so they are never touched.

`check` proves the key's rights without changing anything. An API key is `read`, `write` or
`read_write`, and WooCommerce checks that against the HTTP method in WordPress's
`rest_pre_dispatch`, before any route is matched. So a POST to a route that does not exist in
the wc/v3 namespace tells the two apart and reaches no endpoint: 401 "does not have write
permissions" for a read-only key, 404 `rest_no_route` for a key that may write. That 401 is a
missing right (PermissionDenied), not wrong credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, SecretStr

from connectors.auth import BasicAuth, QueryKeyAuth
from connectors.base import (
    Capabilities,
    CheckReport,
    Connector,
    Page,
    Permission,
    advance_cursor,
    id_text,
    read_since,
)
from connectors.errors import ApiError, AuthError, PermissionDenied, RejectedRecord
from connectors.http import ApiClient, ApiResponse, Verdict, default_classify, vendor_message
from connectors.settings import SystemSettings
from mapping.model import FieldSpec, Kind, SourceRecord, WriteBack, WriteResult, parse_timestamp

API = "/wp-json/wc/v3"
MAX_PAGE = 100
BATCH_LIMIT = 100
COUNTED_STATUSES = frozenset({"completed", "processing", "on-hold"})
# A route that exists in no WooCommerce version: a write method sent to it meets the key check
# (rest_pre_dispatch) and then WordPress's router, never an endpoint.
PERMISSION_PROBE = API + "/crmsync-permission-probe"
# WC_REST_Authentication::check_permissions: "The API key provided does not have write permissions."
KEY_LACKS = re.compile(r"does not have (read|write) permissions", re.IGNORECASE)
KEYS_FIX = "WooCommerce > Settings > Advanced > REST API > edit the key > Permissions: Read/Write"


class WooCommerceSettings(SystemSettings):
    type: Literal["woocommerce"]
    consumer_key: SecretStr
    consumer_secret: SecretStr
    auth: Literal["basic", "query"] = Field(
        default="basic", description="'query' sends the keys as URL parameters, for hosts that strip Authorization"
    )
    role: str = "customer"
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE)


class WooCommerceConnector(Connector):
    type = "woocommerce"
    settings_class = WooCommerceSettings
    api_name = "WooCommerce REST API"
    api_version = "wc/v3"
    capabilities = Capabilities(
        read_contacts=True, read_orders=True, incremental=True, write_tags=False, write_fields=True
    )
    contact_fields = {
        "email": FieldSpec("email", "email"),
        "phone": FieldSpec("billing.phone", "phone"),
        "first_name": FieldSpec("first_name"),
        "last_name": FieldSpec("last_name"),
        "company": FieldSpec("billing.company"),
        "street": FieldSpec("billing.address_1"),
        "postcode": FieldSpec("billing.postcode"),
        "city": FieldSpec("billing.city"),
        "country": FieldSpec("billing.country", "country"),
    }
    order_fields = {
        "customer_id": FieldSpec("customer_id", "id"),
        "email": FieldSpec("billing.email", "email"),
        "amount": FieldSpec("total", "money"),
        "currency": FieldSpec("currency", "currency"),
        "created_at": FieldSpec("date_created_gmt", "datetime"),
    }
    max_write_batch = BATCH_LIMIT
    default_segments_field = "crmsync_segments"
    default_tier_field = "crmsync_loyalty_tier"
    # Meta cannot be deleted over REST; an empty string is the closest thing to "absent".
    empty_field_value = ""

    settings: WooCommerceSettings

    def make_client(self) -> ApiClient:
        key, secret = self.settings.consumer_key, self.settings.consumer_secret
        if self.settings.auth == "query":
            return self.api_client(auth=QueryKeyAuth({"consumer_key": key, "consumer_secret": secret}))
        return self.api_client(auth=BasicAuth(key, secret))

    @property
    def page_size(self) -> int:
        return self.settings.page_size or MAX_PAGE

    def get(self, path: str, params: Mapping[str, Any]) -> ApiResponse:
        return self.client.request("GET", API + path, params=params)

    # ----- what replies mean ---------------------------------------------------------------------
    def classify(self, response: ApiResponse) -> Verdict:
        body = response.body if isinstance(response.body, dict) else {}
        code = str(body.get("code") or "")
        message = vendor_message(response.body, response.text) or f"HTTP {response.status}"
        if response.status == 401 and KEY_LACKS.search(message):
            # The key is right but its permission is not: a new key or a retry would not help.
            return Verdict("denied", message)
        if response.status == 403 and code.startswith("woocommerce_rest_cannot_"):
            # The key passed; the WordPress user it belongs to lacks the capability.
            return Verdict("denied", message)
        if response.path == PERMISSION_PROBE and response.status == 404 and code == "rest_no_route":
            return Verdict.ok()  # the key may write; nothing was dispatched
        return default_classify(response)

    # ----- check ---------------------------------------------------------------------------------
    def check(self) -> CheckReport:
        """Proves reading customers (the configured role) and orders, and, when crmsync is to
        write, the key's write permission with a POST that no endpoint receives."""
        customers = self._read_right("/customers", {"per_page": 1, "role": self.settings.role}, "customers")
        orders = self._read_right("/orders", {"per_page": 1}, "orders")
        permissions = [
            Permission("read_customers", customers is None, customers),
            Permission("read_orders", orders is None, orders),
        ]
        writes = self.settings.writeback and bool(self.segments_field or self.tier_field)
        written = False
        if writes:
            refusal = self._write_right()
            written = refusal is None
            permissions.append(Permission("write", written, refusal))
        capabilities = Capabilities(
            read_contacts=customers is None,
            read_orders=orders is None,
            incremental=orders is None,  # orders are read by modified_after; customers are scanned
            write_tags=False,
            write_fields=written,
        )
        return CheckReport(capabilities, permissions)

    def _read_right(self, path: str, params: Mapping[str, Any], what: str) -> str | None:
        """None when the key lists `what`, else what to fix. Wrong credentials raise AuthError."""
        try:
            response = self.get(path, params)
        except PermissionDenied as exc:
            if KEY_LACKS.search(exc.message):
                return f"the API key is write-only: {KEYS_FIX}"
            return (
                f"the WordPress user of the API key may not list {what} ({exc.message}): give that user the "
                "Administrator or Shop manager role, or make a key for a user who has it"
            )
        if not isinstance(response.body, list):
            raise ApiError(self.name, f"GET {API}{path}: unexpected reply to the {what} list")
        return None

    def _write_right(self) -> str | None:
        """None when the key may write, else what to fix. The POST goes to a route that does not
        exist: the key check answers it before routing, and no endpoint ever sees it."""
        try:
            self.client.request("POST", PERMISSION_PROBE, json_body={}, mutating=False)
        except PermissionDenied as exc:
            if KEY_LACKS.search(exc.message):
                return f"the API key is read-only: {KEYS_FIX}"
            return f"the API key may not write ({exc.message}): {KEYS_FIX}"
        except (AuthError, ApiError, RejectedRecord) as exc:
            # The reads just proved the credentials: a refusal here (a firewall blocking POSTs,
            # say) is about writing, not about the key being wrong.
            return f"the write-permission probe got an unexpected answer ({exc.message}); make sure {KEYS_FIX}"
        return None

    def _list_page(self, path: str, params: Mapping[str, Any]) -> tuple[list[Any], int]:
        """One page and the total page count. A page that comes back short while the totals say
        more pages follow lost an item on the way (a known WordPress caching glitch): read it again,
        up to twice. A short last page is read once more too (the totals come from the same cache);
        the longest answer wins."""
        best: tuple[list[Any], int] | None = None
        for attempt in range(3):
            response = self.get(path, params)
            if not isinstance(response.body, list):
                raise ApiError(self.name, f"GET {path}: expected a list")
            total_pages = int(response.header("X-WP-TotalPages") or 0)
            if best is None or len(response.body) > len(best[0]):
                best = (response.body, total_pages)
            if len(response.body) >= int(params["per_page"]):
                break
            if attempt >= 1 and int(params["page"]) >= total_pages:
                break
        assert best is not None
        return best

    # ----- reads --------------------------------------------------------------------------------
    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        page = int((checkpoint or {}).get("page", 1))
        while True:
            items, total_pages = self._list_page(
                "/customers",
                {"per_page": self.page_size, "page": page, "orderby": "id", "order": "asc", "role": self.settings.role},
            )
            records = [self._record(Kind.CONTACT, item) for item in items if isinstance(item, dict)]
            done = len(items) < self.page_size or page >= total_pages
            # Mid-scan the checkpoint says where to resume; a finished scan starts from page 1 again.
            yield Page(records, {} if done else {"page": page + 1}, page)
            if done:
                return
            page += 1

    def read_orders(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        since = read_since(checkpoint, self.settings.lookback)
        # modified_after is exclusive and has one-second resolution: start one second earlier.
        lower = since - timedelta(seconds=1) if since else None
        page, number = 1, 0
        state = dict(checkpoint or {})
        seen_last_page: set[tuple[str, Any]] = set()
        while True:
            params: dict[str, Any] = {
                "per_page": self.page_size,
                "page": page,
                "orderby": "modified",
                "order": "asc",
                "dates_are_gmt": "true",
            }
            if lower is not None:
                params["modified_after"] = lower.strftime("%Y-%m-%dT%H:%M:%S")
            items, _ = self._list_page("/orders", params)
            records = [self._record(Kind.ORDER, item) for item in items if isinstance(item, dict)]
            fresh = [r for r in records if (r.id, r.updated_at) not in seen_last_page]
            number += 1
            state = advance_cursor(state, records)
            yield Page(fresh, state, number)
            if len(items) < self.page_size:
                return
            stamps = [r.updated_at for r in records if r.updated_at is not None]
            next_lower = max(stamps) - timedelta(seconds=1) if stamps else None
            if next_lower is None or (lower is not None and next_lower <= lower):
                page += 1  # a whole page within one second: only page numbers can move us on
            else:
                lower, page = next_lower, 1
            seen_last_page = {(r.id, r.updated_at) for r in records}

    def _record(self, kind: Kind, item: dict[str, Any]) -> SourceRecord:
        stamp = item.get("date_modified_gmt") or item.get("date_created_gmt")
        try:
            updated_at = parse_timestamp(stamp) if isinstance(stamp, str) and stamp else None
        except ValueError:
            updated_at = None
        return SourceRecord(self.name, kind, id_text(item.get("id")), updated_at, item)

    # ----- mapping hooks ------------------------------------------------------------------------
    def canonical_id(self, raw: str) -> str | None:
        text = raw.strip()
        return str(int(text)) if text.isdigit() and int(text) > 0 else None

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        meta = payload.get("meta_data")
        if not isinstance(meta, list):
            return None
        for row in meta:
            if isinstance(row, dict) and row.get("key") == name:
                value = row.get("value")
                return value if isinstance(value, str) or value is None else str(value)
        return None

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        return payload.get("status") in COUNTED_STATUSES

    # ----- writes -------------------------------------------------------------------------------
    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        updates = [
            {
                "id": int(change.record_id),
                "meta_data": [{"key": key, "value": value or ""} for key, value in sorted(change.set_fields.items())],
            }
            for change in changes
        ]
        try:
            response = self.client.request("POST", API + "/customers/batch", json_body={"update": updates})
        except RejectedRecord as exc:
            return [WriteResult(c.record_id, False, exc.message) for c in changes]
        answered = response.body.get("update") if isinstance(response.body, dict) else None
        if not isinstance(answered, list) or len(answered) != len(changes):
            raise ApiError(self.name, "customers/batch answered with a different number of items")
        results = []
        for change, item in zip(changes, answered, strict=True):
            error = item.get("error") if isinstance(item, dict) else None
            if error:
                message = f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else str(error)
                results.append(WriteResult(change.record_id, False, message))
            else:
                results.append(WriteResult(change.record_id, True))
        return results


CONNECTOR = WooCommerceConnector
