"""A big Shopify store's backfill and first write-back: page by page against Shopify's bulk
operations, in requests and in the cost points Shopify charges.

    python bench/shopify_bulk.py                   # 5,000 customers (seconds)
    python bench/shopify_bulk.py --scale full      # 100,000 customers: the issue's store (minutes)

Setup: the Shopify emulator in this process, with a bottomless cost bucket so nothing waits (the
figures are counted, not timed), and N customers. The write-back is what a first sync gives every
customer: two segment tags and a loyalty tier. Measured from the emulator's own request log:
- backfill, paging: `read_contacts` from the start, page by page (crmsync's default 100 a page:
  250 of its customer query would cost more than the 1,000 points one query may);
- backfill, bulk: the same read as one bulk query (`bulk_read_threshold`), handed out in pages;
- write-back, paging: `write` in documents of 25 customers (tagsAdd + one metafieldsSet);
- write-back, bulk: `write_bulk` (staged JSONL files, one bulk mutation each, polled).
Cost points are what the emulator charged, by Shopify's documented rules (a mutation field 10, an
object 1, a connection its page size times its node; unused slots refunded). The wall time at
100 points/s is the time a standard plan's bucket (restored at 100 points a second, 2,000 deep)
needs to grant those points; it does not include Shopify's own time to run a bulk operation, which
is not documented. Both reads must give the same records and both write paths the same store
state; the script checks that.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import load_average, machine, result_line

from connectors.sandbox.server import SandboxServer
from connectors.shopify.client import ShopifyConnector, ShopifySettings
from connectors.shopify.sandbox import ShopifySandbox
from mapping.model import RemoteState, WriteBack
from sync.log import setup_logging

SCALES = {"small": 5_000, "full": 100_000}
RESTORE_RATE = 100.0  # points per second, standard plans
BUCKET = 2000.0  # points, standard plans (the first burst is free of waiting)


def customers(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"gid://shopify/Customer/{i}",
            "firstName": "Klant",
            "lastName": str(i),
            "defaultEmailAddress": {"emailAddress": f"klant{i}@example.nl", "marketingState": "SUBSCRIBED"},
            "tags": ["vip"] if i % 10 == 0 else [],
            "updatedAt": f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
        }
        for i in range(1, n + 1)
    ]


def first_write_back(n: int) -> list[WriteBack]:
    segments = ("friends", "supporters", "strangers", "acquaintances")
    tiers = ("bronze", "silver", "gold")
    return [
        WriteBack(
            "shopify",
            f"gid://shopify/Customer/{i}",
            (f"crmsync:{segments[i % 4]}", f"crmsync:lifecycle-{'active' if i % 3 else 'at-risk'}"),
            (),
            {"crmsync.loyalty_tier": tiers[i % 3]},
            RemoteState(),
        )
        for i in range(1, n + 1)
    ]


def shop(n: int, bulk_read_threshold: int) -> tuple[SandboxServer, ShopifyConnector]:
    app = ShopifySandbox({"customers": customers(n)}, bucket_size=1e12, restore_rate=1e12)
    server = SandboxServer(app).start()
    settings = ShopifySettings(
        type="shopify",
        base_url=server.url,
        access_token=app.access_token,
        bulk_poll_max=1.0,
        bulk_read_threshold=bulk_read_threshold,
        read_timeout=120,
    )
    return server, ShopifyConnector("shopify", settings)


def measured(server: SandboxServer, since: int) -> tuple[int, int, float]:
    """(requests to the Admin API, requests to the storage host, points charged) after log entry `since`."""
    log = server.app.stats.log[since:]
    api = [e for e in log if e["path"].endswith("graphql.json")]
    storage = len(log) - len(api)
    return len(api), storage, float(sum(e.get("cost") or 0 for e in api))


def wall_at_standard_rate(points: float) -> float:
    return max(0.0, points - BUCKET) / RESTORE_RATE


def state_of(server: SandboxServer) -> dict[str, Any]:
    app = server.app
    assert isinstance(app, ShopifySandbox)
    return {
        gid: (sorted(c["tags"]), sorted((m["key"], m["value"]) for m in c["metafields"]))
        for gid, c in app.customers.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="small (5,000 customers), full (100,000) or a number")
    args = parser.parse_args()
    n = SCALES.get(args.scale) or int(args.scale)
    setup_logging("warning")
    load_before = load_average()
    print(f"machine: {machine()}")
    print(f"store: {n:,} customers; first write-back: 2 tags and a tier each")
    figures: dict[str, tuple[int, int, float, float]] = {}

    paged_server, paged = shop(n, bulk_read_threshold=0)
    bulk_server, bulk = shop(n, bulk_read_threshold=1)
    try:
        read: dict[str, dict[str, Any]] = {}
        for step, server, connector in (("paging", paged_server, paged), ("bulk", bulk_server, bulk)):
            started = time.monotonic()
            read[step] = {r.id: r.payload for page in connector.read_contacts(None) for r in page.records}
            assert len(read[step]) == n, len(read[step])
            requests_, storage, points = measured(server, 0)
            figures[f"backfill, {step}"] = (requests_, storage, points, time.monotonic() - started)
        same_read = read["paging"] == read["bulk"]

        changes = first_write_back(n)
        for step, server, connector in (("paging", paged_server, paged), ("bulk", bulk_server, bulk)):
            since = len(server.app.stats.log)
            started = time.monotonic()
            if step == "bulk":
                results = connector.write_bulk(changes, lambda: None)
                assert len(results) == n and all(r.ok for r in results)
            else:
                for at in range(0, n, connector.write_batch):
                    assert all(r.ok for r in connector.write(changes[at : at + connector.write_batch]))
            requests_, storage, points = measured(server, since)
            figures[f"write-back, {step}"] = (requests_, storage, points, time.monotonic() - started)
        same = same_read and state_of(bulk_server) == state_of(paged_server)
    finally:
        for server, connector in ((paged_server, paged), (bulk_server, bulk)):
            connector.close()
            server.stop()
    if not same:
        raise SystemExit("bulk and paging did not read the same records or end in the same store state")

    print(f"{'step':<22}{'API requests':>14}{'storage':>10}{'points':>14}{'at 100 pts/s':>16}{'here':>10}")
    for step, (requests_, storage, points, here) in figures.items():
        wall = wall_at_standard_rate(points)
        print(f"{step:<22}{requests_:>14,}{storage:>10,}{points:>14,.0f}{wall / 3600:>14.2f} h{here:>9.1f}s")
    paging_points = figures["write-back, paging"][2]
    bulk_points = figures["write-back, bulk"][2]
    print("same records from both reads, same store state after both write paths: yes")
    print(f"load: {load_before} -> {load_average()}")
    print(
        result_line(
            customers=n,
            backfill_paging_requests=figures["backfill, paging"][0],
            backfill_paging_points=round(figures["backfill, paging"][2]),
            backfill_bulk_requests=figures["backfill, bulk"][0] + figures["backfill, bulk"][1],
            backfill_bulk_points=round(figures["backfill, bulk"][2]),
            paging_write_requests=figures["write-back, paging"][0],
            paging_write_points=round(paging_points),
            paging_write_h=round(wall_at_standard_rate(paging_points) / 3600, 2),
            bulk_write_requests=figures["write-back, bulk"][0] + figures["write-back, bulk"][1],
            bulk_write_points=round(bulk_points),
            points_ratio=round(paging_points / max(bulk_points, 1), 1),
        )
    )


if __name__ == "__main__":
    main()
