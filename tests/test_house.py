"""The house: no import cycle anywhere in the package, and small modules.

``make lint`` checks the layers themselves (``lint-imports``, contracts in pyproject.toml); these
tests also catch a cycle inside a layer or a subpackage that no contract names yet.
"""

from __future__ import annotations

from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parent.parent / "flask_jobs"
#: The most lines a module may have, and the modules allowed more (with the reason).
MAX_LINES = 400
LONGER = {
    # One Hub class: a subscription shared by every stream, its lock, its listener thread and
    # the resynchronisation after a lost connection belong together.
    "sse_hub.py": 520,
}


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the cycles of a directed graph, as groups of nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycle_anywhere():
    # Given every import between the package's modules (type-checking imports included), but
    # not a module importing its own package's __init__ re-exports
    graph = grimp.build_graph("flask_jobs")
    edges = {m: {t for t in graph.find_modules_directly_imported_by(m)
                 if not m.startswith(t + ".")}
             for m in graph.modules}
    # Expect no group of modules to import each other in a circle
    assert _strongly_connected(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]


def test_modules_are_small():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    too_long = {name: n for name, n in sizes.items() if n > LONGER.get(name, MAX_LINES)}
    assert too_long == {}
