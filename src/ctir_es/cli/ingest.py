"""``ctir-es ingest {jsonl,flipkart,xmarket,sample}``: read, encode and index a catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..ingest.pipeline import IngestOptions
from ..ingest.report import IngestReport
from ..ingest.run import check_source, ingest_catalogue, load_encoders
from ..learn.hint import learn_hint
from ..store.open import open_store
from .main import cli, device_option, settings_from, store_options, with_options
from .render import print_report
from .sources import add_source_commands

ingest_options = with_options([
    click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout."),
    click.option("--no-resume", is_flag=True, help="Start from the beginning even if a checkpoint exists."),
    click.option("--no-images", is_flag=True, help="Do not fetch images (no image vectors, nothing downloaded)."),
    click.option("--allow-private-images", is_flag=True, default=None,
                 help="Also fetch image URLs on loopback, private and link-local addresses (an intranet "
                      "catalogue); without it they are refused [env: CTIR_ES_ALLOW_PRIVATE_IMAGES]."),
    click.option("--batch-size", type=click.IntRange(1, 4096), default=None, help="Products per batch [64]."),
    click.option("--clip-weights", default=None, metavar="TAG|FILE|none",
                 help="open_clip weights: a pretrained tag, a local checkpoint, or 'none' for text-only "
                      "[env: CTIR_ES_CLIP_WEIGHTS; default laion2b_s34b_b79k]."),
    click.option("--clip-model", default=None, metavar="ARCH",
                 help="open_clip architecture [env: CTIR_ES_CLIP_MODEL; default ViT-B-32]."),
    click.option("--text-model", default=None, metavar="NAME|DIR",
                 help="sentence-transformers model name or folder, or 'none' for BM25 only "
                      "[env: CTIR_ES_TEXT_MODEL; default all-MiniLM-L6-v2 (offline)]."),
    click.option("--clip-ita", default=None, metavar="NAME|DIR",
                 help="Add the clip_ita vector of a trained, exported CLIP-ITA model [env: CTIR_ES_CLIP_ITA]."),
    click.option("--no-clip-titles", is_flag=True,
                 help="Do not encode titles with CLIP's text tower (no image-to-text matching)."),
    device_option,
    store_options,
])


@cli.group()
def ingest() -> None:
    """Read a catalogue, encode it and index it (re-running resumes or updates, never duplicates)."""


def _run(ctx: click.Context, kind: str, source: Path | None, *, market: str | None = None,
         category: str | None = None, **opts: Any) -> None:
    check_source(kind, source, market=market, category=category)  # before the models load
    settings = settings_from(
        ctx, store=opts["store"], es_url=opts["es_url"], text_model=opts["text_model"],
        clip_architecture=opts["clip_model"], clip_weights=opts["clip_weights"], batch_size=opts["batch_size"],
        clip_ita=opts["clip_ita"], allow_private_images=opts["allow_private_images"] or None,
    )
    err = Console(stderr=True)
    report = IngestReport()
    options = IngestOptions(batch_size=settings.batch_size, with_images=not opts["no_images"],
                            resume=not opts["no_resume"], clip_titles=not opts["no_clip_titles"])
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
        hint = learn_hint(store) if report.indexed else None
    finally:
        store.close()
    if opts["as_json"]:
        click.echo(json.dumps({**report.to_json(), "store_count": count, "learn_hint": hint}, ensure_ascii=False))
    else:
        print_report(report, err, count)
        if hint:
            err.print(hint, style="cyan", highlight=False, markup=False)
    if report.indexed == 0 and report.skipped_resumed == 0:
        raise click.ClickException("nothing could be indexed")


add_source_commands(ingest, ingest_options, _run)
