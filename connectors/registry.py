"""Which connector and sandbox serve which `type` in the config. Imports are lazy so that
`crmsync --help` stays fast and a broken vendor module cannot break the others."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.base import Connector
    from connectors.sandbox.app import SandboxApp

# Every system type CONTRACTS knows, with its fixed port offset for `crmsync sandbox --port-base P`
# (P+0 shopify ... P+6 silvasoft, whether or not the others are running).
PORT_OFFSETS: dict[str, int] = {
    "shopify": 0,
    "woocommerce": 1,
    "lightspeed": 2,
    "afas": 3,
    "superoffice": 4,
    "efficy": 5,
    "silvasoft": 6,
}

# The types that have a connector folder, in that order: adding a vendor is adding its folder.
TYPES: tuple[str, ...] = tuple(t for t in PORT_OFFSETS if (Path(__file__).parent / t / "client.py").is_file())


def connector_class(system_type: str) -> type[Connector]:
    module = import_module(f"connectors.{system_type}.client")
    cls: type[Connector] = module.CONNECTOR
    return cls


def sandbox_class(system_type: str) -> type[SandboxApp]:
    module = import_module(f"connectors.{system_type}.sandbox")
    cls: type[SandboxApp] = module.SANDBOX
    return cls


def fixtures_function(system_type: str) -> Callable[[Any], dict[str, Any]]:
    """`demo_fixtures(persons)` of a vendor: synthetic people in that vendor's record shape."""
    module = import_module(f"connectors.{system_type}.fixtures")
    function: Callable[[Any], dict[str, Any]] = module.demo_fixtures
    return function
