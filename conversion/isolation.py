"""Proof that a folder loads for a Hub user: a lint of its code, and runs in an interpreter without our packages.

* [`lint_hub_folder`] lists the imports in a folder's `.py` files that a torch + transformers user lacks.
* [`run_without_our_packages`] runs a script in a fresh interpreter whose import system refuses this
  repository's packages (an in-process reload proves nothing: transformers 5 prefers locally registered classes
  over the shipped code).
"""

import ast
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

ALLOWED_ROOTS = {"torch", "transformers"} | set(sys.stdlib_module_names)
# The one installed name, and the repository folders it maps (importable as top-level names from a checkout).
OUR_PACKAGES = ("memory_models", "modeling_memory", "configuration", "conversion", "eval", "training")

# Prepended to scripts run by `run_without_our_packages`: the import system refuses our packages, as on the
# machine of a Hub user who has only torch and transformers (an in-process reload would prove nothing:
# transformers 5 prefers locally registered classes over the shipped code).
BLOCK_OUR_PACKAGES = textwrap.dedent(
    """
    import importlib.abc, sys
    _BLOCKED = set(%r)

    class _BlockOurPackages(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in _BLOCKED:
                raise ImportError(f"{name} is not installed on a Hub user's machine")
            return None

    sys.meta_path.insert(0, _BlockOurPackages())
    sys.path = [p for p in sys.path if p not in ("", ".")]
    """
) % (OUR_PACKAGES,)


def lint_hub_folder(folder) -> list[str]:
    """Problems that would stop a torch + transformers user from loading the `.py` files of `folder`.

    Absolute imports must be stdlib, torch or transformers (others only inside `try`); relative imports
    must be single-dot imports of sibling files; no `from . import x`; no sub-folders of code.
    """
    folder = pathlib.Path(folder)
    siblings = {p.stem for p in folder.glob("*.py")}
    problems = [f"{sub}: sub-folders of code break Hub export" for sub in folder.iterdir()
                if sub.is_dir() and any(sub.glob("*.py"))]
    for path in sorted(folder.glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        guarded = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Try) for inner in ast.walk(node)}
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level > 1 or node.module is None:
                    problems.append(f"{where}: only 'from .sibling import name' survives Hub export")
                elif "." in node.module or node.module not in siblings:
                    problems.append(f"{where}: sibling module '{node.module}' is not a file of the folder")
            elif isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in guarded:
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                problems += [f"{where}: imports '{name}' (stdlib, torch and transformers only, or guard it with try)"
                             for name in names if name.split(".")[0] not in ALLOWED_ROOTS]
    return problems


def run_without_our_packages(script: str, *args: str, env: dict | None = None, timeout: int = 600) -> dict:
    """Run `script` in a fresh interpreter that cannot import this repository's packages.

    The script gets `args` as `sys.argv[1:]` and no standard input, runs offline (`HF_HUB_OFFLINE=1`) with a private module cache,
    and must print a JSON object as its last line, which is returned. Raises `RuntimeError` with the
    subprocess's stderr if it fails.
    """
    with tempfile.TemporaryDirectory() as scratch:
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(pathlib.Path(scratch) / "modules"),
                    **(env or {})}
        full_env.pop("PYTHONPATH", None)
        proc = subprocess.run([sys.executable, "-c", BLOCK_OUR_PACKAGES + textwrap.dedent(script), *map(str, args)],
                              cwd=scratch, env=full_env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)  # closed stdin: a prompt can never wait for an answer
    if proc.returncode != 0:
        raise RuntimeError(f"the isolated run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
