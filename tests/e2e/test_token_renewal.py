"""Tokens that expire in the middle of a cycle, at seeded moments (`$CRMSYNC_CHAOS_SEED` replays a
failure): the cycle renews them once and finishes with exit 0, for Shopify's client-credentials
token and SuperOffice's system-user ticket alike."""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.kit import Sandboxes, json_out, run_crmsync

TOKEN_ROUTES = {
    "shopify": ("POST /admin/api/2026-10/graphql.json", "POST /admin/oauth/access_token"),
    "superoffice": ("GET /Cust12345/api/v1/", "POST /Login/api/PartnerSystemUser/Authenticate"),
}


def test_tokens_expired_mid_cycle_are_renewed_and_the_cycle_finishes(sandboxes: Sandboxes, tmp_path: Path) -> None:
    seed = int(os.environ.get("CRMSYNC_CHAOS_SEED", random.SystemRandom().randrange(1_000_000)))
    rng = random.Random(seed)
    config = sandboxes.config(tmp_path)
    assert run_crmsync("sync", "-c", str(config)).returncode == 0
    before = {t: sandboxes.stats(t)["requests"].get(route, 0) for t, (_, route) in TOKEN_ROUTES.items()}
    moments = {t: rng.randrange(0, 4) for t in TOKEN_ROUTES}
    for system_type, (match, _) in TOKEN_ROUTES.items():
        sandboxes.fault(system_type, match=match, fault="expire-token", after=moments[system_type])
    # someone edits a customer in each, so the cycle also writes (with the renewed token)
    sandboxes.patch_customer("shopify", "gid://shopify/Customer/7000001", {"tags": ["vip"]})
    result = run_crmsync("sync", "-c", str(config), "--json")
    assert result.returncode == 0, f"seed {seed}: {result.stderr[-2000:]}"
    doc = json_out(result)
    assert all(s["status"] == "ok" for s in doc["systems"].values()), f"seed {seed}"
    assert doc["systems"]["shopify"]["written"] >= 1
    for system_type, (_, route) in TOKEN_ROUTES.items():
        refused = [e for e in sandboxes.request_log(system_type) if e["status"] == 401]
        assert len(refused) == 1, f"seed {seed}: {system_type}"  # the expiry was met once ...
        # a new process starts without tokens (they live in memory only): its first, and one renewal
        assert sandboxes.stats(system_type)["requests"][route] == before[system_type] + 2
