"""``ctir-es evaluate ... --task categorize|audit|diverse|t2i|i2t``: the category tasks of issue 13
(docs/categories.md) and text-image retrieval between titles and images (docs/text-image.md).
``--task retrieval`` (the default) is the paper's protocol."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from .main import settings_from

TASKS: dict[str, str] = {
    "retrieval": "category-to-image retrieval, the paper's protocol",
    "categorize": "infer hidden categories of test products (top-1/top-5 per level, hF, seen/unseen)",
    "audit": "find products moved to a wrong category by seeded synthetic noise (AUC, P@k, restore rate)",
    "diverse": "near-duplicates in the top 10 of category queries with and without --diverse, and the P@10 cost",
    "t2i": "text-to-image: each held-out title ranks the held-out images (Recall@1/5/10; needs CLIP)",
    "i2t": "image-to-text: each held-out image ranks the held-out titles (Recall@1/5/10; needs CLIP)",
}


def task_options() -> list[Callable[[Any], Any]]:
    return [
        click.option("--task", type=click.Choice(list(TASKS)), default="retrieval", show_default=True,
                     help="; ".join(f"{k}: {v}" for k, v in TASKS.items()) + "."),
        click.option("--label-space", type=click.Choice(["train", "taxonomy"]), default="train", show_default=True,
                     help="categorize: zero-shot signals score the train categories only, or every node of "
                          "the catalogue's tree."),
        click.option("--noise", type=click.FloatRange(0.0, 0.5, min_open=True), default=0.05, show_default=True,
                     help="audit: share of products moved to another category."),
    ]


def run_task(ctx: click.Context, kind: str, source: Path | None, *, market: str | None = None,
             category: str | None = None, **opts: Any) -> None:
    from ..evaluation.runner import load_products
    from ..evaluation.tasks import NEEDS_CLIP, TaskOptions, make_task
    from ..ingest.run import check_source
    from ..protocol import SplitSpec

    started = time.perf_counter()
    check_source(kind, source, market=market, category=category)  # before CLIP loads
    settings = settings_from(ctx, es_url=opts["es_url"], clip_architecture=opts["clip_model"],
                             clip_weights=opts["clip_weights"])
    err = Console(stderr=True)
    clip = None
    if opts["task"] in NEEDS_CLIP:  # fail before reading the catalogue when CLIP is absent
        from ..evaluation.text_image import load_clip

        clip = load_clip(settings, opts["task"])
    err.print(f"reading {kind} {source or ''}", highlight=False)
    products, report = load_products(kind, source, settings, limit=opts["limit"], market=market, category=category)
    if not products:
        raise click.ClickException(f"no products could be read from {kind} {source}: nothing to evaluate")
    meta = {"kind": kind, "source": str(source) if source is not None else kind, "read": report.read}
    name = (source.stem if source is not None and source.is_file() else source.name if source is not None
            else category or kind)
    out_dir = opts["out"] or Path("artifacts") / "eval" / name
    command = "ctir-es " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    split = SplitSpec.parse(opts["split_fractions"], opts["seed"])
    task = opts["task"]

    def progress(stage: str, done: int, total: int | None) -> None:
        if total and (done == total):
            err.print(f"  {stage}: {done}/{total}", highlight=False)

    runner = make_task(task, TaskOptions(
        split=split, seed=opts["seed"], text_model=(opts["text_models"] or (None,))[0],
        label_space=opts["label_space"], trained=tuple(opts["trained"]), noise=opts["noise"], limit=opts["limit"],
        work_dir=opts["work_dir"], rebuild=opts["rebuild"], image_encoder=clip))
    result = runner.evaluate(products, settings, dataset_meta=meta, progress=progress)
    files = runner.write(result, out_dir, command)
    text = runner.markdown(result, command)
    if opts["as_json"]:
        click.echo(json.dumps(result, default=str))
        return
    click.echo(text)
    err.print(f"wall time {time.perf_counter() - started:.0f} s; report {files['markdown']}, JSON {files['json']}",
              highlight=False)
