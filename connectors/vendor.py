"""What a vendor folder declares about itself, so nothing outside the folder needs to know it.

Each `connectors/<type>/vendor.py` holds `VENDOR = Vendor(...)`. The registry finds vendors by
these files; the sandbox command, the segment model (online or offline channel), the demo data
and the test suite's per-vendor tables read them from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Emulated:
    """Facts about the vendor's emulator that the chaos and bad-input tests need: where it keeps
    customers and orders (an attribute path on the sandbox app, and the key naming a record in
    that store), the key naming a customer in the fixture shape, and a first-name edit in that
    shape."""

    customers: tuple[str, str]
    orders: tuple[str, str]
    rename: Callable[[str], dict[str, Any]]
    # The sandbox config signs in with an expiring token that crmsync renews after a 401.
    renews_tokens: bool = False
    # Fault-matrix columns whose write-back creates things (a POST adds a row every time).
    creates: tuple[str, ...] = ()
    # Where the bad-input corpus finds each abstract field in a fixture record (id, email, phone,
    # first, last, address; id, amount, currency, date, customer, email).
    fixture_contact: Mapping[str, str] = field(default_factory=dict)
    fixture_order: Mapping[str, str] = field(default_factory=dict)
    # A typed API (GraphQL schema, .NET entities) never sends a text field as a number or object.
    typed: bool = False
    # Dates written dd-MM-yyyy rather than ISO-8601.
    dmy_dates: bool = False
    # Order totals are JSON numbers (not strings) in the vendor's shape.
    numeric_amounts: bool = True

    @property
    def contact_key(self) -> str:
        return self.customers[1]


@dataclass(frozen=True)
class Vendor:
    type: str
    # `crmsync sandbox --port-base P` starts this vendor's emulator on P + port_offset, whether or
    # not the others run (CONTRACTS fixes 0-6 for the seven vendors it names).
    port_offset: int
    # A web shop: its customers buy online (the segment model's channel).
    online: bool
    emulated: Emulated
    # Synthetic demo people: how often one lives here, and where a shop's customer numbers start
    # (so a CRM can store "the web-shop customer number" of a person).
    people_weight: int = 1
    shop_id_base: int | None = None
