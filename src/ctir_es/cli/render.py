"""Rendering of library results for the terminal (rich). No logic lives here."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ..ingest.report import IngestReport
from ..products import format_category_path
from ..search import SearchResponse


def _sources_text(sources: Any) -> str:
    return "  ".join(f"{name} #{s.rank} {s.score:.3g}" for name, s in sources.items())


def search_table(response: SearchResponse) -> Table:
    table = Table(
        title=f"{response.mode} query {response.query!r} - fusion {response.fusion} over "
        f"{', '.join(response.sources)}",
        title_justify="left",
    )
    for col, kw in [("#", {"justify": "right"}), ("id", {}), ("title", {"max_width": 48}),
                    ("category", {"max_width": 48}), ("image", {"max_width": 28}),
                    ("score", {"justify": "right"}), ("sources (rank, score)", {})]:
        table.add_column(col, **kw)
    for r in response.results:
        table.add_row(
            str(r.rank),
            r.id,
            r.title,
            format_category_path(r.categories[0]) if r.categories else "-",
            (r.image or "-").rsplit("/", 1)[-1],
            f"{r.score:.4f}",
            _sources_text(r.sources),
        )
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
    for msg in report.messages:
        console.print(f"  [yellow]{msg}[/yellow]")
