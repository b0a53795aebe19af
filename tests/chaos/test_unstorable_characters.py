"""Characters a store cannot hold, in a vendor's reply: a lone surrogate (JSON lets a string escape
half of a UTF-16 pair, `"\\ud800"`, and writers that work in UTF-16, JavaScript's `JSON.stringify`
or .NET, emit one for a string cut inside an emoji), which UTF-8 cannot carry, and NUL
(`"\\u0000"`), which PostgreSQL's text cannot. crmsync reads both as U+FFFD (what a lenient UTF-8
decoder makes of bytes it cannot read): the record is stored and mapped, and the read goes on.
Before, storing the page failed on it, every cycle, and the system read nothing past it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.registry import TYPES, vendor
from sync.demo import demo_data
from sync.state import StateStore
from tests.chaos.lab import Lab, customer_ids

NOW = datetime.now(UTC).replace(microsecond=0)
# Half of an emoji, as a UTF-16 writer leaves it when it cuts the name short; a NUL inside a name.
CHARACTERS = {"lone surrogate": "Sanne \ud83c", "NUL": "San\x00ne"}


def stored(state_url: str) -> tuple[dict[str, str | None], list[str]]:
    """Given name per stored contact, and every raw payload stored."""
    store = StateStore(state_url)
    try:
        with store.db.reading() as conn:
            details = conn.exec_driver_sql("SELECT record_id, details FROM contacts").all()
            payloads = [str(payload) for (payload,) in conn.exec_driver_sql("SELECT payload FROM raw_records").all()]
    finally:
        store.close()
    return {str(rid): json.loads(text).get("given_name") for rid, text in details}, payloads


@pytest.mark.parametrize("character", CHARACTERS)
@pytest.mark.parametrize("system_type", TYPES)
def test_an_unstorable_character_is_read_as_a_replacement_character(
    system_type: str, character: str, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    data = demo_data(8, seed=5, types=(system_type,))
    ids = customer_ids(data[system_type], system_type)
    state = str(request.getfixturevalue("postgres_url")) if backend == "postgresql" else None
    name = CHARACTERS[character]
    with Lab.start(data, tmp_path, state=state) as lab:
        victim = ids[0]
        lab.sandboxes.patch_customer(system_type, victim, vendor(system_type).emulated.rename(name))
        served = json.dumps(lab.sandboxes.customer(system_type, victim), ensure_ascii=False)
        assert json.dumps(name, ensure_ascii=False)[1:-1] in served  # the vendor holds it as sent
        report = lab.cycle(NOW)
        assert report.systems[system_type].status == "ok", report.systems[system_type]
        names, payloads = stored(lab.state_url)
        assert names[victim] == name.replace("\ud83c", "\ufffd").replace("\x00", "\ufffd")
        assert set(names) == set(ids)  # every other customer stored too
        assert any("\ufffd" in payload for payload in payloads)
