"""``ctir-es serve``: the HTTP API and web page over a store (FastAPI + uvicorn)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import click

from ..errors import MissingExtraError
from ..search import Search
from .main import cli, device_option, settings_from, store_options, with_options

# The service's limits: flag, accepted range, default, help.
LIMITS: tuple[tuple[str, click.ParamType, float, str], ...] = (
    ("--timeout", click.FloatRange(0.1, 600), 30.0, "Seconds a request may take (store and model work)."),
    ("--max-upload-mb", click.FloatRange(0.01, 200), 10.0, "Largest accepted image upload."),
    ("--header-timeout", click.FloatRange(0.5, 300), 10.0,
     "Seconds a connection may take to send a complete request head (idle and slowloris clients are cut after it)."),
    ("--body-timeout", click.FloatRange(0.5, 600), 30.0, "Seconds a request body may take to arrive in all (408 after)."),
    ("--keep-alive", click.FloatRange(0.5, 300), 5.0, "Seconds an idle keep-alive connection stays open."),
    ("--max-connections", click.IntRange(16, 1_000_000), 4096,
     "Open connections; more are answered 503 with Retry-After (capped by the open-file limit)."),
    ("--max-pending", click.IntRange(1, 10_000), 64,
     "Requests processed at once; more are answered 503 with Retry-After at once."),
    ("--max-audit", click.IntRange(1, 100_000), 500,
     "Products one GET /audit request judges; a larger selection must be narrowed (within) or paged (offset)."),
)
limit_options = with_options([click.option(flag, type=kind, default=default, show_default=True, help=text)
                              for flag, kind, default, text in LIMITS])


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--image-root", "image_roots", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Serve local catalogue images only from DIR (repeatable). "
                   "Default: the directories of the indexed products' image files.")
@click.option("--learn", "learn_too", is_flag=True,
              help="Also run `ctir-es learn` in the background: queries are answered meanwhile, GET /health "
                   "shows its progress, and a model that wins is served as soon as it is written.")
@click.option("--learn-epochs", type=click.IntRange(1, 1000), default=30, hidden=True,
              help="Training epochs of --learn (tests keep it short).")
@click.option("--learn-force", is_flag=True, hidden=True, help="--learn keeps the model even when it does not win.")
@limit_options
@device_option
@store_options
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, image_roots: tuple[Path, ...], learn_too: bool,
          learn_epochs: int, learn_force: bool, timeout: float, max_upload_mb: float, header_timeout: float,
          body_timeout: float, keep_alive: float, max_connections: int, max_pending: int, max_audit: int,
          store: Path | None,
          es_url: str | None) -> None:
    """Serve the HTTP API (/search, /products, /categories, /categorize, ...) and a web page.

    Open http://127.0.0.1:8000/ for the page; the OpenAPI schema is at /openapi.json.
    One process, one event loop (h11), with connection-level guards against idle and slow
    clients: see docs/reliability.md ("HTTP service under hostile clients").

    With --learn, `ctir-es learn` runs in the background on its own connection to the store;
    a kept model replaces the serving index handle without a restart.
    """
    try:
        import uvicorn

        from ..service import Limits, create_app
        from ..service.auth import API_KEY_ENV
        from ..service.files import derive_image_roots, normalise_roots
        from ..service.hosts import allowed_hosts_for
        from ..service.learning import STOP_GRACE, BackgroundLearn
        from ..service.protocol import ConnectionLimits, protocol_class
    except ImportError as exc:  # pragma: no cover - runtime dependencies
        raise MissingExtraError(f"the service needs {exc.name}: pip install fastapi uvicorn python-multipart") from None

    listener = _listen(host, port)  # before anything is printed or loaded: a taken port fails at once
    port = listener.getsockname()[1]  # --port 0: the one the system chose
    settings = settings_from(ctx, store=store, es_url=es_url)
    # a missing CLIP-ITA model folder does not keep the server down: it serves without it, says
    # so in one warning line, and /health reports it with the fix
    search = Search.open(settings, allow_missing_model=True)
    service = None
    learning = None
    try:
        root_problems: list[str] = []
        roots = normalise_roots(image_roots) if image_roots else derive_image_roots(search.store, root_problems)
        limits = Limits(timeout=timeout, max_upload_bytes=int(max_upload_mb * 1_000_000), body_timeout=body_timeout,
                        max_pending=max_pending, max_audit=max_audit)
        connections = ConnectionLimits(header_timeout=header_timeout, keep_alive=keep_alive,
                                       max_connections=min(max_connections, _usable_descriptors()))
        hosts = allowed_hosts_for(host, settings.allowed_hosts)
        api_key = os.environ.get(API_KEY_ENV, "").strip() or None  # environment only; never echoed
        app = create_app(search, roots, limits, check_store=True, allowed_hosts=hosts, api_key=api_key)
        service = app.state.service
        where = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}.get(settings.engine, str(settings.store))
        click.echo(f"ctir-es: {search.store.count()} products from {where}", err=True)
        for problem in root_problems:
            click.echo(f"ctir-es: {problem}; serving no local images: pass --image-root DIR", err=True)
        click.echo("ctir-es: local images served only from: "
                   + (", ".join(str(r) for r in roots) or "(none: pass --image-root DIR)"), err=True)
        click.echo(f"ctir-es: open http://{host}:{port}/  (API schema: /openapi.json)", err=True)
        click.echo("ctir-es: GET /audit " + (f"needs the API key ({API_KEY_ENV})" if api_key else
                   f"is open (set {API_KEY_ENV} to require a key)"), err=True)
        click.echo("ctir-es: answers the Host names: " + (", ".join(hosts) if hosts else
                   "any (a wildcard bind: set allowed_hosts / CTIR_ES_ALLOWED_HOSTS to the names clients use)"),
                   err=True)
        if learn_too:
            from ..learn import LearnConfig

            learning = BackgroundLearn(service, settings, LearnConfig(epochs=learn_epochs, force=learn_force),
                                       announce=lambda line: click.echo(f"ctir-es: {line}", err=True))
            service.learning = learning.start()
            click.echo("ctir-es: learning in the background (GET /health shows it); serving meanwhile", err=True)
        # No uvicorn limit_concurrency: it answers plain-text 503s to everyone once idle sockets
        # fill it. The protocol and the app's guards bound connections, heads, bodies, requests.
        config = uvicorn.Config(app, host=host, port=port, log_level="info", http=protocol_class(connections),
                                timeout_keep_alive=int(max(1, keep_alive)), server_header=False, lifespan="off",
                                backlog=2048)
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()
        if learning is not None and learning.running and not learning.stop():
            # a daemon thread: it ends with the process; a write cut short resumes at the next `learn`
            click.echo(f"ctir-es: learning did not stop within {STOP_GRACE:g} s; leaving it (nothing is lost)",
                       err=True)
        if service is not None:
            service.close()  # the serving Search: the one opened here, or the one a kept model swapped in
        else:
            search.close()


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (uvicorn listens on it): binding first means a port another
    program holds is reported before the "open http://..." line that would point at that program."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror} (--host)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart over TIME_WAIT
        sock.bind(address)
    except OSError as exc:
        sock.close()
        taken = exc.errno == errno.EADDRINUSE
        raise click.ClickException(
            f"cannot listen on {host}:{port}: "
            + ("another program is using this port; stop it or pass --port N" if taken else str(exc.strerror or exc))
        ) from None
    return sock


def _usable_descriptors() -> int:
    """Connections this process can hold: the open-file limit (raised to its hard limit) less
    room for the store, models and logs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(16, soft - 128)
