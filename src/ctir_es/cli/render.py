"""Rendering of library results for the terminal (rich). No logic lives here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..ingest.report import IngestReport
from ..products import format_category_path
from ..results import SearchResponse


def _sources_text(sources: Any, scores: bool = True) -> str:
    if not scores:
        return " ".join(f"{name}#{s.rank}" for name, s in sources.items())
    return " ".join(f"{name}#{s.rank}:{s.score:.3g}" for name, s in sources.items())


def _short_path(path: list[str], levels: int = 3) -> str:
    """The last levels of a path: the specific end is what tells products apart."""
    shown = format_category_path(path[-levels:])
    return ("… > " + shown) if len(path) > levels else shown


def _leaf_and_root(path: list[str]) -> Text:
    """Narrow terminals: the leaf (what tells products apart) on the first line, the root
    (where it lives) dimmed on the second; each line is cut on its own, never the other."""
    text = Text(path[-1])
    if len(path) > 1:
        text.append("\n" + path[0] + (" >" if len(path) == 2 else " > …"), style="dim")
    return text


def search_title(response: SearchResponse) -> str:
    weights = ", ".join(f"{s} {response.weights.get(s, 1.0):g}" for s in response.sources)
    group = response.calibration_group
    whose = f" ({group} categories' weights)" if group in ("seen", "unseen") else ""
    return f"{response.mode} query {response.query!r} · {response.fusion} · {weights}{whose}"


TEXT_WANTED = 30  # title and category each get at least this before ids or raw scores are shown
TEXT_MAX = 40  # ... and at most this
NARROW_SOURCES = 18  # the rank-only sources column is cut beyond this when the text would
TEXT_MIN = 25  # get less than this each (80 columns); wider, it shows every list's rank
_EXTRA_COLUMNS = {"id": 10, "image": 12}


@dataclass(frozen=True)
class _Layout:
    """What fits in ``width`` columns: each column's width and what the wide columns show."""

    raw_scores: bool  # sources show each list's raw score, the category one line (its last levels)
    extra: tuple[str, ...]  # of "id", "image"
    rank: int
    title: int
    category: int
    sources: int
    source_cells: tuple[str, ...]


def _layout(response: SearchResponse, width: int) -> _Layout:
    """The widest layout whose title and category keep ``TEXT_WANTED`` columns each: raw scores
    with id and image, then without image, then without id; else ranks only, the category as
    leaf and root on two lines. Fixed columns are never squeezed, so the rank stays whole at
    every width and the sources from 100 columns on (the text columns give way); below that a
    rank-only list longer than ``NARROW_SOURCES`` (three sources) is cut."""
    rank = max(2, *(len(str(r.rank)) for r in response.results)) if response.results else 2
    score = 6
    for raw, extra in ((True, ("id", "image")), (True, ("id",)), (True, ()), (False, ())):
        cells = tuple(_sources_text(r.sources, scores=raw) for r in response.results)
        header = "sources (name#rank:score)" if raw else "sources"
        sources = max(len(header), *map(len, cells))
        columns = 5 + len(extra)
        if not raw and width - (3 * columns + 1 + rank + score + sources) < 2 * TEXT_MIN:
            sources = min(sources, NARROW_SOURCES)  # 80 columns: the text keeps its room
        fixed = 3 * columns + 1 + rank + score + sources + sum(_EXTRA_COLUMNS[c] for c in extra)
        free = width - fixed
        if raw and free < 2 * TEXT_WANTED:
            continue
        free = max(free, 20)
        title = min(free * 9 // 20, TEXT_MAX)
        return _Layout(raw, extra, rank, title, min(free - free * 9 // 20, TEXT_MAX), sources, cells)
    raise AssertionError("unreachable: the rank-only layout always fits")


def search_table(response: SearchResponse, width: int = 160) -> Table:
    """One line per result. Wide terminals show each source's raw score, then ids and image
    names as room allows; narrow ones (80 columns) keep rank, title, the leaf and (below it) the
    root category, the fused score and each source's rank. The rank is never cut, nor the sources
    from 100 columns on (tested at every width from 80 to 200)."""
    layout = _layout(response, width)
    table = Table(title=search_title(response), title_justify="left")
    columns: list[tuple[str, dict[str, Any]]] = [
        ("#", {"justify": "right", "width": layout.rank}),
        ("title", {"width": layout.title}),
        ("category", {"width": layout.category}),
    ]
    columns += [(c, {"width": _EXTRA_COLUMNS[c]}) for c in layout.extra]
    columns += [("score", {"justify": "right", "width": 6}),
                ("sources (name#rank:score)" if layout.raw_scores else "sources", {"width": layout.sources})]
    for col, kw in columns:
        table.add_column(col, no_wrap=True, overflow="ellipsis", **kw)
    for r, source_cell in zip(response.results, layout.source_cells, strict=True):
        category: str | Text = ("-" if not r.categories else _short_path(r.categories[0]) if layout.raw_scores
                                else _leaf_and_root(r.categories[0]))
        extra = {"id": r.id, "image": (r.image or "-").rsplit("/", 1)[-1]}
        cells = [str(r.rank), r.title, category, *(extra[c] for c in layout.extra), f"{r.score:.4f}", source_cell]
        table.add_row(*cells)
    return table


def search_footer(response: SearchResponse, width: int) -> str:
    """What the columns mean, in the words of what is shown."""
    if _layout(response, width).raw_scores:
        return ("score: the fused score; sources: each list's rank and raw score (bm25; cosine for vectors); "
                "--json for full ids and paths")
    return "score: fused · sources: rank in each list · --json for raw scores and ids"


def print_report(report: IngestReport, console: Console, store_count: int | None = None) -> None:
    console.print(f"[bold]Ingest report[/bold] ({report.source})")
    console.print(f"  read      {report.read:>8}")
    console.print(f"  indexed   {report.indexed:>8}" + (f"   (store now holds {store_count})" if store_count is not None else ""))
    if report.skipped_resumed:
        console.print(f"  resumed   {report.skipped_resumed:>8}   already indexed by an interrupted run")
    if report.duplicates:
        console.print(f"  duplicate {report.duplicates:>8}   ids seen again (the last record wins)")
    console.print(f"  rejected  {report.rejected_total:>8}")
    for reason, n in report.rejected.most_common():
        console.print(f"    {reason:<24} {n:>6}")
    for r in report.rejections[:10]:
        console.print(f"      {r.location}: {r.reason} {r.detail}", markup=False, highlight=False)
    if len(report.rejections) > 10:
        console.print(f"      ... {report.rejected_total - 10} more (use --json for the first {len(report.rejections)})")
    console.print(f"  images missing {report.images_missing_total:>3}")
    for reason, n in report.images_missing.most_common():
        console.print(f"    {reason:<24} {n:>6}")
    for what, n in report.notes.most_common():
        console.print(f"  note: {what}: {n}")
