"""The layer contract of docs/architecture.md, checked over the import graph.

    cli -> services -> db, wire, ssh;   everything may use the base modules
    (requestor.errors, text, status, settings).

ssh/ is transport: it imports no local state, no service and no command; db/
never imports upward; wire/ is the contract alone; the base modules import no
layer above them; and the layers form no cycle. Every import counts: at module
level, inside functions, and under ``if TYPE_CHECKING:``. The devnet (being
moved into its own distribution) is left out.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "requestor"
EXCLUDED = ("_migrations/",)

# layer -> the layers it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "cli": {"services", "ssh", "wire", "base"},  # never db: services return their own types
    "services": {"db", "wire", "ssh", "base"},
    "db": {"wire", "base"},
    "ssh": {"base"},
    "wire": {"base"},
    "base": set(),
}
BASE_MODULES = {"errors", "text", "status", "settings", "statefiles", "__init__"}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name inside requestor; None outside it."""
    parts = module.split(".")
    if parts[0] != "requestor":
        return None
    if len(parts) == 1:
        return "base"
    if parts[1] == "__main__":
        return "cli"  # the entry point
    if parts[1] in ALLOWED:
        return parts[1]
    if parts[1] in BASE_MODULES:
        return "base"
    if parts[1] == "devnet":
        return "devnet"
    raise AssertionError(f"{module}: no layer; add it to tests/test_layers.py")


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports, anywhere in the file, with its line."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # ``from requestor import db`` imports the subpackage itself.
            found.extend((f"{target}.{alias.name}", node.lineno) for alias in node.names)
    return found


def sources() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not any(str(path.relative_to(PACKAGE)).startswith(x) for x in EXCLUDED)
    ]


def edges() -> list[tuple[str, str, str]]:
    """(from layer, to layer, where) for every import between requestor modules."""
    found = []
    for path in sources():
        source = layer_of(module_name(path))
        assert source is not None
        for target, line in imports(path):
            try:
                layer = layer_of(target)
            except AssertionError:
                continue  # ``from requestor.x import name``: the module edge is counted
            if layer is not None and layer != source:
                found.append((source, layer, f"{path.relative_to(PACKAGE.parent)}:{line} {target}"))
    return found


def test_the_check_sees_the_tree() -> None:
    names = {module_name(p) for p in sources()}
    assert {"requestor.cli.vm", "requestor.services.access", "requestor.ssh.client"} <= names
    assert ("cli", "services") in {(a, b) for a, b, _ in edges()}


def test_each_layer_imports_only_what_it_may() -> None:
    wrong = [
        f"{where} ({source} -> {target})"
        for source, target, where in edges()
        if target not in ALLOWED[source]
    ]
    assert wrong == [], "imports that break the layer contract:\n" + "\n".join(wrong)


def test_no_cycles_between_layers() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target, _ in edges():
        graph[source].add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cyclic = sorted(layer for layer in list(graph) if reaches(layer, layer, {layer}))
    assert cyclic == []


def test_no_command_exits_the_process_itself() -> None:
    """The root group (cli/main.py) alone turns outcomes into exit codes."""
    offenders = []
    for path in sources():
        relative = str(path.relative_to(PACKAGE))
        if not relative.startswith("cli/") or relative == "cli/main.py":
            continue
        text = path.read_text()
        for needle in ("sys.exit", "SystemExit", "ctx.exit", ".exit("):
            if needle in text:
                offenders.append(f"{relative}: {needle}")
    assert offenders == []
