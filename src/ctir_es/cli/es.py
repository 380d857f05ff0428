"""``ctir-es es {setup,status,reindex,swap,drop}``: the Elasticsearch index lifecycle.

The index name (``CTIR_ES_INDEX``, default ``products``) is an alias over versioned indices
(``products-v1``, ...). Connection and credentials come from env/config only
(``CTIR_ES_URL``, ``CTIR_ES_API_KEY`` ...; see ``ctir_es.store.elasticsearch.connection``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..config import Settings
from ..errors import ConfigError
from ..schema import IndexSchema
from ..store.elasticsearch.bodies.index import (
    DEFAULT_INDEX_OPTIONS,
    INDEX_OPTION_TYPES,
    suggested_shards,
)
from ..store.elasticsearch.connection import DEFAULT_URL
from ..store.open import open_store
from .main import cli, os_url_option, settings_from


def es_settings(ctx: click.Context, es_url: str | None, **store_options: Any) -> Settings:
    """Settings whose store is Elasticsearch (default URL when none is configured)."""
    settings = settings_from(ctx, es_url=es_url)
    given = {k: v for k, v in store_options.items() if v is not None}
    if settings.engine == "opensearch":  # the same lifecycle commands, on OpenSearch
        return settings.with_overrides(os_options={**settings.os_options, **given})
    options = {**settings.es_options, **given}
    return settings.with_overrides(es_url=settings.es_url or DEFAULT_URL, es_options=options)


def open_es(settings: Settings) -> Any:
    from ..store.elasticsearch import ElasticsearchStore

    store = open_store(settings)
    if not isinstance(store, ElasticsearchStore):  # pragma: no cover - es_url is always set
        raise ConfigError("these commands need Elasticsearch or OpenSearch: set CTIR_ES_URL or CTIR_ES_OS_URL")
    return store


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def es_url_option(fn: Any) -> Any:
    fn = os_url_option(fn)
    return click.option(
        "--es-url", default=None, metavar="URL",
        help=f"Elasticsearch URL (credentials from env/config only) [env: CTIR_ES_URL; default {DEFAULT_URL}].",
    )(fn)


index_options_option = click.option(
    "--index-options", type=click.Choice(list(INDEX_OPTION_TYPES)), default=None,
    help="dense_vector index type (quantisation) of new indices [default int8_hnsw].",
)


def schema_from_encoders(settings: Settings, with_images: bool) -> IndexSchema:
    """The schema the configured encoders would write (loads them, as ingest does)."""
    from ..ingest.pipeline import index_schema
    from ..ingest.report import IngestReport
    from ..ingest.run import load_encoders

    text, image = load_encoders(settings, IngestReport(), with_images=with_images)
    return index_schema(text, image)


@cli.group()
def es() -> None:
    """Elasticsearch index lifecycle: versioned indices behind an alias, zero-downtime swaps.

    \b
    setup    create INDEX-v1 behind the alias INDEX (idempotent; --expected-products sizes shards)
    status   alias, versions, schema, counts, cluster version/licence, server-side fusion
    reindex  copy the live index into the next version, check counts, swap the alias
    swap     point the alias at another version (a rollback, or a version filled by ingest)
    drop     delete every version, the alias and the checkpoints
    """


@es.command("setup")
@es_url_option
@index_options_option
@click.option("--shards", type=click.IntRange(1, 1024), default=None,
              help="Primary shards [from --expected-products: ~30 GB per shard; else 1].")
@click.option("--replicas", type=click.IntRange(0, 16), default=None,
              help="Replicas [1 with two or more data nodes, 0 on one node].")
@click.option("--expected-products", type=click.IntRange(0, 10**11), default=None, metavar="N",
              help="Catalogue size the index is for: derives --shards (docs/scaling.md).")
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Vector fields as JSON ({\"vectors\": {...}}, as `es status --json` "
                                 "prints); default: from the configured encoders.")
@click.option("--text-model", default=None, metavar="NAME|DIR", help="Text encoder [env: CTIR_ES_TEXT_MODEL].")
@click.option("--clip-weights", default=None, metavar="TAG|FILE|none",
              help="open_clip weights, or 'none' [env: CTIR_ES_CLIP_WEIGHTS].")
@click.option("--no-images", is_flag=True, help="No image vector field.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def es_setup(ctx: click.Context, es_url: str | None, index_options: str | None, shards: int | None,
             replicas: int | None, expected_products: int | None, schema_file: Path | None,
             text_model: str | None, clip_weights: str | None, no_images: bool,
             as_json: bool) -> None:
    """Create the index behind its alias (INDEX-v1), or check an existing one.

    An index built with other vector dims or encoders is refused (nothing is written) with the
    commands that build a new version beside it.
    """
    settings = es_settings(ctx, es_url, index_options=index_options, shards=shards, replicas=replicas)
    if schema_file is not None:
        try:
            schema = IndexSchema.from_json(json.loads(schema_file.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{schema_file}: not an index schema ({exc})") from None
    else:
        settings = settings.with_overrides(text_model=text_model, clip_weights=clip_weights)
        schema = schema_from_encoders(settings, with_images=not no_images)
    if shards is None and expected_products is not None:
        options = str(settings.es_options.get("index_options") or DEFAULT_INDEX_OPTIONS)
        shards = suggested_shards(expected_products, schema, options)
        settings = es_settings(ctx, es_url, index_options=index_options, shards=shards,
                               replicas=replicas)
    store = open_es(settings)
    try:
        merged = store.setup(schema)
        status = store.status()
    finally:
        store.close()
    if as_json:
        echo_json({"schema": merged.to_json(), "status": status})
        return
    click.echo(f"{status['alias']} -> {status['live']} at {status['url']} "
               f"(mapping v{status.get('mapping_version')}, {status.get('index_options')}, "
               f"{status.get('shards')} shard(s), {status.get('replicas')} replica(s), "
               f"analyser {status.get('text_analyzer')}, {status.get('count', 0)} products)")
    for name, field in merged.vectors.items():
        click.echo(f"  {name}: {field.dims} dims, encoder {field.encoder.get('id', '?')}")


@es.command("status")
@es_url_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def es_status(ctx: click.Context, es_url: str | None, as_json: bool) -> None:
    """Alias, live version, all versions, schema, counts and what the cluster allows."""
    store = open_es(es_settings(ctx, es_url))
    try:
        status = store.status()
    finally:
        store.close()
    if as_json:
        echo_json(status)
        return
    click.echo(f"{status['alias']} at {status['url']}: "
               + (f"{status['kind']} -> {status['live']}" if status["kind"] else "does not exist"))
    click.echo(f"versions: {', '.join(status['versions']) or 'none'}")
    if status.get("schema"):
        click.echo(f"products: {status['count']}  mapping v{status['mapping_version']} "
                   f"(current v{status['current_mapping_version']})  index_options {status['index_options']}  "
                   f"shards {status.get('shards')}  replicas {status.get('replicas')}  "
                   f"analyser {status.get('text_analyzer')}")
        for name, field in status["schema"]["vectors"].items():
            click.echo(f"  {name}: {field['dims']} dims, encoder {field['encoder'].get('id', '?')}")
        if status.get("needs_reindex"):
            click.echo("an older mapping: run `ctir-es es reindex`")
    cluster = status["cluster"]
    if status.get("engine") == "opensearch":  # no licence; its plugins decide instead
        plugins = ", ".join(cluster.get("plugins") or []) or "?"
        click.echo(f"cluster: OpenSearch {cluster['version']}, plugins {plugins}, "
                   f"{cluster.get('data_nodes') or '?'} data node(s), lexical query {cluster.get('lexical_query')}")
    else:
        click.echo(f"cluster: Elasticsearch {cluster['version']}, licence {cluster['licence']['type']}, "
                   f"{cluster.get('data_nodes') or '?'} data node(s)")
    for method, info in cluster["server_side_fusion"].items():
        click.echo(f"  server-side {method}: {'yes' if info['allowed'] else 'no'} ({info['reason']})")


@es.command("reindex")
@es_url_option
@index_options_option
@click.option("--shards", type=click.IntRange(1, 1024), default=None, help="Primary shards of the new version.")
@click.option("--replicas", type=click.IntRange(0, 16), default=None, help="Replicas of the new version.")
@click.option("--delete-old", is_flag=True, help="Delete the old version after the swap (no rollback).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def es_reindex(ctx: click.Context, es_url: str | None, index_options: str | None, shards: int | None,
               replicas: int | None, delete_old: bool, as_json: bool) -> None:
    """Rebuild the live index as the next version and swap the alias (no downtime).

    \b
    Copies every product verbatim (server-side _reindex, or scroll + bulk where the cluster
    has no reindex module) into INDEX-v(N+1) with the current mapping, the chosen
    --index-options, --shards (default: derived from the live product count, ~30 GB per
    shard) and --replicas, checks that _count matches, then moves the alias in one atomic
    request. Pause ingests meanwhile.
    The old version is kept for `ctir-es es swap` (rollback) unless --delete-old.
    To change ENCODERS (vectors must be recomputed), fill a new version instead:
      CTIR_ES_INDEX=products-v4 ctir-es ingest ...   then   ctir-es es swap products-v4
    """
    store = open_es(es_settings(ctx, es_url))
    try:
        if shards is None:
            schema = store.schema()
            if schema is not None:
                options = index_options or store.stats().get("index_options") or DEFAULT_INDEX_OPTIONS
                shards = suggested_shards(store.count(), schema, options)
        report = store.reindex(index_options=index_options, shards=shards, replicas=replicas,
                               delete_old=delete_old)
    finally:
        store.close()
    if as_json:
        echo_json(report.to_json())
        return
    click.echo(f"{report.alias}: {report.source} -> {report.dest} ({report.count} products, "
               f"{report.index_options}, {report.shards} shard(s), copied {report.method}-side); "
               f"old version {'deleted' if report.deleted_old else 'kept'}")


@es.command("swap")
@click.argument("target")
@es_url_option
@click.option("--allow-empty", is_flag=True, help="Swap even if TARGET holds no products.")
@click.pass_context
def es_swap(ctx: click.Context, target: str, es_url: str | None, allow_empty: bool) -> None:
    """Point the alias at TARGET (e.g. products-v2) in one atomic request."""
    store = open_es(es_settings(ctx, es_url))
    try:
        store.swap(target, allow_empty=allow_empty)
    finally:
        store.close()
    click.echo(f"{store.index} -> {target}")


@es.command("drop")
@es_url_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def es_drop(ctx: click.Context, es_url: str | None, yes: bool) -> None:
    """Delete every version of the index, its alias and its checkpoints."""
    settings = es_settings(ctx, es_url)
    if not yes:
        click.confirm(f"Delete {settings.es_index} and all its versions at {settings.server_url}?", abort=True)
    store = open_es(settings)
    try:
        gone = store.drop()
    finally:
        store.close()
    click.echo(f"deleted: {', '.join(gone) or 'nothing'}")
