"""``ctir-es ingest {jsonl,flipkart,xmarket,sample}``: read, encode and index a catalogue."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..ingest.pipeline import IngestOptions
from ..ingest.report import IngestReport
from ..ingest.run import ingest_catalogue, load_encoders
from ..store.open import open_store
from .main import cli, settings_from, store_options
from .render import print_report


def ingest_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout."),
        click.option("--no-resume", is_flag=True, help="Start from the beginning even if a checkpoint exists."),
        click.option("--no-images", is_flag=True, help="Do not fetch images (no image vectors, nothing downloaded)."),
        click.option("--batch-size", type=click.IntRange(1, 4096), default=None, help="Products per batch [64]."),
        click.option("--clip-weights", default=None, metavar="TAG|FILE|none",
                     help="open_clip weights: a pretrained tag, a local checkpoint, or 'none' for text-only "
                          "[env: CTIR_ES_CLIP_WEIGHTS; default laion2b_s34b_b79k]."),
        click.option("--clip-model", default=None, metavar="ARCH",
                     help="open_clip architecture [env: CTIR_ES_CLIP_MODEL; default ViT-B-32]."),
        click.option("--text-model", default=None, metavar="NAME|DIR",
                     help="sentence-transformers model name or folder, or 'none' for BM25 only "
                          "[env: CTIR_ES_TEXT_MODEL; default all-MiniLM-L6-v2 (offline)]."),
        store_options,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.group()
def ingest() -> None:
    """Read a catalogue, encode it and index it (re-running resumes or updates, never duplicates)."""


def _run(ctx: click.Context, kind: str, source: Path | None, *, market: str | None = None,
         category: str | None = None, **opts: Any) -> None:
    settings = settings_from(
        ctx, store=opts["store"], es_url=opts["es_url"], text_model=opts["text_model"],
        clip_architecture=opts["clip_model"], clip_weights=opts["clip_weights"], batch_size=opts["batch_size"],
    )
    err = Console(stderr=True)
    report = IngestReport()
    options = IngestOptions(batch_size=settings.batch_size, with_images=not opts["no_images"],
                            resume=not opts["no_resume"])
    with err.status("loading models..."):
        text_encoder, image_encoder = load_encoders(settings, report, with_images=options.with_images)
    for msg in report.messages:
        err.print(msg, style="yellow", highlight=False, markup=False, soft_wrap=True)
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err, transient=False)

    with progress:
        task = progress.add_task(f"ingest {kind}", total=None, status="")

        def on_batch(r: IngestReport) -> None:
            progress.update(task, completed=r.indexed, status=(
                f"read {r.read}  indexed {r.indexed}  rejected {r.rejected_total}  "
                f"no image {r.images_missing_total}" + (f"  resumed past {r.skipped_resumed}" if r.skipped_resumed else "")))

        ingest_catalogue(kind, source, settings, text_encoder=text_encoder, image_encoder=image_encoder,
                         market=market, category=category, options=options, on_batch=on_batch, report=report)
    store = open_store(settings)
    try:
        count = store.count()
    finally:
        store.close()
    if opts["as_json"]:
        click.echo(json.dumps({**report.to_json(), "store_count": count}, ensure_ascii=False))
    else:
        print_report(report, err, count)
    if report.indexed == 0 and report.skipped_resumed == 0:
        raise click.ClickException("nothing could be indexed")


@ingest.command("jsonl")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@ingest_options
@click.pass_context
def ingest_jsonl(ctx: click.Context, file: Path, **opts: Any) -> None:
    """Generic JSONL: one {"id", "title", "categories", "attributes", "description", "images", "market"} per line."""
    _run(ctx, "jsonl", file, **opts)


@ingest.command("flipkart")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@ingest_options
@click.pass_context
def ingest_flipkart(ctx: click.Context, directory: Path, **opts: Any) -> None:
    """The Flipkart products CSV layout: DIR/products.csv and DIR/images/."""
    _run(ctx, "flipkart", directory, **opts)


@ingest.command("xmarket")
@click.option("--market", default=None, help="Market code, e.g. us.")
@click.option("--category", default=None, help="Top category as in the XMarket URL, e.g. Home_and_Kitchen.")
@click.option("--source", type=click.Path(exists=True, path_type=Path), default=None,
              help="A local metadata_*.json[.gz] file or a directory of them (no download).")
@ingest_options
@click.pass_context
def ingest_xmarket(ctx: click.Context, market: str | None, category: str | None, source: Path | None,
                   **opts: Any) -> None:
    """XMarket metadata: downloaded (cached, resumable) by --market/--category, or read from --source."""
    _run(ctx, "xmarket", source, market=market, category=category, **opts)


@ingest.command("sample")
@ingest_options
@click.pass_context
def ingest_sample(ctx: click.Context, **opts: Any) -> None:
    """The small sample catalogue bundled with ctir-es (from flipkart-1050, CC BY-SA 4.0)."""
    _run(ctx, "sample", None, **opts)
