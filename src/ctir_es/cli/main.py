"""``ctir-es``: the command-line entry point. Commands parse, call the library, render."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from .. import __version__
from ..config import Settings, load_settings
from ..errors import CtirError

log = logging.getLogger("ctir_es.cli")
_VERBOSITY = {"level": 0}  # -v count of this invocation (the group callback sets it)


class CtirGroup(click.Group):
    """Every failure ends in one line on stderr and exit code 1; no traceback unless -vv.

    Exit codes: 0 done; 1 an error (the line says what and how to fix it); 2 bad usage
    (click's own: unknown option, bad value); 1 also for an interrupted run (Ctrl-C).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CtirError as exc:
            log.debug("failed", exc_info=True)  # the traceback, with -vv
            raise click.ClickException(str(exc)) from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if _VERBOSITY["level"] >= 2:
                raise
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise click.ClickException(
                f"unexpected error: {type(exc).__name__}: {first} (run with -vv for the traceback)"
            ) from None


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
    _VERBOSITY["level"] = verbose
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    ctx.obj = {"config_file": config_file}


class OneLineFormatter(logging.Formatter):
    """Log records without tracebacks: libraries (elastic_transport's retries, urllib3) log
    exceptions with ``exc_info``; a user sees the one-line cause, ``-vv`` the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = f"{text} ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
        return f"{record.levelname} {record.name}: {text}"


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    """Config file and env, then the command's own flags (None = not given)."""
    check_url_has_no_secret(overrides.get("es_url"))
    return load_settings(config_file=ctx.obj.get("config_file")).with_overrides(**overrides)


def check_url_has_no_secret(url: str | None) -> None:
    """Refuse ``--es-url https://user:secret@host``: a command line is visible to every user
    (``ps``, shell history). Secrets come from the environment or the config file only."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        has_userinfo = "@" in parts.netloc
    except ValueError:
        raise click.BadParameter("not a valid URL", param_hint="--es-url") from None
    if has_userinfo:
        host = parts.netloc.rsplit("@", 1)[-1]
        raise click.BadParameter(
            f"holds credentials, which anyone on this machine can read in `ps` and the shell history: "
            f"pass --es-url {parts.scheme}://{host} and set CTIR_ES_USERNAME and CTIR_ES_PASSWORD "
            "(or CTIR_ES_API_KEY) in the environment, or put them under [elasticsearch] in the config file",
            param_hint="--es-url",
        )


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
from . import audit as _audit  # noqa: F401
from . import categorize as _categorize  # noqa: F401
from . import es as _es  # noqa: F401
from . import evaluate as _evaluate  # noqa: F401
from . import ingest as _ingest  # noqa: F401
from . import kibana as _kibana  # noqa: F401
from . import models as _models  # noqa: F401
from . import query as _query  # noqa: F401
from . import serve as _serve  # noqa: F401
from . import stats as _stats  # noqa: F401
from . import train as _train  # noqa: F401
