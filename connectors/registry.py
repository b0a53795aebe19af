"""Which connector and sandbox serve which `type` in the config.

A vendor is a folder holding `vendor.py` (its declarations), `client.py`, `sandbox.py` and
`fixtures.py`. The registry finds the folders under `connectors/`, and under every package named
in `CRMSYNC_VENDOR_PACKAGES` (comma-separated; for a vendor kept outside crmsync), so adding a
vendor touches nothing outside its folder. Only the small `vendor.py` files are imported up front:
`crmsync --help` stays fast and a broken vendor module cannot break the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.vendor import Vendor

if TYPE_CHECKING:
    from connectors.base import Connector
    from connectors.sandbox.app import SandboxApp

PACKAGES_VARIABLE = "CRMSYNC_VENDOR_PACKAGES"


def _discover() -> dict[str, tuple[str, Vendor]]:
    """type -> (the package holding its folder, its declarations), in port order."""
    packages = ["connectors"]
    packages += [p.strip() for p in os.environ.get(PACKAGES_VARIABLE, "").split(",") if p.strip()]
    found: dict[str, tuple[str, Vendor]] = {}
    for package in packages:
        for folder in sorted(Path(p) for p in import_module(package).__path__):
            for vendor_file in sorted(folder.glob("*/vendor.py")):
                vendor: Vendor = import_module(f"{package}.{vendor_file.parent.name}.vendor").VENDOR
                if vendor.type != vendor_file.parent.name:
                    raise ImportError(f"{vendor_file}: declares type {vendor.type!r}, not its folder's name")
                if vendor.type in found:
                    raise ImportError(f"{vendor_file}: vendor type {vendor.type!r} is declared twice")
                found[vendor.type] = (package, vendor)
    offsets = [v.port_offset for _, v in found.values()]
    if len(set(offsets)) != len(offsets):
        raise ImportError("two vendors declare the same port_offset")
    return dict(sorted(found.items(), key=lambda item: item[1][1].port_offset))


_VENDORS = _discover()

# Every vendor type, in port order, with its offset for `crmsync sandbox --port-base P`.
TYPES: tuple[str, ...] = tuple(_VENDORS)
PORT_OFFSETS: dict[str, int] = {t: v.port_offset for t, (_, v) in _VENDORS.items()}
ONLINE_TYPES: frozenset[str] = frozenset(t for t, (_, v) in _VENDORS.items() if v.online)


def vendor(system_type: str) -> Vendor:
    return _VENDORS[system_type][1]


def _module(system_type: str, name: str) -> Any:
    package = _VENDORS[system_type][0]
    return import_module(f"{package}.{system_type}.{name}")


def connector_class(system_type: str) -> type[Connector]:
    cls: type[Connector] = _module(system_type, "client").CONNECTOR
    return cls


def sandbox_class(system_type: str) -> type[SandboxApp]:
    cls: type[SandboxApp] = _module(system_type, "sandbox").SANDBOX
    return cls


def fixtures_function(system_type: str) -> Callable[[Any], dict[str, Any]]:
    """`demo_fixtures(persons)` of a vendor: synthetic people in that vendor's record shape."""
    function: Callable[[Any], dict[str, Any]] = _module(system_type, "fixtures").demo_fixtures
    return function
