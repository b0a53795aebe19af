"""A record the vendor refuses (a validation error) is reported with the vendor's message, stays
pending, is tried again every cycle until it succeeds, and never holds up the rest of its batch:
for every connector that writes. (WooCommerce, whose meta update refuses only an unknown
customer, is covered by tests/e2e/test_interruptions.py.)

What makes the vendor refuse one customer, the way real data does:
- Shopify: the customer already carries the most tags a resource may have (250), set by people;
- Lightspeed, AFAS, SuperOffice, efficy: four rule segments with long names that only this
  customer is in make the segments field longer than the vendor's field holds.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.shopify.sandbox import MAX_TAGS
from mapping.model import get_path
from sync.demo import demo_data
from tests.chaos.lab import Lab, customer_ids

NOW = datetime.now(UTC)
EMAIL_PATHS = {
    "lightspeed": "email",
    "afas": "Email",
    "superoffice": "Emails.0.Value",
    "efficy": "EMAIL1",
}
# What each vendor says, as the pending record must show it.
MESSAGES = {
    "shopify": f"A resource can have at most {MAX_TAGS} tags",
    "lightspeed": "Invalid value: text of at most 255 characters",
    "afas": "is te lang",
    "superoffice": "LongText holds 200",
    "efficy": "ER_FIELD_LENGTH",
}


def long_rules(email: str) -> str:
    """Four 60-character segment names only the owner of `email` is in."""
    rules = []
    for n in range(4):
        name = f"segment-with-a-deliberately-long-name-for-a-field-limit-{n:04d}"
        assert len(name) == 60
        rules.append(f'[[segments.rules]]\nname = "{name}"\nwhen = "lower(email) == \'{email.lower()}\'"\n')
    return "\n".join(rules)


def pending(lab: Lab) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(lab.state_file)) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM pending")]


def written(lab: Lab, system_type: str, record_id: str) -> bool:
    """Whether crmsync's verdict is on this customer (its tags or its fields)."""
    customer = lab.sandboxes.customer(system_type, record_id)
    text = json.dumps(customer)
    return "lifecycle-" in text


@pytest.mark.parametrize("system_type", ["shopify", "lightspeed", "afas", "superoffice", "efficy"])
def test_a_refused_record_is_reported_kept_pending_retried_and_never_blocks_its_batch(
    system_type: str, tmp_path: Path
) -> None:
    data = demo_data(30, seed=9, types=(system_type,))
    ids = customer_ids(data[system_type], system_type)
    victim = ids[0]
    first = data[system_type]["customers"][0]
    extra = "" if system_type == "shopify" else long_rules(str(get_path(first, EMAIL_PATHS[system_type])))
    with Lab.start(data, tmp_path, overrides={system_type: "write_batch = 3"}, extra=extra) as lab:
        if system_type == "shopify":
            lab.sandboxes.patch_customer(system_type, victim, {"tags": [f"klant-{n}" for n in range(MAX_TAGS)]})

        for attempt in (1, 2):
            report = lab.cycle(NOW)
            outcome = report.systems[system_type]
            assert report.exit_code() == 1 and outcome.status == "ok"
            assert outcome.rejected == 1
            # the first cycle writes everyone else; the second tries the refused one again, alone
            assert outcome.written == outcome.planned - 1 > 0 if attempt == 1 else outcome.planned == 1
            [refused] = pending(lab)
            assert (refused["record_id"], refused["attempts"]) == (victim, attempt)
            assert MESSAGES[system_type] in refused["message"], refused["message"]
            # the others, in the same batch or not, carry the verdict
            assert all(written(lab, system_type, rid) for rid in ids[1:])

        # The cause is gone (people removed tags; the long segments were taken out of the config).
        if system_type == "shopify":
            lab.sandboxes.patch_customer(system_type, victim, {"tags": ["klant-1"]})
        else:
            assert lab.config is not None
            text = lab.config.read_text()
            lab.config.write_text(text[: text.index("[[segments.rules]]")])
        healed = lab.cycle(NOW)
        assert healed.exit_code() == 0 and healed.systems[system_type].rejected == 0
        assert pending(lab) == []
        assert written(lab, system_type, victim)
