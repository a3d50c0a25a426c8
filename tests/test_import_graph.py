"""The package's import graph has no circle (issue #18 item 6): every ``import`` of a ``harness`` module by another,
at module level or inside a function, read from the source (imports under ``if TYPE_CHECKING:`` are annotations)."""

from __future__ import annotations

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).resolve().parent


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("harness", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(tree: ast.AST) -> set[str]:
    """Every module name an import statement in ``tree`` names (``from a import b``: ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.update([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
        names |= imported(node)
    return names


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: {m for m in imported(ast.parse(path.read_text())) if m in found and m != name}
            for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_imports_in_no_circle():
    assert find_cycle(import_graph()) is None


def test_cli_commands_share_helpers_only_through_common():
    """A `harness` subcommand module imports no other one (what they share lives in harness.cli.common)."""
    graph = import_graph()
    helpers = {"harness.cli.common", "harness.cli.job", "harness.cli.summary"}  # shared helpers, not subcommands
    commands = {m for m in graph if m.startswith("harness.cli.")} - helpers
    assert {m: graph[m] & commands for m in commands if graph[m] & commands} == {}


def test_a_flower_node_trains_with_the_client_unit_not_the_server_engine():
    graph = import_graph()
    assert "harness.client" in graph["harness.flower.client_app"]
    assert "harness.engine" not in graph["harness.flower.client_app"] and "harness.engine" not in graph["harness.client"]
