"""`crmsync report --campaign SEGMENT --since DATE`: did the campaign aimed at a segment work?

The people: everyone who was in the segment at some moment of the window [since, until) by the
segment history (until: now). They split into the **tagged** (reached: the tag or field was
written) and the **holdout** (left untagged by `[segments] holdout`, sync/mapping/holdout.py). The
**previous window** is the same segment's tagged people over the window of equal length just
before `since`, with their orders in that window: the same campaign's baseline.

Per group: people, valid orders placed in the window, their revenue (base currency), and
conversion (the share of the group's people with at least one valid order in the window). `lift`
compares tagged with holdout. Orders are attached to people exactly as the cycle attaches them
(sync/resolve.py), so a merged customer's orders in every system count once, under one person.

With `[segments] timezone` set, `--since 2026-01-01` is midnight on the merchant's calendar (an
order at 00:30 in Amsterdam that day is in the window, though it is the 31st in UTC), a time
without an offset is the merchant's clock time, and the document names the zone (`timezone`) and
gives each bound at its offset beside the UTC one (`since_local`, `until_local`). Unset: UTC, as
before. The previous window stays a duration (the same length, to the second) before `since`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

from mapping.calendar_days import AS_BEFORE, Calendar
from mapping.holdout import held_out
from mapping.model import parse_timestamp
from mapping.traits import OrderColumns
from sync.config import CrmsyncConfig
from sync.resolve import Resolver, mapping_rules
from sync.segmenting import segment_calendar
from sync.state import StateStore
from sync.timefmt import for_json, for_json_in


class UnknownSegment(LookupError):
    pass


def members_between(
    history: Sequence[tuple[str, str, str | None]],
    start: datetime,
    end: datetime,
    aliases: Mapping[str, str] | None = None,
) -> list[str]:
    """Profiles in the segment at some moment of [start, end): (profile, entered_at, exited_at) rows.
    A profile merged away since (`aliases`: retired id -> the id holding its person now) is counted
    under the id that holds the person now, once: its orders are that profile's now."""
    aliases = aliases or {}
    found = set()
    for profile_id, entered, exited in history:
        if parse_timestamp(entered) < end and (exited is None or parse_timestamp(exited) > start):
            found.add(aliases.get(profile_id, profile_id))
    return sorted(found)


def group_figures(
    people: Sequence[str], index: dict[str, int], orders: OrderColumns, start: datetime, end: datetime
) -> dict[str, Any]:
    rows = np.array([index[p] for p in people if p in index], dtype=np.int64)
    window = (
        orders.counts
        & (orders.created >= int(start.timestamp()))
        & (orders.created < int(end.timestamp()))
        & np.isin(orders.profile, rows)
    )
    buyers = int(np.unique(orders.profile[window]).size)
    revenue = Decimal(int(orders.cents[window].sum())) / 100
    return {
        "people": len(people),
        "orders": int(window.sum()),
        "revenue": float(revenue),
        "conversion": _ratio(buyers, len(people)),
    }


def _ratio(part: int, whole: int) -> float | None:
    if not whole:
        return None
    return float((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def campaign_report(
    store: StateStore, config: CrmsyncConfig, segment: str, since: datetime, until: datetime
) -> dict[str, Any]:
    settings = config.segments
    if not settings.knows(segment):
        raise UnknownSegment(f"no segment named {segment!r} (known: {', '.join(settings.segment_names())})")
    if since >= until:
        raise ValueError(f"--since must lie before now ({for_json(until)})")
    share = settings.holdout.get(segment, 0.0)
    length = until - since
    history = store.segment_history_of(segment)
    aliases = store.alias_targets()
    now_members = members_between(history, since, until, aliases)
    before_members = members_between(history, since - length, since, aliases)
    resolved = Resolver(config, store, mapping_rules(config)).resolve()
    index = {profile_id: i for i, profile_id in enumerate(resolved.profiles)}

    def split(people: list[str]) -> tuple[list[str], list[str]]:
        held = [p for p in people if share and held_out(segment, p, share)]
        held_set = set(held)
        return [p for p in people if p not in held_set], held

    tagged, holdout = split(now_members)
    before_tagged, _ = split(before_members)
    zone = segment_calendar(settings.timezone).zone
    doc: dict[str, Any] = {
        "segment": segment,
        "since": for_json(since),
        "until": for_json(until),
        # The calendar the window's dates were read on, and its bounds at that zone's offset.
        "timezone": settings.timezone or "UTC",
        "since_local": for_json_in(since, zone),
        "until_local": for_json_in(until, zone),
        "holdout_share": share,
        "base_currency": settings.base_currency,
        "tagged": group_figures(tagged, index, resolved.orders, since, until),
        "holdout": group_figures(holdout, index, resolved.orders, since, until),
        "previous_window": {
            "since": for_json(since - length),
            "until": for_json(since),
            "since_local": for_json_in(since - length, zone),
            "until_local": for_json_in(since, zone),
            **group_figures(before_tagged, index, resolved.orders, since - length, since),
        },
    }
    doc["lift"] = _lift(doc["tagged"], doc["holdout"])
    return doc


def _lift(tagged: dict[str, Any], holdout: dict[str, Any]) -> dict[str, Any]:
    """Tagged against holdout: conversion in percentage points, revenue per person in money."""
    if tagged["conversion"] is None or holdout["conversion"] is None:
        return {"conversion_points": None, "revenue_per_person": None}
    per_tagged = Decimal(str(tagged["revenue"])) / tagged["people"]
    per_held = Decimal(str(holdout["revenue"])) / holdout["people"]
    return {
        "conversion_points": round((tagged["conversion"] - holdout["conversion"]) * 100, 2),
        "revenue_per_person": float((per_tagged - per_held).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
    }


def render_campaign(doc: dict[str, Any]) -> str:
    currency = doc["base_currency"]

    def line(name: str, figures: dict[str, Any]) -> str:
        conversion = "-" if figures["conversion"] is None else f"{figures['conversion'] * 100:.1f} %"
        return (
            f"  {name:<16} {figures['people']:>7} people  {figures['orders']:>7} orders  "
            f"{currency} {figures['revenue']:>12,.2f}  conversion {conversion}"
        )

    share = doc["holdout_share"]
    lines = [
        f"Campaign on segment {doc['segment']}: {doc['since_local']} to {doc['until_local']} ({doc['timezone']})"
        + (f" (holdout {share * 100:g} %)" if share else " (no holdout configured: nothing to compare against)"),
        line("tagged", doc["tagged"]),
        line("holdout", doc["holdout"]),
        line("previous window", doc["previous_window"]),
    ]
    lift = doc["lift"]
    if lift["conversion_points"] is not None:
        lines.append(
            f"  lift: {lift['conversion_points']:+.2f} conversion points, "
            f"{currency} {lift['revenue_per_person']:+,.2f} revenue per person"
        )
    return "\n".join(lines)


def window_start(text: str, now: datetime, calendar: Calendar = AS_BEFORE) -> datetime:
    """--since, in UTC: a date (YYYY-MM-DD) is its midnight on `calendar` (the merchant's, with
    `[segments] timezone`; UTC without); an ISO timestamp keeps its offset, and one without an
    offset is a clock time on `calendar`. Never after now."""
    stripped = text.strip()
    try:
        # A date alone is ten characters at most; a time may follow after "T" or a space, as
        # ISO 8601 allows.
        if len(stripped) <= 10:
            value = calendar.midnight(date.fromisoformat(stripped))
        else:
            # parse_timestamp's spelling: a trailing Z (either case) is UTC.
            iso = stripped[:-1] + "+00:00" if stripped.endswith(("Z", "z")) else stripped
            value = calendar.read_clock(datetime.fromisoformat(iso))
    except ValueError:
        raise ValueError(f"--since {text!r} is not a date (YYYY-MM-DD) or an ISO-8601 time") from None
    if value >= now:
        raise ValueError(f"--since {text!r} is not before now")
    return value
