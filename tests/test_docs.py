"""Docs kept honest by tools (the idea of sqlite-utils' ``tests/test_docs.py``): every CLI command
and every HTTP route of the real app is documented in the README or ``docs/*.md``, the package map
in ``docs/index.md`` names every module, and no docs page repeats a README line (the README is a
front page; everything else is said once, in ``docs/``)."""

from __future__ import annotations

import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import MagicMock

import click
import pytest

import ctir_es
from ctir_es.cli.main import cli, load_all_commands
from ctir_es.service import create_app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
CHANGELOG = ROOT / "CHANGELOG.md"
LONG_LINE = 60  # shorter lines (fences, table rules, short commands) may repeat


def documentation() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in [README, *DOCS])


def cli_commands(group: click.Group, prefix: str = "ctir-es") -> Iterator[str]:
    """Every command and subcommand name, as typed: ``ctir-es models export clip-ita``."""
    for name, command in group.commands.items():
        yield f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from cli_commands(command, f"{prefix} {name}")


def app_routes(routes: list) -> Iterator[tuple[str, str]]:
    """(method, path) of every route, walking included routers (FastAPI wraps them, in some
    versions, in an object that keeps the router as ``original_router``)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from app_routes(inner.routes)
        elif getattr(route, "methods", None) and getattr(route, "path", None):
            for method in sorted(route.methods - {"HEAD"}):
                yield method, route.path


load_all_commands()  # commands load lazily; the listing wants every one
COMMANDS = list(cli_commands(cli))
# The routes do not depend on the search behind them: construction does no I/O.
APP = create_app(MagicMock())
ROUTES = sorted(set(app_routes(APP.routes)))


def test_the_listings_are_complete() -> None:
    assert {"ctir-es ingest sample", "ctir-es models export clip-ita", "ctir-es es swap"} <= set(
        COMMANDS
    )
    assert {path for _, path in ROUTES} >= set(APP.openapi()["paths"]), (
        "a route of the schema was not walked"
    )
    assert ("GET", "/") in ROUTES and ("POST", "/search/image") in ROUTES


@pytest.mark.parametrize("name", COMMANDS)
def test_every_cli_command_is_documented(name: str) -> None:
    # `ctir-es models export clip` must be named itself, not only inside `... clip-ita`
    assert re.search(re.escape(name) + r"(?![\w-])", documentation()), (
        f"`{name}` is not mentioned in README.md or docs/*.md: document it (docs/cli.md, or the page of its topic)"
    )


def route_pattern(method: str, path: str) -> re.Pattern[str]:
    """``GET /products/{product_id}/similar`` matches ``GET /products/{id}/similar?k=`` in the
    docs: a path parameter may be named otherwise, and the path ends where the text does."""
    parts = re.split(r"\{[^}]+\}", path)
    path_re = r"\{[^}/\s]+\}".join(re.escape(part) for part in parts)
    return re.compile(rf"\b{method} {path_re}(?=[\s`?|),]|$)", re.MULTILINE)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_http_route_is_documented(method: str, path: str) -> None:
    assert route_pattern(method, path).search(documentation()), (
        f"`{method} {path}` is not mentioned in README.md or docs/*.md: add it to docs/http.md"
    )


def test_route_pattern_needs_the_whole_path() -> None:
    assert route_pattern("GET", "/products/{product_id}").search("`GET /products/{id}`")
    assert not route_pattern("GET", "/").search("`GET /search?q=`")
    assert not route_pattern("GET", "/products/{product_id}").search("`GET /products/{id}/image`")
    assert not route_pattern("POST", "/search").search("`GET /search`")


def package_modules() -> list[str]:
    """Every top-level module and every subpackage (at any depth) of ``ctir_es``."""
    names = []
    for info in pkgutil.walk_packages(ctir_es.__path__, "ctir_es."):
        depth = info.name.count(".")
        if info.name.rsplit(".", 1)[1].startswith("_"):
            continue
        if depth == 1 or info.ispkg:
            names.append(info.name)
    return names


@pytest.mark.parametrize("module", package_modules())
def test_the_package_map_names_every_module(module: str) -> None:
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert f"`{module}`" in index, (
        f"docs/index.md's package map does not name `{module}`: add one line for it"
    )


def long_lines(path: Path) -> set[str]:
    return {
        line.strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if len(line.strip()) >= LONG_LINE
    }


@pytest.mark.parametrize("page", [*DOCS, CHANGELOG], ids=lambda p: p.name)
def test_no_docs_page_repeats_the_readme(page: Path) -> None:
    repeated = sorted(long_lines(README) & long_lines(page))
    assert not repeated, (
        f"{page.name} repeats {len(repeated)} README line(s), say it once: {repeated[:3]}"
    )


def heading_anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces to '-')."""
    anchors, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            title = re.sub(r"^#+ ", "", line).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", [README, CHANGELOG, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    """A moved section leaves no dangling link: every relative link names a file that exists,
    and a heading of it when it names one."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked)
        ):
            broken.append(target)
    assert not broken, f"{page.name} links to what does not exist: {broken}"
