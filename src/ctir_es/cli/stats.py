"""``ctir-es stats``: what a store holds and which models built it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..encoders.loading import models_dir_of
from ..errors import StoreError
from ..learned import learned_summary
from ..ranking.calibration import calibration_summary
from ..store.embedded import REBUILD_HINT
from ..store.open import open_store
from .main import cli, settings_from, store_options


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--check", is_flag=True,
              help="Also run the embedded store's full integrity check (reads every page) and compare the counts "
                   "of products, the lexical index (FTS5 or tantivy), vectors, typed values and category "
                   "postings; exit 1 naming any damage or gap.")
@store_options
@click.pass_context
def stats(ctx: click.Context, as_json: bool, check: bool, store: Path | None, es_url: str | None) -> None:
    """Counts, fields and the encoders the index was built with."""
    settings = settings_from(ctx, store=store, es_url=es_url)
    s = open_store(settings)
    try:
        data = s.stats()
        checker = getattr(s, "check", None)
        if check and checker is not None:
            problems = checker()
            if problems:
                raise StoreError(f"store {settings.store} is damaged: {'; '.join(problems[:3])}; {REBUILD_HINT}")
            data["integrity"] = "ok"
        schema = s.schema()
        if schema is not None:
            data["calibration"] = calibration_summary(s, schema)
            data["learned"] = learned_summary(s, schema, models_dir_of(settings))
            data["values"] = {name: spec.to_json() for name, spec in sorted(schema.values.items())}
    finally:
        s.close()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
        return
    console = Console()
    for key, value in data.items():
        if key == "calibration":
            console.print(f"calibration: {calibration_line(value)}", highlight=False)
        elif key == "learned":
            for line in learned_lines(value):
                console.print(line, highlight=False, markup=False)
        elif key == "values":
            shown = [f"{n} ({v['kind']}{', ' + v['unit'] if v.get('unit') else ''})" for n, v in value.items()]
            console.print(f"values (--filter NAME:...): {', '.join(shown) or 'none'}", highlight=False,
                          markup=False)
        elif key == "vector_fields":
            for name, f in value.items():
                enc = f.get("encoder", {})
                console.print(f"  {name}: {f['dims']} dims, {f.get('count', '?')} vectors, "
                              f"encoder {enc.get('id', '?')}", highlight=False)
        elif isinstance(value, dict):
            console.print(f"{key}: " + ", ".join(f"{k} ({v})" for k, v in value.items()), highlight=False)
        else:
            console.print(f"{key}: {value}", highlight=False)


def calibration_line(summary: dict[str, Any]) -> str:
    """The serving fusion of category queries in one line (``ranking.calibration``)."""
    if summary.get("status") != "in force":
        return f"{summary.get('status')} - {summary.get('note')}"
    weights = " ".join(f"{k}={v:g}" for k, v in summary["weights"].items())
    figure = "P@10" if summary.get("metric") == "precision@10" else str(summary.get("metric"))

    def pct(x: float | None) -> str:
        return "?" if x is None else f"{100 * x:.2f}"

    return (f"{summary['method']} {weights} for category queries - {figure} {pct(summary.get('calibrated'))} "
            f"calibrated vs {pct(summary.get('default'))} fixed default (best single source "
            f"{pct(summary.get('best_single'))}; {summary.get('report_queries')} held-out queries; tuned for "
            f"{summary.get('tuned_for')} categories), "
            f"calibrated {summary.get('created')}")


def learned_lines(summary: dict[str, Any]) -> list[str]:
    """The model ``ctir-es learn`` trained on the index (``ctir_es.learned``), how stale it is,
    and a missing model folder: a few lines."""
    if summary.get("status") in ("none", "unreadable"):
        lines = [f"learned model: {summary.get('status')} - {summary.get('note')}"]
    else:
        metrics = summary.get("metrics") or {}
        before, after = metrics.get("before") or {}, metrics.get("after") or {}
        shown = [name for name in after if name in before]

        def pct(x: float | None) -> str:
            return "?" if x is None else f"{100 * x:.2f}"

        figures = "; ".join(f"{name} {pct(before[name])} -> {pct(after[name])}" for name in shown)
        unseen = summary.get("unseen_categories")
        lines = [
            f"learned model: {summary['model']} ({summary.get('variant')}), {summary.get('status')}, "
            f"learned {summary.get('created')} on {summary.get('trained_products')} of {summary.get('products')} "
            f"products" + (f" - {figures}" if figures else ""),
            f"  since: {summary.get('written_since')} products written "
            f"({100 * float(summary.get('written_share') or 0):.1f}%), "
            + ("unseen categories unknown" if unseen is None else f"{unseen} categories it never saw"
               + ("" if summary.get("unseen_at_learn") is None
                  else f" ({summary['unseen_at_learn']} of them held out when it learned)")),
        ]
        if summary.get("hint"):
            lines.append(f"  hint: {summary['hint']}")
    if summary.get("problem"):
        lines.append(f"  problem: {summary['problem']}")
    return lines
