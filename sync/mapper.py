"""The mapper factory: the pure mapping of one vendor record, through its connector's hooks."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.base import Connector
from mapping.fieldmaps import Canonical, FieldAbsence, MappingRules, map_contact, map_order, read_fields
from mapping.model import Contact, Kind, Order, RecordProblem, Rejection, SourceRecord, is_object
from sync.state import Mapper


def canonical_ids(connectors: Mapping[str, Connector]) -> Canonical:
    """A stored cross-system id (a contact's `link:<system>` value) as that system's own record
    id, by its connector; None where it cannot be one or the system is not configured."""

    def canonical(system: str, raw: str) -> str | None:
        target = connectors.get(system)
        return target.canonical_id(raw) if target is not None else None

    return canonical


def make_mapper(
    connector: Connector,
    kind: Kind,
    connectors: Mapping[str, Connector],
    rules: MappingRules | None = None,
    absent: FieldAbsence | None = None,
) -> Mapper:
    """The pure mapping of one record, guarded: a payload that trips the mapping code is
    quarantined with the reason instead of stopping the run."""
    fields = connector.contact_fieldmap
    canonical = canonical_ids(connectors)

    def mapper(record: SourceRecord) -> Contact | Order | Rejection:
        try:
            if not is_object(record.payload):
                return Rejection("wrong_type", f"{kind.value} payload is not an object")
            if kind is Kind.CONTACT:
                owned = connector.owned_state(record.payload)
                return map_contact(record, fields, owned, canonical, rules, absent)
            payload = record.payload
            return map_order(
                record, connector.order_fields, connector.order_counts(payload), connector.order_unfinished(payload)
            )
        except RecordProblem as problem:
            # A held order still says whose it is (an erased customer's orders stay out).
            customer = None
            if kind is Kind.ORDER and is_object(record.payload):
                customer = read_fields(record.payload, connector.order_fields, ("customer_id",)).get("customer_id")
            return Rejection(problem.reason, problem.message[:300], customer)
        except Exception as exc:
            return Rejection("unreadable", f"{type(exc).__name__}: {exc}"[:300])

    return mapper
