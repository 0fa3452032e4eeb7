"""Layers that point one way: the sweep never imports the report, and no two modules import each other.

The report reads what sweeps record (``albsnn.report`` -> ``albsnn.sweep``); ``albsnn sweep`` makes the
report after the sweep (``albsnn.cli.sweep``). Imports are read from the source (every ``import`` and
``from ... import``, those inside functions included), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "albsnn"


def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package (a package is its ``__init__``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name in one) lives in, or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str) -> set[str]:
    """The modules of ours that module ``name`` imports, at the top or inside functions."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(_owner(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            # `from pkg import mod` imports the submodule; `from mod import name`, the module
            found.update(
                _owner(f"{base}.{a.name}") if f"{base}.{a.name}" in MODULES else _owner(base)
                for a in node.names
            )
    return {m for m in found if m and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _mutual_pairs() -> set[tuple[str, str]]:
    return {(a, b) for a, targets in GRAPH.items() for b in targets if a < b and a in GRAPH[b]}


def test_the_import_graph_sees_lazy_imports():
    # the walk must see imports inside functions, or a lazy import would hide a cycle
    assert "albsnn.report" in GRAPH["albsnn.cli.sweep"]  # imported inside make_report
    assert "albsnn.sweep.record" in GRAPH["albsnn.sweep.plan"]


def test_the_sweep_never_imports_the_report_not_even_lazily():
    offenders = {
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if name.startswith("albsnn.sweep")
        for target in targets
        if target.startswith("albsnn.report")
    }
    assert not offenders


def test_importing_every_sweep_module_loads_no_report_module():
    # in a fresh interpreter: whatever the modules import at their top, transitively
    names = sorted(n for n in MODULES if n == "albsnn.sweep" or n.startswith("albsnn.sweep."))
    code = (
        "import importlib, sys\n"
        "from albsnn.sweep._imports import MissingDependencyError\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except MissingDependencyError:\n"
        "        pass  # an optional platform package is not installed: nothing of it to import\n"
        "print(sorted(m for m in sys.modules if m.startswith('albsnn.report')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_no_two_modules_import_each_other():
    # the dataset modules take the registry's types from albsnn.data.registry, not from the package
    # that imports them to register them
    assert _mutual_pairs() == set()


def _length(node: ast.AST) -> int:
    return node.end_lineno - node.lineno + 1


def test_no_function_in_the_package_is_over_60_lines():
    # short functions are the house rule (issue 19); the docstring counts: it is read with the code
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({_length(node)} lines)"
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _length(node) > 60
    ]
    assert long == []
