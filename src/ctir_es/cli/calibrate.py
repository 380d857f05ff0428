"""``ctir-es calibrate``: pick the serving fusion of category queries from the catalogue's own
category labels, report every system side by side, and store the pick with the index."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..calibrate import (
    LABELS,
    REPORTED,
    SELECT_BY,
    TUNE_FOR,
    CalibrationConfig,
    calibrate,
)
from ..ranking.calibration import CALIBRATION_KEY, Calibration, save_calibration
from ..search import Search
from ..store.writer_probe import active_writer, check_quiet_store
from .main import cli, device_option, settings_from, store_options


@cli.command("calibrate")
@click.option("--seed", type=int, default=13, show_default=True, help="Seed of the held-out slices.")
@click.option("--held-out", type=click.FloatRange(0, 1, min_open=True), default=0.4, show_default=True,
              help="Fraction of the products held out: half tunes the fusion, the other half reports it.")
@click.option("--max-products", type=click.IntRange(2, None), default=2000, show_default=True,
              help="At most this many held-out products (large catalogues).")
@click.option("--max-level", type=click.IntRange(1, None), default=None,
              help="Query category nodes down to this level only [all levels].")
@click.option("--hide-categories", is_flag=True,
              help="Also measure category queries for products whose category is missing (a scratch copy of "
                   "the index with the held-out products' categories removed).")
@click.option("--tune-for", type=click.Choice(list(TUNE_FOR)), default="visible", show_default=True,
              help="Pick the weights on the held-out products as indexed (visible), with their categories "
                   "hidden (hidden), or the mean of both (both; implies --hide-categories).")
@click.option("--dry-run", is_flag=True, help="Measure and report, but do not store the calibration.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@device_option
@store_options
@click.pass_context
def calibrate_command(ctx: click.Context, seed: int, held_out: float, max_products: int, max_level: int | None,
                      hide_categories: bool, tune_for: str, dry_run: bool, as_json: bool, store: Path | None,
                      es_url: str | None) -> None:
    """Calibrate the fusion of category queries on held-out products of the index and store it.

    Serving then uses it for category queries that name no --fusion and no --weight.
    """
    settings = settings_from(ctx, store=store, es_url=es_url)
    config = CalibrationConfig(seed=seed, held_out=held_out, max_products=max_products, max_level=max_level,
                               hide_categories=hide_categories, tune_for=tune_for)
    console = Console(stderr=True)
    embedded = None if settings.server_url else settings.store
    if embedded is not None:  # not during an ingest, nor on a store it cannot write (before opening it)
        check_quiet_store(embedded, command="calibrate", will_write=not dry_run)
    with Search.open(settings) as search:
        products = search.store.count()
        report = calibrate(search, config, progress=None if as_json else lambda m: console.print(m, style="dim"))
        writer = active_writer(embedded, store_open=True) if embedded is not None else None
        now = search.store.count()
        if now != products or writer is not None:
            raise click.ClickException(
                f"the catalogue changed while calibrating ({products:,} products at the start, {now:,} now"
                + (f"; an ingest ({writer}) is writing" if writer else "") + "): the calibration was not stored; "
                "run `ctir-es calibrate` again once the ingest is done")
        if not dry_run:
            save_calibration(search.store, report.calibration)
            report.stored = True
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    render(report.calibration, report.seconds, report.stored, report.per_level)


def _fusion_label(method: str, weights: Mapping[str, float]) -> str:
    return f"{method} " + " ".join(f"{k}={v:g}" for k, v in weights.items())


def _table(title: str, rows: list[tuple[str, str, Mapping[str, float]]]) -> Table:
    best = max((f[SELECT_BY] for _, _, f in rows), default=0.0)
    table = Table(title=title, title_justify="left")
    for col in ("system", "fusion", *(LABELS[m] for m in REPORTED), "P@10 - best"):
        table.add_column(col, justify="left" if col in ("system", "fusion") else "right")
    for name, fusion, f in rows:
        table.add_row(name, fusion, *(f"{100 * f[m]:.2f}" for m in REPORTED), f"{100 * (f[SELECT_BY] - best):+.2f}")
    return table


def _levels(per_level: Mapping[str, Mapping[str, float]], systems: list[str],
            title: str = "P@10 by category level (reporting slice, percent)") -> Table:
    levels = sorted({lvl for s in systems for lvl in per_level.get(s, {})}, key=int)
    table = Table(title=title, title_justify="left")
    table.add_column("system")
    for lvl in levels:
        table.add_column(f"L{lvl}", justify="right")
    for s in systems:
        if s in per_level:
            table.add_row(s, *(f"{100 * per_level[s][lvl]:.1f}" if lvl in per_level[s] else "" for lvl in levels))
    return table


def render(cal: Calibration, seconds: float, stored: bool,
           per_level: Mapping[str, Mapping[str, float]] | None = None) -> None:
    console = Console()
    sizes, cfg = cal.sizes, cal.settings
    default: dict[str, Any] = dict(cal.default)
    console.print(
        f"Category-query fusion calibrated on {sizes['index_products']:,} products in {seconds:.1f} s: "
        f"tuned on {sizes['tune_products']} products / {sizes['tune_queries']} queries, reported on "
        f"{sizes['report_products']} OTHER products / {sizes['report_queries']} queries "
        f"(disjoint slices, seed {cfg.get('seed')}).", highlight=False)
    console.print(f"Search: {cal.search}. Picked by {LABELS[SELECT_BY]} on the tuning slice "
                  f"(ties: {LABELS[str(cfg.get('tie_break'))]}, then the fixed default).", highlight=False)
    sources = [s for s in cal.sources if s in cal.figures]
    rows = [(s, f"{s} alone", cal.figures[s]) for s in sources]
    rows.append(("default", _fusion_label(default["method"], default["weights"]), cal.figures["default"]))
    rows.append(("calibrated", _fusion_label(cal.method, cal.weights), cal.figures["calibrated"]))
    console.print(_table("Reporting slice (percent; default: the fixed weights served without a calibration; "
                         "P@10 - best: against the best system in this table)", rows))
    if "ideal" in cal.figures:
        console.print(f"P@10 ceiling of these queries (every relevant product first): "
                      f"{100 * cal.figures['ideal'][SELECT_BY]:.2f} - most deep nodes hold fewer than 10 products.",
                      highlight=False)
    if per_level:
        console.print(_levels(per_level, [*sources, "default", "calibrated", "ideal"]))
    if cal.hidden:
        hidden = cal.hidden
        tuned = hidden["tuned_on_hidden"]
        hrows = [(s, f"{s} alone", hidden["figures"][s]) for s in sources]
        hrows.append(("default", _fusion_label(default["method"], default["weights"]),
                      hidden["figures"]["default"]))
        hrows.append(("calibrated", _fusion_label(cal.method, cal.weights), hidden["figures"]["calibrated"]))
        hrows.append(("tuned on hidden", _fusion_label(tuned["method"], tuned["weights"]),
                      hidden["figures"]["tuned_on_hidden"]))
        console.print(_table(f"Hidden categories: the {hidden['hidden_products']} held-out products without their "
                             "category, judged by their true one (reporting slice)", hrows))
        console.print(_levels(hidden.get("per_level", {}), [*sources, "default", "calibrated", "tuned_on_hidden"],
                              "P@10 by category level, hidden categories (reporting slice, percent)"))
    if stored:
        console.print(f"Stored with the index ({CALIBRATION_KEY}): category queries without --fusion/--weight "
                      f"now use {_fusion_label(cal.method, cal.weights)}.", highlight=False)
    else:
        console.print("Not stored (--dry-run).", highlight=False)


__all__ = ["calibrate_command", "render"]
