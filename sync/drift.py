"""The drift guard: a stream whose answers stop matching what its connector expects stops.

A vendor that renames a field in an API version (or a misconfigured endpoint that answers with
something else) does not fail loudly: every record arrives without the field, and crmsync would
quarantine them all, or worse, compute zeros (no order attached, no revenue) and write those back.
The guard looks at each page before it is stored and fires only on strong evidence: a page of at
least `min_records` records where at least `share` of them lack the same declared field, or are
refused by the mapping for the same reason. The stream then stops with a message naming the field,
the vendor's API and its version; nothing of that page is stored, so nothing is computed or written
from it, and the cursor stays where it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.errors import ConnectorError
from mapping.fieldmaps import path_exists
from mapping.model import Contact, Order, Rejection, SourceRecord


class DriftDetected(ConnectorError):
    """A stream's answers no longer match what its connector expects."""


def path_absent(payload: Any, path: str) -> bool:
    """Whether a key along `path` is missing from an object. A null on the way, or a list index
    past the end, is an empty value, not a missing field (a customer without an address)."""
    return not path_exists(payload, path, past_the_end=True)


@dataclass(frozen=True)
class DriftGuard:
    system: str
    stream: str
    api: str  # "Shopify Admin GraphQL API 2026-10"
    paths: tuple[str, ...]  # the fields the connector declares for this stream
    min_records: int = 50
    share: float = 0.9

    def check_page(self, records: Sequence[SourceRecord], page: int) -> None:
        """Before a page is stored: does nearly every record lack one declared field?"""
        # A dict (every decoded reply's) is told before the ABC check, which costs ~1 us a record.
        payloads = [r.payload for r in records if type(r.payload) is dict or isinstance(r.payload, Mapping)]
        if len(payloads) < self.min_records:
            return
        needed = self.share * len(payloads)
        for path in self.paths:
            # A field stops being a suspect as soon as enough records hold it: on a healthy page that
            # is after a tenth of them, not every record times every field.
            missing, left = 0, len(payloads)
            for payload in payloads:
                if missing + left < needed:
                    break
                left -= 1
                if path_absent(payload, path):
                    missing += 1
            if missing >= needed:
                raise DriftDetected(
                    self.system,
                    f"{self.api}: the {self.stream} stream stopped: {missing} of {len(payloads)} records on page "
                    f"{page} have no field {path!r}; the vendor may have renamed or removed it in this API "
                    "version. Nothing of that page is stored or written; check the field map and the API "
                    "version ([drift_guard] sets how much evidence this takes)",
                )

    def check_mapped(self, results: Iterable[Contact | Order | Rejection]) -> None:
        """Before mapped records are stored: is nearly every one refused for the same reason?"""
        # Counted as they come, never held: a remap passes every stored record of a system.
        total = 0
        reasons: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for result in results:
            total += 1
            if isinstance(result, Rejection):
                reasons[result.reason] += 1
                examples.setdefault(result.reason, result.message)
        if total < self.min_records or not reasons:
            return
        reason, count = reasons.most_common(1)[0]
        if count >= self.share * total:
            example = examples[reason]
            raise DriftDetected(
                self.system,
                f"{self.api}: the {self.stream} stream stopped: {count} of {total} records would be "
                f"quarantined for the same reason ({reason}: {example}); the answers no longer match what "
                "crmsync expects. Nothing of them is stored or written ([drift_guard] sets how much "
                "evidence this takes)",
            )
