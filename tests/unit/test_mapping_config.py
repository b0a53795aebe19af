"""Which configuration changes map a system's stored records again (`sync/extract.py`
`mapping_config`, `stale_mappings`), on both state backends: every setting that can change what a
record maps to does, what only paces or reaches a system does not, and a system's name of the
longest length allowed is remembered like any other."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from connectors.base import Connector
from sync.config import load_config
from sync.extract import Extractor
from sync.pipeline import build_connectors
from sync.resolve import mapping_rules
from sync.state import StateStore

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LONG = "afas_" + "x" * 59  # 64 characters, the longest name a system may have

BASE = """
[state]
url = "{url}"
{identity}
[systems.{long}]
type = "afas"
base_url = "http://127.0.0.1:9"
token = "<token><version>1</version><data>abc</data></token>"
{afas}

[systems.crm]
type = "efficy"
base_url = "http://127.0.0.1:9"
api_key = "k"
contacts_query = 1
{efficy}
"""


def stale_after(tmp_path: Path, url: str, **sections: str) -> Callable[..., dict[str, str]]:
    """A state whose records were mapped by the configuration `sections` give, and a function
    telling which systems another configuration finds stale."""

    def extractor(**changed: str) -> tuple[Extractor, dict[str, Connector]]:
        parts = {"identity": "", "afas": "", "efficy": "", "extra": ""} | changed
        (tmp_path / "crmsync.toml").write_text(
            BASE.format(url=url, long=LONG, identity=parts["identity"], afas=parts["afas"], efficy=parts["efficy"])
            + parts["extra"]
        )
        loaded = load_config(tmp_path / "crmsync.toml")
        store = StateStore(loaded.state_url())
        made = Extractor(
            loaded.config, store, mapping_rules(loaded.config), clock=lambda: NOW, stop_event=threading.Event()
        )
        return made, build_connectors(loaded, threading.Event())

    first, connectors = extractor(**sections)
    first.remap_if_needed(connectors, first.store.begin_run("sync", NOW))
    assert first.stale_mappings(connectors) == {}
    first.store.close()

    def stale(**changed: str) -> dict[str, str]:
        made, others = extractor(**(sections | changed))
        try:
            return made.stale_mappings(others)
        finally:
            made.store.close()

    return stale


def test_what_changes_a_mapping_maps_again_and_what_only_paces_does_not(tmp_path: Path, state_url: str) -> None:
    stale = stale_after(tmp_path, state_url)
    assert stale() == {}  # the same configuration, read again by another process
    # Only pacing, paging and reaching the system: nothing to map again.
    assert (
        stale(efficy='page_size = 10\nreconcile_every = "2h"', afas="rate_limit = [{ requests = 5, per_seconds = 1 }]")
        == {}
    )
    # What an order counts as, and which columns hold crmsync's own fields.
    assert stale(efficy='counted_statuses = ["WON", "INVOICED"]') == {"crm": "configuration"}
    assert stale(afas='segments_column = "U1234"') == {LONG: "configuration"}
    # A field map of one system; a rule of every system's.
    assert stale(afas='fields = { country = { path = "CountryId", normaliser = "country" } }') == {
        LONG: "configuration"
    }
    assert stale(identity='[identity]\nrole_addresses = ["bakkerij"]\n') == {
        LONG: "configuration",
        "crm": "configuration",
    }
    assert stale(identity='[identity]\ndefault_country = "BE"\n') == {LONG: "configuration", "crm": "configuration"}


SHOP = """
[systems.web]
type = "woocommerce"
base_url = "http://127.0.0.1:9"
consumer_key = "k"
consumer_secret = "s"
"""


def test_a_system_added_maps_only_its_own_records_and_those_whose_links_name_it(tmp_path: Path, state_url: str) -> None:
    """Before, every system's digest held the list of systems: adding a shop mapped a million CRM
    records again. Only a system whose links name the new one reads its ids in that one's form."""
    stale = stale_after(tmp_path, state_url)
    assert stale(extra=SHOP) == {"web": "configuration"}
    linked = stale(extra=SHOP, afas='links = { web = "Webshop_klantnummer" }')
    assert linked == {LONG: "configuration", "web": "configuration"}


def test_a_shops_counted_statuses_map_its_orders_again_and_their_order_in_the_list_does_not(
    tmp_path: Path, state_url: str
) -> None:
    """Whether an order counts is decided when it is mapped: a changed list re-evaluates the stored
    orders. The default written out, or the same statuses in another order, is the same list."""
    stale = stale_after(tmp_path, state_url, extra=SHOP)
    assert stale(extra=SHOP + 'counted_statuses = ["processing", "completed"]\n') == {"web": "configuration"}
    assert stale(extra=SHOP + 'counted_statuses = ["processing", "on-hold", "completed", "on-hold"]\n') == {}
