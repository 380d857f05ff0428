"""``ctir-es config``: every setting, its value in force and where that value comes from."""

from __future__ import annotations

import json

import click

from ..config import SETTINGS, config_path, configuration_markdown, load_settings, setting_origins
from .main import cli


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: setting -> value and origin.")
@click.option("--markdown", is_flag=True, help="The table of every knob (docs/configuration.md).")
@click.pass_context
def config(ctx: click.Context, as_json: bool, markdown: bool) -> None:
    """The settings in force, where each comes from, and every knob there is.

    Precedence: a command's flag > environment variable > config file > default.
    """
    import os

    if markdown:
        click.echo(configuration_markdown(), nl=False)
        return
    file = ctx.obj.get("config_file") or config_path(os.environ)
    settings = load_settings(config_file=ctx.obj.get("config_file"))
    origins = setting_origins(config_file=ctx.obj.get("config_file"))
    values = {k.name: getattr(settings, k.name) for k in SETTINGS}
    if as_json:
        click.echo(json.dumps({"config_file": str(file), "settings": {
            name: {"value": None if v is None else v if isinstance(v, (bool, int, float)) else str(v),
                   "from": origins[name]} for name, v in values.items()}}, indent=2))
        return
    click.echo(f"config file: {file}{'' if file.exists() else ' (none there)'}")
    width = max(len(n) for n in values)
    for name, value in values.items():
        shown = "unset" if value is None else ("on" if value else "off") if isinstance(value, bool) else str(value)
        click.echo(f"{name:<{width}}  {shown}  ({origins[name]})")
