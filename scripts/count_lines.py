"""How big the connector code is, at this tree or at a commit, by what a line does.

    python scripts/count_lines.py                  # the working tree
    python scripts/count_lines.py --ref 406eb3c    # a commit (read with git, nothing checked out)
    python scripts/count_lines.py --base 406eb3c   # the working tree against a commit

Code lines are lines that are neither blank, nor comments, nor docstrings. The read and write
paths of a vendor are the functions of its client modules reachable from its read and write entry
points (see `path_lines`); the shared read loop and paginators are counted once, as the kit. "Client" is every module
of a vendor folder that talks to the vendor (all but the emulator, the demo fixtures and the
declarations); "kit" is the shared code the clients read and write through (paging, window,
streams, base, http, auth). Also lists the modules in connectors/ and sync/ over 600 lines.
"""

from __future__ import annotations

import argparse
import ast
import io
import subprocess
import sys
import textwrap
import tokenize
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDORS = ("shopify", "woocommerce", "lightspeed", "afas", "superoffice", "efficy", "silvasoft")
NOT_CLIENT = ("sandbox", "fixtures", "vendor", "__init__")
KIT = ("paging", "window", "streams", "base", "http", "auth")
LIMIT = 600


def code_lines(source: str) -> int:
    """Lines holding code: no blank, comment-only or docstring lines."""
    docstrings: set[int] = set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            continue
        if token.type == tokenize.ENDMARKER:
            continue
        lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docstrings)
    return len(lines)


ENTRIES = frozenset({"read_contacts", "read_orders", "contacts_stream", "orders_stream", "write", "write_one"})


def path_lines(sources: list[str]) -> int:
    """Code lines of a vendor's read and write paths: every function or method of its client
    modules reachable from the entry points (the two reads, the two stream declarations, `write`,
    `write_one`) through the names they use, each counted once."""
    defs: dict[str, list[tuple[int, set[str]]]] = {}
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        lines = source.splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                text = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                used |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                defs.setdefault(node.name, []).append((code_lines(textwrap.dedent(text)), used))
    reached: set[str] = set()
    todo = [name for name in ENTRIES if name in defs]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        for _, used in defs[name]:
            todo.extend(n for n in used if n in defs and n not in reached)
    return sum(size for name in reached for size, _ in defs[name])


def tree_files(ref: str | None) -> tuple[list[str], Callable[[str], str]]:
    if ref is None:
        files = [str(p.relative_to(ROOT)) for p in ROOT.glob("*/**/*.py") if ".venv" not in p.parts]
        return files, lambda path: (ROOT / path).read_text(encoding="utf-8")
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", ref], cwd=ROOT, capture_output=True, text=True, check=True
    )
    files = [f for f in listing.stdout.splitlines() if f.endswith(".py")]
    return (
        files,
        lambda path: (
            subprocess.run(
                ["git", "show", f"{ref}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True
            ).stdout
        ),
    )


@dataclass
class Sizes:
    client: dict[str, int] = field(default_factory=dict)  # code lines of each vendor's client modules
    emulator: dict[str, int] = field(default_factory=dict)  # code lines of each vendor's emulator
    client_py: dict[str, int] = field(default_factory=dict)  # physical lines of client.py
    over_limit: dict[str, int] = field(default_factory=dict)  # physical lines of modules over LIMIT
    paths: dict[str, int] = field(default_factory=dict)  # code lines of each vendor's read and write paths
    kit: int = 0

    @property
    def clients(self) -> int:
        return sum(self.client.values())


def measure(ref: str | None) -> Sizes:
    files, read = tree_files(ref)
    sizes = Sizes()
    client_sources: dict[str, list[str]] = {}
    for path in sorted(files):
        parts = Path(path).parts
        if parts[0] not in ("connectors", "sync"):
            continue
        source = read(path)
        if source.count("\n") > LIMIT:
            sizes.over_limit[path] = source.count("\n")
        if parts[0] == "connectors" and len(parts) == 3 and parts[1] in VENDORS:
            vendor, name = parts[1], Path(parts[2]).stem
            if name == "client":
                sizes.client_py[vendor] = source.count("\n")
            if name.startswith("sandbox"):
                sizes.emulator[vendor] = sizes.emulator.get(vendor, 0) + code_lines(source)
            elif not name.startswith(NOT_CLIENT):
                sizes.client[vendor] = sizes.client.get(vendor, 0) + code_lines(source)
                client_sources.setdefault(vendor, []).append(source)
        elif parts[0] == "connectors" and len(parts) == 2 and Path(parts[1]).stem in KIT:
            sizes.kit += code_lines(source)
    sizes.paths = {vendor: path_lines(sources) for vendor, sources in client_sources.items()}
    return sizes


def change(now: int, was: int) -> str:
    return f"{now - was:+d} lines ({(now - was) / was:+.1%})" if was else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ref", help="measure this commit instead of the working tree")
    parser.add_argument("--base", help="also measure this commit and show the change")
    args = parser.parse_args()
    now = measure(args.ref)
    before = measure(args.base) if args.base else None
    print(
        f"{'vendor':<12} {'paths':>6} {'before':>7} {'client':>7} {'before':>7} {'client.py':>10} "
        f"{'emulator':>9} {'before':>7}"
    )
    for vendor in VENDORS:
        was = before or Sizes()
        print(
            f"{vendor:<12} {now.paths.get(vendor, 0):>6} {was.paths.get(vendor, 0):>7} "
            f"{now.client.get(vendor, 0):>7} {was.client.get(vendor, 0):>7} "
            f"{now.client_py.get(vendor, 0):>10} {now.emulator.get(vendor, 0):>9} {was.emulator.get(vendor, 0):>7}"
        )
    paths = sum(now.paths.values())
    print(f"read and write path code lines ({args.ref or 'working tree'}): {paths}")
    print(f"client code lines ({args.ref or 'working tree'}): {now.clients}, shared kit {now.kit}")
    if before is not None:
        print(f"client code lines ({args.base}): {before.clients}, shared kit {before.kit}")
        print(f"read and write path code lines ({args.base}): {sum(before.paths.values())}")
        print(f"vendors' read and write paths: {change(paths, sum(before.paths.values()))}")
        print(f"vendors' client code: {change(now.clients, before.clients)}")
        print(f"vendors' client code and the kit: {change(now.clients + now.kit, before.clients + before.kit)}")
        print(f"emulators: {change(sum(now.emulator.values()), sum(before.emulator.values()))}")
    over = ", ".join(f"{path} ({n})" for path, n in now.over_limit.items()) or "none"
    print(f"modules over {LIMIT} lines in connectors/ and sync/: {over}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
