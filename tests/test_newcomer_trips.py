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


# ---------------------------------------------------------------- categories the index lacks

KNOWN = {
    ("Kitchen & Dining",): 5,
    ("Kitchen & Dining", "Cookware"): 3,
    ("Kitchen & Dining", "Cookware", "Pots & Pans"): 2,
    ("Kitchen & Dining", "Coffee Mugs"): 2,
    ("Watches",): 4,
    ("Watches", "Wrist Watches"): 4,
}


def test_closest_categories_share_words_then_text() -> None:
    from ctir_es.categories import closest_paths

    assert closest_paths(("Kitchen", "Blenders"), KNOWN)[0] == ("Kitchen & Dining",)
    assert closest_paths(("Kitchen & Dining", "Cokware"), KNOWN)[0] == (
        "Kitchen & Dining",
        "Cookware",
    )
    assert closest_paths(("Mugs",), KNOWN) == [("Kitchen & Dining", "Coffee Mugs")]
    assert closest_paths(("Nope",), KNOWN) == []


def test_unknown_category_notice_names_the_closest_or_the_roots() -> None:
    from ctir_es.categories import unknown_category_notice

    assert unknown_category_notice(("Watches",), KNOWN, "x") is None
    assert unknown_category_notice(("watches",), KNOWN, "x", exact=False) is None  # a query's words
    assert unknown_category_notice(("watches",), KNOWN, "x") is not None  # a filter is exact
    notice = unknown_category_notice(("Kitchen", "Blenders"), KNOWN, "the results match its words")
    assert notice is not None
    assert notice.startswith(
        "no category 'Kitchen > Blenders' in this index: the results match its words; "
    )
    assert "closest: 'Kitchen & Dining'" in notice
    nope = unknown_category_notice(("Nope",), KNOWN, "the category filter matches no product")
    assert nope is not None and nope.endswith("its top categories: Kitchen & Dining, Watches")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> Any:
    from service_support import sample_search

    search, _ = sample_search(tmp_path_factory.mktemp("trips"), tiny_text_model_dir, None)
    yield search
    search.close()


def test_search_says_when_the_category_or_the_filter_is_not_in_the_index(sample: Any) -> None:
    from ctir_es.filters import Filter

    missing = sample.search("Kitchen > Blenders")
    assert len(missing.results) == 10  # still ranked by its words ...
    assert missing.notices and missing.notices[0].startswith(
        "no category 'Kitchen > Blenders' in this index"
    )
    assert "closest: 'Kitchen & Dining'" in missing.notices[0]
    present = sample.search("Kitchen & Dining > Cookware")
    assert not any("no category" in n for n in present.notices)
    lower = sample.search("kitchen & dining > cookware")  # a query's words match in any case
    assert not any("no category" in n for n in lower.notices)
    nope = sample.search("mug", filters=[Filter("category", "subtree", "Nope")])
    assert nope.results == [] and nope.notices[0].startswith(
        "no category 'Nope' in this index: the category filter matches no product; its top categories: "
    )
    fine = sample.search("mug", filters=[Filter("category", "subtree", "Kitchen & Dining")])
    assert fine.results and not any("no category" in n for n in fine.notices)


def test_http_search_carries_the_notice(sample: Any) -> None:
    from fastapi.testclient import TestClient

    from ctir_es.service import create_app

    client = TestClient(create_app(sample, []), raise_server_exceptions=False)
    body = client.get("/search", params={"q": "mug", "within": "Nope"}).json()
    assert body["results"] == [] and body["notices"][0].startswith(
        "no category 'Nope' in this index"
    )
    body = client.get("/search", params={"q": "Kitchen > Blenders"}).json()
    assert len(body["results"]) == 10 and "closest: 'Kitchen & Dining'" in body["notices"][0]


def test_serve_on_a_taken_port_says_so_before_pointing_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from ctir_es.search import Search

    def no_store(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the store was opened before the port was checked")

    monkeypatch.setattr(Search, "open", no_store)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["serve", "--store", str(tmp_path / "x.db"), "--port", str(port)]
        )
    assert result.exit_code == 1
    assert (
        f"cannot listen on 127.0.0.1:{port}: another program is using this port; stop it or pass --port N"
        in (result.output)
    )
    assert "open http" not in result.output


def test_pyproject_names_the_real_default_lexical_engine() -> None:
    from ctir_es.store.embedded import DEFAULT_LEXICAL_ENGINE

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    said = [
        line
        for line in text.splitlines()
        if "default" in line and ("tantivy" in line or "FTS5" in line)
    ]
    name = {"fts5": "FTS5", "tantivy": "tantivy"}[DEFAULT_LEXICAL_ENGINE]
    assert said and all(f"{name} is the default" in line for line in said), said


def test_audit_reports_progress_to_its_caller(sample: Any) -> None:
    calls: list[tuple[int, int]] = []
    report = sample.audit(k=5, progress=lambda done, total: calls.append((done, total)))
    total = calls[-1][1]
    assert len(calls) > 50 and calls[-1] == (total, total) and report.audited <= total
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)  # never backwards


def _in_a_terminal(args: list[str], tmp_path: Path) -> tuple[str, str]:
    """Run ``ctir-es ARGS`` with stderr on a pseudo-terminal (stdout a pipe): (stdout, stderr)."""
    import os
    import pty
    import subprocess
    import sys

    main, tty = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctir_es.cli", *args],
        stdout=subprocess.PIPE,
        stderr=tty,
        env=env,
        cwd=tmp_path,
    )
    os.close(tty)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the other end closed
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=120)
    os.close(main)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return out.decode(), b"".join(chunks).decode(errors="replace")


def test_audit_shows_a_progress_bar_on_a_terminal_only(
    tmp_path: Path, tiny_text_model_dir: Path
) -> None:
    from service_support import sample_store_file

    store = sample_store_file(tmp_path / "sample", tiny_text_model_dir, None)
    out, err = _in_a_terminal(["audit", "--store", str(store), "--k", "3"], tmp_path)
    assert "auditing" in err and "/280" in err  # the bar, with products judged of all
    assert "most suspicious of" in out
    piped = CliRunner().invoke(cli, ["audit", "--store", str(store), "--k", "3"])
    assert piped.exit_code == 0 and "auditing" not in piped.output  # no bar in pipes and logs


def test_a_body_the_framework_cannot_parse_is_told_by_its_cause_not_its_text() -> None:
    from unittest.mock import MagicMock

    from fastapi import HTTPException
    from fastapi.testclient import TestClient

    from ctir_es.service import create_app

    app = create_app(MagicMock())

    @app.get("/_test/parse")
    def parse() -> None:
        raise HTTPException(400, "whatever FastAPI says this year") from ValueError("bad multipart")

    @app.get("/_test/plain")
    def plain() -> None:
        raise HTTPException(400, "Missing boundary in multipart.")

    client = TestClient(app, raise_server_exceptions=False)
    parsed = client.get("/_test/parse").json()["error"]["message"]
    assert parsed.startswith("the request body could not be parsed")
    assert client.get("/_test/plain").json()["error"]["message"] == "Missing boundary in multipart."
