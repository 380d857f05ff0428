"""``ctir-es query``: category, text or image search over a store."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from ..errors import FilterError, QueryError
from ..filters import Filter, parse_filter_text
from ..ranking.weights import parse_weights
from ..search import Search
from ..shop.cursor import DirectoryPins
from ..vocabulary import FUSION_METHODS, MAX_K, MODES
from .main import cli, device_option, settings_from, store_options

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
from ..shop.arrange import shop_summary
from .render import search_footer, search_table


def looks_like_image_file(text: str) -> bool:
    path = Path(text).expanduser()
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


@cli.command()
@click.argument("text")
@click.option("--mode", type=click.Choice(MODES), default=None,
              help="category (default when TEXT holds '>'), text, or image (TEXT is a path or URL; "
                   "the default when TEXT is an image file).")
@click.option("--k", "k", type=click.IntRange(1, MAX_K), default=10, show_default=True, help="Results to return.")
@click.option("--fusion", type=click.Choice(FUSION_METHODS), default=None,
              help="How lexical and vector results are fused [default: the calibration stored by "
                   "`ctir-es calibrate` for category queries, else rrf].")
@click.option("--weight", "weights", multiple=True, metavar="SOURCE=W",
              help="Per-source fusion weight, e.g. --weight bm25=0.3 --weight text=0.7.")
@click.option("--within", default=None, metavar="PATH", help="Only products under this category, e.g. 'Kitchen'.")
@click.option("--market", default=None, help="Only products of this market.")
@click.option("--with-image", is_flag=True, help="Only products with an image.")
@click.option("--filter", "filter_texts", multiple=True, metavar="NAME:VALUE",
              help="Only products matching it (repeatable, all must hold): brand:Sony|Bose, -brand:Sony, "
                   "price:500..2000, fk_advantage:true, has:brand, category:'A > B'. docs/shop-search.md.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--facet", "facets", multiple=True, metavar="NAME",
              help="Count this value over the fused candidates (repeatable): brand, price, category... "
                   "Disjunctive: a facet with a --filter on it is counted without that filter.")
@click.option("--facet-size", type=click.IntRange(1, 100), default=None, help="Values per facet [default: 10].")
@click.option("--sort", "sort", default=None, metavar="SORT",
              help="relevance (default), price_asc, price_desc, rating, newest, or NAME_asc|NAME_desc of a "
                   "number value; sorts the top relevant results only (docs/shop-search.md).")
@click.option("--collapse", default=None, metavar="auto|NAME",
              help="One result per variant group: auto (titles without colour/size words, near-duplicate "
                   "title vectors) or a keyword value such as a parent id.")
@click.option("--diverse", is_flag=False, flag_value=0.7, default=None, type=click.FloatRange(0, 1), metavar="[LAMBDA]",
              help="Showcase: MMR over title/image vectors so near-duplicates do not fill the page (lambda 0.7).")
@click.option("--pin", is_flag=True,
              help="Stable pages: pin this query's ranking (1000 deep) and print the cursor of the next page.")
@click.option("--cursor", default=None, metavar="TOKEN",
              help="The next page of a pinned ranking (the cursor --pin printed; same query). Pins are kept "
                   "10 minutes after their last page under the cache dir (docs/shop-search.md).")
@device_option
@store_options
@click.pass_context
def query(ctx: click.Context, text: str, mode: str | None, k: int, fusion: str | None, weights: tuple[str, ...],
          within: str | None, market: str | None, with_image: bool, filter_texts: tuple[str, ...], as_json: bool,
          diverse: float | None, facets: tuple[str, ...], facet_size: int | None, sort: str | None,
          collapse: str | None, pin: bool, cursor: str | None,
          store: Path | None, es_url: str | None) -> None:
    """Search the index: a category path ("Kitchen > Blenders"), free text, or an image."""
    settings = settings_from(ctx, store=store, es_url=es_url)
    if mode is None and looks_like_image_file(text):  # `ctir-es query photo.jpg` (the CLI only:
        mode = "image"  # over HTTP, query text must never make the server read a file)
    filters = []
    if within:
        filters.append(Filter("category", "subtree", within))
    if market:
        filters.append(Filter("market", "eq", market))
    if with_image:
        filters.append(Filter("has_image", "eq", True))
    try:
        filters += [parse_filter_text(t) for t in filter_texts]  # typed against the index by Search
    except FilterError as exc:
        raise click.BadParameter(str(exc), param_hint="--filter") from None
    try:
        source_weights = parse_weights(weights)  # the validator the HTTP API uses
    except QueryError as exc:
        raise click.BadParameter(str(exc), param_hint="--weight") from None
    with Search.open(settings) as search:
        response = search.search(
            text if mode != "image" else None,
            image=text if mode == "image" else None,
            mode=mode, k=k, filters=filters, fusion=fusion, weights=source_weights,
            diverse=diverse if diverse is not None else False,
            facets=facets, facet_size=facet_size, sort=sort, collapse=collapse,
            # one process per call: pins persist as files (bounded) so the next call can page on
            pin=pin, cursor=cursor, pins=DirectoryPins(settings.cache_dir / "cursors") if pin or cursor else None,
        )
    if as_json:
        click.echo(json.dumps(response.to_json(), ensure_ascii=False))
        return
    console = Console()
    if not response.results:
        console.print(f"No results for {text!r}.", markup=False, highlight=False)
    else:
        console.print(search_table(response, console.width))
        Console(stderr=True).print(search_footer(response, console.width), style="dim", markup=False,
                                   highlight=False)
    for line in shop_summary(response):  # facets, sort window, collapse (--json has it all)
        console.print(line, markup=False, highlight=False)
    for notice in response.notices:
        Console(stderr=True).print(f"note: {notice}", style="yellow", markup=False, highlight=False)
    if response.next_cursor:
        Console(stderr=True).print(f"next page: --cursor {response.next_cursor}", markup=False, highlight=False)
