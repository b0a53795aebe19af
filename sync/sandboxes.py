"""Start the vendor emulators on 127.0.0.1 and describe them as a crmsync config (used by
`crmsync sandbox` and `crmsync demo`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.registry import PORT_OFFSETS, TYPES, sandbox_class
from connectors.sandbox import FixtureError, SandboxApp, SandboxServer


@dataclass
class RunningSandbox:
    type: str
    app: SandboxApp
    server: SandboxServer

    @property
    def url(self) -> str:
        return self.server.url


def load_fixture_dir(folder: Path) -> dict[str, dict[str, Any]]:
    """`DIR/<type>/customers.json` and `orders.json` (and Shopify's `checkouts.json`: abandoned
    checkouts), for every type that has a folder."""
    data: dict[str, dict[str, Any]] = {}
    for system_type in TYPES:
        sub = folder / system_type
        if not sub.is_dir():
            continue
        data[system_type] = {}
        for name in ("customers", "orders", "checkouts"):
            path = sub / f"{name}.json"
            if not path.exists():
                continue
            try:
                items = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise FixtureError(f"{path}: not readable JSON ({exc})") from None
            if not isinstance(items, list):
                raise FixtureError(f"{path}: expected a JSON list of {system_type} records")
            data[system_type][name] = items
    return data


def start_sandboxes(
    data: Mapping[str, Mapping[str, Any]],
    *,
    port_base: int | None = None,
    time_scale: float = 1.0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RunningSandbox]:
    """One emulator per type in `data`, in registry order; stops the ones started if one fails."""
    running: list[RunningSandbox] = []
    try:
        for system_type in TYPES:
            if system_type not in data:
                continue
            extra = dict((options or {}).get(system_type, {}))
            app = sandbox_class(system_type)(data[system_type], time_scale=time_scale, **extra)
            port = port_base + PORT_OFFSETS[system_type] if port_base is not None else 0
            running.append(RunningSandbox(system_type, app, SandboxServer(app, port).start()))
    except BaseException:
        stop_sandboxes(running)
        raise
    return running


def stop_sandboxes(running: Sequence[RunningSandbox]) -> None:
    for sandbox in running:
        sandbox.server.stop()


def sandbox_config(
    running: Sequence[RunningSandbox],
    *,
    state_url: str = "sqlite:///crmsync.db",
    extra: str = "",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """A working config for the running emulators: system name = type, their credentials, rate
    limits matching theirs (already divided by the time scale). `overrides` replaces or adds keys
    of a system's section, by type (e.g. `{"lightspeed": {"rate_limit": []}}`)."""
    lines = [
        "# Written by crmsync for its local sandboxes. The credentials below are the sandboxes' own.",
        "[state]",
        f"url = {json.dumps(state_url)}",
        "",
        "[schedule]",
        'interval = "15m"',
        "",
        "[writeback]",
        'tag_prefix = "crmsync:"',
        "",
    ]
    for sandbox in running:
        lines.append(f"[systems.{sandbox.type}]")
        lines.append(f"type = {json.dumps(sandbox.type)}")
        lines.append(f"base_url = {json.dumps(sandbox.url)}")
        settings = {**sandbox.app.client_settings(), **(overrides or {}).get(sandbox.type, {})}
        for key, value in settings.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    if extra:
        lines.append(extra)
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
