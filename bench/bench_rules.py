"""Rule segments: 20 rules from TOML over 1,000,000 profiles (full scale).

The rules mix what people write: money and counts, date arithmetic against `now`, lists after
`in`, systems, RFM scores, lifecycle and quadrant, and text functions on email addresses. Timed
apart: parsing + checking + compiling all rules (once per process), and evaluating all of them
over every profile (column building included).

    python bench/bench_rules.py                # small default scale (1/20)
    python bench/bench_rules.py --scale full   # the target: <= 10 s
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_segments import CHANNELS, NOW, SYSTEMS, synthetic

RULES = {
    "big-spenders": "spend_12m >= 500",
    "drifting-big-spenders": "revenue >= 1000 and last_order < now - days(90)",
    "recent-first-timers": "order_count == 1 and first_order >= now - days(30)",
    "champions": "r >= 4 and f >= 4 and m >= 4",
    "hibernating": "r <= 2 and f <= 2",
    "rfm-top": "rfm in ['555', '554', '545', '455']",
    "shop-only": "'shopify' in order_systems and not ('afas' in order_systems)",
    "omnichannel": "online_orders > 0 and offline_orders > 0",
    "crm-known": "'afas' in systems or 'superoffice' in systems or 'efficy' in systems",
    "gmail": "endswith(email, '@gmail.com')",
    "business-mail": "not (email_domain in ['gmail.com', 'hotmail.com', 'outlook.com', 'ziggo.nl'])",
    "name-starts-with-a": "startswith(lower(first_name), 'a')",
    "loyal-veterans": "tenure_days >= 730 and orders_12m >= 2",
    "high-aov": "average_order_value > 120",
    "at-risk-friends": "quadrant == 'friends' and lifecycle == 'at-risk'",
    "lapsed-valuable": "lifecycle == 'lapsed' and revenue > 250",
    "gold-or-silver": "tier in ['gold', 'silver']",
    "winback-window": "days(120) <= now - last_order and now - last_order <= days(240)",
    "this-year-starters": "year(first_order) == 2026",
    "no-phone": "missing(phone) and order_count >= 3",
}


def main() -> None:
    from mapping.rules import compile_rule
    from mapping.segments import (
        ProfileColumns,
        SegmentSettings,
        TierState,
        hold_tiers,
        lifecycle_codes,
        quadrant_codes,
        rule_input,
        tiers_reached,
    )
    from mapping.traits import OrderColumns, to_base_cents, trait_columns

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="0.05", help="'full' or a fraction of the full size (default 0.05)")
    args = parser.parse_args()
    factor = 1.0 if args.scale == "full" else float(args.scale)
    profiles = max(10, int(1_000_000 * factor))
    print(f"preparing {profiles:,} profiles with {profiles * 5:,} orders (not timed) ...")
    data = synthetic(profiles, profiles, profiles * 5, seed=5)
    settings = SegmentSettings(rules=[{"name": name, "when": when} for name, when in RULES.items()])
    cents, known = to_base_cents(data["amount"], data["currency"], "EUR", {})
    orders = OrderColumns(data["order_profile"], data["system"], cents, data["created"], data["counts"] & known)
    traits = trait_columns(orders, profiles, NOW, CHANNELS)
    rng = np.random.default_rng(3)
    domains = np.array(["gmail.com", "hotmail.com", "ziggo.nl", "bedrijf.nl", "kpn.nl"])
    names = np.array(["anna", "bram", "Chantal", "daan", "Eva", "fleur", "Anouk"])
    strings = np.dtypes.StringDType()
    email = np.strings.add(
        np.strings.add(
            np.array([f"p{i}@" for i in range(profiles)], dtype=strings), domains[rng.integers(0, 5, profiles)]
        ),
        "",
    )
    fields = ProfileColumns(
        email=email.astype(strings),
        phone=np.where(rng.random(profiles) < 0.3, "", "+31612345678").astype(strings),
        first_name=names[rng.integers(0, len(names), profiles)].astype(strings),
        last_name=np.array(["de Vries"] * profiles, dtype=strings),
        record_systems=rng.integers(1, 1 << len(SYSTEMS), profiles).astype(np.int64),
    )
    quadrant = quadrant_codes(traits, settings.quadrant)
    lifecycle = lifecycle_codes(traits, settings.lifecycle)
    held = hold_tiers(tiers_reached(traits, settings.tiers), TierState.empty(profiles), NOW, 90)
    tier_names = tuple(t.name for t in settings.tiers)

    compile_rule.cache_clear()
    started = time.perf_counter()
    compiled = [compile_rule(rule.when) for rule in settings.rules]
    compiled_at = time.perf_counter()
    inputs = rule_input(traits, NOW, SYSTEMS, fields, quadrant, lifecycle, held, tier_names)
    results = [rule.evaluate(inputs) for rule in compiled]
    finished = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    width = max(len(n) for n in RULES)
    for name, result in zip(RULES, results, strict=True):
        print(f"  {name:<{width}}  {int(result.sum()):>9,} profiles")
    compile_ms = (compiled_at - started) * 1000
    evaluate_s = finished - compiled_at
    print(
        f"compile {len(compiled)} rules: {compile_ms:.1f} ms; evaluate over {profiles:,} profiles: {evaluate_s:.2f} s"
    )
    target = f" time_ok={evaluate_s + compile_ms / 1000 <= 10}" if factor >= 1 else ""
    print(
        f"scale={args.scale} profiles={profiles} rules={len(compiled)} compile_ms={compile_ms:.1f} "
        f"evaluate_s={evaluate_s:.3f} peak_mb={peak_mb:.0f}{target}"
    )


if __name__ == "__main__":
    main()
