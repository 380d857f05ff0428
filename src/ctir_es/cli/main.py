"""``ctir-es``: the command-line entry point. Commands parse, call the library, render."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..config import Settings, load_settings
from ..errors import CtirError


class CtirGroup(click.Group):
    """Turns library errors into one-line messages and exit code 1 (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CtirError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=CtirGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ctir-es")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML config file (default: $CTIR_ES_CONFIG or the user config dir).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, verbose: int) -> None:
    """Multimodal hybrid category-to-image search for e-commerce catalogues.

    Ingest a catalogue, then ask for a category such as "Kitchen > Blenders".
    The embedded store (one SQLite file) is the default; set --es-url or CTIR_ES_URL
    to use Elasticsearch.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = {"config_file": config_file}


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    """Config file and env, then the command's own flags (None = not given)."""
    return load_settings(config_file=ctx.obj.get("config_file")).with_overrides(**overrides)


def store_options(fn: Any) -> Any:
    """--store / --es-url, shared by every command that opens a store."""
    fn = click.option("--es-url", default=None, metavar="URL",
                      help="Use Elasticsearch at URL (credentials from env/config only) [env: CTIR_ES_URL].")(fn)
    fn = click.option("--store", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="Embedded store file [env: CTIR_ES_STORE; default: user data dir].")(fn)
    return fn


def main() -> None:
    cli(prog_name="ctir-es")


# Register commands at import time too, so `from ctir_es.cli.main import cli` is complete.
from . import ingest as _ingest  # noqa: E402,F401
from . import query as _query  # noqa: E402,F401
from . import stats as _stats  # noqa: E402,F401
from . import es as _es  # noqa: E402,F401
from . import kibana as _kibana  # noqa: E402,F401
from . import serve as _serve  # noqa: E402,F401
from . import evaluate as _evaluate  # noqa: E402,F401
from . import models as _models  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401
