"""Setting crmsync up as a new merchant would: `crmsync init` for one system, the credentials in the
environment (as the setup guides say), and `crmsync check` passes against that vendor's emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.registry import TYPES
from tests.kit import Sandboxes, json_out, run_crmsync, run_crmsync_here


def environment(system_type: str, settings: dict[str, Any]) -> dict[str, str]:
    prefix = f"CRMSYNC_SYSTEMS__{system_type.upper()}__"
    return {
        prefix + key.upper(): value if isinstance(value, str) else json.dumps(value) for key, value in settings.items()
    }


@pytest.mark.parametrize("system_type", TYPES)
def test_init_then_the_credentials_in_the_environment_and_check_passes(
    sandboxes: Sandboxes, tmp_path: Path, system_type: str
) -> None:
    out = tmp_path / "crmsync.toml"
    made = run_crmsync_here("init", "--systems", system_type, "--out", str(out), "--json")
    assert made.returncode == 0, made.stderr
    doc = json_out(made)
    assert doc["ok"] is True and doc["systems"] == [system_type]
    text = out.read_text()
    settings = {"base_url": sandboxes.url(system_type), **sandboxes.app(system_type).client_settings()}
    for variable in doc["environment"]:  # every secret is named as a variable and left out of the file
        key = variable.rsplit("__", 1)[1].lower()
        assert f"{key}: set ${variable}" in text and str(settings.get(key, "")) not in text
    unfilled = run_crmsync("check", "-c", str(out))  # before the environment is set: a config error
    assert unfilled.returncode == 2 and ("not filled in" in unfilled.stderr or "field required" in unfilled.stderr)
    result = run_crmsync("check", "-c", str(out), "--json", env=environment(system_type, settings))
    assert result.returncode == 0, result.stderr
    assert json_out(result)["systems"][system_type]["auth"] == "ok"
    again = run_crmsync_here("init", "--systems", system_type, "--out", str(out))
    assert again.returncode == 2 and "not overwriting" in again.stderr and out.read_text() == text


def test_init_refuses_an_unknown_type_and_version_prints_one(tmp_path: Path) -> None:
    bad = run_crmsync_here("init", "--systems", "shopify,hubspot", "--out", str(tmp_path / "x.toml"))
    assert bad.returncode == 2 and "unknown system type hubspot" in bad.stderr
    assert not (tmp_path / "x.toml").exists()
    version = run_crmsync_here("--version")
    assert version.returncode == 0 and version.stdout.startswith("crmsync 0.")
