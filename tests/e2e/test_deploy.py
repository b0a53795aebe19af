"""Running as a systemd service: the unit in deploy/ passes `systemd-analyze verify` with nothing
to say, and under journald each log line carries its level's priority."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.kit import CRMSYNC, Sandboxes, output_dir, secret

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "crmsync.service"


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    assert tool, "needs systemd-analyze: run `make debs` (apt-get install -y systemd) first"
    return subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False, cwd=unit.parent
    )


def _installed_unit(folder: Path, text: str | None = None) -> Path:
    """The unit as a user installs it, with ExecStart on the console script this suite installed."""
    unit = folder / "crmsync.service"
    unit.write_text((text or UNIT.read_text()).replace("/opt/crmsync/bin/crmsync", CRMSYNC))
    return unit


def test_the_service_unit_verifies_without_a_single_warning(tmp_path: Path) -> None:
    text = UNIT.read_text()
    directives = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert directives["User"] == "crmsync" and directives["NoNewPrivileges"] == "yes"
    assert directives["ProtectSystem"] == "strict" and directives["ReadWritePaths"] == "/var/lib/crmsync"
    assert directives["EnvironmentFile"].startswith("/etc/crmsync/")
    assert directives["ExecStart"].split()[:2] == ["/opt/crmsync/bin/crmsync", "run"]

    verified = _verify(_installed_unit(tmp_path))
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stderr

    # The check has teeth: systemd exits 0 on a misspelled directive, and only says so.
    (tmp_path / "typo").mkdir()
    typo = _verify(_installed_unit(tmp_path / "typo", text.replace("NoNewPrivileges=", "NoNewPrivilege=")))
    assert "Unknown key" in typo.stderr


def test_under_journald_every_log_line_carries_its_priority(sandboxes: Sandboxes, tmp_path: Path) -> None:
    config = sandboxes.config(tmp_path, woocommerce=f'consumer_secret = "{secret("cs_refused_by_the_shop_0001")}"')
    log_file = output_dir() / f"journal-{os.getpid()}-{tmp_path.name}.err"
    with log_file.open("w") as stderr:
        info = os.fstat(stderr.fileno())
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
        env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"  # what systemd sets for a service
        result = subprocess.run(
            [CRMSYNC, "sync", "-c", str(config), "--log-level", "info"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            timeout=120,
            check=False,
        )
    assert result.returncode == 3  # WooCommerce refuses the credentials; the others sync
    lines = [line for line in log_file.read_text().splitlines() if line]
    assert lines and all(line[:3] in {"<3>", "<4>", "<6>", "<7>"} for line in lines), lines[:5]
    by_level = {json.loads(line[3:])["level"]: line[:3] for line in lines if line[3:].startswith("{")}
    assert by_level["info"] == "<6>" and by_level["error"] == "<3>", by_level

    # Not under journald (the variable names another stream): plain JSON lines, no prefix.
    plain = subprocess.run(
        [CRMSYNC, "sync", "-c", str(config), "--log-level", "info"],
        capture_output=True,
        text=True,
        env={**env, "JOURNAL_STREAM": "1:1"},
        timeout=60,
        check=False,
    )
    assert plain.stderr.strip() and not any(line.startswith("<") for line in plain.stderr.splitlines()), plain.stderr
