"""The bundled sample (text-only, tiny real text model) with a serving calibration stored by the
real ``ctir-es calibrate``: built once per test session, then copied per test. For the checks
that the web page and the CLI serve category queries with the same (calibrated) ranking."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from service_support import sample_store_file
from store_support import copy_vectors

from ctir_es.cli.main import cli

STATIC = Path(__file__).resolve().parents[1] / "src" / "ctir_es" / "service" / "static"
PAGE_K = 24  # the page's default page size (index.html's selected "per page", app.js's state.k)

_built: dict[str, Path] = {}


def cli_env(tmp_dir: Path) -> dict[str, str | None]:
    """A private config and cache for in-process CLI runs (None unsets a variable)."""
    return {"CTIR_ES_CONFIG": str(tmp_dir / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_dir / "cache"),
            "CTIR_ES_URL": None, "CTIR_ES_STORE": None}


def run_cli(tmp_dir: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env=cli_env(tmp_dir), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def calibrated_sample_store(tmp_dir: Path, text_dir: Path) -> Path:
    """A private copy (``tmp_dir/calibrated.db``) of the sample store after `ctir-es calibrate`."""
    key = str(text_dir)
    if key not in _built:
        build = tmp_dir / "calibrated-build"
        store = sample_store_file(build, text_dir, None)
        run_cli(build, "calibrate", "--store", str(store), "--json")
        _built[key] = store
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / "calibrated.db"
    shutil.copyfile(_built[key], path)
    copy_vectors(_built[key], path)
    lexical = _built[key].with_name(_built[key].name + ".lexical")  # the tantivy engine's index, if any
    if lexical.is_dir():
        shutil.copytree(lexical, path.with_name(path.name + ".lexical"))
    return path


def page_search_url(q: str, mode: str = "category", k: int = PAGE_K, offset: int = 0, fusion: str = "") -> str:
    """``GET /search`` as app.js's ``shopParams()`` builds it for a query typed (or picked in the
    tree) on an index without typed values: k, the fusion only when one is chosen, q and mode, the
    category facet, and ``pin`` (page 1 of a pinned ranking, for "More results"; ``offset`` > 0
    pages the old way, as the page does for image and "similar" results)."""
    from urllib.parse import urlencode

    items = [("k", str(k))] + ([("offset", str(offset))] if offset else []) + ([("fusion", fusion)] if fusion else [])
    tail = [("facet", "category"), ("pin", "true")] if not offset else []
    return "/search?" + urlencode([*items, ("q", q), ("mode", mode), *tail])


def page_sends_no_default_fusion() -> bool:
    """app.js starts with no fusion and the select's first option is the index's calibration (the
    browser test checks the request the page really sends)."""
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    state = re.search(r"const state = \{[^}]*\}", js)
    select = re.search(r'<select id="fusion"[^>]*>\s*<option value="" selected>([^<]*)</option>', html)
    return bool(state and 'fusion: ""' in state.group(0) and select and "calibrated" in select.group(1))
