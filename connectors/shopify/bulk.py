"""Shopify's bulk operations: a big store's full read as one bulk query, and a cycle's many
write-backs as bulk mutations, both outside the per-request cost limit.

One mutation at a time costs 10 points against a bucket that refills 100 points a second, so a
first sync of a big store takes hours. For a bulk mutation crmsync writes the variables of each
mutation (`tagsAdd`, `tagsRemove`, `metafieldsSet`, `metafieldsDelete`) as a JSONL file, a line per
customer, stages it (`stagedUploadsCreate`, a form POST to the storage target), starts one
`bulkOperationRunMutation` per file, polls `bulkOperation(id:)` with backoff and reads each line's
result from the file at `url` by its `__lineNumber` (lines come back in any order). A line counts
as written only when its result says so. Sources and what is assumed: ../shared/api-notes/shopify.md,
section 7.

Tags are removed only after they were added (a second wave, for the records whose tagsAdd line was
answered, written or refused): Shopify does not say that two jobs changing one customer's tags at
once are safe, and a customer must never lose crmsync's old tags while the new ones failed. A file
stays under the storage's 100 MB. The storage target and the result files are on another host and
take no Admin API token; the signed URLs are never logged. Operations left running by a stopped
cycle are found by `active_mutations`: the cycle holds its writes to the shop until they end
(sync/apply.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import structlog
from urllib3 import encode_multipart_formdata

from connectors.errors import ApiError, PartialWrite
from connectors.http import ApiClient, ApiResponse, Verdict
from connectors.shopify.settings import TIER_KEY, TIER_NAMESPACE
from mapping import jsontext
from mapping.model import WriteBack, WriteResult

log = structlog.get_logger("crmsync.shopify.bulk")

# (operation, document, variables, cost) -> the reply's `data`
Send = Callable[[str, str, Mapping[str, Any], float], Any]
# origin (scheme://host:port) -> a client without the Admin API's credentials
Storage = Callable[[str], ApiClient]
# seconds -> None; raises Cancelled when a stop is requested
Sleep = Callable[[float], None]
# raises when this process may no longer write (the writer lock is lost)
Guard = Callable[[], None]

MAX_CONCURRENT = 5  # bulk operations of a type at a time per shop from 2026-01 (the bulk guides)
MAX_FILE_BYTES = 90 * 1024 * 1024  # the storage takes at most 100 MB a file (the bulk import guide)
TERMINAL = ("COMPLETED", "FAILED", "CANCELED", "EXPIRED")
ACTIVE = ("CREATED", "RUNNING", "CANCELING")
BUSY_CODES = ("LIMIT_REACHED", "OPERATION_IN_PROGRESS")
# How long crmsync waits for an operation: an hour past the time Shopify gives it before failing it
# itself (bulk guides: a mutation 24 hours, a query 10 days). Past that the run is lost, not slow.
MUTATION_DEADLINE_S = 25 * 3600.0
QUERY_DEADLINE_S = 10 * 24 * 3600.0 + 3600.0
CLIENT_IDENTIFIER = "crmsync-writeback"
# What runs after what: a customer's tags are added before any is removed.
WAVES = (("tagsAdd", "metafieldsSet", "metafieldsDelete"), ("tagsRemove",))

LINE_DOCUMENTS = {
    "tagsAdd": "mutation CrmsyncBulkTagsAdd($id: ID!, $tags: [String!]!) "
    "{ tagsAdd(id: $id, tags: $tags) { userErrors { field message } } }",
    "tagsRemove": "mutation CrmsyncBulkTagsRemove($id: ID!, $tags: [String!]!) "
    "{ tagsRemove(id: $id, tags: $tags) { userErrors { field message } } }",
    "metafieldsSet": "mutation CrmsyncBulkTierSet($metafields: [MetafieldsSetInput!]!) "
    "{ metafieldsSet(metafields: $metafields) { userErrors { field message code } } }",
    "metafieldsDelete": "mutation CrmsyncBulkTierDelete($metafields: [MetafieldIdentifierInput!]!) "
    "{ metafieldsDelete(metafields: $metafields) { userErrors { field message } } }",
}

STAGE = """
mutation CrmsyncStage($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url parameters { name value } }
    userErrors { field message }
  }
}
"""
RUN = """
mutation CrmsyncBulkRun($mutation: String!, $path: String!, $client: String) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $path, clientIdentifier: $client) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""
RUN_QUERY = """
mutation CrmsyncBulkRead($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""
POLL = """
query CrmsyncBulkPoll($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount url partialDataUrl }
}
"""
# The app's operations in each unended status (the reference's `status:` filter; at most five of
# a type can be active, so no order matters), checked again here with the type: the guide and the
# reference name the type filter differently (`type:` / `operation_type:`).
RECENT = """
query CrmsyncBulkRecent {
  created: bulkOperations(first: 25, query: "status:created") {
    nodes { id type status }
  }
  running: bulkOperations(first: 25, query: "status:running") {
    nodes { id type status }
  }
  canceling: bulkOperations(first: 25, query: "status:canceling") {
    nodes { id type status }
  }
}
"""
# The costs Shopify's bulk import guide shows for these calls.
STAGE_COST, RUN_COST, POLL_COST = 11.0, 10.0, 1.0


def storage_classify(response: ApiResponse) -> Verdict:
    """The storage host's replies: 5xx and 429 are worth another try; any other refusal (an expired
    signature, a file too large) is final, and never a matter of crmsync's credentials."""
    status = response.status
    if 200 <= status < 300:
        return Verdict.ok()
    if status == 429:
        return Verdict("throttled", f"storage host busy (HTTP {status})")
    if status == 408 or status >= 500:
        return Verdict("retry", f"storage host failed (HTTP {status})")
    return Verdict("fatal", f"storage host refused the request (HTTP {status})")


def jsonl(text: str) -> Iterator[str]:
    """The lines of a JSONL file: split on newlines only (str.splitlines also splits on U+2028,
    which a JSON writer may leave raw inside a string)."""
    return (line for line in text.split("\n") if line.strip())


@dataclass
class LineFile:
    """One mutation's JSONL file: a line of variables per customer, and whose each line is."""

    mutation: str
    lines: list[bytes] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, owner: str, variables: dict[str, Any]) -> None:
        line = json.dumps(variables, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        self.lines.append(line)
        self.owners.append(owner)
        self.size += len(line)

    def content(self) -> bytes:
        return b"".join(self.lines)


def line_files(changes: Sequence[WriteBack], tier_field: str, max_bytes: int = MAX_FILE_BYTES) -> list[LineFile]:
    """The files a batch of changes needs (empty ones left out), none over `max_bytes`."""
    files: dict[str, list[LineFile]] = {name: [LineFile(name)] for name in LINE_DOCUMENTS}

    def add(mutation: str, owner: str, variables: dict[str, Any]) -> None:
        current = files[mutation][-1]
        current.add(owner, variables)
        if current.size > max_bytes and len(current.lines) > 1:
            # That line goes to a file of its own kind's next.
            line, who = current.lines.pop(), current.owners.pop()
            current.size -= len(line)
            following = LineFile(mutation, [line], [who], len(line))
            files[mutation].append(following)

    for change in changes:
        if change.add_tags:
            add("tagsAdd", change.record_id, {"id": change.record_id, "tags": list(change.add_tags)})
        if change.remove_tags:
            add("tagsRemove", change.record_id, {"id": change.record_id, "tags": list(change.remove_tags)})
        if tier_field in change.set_fields:
            identifier = {"ownerId": change.record_id, "namespace": TIER_NAMESPACE, "key": TIER_KEY}
            value = change.set_fields[tier_field]
            if value:
                item = {**identifier, "type": "single_line_text_field", "value": value}
                add("metafieldsSet", change.record_id, {"metafields": [item]})
            else:
                add("metafieldsDelete", change.record_id, {"metafields": [identifier]})
    return [f for group in files.values() for f in group if f.lines]


@dataclass
class Running:
    label: str  # the mutation it runs, or the connection it reads
    id: str
    file: LineFile | None = None
    status: str = "CREATED"
    error_code: str | None = None
    url: str | None = None
    partial_url: str | None = None
    lines: dict[int, Any] | None = None  # its result file's lines by number, once read
    count: int | None = None  # the objects Shopify says it wrote (`objectCount`), once it ended


class BulkSession:
    """What bulk reads and writes share: starting an operation (again while the shop's slots are
    taken), polling it with backoff, and reading its result file from the storage host."""

    deadline_s = MUTATION_DEADLINE_S

    def __init__(
        self,
        system: str,
        send: Send,
        storage: Storage,
        sleep: Sleep,
        *,
        poll_max_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.system = system
        self.send = send
        self.storage = storage
        self.sleep = sleep
        self.poll_max_s = poll_max_s
        self.clock = clock
        self.clients: dict[str, ApiClient] = {}

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()

    def active_mutations(self) -> list[str]:
        """The app's bulk mutations that have not ended (a stopped cycle's, still at work)."""
        data = self.send("bulk-recent", RECENT, {}, POLL_COST) or {}
        nodes = [n for key in ("created", "running", "canceling") for n in (data.get(key) or {}).get("nodes") or []]
        return sorted({str(n.get("id")) for n in nodes if n.get("type") == "MUTATION" and n.get("status") in ACTIVE})

    def start(self, label: str, document: str, variables: Mapping[str, Any], root: str) -> Running:
        """Run `document` (a `bulkOperationRun*` mutation whose payload is `root`); while the shop's
        bulk slots are taken (another app's, or another crmsync's), again with backoff."""
        deadline = self.clock() + self.deadline_s
        delay = 1.0
        while True:
            data = self.send("bulk-run", document, variables, RUN_COST) or {}
            payload = data.get(root) or {}
            problems = payload.get("userErrors") or []
            operation = payload.get("bulkOperation") or {}
            if not problems and operation.get("id"):
                log.info("bulk operation started", system=self.system, what=label, operation=operation["id"])
                # Polled at least once, whatever the reply says: only the poll gives the result
                # file's url and count.
                return Running(label, str(operation["id"]))
            busy = problems and all(p.get("code") in BUSY_CODES for p in problems)
            if not busy or self.clock() > deadline:
                raise ApiError(self.system, f"{root} refused: {_messages(problems) or 'no operation'}")
            log.info("bulk slots taken, waiting", system=self.system, seconds=delay)
            self.sleep(delay)
            delay = min(delay * 2, self.poll_max_s)

    def poll(self, runs: Sequence[Running]) -> None:
        """Until every operation has ended: at once, then after 0.5 s, 1 s, 2 s ... `poll_max_s`."""
        deadline = self.clock() + self.deadline_s
        delay = 0.5
        while True:
            for run in runs:
                if run.status in TERMINAL:
                    continue
                data = self.send("bulk-poll", POLL, {"id": run.id}, POLL_COST) or {}
                node = data.get("bulkOperation")
                if not node:
                    raise ApiError(self.system, f"bulk operation {run.id} is not known to the shop")
                run.status = str(node.get("status") or run.status)
                run.error_code, run.url, run.partial_url = (
                    node.get("errorCode"),
                    node.get("url"),
                    node.get("partialDataUrl"),
                )
                count = str(node.get("objectCount", ""))  # UnsignedInt64: a string, "0" included
                run.count = int(count) if count.isdigit() else None
                if run.status in TERMINAL:
                    log.info(
                        "bulk operation ended",
                        system=self.system,
                        what=run.label,
                        status=run.status,
                        records=node.get("objectCount"),
                    )
            if all(run.status in TERMINAL for run in runs):
                return
            if self.clock() > deadline:
                raise ApiError(self.system, f"bulk operations still running after {self.deadline_s:.0f} s")
            self.sleep(delay)
            delay = min(delay * 2, self.poll_max_s)

    def download(self, url: str) -> str:
        """A result file, from a signed URL on the storage host (the signature never in a message)."""
        origin, path, query = _split(url)
        return self.client(origin).request("GET", path, params=query, expect_json=False).text

    def client(self, origin: str) -> ApiClient:
        if origin not in self.clients:
            self.clients[origin] = self.storage(origin)
        return self.clients[origin]


class BulkWriter(BulkSession):
    def write(self, changes: Sequence[WriteBack], tier_field: str, guard: Guard) -> list[WriteResult]:
        """One result per change; `PartialWrite` with the confirmed ones when an operation ended
        early. `guard` is asked before every operation starts."""
        runs: list[Running] = []
        try:
            for number, wave in enumerate(WAVES):
                # Tags come off only once the new ones are on: a later wave goes only to the
                # records whose tagsAdd line (if any) was answered, so an add that failed or was
                # lost never leaves a customer without crmsync's tags (it is not confirmed, and
                # written again next cycle, add first). A refused add lets the old tags go all the
                # same, as a page-by-page write does: held, they would keep a segment the customer
                # left, cycle after cycle (a customer at Shopify's 250 tags refuses every add). A
                # refused tier holds nothing back: it says nothing of the tags.
                held = self.unanswered([r for r in runs if r.label == "tagsAdd"]) if number else set()
                files = line_files([c for c in changes if c.record_id not in held], tier_field)
                waiting = [f for f in files if f.mutation in wave]
                while waiting:
                    group, waiting = waiting[:MAX_CONCURRENT], waiting[MAX_CONCURRENT:]
                    paths = self.stage(group)
                    started = []
                    for file, path in zip(group, paths, strict=True):
                        guard()
                        started.append(self.run_file(file, path))
                    self.poll(started)
                    runs.extend(started)
            return self.results(changes, runs)
        finally:
            self.close()

    def run_file(self, file: LineFile, path: str) -> Running:
        variables = {"mutation": LINE_DOCUMENTS[file.mutation], "path": path, "client": CLIENT_IDENTIFIER}
        run = self.start(file.mutation, RUN, variables, "bulkOperationRunMutation")
        run.file = file
        return run

    def stage(self, files: Sequence[LineFile]) -> list[str]:
        """One staged upload target per file, each uploaded by form POST; their `key`s."""
        inputs = [
            {
                "resource": "BULK_MUTATION_VARIABLES",
                "filename": f"crmsync-{f.mutation}.jsonl",
                "mimeType": "text/jsonl",
                "httpMethod": "POST",
            }
            for f in files
        ]
        data = self.send("bulk-stage", STAGE, {"input": inputs}, STAGE_COST) or {}
        payload = data.get("stagedUploadsCreate") or {}
        problems = payload.get("userErrors") or []
        targets = payload.get("stagedTargets") or []
        if problems or len(targets) != len(files):
            raise ApiError(self.system, f"stagedUploadsCreate refused: {_messages(problems) or 'no targets'}")
        paths = []
        for target, file in zip(targets, files, strict=True):
            parameters = [(p["name"], p["value"]) for p in target.get("parameters") or []]
            key = dict(parameters).get("key")
            if not key or not target.get("url"):
                raise ApiError(self.system, "stagedUploadsCreate gave a target without a url or key")
            # The signed fields first, in the order given, and the file last (the storage refuses
            # a file before them).
            fields: list[tuple[str, Any]] = [
                *parameters,
                ("file", (f"crmsync-{file.mutation}.jsonl", file.content(), "text/jsonl")),
            ]
            body, content_type = encode_multipart_formdata(fields)
            origin, path, query = _split(target["url"])
            self.client(origin).request(
                "POST",
                path,
                params=query,
                data=body,
                headers={"Content-Type": content_type},
                mutating=True,
                expect_json=False,
            )
            paths.append(key)
            log.info("staged", system=self.system, mutation=file.mutation, records=len(file.lines), bytes=len(body))
        return paths

    def results(self, changes: Sequence[WriteBack], runs: Sequence[Running]) -> list[WriteResult]:
        """A change is written when every line of it says so; refused when one says why; neither
        (a line missing, unreadable or saying nothing) and it is not confirmed: sent again."""
        problems: dict[str, list[str]] = {c.record_id: [] for c in changes}
        unconfirmed: set[str] = set()
        for run in runs:
            lines = self.result_lines(run)
            for number, owner in enumerate(run.file.owners if run.file else []):
                verdict = line_verdict(lines.get(number), run.label)
                if verdict is None:
                    unconfirmed.add(owner)
                else:
                    problems[owner].extend(verdict)
        done = [WriteResult(rid, not msgs, "; ".join(msgs)) for rid, msgs in problems.items() if rid not in unconfirmed]
        if unconfirmed:
            ended = [
                f"{r.label} {r.status.lower()} ({r.error_code or 'no code'})" for r in runs if r.status != "COMPLETED"
            ]
            why = ", ".join(ended) or "lines without a readable result"
            message = f"bulk write-back incomplete: {why}; {len(unconfirmed)} record(s) written again next cycle"
            raise PartialWrite(self.system, message, done)
        return done

    def unanswered(self, runs: Sequence[Running]) -> set[str]:
        """The records with a line in `runs` whose result says neither written nor refused."""
        return {
            owner
            for run in runs
            for number, owner in enumerate(run.file.owners if run.file else [])
            if line_verdict(self.result_lines(run).get(number), run.label) is None
        }

    def result_lines(self, run: Running) -> dict[int, Any]:
        """Each line's result by its `__lineNumber`; none when the operation left no file. Read
        from the storage host once per operation."""
        if run.lines is None:
            run.lines = self._read_result_lines(run)
        return run.lines

    def _read_result_lines(self, run: Running) -> dict[int, Any]:
        url = run.url if run.status == "COMPLETED" else run.partial_url
        if not url:
            return {}
        out: dict[int, Any] = {}
        for raw in jsonl(self.download(url)):
            try:
                line = jsontext.loads(raw)  # as every reply: a message may quote what no store holds
            except ValueError:
                continue  # an unreadable line confirms nothing: its record is written again
            number = line.get("__lineNumber") if isinstance(line, dict) else None
            if isinstance(number, int) and run.file and 0 <= number < len(run.file.owners):
                out[number] = line
        return out


def line_verdict(line: Any, mutation: str) -> list[str] | None:
    """What one result line says: [] written, [reasons] refused, None nothing to go by."""
    if not isinstance(line, dict):
        return None
    errors = line.get("errors")
    if isinstance(errors, list) and errors:
        return [str(e.get("message") if isinstance(e, dict) else e) for e in errors]
    payload = (line.get("data") or {}).get(mutation) if isinstance(line.get("data"), dict) else None
    if not isinstance(payload, dict) or not isinstance(payload.get("userErrors"), list):
        return None
    return [str(e.get("message") if isinstance(e, dict) else e) for e in payload["userErrors"]]


class BulkReader(BulkSession):
    """A full read of one connection as a bulk query: every node a line of the result file."""

    deadline_s = QUERY_DEADLINE_S  # a big store's export may take days

    def read(self, label: str, query: str) -> tuple[str, list[dict[str, Any]]]:
        """Run the query to its end: (the operation's id, its nodes in the file's order)."""
        try:
            run = self.start(label, RUN_QUERY, {"query": query}, "bulkOperationRunQuery")
            self.poll([run])
            if run.status != "COMPLETED":
                raise ApiError(
                    self.system, f"bulk read of {label} {run.status.lower()} ({run.error_code or 'no code'})"
                )
            nodes = self.nodes(run.url)
            if run.count is not None and len(nodes) != run.count:
                # A file cut on the way (a proxy or the storage answering 200 with part of it)
                # would pass for the whole store, and the pass would close without the rest:
                # asked for once more, then refused, so the pass stays open for the next cycle.
                nodes = self.nodes(run.url)
                if len(nodes) != run.count:
                    raise ApiError(
                        self.system,
                        f"bulk read of {label}: the result file held {len(nodes)} of the {run.count} "
                        "objects Shopify counted; read again next cycle",
                    )
            return run.id, nodes
        finally:
            self.close()

    def nodes(self, url: str | None) -> list[dict[str, Any]]:
        if not url:
            return []  # a query that found nothing has no file
        out = []
        for raw in jsonl(self.download(url)):
            try:
                node = jsontext.loads(raw)
            except ValueError:
                raise ApiError(self.system, "unreadable line in a bulk read's result file") from None
            if not isinstance(node, dict) or "__parentId" in node:
                # crmsync's bulk reads have no nested connection: a child line means another query.
                raise ApiError(self.system, "unexpected line in a bulk read's result file")
            out.append(node)
        return out


def _split(url: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(origin, path, query pairs): the query (a signature) goes as params, never into a message."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/", parse_qsl(parts.query)


def _messages(errors: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"{e.get('code') or ''} {e.get('message')}".strip() for e in errors)
