"""Shared kit for the local vendor emulators: see app.py (routing, faults, limits, test routes)."""

from connectors.sandbox.app import FixtureError, Route, SandboxApp, VendorError, json_response, pop_zone, utcnow
from connectors.sandbox.server import SandboxServer

__all__ = ["FixtureError", "Route", "SandboxApp", "SandboxServer", "VendorError", "json_response", "pop_zone", "utcnow"]
