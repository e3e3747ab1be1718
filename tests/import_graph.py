"""The package import graph: which sub-package of `memory_models` imports which (function-local imports counted).

    python tests/import_graph.py            # prints the edges with their counts and any problem; exit 1 on one

Layers, bottom to top: modeling_memory -> configuration -> conversion -> training -> eval (each a repository folder,
installed as `memory_models.<layer>`). A layer may import only layers below it, always through the one installed
name (`from memory_models.conversion.loading import ...`), never as a top-level name (`from conversion ...`),
which would load a second copy of the module from a checkout and name nothing in an installed wheel.
`tests/test_repository.py` runs `cycles()`, `upward_edges()` and `bare_imports()`, and `model_type_tests()`: outside
`modeling_memory/`, no code compares a `model_type` with a string (a family declares what it can do on its config
class, `memory_models.modeling_memory.capabilities`, and the code asks that instead).
"""

from __future__ import annotations

import ast
import collections
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMESPACE = "memory_models"
LAYERS = ("modeling_memory", "configuration", "conversion", "training", "eval")
CHECKED_FOLDERS = (*LAYERS, "tests")


def _imports(path: pathlib.Path):
    """`(line, absolute module name)` of every absolute import in a file."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def edges(root: pathlib.Path = ROOT) -> dict[tuple[str, str], list[str]]:
    """(importer layer, imported layer) -> the `file:line` of every such import, top-level or local."""
    found = collections.defaultdict(list)
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            for line, name in _imports(path):
                parts = name.split(".")
                if parts[0] == NAMESPACE and len(parts) > 1 and parts[1] in LAYERS and parts[1] != package:
                    found[package, parts[1]].append(f"{path.relative_to(root)}:{line}")
    return dict(found)


def bare_imports(root: pathlib.Path = ROOT) -> list[str]:
    """Imports of a layer by its folder name instead of `memory_models.<layer>` (package code and tests)."""
    return [f"{path.relative_to(root)}:{line}: import {name} (write {NAMESPACE}.{name})"
            for folder in CHECKED_FOLDERS for path in sorted((root / folder).rglob("*.py"))
            for line, name in _imports(path) if name.split(".")[0] in LAYERS]


def _is_model_type(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "model_type") or (
        isinstance(node, ast.Name) and node.id == "model_type")


def _is_strings(node: ast.AST, names: set[str]) -> bool:
    """A string, a tuple / list / set of strings, or a module-level name bound to one."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_is_strings(element, names) for element in node.elts)
    return isinstance(node, ast.Name) and node.id in names


def model_type_tests(root: pathlib.Path = ROOT) -> list[str]:
    """`file:line` of every comparison of a `model_type` with a string (or strings) in package code outside
    `modeling_memory/`, where a family's declared capabilities must be asked instead."""
    found = []
    for package in LAYERS[1:]:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            names = {target.id for node in tree.body if isinstance(node, ast.Assign)
                     for target in node.targets if isinstance(target, ast.Name) and _is_strings(node.value, set())}
            for node in ast.walk(tree):
                if isinstance(node, ast.Compare):
                    sides = [node.left, *node.comparators]
                    if any(map(_is_model_type, sides)) and any(_is_strings(side, names) for side in sides):
                        found.append(f"{path.relative_to(root)}:{node.lineno}: model_type compared with a string "
                                     "(ask memory_models.modeling_memory.capabilities)")
    return found


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
    problems = (upward_edges(graph) + [f"cycle: {a} <-> {b}" for a, b in cycles(graph)] + bare_imports()
                + model_type_tests())
    print("\n".join(problems) if problems else f"no cycle; layers import downwards only: {' <- '.join(LAYERS)}; "
          f"every import goes through {NAMESPACE}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
