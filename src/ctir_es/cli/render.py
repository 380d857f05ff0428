"""Rendering of library results for the terminal (rich). No logic lives here."""

from __future__ import annotations

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


def search_table(response: SearchResponse, width: int = 160) -> Table:
    """One line per result. Wide terminals show ids, image names and each source's raw score;
    narrow ones (80 columns) keep rank, title, the leaf and (below it) the root category, the
    fused score and each source's rank."""
    wide = width >= 120
    table = Table(title=search_title(response), title_justify="left")
    sources = [_sources_text(r.sources, scores=wide) for r in response.results]
    if wide:
        text_widths = {"title": {"max_width": 40}, "category": {"max_width": 40}}
    else:  # share what the fixed columns and the borders (3 per column + 1) leave
        source_width = min(max([len("sources"), *map(len, sources)]), 18)
        free = max(width - (5 * 3 + 1) - 2 - 6 - source_width, 20)
        text_widths = {"title": {"width": free * 9 // 20}, "category": {"width": free - free * 9 // 20}}
    columns: list[tuple[str, dict[str, Any]]] = [
        ("#", {"justify": "right", "min_width": 2}),
        ("title", text_widths["title"]),
        ("category", text_widths["category"]),
    ]
    if wide:
        columns += [("id", {"max_width": 10}), ("image", {"max_width": 12})]
    columns += [("score", {"justify": "right", "min_width": 6}),
                ("sources (name#rank:score)" if wide else "sources", {"min_width": 7})]
    for col, kw in columns:
        table.add_column(col, no_wrap=True, overflow="ellipsis", **kw)
    for r, source_cell in zip(response.results, sources, strict=True):
        category: str | Text = ("-" if not r.categories else _short_path(r.categories[0]) if wide
                                else _leaf_and_root(r.categories[0]))
        cells = [str(r.rank), r.title, category]
        if wide:
            cells += [r.id, (r.image or "-").rsplit("/", 1)[-1]]
        cells += [f"{r.score:.4f}", source_cell]
        table.add_row(*cells)
    return table


def search_footer(response: SearchResponse, width: int) -> str:
    """What the columns mean, in the words of what is shown."""
    if width >= 120:
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
