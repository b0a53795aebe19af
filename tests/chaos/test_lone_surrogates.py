"""A lone surrogate in a vendor's reply: JSON lets a string escape half of a UTF-16 pair
(`"\\ud800"`), and writers that work in UTF-16 (JavaScript's `JSON.stringify`, .NET) emit one for a
string cut in the middle of an emoji. No UTF-8 store can hold it, so crmsync reads it as U+FFFD
(what a lenient UTF-8 decoder makes of bytes it cannot read): the record is stored and mapped, and
the read goes on. Before, storing the page failed on it, every cycle, and the system read nothing
past it."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.registry import TYPES, vendor
from sync.demo import demo_data
from tests.chaos.lab import Lab, customer_ids

NOW = datetime.now(UTC).replace(microsecond=0)


def stored(state_file: Path) -> tuple[dict[str, str | None], list[str]]:
    """Given name per stored contact, and every raw payload stored."""
    with closing(sqlite3.connect(state_file)) as db:
        names = {rid: json.loads(details).get("given_name") for rid, details in db.execute(
            "SELECT record_id, details FROM contacts"
        )}  # fmt: skip
        payloads = [str(payload) for (payload,) in db.execute("SELECT payload FROM raw_records")]
    return names, payloads


@pytest.mark.parametrize("system_type", TYPES)
def test_a_lone_surrogate_is_read_as_a_replacement_character(system_type: str, tmp_path: Path) -> None:
    data = demo_data(8, seed=5, types=(system_type,))
    ids = customer_ids(data[system_type], system_type)
    with Lab.start(data, tmp_path) as lab:
        victim = ids[0]
        # Half of an emoji, as a UTF-16 writer leaves it when it cuts the name short.
        lab.sandboxes.patch_customer(system_type, victim, vendor(system_type).emulated.rename("Sanne \ud83c"))
        served = lab.sandboxes.customer(system_type, victim)
        assert "Sanne \ud83c" in json.dumps(served, ensure_ascii=False)  # the vendor holds it as sent
        report = lab.cycle(NOW)
        assert report.systems[system_type].status == "ok", report.systems[system_type]
        names, payloads = stored(lab.state_file)
        assert names[victim] == "Sanne \ufffd"
        assert set(names) == set(ids)  # every other customer stored too
        assert any("Sanne \ufffd" in payload for payload in payloads)
