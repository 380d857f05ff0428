"""``ctir-es kibana setup``: import the shipped data view, Lens chart, saved search and dashboard."""

from __future__ import annotations

import click

from ..kibana.client import KibanaConnection, import_saved_objects
from ..kibana.saved_objects import saved_objects, to_ndjson
from .main import cli, settings_from


@cli.group()
def kibana() -> None:
    """Kibana saved objects: the product index and shop search (data view, charts, searches, dashboards)."""


@kibana.command("setup")
@click.option("--kibana-url", default=None, metavar="URL",
              help="Kibana URL (credentials from env only) [env: CTIR_KIBANA_URL; default http://localhost:5601].")
@click.option("--space", default=None, help="Kibana space id [default space].")
@click.option("--image-url-template", default=None, metavar="TEMPLATE",
              help="How an image value becomes a URL, e.g. 'https://cdn.example.com/{{rawValue}}' "
                   "[default: the value itself].")
@click.option("--vector-field", "vector_fields", multiple=True, metavar="NAME",
              help="A vector field to hide from Discover; repeat for each "
                   "[default: title_vector and image_vector].")
@click.option("--compatibility-mode", is_flag=True,
              help="Pass compatibilityMode=true to the import API (not needed: Kibana then only adds "
                   "legacy URL aliases for objects whose ids change).")
@click.option("--dry-run", is_flag=True, help="Print the NDJSON instead of importing it.")
@click.pass_context
def kibana_setup(ctx: click.Context, kibana_url: str | None, space: str | None,
                 image_url_template: str | None, vector_fields: tuple[str, ...],
                 compatibility_mode: bool, dry_run: bool) -> None:
    """Import the saved objects through Kibana's saved-objects API (overwrites, so re-runnable).

    Kibana 8.0.0 or newer, 8.x or 9.x. The data view's title is the index alias
    (CTIR_ES_INDEX, default products).
    """
    settings = settings_from(ctx)
    objects = saved_objects(settings.es_index, image_url_template, vector_fields or None)
    ndjson = to_ndjson(objects)
    if dry_run:
        click.echo(ndjson, nl=False)
        return
    conn = KibanaConnection.from_env(url=kibana_url)
    result = import_saved_objects(conn, ndjson, space=space, compatibility_mode=compatibility_mode)
    click.echo(f"imported {result.get('successCount', 0)} saved objects into Kibana at {conn.url}; "
               f"open Dashboards > 'ctir-es catalogue'")
