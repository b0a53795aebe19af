"""Settings every system section shares; each connector extends `SystemSettings` with its own.

They live beside the connectors (not in `sync/config.py`) so that a new vendor is one folder:
its settings, its client and its sandbox. `sync/config.py` assembles them into the config file.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from connectors.http import RetryPolicy, check_base_url
from connectors.ratelimit import Window
from mapping.model import CONTACT_VOCABULARY

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"90s"`, `"15m"`, `"1h"`, `"2d"` or `"500ms"`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 15m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("expected a duration like 30s, 15m or 1h")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def statuses_named(values: list[str], documented: Collection[str], field: str) -> list[str]:
    """A list of the statuses that count, each as the vendor's API spells it: a misspelt one would
    silently count nothing (or everything) of its orders, so it is a config error naming what the
    vendor documents. Sorted and without repeats, so that writing the same set in another order
    maps nothing again (`sync.extract.mapping_config`)."""
    unknown = [value for value in values if value not in documented]
    if unknown:
        named = ", ".join(repr(value) for value in unknown)
        raise ValueError(
            f"{named} is not a {field} value; allowed (spelt as the API returns them): {', '.join(sorted(documented))}"
        )
    return sorted(set(values))


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in the config must not silently mean "default"."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RateWindow(StrictModel):
    requests: int = Field(ge=1)
    per_seconds: float = Field(gt=0)

    def window(self) -> Window:
        return Window(self.requests, self.per_seconds)


class RetrySettings(StrictModel):
    attempts: int = Field(default=6, ge=1, le=50)
    max_retry_after: Duration = Field(default=120.0, description="cap on a vendor's Retry-After hint")
    backoff_initial: Duration = 0.5
    backoff_max: Duration = 30.0

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.attempts, self.max_retry_after, self.backoff_initial, self.backoff_max)


SEGMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class FieldOverride(StrictModel):
    path: str = Field(min_length=1)
    normaliser: str = "text"


def _field_target(name: str) -> str:
    if name in CONTACT_VOCABULARY or (name.startswith("link:") and len(name) > 5):
        return name
    raise ValueError(f"{name!r} is not a contact field; one of {', '.join(sorted(CONTACT_VOCABULARY))}")


class SystemSettings(StrictModel):
    type: str
    base_url: str
    rate_limit: list[RateWindow] = Field(default_factory=list)
    # A request counts from its answer (connectors/ratelimit.py), which covers network delays:
    # no margin is needed unless a vendor counts requests later than it answers them.
    pace_margin: Duration = 0.0
    connect_timeout: Duration = 5.0
    read_timeout: Duration = 30.0
    retry: RetrySettings = Field(default_factory=RetrySettings)
    lookback: Duration = Field(default=600.0, description="how far before the cursor each read starts")
    reconcile_every: Duration = Field(
        default=86400.0,
        description="how often a cycle reads everything instead of only what changed (0: never)",
    )
    page_size: int | None = Field(default=None, ge=1)
    write_batch: int | None = Field(default=None, ge=1, description="records per write call (capped by the API)")
    writeback: bool = True
    skip_segments: list[str] = Field(default_factory=list)
    bases: list[str] | None = Field(
        default=None,
        description="the bases whose segments this system gets (region, interest, b2b, cross-sell, win-back, "
        "abandoned-checkout); default: every base [segments.bases] switches on",
    )
    links: dict[str, str] = Field(
        default_factory=dict,
        description="other system name -> field of this system's contacts that holds that system's customer id",
    )
    fields: dict[str, str | FieldOverride] = Field(
        default_factory=dict,
        description="contact field -> vendor path (or {path, normaliser}); replaces or adds to the declared map",
    )

    @field_validator("fields")
    @classmethod
    def _contact_fields(cls, value: dict[str, str | FieldOverride]) -> dict[str, str | FieldOverride]:
        for name in value:
            _field_target(name)
        return value

    @field_validator("base_url")
    @classmethod
    def _tls_unless_loopback(cls, value: str) -> str:
        check_base_url(value)
        return value.rstrip("/")

    @field_validator("skip_segments")
    @classmethod
    def _segment_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not SEGMENT_NAME.match(name):
                raise ValueError(f"{name!r} is not a segment name (lower-case letters, digits, '-')")
        return value

    def windows(self) -> list[Window]:
        return [w.window() for w in self.rate_limit]
