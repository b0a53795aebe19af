"""crmsync's verdict on a Lightspeed customer: two customer metafields, looked at and written.

Customers have no tags, so crmsync's verdict lives in two customer metafields, `crmsync_segments`
and `crmsync_loyalty_tier`, one row per key. The customer list does not carry metafields, and asking
for them customer by customer would cost one request per customer of a budget of 12,000 a day (a
first read of 20,000 customers: 20,082 requests, over a day, instead of 82). So a read does not ask:
its records' owned state is unknown (`reads_owned_state = False`), the pushed-state ledger says what
crmsync wrote, and each cycle `verify_owned` looks at the metafields of a budgeted share of the
customers (`verify_per_day`), so a hand edit of crmsync's rows is seen and repaired in turn. The
write-back looks at a customer's rows before it writes (or uses the rows the verification of this
cycle just saw) and sends only what differs. A POST always adds a row, so a value is created only
after a look-up found no row of that key, and a POST whose reply was lost is followed by a look-up,
not a blind retry. Other metafields and the merchant's `memo` note are never written.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from connectors.errors import RejectedRecord, RetriesExhausted, TransientError
from connectors.http import ApiResponse
from connectors.lightspeed.rules import items_of
from connectors.lightspeed.settings import MAX_PAGE, METAFIELDS, NOT_FOUND
from connectors.paging import PageNumberPaginator, Reply

Row = dict[str, Any]
# `call(method, path, params=..., body=..., idempotent=...)`: one request to the shop's API.
Call = Callable[..., ApiResponse]

DUPLICATES = " | "  # joins the values of a key that has more than one row
CACHED_CUSTOMERS = 10_000

log = structlog.get_logger("crmsync.lightspeed")


class Metafields:
    """crmsync's rows of the customers of one shop. `keys` are the metafield keys crmsync owns;
    `attempts` bounds the creates of one row whose replies were lost."""

    def __init__(self, system: str, call: Call, keys: Sequence[str | None], attempts: int) -> None:
        self.system = system
        self.call = call
        self.keys = tuple(key for key in keys if key)
        self.attempts = attempts
        # Our own rows per customer as the last verification saw them (bounded; a miss means a look-up).
        self._seen: OrderedDict[str, list[Row]] = OrderedDict()
        self._uncertain = False  # the current write lost a reply that may still be carried out

    # ----- looking ------------------------------------------------------------------------------
    def rows(self, customer_id: str) -> list[Row]:
        """Every metafield row of one customer (the merchant's and other apps' too), page by page."""
        paginator = PageNumberPaginator(self.system, MAX_PAGE)
        rows: list[Row] = []
        while True:
            params = {"page": paginator.position, "limit": MAX_PAGE}
            response = self.call("GET", f"/customers/{customer_id}/metafields.json", params=params)
            reply = Reply(items_of(response, METAFIELDS, self.system))
            rows.extend(reply.items)
            if not paginator.advance(reply):
                return rows

    def verify(self, customer_ids: Sequence[str]) -> dict[str, list[Row]]:
        """The rows of these customers, one request each (a customer deleted since is left out).
        crmsync's own rows are remembered, so a write in the same cycle needs no second look-up."""
        found: dict[str, list[Row]] = {}
        for customer_id in customer_ids:
            try:
                rows = self.rows(customer_id)
            except RejectedRecord as exc:
                if not exc.message.startswith(NOT_FOUND):
                    log.warning("metafields not verified", customer=customer_id, error=exc.message)
                continue
            self._remember(customer_id, rows)
            found[customer_id] = rows
        return found

    def _own(self, customer_id: str) -> list[Row]:
        return [row for row in self.rows(customer_id) if row.get("key") in self.keys]

    def _remember(self, customer_id: str, rows: list[Row]) -> None:
        self._seen[customer_id] = [row for row in rows if row.get("key") in self.keys]
        self._seen.move_to_end(customer_id)
        while len(self._seen) > CACHED_CUSTOMERS:
            self._seen.popitem(last=False)

    # ----- writing ------------------------------------------------------------------------------
    def write(self, customer_id: str, fields: Mapping[str, str | None]) -> bool:
        """Looks at the customer's rows (or takes those this cycle's verification just saw) and
        writes only what differs: nothing for a value already there, no POST where a row of that
        key exists. False when a create's reply was lost and the row may still appear (the next
        cycle looks again)."""
        self._uncertain = False
        seen = self._seen.pop(customer_id, None)
        try:
            self._apply(customer_id, fields, seen if seen is not None else self._own(customer_id))
        except RejectedRecord as exc:
            if seen is None or not exc.message.startswith(NOT_FOUND):
                raise
            # A row the verification saw has gone since: look again, once.
            self._apply(customer_id, fields, self._own(customer_id))
        return not self._uncertain

    def _apply(self, customer_id: str, fields: Mapping[str, str | None], rows: list[Row]) -> None:
        for key, value in sorted(fields.items()):
            self._set(customer_id, key, value or "", rows_of(rows, key))

    def _set(self, customer_id: str, key: str, value: str, mine: list[Row]) -> None:
        """One row of `key` holding `value` (none when `value` is empty). Rows of our key beyond the
        first (however they came about) are ours to remove: one row per key."""
        keep, extra = (mine[0], mine[1:]) if mine else (None, [])
        for row in extra:
            self._delete(customer_id, row)
        if not value:
            if keep is not None:
                self._delete(customer_id, keep)
        elif keep is None:
            self._create(customer_id, key, value)
        elif keep.get("value") != value:
            self.call(
                "PUT",
                f"/customers/{customer_id}/metafields/{keep['id']}.json",
                body={"customerMetafield": {"value": value}},
            )

    def _delete(self, customer_id: str, row: Mapping[str, Any]) -> None:
        try:
            self.call("DELETE", f"/customers/{customer_id}/metafields/{row['id']}.json")
        except RejectedRecord as exc:
            if not exc.message.startswith(NOT_FOUND):
                raise  # a row already gone is what we wanted

    def _create(self, customer_id: str, key: str, value: str) -> None:
        body = {"customerMetafield": {"key": key, "value": value}}
        failure = ""
        for _ in range(self.attempts):
            try:
                self.call("POST", f"/customers/{customer_id}/metafields.json", body=body, idempotent=False)
                return
            except TransientError as exc:
                failure = exc.message
            # The reply was lost, not necessarily the row: a blind second POST would add a second one.
            found = rows_of(self._own(customer_id), key)
            if found:
                self._set(customer_id, key, value, found)
                return
            # Not there (yet): the lost POST may still be carried out after the one we send now.
            # The write is then reported unconfirmed, and the next cycle looks at the rows again.
            self._uncertain = True
        raise RetriesExhausted(self.system, f"gave up creating metafield {key} of customer {customer_id}: {failure}")


def field_value(rows: Any, key: str) -> str | None:
    """What a payload's rows hold for one key: None without a row of it."""
    values = [row.get("value") for row in rows_of(rows, key)]
    if len(values) > 1:
        # Two rows of one key (a create whose reply was lost and that the shop carried out
        # late, another tool): the values joined can never equal a verdict, so the planner
        # writes this field and `Metafields._set` removes the extra rows.
        return DUPLICATES.join(v if isinstance(v, str) else "" for v in values)
    return values[0] if values and isinstance(values[0], str) else None


def rows_of(rows: Any, key: str) -> list[Row]:
    """The rows of one metafield key, oldest first."""
    if not isinstance(rows, list):
        return []
    mine = [row for row in rows if isinstance(row, dict) and row.get("key") == key]
    return sorted(mine, key=_row_id)


def _row_id(row: Mapping[str, Any]) -> int:
    value = row.get("id")
    return value if isinstance(value, int) else 0
