"""`crmsync forget KEY` as a command: find the one profile KEY names (or, where none does, the
held record or the address KEY names), erase the person from the state (sync/state/erasure.py),
then clear crmsync's tags and fields at every writable system (sync/erasure.py), and say what was
done without naming the person.

KEY is read as `explain` reads it. A KEY that matches several profiles (a phone number two people
share) erases nothing: the user picks one by its profile id, since erasing the wrong person cannot
be undone.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from connectors.base import Connector
from mapping.fieldmaps import MappingRules, contact_links, contact_phone, read_fields
from mapping.model import Kind, Membership, is_object
from mapping.normalize.email import email_match_key, is_role_address
from mapping.normalize.names import parse_name
from sync.clock import now
from sync.config import CrmsyncConfig, LoadedConfig
from sync.erasure import clear_at_vendors
from sync.explain import email_of, find_profiles, record_ids, record_of
from sync.mapper import canonical_ids
from sync.pipeline import build_connectors
from sync.resolve import mapping_rules
from sync.runtime import Writer
from sync.state.erasure import HeldFacts, NothingToErase, PayloadFacts, SharedAbove

log = structlog.get_logger("crmsync.forget")


class NoSuchPerson(LookupError):
    """KEY matches no profile."""


class Ambiguous(LookupError):
    """KEY matches several profiles."""


@dataclass(frozen=True)
class ForgetOutcome:
    document: dict[str, Any]
    complete: bool  # every system confirmed


def forget(loaded: LoadedConfig, writer: Writer, key: str, stop: threading.Event) -> ForgetOutcome:
    config = loaded.config
    store = writer.store
    matches = find_profiles(store, key, config)
    # An address or a record no profile holds may still be a person's: their held records, their
    # guest orders, the tags crmsync wrote on a record before it was held.
    address = None if matches else _address_of(key, config)
    record = None if matches else _record_named(key, config)
    if not matches and address is None and record is None:
        raise NoSuchPerson("no profile matches that key")
    if len(matches) > 1:
        raise Ambiguous(
            f"that key matches {len(matches)} profiles ({', '.join(matches)}): "
            "forget them one at a time by profile id (`crmsync explain` shows whose each is)"
        )
    connectors = build_connectors(loaded, stop)
    try:
        # What crmsync writes for the person's segments in each system, whether or not write-back
        # is on there now: a tag written earlier must come off even where writing stopped since.
        profile = (store.profile_detail(matches[0])["profile"] if matches else None) or {}
        membership = Membership(frozenset(json.loads(profile.get("segments") or "[]")), profile.get("tier"))
        # (No profile: no segments of theirs; what crmsync wrote on a held record is in its ledger.)
        expected = {name: connector.desired_state(membership) for name, connector in connectors.items() if matches}
        # As identity resolution counts a shared address or number (no limit when the config sets none).
        limits = config.identity.max_records_per_identifier
        shared_above = SharedAbove(limits.get("email", sys.maxsize), limits.get("mobile", sys.maxsize))
        facts = payload_facts(connectors, mapping_rules(config))
        writable = {name for name, connector in connectors.items() if connector.writes_back}
        try:
            erased = store.erasures.erase(matches, now(), expected, facts, shared_above, writable, address, record)
        except NothingToErase:
            raise NoSuchPerson("no profile matches that key, and nothing the state holds is under it") from None
        log.info("erased from the state", erasure=erased.erasure_id, profiles=len(matches))
        if erased.unread:
            log.warning(
                "held records kept that hold their address or number",
                erasure=erased.erasure_id,
                records=len(erased.unread),
                reason="their field maps read no one in them",
            )
        # Every pending erasure, this one and any a vendor has not confirmed before.
        passed = clear_at_vendors(store, connectors, clock=now, guard=writer.guard())
    finally:
        for connector in connectors.values():
            connector.close()
    # This erasure's own part (the pass also tried those still pending from before: `status`
    # lists them; their systems, counts and errors are not this person's).
    left = store.erasures.waiting(erased.erasure_id)
    systems: dict[str, dict[str, Any]] = {}
    for name, records in sorted(erased.targets.items()):
        waiting, message = left.get(name, (0, None))
        outcome = passed.systems.get(name)
        systems[name] = {"cleared": records - waiting, "pending": waiting, "error": message if waiting else None}
        if waiting and outcome is not None and outcome.reason:
            systems[name]["reason"] = outcome.reason
    document = {
        "ok": not left,
        "erasure": erased.erasure_id,
        "profiles": list(erased.profiles),
        "records": {"contacts": erased.contacts, "orders": erased.orders, "quarantined": erased.quarantined},
        # Held records their field maps read no one in, whose text holds an address or mobile
        # number of theirs: kept.
        "unread": [{"system": s, "kind": kind, "id": rid} for s, kind, rid in erased.unread],
        "systems": systems,
        "pending": sorted(left),
        # Where the erasure was journaled, so a restored backup does not bring the person back;
        # `problem` says why it was not, and what to do (null: a state in memory keeps none).
        "erasure_journal": (
            {"journal": erased.journal, "problem": erased.journal_problem} if erased.journal is not None else None
        ),
    }
    return ForgetOutcome(document, not left)


def _address_of(key: str, config: CrmsyncConfig) -> str | None:
    """The email match key KEY names, as `explain` reads an address, unless it is a role address
    such as info@, which is nobody's."""
    email = email_of(key, config)
    if email is None or is_role_address(email, mapping_rules(config).role_locals):
        return None
    return email_match_key(email)


def _record_named(key: str, config: CrmsyncConfig) -> tuple[str, list[str]] | None:
    """The system and the stored ids a `<system>:<id>` KEY may stand for (as `explain` reads it)."""
    named = record_of(key, config)
    return (named[0], record_ids(config, *named)) if named is not None else None


def payload_facts(connectors: Mapping[str, Connector], rules: MappingRules) -> PayloadFacts:
    """How each system's records name their customer, email, mobile number and given name, read by
    its own field map and normalised as the mapping does: what finds the person's quarantined
    records, which no profile holds."""
    canonical = canonical_ids(connectors)

    def facts(system: str, kind: str, payload: Any) -> HeldFacts:
        connector = connectors.get(system)
        if connector is None or not is_object(payload):
            return HeldFacts()
        if kind != Kind.CONTACT.value:
            values = read_fields(payload, connector.order_fields, ("customer_id", "email"))
            return HeldFacts(_text(values.get("customer_id")), _email_key(values.get("email")))
        fields = connector.contact_fieldmap
        names = ("email", "mobile", "phone", "country", "first_name", "middle_name", "last_name", "full_name")
        values = read_fields(payload, fields, [*names, *(name for name in fields if name.startswith("link:"))])
        phone = contact_phone(values, rules)
        person = parse_name(
            values.get("first_name"), values.get("middle_name"), values.get("last_name"), values.get("full_name")
        )
        email = values.get("email")
        role = isinstance(email, str) and is_role_address(email, rules.role_locals)
        return HeldFacts(
            email_key=None if role else _email_key(email),  # info@ is nobody's (as identity resolution reads it)
            mobile=phone.e164 if phone is not None and phone.kind == "mobile" else None,
            given_name=person.given if person is not None else None,
            links=contact_links(values, canonical),
        )

    return facts


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def _email_key(value: Any) -> str | None:
    return email_match_key(value) if isinstance(value, str) else None


def render(document: dict[str, Any]) -> str:
    contacts = sum(document["records"]["contacts"].values())
    orders = sum(document["records"]["orders"].values())
    held = sum(document["records"].get("quarantined", {}).values())
    whose = f"profile {', '.join(document['profiles'])}" if document["profiles"] else "a person no profile holds"
    lines = [
        f"Forgotten: {whose} "
        f"({contacts} contact record{'s' if contacts != 1 else ''}, {orders} order{'s' if orders != 1 else ''}"
        + (f", {held} quarantined record{'s' if held != 1 else ''}" if held else "")
        + ") removed from the state; those records will not be stored again."
    ]
    for name, outcome in document["systems"].items():
        if outcome["pending"]:
            why = outcome.get("reason") or outcome.get("error") or "not confirmed"
            lines.append(f"  {name}: {outcome['cleared']} cleared, {outcome['pending']} pending ({why})")
        else:
            lines.append(f"  {name}: crmsync's tags and fields removed from {outcome['cleared']} record(s)")
    unread = document.get("unread") or []
    if unread:
        lines.append(
            f"Kept: {len(unread)} quarantined record{'s' if len(unread) != 1 else ''} whose text holds their "
            "email address or mobile number, though the field map reads no one in them (an address or number "
            "alone does not say whose a record is):"
        )
        lines.extend(f"  {held['system']} {held['kind']} {held['id']}" for held in unread)
        lines.append(
            "Correct or delete them at the vendor; once a sync has read them again, `crmsync forget` the "
            "person again to erase what is theirs."
        )
    if document["pending"]:
        lines.append("Pending systems are tried again by every sync; `crmsync status` lists them until done.")
    journal = document.get("erasure_journal") or {}
    if journal.get("problem"):
        lines.append(f"Not in the erasure journal: {journal['problem']}")
    return "\n".join(lines)
