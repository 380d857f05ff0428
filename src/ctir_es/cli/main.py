"""``ctir-es``: the command-line entry point. Commands parse, call the library, render."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from .. import __version__
from ..config import KNOBS, Settings, load_settings
from ..errors import CtirError, described

log = logging.getLogger("ctir_es.cli")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
_VERBOSITY = {"level": 0}  # -v count of this invocation (the group callback sets it)


class CtirGroup(click.Group):
    """Every failure ends in one line on stderr and exit code 1; no traceback unless -vv.

    Exit codes: 0 done; 1 an error (the line says what and how to fix it); 2 bad usage
    (click's own: unknown option, bad value); 1 also for an interrupted run (Ctrl-C).
    Subcommands are imported when called (``COMMANDS``), not to list them.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.commands.get(cmd_name) or load_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS.get(name) or self.commands[name].get_short_help_str())
                for name in self.list_commands(ctx)]
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([(n, h if len(h) <= limit else h[: limit - 3].rsplit(" ", 1)[0] + "...")
                                for n, h in rows])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CtirError as exc:
            log.debug("failed", exc_info=True)  # the traceback, with -vv
            raise click.ClickException(str(exc)) from None
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, BrokenPipeError):
            raise
        except Exception as exc:
            if _VERBOSITY["level"] >= 2:
                raise
            raise click.ClickException(
                f"unexpected error: {described(exc, 300)} (run with -vv for the traceback)"
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
    to use Elasticsearch, --os-url or CTIR_ES_OS_URL to use OpenSearch.
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
            text = f"{text} ({described(exc)})"
        return f"{record.levelname} {record.name}: {text}"


def settings_from(ctx: click.Context, **overrides: Any) -> Settings:
    """Config file and env, then the command's own flags (None = not given), ``--device`` among them."""
    check_url_has_no_secret(overrides.get("es_url"))
    check_url_has_no_secret(ctx.meta.get(OS_URL_KEY), "--os-url", "CTIR_ES_OS_", "[opensearch]")
    overrides = {"onnx_device": ctx.meta.get(DEVICE_KEY), "os_url": ctx.meta.get(OS_URL_KEY), **overrides}
    settings = load_settings(config_file=ctx.obj.get("config_file")).with_overrides(**overrides)
    _ = settings.engine  # both URLs set: a ConfigError now, before any work
    return settings


DEVICE_KEY = "ctir_es.onnx_device"  # where --device leaves its value for settings_from
OS_URL_KEY = "ctir_es.os_url"  # where --os-url leaves its value for settings_from


def _remember_os_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.meta[OS_URL_KEY] = value
    return value


# --os-url beside every --es-url; kept out of the commands' signatures (settings_from reads it)
os_url_option = click.option(
    "--os-url", default=None, metavar="URL", expose_value=False, callback=_remember_os_url,
    help="Use OpenSearch at URL instead (credentials from env/config only) [env: CTIR_ES_OS_URL].")


def _remember_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        ctx.meta[DEVICE_KEY] = value
    return value


# --device on every command that encodes; kept out of the commands' signatures (settings_from reads it)
device_option = click.option(
    "--device", type=click.Choice(KNOBS["onnx_device"].choices, case_sensitive=False), default=None,
    expose_value=False, callback=_remember_device,
    help="Where ONNX encoders run: auto (CUDA when onnxruntime offers it), cpu, or cuda (without CUDA: the CPU, "
         "with one notice) [env: CTIR_ES_ONNX_DEVICE; default auto].")


def check_url_has_no_secret(url: str | None, flag: str = "--es-url", env: str = "CTIR_ES_",
                            table: str = "[elasticsearch]") -> None:
    """Refuse ``--es-url https://user:secret@host`` (and ``--os-url``): a command line is visible
    to every user (``ps``, shell history). Secrets come from the environment or the config file only."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        has_userinfo = "@" in parts.netloc
    except ValueError:
        raise click.BadParameter("not a valid URL", param_hint=flag) from None
    if has_userinfo:
        host = parts.netloc.rsplit("@", 1)[-1]
        key = f" (or {env}API_KEY)" if flag == "--es-url" else ""
        raise click.BadParameter(
            f"holds credentials, which anyone on this machine can read in `ps` and the shell history: "
            f"pass {flag} {parts.scheme}://{host} and set {env}USERNAME and {env}PASSWORD{key} in the "
            f"environment, or put them under {table} in the config file",
            param_hint=flag,
        )


def with_options(options: Sequence[Decorator]) -> Decorator:
    """One decorator applying ``options`` in the order they are listed (as ``--help`` shows them)."""

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def store_options(fn: Any) -> Any:
    """--store / --es-url / --os-url, shared by every command that opens a store."""
    fn = os_url_option(fn)
    fn = click.option("--es-url", default=None, metavar="URL",
                      help="Use Elasticsearch at URL (credentials from env/config only) [env: CTIR_ES_URL].")(fn)
    fn = click.option("--store", type=click.Path(dir_okay=False, path_type=Path), default=None,
                      help="Embedded store file [env: CTIR_ES_STORE; default: user data dir].")(fn)
    return fn


def main() -> None:
    try:
        cli(prog_name="ctir-es")
    except BrokenPipeError:  # `ctir-es ... | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


# Commands load on first use, so `ctir-es --help` and a usage error answer at once without
# importing models, numpy or the Elasticsearch client. Each command's one-line help is kept
# here for the listing (tests/test_cli_lazy.py checks it against the command's docstring).
COMMANDS: dict[str, str] = {
    "audit": "Rank products that look filed in the wrong category, with the suggested one and the gap.",
    "calibrate": "Calibrate the fusion of category queries on held-out products of the index and store it.",
    "categorize": "Suggest categories from the title, image and CLIP-ITA signals (kNN, BM25, zero-shot), fused.",
    "config": "The settings in force, where each comes from, and every knob there is.",
    "es": "Elasticsearch index lifecycle: versioned indices behind an alias, zero-downtime swaps.",
    "evaluate": "Measure category-to-image retrieval with the paper's protocol (every system, hybrids, reports).",
    "index": "The embedded store's approximate kNN index: build and save it now.",
    "ingest": "Read a catalogue, encode it and index it (re-running resumes or updates, never duplicates).",
    "learn": "Train CLIP-ITA on the index's own categories, keep it only if it wins, and serve with it.",
    "kibana": "Kibana saved objects: the product index and shop search (data view, charts, searches, dashboards).",
    "models": "Export encoders to ONNX (no PyTorch needed to ingest and query), list and verify them.",
    "query": 'Search the index: a category path ("Kitchen > Blenders"), free text, or an image.',
    "serve": "Serve the HTTP API (/search, /products, /categories, /categorize, ...) and a web page.",
    "stats": "Counts, fields and the encoders the index was built with.",
    "train": "Train CLIP-ITA on a catalogue (frozen encoders, cached features, early stopping).",
}


def load_command(name: str) -> click.Command | None:
    """Import the module of command ``name`` (its decorator registers it on ``cli``)."""
    if name not in COMMANDS:
        return None
    import importlib

    importlib.import_module(f"{__package__}.{name.replace('-', '_')}")
    return cli.commands.get(name)


def load_all_commands() -> None:
    for name in COMMANDS:
        load_command(name)
