"""crmsync's clock, for the orchestration layer: see `connectors/clock.py`, where it lives so that
the connectors (token expiry) and the emulators (their "now") read the very same clock."""

from connectors.clock import Clock, ClockError, adopt_origin, now, origin

__all__ = ["Clock", "ClockError", "adopt_origin", "now", "origin"]
