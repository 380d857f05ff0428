"""The catalogue sources a command can read, declared once: ``jsonl FILE``, ``flipkart DIR``,
``xmarket [--market --category --source]`` and ``sample``. ``ctir-es ingest`` and
``ctir-es evaluate`` each add them as subcommands with their own options and runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .main import Decorator

# run(ctx, kind, source, market=..., category=..., **options)
Runner = Callable[..., None]


def source_name(kind: str, source: Path | None, category: str | None = None) -> str:
    """A short name for output folders: the file's stem, the folder's name, or the category."""
    if source is None:
        return category or kind
    return source.stem if source.is_file() else source.name


def add_source_commands(group: click.Group, options: Decorator, run: Runner, *, download: str = "downloaded") -> None:
    """The four source subcommands on ``group``; each calls ``run`` with the source it names."""

    for kind, argument, is_file, doc in (
        ("jsonl", "file", True,
         'Generic JSONL: one {"id", "title", "categories", "attributes", "description", "images", "market"} per line.'),
        ("flipkart", "directory", False, "The Flipkart products CSV layout: DIR/products.csv and DIR/images/."),
    ):
        _path_command(group, kind, argument, is_file, doc, options, run)

    @group.command("xmarket", help=f"XMarket metadata: {download} (cached, resumable) by --market/--category, "
                                   "or read from --source.")
    @click.option("--market", default=None, help="Market code, e.g. us.")
    @click.option("--category", default=None, help="Top category as in the XMarket URL, e.g. Home_and_Kitchen.")
    @click.option("--source", type=click.Path(exists=True, path_type=Path), default=None,
                  help="A local metadata_*.json[.gz] file or a directory of them (no download).")
    @options
    @click.pass_context
    def xmarket(ctx: click.Context, market: str | None, category: str | None, source: Path | None,
                **opts: Any) -> None:
        run(ctx, "xmarket", source, market=market, category=category, **opts)

    @group.command("sample")
    @options
    @click.pass_context
    def sample(ctx: click.Context, **opts: Any) -> None:
        """The small sample catalogue bundled with ctir-es (from flipkart-1050, CC BY-SA 4.0)."""
        run(ctx, "sample", None, **opts)


def _path_command(group: click.Group, kind: str, argument: str, is_file: bool, doc: str, options: Decorator,
                  run: Runner) -> None:
    """``<group> KIND PATH``: a source read from one file or folder."""

    @group.command(kind, help=doc)
    @click.argument(argument, type=click.Path(exists=True, file_okay=is_file, dir_okay=not is_file, path_type=Path))
    @options
    @click.pass_context
    def command(ctx: click.Context, **opts: Any) -> None:
        run(ctx, kind, opts.pop(argument), **opts)
