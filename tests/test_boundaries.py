"""Boundaries between the packages of ``ctir_es`` (issue 26 item 3), read with ``ast``.

- **Boundary types come from one module.** ``Hit``, ``LexicalQuery``, ``VectorQuery``,
  ``Document``, ``StoredProduct``, ``IndexSchema``, ``VectorField``, ``WriteResult`` and the
  field constants live in ``ctir_es.schema``; ``ctir_es.store.base`` defines the ``Store``
  protocols only. Importing one of its imports through it (``from ctir_es.store.base import
  Hit``) fails here, in src, tests, benchmarks and scripts alike.
- **Fusion stays out of the stores.** No module of ``ctir_es.store`` imports
  ``ctir_es.ranking``, not even inside a function: a store fuses on its server or raises
  ``ServerFusionUnavailable``, and ``Search`` fuses.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
BASE = SRC / "ctir_es" / "store" / "base.py"


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _source(path: Path, node: ast.ImportFrom) -> str | None:
    """The absolute module ``node`` imports from (relative imports only resolve under src)."""
    if not node.level:
        return node.module
    if not path.is_relative_to(SRC):
        return None
    package = _module(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _imports_from(module: str) -> list[tuple[Path, int, str]]:
    """(file, line, name) of every ``from <module> import name`` anywhere (functions included)."""
    out = []
    for folder in ("src", "tests", "benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == BASE:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and _source(path, node) == module:
                    out.extend((path, node.lineno, a.name) for a in node.names)
    return out


def _base_names() -> tuple[set[str], set[str]]:
    """(names ``store.base`` defines, names it imports)."""
    tree = ast.parse(BASE.read_text(encoding="utf-8"))
    defined: set[str] = set()
    imported: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
    return defined, imported


def test_schema_types_are_imported_from_schema_not_store_base() -> None:
    defined, imported = _base_names()
    assert {"Hit", "LexicalQuery", "VectorQuery", "Document", "IndexSchema"} <= imported  # the check bites
    wrong = [f"{p.relative_to(ROOT)}:{line} imports {name} from ctir_es.store.base"
             for p, line, name in _imports_from("ctir_es.store.base") if name not in defined]
    assert not wrong, "import these from ctir_es.schema (or where store.base took them):\n" + "\n".join(wrong)


def test_store_base_exports_only_what_it_defines() -> None:
    defined, _ = _base_names()
    tree = ast.parse(BASE.read_text(encoding="utf-8"))
    exported = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets))
    assert set(exported) <= defined, sorted(set(exported) - defined)


def test_no_store_module_imports_ranking_even_lazily() -> None:
    found = []
    for path in sorted((SRC / "ctir_es" / "store").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            sources = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [_source(path, node) or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {s}" for s in sources
                      if s == "ctir_es.ranking" or s.startswith("ctir_es.ranking.")]
    assert not found, "fusion is not a store concern (raise ServerFusionUnavailable):\n" + "\n".join(found)
