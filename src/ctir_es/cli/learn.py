"""``ctir-es learn``: train CLIP-ITA on the index's own products and categories, keep it only if
it wins on held-out products, and serve with it (``ctir_es.learn``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..learn import LearnConfig, LearnReport, learn
from ..search import Search
from .main import cli, device_option, settings_from, store_options

SYSTEMS = (("served", "today, as served"), ("before", "today's sources, recalibrated"),
           ("after", "with the learned model"), ("bm25", "BM25 alone"))


@cli.command("learn")
@click.option("--modalities", default=None, metavar="LIST",
              help="image,title,attributes or title,attributes [all three when the index has image vectors].")
@click.option("--epochs", type=click.IntRange(1, 1000), default=30, show_default=True)
@click.option("--patience", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Stop after this many epochs without a better validation score.")
@click.option("--seed", type=int, default=13, show_default=True, help="Seed of the held-out slices and training.")
@click.option("--held-out", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.4,
              show_default=True, help="Fraction of the products held out to compare on (capped by --max-products).")
@click.option("--max-products", type=click.IntRange(20, None), default=2000, show_default=True,
              help="At most this many held-out products.")
@click.option("--write-chunk", type=click.IntRange(1, 100_000), default=2000, hidden=True,
              help="Products per in-place write (tests kill a run between two).")
@click.option("--force", is_flag=True, help="Keep the model even when it does not win (experiments).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@device_option
@store_options
@click.pass_context
def learn_command(ctx: click.Context, modalities: str | None, epochs: int, patience: int, seed: int, held_out: float,
                  max_products: int, write_chunk: int, force: bool, as_json: bool, store: Path | None, es_url: str | None) -> None:
    """Train CLIP-ITA on the index's own categories, keep it only if it wins, and serve with it.

    Trains on the stored products outside a held-out slice, compares category queries (with
    visible and hidden categories, seen and unseen) and categorize per level before and after
    on that slice, and, only when the model wins, adds its vector to every product in place and
    stores the new query and categorize calibration. A run that was killed while writing
    resumes when started again.
    """
    settings = settings_from(ctx, store=store, es_url=es_url)
    chosen = tuple(m.strip() for m in modalities.split(",") if m.strip()) if modalities else None
    config = LearnConfig(modalities=chosen, epochs=epochs, patience=patience, seed=seed, held_out=held_out,
                         max_products=max_products, force=force, write_chunk=write_chunk)
    err = Console(stderr=True)
    bar = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                   TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[status]}"),
                   TimeElapsedColumn(), console=err, transient=True, disable=as_json)
    tasks: dict[str, Any] = {}

    def on_event(event: str, info: dict[str, Any]) -> None:
        if event == "progress":
            stage = str(info["stage"])
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=info["total"], status="")
            bar.update(tasks[stage], completed=info["done"], total=info["total"])
        elif event == "epoch":
            if "train" not in tasks:
                tasks["train"] = bar.add_task("training", total=info["epochs"], status="")
            bar.update(tasks["train"], completed=info["epoch"],
                       status=f"val mAP@10 {info.get('val_map@10', 0):.3f}  best epoch {info['best_epoch']}")
        elif event == "stage" and not as_json:
            bar.console.print(str(info["stage"]), style="dim", highlight=False, markup=False)
        elif event == "data" and not as_json:
            bar.console.print(f"{info['products']} categorised products, {info['split_sizes'].get('train', 0)} to "
                              f"train on, {info['train_categories']} categories", style="dim", highlight=False)

    with Search.open(settings) as search, bar:
        report = learn(search, settings, config, progress=on_event)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    render(report, Console())


def _pct(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * float(value):.1f}"


def render(report: LearnReport, console: Console) -> None:
    for view, title in (("visible", "category queries, categories as indexed"),
                        ("hidden", "category queries, categories removed (products a shop forgot to file)")):
        figures = report.queries.get(view)
        if not figures:
            continue
        any_row = next(iter(figures.values()))
        table = Table(title=f"{title} - held-out products", title_justify="left")
        table.add_column("system")
        for group in ("all", "seen", "unseen"):
            n = any_row[group]["queries"]
            table.add_column(f"P@10 {group} ({n})", justify="right")
            table.add_column(f"R@100 {group}", justify="right")
        for system, label in SYSTEMS:
            if system in figures:
                row = figures[system]
                table.add_row(label, *(_pct(row[g].get(m)) for g in ("all", "seen", "unseen")
                                       for m in ("precision@10", "recall@100")))
        console.print(table)
    levels = report.categorize.get("top1_per_level") or {}
    if levels:
        table = Table(title=f"categorize top-1 per level - {report.categorize.get('products')} held-out products",
                      title_justify="left")
        table.add_column("signals")
        depth = sorted({lv for row in levels.values() for lv in row})
        for lv in depth:
            table.add_column(f"level {lv}", justify="right")
        for name, row in levels.items():
            table.add_row(name, *(_pct(row.get(lv)) for lv in depth))
        console.print(table)
    verdict = "kept" if report.kept else "NOT kept"
    console.print(f"model {report.model}: {verdict} - {report.reason}", highlight=False)
    if report.kept:
        console.print(f"wrote its vector to {report.written} products; queries, categorize, audit and later "
                      f"ingests now use it", highlight=False)
    else:
        console.print("nothing changed in the index; the model files stay in " + report.path, highlight=False)
    secs = report.seconds
    if secs:
        console.print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()), style="dim", highlight=False)
