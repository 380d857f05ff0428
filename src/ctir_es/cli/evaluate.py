"""``ctir-es evaluate {flipkart,jsonl,xmarket,sample}``: the paper's category-to-image protocol
over a catalogue, every available system, hybrid fusion, and the reports."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..evaluation.runner import EvalConfig, EvalResult, evaluate_catalogue
from ..evaluation.significance import STAT_TESTS
from ..evaluation.systems import DEFAULT_TEXT_MODELS
from ..protocol import QUERY_TEXTS, RELEVANCE, SETTINGS, SplitSpec
from .eval_tasks import run_task, task_options
from .main import cli, device_option, os_url_option, settings_from, with_options
from .sources import add_source_commands, source_name

eval_options = with_options([
    click.option("--setting", "settings_", multiple=True, default=("all",), show_default=True,
                 type=click.Choice(["all", *SETTINGS]),
                 help="random (a random level of each path; the paper's 'all'), general (roots), "
                      "specific (leaves), or all three. Repeatable."),
    click.option("--query-text", type=click.Choice(list(QUERY_TEXTS)), default="path", show_default=True,
                 help="Query with the full path 'A > B > C' (as a shop writes it) or the leaf name."),
    click.option("--relevance", type=click.Choice(list(RELEVANCE)), default="subtree", show_default=True,
                 help="subtree: products under the node; exact: the paper's exact-level match."),
    click.option("--limit", type=click.IntRange(1, None), default=None,
                 help="Only the first N products of the catalogue (quick runs)."),
    click.option("--systems", default="all", show_default=True, metavar="NAMES",
                 help="Comma-separated system names or patterns, e.g. 'bm25-*,minilm,rrf:*'."),
    click.option("--text-model", "text_models", multiple=True, metavar="NAME|DIR",
                 help="Zero-shot text encoders over titles (repeatable) "
                      f"[default: {', '.join(DEFAULT_TEXT_MODELS)}, each when installed]."),
    click.option("--clip-model", default=None, metavar="ARCH", help="open_clip architecture for zero-shot CLIP."),
    click.option("--clip-weights", default=None, metavar="TAG|FILE|none",
                 help="open_clip weights for zero-shot CLIP; without weights CLIP is listed as skipped."),
    click.option("--trained", multiple=True, type=click.Path(exists=True, path_type=Path), metavar="DIR",
                 help="A trained CLIP-ITA model folder (repeatable)."),
    click.option("--seed", type=int, default=13, show_default=True,
                 help="Seed of the split, the random levels and the significance tests."),
    click.option("--split", "split_fractions", default="0.7,0.1,0.2", show_default=True, metavar="TRAIN,VAL,TEST",
                 help="Split fractions."),
    click.option("--stat-test", type=click.Choice(STAT_TESTS), default="student", show_default=True,
                 help="Paired significance test (ranx): student (t-test, deterministic), fisher "
                      "(randomisation; ranx's p-values vary slightly between runs) or tukey (HSD)."),
    click.option("--no-significance", is_flag=True, help="Skip the significance tests."),
    click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Output folder [default: artifacts/eval/<source name>]."),
    click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Where evaluation indexes are cached [default: <cache dir>/eval]."),
    click.option("--rebuild", is_flag=True, help="Rebuild the evaluation indexes even if cached."),
    click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout."),
    click.option("--es-url", default=None, metavar="URL",
                 help="Evaluate on Elasticsearch at URL (indexes ctir-eval-*) [env: CTIR_ES_URL]."),
    os_url_option,
    *task_options(),
    device_option,
])


@cli.group()
def evaluate() -> None:
    """Measure category-to-image retrieval with the paper's protocol (every system, hybrids, reports).

    Splits the catalogue (train/val/test by a seeded hash of the id), queries every category
    node of the test products, and ranks the test products with each system through the store.
    Writes report.md, report.json, TREC runs and qrels, and plot.png to --out.
    """


class _Progress:
    """Library progress callbacks -> rich progress bars (one per stage)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        task = self.tasks.get(stage)
        if task is None:
            task = self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(task, completed=done, total=total)
        if total is None and done == 0:
            return
        for other, tid in self.tasks.items():  # a new stage means the earlier ones are done
            if other != stage and not self.progress.tasks[tid].finished:
                t = self.progress.tasks[tid]
                self.progress.update(tid, total=t.total or 1, completed=t.total or 1)


def _run(ctx: click.Context, kind: str, source: Path | None, *, market: str | None = None,
         category: str | None = None, **opts: Any) -> None:
    if opts["task"] != "retrieval":  # categorize, audit, diverse: docs/categories.md
        run_task(ctx, kind, source, market=market, category=category, **opts)
        return
    started = time.perf_counter()
    settings = settings_from(ctx, es_url=opts["es_url"], clip_architecture=opts["clip_model"],
                             clip_weights=opts["clip_weights"])
    chosen = tuple(SETTINGS) if "all" in opts["settings_"] else tuple(dict.fromkeys(opts["settings_"]))
    config = EvalConfig(
        settings=chosen,
        query_text=opts["query_text"],
        relevance=opts["relevance"],
        split=SplitSpec.parse(opts["split_fractions"], opts["seed"]),
        systems=tuple(s.strip() for s in opts["systems"].split(",") if s.strip()),
        text_models=tuple(opts["text_models"]) or DEFAULT_TEXT_MODELS,
        trained=tuple(opts["trained"]),
        significance=not opts["no_significance"],
        stat_test=opts["stat_test"],
        limit=opts["limit"],
        work_dir=opts["work_dir"],
        rebuild=opts["rebuild"],
    )
    out_dir = opts["out"] or Path("artifacts") / "eval" / source_name(kind, source, category)
    err = Console(stderr=True)
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=30),
                        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=err,
                        transient=True)
    with progress:
        result = evaluate_catalogue(kind, source, settings, config, market=market, category=category,
                                    progress=_Progress(progress))
    from ..evaluation.report import write_report

    command = "ctir-es " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""
    result.wall_seconds = time.perf_counter() - started
    files = write_report(result, out_dir, command)
    if opts["as_json"]:
        click.echo(Path(files["json"]).read_text(encoding="utf-8"))
        return
    _print(result, files, err)


def _print(result: EvalResult, files: dict[str, Any], err: Console) -> None:
    from ..evaluation.report import header, hybrid_findings, results_rows, table_metrics

    out = Console() if Console().is_terminal else Console(width=180)
    ds = result.dataset
    splits = ds.get("splits", {})
    out.print(f"[bold]{ds.get('kind')} {ds.get('source')}[/bold]: {ds.get('products')} products, split "
              f"train {splits.get('train')} / val {splits.get('val')} / test {splits.get('test')} "
              f"(seed {result.config.split.seed}), query text {result.config.query_text}, relevance "
              f"{result.config.relevance}", highlight=False)
    table = Table(title="test split, percent (mAP@k ÷ min(k,R) as in the paper; ÷R as trec_eval)",
                  title_justify="left")
    for col in ["setting", "system", "n", *(header(m) for m in table_metrics(result))]:
        table.add_column(col, justify="left" if col in ("setting", "system") else "right", no_wrap=True)
    previous = None
    for row in results_rows(result, short=True):
        if previous is not None and row[0] != previous:
            table.add_section()
        previous = row[0]
        table.add_row(*row)
    out.print(table)
    for s in result.skipped:
        out.print(f"  {s.label} ({s.name}): {s.reason}", highlight=False, markup=False)
    for note in result.notes:
        out.print(f"  note: {note}", highlight=False, markup=False)
    findings = [f for f in hybrid_findings(result) if f["metric"] == "map_min@10"]
    better = [f for f in findings if f["delta"] > 1e-12]
    if findings:
        out.print(f"hybrid vs best component (mAP@10): better in {len(better)} of {len(findings)} "
                  "setting x hybrid pairs" + (", e.g. " + ", ".join(
                      f"{f['hybrid']} {SETTINGS[f['setting']]} {100 * f['delta']:+.2f}" for f in better[:3])
                      if better else ""), highlight=False)
    out.print(f"wall time {result.wall_seconds:.0f} s; report {files['markdown']}, JSON {files['json']}, "
              f"plot {files['plot'] or '-'}, {len(files['runs'])} TREC runs", highlight=False)


add_source_commands(evaluate, eval_options, _run, download="downloaded")

__all__ = ["evaluate"]
