"""`crmsync explain KEY`: one profile and why it is what it is.

KEY is an email, a phone number, a profile id (or a retired alias), or `<system>:<id>` with the
vendor id as the vendor writes it (split on the first colon only, so `shop:gid://shopify/Customer/7`
works) or as people see it in the vendor's screens (`shop:7`: the connector's `canonical_id` turns
it into the stored id). The answer shows every source record with its raw and normalised values,
which identifier joined which records, which source won each profile field and why, the traits and
the segments. Times are UTC ISO-8601 in the document and local for people (sync/timefmt.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mapping.bases import base_of
from mapping.holdout import held_out
from mapping.identity import survive
from mapping.model import Contact, FieldSpec, get_path, parse_timestamp, split_key
from mapping.normalize.email import email_match_key, normalise_email
from mapping.normalize.phone import parse_phone
from mapping.segments import SegmentSettings, describe
from sync.config import CrmsyncConfig
from sync.segmenting import segment_calendar
from sync.state import StateStore
from sync.timefmt import for_json, for_people

if TYPE_CHECKING:
    from connectors.base import Connector

_PHONE_LIKE = re.compile(r"^[\d\s()+\-./]{6,}$")


def find_profiles(store: StateStore, key: str, config: CrmsyncConfig) -> list[str]:
    """Profiles matching KEY, most records first; empty when nothing matches."""
    text = key.strip()
    record = record_of(text, config)
    if record is not None:
        system, record_id = record
        for candidate in record_ids(config, system, record_id):
            found = store.profiles_for(record=(system, candidate))
            if found:
                return found
        return []
    if "@" in text:
        email = email_of(text, config)
        return store.profiles_for(email_key=email_match_key(email)) if email is not None else []
    if text.startswith("p_"):
        return store.profiles_for(profile=text)
    if _PHONE_LIKE.match(text):
        phone = parse_phone(text, None, config.identity.default_country)
        return store.profiles_for(phone=phone.e164) if phone and phone.e164 else []
    return []


def record_of(key: str, config: CrmsyncConfig) -> tuple[str, str] | None:
    """(system, id as typed) when KEY is a `<system>:<id>` of a configured system, else None."""
    system, record_id = split_key(key.strip())
    return (system, record_id) if record_id and system in config.systems else None


def email_of(key: str, config: CrmsyncConfig) -> str | None:
    """The clean address KEY is, as `find_profiles` reads one; None when KEY is a `<system>:<id>`,
    holds no "@", or is no usable address. The clean address rather than its match key, since
    whether it names a role is read from the address as written (`sales.team@gmail.com` is one,
    its match key `salesteam@gmail.com` is not)."""
    text = key.strip()
    if record_of(text, config) is not None or "@" not in text:
        return None
    email = normalise_email(text)
    return email if isinstance(email, str) else None


def explain_profile(store: StateStore, profile_id: str, config: CrmsyncConfig, now: datetime) -> dict[str, Any]:
    """The CONTRACTS §2 `explain --json` document for one profile, plus `recorded_run` (the run
    whose verdicts `segments` lists) and `dry_run` (see `_verdicts`)."""
    detail = store.profile_detail(profile_id)
    fieldmaps = {name: fieldmap_of(config, name) for name in config.systems}
    profile = detail["profile"] or {}
    contacts: list[Contact] = detail["contacts"]
    # The "most recent: updated <date>" reasons date on the merchant's calendar when one is set.
    fields = survive(contacts, config.identity.source_priority, segment_calendar(config.segments.timezone).zone)
    traits = json.loads(profile.get("traits") or "{}")

    def listed(names: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "why": segment_reason(name, traits, config.segments, now, detail.get("tier_qualified_at")),
                # In the segment's holdout (`[segments] holdout`): a member, but not tagged anywhere.
                "held_out": held_out(name, profile_id, config.segments.holdout.get(name, 0.0)),
            }
            for name in names
        ]

    shown, recorded_run, dry_run = _verdicts(detail, profile)
    document: dict[str, Any] = {
        "profile_id": profile_id,
        "aliases": detail["aliases"],
        "records": [
            {
                "system": c.system,
                "id": c.id,
                "raw": detail["raw"].get(c.key),
                "normalised": _normalised(c),
                "raw_values": raw_values(fieldmaps.get(c.system, {}), detail["raw"].get(c.key)),
            }
            for c in contacts
        ],
        "links": [
            {"a": link["a"], "b": link["b"], "by": link["kind"], "value": link["value"]} for link in detail["links"]
        ],
        "fields": {
            name: {"value": choice.value, "from": choice.source, "why": choice.why} for name, choice in fields.items()
        },
        "traits": {name: for_json(value) if isinstance(value, str) else value for name, value in traits.items()},
        "segments": listed(shown),
        "recorded_run": recorded_run,
        "dry_run": None if dry_run is None else {**dry_run, "segments": listed(dry_run["segments"])},
    }
    caveats = verdict_notes(document, for_json)
    if caveats:
        document["caveats"] = caveats
    return document


def _verdicts(
    detail: Mapping[str, Any], profile: Mapping[str, Any]
) -> tuple[list[str], dict[str, Any] | None, dict[str, Any] | None]:
    """Which segments explain answers with, the run that concluded them, and the dry run's own.

    A dry run (`sync --dry-run`, `plan`; a cycle whose writes were held computes as one) saves
    its verdicts in `profiles`, because it plans from them, but writes nothing and records no
    segment history. Explained afterwards, those verdicts would be an answer about tags no system
    was given: so `segments` are the last recorded run's (the open history entries, as `report`
    counts them), and `dry_run` holds the later run's verdicts apart, with what it would change
    (None when the verdicts saved are the recorded run's own)."""
    saved = sorted(json.loads(profile.get("segments") or "[]"))
    saved_by, recorded_by = detail.get("saved_by"), detail.get("recorded_by")
    if saved_by is None:
        return saved, _run_json(recorded_by), None
    # Where no run has marked its history yet, nothing was recorded, unless the state predates the
    # mark: it then holds history its runs recorded, and its last run, no dry run, recorded as it
    # saved. A state with no history at all has recorded nothing, whatever the run that saved
    # (a first cycle whose writes were held by the write gate is no dry run by its command).
    if recorded_by is not None:
        unrecorded = saved_by["seq"] > recorded_by["seq"]
    else:
        unrecorded = _is_dry(saved_by.get("command")) or not detail.get("history_kept", True)
    if not unrecorded:
        return saved, _run_json(recorded_by or saved_by), None
    recorded: list[str] = list(detail.get("recorded_segments") or [])
    rewritten = recorded_by is None or int(profile.get("updated_seq") or 0) > recorded_by["seq"]
    dry_run = {
        **(_run_json(saved_by) or {}),
        "segments": saved,
        "entered": sorted(set(saved) - set(recorded)),
        "left": sorted(set(recorded) - set(saved)),
        # Whether that run changed this profile's stored verdict (its traits too, which the
        # document's `traits` and every reason then show as that run computed them).
        "changed_profile": rewritten,
        "new_profile": recorded_by is None or int(profile.get("created_seq") or 0) > recorded_by["seq"],
    }
    return recorded, _run_json(recorded_by), dry_run


def _run_json(run: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "run_id": run.get("run_id"),
        "command": run.get("command"),
        "started_at": for_json(run.get("started_at")),
        "finished_at": for_json(run.get("finished_at")),
    }


def _is_dry(command: str | None) -> bool:
    """Whether a run's recorded command names a dry run (sync/pipeline.py `recorded_command`)."""
    return command is not None and (command == "plan" or command.endswith("--dry-run"))


def verdict_notes(document: Mapping[str, Any], when: Callable[[str], str | None]) -> list[str]:
    """What a reader must know about where the segments come from, times shown by `when`
    (`for_json` in the document, `for_people` on the terminal)."""
    dry = document.get("dry_run")
    if not dry:
        return []
    at = when(dry["started_at"]) if dry.get("started_at") else "an unknown time"
    command = dry.get("command") or "a run"
    later = (
        f"the dry run `crmsync {command}` of {at}"
        if _is_dry(command)
        else f"`crmsync {command}` of {at}, which wrote nothing (its writes were held or it stopped early)"
    )
    recorded = document.get("recorded_run")
    if recorded is None:
        before = "no run has recorded segments yet, so no system holds any"
    else:
        before = (
            f"the segments shown are the last recorded run's (`crmsync {recorded.get('command')}` of "
            f"{when(recorded['started_at']) if recorded.get('started_at') else 'an unknown time'}), "
            "as the systems were given them"
        )
    notes = []
    if dry["entered"] or dry["left"]:
        changes = []
        if dry["entered"]:
            changes.append(f"put this profile in {', '.join(dry['entered'])}")
        if dry["left"]:
            changes.append(f"take it out of {', '.join(dry['left'])}")
        notes.append(f"{later} would {' and '.join(changes)}; nothing of it was written: {before}")
    elif dry["new_profile"]:
        notes.append(f"this profile was first assessed by {later}: {before}")
    if dry["changed_profile"] and (dry["entered"] or dry["left"] or not dry["new_profile"]):
        notes.append(f"the traits, and the figures each reason cites, are as {later} computed them")
    return notes


def _normalised(contact: Contact) -> dict[str, Any]:
    data = asdict(contact)
    for drop in ("system", "id", "owned"):
        data.pop(drop)
    data["updated_at"] = for_json(contact.updated_at)
    data["owned"] = contact.owned.to_json()
    data["links"] = list(contact.links)
    data["flags"] = list(contact.flags)
    return {k: v for k, v in data.items() if v not in (None, (), [], False)}


# Which mapped source fields each normalised field is made from (for "raw beside normalised").
_SOURCES = {
    "email": ("email",),
    "phone": ("mobile", "phone"),
    "phone_raw": ("mobile", "phone"),
    "given_name": ("first_name", "full_name"),
    "initials": ("first_name", "full_name"),
    "infix": ("middle_name", "last_name", "full_name"),
    "family_name": ("last_name", "full_name"),
    "street": ("street",),
    "house_number": ("house_number", "street"),
    "house_addition": ("house_addition", "house_number", "street"),
    "postcode": ("postcode",),
    "city": ("city",),
    "country": ("country",),
    "company": ("company",),
}


def raw_values(fieldmap: Mapping[str, FieldSpec], payload: Any) -> dict[str, str]:
    """Per normalised field, the raw source value(s) it was made from, as the vendor holds them."""
    out = {}
    for name, sources in _SOURCES.items():
        found = [str(get_path(payload, fieldmap[s].path)) for s in sources if s in fieldmap]
        found = [v for v in found if v not in ("None", "")]
        if found:
            out[name] = " | ".join(dict.fromkeys(found))
    for name, spec in fieldmap.items():
        if name.startswith("link:"):
            value = get_path(payload, spec.path)
            if value not in (None, ""):
                out.setdefault("links", str(value))
    return out


def segment_reason(
    name: str,
    traits: Mapping[str, Any],
    settings: SegmentSettings,
    now: datetime,
    tier_qualified_at: str | None = None,
) -> str:
    """Why a profile is in a segment: the profile's own figures beside the thresholds that put it
    there (`mapping.segments.describe` says what each segment means under these settings).
    `tier_qualified_at`: when the profile last qualified for its held tier (the hysteresis keeps a
    tier `tier_grace_days` after the spend falls below it)."""
    described = describe(settings)
    meaning = described.get(name, "member")
    count = int(traits.get("order_count") or 0)
    revenue = Decimal(str(traits.get("revenue") or 0))
    spend = Decimal(str(traits.get("spend_12m") or 0))
    # The days as the run that made these segments counted them (the stored traits), not as of
    # `now`: explained later, "the last 200 days ago" beside lifecycle-active ("within 180 days")
    # would contradict the very verdict it explains. `now` only where the traits lack the figure.
    last = traits.get("last_order")
    stored = traits.get("days_since_last_order")
    calendar = segment_calendar(settings.timezone)
    days = int(stored) if stored is not None else calendar.days_since(now, parse_timestamp(last)) if last else None
    since = f"the last {days} days ago" if days is not None else "none yet"
    if name in ("friends", "supporters", "acquaintances", "passers-by"):
        return f"{count} orders, {since}; revenue {revenue:.2f} {settings.base_currency}. {name}: {meaning}"
    if name.startswith("lifecycle-"):
        return f"{count} orders, {since}. {name}: {meaning}"
    if name.startswith("tier-"):
        why = f"12-month spend {spend:.2f} {settings.base_currency}. {name}: {meaning}"
        tier = next((t for t in settings.tiers if f"tier-{t.name}" == name), None)
        if tier is not None and spend < tier.min_spend_12m and tier_qualified_at:
            qualified = parse_timestamp(tier_qualified_at)
            if calendar.local:  # the grace ends at the merchant's midnight (mapping.segments.hold_tiers)
                on = calendar.date_of(qualified)
                dates = on.isoformat(), (on + timedelta(days=settings.tier_grace_days)).isoformat()
            else:
                dates = for_json(qualified)[:10], for_json(qualified + timedelta(days=settings.tier_grace_days))[:10]
            why += (
                f"; below it now, kept since it last qualified on {dates[0]}: a tier is taken "
                f"away only after {settings.tier_grace_days} days below it (tier_grace_days), on {dates[1]}"
            )
        return why
    base = base_of(name)
    if base is not None and not any(rule.name == name for rule in settings.rules):
        return base_reason(name, base, traits.get("bases") or {}, meaning, settings.needs_consent(name))
    if name not in described:
        # A verdict of a run made under another configuration (the recorded run's, explained
        # after the rule was changed): the rule it met is not known any more.
        return "rule: not in the configuration now (removed or renamed since the run that gave this segment)"
    return f"rule: {meaning}"


def base_reason(name: str, base: str, bases: Mapping[str, Any], meaning: str, consent: bool) -> str:
    """Why a profile is in a segment of the other bases, from its stored `traits.bases`."""
    if base == "region":
        why = f"postcode in {bases.get('region')}"
    elif base == "interest":
        why = f"bought in: {', '.join(bases.get('interests') or [])}"
    elif base == "abandoned-checkout":
        why = f"unfinished purchase at {bases.get('last_unfinished')}. {name}: {meaning}"
    else:
        why = f"{name}: {meaning}"
    return why + ("; has email marketing consent" if consent else "")


def render(document: Mapping[str, Any], others: Sequence[str]) -> Any:
    """A rich renderable of the explain document for people."""
    from rich.console import Group
    from rich.table import Table

    title = f"profile {document['profile_id']}"
    if document["aliases"]:
        title += f" (formerly {', '.join(document['aliases'])})"
    records = Table(title=title, title_justify="left")
    for column in ("record", "field", "raw", "normalised"):
        records.add_column(column)
    for record in document["records"]:
        normalised = record["normalised"]
        shown = {k: v for k, v in normalised.items() if k not in ("owned", "updated_at", "phone_raw")}
        raws = record.get("raw_values", {})
        first = True
        for field_name, value in shown.items():
            label = f"{record['system']}:{record['id']}" if first else ""
            records.add_row(label, field_name, raws.get(field_name, ""), _text(value))
            first = False
    links = Table(title="why these records are one person", title_justify="left")
    for column in ("record", "record", "by", "value"):
        links.add_column(column)
    for link in document["links"]:
        links.add_row(link["a"], link["b"], link["by"], str(link["value"]))
    fields = Table(title="profile fields", title_justify="left")
    for column in ("field", "value", "from", "why"):
        fields.add_column(column)
    for field_name, choice in document["fields"].items():
        fields.add_row(field_name, _text(choice["value"]), choice["from"], choice["why"])
    recorded = document.get("recorded_run")
    dry = document.get("dry_run")
    title = "segments"
    if dry and recorded:
        title += f" (the last recorded run's: crmsync {recorded.get('command')}, {_when(recorded.get('started_at'))})"
    elif dry:
        title += " (no run has recorded any yet)"
    segments = _segment_table(title, document["segments"])
    preview = None
    if dry and (dry["entered"] or dry["left"]):
        changes = [f"+{name}" for name in dry["entered"]] + [f"-{name}" for name in dry["left"]]
        label = f"crmsync {dry.get('command')}, {_when(dry.get('started_at'))}"
        preview = _segment_table(
            f"not written: the segments of the later {label} ({', '.join(changes)})", dry["segments"]
        )
    traits = Table(title="traits", title_justify="left")
    traits.add_column("trait")
    traits.add_column("value")
    shown = dict(document["traits"])
    shown.update({f"bases.{k}": v for k, v in (shown.pop("bases", None) or {}).items()})
    for trait, value in shown.items():
        traits.add_row(trait, for_people(value) if isinstance(value, str) else _text(value))
    parts: list[Any] = [records, links, fields, traits, segments, *([preview] if preview else [])]
    # The notes on where the segments come from, with local times instead of the document's UTC.
    in_json = set(verdict_notes(document, for_json))
    parts += [f"note: {caveat}" for caveat in verdict_notes(document, for_people)]
    parts += [f"note: {caveat}" for caveat in document.get("caveats", []) if caveat not in in_json]
    if others:
        parts.append(f"also matching: {', '.join(others)}")
    return Group(*parts)


def _segment_table(title: str, listed: Sequence[Mapping[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("segment")
    table.add_column("why")
    for segment in listed:
        why = segment["why"] + (" (in the holdout: not tagged)" if segment.get("held_out") else "")
        table.add_row(segment["name"], why)
    return table


def _when(stamp: str | None) -> str:
    return for_people(stamp) if stamp else "at an unknown time"


def record_ids(config: CrmsyncConfig, system: str, typed: str) -> list[str]:
    """The stored ids a record id typed by a person may stand for: as typed, then as the system's
    connector writes it (`Connector.canonical_id`: a Shopify `7000000` is its gid)."""
    connector = _connector(config, system)
    try:
        canonical = connector.canonical_id(typed)
    finally:
        connector.close()
    return list(dict.fromkeys(i for i in (typed, canonical) if i))


def fieldmap_of(config: CrmsyncConfig, system: str) -> Mapping[str, FieldSpec]:
    """The effective contact field map of a configured system (declared + config overrides)."""
    connector = _connector(config, system)
    try:
        return connector.contact_fieldmap
    finally:
        connector.close()


def _connector(config: CrmsyncConfig, system: str) -> Connector:
    from connectors.registry import connector_class

    settings = config.systems[system]
    return connector_class(settings.type)(system, settings)


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)
