"""The Connector contract: what every vendor folder declares and implements.

A connector is mostly declarations (field maps, where crmsync's tags and fields live, the largest
write batch the API allows) plus a few hooks (`classify`, `check`, the two readers, `write`).
Everything that does not depend on the vendor (pacing, retries, planning, storage) lives elsewhere.
"""

from __future__ import annotations

import builtins
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

from connectors.auth import Authenticator
from connectors.errors import ApiError, RejectedRecord
from connectors.http import ApiClient, ApiResponse, Pacer, Rule, Verdict, classify_by
from connectors.paging import Paginator, Reply
from connectors.settings import SystemSettings
from connectors.streams import Page as Page  # the connectors import it from here
from connectors.streams import RecordSpec, Stream, positive_int, read_stream
from connectors.window import Window
from mapping.model import (
    FieldMap,
    FieldSpec,
    Kind,
    Membership,
    RemoteState,
    SourceRecord,
    WriteBack,
    WriteResult,
)


@dataclass(frozen=True)
class Capabilities:
    read_contacts: bool
    read_orders: bool
    incremental: bool
    write_tags: bool
    write_fields: bool

    def to_json(self) -> dict[str, bool]:
        return asdict(self)


@dataclass(frozen=True)
class Permission:
    """A scope, right or field the configured work needs, and whether a call proved it is there.
    `fix` says what to do when it is not; `needed` is False for one the configuration can do
    without (it is then only a warning)."""

    name: str
    ok: bool
    fix: str | None = None
    needed: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "fix": None if self.ok else self.fix, "needed": self.needed}


@dataclass
class CheckReport:
    """What `check` proved of one system: its permissions, the capabilities that follow from them
    (never from a table), and warnings a person should read."""

    capabilities: Capabilities
    permissions: list[Permission] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The time zone the system itself keeps its calendar in (an IANA name), where its API says:
    # `check` compares it with `[segments] timezone`, the calendar segments count days on.
    timezone: str | None = None

    @property
    def missing(self) -> list[Permission]:
        return [p for p in self.permissions if p.needed and not p.ok]


# Fields only the segmentation bases read (mapping/bases.py).
BASE_ONLY_FIELDS = frozenset({"birth_date", "kvk", "vat", "business", "email_consent", "discount", "categories"})
# Settings that shape how a system is reached and paced, or what is written to it, never what its
# records map to (`Connector.mapping_settings`). Every other setting counts as a mapping input: one
# counted too many costs a remap, one missed would leave records mapped by an older configuration.
TRANSPORT_SETTINGS = frozenset(
    {
        "rate_limit",
        "pace_margin",
        "connect_timeout",
        "read_timeout",
        "retry",
        "lookback",
        "reconcile_every",
        "page_size",
        "write_batch",
        "writeback",
        "skip_segments",
        "bases",
        "token_renew_margin",
        "bulk_write_threshold",
        "bulk_read_threshold",
        "bulk_poll_max",
        "verify_per_day",
        "ratelimit_wait",
    }
)


class Connector(ABC):
    type: ClassVar[str]
    settings_class: ClassVar[builtins.type[SystemSettings]]
    capabilities: ClassVar[Capabilities]
    contact_fields: ClassVar[FieldMap]
    order_fields: ClassVar[FieldMap]
    max_write_batch: ClassVar[int] = 1
    # Where crmsync's verdict lives on a remote record (CONTRACTS §4): as prefixed tags, and/or in
    # a field holding the segment names, and/or a field holding the loyalty tier. Fixed names are
    # declared here; vendors whose field names are configured (AFAS, SuperOffice, efficy) give
    # their settings `segments_field` / `tier_field` keys, which take precedence.
    default_segments_field: ClassVar[str | None] = None
    default_tier_field: ClassVar[str | None] = None
    # Declared fields read where a reply has them but never expected by the drift guard: those
    # whose place in the vendor's list replies is assumed, not documented (api-notes), so that a
    # reply without them misses a detail instead of stopping the stream.
    optional_fields: ClassVar[frozenset[str]] = frozenset()
    # What an owned field holds when it holds nothing: None when the API can delete it, "" when
    # the best it can do is an empty value (WooCommerce meta).
    empty_field_value: ClassVar[str | None] = None
    # Which API answers, for messages about answers that stopped matching (the drift guard).
    api_name: ClassVar[str] = ""
    api_version: ClassVar[str] = ""
    # Whether a read shows crmsync's own tags and fields. Where it does not (Lightspeed's customer
    # list has no metafields, and a request per customer would cost days of its rate limit), the
    # read maps to an unknown owned state, the ledger says what crmsync wrote, and each cycle
    # verifies a budgeted share of the records with `verify_owned` (a hand edit is repaired then).
    reads_owned_state: ClassVar[bool] = True
    # Contacts `gone_contacts` may be asked of in one full read, the longest absent first; the rest
    # wait for the next. A request each (SuperOffice, Lightspeed, WooCommerce): a bounded share of the rate
    # limit; vendors that take a page of ids raise it.
    gone_per_read: ClassVar[int] = 500
    # Ids that are positive integers (most vendors): another system's "0042" or "abc" is no id here.
    numeric_ids: ClassVar[bool] = False
    # What every contact id of this vendor begins with, when it is a fixed prefix before the part a
    # person sees in the vendor's own screens (Shopify: "gid://shopify/Customer/" before 7000000).
    # People are shown the rest (`short_id`), and may type it back: `canonical_id` restores it.
    id_prefix: ClassVar[str] = ""
    # How replies are read, first match wins; anything unmatched is read the HTTP way.
    rules: ClassVar[tuple[Rule, ...]] = ()

    def __init__(
        self,
        name: str,
        settings: SystemSettings,
        *,
        tag_prefix: str = "crmsync:",
        stop_event: threading.Event | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.tag_prefix = tag_prefix
        self.stop_event = stop_event or threading.Event()
        self.segments_field: str | None = getattr(settings, "segments_field", None) or self.default_segments_field
        self.tier_field: str | None = getattr(settings, "tier_field", None) or self.default_tier_field
        # What the configured segments need beyond contacts and orders (set by sync.pipeline):
        # each order's lines (interests) and the purchases left unfinished in the last N days.
        self.read_order_lines = False
        self.read_order_facts = False  # the segments read discount codes or lines: see sync.extract
        self.read_bases = False  # the segments read the bases' fields at all
        self.unfinished_days: int | None = None
        self.client = self.make_client()

    # ----- declarations turned into behaviour -------------------------------------------------
    @property
    def contact_fieldmap(self) -> dict[str, FieldSpec]:
        """The declared contact fields, the config's `fields` overrides and additions (an AFAS or
        SuperOffice install keeps things in its own free fields), and `link:<system>` for every
        configured cross-system id."""
        fields = dict(self.contact_fields)
        for name, override in self.settings.fields.items():
            if isinstance(override, str):
                default = fields[name].normaliser if name in fields else ("email" if name == "email" else "text")
                fields[name] = FieldSpec(override, default)
            else:
                fields[name] = FieldSpec(override.path, override.normaliser)
        for system, path in self.settings.links.items():
            fields[f"link:{system}"] = FieldSpec(path, "id")
        return fields

    def canonical_id(self, raw: str) -> str | None:
        """A record id as this vendor writes it, from the way another system may have stored it or
        a person typed it (Shopify: a bare number becomes its gid, by `id_prefix`). None when it
        cannot be one of our ids."""
        prefix = self.id_prefix
        text = raw.strip()
        if prefix and text.startswith(prefix):
            text = text[len(prefix) :]
        if self.numeric_ids:
            number = positive_int(text)
            text = "" if number is None else str(number)
        return prefix + text if text else None

    @classmethod
    def short_id(cls, record_id: str) -> str:
        """A contact id as people see it in the vendor's screens: without `id_prefix`."""
        prefix = cls.id_prefix
        rest = record_id[len(prefix) :] if prefix and record_id.startswith(prefix) else ""
        return rest or record_id

    @property
    def write_batch(self) -> int:
        """Records per write call: the configured size, never more than the API allows."""
        return min(self.settings.write_batch or self.max_write_batch, self.max_write_batch)

    @property
    def writes_tags(self) -> bool:
        return self.capabilities.write_tags

    def current_capabilities(self) -> Capabilities:
        """What this configured instance can do: the vendor's capabilities, narrowed to where its
        settings let crmsync write (SuperOffice writes tags only as Interests, fields only when a
        field is named)."""
        caps = self.capabilities
        return replace(
            caps,
            write_tags=caps.write_tags and self.writes_tags,
            write_fields=caps.write_fields and bool(self.segments_field or self.tier_field),
        )

    @property
    def writes_back(self) -> bool:
        """Whether crmsync writes anything to this system: write-back on, and a tag or field to
        write it into."""
        caps = self.current_capabilities()
        return self.settings.writeback and (caps.write_tags or caps.write_fields)

    def mapping_settings(self) -> dict[str, Any]:
        """The settings that may change what this system's records map to (efficy's counted
        statuses, AFAS's columns of crmsync's fields, ...), as JSON values: all but
        `TRANSPORT_SETTINGS`. Secrets show as a mask, so a renewed token maps nothing again."""
        return self.settings.model_dump(mode="json", exclude=set(TRANSPORT_SETTINGS))

    def read_shape(self) -> Any:
        """What this system's reads ask for beyond whole records (an archive's selected columns),
        as JSON values; None where every read returns whole records. When it changes, the records
        stored before lack what is asked for now, so the system is read in full again."""
        return None

    def owns_tag(self, tag: str) -> bool:
        """Whether a tag is crmsync's: it carries the prefix and holds no comma. crmsync never
        writes one with a comma, and a vendor that reads tags as a comma-separated list (Shopify's
        `tagsRemove`) would take one to remove as several, a merchant's among them."""
        return "," not in tag and tag.casefold().startswith(self.tag_prefix.casefold())

    def desired_state(self, membership: Membership) -> RemoteState:
        """The owned state a record should carry for this membership (CONTRACTS §4)."""
        names = sorted(n for n in membership.segments if n not in self.settings.skip_segments)
        tier = membership.tier if membership.tier and f"tier-{membership.tier}" in names else None
        tags = frozenset(self.tag_prefix + n for n in names) if self.writes_tags else frozenset()
        fields: dict[str, str | None] = {}
        if self.segments_field:
            fields[self.segments_field] = ",".join(names)
        if self.tier_field:
            fields[self.tier_field] = tier if tier else self.empty_field_value
        return RemoteState(tags, fields)

    def owned_state(self, payload: Mapping[str, Any]) -> RemoteState:
        """crmsync's tags and fields as they stand in a vendor payload."""
        tags = frozenset(t for t in self.payload_tags(payload) if self.owns_tag(t))
        fields: dict[str, str | None] = {}
        for name in (self.segments_field, self.tier_field):
            if name:
                value = self.payload_field(payload, name)
                fields[name] = self.empty_field_value if value in (None, "") else value
        return RemoteState(tags, fields)

    def verify_owned(self, record_ids: Sequence[str]) -> dict[str, RemoteState]:
        """What crmsync's tags and fields hold now on these records, asked of the vendor; records
        gone since are left out. The rolling sweep asks it of connectors whose reads do not show
        it; an erasure asks it of every connector that writes tags, since a read shows them only
        as they were then (a prefixed tag added by hand since is crmsync's to remove too)."""
        raise NotImplementedError(f"{self.type} reads show crmsync's tags and fields")

    def gone_contacts(self, record_ids: Sequence[str]) -> set[str] | None:
        """Of these contacts, stored but left out of the full reads for `[drift_guard] absent_for`,
        those the vendor says it no longer has, each asked of it by id (past the list's filter: a
        customer whose role or status took it out of the list is still there). None: this vendor
        cannot be asked past its list (an AFAS GetConnector filters every query), so the absence
        alone decides. Raises a ConnectorError when an answer cannot be told, so that nothing is
        taken for deleted unproven."""
        return None

    def ids_to_ask(self, record_ids: Sequence[str]) -> list[str]:
        """These ids once each, in order, for `gone_contacts` to ask by; raises for an id that is
        none of this vendor's: it cannot be asked, and nothing is taken for deleted unproven."""
        ids = list(dict.fromkeys(record_ids))
        for record_id in ids:
            if self.canonical_id(record_id) != record_id:
                raise ApiError(self.name, f"cannot look up {record_id!r}: not one of {self.type}'s ids")
        return ids

    def gone_one_by_one(self, record_ids: Sequence[str], path_of: Callable[[str], str]) -> set[str]:
        """`gone_contacts` for a vendor asked a GET per record (`path_of` its path): a 404 refusal of
        that record (the connector's rules make it a `RejectedRecord`) says it is gone; any other
        refusal tells nothing, and raises. So does an id that is none of this vendor's."""
        gone: set[str] = set()
        for record_id in self.ids_to_ask(record_ids):
            try:
                self.client.request("GET", path_of(record_id))
            except RejectedRecord as exc:
                if exc.status != 404:
                    raise
                gone.add(record_id)
        return gone

    def verify_budget(self) -> float:
        """Records per day `verify_owned` may look at (the vendor's rate limit is shared with the reads
        and the writes)."""
        return 0.0

    def payload_tags(self, payload: Mapping[str, Any]) -> list[str]:
        return []

    def payload_field(self, payload: Mapping[str, Any], name: str) -> str | None:
        return None

    def order_counts(self, payload: Mapping[str, Any]) -> bool:
        """False for cancelled, refunded and test orders."""
        return True

    def order_unfinished(self, payload: Mapping[str, Any]) -> bool:
        """True for a purchase the customer did not finish: an abandoned checkout, an order left
        pending payment or failed (the `abandoned-checkout` segment); it never counts as an order."""
        return False

    # ----- hooks every vendor implements ------------------------------------------------------
    @abstractmethod
    def make_client(self) -> ApiClient:
        """The vendor's client; usually `return self.api_client(auth=<an Authenticator>)`."""

    def api_client(
        self,
        *,
        auth: Authenticator | None = None,
        headers: Mapping[str, str] | None = None,
        base_url: str | None = None,
        classify: Callable[[ApiResponse], Verdict] | None = None,
        paced: bool = True,
        pacers: Sequence[Pacer] = (),
    ) -> ApiClient:
        """An ApiClient wired to this system's settings (pacing, timeouts, retries, stop event)
        and to this connector's `classify`; a vendor adds only its credentials. A token endpoint
        gets its own client (`base_url`, `classify=token_classify`, `paced=False`: the vendor
        does not count token requests against the API's limits)."""
        settings = self.settings
        return ApiClient(
            self.name,
            base_url or settings.base_url,
            classify=classify or self.classify,
            auth=auth,
            headers=headers,
            windows=settings.windows() if paced else (),
            pace_margin=settings.pace_margin,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retry=settings.retry.policy(),
            stop_event=self.stop_event,
            pacers=pacers if paced else (),
        )

    def classify(self, response: ApiResponse) -> Verdict:
        return classify_by(self.rules, response)

    @abstractmethod
    def check(self) -> CheckReport:
        """Prove with real calls, changing nothing, that the credentials work and that every scope,
        right and field the configured work needs is there; raises a ConnectorError when the system
        cannot be reached or refuses the credentials."""

    def api_label(self) -> str:
        """ "Shopify Admin GraphQL API 2026-10": the vendor's API and the version crmsync speaks."""
        version = getattr(self.settings, "api_version", None) or self.api_version
        return " ".join(part for part in (self.api_name or f"{self.type} API", version) if part)

    def coverage_note(self) -> str | None:
        """A limit on what this system's records can tell (Shopify with `recent_orders_only`: the
        last 60 days of orders), for `report` and `explain`; None when there is none."""
        return None

    # ----- reads: declared streams, read by the shared loop ----------------------------------
    def contacts_stream(self) -> Stream | None:
        return None

    def orders_stream(self) -> Stream | None:
        return None

    def read_contacts(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        stream = self.contacts_stream()
        return read_stream(stream, checkpoint) if stream is not None else iter(())

    def read_orders(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        stream = self.orders_stream()
        return read_stream(stream, checkpoint) if stream is not None else iter(())

    def extra_streams(self) -> dict[str, Stream]:
        """Streams beyond contacts and orders, by name (Shopify's abandoned checkouts, read as
        unfinished orders when `unfinished_days` is set); records of kind ORDER are mapped by
        `order_fields`."""
        return {}

    def drift_paths(self, stream: str, kind: Kind) -> tuple[str, ...]:
        """The declared paths the drift guard expects in (nearly) every record of the stream. The
        fields only the segmentation bases read are expected only while the segments read them (a
        vendor dropping one must not stop the reads of a shop that never asked for it), and order
        lines only when they are asked for."""
        declared = self.contact_fields if kind is Kind.CONTACT else self.order_fields
        return tuple(
            spec.path
            for name, spec in declared.items()
            if (name not in BASE_ONLY_FIELDS or self.read_bases)
            and (name != "categories" or self.read_order_lines)
            and name not in self.optional_fields
        )

    def reader(self, stream: str) -> Callable[[Mapping[str, Any] | None], Iterator[Page]]:
        """How the named stream is read from a checkpoint."""
        if stream == "contacts":
            return self.read_contacts
        if stream == "orders":
            return self.read_orders
        extra = self.extra_streams()[stream]
        return lambda checkpoint: read_stream(extra, checkpoint)

    def stream(
        self,
        kind: Kind,
        fetch: Callable[[Any, Window], Reply],
        paginator: Callable[[Any], Paginator],
        records: RecordSpec,
        *,
        incremental: bool = True,
        rereads: int = 1,
        refine: Callable[[list[SourceRecord]], list[SourceRecord]] | None = None,
        repeats_boundary: bool = False,
    ) -> Stream:
        """A stream of this system, with its configured look-back."""
        lookback = self.settings.lookback if incremental else 0.0
        return Stream(
            self.name, kind, fetch, paginator, records, lookback, incremental, rereads, refine, repeats_boundary
        )

    # ----- writes ---------------------------------------------------------------------------------
    @property
    def bulk_write_threshold(self) -> int:
        """Changes in one cycle from which `write_bulk` takes them all at once; 0: the vendor has
        no bulk path."""
        return 0

    def write_bulk(self, changes: Sequence[WriteBack], guard: Callable[[], None]) -> list[WriteResult]:
        """Apply all of a cycle's changes through the vendor's bulk path (see `bulk_write_threshold`),
        calling `guard` (it raises when this process may no longer write) before each long step."""
        raise NotImplementedError(f"{self.type} has no bulk write")

    def writes_held(self) -> str | None:
        """Why this system's writes must wait this cycle, or None: work of an earlier cycle that
        the vendor is still carrying out (Shopify's bulk mutations)."""
        return None

    def write(self, changes: Sequence[WriteBack]) -> list[WriteResult]:
        """Apply at most `max_write_batch` changes; one result per change, in any order. Vendors
        whose API writes one record per call implement `write_one` instead."""
        if type(self).write_one is Connector.write_one:
            raise NotImplementedError(f"{self.type} has no write-back")
        results = []
        for change in changes:
            try:
                confirmed = self.write_one(change)
            except RejectedRecord as exc:
                results.append(WriteResult(change.record_id, False, exc.message))
            else:
                results.append(WriteResult(change.record_id, True, confirmed=confirmed))
        return results

    def write_one(self, change: WriteBack) -> bool:
        """Write one change; raise RejectedRecord when the vendor refused it. Returns False when
        the vendor's answer left it unsure the write took (a timeout after which a look-up found
        it done), so the next cycle checks."""
        raise NotImplementedError(f"{self.type} has no write-back")

    def close(self) -> None:
        self.client.close()
