"""The trips a newcomer hit on a fresh clone (issue 26, item 7), each kept fixed by a test here
or beside the code it concerns (the table widths: tests/test_cli_render.py)."""

from __future__ import annotations

from pathlib import Path
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


def test_evaluate_names_the_mpnet_install_command_in_full(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MPNet absent (a fresh clone, downloads off): the skip line says how to install it, whole."""
    from ctir_es.config import Settings
    from ctir_es.encoders import sentence
    from ctir_es.evaluation.providers import text_provider
    from ctir_es.evaluation.systems import ProviderContext, Skipped

    monkeypatch.setattr(sentence, "mpnet_zip_parts", lambda: None)  # the part packages are absent
    monkeypatch.setattr(sentence, "_hub_cached_folder", lambda hub_id: None)
    monkeypatch.delenv("CTIR_ES_ALLOW_DOWNLOADS", raising=False)
    ctx = ProviderContext(
        builder=None, settings=Settings(cache_dir=tmp_path), text_models=("all-mpnet-base-v2",)
    )  # type: ignore[arg-type]
    [skipped] = text_provider(ctx)
    assert isinstance(skipped, Skipped)
    assert "run `ctir-es models install mpnet`" in skipped.reason
    assert skipped.reason.endswith(
        "set CTIR_ES_ALLOW_DOWNLOADS=1 to fetch sentence-transformers/all-mpnet-base-v2)"
    )
