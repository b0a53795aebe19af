"""Synthetic data for the demo and `crmsync sandbox`: the same seeded people, in every registered
vendor's own record shape (each vendor's `fixtures.py`).

The data is made to exercise what matters: people in several systems under the same email in
different case, guest orders that only an email links, cancelled and refunded orders that must not
count, tags and fields set by people that crmsync must leave alone, and a stale crmsync tag it
must take away.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.registry import TYPES, fixtures_function
from connectors.sandbox.people import PEOPLE, SEED, people


def demo_data(
    count: int = PEOPLE, seed: int = SEED, today: datetime | None = None, types: tuple[str, ...] = TYPES
) -> dict[str, dict[str, Any]]:
    """Vendor-shaped fixtures per sandbox type: {type: {"customers": [...], "orders": [...]}}."""
    persons = people(types, count, seed, today)
    return {system_type: fixtures_function(system_type)(persons) for system_type in types}
