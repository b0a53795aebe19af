"""Traits + segments for the whole customer base, column-wise.

Full scale (`--scale full`): 1,000,000 source contacts folded into 770,000 profiles, 5,000,000
orders over 7 systems in 3 currencies, with cancelled orders, prospects without orders and the
previous run's tiers (for hysteresis). Timed: currency conversion to cents, every trait (counts,
revenue, 12-month spend, first/last order, recency, tenure, average order value, channel mix,
last order system), RFM quintiles, quadrant, lifecycle, tiers with hysteresis, the membership
matrix, one Membership per profile and the per-segment sizes and revenue a run records.

The measurement runs in a child process that loads the generated columns from .npy files, so its
peak resident memory (ru_maxrss) is that of the computation and its inputs alone.

    python bench/bench_segments.py                # small default scale (1/20)
    python bench/bench_segments.py --scale full   # the target: <= 20 s and <= 2 GB
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NOW = datetime(2026, 11, 1, tzinfo=UTC)
SYSTEMS = ("afas", "efficy", "lightspeed", "shopify", "silvasoft", "superoffice", "woocommerce")
CHANNELS = ("offline", "offline", "online", "online", "offline", "offline", "online")
FULL = {"contacts": 1_000_000, "profiles": 770_000, "orders": 5_000_000}


def synthetic(profiles: int, contacts: int, orders: int, seed: int = 11) -> dict[str, np.ndarray]:
    """Seeded columns: which profile each contact joined, and the orders attached to profiles.
    About 15 % of profiles never ordered; order counts per buyer are skewed (a few regulars)."""
    rng = np.random.default_rng(seed)
    contact_profile = np.concatenate([np.arange(profiles), rng.integers(0, profiles, contacts - profiles)])
    buyers = rng.permutation(profiles)[: int(profiles * 0.85)]
    weights = rng.pareto(1.5, buyers.shape[0]) + 1.0
    order_profile = buyers[rng.choice(buyers.shape[0], orders, p=weights / weights.sum())]
    span = 3 * 365 * 86_400
    created = int(NOW.timestamp()) - rng.integers(0, span, orders)
    amounts = np.round(np.minimum(rng.lognormal(3.8, 0.7, orders), 5000.0), 2)
    currency = rng.choice(np.array(["EUR", "USD", "GBP"]), orders, p=[0.95, 0.03, 0.02])
    counts = rng.random(orders) < 0.93
    system = rng.integers(0, len(SYSTEMS), orders)
    previous_tier = rng.integers(-1, 3, profiles)
    previous_at = int(NOW.timestamp()) - rng.integers(0, 200 * 86_400, profiles).astype(np.float64)
    return {
        "contact_profile": contact_profile.astype(np.int64),
        "order_profile": order_profile.astype(np.int64),
        "system": system.astype(np.int64),
        "amount": amounts,
        "currency": currency.astype("U3"),
        "created": created.astype(np.int64),
        "counts": counts,
        "previous_tier": previous_tier.astype(np.int64),
        "previous_at": np.where(previous_tier >= 0, previous_at, np.nan),
    }


def measure(folder: Path, profiles: int) -> dict[str, float]:
    from mapping.segments import SegmentSettings, TierState, assess
    from mapping.traits import OrderColumns, to_base_cents, trait_columns

    data = {p.stem: np.load(p) for p in folder.glob("*.npy")}
    settings = SegmentSettings(rates={"USD": Decimal("0.92"), "GBP": Decimal("1.17")})
    started = time.perf_counter()
    cents, known = to_base_cents(data["amount"], data["currency"], settings.base_currency, settings.rates)
    orders = OrderColumns(data["order_profile"], data["system"], cents, data["created"], data["counts"] & known)
    traits = trait_columns(orders, profiles, NOW, CHANNELS)
    traits_done = time.perf_counter()
    previous = TierState(data["previous_tier"], data["previous_at"])
    assessment = assess(traits, settings, NOW, systems=SYSTEMS, previous=previous)
    memberships = assessment.memberships()
    sizes = assessment.matrix.sum(axis=0)
    revenue = traits.revenue_cents.astype(np.float64) @ assessment.matrix
    finished = time.perf_counter()
    assert len(memberships) == profiles and sizes.shape == revenue.shape
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "traits_s": round(traits_done - started, 3),
        "segments_s": round(finished - traits_done, 3),
        "total_s": round(finished - started, 3),
        "peak_mb": round(peak_mb, 1),
        "with_orders": int(np.count_nonzero(traits.order_count)),
        "segments": len(assessment.names),
        "combinations": len({id(m) for m in memberships}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="0.05", help="'full' or a fraction of the full size (default 0.05)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profiles", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.profiles)))
        return
    factor = 1.0 if args.scale == "full" else float(args.scale)
    size = {key: max(10, int(value * factor)) for key, value in FULL.items()}
    print(f"generating {size['contacts']:,} contacts -> {size['profiles']:,} profiles, {size['orders']:,} orders ...")
    with tempfile.TemporaryDirectory() as tmp:
        for name, column in synthetic(size["profiles"], size["contacts"], size["orders"]).items():
            np.save(Path(tmp) / f"{name}.npy", column)
        child = subprocess.run(
            [sys.executable, __file__, "--child", tmp, "--profiles", str(size["profiles"])],
            capture_output=True,
            text=True,
            check=True,
        )
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"traits (conversion, counts, money, dates, recency, tenure, channels, RFM): {figures['traits_s']:.2f} s")
    print(f"segments (quadrant, lifecycle, tiers with hysteresis, memberships, sizes): {figures['segments_s']:.2f} s")
    print(f"total {figures['total_s']:.2f} s, peak memory of the measuring process {figures['peak_mb']:.0f} MB")
    print(f"{figures['with_orders']:,} profiles with orders; {figures['combinations']} distinct segment combinations")
    targets = "" if factor < 1 else f" time_ok={figures['total_s'] <= 20} memory_ok={figures['peak_mb'] <= 2048}"
    print(
        f"scale={args.scale} contacts={size['contacts']} profiles={size['profiles']} orders={size['orders']} "
        f"traits_s={figures['traits_s']} segments_s={figures['segments_s']} total_s={figures['total_s']} "
        f"peak_mb={figures['peak_mb']}{targets}"
    )


if __name__ == "__main__":
    main()
