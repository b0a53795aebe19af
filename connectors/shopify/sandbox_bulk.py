"""Bulk operations in the emulator: staged uploads, `bulkOperationRunMutation`,
`bulkOperationRunQuery`, `bulkOperation(id:)`, `bulkOperations(query:)` and `bulkOperationCancel`,
as the 2026-10 schema and the bulk guides describe them (sources in ../shared/api-notes/shopify.md,
section 7).

- `stagedUploadsCreate` with `resource: BULK_MUTATION_VARIABLES, httpMethod: POST` hands out a form
  target served by the sandbox itself (`/staged-uploads`, the bucket Shopify's targets point at).
  The form must carry the signed parameters it was given, and a file; the `key` parameter is the
  `stagedUploadPath`. The bucket takes no Admin API token, and counts any that arrives.
- `bulkOperationRunMutation` checks the mutation (one mutation operation, valid against the schema:
  `INVALID_MUTATION`), the file (`NO_SUCH_FILE`, a line that is not a JSON object:
  `INVALID_STAGED_UPLOAD_FILE`) and the concurrency rule (five operations of a type at a time per
  shop from 2026-01 (`LIMIT_REACHED`), one before (`OPERATION_IN_PROGRESS`)).
- `bulkOperationRunQuery` checks the query guide's restrictions (one top-level connection field,
  not `node`/`nodes`, at most five connections nested at most two deep: `INVALID`) and runs the
  query over the whole connection, page sizes and cursors ignored: a line per node, a nested
  connection's nodes as lines of their own with `__parentId`. A field without its scope fails the
  operation (`ACCESS_DENIED`).
- An operation runs outside the cost bucket, in a worker thread of the sandbox (as Shopify runs it
  on its side, whether anyone polls or not), a mutation at most `bulk_lines_per_s` lines a
  second of the sandbox's clock: CREATED, RUNNING, then COMPLETED with a result file at a signed
  URL. A mutation's file holds `{"data": ..., "__lineNumber": n}` lines (`"errors"` beside them
  when a line's variables do not fit), out of input order as the guide warns.
  `bulk_fail_after` makes the next operations fail (`INTERNAL_SERVER_ERROR`) after that many lines,
  with the lines done so far at `partialDataUrl` (`bulk_fail_only`: only the mutations of these
  root fields, e.g. `["tagsAdd"]`); `bulk_damage` spoils chosen result lines;
  `bulk_cut_downloads` serves that many of the next query result files cut to half their lines,
  with status 200 (a proxy or CDN that lost the rest); `bulk_queries_held` keeps every query
  RUNNING with nothing done (a big store's export, which Shopify lets run for 10 days).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute_sync,
    get_named_type,
    parse,
    validate,
)
from werkzeug.wrappers import Request, Response

from connectors.sandbox import VendorError

if TYPE_CHECKING:
    from connectors.shopify.sandbox import ShopifySandbox
    from connectors.shopify.sandbox_graphql import Context

BULK_GID = "gid://shopify/BulkOperation/"
UPLOAD_PATH = "/staged-uploads"
RESULTS_PATH = "/bulk-results/<name>"
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
ACTIVE = ("CREATED", "RUNNING", "CANCELING")
_SIGNING_KEY = b"crmsync-sandbox-bucket"


def concurrent_operations(version: str) -> int:
    """Five bulk operations of a type at a time per shop from 2026-01, one before (the bulk guides)."""
    return 5 if version == "unstable" or version >= "2026-01" else 1


@dataclass
class BulkOperation:
    number: int
    type: str
    query: str
    document: DocumentNode
    lines: list[dict[str, Any]]
    created_at: str
    started: float  # the sandbox's monotonic clock, scaled
    client_identifier: str | None
    base_url: str
    fail_after: int | None
    status: str = "CREATED"
    done: int = 0
    results: list[str] = field(default_factory=list)
    error_code: str | None = None
    completed_at: str | None = None
    ended: float | None = None  # the sandbox clock when it left the active statuses
    cancel: bool = False
    roots: int = 0  # a query's root nodes written so far
    exhausted: bool = False  # a query has read its whole root connection

    @property
    def gid(self) -> str:
        return f"{BULK_GID}{self.number}"

    def view(self) -> dict[str, Any]:
        finished = self.status in ("COMPLETED", "FAILED", "CANCELED")
        url = partial = None
        if self.status == "COMPLETED" and self.results:
            url = result_url(self.base_url, f"{self.number}.jsonl")
        elif finished and self.results:
            partial = result_url(self.base_url, f"{self.number}-partial.jsonl")
        size = sum(len(r) + 1 for r in self.results) if finished and self.results else None
        return {
            "id": self.gid,
            "type": self.type,
            "status": self.status,
            "errorCode": self.error_code,
            "createdAt": self.created_at,
            "completedAt": self.completed_at,
            "objectCount": str(len(self.results) if self.type == "QUERY" else self.done),
            "rootObjectCount": str(self.roots if self.type == "QUERY" else self.done),
            "fileSize": None if size is None else str(size),
            "url": url,
            "partialDataUrl": partial,
            "query": self.query,
        }


class BulkState:
    """The shop's staged files and bulk operations (under the sandbox's lock)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.operations: dict[int, BulkOperation] = {}
        self.lines_per_s = 100_000.0
        self.fail_after: int | None = None
        self.fail_only: list[str] | None = None  # root fields `fail_after` applies to (None: all)
        self.cut_downloads = 0  # query result files still to serve cut short
        self.queries_held = False  # queries stay RUNNING with nothing done (a big store's export)
        # Result lines that confirm nothing, by input line number: {"null": [...], "drop": [...],
        # "garble": [...]} (`data: null`, no line at all, a line that is not JSON).
        self.damage: dict[str, list[int]] = {}
        # Requests that reached the bucket or a result file carrying the Admin API token: never wanted.
        self.tokens_seen = 0
        self.runner: threading.Thread | None = None
        self.closed = threading.Event()

    def active(self, kind: str) -> int:
        return sum(1 for op in self.operations.values() if op.type == kind and op.status in ACTIVE)


def result_url(base_url: str, name: str) -> str:
    return f"{base_url}/bulk-results/{name}?signature={_sign(name)}"


def _sign(value: str) -> str:
    return hmac.new(_SIGNING_KEY, value.encode(), hashlib.sha256).hexdigest()[:32]


def _request(info: GraphQLResolveInfo[Context]) -> Request:
    request = info.context.request
    if request is None:  # a line of a bulk operation asking for another one
        raise GraphQLError("Bulk operations cannot be started from a bulk operation.")
    return request


def _base_url(info: GraphQLResolveInfo[Context]) -> str:
    return _request(info).host_url.rstrip("/")


# ----- staged uploads --------------------------------------------------------------------------------
def staged_uploads_create(info: GraphQLResolveInfo[Context], input: list[dict[str, Any]]) -> dict[str, Any]:
    targets: list[dict[str, Any] | None] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(input):
        if item.get("resource") != "BULK_MUTATION_VARIABLES" or item.get("httpMethod") != "POST":
            # The sandbox's bucket takes form posts of bulk variables only (what crmsync sends).
            errors.append(
                {"field": ["input", str(index)], "message": "The sandbox stages BULK_MUTATION_VARIABLES by POST"}
            )
            continue
        key = f"tmp/1/bulk/{uuid4()}/{item['filename']}"
        parameters = {
            "Content-Type": str(item.get("mimeType") or "text/jsonl"),
            "success_action_status": "201",
            "acl": "private",
            "key": key,
            "x-goog-algorithm": "GOOG4-RSA-SHA256",
            "policy": _sign("policy:" + key),
            "x-goog-signature": _sign("signature:" + key),
        }
        targets.append(
            {
                "url": _base_url(info) + UPLOAD_PATH,
                "resourceUrl": f"{_base_url(info)}{UPLOAD_PATH}/{key}",
                "parameters": [{"name": n, "value": v} for n, v in parameters.items()],
            }
        )
    return {"stagedTargets": targets if not errors else None, "userErrors": errors}


def upload(sandbox: ShopifySandbox, request: Request) -> Response:
    """`POST /staged-uploads`: the bucket's form post. Every signed field must be there and match
    the key; the file comes last."""
    _count_token(sandbox, request)
    if (request.content_length or 0) > MAX_UPLOAD_BYTES:
        return _xml_error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
    form = request.form
    key = form.get("key") or ""
    signed_ok = (
        key
        and hmac.compare_digest(form.get("policy", ""), _sign("policy:" + key))
        and hmac.compare_digest(form.get("x-goog-signature", ""), _sign("signature:" + key))
        and form.get("success_action_status") == "201"
        and form.get("acl") == "private"
        and form.get("Content-Type")
    )
    if not signed_ok:
        return _xml_error(403, "AccessDenied", "Invalid according to Policy: Policy Condition failed.")
    upload_file = request.files.get("file")
    if upload_file is None:
        return _xml_error(400, "InvalidArgument", "The file must be the last field of the form.")
    content = upload_file.read()
    with sandbox.lock:
        sandbox.bulk.files[key] = content
    body = (
        "<?xml version='1.0' encoding='UTF-8'?><PostResponse>"
        f"<Location>{request.host_url.rstrip('/')}{UPLOAD_PATH}/{key}</Location>"
        f'<Bucket>shopify-staged-uploads</Bucket><Key>{key}</Key><ETag>"{hashlib.md5(content).hexdigest()}"</ETag>'
        "</PostResponse>"
    )
    return Response(body, status=201, content_type="application/xml")


def download(sandbox: ShopifySandbox, request: Request, name: str) -> Response:
    """`GET /bulk-results/<n>.jsonl`: a result file at its signed URL, no Admin API token."""
    _count_token(sandbox, request)
    if not hmac.compare_digest(request.args.get("signature", ""), _sign(name)):
        return _xml_error(403, "AccessDenied", "Access denied.")
    with sandbox.lock:
        advance(sandbox)
        stem = name.split(".")[0].split("-")[0]  # `<n>.jsonl` or `<n>-partial.jsonl`
        number = int(stem) if stem.isdigit() else -1
        op = sandbox.bulk.operations.get(number)
        if op is None or op.status in ACTIVE:
            return _xml_error(404, "NoSuchKey", "The specified key does not exist.")
        # A mutation's input is not processed in order (the bulk import guide): neither are its
        # results. A query keeps each connection's order (the bulk query guide).
        shuffled = list(range(len(op.results)))
        if op.type == "MUTATION":
            shuffled.sort(key=lambda n: hashlib.md5(str(n).encode()).digest())
        if op.type == "QUERY" and sandbox.bulk.cut_downloads > 0:
            sandbox.bulk.cut_downloads -= 1
            shuffled = shuffled[: len(shuffled) // 2]
        text = "".join(op.results[n] + "\n" for n in shuffled if op.results[n])
    return Response(text, status=200, content_type="application/jsonl")


def _count_token(sandbox: ShopifySandbox, request: Request) -> None:
    """The storage host never wants the Admin API token: count each that reaches it."""
    if request.headers.get("X-Shopify-Access-Token"):
        with sandbox.lock:
            sandbox.bulk.tokens_seen += 1


def _xml_error(status: int, code: str, message: str) -> Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return Response(body, status=status, content_type="application/xml")


# ----- bulk mutations --------------------------------------------------------------------------------
def run_mutation(
    info: GraphQLResolveInfo[Context],
    mutation: str,
    stagedUploadPath: str,  # the schema's argument names
    clientIdentifier: str | None = None,
    groupObjects: bool = True,
) -> dict[str, Any]:
    sandbox = info.context.sandbox
    state = sandbox.bulk

    def refused(code: str, message: str, where: str | None = None) -> dict[str, Any]:
        return {
            "bulkOperation": None,
            "userErrors": [{"field": [where] if where else None, "message": message, "code": code}],
        }

    document = _mutation_document(mutation, info.schema)
    if document is None:
        return refused(
            "INVALID_MUTATION", "Invalid mutation: one mutation operation, valid against the schema.", "mutation"
        )
    content = state.files.get(stagedUploadPath)
    if content is None:
        return refused("NO_SUCH_FILE", "The JSONL file could not be found.", "stagedUploadPath")
    lines = _jsonl_objects(content)
    if lines is None:
        return refused("INVALID_STAGED_UPLOAD_FILE", "Unexpected file structure - expected JSONL", "stagedUploadPath")
    busy = _busy(info, "MUTATION")
    if busy is not None:
        return refused(*busy)
    op = _create(info, "MUTATION", mutation, document, lines, clientIdentifier)
    return {"bulkOperation": op.view(), "userErrors": []}


def _busy(info: GraphQLResolveInfo[Context], kind: str) -> tuple[str, str] | None:
    """(code, message) when the shop's slots for this type of operation are all taken."""
    limit = concurrent_operations(_request(info).path.split("/")[3])
    if info.context.sandbox.bulk.active(kind) < limit:
        return None
    if limit == 1:
        return "OPERATION_IN_PROGRESS", f"A bulk {kind.lower()} operation for this app and shop is already in progress."
    return "LIMIT_REACHED", "Bulk operations limit reached. Please try again later."


def _create(
    info: GraphQLResolveInfo[Context],
    kind: str,
    text: str,
    document: DocumentNode,
    lines: list[dict[str, Any]],
    client_identifier: str | None = None,
) -> BulkOperation:
    sandbox = info.context.sandbox
    state = sandbox.bulk
    number = 1 + max(state.operations, default=0)
    op = BulkOperation(
        number=number,
        type=kind,
        query=text,
        document=document,
        lines=lines,
        created_at=sandbox.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        started=sandbox_clock(sandbox),
        client_identifier=client_identifier,
        base_url=_base_url(info),
        fail_after=state.fail_after if state.fail_only is None or _root_field(document) in state.fail_only else None,
    )
    state.operations[number] = op
    if state.runner is None:
        state.runner = threading.Thread(target=_work, args=(sandbox,), name="shopify-bulk", daemon=True)
        state.runner.start()
    return op


# ----- bulk queries ----------------------------------------------------------------------------------
def run_query(info: GraphQLResolveInfo[Context], query: str, groupObjects: bool = False) -> dict[str, Any]:
    """`bulkOperationRunQuery`: the query guide's restrictions, then an operation over the whole
    connection (page sizes and cursors ignored)."""
    problem = _query_problem(query, info.schema)
    if problem is not None:
        return {"bulkOperation": None, "userErrors": [{"field": ["query"], "message": problem, "code": "INVALID"}]}
    busy = _busy(info, "QUERY")
    if busy is not None:
        code, message = busy
        return {"bulkOperation": None, "userErrors": [{"field": None, "message": message, "code": code}]}
    op = _create(info, "QUERY", query, parse(query), [])
    return {"bulkOperation": op.view(), "userErrors": []}


def _query_problem(text: str, schema: GraphQLSchema) -> str | None:
    """What the query guide's restrictions say of a bulk query: None when it may run."""
    try:
        document = parse(text)
    except GraphQLError as exc:
        return f"Invalid bulk query: {exc.message}"
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.QUERY:
        return "Invalid bulk query: one query operation"
    errors = validate(schema, document)
    if errors:
        return f"Invalid bulk query: {errors[0].message}"
    roots = [s for s in operations[0].selection_set.selections if isinstance(s, FieldNode)]
    if len(roots) != 1:
        return "Bulk queries support a single top-level field"
    if roots[0].name.value in ("node", "nodes"):
        return "The top-level node and nodes fields can't be used in bulk queries"
    query_type = schema.query_type
    assert query_type is not None
    depths: list[int] = []  # each connection's nesting depth, in document order

    def walk(node: FieldNode, parent: GraphQLObjectType | GraphQLInterfaceType, depth: int) -> None:
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return
        named = get_named_type(definition.type)
        if named.name.endswith("Connection"):
            depth += 1
            depths.append(depth)
        if node.selection_set is not None and isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            for child in node.selection_set.selections:
                if isinstance(child, FieldNode):
                    walk(child, named, depth)

    walk(roots[0], query_type, 0)
    root_type = get_named_type(query_type.fields[roots[0].name.value].type)
    if not root_type.name.endswith("Connection"):
        return "Bulk queries must start with a connection"
    if len(depths) > 5:
        return "Bulk queries can have at most five connections"
    if max(depths) > 2:
        return "Bulk queries can nest connections at most two levels deep"
    return None


def _run_query_slice(sandbox: ShopifySandbox, op: BulkOperation, size: int) -> None:
    """The next `size` root nodes: a line each, then a line per child of each nested connection."""
    from connectors.shopify.sandbox_graphql import Context, admin_schema, roots

    context = Context(sandbox, None)
    context.bulk_slice = (op.roots, size)
    result = execute_sync(admin_schema(), op.document, root_value=roots(sandbox), context_value=context)
    if result.errors or not result.data:
        denied = any((e.extensions or {}).get("code") == "ACCESS_DENIED" for e in result.errors or [])
        op.status, op.ended = "FAILED", sandbox_clock(sandbox)
        op.error_code = "ACCESS_DENIED" if denied else "INTERNAL_SERVER_ERROR"
        return
    connection = next(iter(result.data.values()))
    nodes = [e["node"] for e in connection.get("edges") or []] or list(connection.get("nodes") or [])
    for node in nodes:
        op.results.extend(
            json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str) for line in _flatten(node, None)
        )
    op.roots += len(nodes)
    op.exhausted = not context.bulk_more


def _flatten(node: dict[str, Any], parent: str | None) -> list[dict[str, Any]]:
    """A node as its line, without its nested connections, whose nodes follow as lines of their
    own with `__parentId` (the JSONL of a bulk query)."""
    own: dict[str, Any] = {}
    children: list[dict[str, Any]] = []
    for key, value in node.items():
        if (
            isinstance(value, dict)
            and ("edges" in value or "nodes" in value)
            and set(value) <= {"edges", "nodes", "pageInfo"}
        ):
            kids = [e["node"] for e in value.get("edges") or []] or list(value.get("nodes") or [])
            for kid in kids:
                children.extend(_flatten(kid, node.get("id")))
        else:
            own[key] = value
    if parent is not None:
        own["__parentId"] = parent
    return [own, *children]


def _work(sandbox: ShopifySandbox) -> None:
    """The operations' worker: a slice of lines at a time under the lock (requests go on between),
    until none is active or the sandbox stops."""
    state = sandbox.bulk
    while not state.closed.is_set():
        with sandbox.lock:
            advance(sandbox, budget=500)
            if not any(op.status in ACTIVE for op in state.operations.values()):
                state.runner = None
                return
        state.closed.wait(0.002)


def _mutation_document(text: str, schema: Any) -> DocumentNode | None:
    try:
        document = parse(text)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation != OperationType.MUTATION or validate(schema, document):
        return None
    return document


def _jsonl_objects(content: bytes) -> list[dict[str, Any]] | None:
    out: list[dict[str, Any]] = []
    try:
        for raw in content.decode("utf-8").split("\n"):
            if not raw.strip():
                continue
            value = json.loads(raw)
            if not isinstance(value, dict):
                return None
            out.append(value)
    except (UnicodeDecodeError, ValueError):
        return None
    return out


def sandbox_clock(sandbox: ShopifySandbox) -> float:
    return time.monotonic() * sandbox.time_scale


def advance(sandbox: ShopifySandbox, budget: int = 200) -> None:
    """Run active operations' lines up to where the clock says they are, at most `budget` lines in
    all (under the lock; a request that advances them stays quick)."""
    state = sandbox.bulk
    now = sandbox_clock(sandbox)
    for op in state.operations.values():
        if op.status not in ACTIVE:
            continue
        if op.cancel:
            op.status, op.ended = "CANCELED", now
            continue
        if op.type == "QUERY":
            if state.queries_held:
                op.status = "RUNNING"
                continue
            budget = _advance_query(sandbox, op, now, budget)
            continue
        due = min(len(op.lines), int((now - op.started) * state.lines_per_s))
        if op.fail_after is not None:
            due = min(due, op.fail_after)
        if due > op.done or op.status == "CREATED":
            op.status = "RUNNING"
        while op.done < due and budget > 0:
            op.results.append(_run_line(sandbox, op, op.done))
            op.done += 1
            budget -= 1
        if op.fail_after is not None and op.done >= op.fail_after and op.done < len(op.lines):
            op.status, op.error_code, op.ended = "FAILED", "INTERNAL_SERVER_ERROR", now
        elif op.done >= len(op.lines):
            op.status, op.ended = "COMPLETED", now
            op.completed_at = sandbox.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def _advance_query(sandbox: ShopifySandbox, op: BulkOperation, now: float, budget: int) -> int:
    """A query's next root nodes, as many as the budget allows (a query is never slowed: the
    tests slow mutations, to stop crmsync while one runs); the budget left."""
    due = budget
    op.status = "RUNNING"
    while not op.exhausted and due > 0 and budget > 0 and op.status == "RUNNING":
        size = min(due, budget, 250)
        before = op.roots
        _run_query_slice(sandbox, op, size)
        done = op.roots - before
        due, budget = due - max(done, 1), budget - max(done, 1)
    if op.exhausted and op.status == "RUNNING":
        op.status, op.ended = "COMPLETED", now
        op.completed_at = sandbox.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    return budget


def _run_line(sandbox: ShopifySandbox, op: BulkOperation, index: int) -> str:
    from connectors.shopify.sandbox_graphql import Context, admin_schema, roots

    result = execute_sync(
        admin_schema(),
        op.document,
        root_value=roots(sandbox),
        context_value=Context(sandbox, None),
        variable_values=op.lines[index],
    )
    damage = sandbox.bulk.damage
    if index in damage.get("drop", ()):
        return ""
    if index in damage.get("garble", ()):
        return '{"data": {"tagsAdd": '
    line: dict[str, Any] = {}
    if result.errors:
        line["errors"] = [{"message": e.message} for e in result.errors]
    line["data"] = None if index in damage.get("null", ()) else result.data
    line["__lineNumber"] = index
    # Raw UTF-8, as Shopify's writer leaves it (a U+2028 inside a string included).
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str)


def bulk_operation(info: GraphQLResolveInfo[Context], id: str) -> dict[str, Any] | None:
    op = _find(info.context.sandbox, id)
    return op.view() if op else None


def bulk_operations(info: GraphQLResolveInfo[Context], **args: Any) -> dict[str, Any]:
    """The app's operations, newest first, filtered by `status:` and `operation_type:` terms."""
    wanted: dict[str, str] = {}
    for term in str(args.get("query") or "").split():
        name, _, value = term.partition(":")
        if name not in ("status", "operation_type"):
            raise GraphQLError(f"Unsupported filter: {term}", extensions={"code": "BAD_REQUEST"})
        wanted[name] = value.strip("'\"").upper()
    ops = sorted(info.context.sandbox.bulk.operations.values(), key=lambda op: op.number, reverse=True)
    chosen = [
        op.view()
        for op in ops
        if op.status == wanted.get("status", op.status) and op.type == wanted.get("operation_type", op.type)
    ]
    size = args.get("first") or args.get("last") or 0
    if not 0 < size <= 250:
        raise GraphQLError("you must provide one of first or last, at most 250", extensions={"code": "BAD_REQUEST"})
    shown = chosen[:size]
    return {
        "nodes": shown,
        "edges": [{"cursor": n["id"], "node": n} for n in shown],
        "pageInfo": {
            "hasNextPage": len(chosen) > size,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }


def cancel(info: GraphQLResolveInfo[Context], id: str) -> dict[str, Any]:
    op = _find(info.context.sandbox, id)
    if op is None:
        return {"bulkOperation": None, "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}]}
    if op.status not in ACTIVE:
        message = f"A bulk operation cannot be canceled when it is {op.status.lower()}"
        return {"bulkOperation": op.view(), "userErrors": [{"field": None, "message": message}]}
    op.cancel, op.status = True, "CANCELING"
    return {"bulkOperation": op.view(), "userErrors": []}


def _find(sandbox: ShopifySandbox, gid: str) -> BulkOperation | None:
    if not gid.startswith(BULK_GID) or not gid[len(BULK_GID) :].isdigit():
        return None
    return sandbox.bulk.operations.get(int(gid[len(BULK_GID) :]))


def _root_field(document: DocumentNode) -> str | None:
    """The first root field an operation's document selects (a bulk mutation has one)."""
    for definition in document.definitions:
        selections = getattr(getattr(definition, "selection_set", None), "selections", None) or ()
        for selection in selections:
            name = getattr(selection, "name", None)
            if name is not None:
                return str(name.value)
    return None


def change_settings(state: BulkState, partial: dict[str, Any]) -> None:
    """`bulk_lines_per_s`, `bulk_fail_after`, `bulk_fail_only`, `bulk_cut_downloads` and
    `bulk_queries_held` through `/_sandbox/app` (taken out of `partial`)."""
    if "bulk_lines_per_s" in partial:
        rate = partial.pop("bulk_lines_per_s")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            raise VendorError(400, "bad_request", "bulk_lines_per_s is a positive number")
        state.lines_per_s = float(rate)
    if "bulk_fail_after" in partial:
        after = partial.pop("bulk_fail_after")
        if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
            raise VendorError(400, "bad_request", "bulk_fail_after is a number of lines or null")
        state.fail_after = after
    if "bulk_cut_downloads" in partial:
        cut = partial.pop("bulk_cut_downloads")
        if isinstance(cut, bool) or not isinstance(cut, int) or cut < 0:
            raise VendorError(400, "bad_request", "bulk_cut_downloads is a number of downloads")
        state.cut_downloads = cut
    if "bulk_queries_held" in partial:
        held = partial.pop("bulk_queries_held")
        if not isinstance(held, bool):
            raise VendorError(400, "bad_request", "bulk_queries_held is true or false")
        state.queries_held = held
    if "bulk_fail_only" in partial:
        only = partial.pop("bulk_fail_only")
        if only is not None and (not isinstance(only, list) or not all(isinstance(n, str) for n in only)):
            raise VendorError(400, "bad_request", "bulk_fail_only is a list of mutation names or null")
        state.fail_only = only
    if "bulk_damage" in partial:
        damage = partial.pop("bulk_damage")
        kinds = ("null", "drop", "garble")
        if not isinstance(damage, dict) or any(k not in kinds or not isinstance(v, list) for k, v in damage.items()):
            raise VendorError(400, "bad_request", "bulk_damage maps null, drop or garble to line numbers")
        state.damage = {k: [int(n) for n in v] for k, v in damage.items()}


def settings_view(state: BulkState) -> Mapping[str, Any]:
    return {
        "bulk_lines_per_s": state.lines_per_s,
        "bulk_fail_after": state.fail_after,
        "bulk_fail_only": state.fail_only,
        "bulk_cut_downloads": state.cut_downloads,
        "bulk_queries_held": state.queries_held,
        "bulk_damage": state.damage,
    }
