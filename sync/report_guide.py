"""What a shop owner does with a segment (#18 item 5): the action from the brief, where the segment
is found in each system, the 12-month revenue at stake, and the segment's persona, in the report's
language (`[report] language`, English or Dutch).

The actions come from the background notes: the loyalty x value strategies (friends: retain,
supporters: develop, acquaintances: bind, passers-by: get acquainted; in Dutch behouden,
ontwikkelen, binden, kennismaken) and the ways to raise customer value (cross-selling, deep-selling:
widen what they buy, up-selling: the premium or limited edition).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from connectors.base import Connector
from mapping.bases import base_of
from mapping.segments import QUADRANTS

if TYPE_CHECKING:
    from sync.config import LoadedConfig
    from sync.state import StateStore

# (short action, what to do) per segment or family, per language.
ACTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "en": {
        "friends": (
            "retain",
            "thank them and keep them close (loyalty programme, early access); up-sell the premium line",
        ),
        "supporters": ("develop", "they return but spend little: cross-sell what goes with their purchases"),
        "acquaintances": (
            "bind",
            "they spend a lot but rarely: give a reason to return (service, reminder, subscription)",
        ),
        "passers-by": ("get acquainted", "a welcome series and a first-order offer; keep the cost per contact low"),
        "lifecycle-prospect": ("get acquainted", "no order yet: a welcome offer for the first one"),
        "lifecycle-new": ("develop", "a first order in: suggest a second (cross-sell what goes with it)"),
        "lifecycle-active": ("retain", "buying now: deep-sell, show the wider range"),
        "lifecycle-at-risk": ("win back", "a personal reminder or offer before they lapse"),
        "lifecycle-lapsed": ("win back", "one win-back campaign, then stop mailing"),
        "tier": ("reward", "make the tier visible: its benefits in every mail and at checkout"),
        "region": ("local", "local news, events, delivery times or a shop nearby"),
        "interest": ("cross-sell", "new arrivals and offers in the category they buy; cross-sell what goes with it"),
        "b2b": ("business", "business terms: invoices with VAT, volume prices, an account manager"),
        "cross-sell": ("cross-sell", "loyal but in one category: introduce a second category that goes with it"),
        "win-back": ("win back", "good customers slipping away: a personal message before they lapse"),
        "abandoned-checkout": ("remind", "an automatic reminder of what they left behind; it leaves when they buy"),
        "rule": ("your own", "your own segment: decide its action and describe it as a persona"),
    },
    "nl": {
        "friends": (
            "behouden",
            "bedank ze en houd ze dichtbij (loyaliteitsprogramma, voorrang); upselling van de premiumlijn",
        ),
        "supporters": (
            "ontwikkelen",
            "ze komen terug maar besteden weinig: crossselling van wat bij hun aankopen past",
        ),
        "acquaintances": (
            "binden",
            "ze besteden veel maar zelden: geef een reden om terug te komen (service, herinnering, abonnement)",
        ),
        "passers-by": (
            "kennismaken",
            "een welkomstreeks en een aanbod voor de eerste bestelling; houd de kosten per contact laag",
        ),
        "lifecycle-prospect": ("kennismaken", "nog geen bestelling: een welkomstaanbod voor de eerste"),
        "lifecycle-new": ("ontwikkelen", "de eerste bestelling is binnen: stel een tweede voor (crossselling)"),
        "lifecycle-active": ("behouden", "ze kopen nu: deepselling, laat het bredere assortiment zien"),
        "lifecycle-at-risk": ("terugwinnen", "een persoonlijke herinnering of aanbieding voordat ze afhaken"),
        "lifecycle-lapsed": ("terugwinnen", "één terugwinactie, stop daarna met mailen"),
        "tier": ("belonen", "maak het niveau zichtbaar: de voordelen in elke mail en bij het afrekenen"),
        "region": ("lokaal", "lokaal nieuws, evenementen, levertijden of een winkel in de buurt"),
        "interest": (
            "crossselling",
            "nieuwe producten en aanbiedingen in de categorie die ze kopen; crossselling van wat erbij past",
        ),
        "b2b": ("zakelijk", "zakelijke voorwaarden: facturen met btw, staffelprijzen, een vaste contactpersoon"),
        "cross-sell": ("crossselling", "trouw maar in één categorie: introduceer een tweede categorie die erbij past"),
        "win-back": ("terugwinnen", "goede klanten die afhaken: een persoonlijk bericht voordat ze weg zijn"),
        "abandoned-checkout": (
            "herinneren",
            "een automatische herinnering aan wat ze achterlieten; de tag gaat weg zodra ze kopen",
        ),
        "rule": ("eigen segment", "uw eigen segment: bepaal de actie en beschrijf het als persona"),
    },
}

# Where a segment is found: a connector writes it as a tag, as a list item (SuperOffice Interests)
# or inside one field holding the segment names.
WHERE = {
    "en": {
        "tag": "{system}: customers tagged {tag}",
        "interest": "{system}: persons with the interest {tag}",
        "field": "{system}: field {field} contains {segment}",
        "skipped": "{system}: not written (skip_segments)",
        "not_switched": "{system}: not written (bases)",
        "holdout": " ({share} of the members left untagged: holdout)",
    },
    "nl": {
        "tag": "{system}: klanten met de tag {tag}",
        "interest": "{system}: personen met de interesse {tag}",
        "field": "{system}: veld {field} bevat {segment}",
        "skipped": "{system}: niet geschreven (skip_segments)",
        "not_switched": "{system}: niet geschreven (bases)",
        "holdout": " ({share} van de leden zonder tag: controlegroep)",
    },
}

# The report's flags, in plain words (the JSON's `flags` keep their fixed English keys).
FLAGS = {
    "en": {
        "too_few": "too few people to act on: {size} (fewer than {minimum})",
        "too_small_share": "too few people to act on: {share} of everyone (less than {minimum})",
        "previous_run": "the previous run",
        "days_ago": "{days} days ago",
        "unstable": "changes a lot from run to run: {kept} of the people of {when} are still in it (want {minimum})",
        "overlapping": "mostly the same people as {other} ({share} shared): one of the two may be enough",
    },
    "nl": {
        "too_few": "te weinig mensen om iets mee te doen: {size} (minder dan {minimum})",
        "too_small_share": "te weinig mensen om iets mee te doen: {share} van iedereen (minder dan {minimum})",
        "previous_run": "de vorige meting",
        "days_ago": "{days} dagen geleden",
        "unstable": (
            "verandert sterk van meting tot meting: {kept} van de mensen van {when} zit er nog in (gewenst {minimum})"
        ),
        "overlapping": "grotendeels dezelfde mensen als {other} ({share} gedeeld): één van beide is misschien genoeg",
    },
}

# Display names of the built-in segments in a Dutch report, where `[segments.labels]` gives none.
DUTCH_LABELS = {
    "friends": "vrienden",
    "supporters": "supporters",
    "acquaintances": "kennissen",
    "passers-by": "voorbijgangers",
    "lifecycle-prospect": "prospects",
    "lifecycle-new": "nieuwe klanten",
    "lifecycle-active": "actieve klanten",
    "lifecycle-at-risk": "klanten met risico",
    "lifecycle-lapsed": "afgehaakte klanten",
    "b2b": "zakelijke klanten",
    "cross-sell": "trouw in één categorie",
    "win-back": "terugwinnen",
    "abandoned-checkout": "verlaten winkelwagen",
}

VENDORS = {
    "shopify": "Shopify",
    "woocommerce": "WooCommerce",
    "lightspeed": "Lightspeed",
    "afas": "AFAS",
    "superoffice": "SuperOffice",
    "efficy": "efficy",
    "silvasoft": "Silvasoft",
}


def family_of(segment: str) -> str:
    base = base_of(segment)
    if base is not None:
        return base
    if segment in QUADRANTS:
        return "quadrant"
    if segment.startswith("lifecycle-"):
        return "lifecycle"
    if segment.startswith("tier-"):
        return "tier"
    return "rule"


def action(segment: str, language: str) -> dict[str, str]:
    catalog = ACTIONS[language]
    found = catalog.get(segment) or catalog[family_of(segment) if family_of(segment) in catalog else "rule"]
    return {"action": found[0], "what_to_do": found[1]}


def where_to_find(
    segment: str,
    connectors: Mapping[str, Connector],
    language: str,
    holdout: float = 0.0,
    bases_on: Sequence[str] = (),
) -> list[dict[str, str]]:
    """One entry per system that crmsync writes to, saying how to find the segment's members there."""
    phrases = WHERE[language]
    found = []
    for name, connector in connectors.items():
        if not connector.writes_back:
            continue
        caps = connector.current_capabilities()
        system = VENDORS.get(connector.type, connector.type) + (f" ({name})" if name != connector.type else "")
        tag = connector.tag_prefix + segment
        base, switched = base_of(segment), connector.settings.bases
        if segment in connector.settings.skip_segments:
            text = phrases["skipped"].format(system=system)
        elif base in bases_on and switched is not None and base not in switched:
            text = phrases["not_switched"].format(system=system)
        elif caps.write_tags:
            kind = "interest" if connector.type == "superoffice" else "tag"
            text = phrases[kind].format(system=system, tag=tag)
        elif connector.segments_field:
            text = phrases["field"].format(system=system, field=connector.segments_field, segment=segment)
        else:
            continue  # only the tier field is written there
        if holdout and segment not in connector.settings.skip_segments:
            text += phrases["holdout"].format(share=f"{holdout:.0%}")
        found.append({"system": name, "type": connector.type, "where": text})
    return found


def revenue_12m(profile_rows: Sequence[tuple[Sequence[str], str]]) -> dict[str, float]:
    """Per segment: the 12-month spend of its members now (each profile's segments, and its traits
    JSON)."""
    totals: dict[str, float] = {}
    for segments, traits in profile_rows:
        spend = float(json.loads(traits or "{}").get("spend_12m") or 0)
        for name in segments:
            totals[name] = totals.get(name, 0.0) + spend
    return {name: round(value, 2) for name, value in totals.items()}


def add_guide(document: dict[str, Any], store: StateStore, loaded: LoadedConfig) -> None:
    """Each reported segment's guide (action, where, revenue at stake, persona) into its details."""
    import threading

    from sync.pipeline import build_connectors

    config = loaded.config
    connectors = build_connectors(loaded, threading.Event())
    try:
        at_stake = revenue_12m(store.profile_segments_and_traits())
        names = [segment["name"] for segment in document.get("segments") or []]
        guides = guide(
            names,
            connectors,
            config.report.language,
            config.segments.holdout,
            config.report.personas,
            at_stake,
            config.segments.bases.enabled,
        )
    finally:
        for connector in connectors.values():
            connector.close()
    for name, entry in guides.items():
        document.setdefault("details", {}).setdefault(name, {})["guide"] = entry


def guide(
    segments: list[str],
    connectors: Mapping[str, Connector],
    language: str,
    holdouts: Mapping[str, float],
    personas: Mapping[str, str],
    at_stake: Mapping[str, float],
    bases_on: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    return {
        name: {
            **action(name, language),
            "where": where_to_find(name, connectors, language, holdouts.get(name, 0.0), bases_on),
            "revenue_12m": at_stake.get(name, 0.0),
            "persona": personas.get(name),
        }
        for name in segments
    }


# The report's fixed words (HTML and terminal), per language.
TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "crmsync segment health",
        "profiles": "profiles",
        "revenue": "revenue",
        "latest_run": "latest run",
        "runs_recorded": "runs recorded",
        "generated": "generated",
        "no_run": "no run yet",
        "matrix": "Loyalty &times; value",
        "sizes": "Segment sizes",
        "over_time": "Segment sizes over time",
        "flows": "Lifecycle flows, last {days} days",
        "churn": "Churn into at-risk and lapsed",
        "segments": "Segments",
        "quarantine": "Quarantined records",
        "todo": "What to do, and where to find it",
        "none_yet": "No run recorded yet.",
        "of_profiles": "{share} of profiles, {revenue} of revenue",
        "value_axis": "value &rarr; (low | high)",
        "loyalty_axis": "loyalty &rarr; (low | high)",
        "red_flagged": "Red: flagged (see the table below).",
        "one_point": "One point per recorded run",
        "at_most": " (at most {n} shown).",
        "no_flows": "No lifecycle changes recorded in this window yet: they appear once runs see customers move "
        "between stages.",
        "moves": "{total} moves between lifecycle stages (left: before, right: after).",
        "nobody_churned": "Nobody moved into at-risk or lapsed in the last {days} days.",
        "churned": "{total} profiles moved into at-risk or lapsed in the last {days} days.",
        "into": "into",
        "left_stage": "left stage",
        "quadrant_before": "quadrant before",
        "last_ordered_in": "last ordered in",
        "segment": "segment",
        "label": "label",
        "size": "size",
        "share": "share",
        "revenue_share": "revenue share",
        "avg_value": "avg value",
        "stable_prev": "stable (prev run)",
        "stable_window": "stable ({days}d)",
        "largest_overlap": "largest overlap",
        "growth": "growth",
        "flags": "flags",
        "ok": "ok",
        "no_quarantine": "No records in quarantine.",
        "reason": "reason",
        "records": "records",
        "action": "action",
        "what_to_do": "what to do",
        "at_stake": "12-month revenue",
        "where": "where to find them",
        "persona": "persona",
        "not_written": "not written to any system",
        "health_title": "segment health: {profiles} profiles, run of {at}",
        "in_zone": "days and times on the calendar of {zone}",
        "matrix_plain": "loyalty x value",
        "low_value": "low value",
        "high_value": "high value",
        "high_loyalty": "high loyalty",
        "low_loyalty": "low loyalty",
        "churn_title": "churn in the last {days} days: {total} profiles",
        "by_system": "by system",
        "note": "note",
        "frozen": (
            "{n} held contact records still carry crmsync's tags or fields as it last wrote them ({systems}): "
            "crmsync does not write to a record it cannot read, so they stay until the record reads cleanly again"
        ),
    },
    "nl": {
        "title": "crmsync segmentrapport",
        "profiles": "profielen",
        "revenue": "omzet",
        "latest_run": "laatste meting",
        "runs_recorded": "metingen",
        "generated": "gemaakt",
        "no_run": "nog geen meting",
        "matrix": "Loyaliteit &times; waarde",
        "sizes": "Grootte per segment",
        "over_time": "Grootte per segment door de tijd",
        "flows": "Verschuivingen in de klantlevenscyclus, laatste {days} dagen",
        "churn": "Naar risico en afgehaakt",
        "segments": "Segmenten",
        "quarantine": "Records in quarantaine",
        "todo": "Wat te doen, en waar u ze vindt",
        "none_yet": "Nog geen meting.",
        "of_profiles": "{share} van de profielen, {revenue} van de omzet",
        "value_axis": "waarde &rarr; (laag | hoog)",
        "loyalty_axis": "loyaliteit &rarr; (laag | hoog)",
        "red_flagged": "Rood: een aandachtspunt (zie de tabel hieronder).",
        "one_point": "Eén punt per meting",
        "at_most": " (hoogstens {n} getoond).",
        "no_flows": "Nog geen verschuivingen in deze periode: ze verschijnen zodra metingen klanten van fase zien "
        "wisselen.",
        "moves": "{total} verschuivingen tussen fasen (links: ervoor, rechts: erna).",
        "nobody_churned": "Niemand is in de laatste {days} dagen naar risico of afgehaakt gegaan.",
        "churned": "{total} profielen gingen in de laatste {days} dagen naar risico of afgehaakt.",
        "into": "naar",
        "left_stage": "vorige fase",
        "quadrant_before": "kwadrant ervoor",
        "last_ordered_in": "laatst besteld in",
        "segment": "segment",
        "label": "naam",
        "size": "aantal",
        "share": "aandeel",
        "revenue_share": "aandeel omzet",
        "avg_value": "gem. waarde",
        "stable_prev": "stabiel (vorige meting)",
        "stable_window": "stabiel ({days} d)",
        "largest_overlap": "grootste overlap",
        "growth": "groei",
        "flags": "aandachtspunten",
        "ok": "in orde",
        "no_quarantine": "Geen records in quarantaine.",
        "reason": "reden",
        "records": "records",
        "action": "actie",
        "what_to_do": "wat te doen",
        "at_stake": "omzet 12 maanden",
        "where": "waar u ze vindt",
        "persona": "persona",
        "not_written": "naar geen enkel systeem geschreven",
        "health_title": "segmentrapport: {profiles} profielen, meting van {at}",
        "in_zone": "dagen en tijden volgens de kalender van {zone}",
        "matrix_plain": "loyaliteit x waarde",
        "low_value": "lage waarde",
        "high_value": "hoge waarde",
        "high_loyalty": "hoge loyaliteit",
        "low_loyalty": "lage loyaliteit",
        "churn_title": "afhakers in de laatste {days} dagen: {total} profielen",
        "by_system": "per systeem",
        "note": "let op",
        "frozen": (
            "{n} contactrecords in quarantaine dragen nog de tags of velden van crmsync zoals het ze het laatst "
            "schreef ({systems}): crmsync schrijft niet naar een record dat het niet kan lezen, dus ze blijven "
            "staan tot het record weer goed te lezen is"
        ),
    },
}


def text_of(doc: Mapping[str, Any]) -> dict[str, str]:
    return TEXT.get(str(doc.get("language") or "en"), TEXT["en"])


def calendar_zone(doc: Mapping[str, Any]) -> tzinfo | None:
    """The zone a report shows its times in: `[segments] timezone` (the document's `timezone`), so
    a run's date is the merchant's; None (the process's zone, as before) when the calendar is
    UTC's, which is also what a document made without the setting says."""
    name = doc.get("timezone")
    return ZoneInfo(str(name)) if name and name != "UTC" else None


def zone_note(doc: Mapping[str, Any], t: Mapping[str, str]) -> str:
    """` · days and times on the calendar of Europe/Amsterdam`, or nothing without a zone."""
    zone = calendar_zone(doc)
    return f" \u00b7 {t['in_zone'].format(zone=doc['timezone'])}" if zone is not None else ""


def frozen_line(frozen: Mapping[str, int], t: Mapping[str, str]) -> str:
    """The report's line on held contacts that still carry crmsync's tags or fields (`frozen`:
    per system, from `quarantine_summary`), in the report's language (`t`: `text_of`)."""
    systems = ", ".join(f"{name} {n}" for name, n in frozen.items())
    return t["frozen"].format(n=sum(frozen.values()), systems=systems)
