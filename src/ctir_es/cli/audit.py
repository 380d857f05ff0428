"""``ctir-es audit``: products whose stored category disagrees with what the signals predict."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..audit import AuditEntry
from ..filters import Filter
from ..jsonsafe import csv_row
from ..search import Search
from .main import cli, device_option, settings_from, store_options


@cli.command()
@click.option("--id", "ids", multiple=True, metavar="ID", help="Audit these products only (repeatable).")
@click.option("--within", default=None, metavar="PATH", help="Only products under this category.")
@click.option("--k", "k", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many of the most suspicious products to show.")
@click.option("--depth", type=click.IntRange(1, 32), default=3, show_default=True, help="Levels compared.")
@click.option("--neighbours", type=click.IntRange(1, 1000), default=None, help="Voters per signal [30].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the ranking to this CSV file.")
@device_option
@store_options
@click.pass_context
def audit(ctx: click.Context, ids: tuple[str, ...], within: str | None, k: int, depth: int, neighbours: int | None,
          as_json: bool, csv_file: Path | None, store: Path | None, es_url: str | None) -> None:
    """Rank products that look filed in the wrong category, with the suggested one and the gap."""
    settings = settings_from(ctx, store=store, es_url=es_url)
    filters = [Filter("category", "subtree", within)] if within else []
    err = Console(stderr=True)
    # a bar on a terminal only (each product asks the store for its neighbours: a minute for the
    # sample on Elasticsearch); none in pipes, logs or --json captures
    bar = Progress(TextColumn("[bold]auditing"), BarColumn(bar_width=None), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
                   disable=not err.is_terminal)
    with Search.open(settings) as search, bar:
        task = bar.add_task("audit", total=None)
        report = search.audit(list(ids) or None, k=k, depth=depth, neighbours=neighbours, filters=filters,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    if csv_file is not None:
        with csv_file.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(AuditEntry.CSV_FIELDS), extrasaction="ignore")
            writer.writeheader()
            for e in report.entries:
                writer.writerow(csv_row(e.to_json()))  # catalogue text is never a formula
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    table = Table(title=f"{len(report.entries)} most suspicious of {report.audited} products (depth {depth})",
                  title_justify="left")
    for col in ("#", "id", "title", "stored", "suggested", "suspicion", "gap"):
        table.add_column(col, justify="right" if col in ("#", "suspicion", "gap") else "left")
    for i, e in enumerate(report.entries, start=1):
        table.add_row(str(i), e.id[:24], e.title[:40], " > ".join(e.stored[:depth]), " > ".join(e.suggested),
                      f"{e.suspicion:.3f}", f"{e.gap:.3f}")
    Console().print(table)


__all__ = ["audit"]
