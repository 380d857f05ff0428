"""``ctir-es stats``: what a store holds and which models built it."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from ..search import open_store
from .main import cli, settings_from, store_options


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@store_options
@click.pass_context
def stats(ctx: click.Context, as_json: bool, store: Path | None, es_url: str | None) -> None:
    """Counts, fields and the encoders the index was built with."""
    settings = settings_from(ctx, store=store, es_url=es_url)
    s = open_store(settings)
    try:
        data = s.stats()
    finally:
        s.close()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
        return
    console = Console()
    for key, value in data.items():
        if key == "vector_fields":
            for name, f in value.items():
                enc = f.get("encoder", {})
                console.print(f"  {name}: {f['dims']} dims, {f.get('count', '?')} vectors, "
                              f"encoder {enc.get('id', '?')}", highlight=False)
        elif isinstance(value, dict):
            console.print(f"{key}: " + ", ".join(f"{k} ({v})" for k, v in value.items()), highlight=False)
        else:
            console.print(f"{key}: {value}", highlight=False)
