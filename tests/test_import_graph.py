"""The package layering: every module of bench, methods and models imports, and no module
imports one that imports it back, not even through a function-local import (those hide a
cycle from Python but not from a reader). Registries that load plugins by name
(`importlib.import_module` of a package they are configured with) are discovery, not an
import: the plugin depends on the API, never the reverse."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "models")


def project_modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = project_modules()


def imports_of(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere in its source (top level, in functions,
    under TYPE_CHECKING): `from a import b` counts as importing `a.b` when that is a
    module, else `a`."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # `import a.b.c` of a function: its module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    src = {"a": "def f():\n    import b\n", "b": "from a import f\n", "c": "import a\n"}
    graph = {}
    for mod, text in src.items():
        deps = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                deps.add(node.module)
        graph[mod] = deps
    assert cycles(graph) == [["a", "b"]]


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: imports_of(name, path) for name, path in MODULES.items()}
    assert cycles(graph) == []


def test_nothing_imports_a_plugin():
    """Plugins (the modules directly in methods/) are leaves: the harness, the building
    blocks and other plugins use the subpackages, never a plugin's internals."""
    plugins = {n for n, p in MODULES.items()
               if n.count(".") == 1 and n.startswith("methods.") and p.name != "__init__.py"}
    assert plugins  # the walk found them
    offenders = {n: sorted(imports_of(n, p) & plugins) for n, p in MODULES.items()}
    assert {n: v for n, v in offenders.items() if v} == {}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.endswith("__main__")))
def test_every_module_imports(name):  # a __main__ runs its command on import
    importlib.import_module(name)
