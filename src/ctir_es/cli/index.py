"""``ctir-es index build``: build and save the embedded store's approximate kNN index now (a
long-running service that upserts through the API calls it now and then; otherwise kNN stays
exact until the writer closes)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import ConfigError
from ..store.ann import KINDS
from ..store.embedded import EmbeddedStore
from .main import cli, settings_from


@cli.group()
def index() -> None:
    """The embedded store's approximate kNN index: build and save it now."""


@index.command("build")
@click.option("--vector-index", "kind", type=click.Choice(KINDS), default=None,
              help="Which index [default: the vector_index setting; exact needs none].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: seconds per vector field.")
@click.option("--store", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Embedded store file [env: CTIR_ES_STORE; default: user data dir].")
@click.pass_context
def build(ctx: click.Context, kind: str | None, as_json: bool, store: Path | None) -> None:
    """Build and save the approximate index of every vector field (and rebuild stale ones).

    Queries in this and every later process open it memory-mapped; it is never used once a
    write makes it stale (exact answers until the next build or the writer's close).
    """
    settings = settings_from(ctx, store=store)
    if settings.server_url:
        raise ConfigError("`ctir-es index build` is for the embedded store; Elasticsearch and OpenSearch keep "
                          "their own HNSW graphs current (see `ctir-es es` for the index lifecycle)")
    kind = kind or (settings.vector_index if settings.vector_index in KINDS else None)
    if kind is None:
        raise click.UsageError(f"name the index: --vector-index {'|'.join(KINDS)} (the vector_index setting "
                               f"is {settings.vector_index!r}, which needs none)")
    embedded = EmbeddedStore(settings.store, vector_index=kind)
    try:
        seconds = embedded.build_vector_index(kind)
    finally:
        embedded.close()
    if as_json:
        click.echo(json.dumps({"store": str(settings.store), "vector_index": kind, "seconds": seconds}))
        return
    if not seconds:
        click.echo(f"{settings.store}: no vector fields, nothing to build")
    for field, took in seconds.items():
        click.echo(f"{field}: {kind} index built in {took:.1f} s")
