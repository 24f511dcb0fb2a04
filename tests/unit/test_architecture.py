"""The import graph, built from the sources (ast): no cycles, and the core never imports a baseline.

Edges are module-level and function-level ``import`` statements alike (a lazy import still ties two modules
together); imports under ``if TYPE_CHECKING:`` are annotations only and do not count. ``from pkg import
name`` depends on ``pkg.name`` when that is a module, else on ``pkg`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cgmbench", "baselines")


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    mods = _modules(root)

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_lines(tree)
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    head = ".".join(base + ([node.module] if node.module else []))
                else:
                    head = node.module or ""
                subs = [f"{head}.{a.name}" for a in node.names if f"{head}.{a.name}" in mods]
                targets = subs + ([head] if len(subs) < len(node.names) else [])
            for t in targets:
                k = known(t)
                if k and k != mod:
                    deps.add(k)
        graph[mod] = deps
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_project_import_graph_has_no_cycle():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_core_never_imports_a_baseline():
    bad = {m: sorted(d for d in deps if d.split(".")[0] == "baselines")
           for m, deps in import_graph().items() if m.split(".")[0] == "cgmbench"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_network_modules_are_leaves():
    """A family's networks (``models.py``, ``unet.py``, ``networks.py``) import nothing from the project."""
    graph = import_graph()
    leaves = [m for m in graph if m.startswith("baselines.") and m.rsplit(".", 1)[-1] in ("models", "unet", "networks")]
    assert leaves, "no network modules found"
    assert {m: sorted(graph[m]) for m in leaves if graph[m]} == {}


@pytest.mark.parametrize("source, cyclic", [
    ({"a": "import cgmbench.b", "b": "from cgmbench.a import x"}, True),
    ({"a": "def f():\n    import cgmbench.b", "b": "import cgmbench.a"}, True),  # a lazy import is still an edge
    ({"a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import cgmbench.b", "b": "import cgmbench.a"},
     False),
    ({"a": "import cgmbench.b", "b": "import cgmbench.c"}, False),
    ({"a": "from . import b", "b": "from . import a"}, True),  # relative imports resolve too
])
def test_the_checker_finds_cycles_it_should(tmp_path, source, cyclic):
    pkg = tmp_path / "cgmbench"
    pkg.mkdir()
    (tmp_path / "baselines").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "c.py").write_text("")
    for name, text in source.items():
        (pkg / f"{name}.py").write_text(text + "\n")
    assert bool(find_cycles(import_graph(tmp_path))) is cyclic
