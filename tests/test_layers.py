"""The import graph of ``src/fulmen``: floors, lowest first, and no circle.

Every module sits on one floor of :data:`LAYERS`; it may import from its own floor and those below,
never from a floor above. Every import counts: at the top of a module, inside a function (a lazy
import) or under ``TYPE_CHECKING`` (a circle of annotations is still a circle for a reader). Read
with ``ast``: nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "fulmen"

#: The floors of the package, lowest first. A name stands for a module, or a package and all in it.
LAYERS: list[tuple[str, ...]] = [
    # Tools of their own: no other fulmen module; the hot path's caches (each server's), filled by the
    # access log, the response rules and the protocols above.
    ("fulmen._version", "fulmen.logging", "fulmen.importer", "fulmen.heap", "fulmen.log_config"),
    ("fulmen.caches",),
    # The option table, the checks of its values, and the access line.
    ("fulmen.options", "fulmen.checks", "fulmen.access_log"),
    # What the configuration resolves to: forwarding rules, reload patterns, the middleware it wraps
    # around applications.
    ("fulmen.forwarding", "fulmen.reload_patterns", "fulmen.middleware"),
    # Where the server listens (--bind, socket activation, --reuse-port), and what it counts
    # (--metrics-bind; the protocols hold its counters).
    ("fulmen.listeners", "fulmen.metrics"),
    ("fulmen.config",),
    ("fulmen.lifespan",),
    # The server runs whichever protocol class the configuration names, so it imports none of them;
    # the protocols share its ServerState.
    ("fulmen.server",),
    # The protocol floor: the base of every connection protocol, the ASGI response rules, the output.
    ("fulmen.protocols",),
    ("fulmen.http",),
    # WebSocket is reached through an HTTP/1.1 upgrade, and answers its handshake in HTTP/1.1 bytes.
    ("fulmen.websockets",),
    ("fulmen.supervisors",),
    # run() and the command that calls it.
    ("fulmen.runner",),
    ("fulmen.cli",),
    ("fulmen.main", "fulmen", "fulmen.__main__"),
]

def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = ["fulmen", *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, source: str, modules: set[str]) -> set[str]:
    """The fulmen modules that ``source`` (the module ``name``) imports, wherever the import stands."""
    package = name if _is_package(name, modules) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {target for target in found if target in modules and target != name}


def _is_package(name: str, modules: set[str]) -> bool:
    return any(other.startswith(name + ".") for other in modules)


def layer_of(name: str, layers: list[tuple[str, ...]] = LAYERS) -> int | None:
    """The floor of a module: the one of the longest name in LAYERS that is it or contains it."""
    best: tuple[int, int] | None = None
    for floor, names in enumerate(layers):
        for entry in names:
            if name == entry or name.startswith(entry + "."):
                if best is None or len(entry) > best[1]:
                    best = (floor, len(entry))
    return None if best is None else best[0]


def upward_imports(graph: dict[str, set[str]], layers: list[tuple[str, ...]] = LAYERS) -> list[str]:
    found = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            source_floor, target_floor = layer_of(source, layers), layer_of(target, layers)
            if source_floor is not None and target_floor is not None and target_floor > source_floor:
                found.append(f"{source} (floor {source_floor}) imports {target} (floor {target_floor})")
    return found


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = module_names()
    names = set(modules)
    return {name: imports_of(name, path.read_text(), names) for name, path in modules.items()}


def test_every_module_is_on_a_floor(graph: dict[str, set[str]]) -> None:
    unplaced = sorted(name for name in graph if layer_of(name) is None)
    assert not unplaced, f"modules on no floor of LAYERS (add them where they belong): {unplaced}"


def test_no_module_imports_from_a_floor_above(graph: dict[str, set[str]]) -> None:
    assert upward_imports(graph) == []


def test_no_import_circle(graph: dict[str, set[str]]) -> None:
    assert [sorted(group) for group in circles(graph)] == []


# -- the checks themselves can fail


def test_an_upward_import_is_found() -> None:
    source = "def f():\n    from fulmen.http.cycle import RequestResponseCycle\n"
    modules = {"fulmen.protocols.output", "fulmen.http.cycle", "fulmen.http"}
    graph = {"fulmen.protocols.output": imports_of("fulmen.protocols.output", source, modules)}
    assert upward_imports(graph) == [
        f"fulmen.protocols.output (floor {layer_of('fulmen.protocols')}) imports fulmen.http.cycle "
        f"(floor {layer_of('fulmen.http')})"
    ]


def test_a_circle_through_type_checking_imports_is_found() -> None:
    modules = {"fulmen.http.connection", "fulmen.http.cycle"}
    graph = {
        "fulmen.http.connection": imports_of(
            "fulmen.http.connection", "from fulmen.http.cycle import X\n", modules
        ),
        "fulmen.http.cycle": imports_of(
            "fulmen.http.cycle", "if TYPE_CHECKING:\n    from fulmen.http.connection import Y\n", modules
        ),
    }
    assert circles(graph) == [frozenset(modules)]


def test_relative_and_package_imports_are_resolved() -> None:
    modules = {"fulmen.http", "fulmen.http.wire", "fulmen.http.cycle", "fulmen.protocols"}
    source = "from . import wire\nfrom .. import protocols\nimport fulmen.http\n"
    assert imports_of("fulmen.http.cycle", source, modules) == {
        "fulmen.http.wire",
        "fulmen.protocols",
        "fulmen.http",
    }
