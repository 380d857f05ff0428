"""``ctir-es train``: fit CLIP-ITA on a catalogue, report it against zero-shot, export it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..ingest.run import KINDS
from .main import cli, device_option, settings_from

METRIC_COLUMNS = (("precision@1", "P@1"), ("precision@5", "P@5"), ("precision@10", "P@10"),
                  ("map@10", "mAP@10÷R"), ("map_min@10", "mAP@10÷min(k,R)"), ("r-precision", "R-prec"))


def _floats(text: str) -> tuple[float, float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 3:
        raise click.BadParameter("give three fractions, train,val,test (e.g. 0.7,0.1,0.2)")
    return parts[0], parts[1], parts[2]


def results_table(result: Any) -> Table:
    rel = result.config.relevance
    table = Table(title=f"test split, {result.config.setting} setting, {rel} relevance "
                        f"({result.test[rel][next(iter(result.test[rel]))]['queries']} queries)")
    table.add_column("system")
    table.add_column("queries")
    for _, label in METRIC_COLUMNS:
        table.add_column(label, justify="right")
    for name, res in result.test[rel].items():
        for group in ("all", "seen", "unseen"):
            count = res["queries"] if group == "all" else res[f"{group}_queries"]
            table.add_row(name if group == "all" else f"  {group}", str(count),
                          *(f"{100 * res[group][key]:.2f}" for key, _ in METRIC_COLUMNS))
    return table


@cli.command()
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("source", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--modalities", default=None, metavar="LIST",
              help="Product modalities: image,title,attributes (CLIP-ITA), image (CLIP-I), image,attributes "
                   "(CLIP-IA), title,attributes (text only). Default: all three when CLIP weights load, "
                   "else title,attributes.")
@click.option("--setting", type=click.Choice(["specific", "general", "random"]), default="specific",
              show_default=True, help="Category level paired with each product (most specific, most general, random).")
@click.option("--query-text", type=click.Choice(["path", "leaf"]), default="path", show_default=True,
              help="Category text: the full path 'A > B > C' or the last level 'C'.")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=30, show_default=True)
@click.option("--batch-size", type=click.IntRange(2, 65_536), default=None, help="[128; 8 in the general setting]")
@click.option("--lr", type=float, default=None, help="AdamW learning rate [1e-4; --paper: 1e-3].")
@click.option("--weight-decay", type=float, default=None, help="AdamW weight decay [1e-3].")
@click.option("--lambda", "lam", type=click.FloatRange(0, 1), default=None, help="Loss weight of product->category [0.5].")
@click.option("--tau", type=click.FloatRange(min=1e-4), default=None, help="Temperature (start value if learnt) [0.07; --paper: 1].")
@click.option("--learn-tau/--fixed-tau", default=None, help="Learn the temperature [learn; --paper: fixed].")
@click.option("--skip/--no-skip", default=None, help="Heads with an identity-started skip path [on; --paper: off].")
@click.option("--dim", "out_dim", type=click.IntRange(2, 8192), default=None, help="Output dims d [text dims; --paper: 256].")
@click.option("--patience", type=click.IntRange(1, 10_000), default=5, show_default=True,
              help="Stop after this many epochs without a better validation score.")
@click.option("--relevance", type=click.Choice(["exact", "subtree"]), default="exact", show_default=True,
              help="Relevance for validation and the headline table (both are written to metrics.json).")
@click.option("--seed", type=int, default=13, show_default=True, help="Split and training seed.")
@click.option("--split", "split", default="0.7,0.1,0.2", show_default=True, metavar="TRAIN,VAL,TEST",
              help="Split fractions by product (the evaluation protocol's split).")
@click.option("--paper", is_flag=True,
              help="The paper's configuration: MPNet (all-mpnet-base-v2) as the text tower unless --text-model is "
                   "given, tau 1 fixed, lr 1e-3, plain heads, d 256.")
@click.option("--pairs", type=click.Choice(["label", "ancestors"]), default="label", show_default=True,
              help="Training pairs: the setting's label (the paper), or every level of each product's path.")
@click.option("--train-fraction", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Train on this stable share of the training products (learning curves).")
@click.option("--backoff/--no-backoff", default=True, show_default=True,
              help="Also report the head mixed with zero-shot by distance to the seen categories (tuned on val).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory [runs/<variant>-<setting>-<time>].")
@click.option("--export/--no-export", default=True, show_default=True,
              help="Export the heads to ONNX into the models dir, ready for ingest.")
@click.option("--name", default=None, help="Name of the exported model [<variant>-<setting>-<run dir name>].")
@click.option("--text-model", default=None, metavar="NAME|DIR", help="Frozen text encoder [all-MiniLM-L6-v2].")
@click.option("--clip-model", default=None, metavar="ARCH", help="open_clip architecture for the image modality.")
@click.option("--clip-weights", default=None, metavar="TAG|FILE|none", help="CLIP weights for the image modality.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N products (quick runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@device_option
@click.pass_context
def train(ctx: click.Context, kind: str, source: Path | None, modalities: str | None, setting: str, query_text: str,
          epochs: int, batch_size: int | None, lr: float | None, weight_decay: float | None, lam: float | None,
          tau: float | None, learn_tau: bool | None, skip: bool | None, out_dim: int | None, patience: int,
          relevance: str, seed: int, split: str, paper: bool, pairs: str, train_fraction: float, backoff: bool,
          out_dir: Path | None, export: bool, name: str | None,
          text_model: str | None, clip_model: str | None, clip_weights: str | None, limit: int | None,
          as_json: bool) -> None:
    """Train CLIP-ITA on a catalogue (frozen encoders, cached features, early stopping).

    Prints progress, then the test split against the zero-shot text encoder (all, seen and
    unseen categories), and writes checkpoint.pt, config.json, curve.json/csv and
    metrics.json to the run directory. With --export (the default) the heads go to the models
    dir; ingest with CTIR_ES_CLIP_ITA=<name> to add a clip_ita vector to every product.
    """
    from ..training.train import PAPER, TrainConfig, train_catalogue

    if paper and text_model is None:
        text_model = "all-mpnet-base-v2"  # the paper's text tower (`ctir-es models install mpnet`)
    settings = settings_from(ctx, text_model=text_model, clip_architecture=clip_model, clip_weights=clip_weights)
    err = Console(stderr=True)
    chosen = _modalities(modalities, settings, err)
    base: dict[str, Any] = dict(PAPER) if paper else {}
    given = {"lr": lr, "weight_decay": weight_decay, "lam": lam, "tau": tau, "learn_tau": learn_tau, "skip": skip,
             "out_dim": out_dim}
    base.update({k: v for k, v in given.items() if v is not None})
    base["epochs"] = epochs
    config = TrainConfig(modalities=chosen, setting=setting, query_text=query_text, batch_size=batch_size,
                         patience=patience, relevance=relevance, seed=seed, split=_floats(split), pairs=pairs,
                         train_fraction=train_fraction, backoff=backoff, **base)
    run_dir = out_dir or Path("runs") / f"{config.variant}-{setting}-{time.strftime('%Y%m%d-%H%M%S')}"

    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                        TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[status]}"),
                        TimeElapsedColumn(), console=err, transient=False)
    tasks: dict[str, Any] = {}

    def on_event(event: str, info: dict[str, Any]) -> None:
        if event == "notice":
            progress.console.print(info["message"], style="yellow", highlight=False, markup=False)
        elif event == "data":
            progress.console.print(
                f"{info['products']} products ({info['split_sizes']}), {info['train_pairs']} training pairs over "
                f"{info['train_categories']} categories; test: {info['test_categories']} categories, "
                f"{info['test_categories_unseen']} unseen in training", highlight=False)
        elif event == "features":
            task = tasks.get(info["stage"])
            if task is None:
                task = tasks[info["stage"]] = progress.add_task(info["stage"], total=info["total"], status="")
            progress.update(task, completed=info["done"])
        elif event == "epoch":
            task = tasks.get("epochs")
            if task is None:
                task = tasks["epochs"] = progress.add_task("train", total=info["epochs"], status="")
            loss = info["train_loss"]
            metric = f"val_{config.early_stop_metric}"
            progress.update(task, completed=info["epoch"], status=(
                f"loss {loss:.4f}  " if loss is not None else "") + f"val loss {info['val_loss'] or 0:.4f}  "
                f"val {config.early_stop_metric} {info.get(metric, 0):.4f}  tau {info['tau']:.3f}  "
                f"best epoch {info['best_epoch']}")

    with progress:
        result = train_catalogue(kind, source, settings, config, run_dir, progress=on_event, limit=limit)
    exported = None
    if export:
        from ..encoders.models import default_models_dir
        from ..training.export import export_clip_ita

        exported = export_clip_ita(run_dir, models_dir=default_models_dir(settings.cache_dir), name=name, force=True)
    if as_json:
        click.echo(json.dumps({"run_dir": str(run_dir), "best_epoch": result.best_epoch,
                               "epochs_run": result.epochs_run, "seconds": result.seconds, "data": result.data,
                               "config": config.to_json(), "test": result.test,
                               "exported": str(exported.path) if exported else None}, indent=2))
        return
    console = Console()
    console.print(results_table(result))
    head = result.headline()
    with_backoff = (f", with backoff {head[config.variant + '+backoff']:.4f} (weight {result.backoff['weight_seen']:g}, "
                    f"decay {result.backoff['decay']:g})") if config.variant + "+backoff" in head else ""
    console.print(f"P@10 on held-out products: {config.variant} {head[config.variant]:.4f}{with_backoff}, zero-shot "
                  f"{head['zero-shot']:.4f}. Best epoch {result.best_epoch} of {result.epochs_run}; "
                  f"features {result.seconds['features']:.1f} s, training {result.seconds['training']:.1f} s, "
                  f"total {result.seconds['total']:.1f} s.", highlight=False)
    console.print(f"run: {run_dir}", highlight=False)
    if exported:
        console.print(f"exported: {exported.path} - ingest with CTIR_ES_CLIP_ITA={exported.manifest['name']}",
                      highlight=False)


def _modalities(text: str | None, settings: Any, err: Console) -> tuple[str, ...]:
    if text:
        return tuple(m.strip() for m in text.split(",") if m.strip())
    if not settings.use_images:
        return ("title", "attributes")
    from ..encoders.registry import EncoderConfig, try_load_image_encoder

    encoder, notice = try_load_image_encoder(EncoderConfig.from_settings(settings))
    if encoder is None:
        err.print(f"{notice}; training the text-only variant (title,attributes)", style="yellow", highlight=False,
                  markup=False)
        return ("title", "attributes")
    return ("image", "title", "attributes")
