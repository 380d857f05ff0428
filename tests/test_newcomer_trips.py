"""The trips a newcomer hit on a fresh clone (issue 26, item 7), each kept fixed by a test here
or beside the code it concerns (the table widths: tests/test_cli_render.py)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli


@pytest.mark.parametrize(
    "command",
    [
        ["ingest", "xmarket"],
        ["ingest", "xmarket", "--market", "us"],
        ["evaluate", "xmarket", "--task", "t2i"],
    ],
)
def test_xmarket_without_its_options_fails_before_loading_models(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctir_es.cli.ingest as ingest_cli
    from ctir_es.evaluation import text_image

    def no_models(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("models loaded before the options were checked")

    monkeypatch.setattr(ingest_cli, "load_encoders", no_models)
    monkeypatch.setattr(text_image, "load_clip", no_models)
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 1, result.output
    assert (
        "xmarket needs --market and --category (to download) or --source FILE_OR_DIR"
        in result.output
    )
