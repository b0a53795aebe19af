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
from collections.abc import Mapping, Sequence
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
    """The CONTRACTS §2 `explain --json` document for one profile."""
    detail = store.profile_detail(profile_id)
    fieldmaps = {name: fieldmap_of(config, name) for name in config.systems}
    profile = detail["profile"] or {}
    contacts: list[Contact] = detail["contacts"]
    fields = survive(contacts, config.identity.source_priority)
    traits = json.loads(profile.get("traits") or "{}")
    segments = json.loads(profile.get("segments") or "[]")
    return {
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
        "segments": [
            {
                "name": name,
                "why": segment_reason(name, traits, config.segments, now, detail.get("tier_qualified_at")),
                # In the segment's holdout (`[segments] holdout`): a member, but not tagged anywhere.
                "held_out": held_out(name, profile_id, config.segments.holdout.get(name, 0.0)),
            }
            for name in segments
        ],
    }


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
    meaning = describe(settings).get(name, "member")
    count = int(traits.get("order_count") or 0)
    revenue = Decimal(str(traits.get("revenue") or 0))
    spend = Decimal(str(traits.get("spend_12m") or 0))
    # The days as the run that made these segments counted them (the stored traits), not as of
    # `now`: explained later, "the last 200 days ago" beside lifecycle-active ("within 180 days")
    # would contradict the very verdict it explains. `now` only where the traits lack the figure.
    last = traits.get("last_order")
    stored = traits.get("days_since_last_order")
    days = int(stored) if stored is not None else (now - parse_timestamp(last)).days if last else None
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
            until = qualified + timedelta(days=settings.tier_grace_days)
            why += (
                f"; below it now, kept since it last qualified on {for_json(qualified)[:10]}: a tier is taken "
                f"away only after {settings.tier_grace_days} days below it (tier_grace_days), on {for_json(until)[:10]}"
            )
        return why
    base = base_of(name)
    if base is not None and not any(rule.name == name for rule in settings.rules):
        return base_reason(name, base, traits.get("bases") or {}, meaning, settings.needs_consent(name))
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
    segments = Table(title="segments", title_justify="left")
    segments.add_column("segment")
    segments.add_column("why")
    for segment in document["segments"]:
        why = segment["why"] + (" (in the holdout: not tagged)" if segment.get("held_out") else "")
        segments.add_row(segment["name"], why)
    traits = Table(title="traits", title_justify="left")
    traits.add_column("trait")
    traits.add_column("value")
    shown = dict(document["traits"])
    shown.update({f"bases.{k}": v for k, v in (shown.pop("bases", None) or {}).items()})
    for trait, value in shown.items():
        traits.add_row(trait, for_people(value) if isinstance(value, str) else _text(value))
    parts: list[Any] = [records, links, fields, traits, segments]
    parts += [f"note: {caveat}" for caveat in document.get("caveats", [])]
    if others:
        parts.append(f"also matching: {', '.join(others)}")
    return Group(*parts)


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
