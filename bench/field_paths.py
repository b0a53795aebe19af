"""Field maps: the time each field's path takes to read, and a record's whole mapping, per system and
kind, on bench/pipeline.py's synthetic merchant (Shopify, WooCommerce and AFAS Profit payloads in the
vendors' own shapes).

    python bench/field_paths.py                     # 20,000 contacts, 100,000 orders (~20 s)
    python bench/field_paths.py --contacts 200000   # and five orders per contact

The records are made before timing; nothing is stored. Each figure is the best of three passes over
the same records, in microseconds per record: per field, its path alone (`FieldSpec.get`); `map`,
the record's whole mapping as an extract maps it (the connector's mapper from `make_mapper`, with
the config's rules and the missing-field count). This is the "map" share of bench/extract.py
(issue 17, item 3), without HTTP, hashing or SQLite.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _common import load_average, machine, result_line
from _merchant import CONFIG, Merchant

from connectors.base import Connector
from mapping.fieldmaps import FieldAbsence
from mapping.model import Kind, SourceRecord
from sync.config import load_config
from sync.pipeline import build_connectors, make_mapper
from sync.resolve import mapping_rules


def best_us(work: Callable[[], object], count: int) -> float:
    """Microseconds per record of `work` over `count` records, best of three passes."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best / max(count, 1) * 1e6


def measure(
    connector: Connector, mapper: Callable[[SourceRecord], object], records: Sequence[SourceRecord]
) -> dict[str, float]:
    """Per field of the connector's map for these records' kind, its path's time; `map`: the mapper's."""
    fields = connector.contact_fieldmap if records[0].kind is Kind.CONTACT else connector.order_fields
    payloads = [record.payload for record in records]
    figures = {}
    for name, spec in fields.items():
        get = spec.get
        figures[name] = best_us(lambda get=get: [get(p) for p in payloads], len(payloads))
    figures["map"] = best_us(lambda: [mapper(r) for r in records], len(records))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=20_000, help="contacts over the three systems (default 20,000)")
    args = parser.parse_args()
    print(f"machine: {machine()}, load {load_average()}")
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "crmsync.toml"
        config_path.write_text(CONFIG)
        loaded = load_config(config_path)
    connectors = build_connectors(loaded, threading.Event())
    rules = mapping_rules(loaded.config)
    merchant = Merchant(None, connectors)  # type: ignore[arg-type]  # makes records; stores none
    groups: dict[tuple[str, Kind], list[SourceRecord]] = {}
    for record in (*merchant._new_contacts(args.contacts), *merchant.new_orders(5 * args.contacts)):
        groups.setdefault((record.system, record.kind), []).append(record)
    results: dict[str, float] = {}
    for (system, kind), records in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1].value)):
        connector = connectors[system]
        figures = measure(connector, make_mapper(connector, kind, connectors, rules, FieldAbsence()), records)
        paths = sum(us for name, us in figures.items() if name != "map")
        print(f"{system} {kind.value}s ({len(records):,}): map {figures['map']:.2f} us, paths {paths:.2f} us")
        for name, us in figures.items():
            if name != "map":
                print(f"  {name:<16} {us:6.2f} us")
        results[f"{system}_{kind.value}_map_us"] = round(figures["map"], 2)
        results[f"{system}_{kind.value}_paths_us"] = round(paths, 2)
    print(result_line(**results))


if __name__ == "__main__":
    main()
