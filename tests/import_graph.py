"""The package import graph: which top-level package imports which (function-local imports counted).

    python tests/import_graph.py            # prints the edges with their counts and any cycle; exit 1 on a cycle

Layers, bottom to top: modeling_memory -> configuration -> conversion -> training -> eval. A package may import
only packages below it; `tests/test_repository.py` runs `cycles()` and `upward_edges()`.
"""

from __future__ import annotations

import ast
import collections
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("modeling_memory", "configuration", "conversion", "training", "eval")


def edges(root: pathlib.Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """(importer package, imported package) -> the `file:line` of every such import, top-level or local."""
    found = collections.defaultdict(list)
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    target = name.split(".")[0]
                    if target in LAYERS and target != package:
                        found[package, target].append(f"{path.relative_to(root)}:{node.lineno}")
    return dict(found)


def upward_edges(graph: dict) -> list[str]:
    """Imports of a package above the importer's layer."""
    return [f"{a} -> {b}: {', '.join(where)}" for (a, b), where in sorted(graph.items())
            if LAYERS.index(b) > LAYERS.index(a)]


def cycles(graph: dict) -> list[tuple[str, str]]:
    """Pairs of packages that reach each other."""
    def reach(start, goal, seen=()):
        return any(b == goal or (b not in seen and reach(b, goal, seen + (b,))) for (a, b) in graph if a == start)
    return sorted({tuple(sorted((a, b))) for (a, b) in graph if reach(b, a)})


def main() -> int:
    graph = edges()
    for (a, b), where in sorted(graph.items(), key=lambda item: (LAYERS.index(item[0][0]), LAYERS.index(item[0][1]))):
        print(f"{a:>15} -> {b:<15} {len(where):3d} imports")
    problems = upward_edges(graph) + [f"cycle: {a} <-> {b}" for a, b in cycles(graph)]
    print("\n".join(problems) if problems else f"no cycle; layers import downwards only: {' <- '.join(LAYERS)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
