"""`crmsync init`: a minimal, commented config for the systems a merchant names, built from the
example config shipped inside the package (so it works after a plain `pip install`). Each system
section keeps the example's keys above its "-- optional" line; secrets are left out of the file and
named as the `CRMSYNC_*` environment variables to set instead; every other value to fill in still
reads REPLACE_ME, which is a config error until it is filled in.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from importlib import resources

from pydantic import SecretStr

from connectors.registry import TYPES, connector_class

OPTIONAL_MARK = "# -- optional"
_KEY = re.compile(r"^([a-z_]+)\s*=")
_ENV_HINT = re.compile(r"\s*#\s*or CRMSYNC_\S+.*$")

HEADER = """\
# crmsync configuration, written by `crmsync init`. Fill in every REPLACE_ME (or set the key from the
# environment: CRMSYNC_SYSTEMS__<NAME>__<KEY>), then run `crmsync check`. Every option, with its
# default, is in config.example.toml; docs/setup/<vendor>.md says where each value comes from.

[state]
url = "sqlite:///crmsync.db"                # relative paths resolve from this file's folder

[schedule]
interval = "15m"

[writeback]
tag_prefix = "crmsync:"
"""


@dataclass(frozen=True)
class Starter:
    text: str
    environment: list[str]  # the variables that must hold the secrets


def example_config() -> str:
    return resources.files("sync").joinpath("config.example.toml").read_text(encoding="utf-8")


def example_sections(text: str) -> dict[str, list[str]]:
    """The example's system sections by type: the lines from `[systems.x]` to its "-- optional" mark."""
    found: dict[str, list[str]] = {}
    block: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("["):
            block = [line] if line.startswith("[systems.") else None
            continue
        if block is None:
            continue
        if line.startswith(OPTIONAL_MARK):
            kind = next((m.group(1) for m in map(re.compile(r'^type\s*=\s*"([a-z]+)"').match, block) if m), None)
            if kind is not None and kind not in found:
                found[kind] = block
            block = None
            continue
        block.append(line)
    return found


def secret_keys(system_type: str) -> set[str]:
    fields = connector_class(system_type).settings_class.model_fields
    return {name for name, info in fields.items() if SecretStr in (info.annotation, *typing.get_args(info.annotation))}


def render(types: list[str]) -> Starter:
    sections = example_sections(example_config())
    lines = [HEADER]
    environment: list[str] = []
    for system_type in types:
        secrets = secret_keys(system_type)
        lines.append("")
        secret_above = False
        for line in sections[system_type]:
            if line.startswith("[systems."):
                lines.append(f"[systems.{system_type}]")
                continue
            if secret_above and line.startswith(" ") and line.lstrip().startswith("#"):
                continue  # the comment that goes on from a secret's line goes with it
            key = _KEY.match(line)
            secret_above = bool(key and key.group(1) in secrets)
            if key and secret_above:
                variable = f"CRMSYNC_SYSTEMS__{system_type.upper()}__{key.group(1).upper()}"
                environment.append(variable)
                lines.append(f"# {key.group(1)}: set ${variable} (kept out of this file)")
                continue
            text = _ENV_HINT.sub("", line).rstrip()
            if text.strip() or not line.strip():
                lines.append(text)
    return Starter("\n".join(lines).rstrip() + "\n", environment)


def parse_types(option: str | None) -> list[str]:
    """`--systems shopify,afas` (types as in CONTRACTS §3), or every type."""
    if not option:
        return list(TYPES)
    wanted = [part.strip().lower() for part in option.split(",") if part.strip()]
    unknown = [t for t in wanted if t not in TYPES]
    if unknown:
        raise ValueError(f"unknown system type {', '.join(unknown)}; one of {', '.join(TYPES)}")
    return list(dict.fromkeys(wanted))
