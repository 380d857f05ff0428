"""The lexical engine of a new embedded store: tantivy ranked by the native BM25F scorer when
nothing names one; FTS5, with one notice, where the native module is not installed; an existing
store keeps its own; ``stats`` says which a store has (issue 25 item 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ctir_es.store.embedded.lexical import DEFAULT_LEXICAL_ENGINE, FALLBACK_LEXICAL_ENGINE

CLI = [sys.executable, "-m", "ctir_es.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"CTIR_ES_URL", "CTIR_ES_OS_URL", "CTIR_ES_STORE", "CTIR_ES_LEXICAL_ENGINE"}}
    return {**env, "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "cache"),
            **extra}


def _ingest_and_stats(tmp_path: Path, store: Path, env: dict[str, str]) -> tuple[dict, str]:
    catalogue = tmp_path / "c.jsonl"
    catalogue.write_text("".join(json.dumps({"id": f"p{i}", "title": f"red steel kettle {i}",
                                             "categories": [["Kitchen", "Kettles"]]}) + "\n" for i in range(20)),
                         encoding="utf-8")
    ingest = subprocess.run([*CLI, "ingest", "jsonl", str(catalogue), "--store", str(store), "--text-model", "none",
                             "--clip-weights", "none", "--no-resume", "--json"],
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert ingest.returncode == 0 and "Traceback" not in ingest.stderr, ingest.stderr
    stats = subprocess.run([*CLI, "stats", "--json", "--store", str(store)],
                           env=env, capture_output=True, text=True, timeout=120, check=False)
    assert stats.returncode == 0, stats.stderr
    return json.loads(stats.stdout), ingest.stderr


def test_a_new_store_gets_the_native_tantivy_engine(tmp_path: Path) -> None:
    assert DEFAULT_LEXICAL_ENGINE == "tantivy"
    stats, stderr = _ingest_and_stats(tmp_path, tmp_path / "s.db", _env(tmp_path))
    assert stats["lexical_engine"] == "tantivy", stats
    assert "lexical engine" not in stderr  # no fallback notice where the native module is installed
    query = subprocess.run([*CLI, "query", "red kettle", "--mode", "text", "--store", str(tmp_path / "s.db"), "--json"],
                           env=_env(tmp_path), capture_output=True, text=True, timeout=300, check=False)
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["results"], query.stdout


def test_without_the_native_module_a_new_store_gets_fts5_and_one_notice(tmp_path: Path) -> None:
    # A module of that name that cannot be imported, first on the path: as after a bare
    # `pip install` that skipped ./native.
    blocker = tmp_path / "no_native"
    blocker.mkdir()
    (blocker / "ctir_es_native.py").write_text("raise ImportError('ctir_es_native is not installed')\n")
    env = _env(tmp_path, PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    stats, stderr = _ingest_and_stats(tmp_path, tmp_path / "s.db", env)
    assert stats["lexical_engine"] == FALLBACK_LEXICAL_ENGINE == "fts5", stats
    assert stderr.count("lexical engine, not the faster tantivy one") == 1, stderr
    assert "pip install ./native" in stderr and "Traceback" not in stderr


def test_an_existing_fts5_store_keeps_its_engine(tmp_path: Path) -> None:
    store = tmp_path / "old.db"
    first, _ = _ingest_and_stats(tmp_path, store, _env(tmp_path, CTIR_ES_LEXICAL_ENGINE="fts5"))
    assert first["lexical_engine"] == "fts5", first
    again, _ = _ingest_and_stats(tmp_path, store, _env(tmp_path))  # the default is tantivy now
    assert again["lexical_engine"] == "fts5" and again["products"] == 20, again
