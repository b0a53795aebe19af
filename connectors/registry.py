"""Which connector and sandbox serve which `type` in the config. Imports are lazy so that
`crmsync --help` stays fast and a broken vendor module cannot break the others."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.base import Connector
    from connectors.sandbox.app import SandboxApp

# The types with a connector today, and their fixed port offsets for `crmsync sandbox --port-base P`
# (CONTRACTS §5: P+0 shopify ... P+6 silvasoft, whether or not the others are running).
TYPES: tuple[str, ...] = ("shopify", "woocommerce")
PORT_OFFSETS: dict[str, int] = {
    "shopify": 0,
    "woocommerce": 1,
    "lightspeed": 2,
    "afas": 3,
    "superoffice": 4,
    "efficy": 5,
    "silvasoft": 6,
}


def connector_class(system_type: str) -> type[Connector]:
    module = import_module(f"connectors.{system_type}.client")
    cls: type[Connector] = module.CONNECTOR
    return cls


def sandbox_class(system_type: str) -> type[SandboxApp]:
    module = import_module(f"connectors.{system_type}.sandbox")
    cls: type[SandboxApp] = module.SANDBOX
    return cls
