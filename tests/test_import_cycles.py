"""No import cycles in ``ctir_es``: between modules, and between its subpackages.

Read with the stdlib ``ast`` module, nothing is imported. An edge is an import that runs when
the importing module is imported: module level and class bodies, including ``try`` blocks,
but not the body of a function (a lazy import) nor an ``if TYPE_CHECKING:`` block (never run).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``;
importing ``a.b.c`` also runs the ``__init__`` of ``a.b`` (an edge, unless the importer lives
inside ``a.b`` itself, where Python has already started that ``__init__``).

Cycles that exist outside the code these tests were written with are listed in
``KNOWN_CYCLES``, each with its owner; the list must shrink, never grow: a cycle found that is
not listed fails, and so does a listed cycle that is gone (remove it from the list).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "ctir_es"

# Strongly connected groups allowed (none: issue 15 removed the last, ranking <-> evaluation
# through the calibration search, by moving it to ``ctir_es.calibrate``). Sorted tuples.
KNOWN_CYCLES: dict[str, set[tuple[str, ...]]] = {"modules": set(), "packages": set()}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    lazy: bool  # inside a function body: runs on first call, not at import


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(body: list[ast.stmt], lazy: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Import statements in ``body``, with whether they only run inside a function."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, lazy
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _walk(node.body, True)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.orelse, lazy)  # the body never runs
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    stmts = [c for c in children if isinstance(c, ast.stmt)]
                    for c in children:  # except handlers and match cases hold statements too
                        if isinstance(c, ast.ExceptHandler | ast.match_case):
                            stmts.extend(c.body)
                    yield from _walk(stmts, lazy)


def _resolve(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    if source.split(".")[0] != PACKAGE:
        return []
    targets = [f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in modules]
    if len(targets) < len(node.names):  # some names are attributes of ``source``
        targets.append(source)
    return targets


def imports() -> list[Import]:
    modules = all_modules()
    names = set(modules)
    out = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, lazy in _walk(tree.body, False):
            for target in _resolve(name, path.name == "__init__.py", node, names):
                parts = target.split(".")
                chain = [".".join(parts[:i]) for i in range(2, len(parts) + 1)]  # a.b, a.b.c, ...
                for step in chain:
                    inside = name == step or name.startswith(step + ".")
                    if step in names and (step == target or not inside):
                        out.append(Import(name, step, node.lineno, lazy))
    return out


def unit(module: str) -> str:
    """The subpackage (or top-level module) of ``ctir_es`` a module belongs to."""
    return ".".join(module.split(".")[:2])


def cycles(edges: list[tuple[str, str]]) -> set[tuple[str, ...]]:
    """The strongly connected groups of more than one node (Tarjan), as sorted tuples."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        if a != b:
            graph.setdefault(a, set()).add(b)
            graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.add(tuple(sorted(group)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def explain(group: tuple[str, ...], edges: list[Import], level: str) -> str:
    members = set(group)
    key = unit if level == "packages" else (lambda m: m)
    lines = [f"{level} cycle: {' <-> '.join(group)}"]
    for e in edges:
        if key(e.importer) in members and key(e.target) in members and key(e.importer) != key(e.target):
            lines.append(f"  {e.importer} imports {e.target} (line {e.line})")
    return "\n".join(lines)


def found_cycles(level: str, include_lazy: bool = False) -> tuple[set[tuple[str, ...]], list[Import]]:
    edges = [e for e in imports() if include_lazy or not e.lazy]
    key = unit if level == "packages" else (lambda m: m)
    return cycles([(key(e.importer), key(e.target)) for e in edges]), edges


@pytest.mark.parametrize("level", ["modules", "packages"])
def test_no_new_import_cycles(level: str) -> None:
    found, edges = found_cycles(level)
    new = found - KNOWN_CYCLES[level]
    gone = KNOWN_CYCLES[level] - found
    assert not new, "import cycles (move the shared part to a module both can import):\n" + "\n".join(
        explain(g, edges, level) for g in sorted(new))
    assert not gone, f"cycles that are gone: remove them from KNOWN_CYCLES[{level!r}]: {sorted(gone)}"


@pytest.mark.parametrize("level", ["modules", "packages"])
def test_no_cycle_even_through_lazy_imports(level: str) -> None:
    """0 cycles, counting imports inside functions (issue 26 item 3).

    How they are counted: every ``import`` / ``from ... import`` of ``ctir_es`` in src, read
    with ``ast`` (module level, class bodies, ``try`` blocks AND function bodies; only ``if
    TYPE_CHECKING:`` blocks are left out, they never run), resolved as described at the top of
    this file, is an edge between modules; for ``packages`` each module is replaced by its unit
    (``ctir_es.<first part>``: a subpackage, or a top-level module). A cycle is a strongly
    connected group of more than one node (Tarjan). Before issue 26: 2 package cycles
    (ranking <-> store through ``search_fused``'s client-side fallback, evaluation <-> training
    through ``evaluation.trained``'s feature cache) and 1 module cycle (cli.eval_tasks <->
    cli.evaluate through ``_split``). Fix one by moving the shared part to a module both can
    import (``ctir_es.protocol`` and ``ctir_es.metrics`` for evaluation and training), or by
    having the lower layer say what it cannot do (``ServerFusionUnavailable``)."""
    found, edges = found_cycles(level, include_lazy=True)
    assert not found, "\n".join(explain(g, edges, level) for g in sorted(found))


def test_the_checker_finds_cycles() -> None:
    """The checker itself: a cycle, a lazy import, a TYPE_CHECKING import and a class body."""
    assert cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == {("a", "b", "c")}
    assert cycles([("a", "b"), ("b", "c")]) == set()
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "import ctir_es.x\n"
        "if TYPE_CHECKING:\n    import ctir_es.y\n"
        "try:\n    import ctir_es.z\nexcept ImportError:\n    import ctir_es.w\n"
        "class C:\n    import ctir_es.v\n"
        "def f():\n    import ctir_es.u\n")
    got = {(n.names[0].name, lazy) for n, lazy in _walk(tree.body, False) if isinstance(n, ast.Import)}
    assert got == {("ctir_es.x", False), ("ctir_es.z", False), ("ctir_es.w", False), ("ctir_es.v", False),
                   ("ctir_es.u", True)}
