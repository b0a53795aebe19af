"""The session's secrets scan (tests/conftest.py) can fail: it finds a planted secret in every kind
of output it covers, and it never prints the secret it found."""

from __future__ import annotations

import time
from pathlib import Path

from tests.chaos.secrets import all_secrets, sandbox_secrets, scan


def test_the_scan_finds_a_planted_secret_in_each_kind_of_output_and_skips_configs(tmp_path: Path) -> None:
    planted = "shpat_planted_for_the_scanner_0099"
    for name in ("x.out", "x.err", "in-process.log", "crmsync.db", "crmsync.db-wal", "crmsync.db.lock", "r.html"):
        (tmp_path / name).write_bytes(b"\x00 before " + planted.encode() + b" after")
    (tmp_path / "crmsync.toml").write_text(f'access_token = "{planted}"\n')  # an input, not output
    (tmp_path / "clean.err").write_text("nothing to see")
    files, hits = scan([tmp_path], time.time(), secrets={planted})
    assert sorted(hit.path.name for hit in hits) == sorted(
        ["x.out", "x.err", "in-process.log", "crmsync.db", "crmsync.db-wal", "crmsync.db.lock", "r.html"]
    )
    assert files >= 8
    assert all(planted not in str(hit) for hit in hits)


def test_every_sandboxs_credentials_are_searched() -> None:
    found = sandbox_secrets()
    assert "shpat_sandbox_0123456789abcdef" in found  # shopify
    assert len(found) >= 10  # at least one per vendor; WooCommerce, Lightspeed, SuperOffice have two
    assert found <= all_secrets()


def test_a_token_any_emulator_issued_is_found_wherever_it_was_issued() -> None:
    """Issued tokens are not configured anywhere (a sandbox in another process may have issued
    them), so the scan knows them by the mark every emulator puts in them. (Planted outside the
    session's folders, which the session's own scan covers.)"""
    import tempfile

    from connectors.shopify.sandbox import ShopifySandbox

    issued = ShopifySandbox().issue_token("shpat_", 60)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "x.err").write_text(f'{{"event": "oops", "token": "{issued}"}}')
        (Path(folder) / "y.err").write_text("sbxissued but not a token")
        _, hits = scan([Path(folder)], time.time(), secrets=set())
    found = [hit for hit in hits if hit.path.parent == Path(folder)]
    assert [hit.path.name for hit in found] == ["x.err"] and issued not in str(found[0])


def test_the_new_credentials_are_searched_too() -> None:
    found = sandbox_secrets()
    assert "shpss_sandbox_client_secret_0123456789" in found  # Shopify's client secret
    assert any(value.startswith("-----BEGIN PRIVATE KEY-----") for value in found)  # SuperOffice's key
    assert "crmsync-sandbox-system-user-0123456789" in found
