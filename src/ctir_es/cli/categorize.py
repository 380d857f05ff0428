"""``ctir-es categorize``: suggested categories for a stored product, free text, an image, or
every product record of a JSONL file, with the signals that voted."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..categorize.core import SIGNALS, Suggestion
from ..errors import InvalidRecord, QueryError, one_line
from ..jsonsafe import loads_untrusted
from ..products import Product
from ..search import Search
from .main import cli, device_option, settings_from, store_options


def parse_signal_weights(items: tuple[str, ...]) -> dict[str, float]:
    """``("title=1", "bm25=0.5")`` -> weights; unknown signals and bad numbers are refused."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in SIGNALS:
            raise click.BadParameter(f"{item!r}: want SIGNAL=W with SIGNAL one of {', '.join(SIGNALS)}",
                                     param_hint="--weight")
        try:
            w = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {value!r} is not a number", param_hint="--weight") from None
        if not (0 <= w <= 1000):
            raise click.BadParameter(f"{item!r}: the weight must be between 0 and 1000", param_hint="--weight")
        out[name.strip()] = w
    return out


def suggestion_table(s: Suggestion) -> Table:
    table = Table(title=f"{s.query[:80]}", title_justify="left")
    for col in ("#", "category", "score", "support", "signals"):
        table.add_column(col, justify="right" if col in ("#", "score", "support") else "left")
    for i, c in enumerate(s.categories, start=1):
        signals = " ".join(f"{n} {v:.2f}" for n, v in c.signals.items() if v > 0)
        table.add_row(str(i), " > ".join(c.path), f"{c.score:.3f}", str(c.support), signals)
    return table


@cli.command()
@click.option("--id", "product_id", default=None, metavar="ID", help="A stored product (it never votes for itself).")
@click.option("--text", default=None, metavar="TEXT", help="Free text, e.g. a product title.")
@click.option("--image", type=click.Path(dir_okay=False), default=None, metavar="FILE|URL",
              help="An image (needs an index with image vectors).")
@click.option("--jsonl", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Product records, one JSON object per line (their categories are ignored).")
@click.option("--k", "k", type=click.IntRange(1, 100), default=5, show_default=True, help="Categories to return.")
@click.option("--depth", type=click.IntRange(0, 32), default=3, show_default=True,
              help="Rank nodes of this many levels; 0: the deepest.")
@click.option("--neighbours", type=click.IntRange(1, 1000), default=None,
              help="Products that vote in each kNN / BM25 signal [30].")
@click.option("--signals", "signal_names", default=None, metavar="LIST",
              help=f"Comma-separated subset of {', '.join(SIGNALS)} [all available].")
@click.option("--weight", "weights", multiple=True, metavar="SIGNAL=W", help="Fusion weight of a signal.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per input; JSON lines for --jsonl).")
@device_option
@store_options
@click.pass_context
def categorize(ctx: click.Context, product_id: str | None, text: str | None, image: str | None, jsonl: Path | None,
               k: int, depth: int, neighbours: int | None, signal_names: str | None, weights: tuple[str, ...],
               as_json: bool, store: Path | None, es_url: str | None) -> None:
    """Suggest categories from the title, image and CLIP-ITA signals (kNN, BM25, zero-shot), fused.

    Give exactly one of --id, --text, --image or --jsonl. Works on a text-only index.
    """
    given = [n for n, v in (("--id", product_id), ("--text", text), ("--image", image), ("--jsonl", jsonl))
             if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --id, --text, --image or --jsonl")
    only = [s.strip() for s in signal_names.split(",") if s.strip()] if signal_names else None
    if only is not None:
        unknown = [s for s in only if s not in SIGNALS]
        if unknown or not only:
            raise click.BadParameter(f"unknown signal {unknown[0] if unknown else '(none)'!r}; "
                                     f"supported: {', '.join(SIGNALS)}", param_hint="--signals")
    options: dict[str, Any] = {"k": k, "depth": depth or None, "neighbours": neighbours, "signals": only,
                               "weights": parse_signal_weights(weights) or None}
    settings = settings_from(ctx, store=store, es_url=es_url)
    out = Console()
    with Search.open(settings) as search:
        if jsonl is None:
            result = search.categorize(image, id=product_id, text=text, **options)
            if as_json:
                click.echo(json.dumps(result.to_json(), ensure_ascii=False))
                return
            _print(out, result)
            return
        # bytes in, one line at a time: a bad line (not UTF-8, too deep, a lone surrogate, not an
        # object) is a counted rejection with its number, and the lines after it still run
        done, rejected = 0, Counter[str]()
        with jsonl.open("rb") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    data = loads_untrusted(line)
                    if not isinstance(data, dict):
                        raise InvalidRecord("not_an_object", "a line must be a JSON object")
                    data.pop("categories", None)  # never from its own categories
                    record = Product.from_mapping(data)
                    result = search.categorize(product=record, **options)
                except (ValueError, InvalidRecord, QueryError) as exc:
                    rejected[getattr(exc, "reason", type(exc).__name__)] += 1
                    msg = f"line {n}: {one_line(exc, 200)}"
                    if as_json:
                        click.echo(json.dumps({"line": n, "error": msg}, ensure_ascii=False))
                    else:
                        click.echo(msg, err=True)
                    continue
                done += 1
                if as_json:
                    click.echo(json.dumps({"line": n, "id": record.id, **result.to_json()}, ensure_ascii=False))
                else:
                    _print(out, result, f"{record.id}: ")
        why = ", ".join(f"{reason} {count}" for reason, count in rejected.most_common())
        click.echo(f"categorized {done} lines, rejected {sum(rejected.values())}" + (f" ({why})" if why else ""),
                   err=True)


def _print(out: Console, result: Suggestion, prefix: str = "") -> None:
    if not result.categories:
        out.print(f"{prefix}no category suggested (no signal voted)", highlight=False)
    else:
        table = suggestion_table(result)
        table.title = prefix + result.query[:80]
        out.print(table)
    if result.path:
        out.print("suggested path: " + " > ".join(result.path[-1].path)
                  + f" ({', '.join(f'{c.score:.2f}' for c in result.path)})", highlight=False, markup=False)
    voted = [f"{s.name} ({s.voters})" for s in result.signals if s.voters]
    silent = [f"{s.name}: {s.note}" for s in result.signals if not s.voters]
    out.print("signals: " + (", ".join(voted) or "none") + ("; not voting: " + "; ".join(silent) if silent else ""),
              highlight=False, markup=False)


__all__ = ["categorize"]
