"""Rendering of library results for the terminal (rich). No logic lives here."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

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


def search_table(response: SearchResponse, width: int = 160) -> Table:
    """One line per result; narrow terminals drop the id and image columns (see --json)."""
    wide = width >= 120
    table = Table(
        title=f"{response.mode} query {response.query!r} - fusion {response.fusion} over "
        f"{', '.join(f'{s} (w {response.weights.get(s, 1.0):g})' for s in response.sources)}",
        title_justify="left",
    )
    columns: list[tuple[str, dict[str, Any]]] = [
        ("#", {"justify": "right", "min_width": 2}),
        ("title", {"max_width": 40 if wide else 20}),
        ("category", {"max_width": 40 if wide else 18}),
    ]
    if wide:
        columns += [("id", {"max_width": 10}), ("image", {"max_width": 12})]
    sources_header = "sources (name#rank:score)" if wide else "sources"
    columns += [("score", {"justify": "right", "min_width": 6}), (sources_header, {"min_width": 12})]
    for col, kw in columns:
        table.add_column(col, no_wrap=True, overflow="ellipsis", **kw)
    for r in response.results:
        cells = [str(r.rank), r.title, _short_path(r.categories[0]) if r.categories else "-"]
        if wide:
            cells += [r.id, (r.image or "-").rsplit("/", 1)[-1]]
        cells += [f"{r.score:.4f}", _sources_text(r.sources, scores=wide)]
        table.add_row(*cells)
    return table


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
