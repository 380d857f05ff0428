"""``ctir-es serve``: the HTTP API and web page over a store (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import MissingExtraError
from ..search import Search
from .main import cli, settings_from, store_options


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--image-root", "image_roots", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Serve local catalogue images only from DIR (repeatable). "
                   "Default: the directories of the indexed products' image files.")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
              help="Seconds a request may take (store and model work).")
@click.option("--max-upload-mb", type=click.FloatRange(0.01, 200), default=10.0, show_default=True,
              help="Largest accepted image upload.")
@store_options
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, image_roots: tuple[Path, ...], timeout: float,
          max_upload_mb: float, store: Path | None, es_url: str | None) -> None:
    """Serve the HTTP API (/search, /products, /categories, /categorize, ...) and a web page.

    Open http://127.0.0.1:8000/ for the page; the OpenAPI schema is at /openapi.json.
    """
    try:
        import uvicorn

        from ..service import Limits, create_app
        from ..service.files import derive_image_roots, normalise_roots
    except ImportError as exc:  # pragma: no cover - runtime dependencies
        raise MissingExtraError(f"the service needs {exc.name}: pip install fastapi uvicorn python-multipart") from None

    settings = settings_from(ctx, store=store, es_url=es_url)
    search = Search.open(settings)
    try:
        roots = normalise_roots(image_roots) if image_roots else derive_image_roots(search.store)
        limits = Limits(timeout=timeout, max_upload_bytes=int(max_upload_mb * 1_000_000))
        app = create_app(search, roots, limits)
        where = settings.es_url and "Elasticsearch" or str(settings.store)
        click.echo(f"ctir-es: {search.store.count()} products from {where}", err=True)
        click.echo("ctir-es: local images served only from: "
                   + (", ".join(str(r) for r in roots) or "(none: pass --image-root DIR)"), err=True)
        click.echo(f"ctir-es: open http://{host}:{port}/  (API schema: /openapi.json)", err=True)
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_keep_alive=5,
                    limit_concurrency=200, server_header=False)
    finally:
        search.close()
