"""A damaged tantivy index beside an embedded store (the tantivy lexical engine): segment files
overwritten in the middle make tantivy panic (a Rust panic, pyo3's PanicException, a
BaseException) or raise ValueError. Each is one line from the real ``ctir-es`` naming the index
folder and the fix; ``stats --check`` finds the damage by the segment files' checksums; and the
fix it names (remove the folder, open the store once) rebuilds the index from SQLite."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from store_support import copy_vectors
from test_reliability_ingest import last_line, run_cli

from ctir_es.errors import MissingExtraError, StoreError
from ctir_es.store.embedded import EmbeddedStore, lexical_tantivy

ENGINE_ENV = "CTIR_ES_LEXICAL_ENGINE"


@pytest.fixture(scope="module")
def tantivy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample in a new tantivy store (BM25 only: no model needed)."""
    tmp = tmp_path_factory.mktemp("tantivy")
    store = tmp / "sample.db"
    out = run_cli(tmp, "ingest", "sample", "--store", str(store), "--text-model", "none", "--no-images",
                  env={ENGINE_ENV: "tantivy"})
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(store) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # one file to copy
    conn.close()
    return store


def damaged_copy(store: Path, dst: Path, suffix: str) -> Path:
    """A copy of ``store`` whose segment files ending in ``suffix`` have bytes 10-4000 overwritten."""
    shutil.copyfile(store, dst)
    copy_vectors(store, dst)
    shutil.copytree(lexical_tantivy.index_dir(store), lexical_tantivy.index_dir(dst))
    files = [f for f in lexical_tantivy.index_dir(dst).iterdir() if f.suffix == suffix]
    assert files
    for f in files:
        data = bytearray(f.read_bytes())
        data[10:4000] = b"\xa5" * (min(4000, len(data)) - 10)
        f.write_bytes(bytes(data))
    return dst


def bm25(tmp_path: Path, store: Path, text: str) -> list[tuple[str, float]]:
    out = run_cli(tmp_path, "query", text, "--store", str(store), "--k", "20", "--json")
    assert out.returncode == 0, out.stderr
    return [(r["id"], round(r["score"], 6)) for r in json.loads(out.stdout)["results"]]


def says_damaged_and_the_fix(out: object, store: Path) -> None:
    line = last_line(out)  # type: ignore[arg-type]
    folder = lexical_tantivy.index_dir(store)
    assert out.returncode == 1, line  # type: ignore[attr-defined]
    assert f"the tantivy index {folder} of store {store} is damaged" in line
    assert f"remove {folder}" in line and f"`ctir-es stats --store {store}`" in line
    assert "unexpected error" not in line and "PanicException" not in out.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize(("suffix", "cause"), [(".idx", "tantivy panicked"), (".term", "IO error")])
def test_damaged_segments_are_one_line_naming_the_fix_which_works(tmp_path: Path, tantivy_store: Path,
                                                                  suffix: str, cause: str) -> None:
    store = damaged_copy(tantivy_store, tmp_path / "s.db", suffix)
    out = run_cli(tmp_path, "query", "steel", "--store", str(store))  # run_cli: no Python traceback
    says_damaged_and_the_fix(out, store)
    assert cause in last_line(out)
    out = run_cli(tmp_path, "stats", "--check", "--store", str(store))
    says_damaged_and_the_fix(out, store)
    assert f"{suffix}: checksum mismatch" in last_line(out)
    # the fix as the message names it: remove the folder, open the store once (a reader will do)
    shutil.rmtree(lexical_tantivy.index_dir(store))
    out = run_cli(tmp_path, "stats", "--store", str(store))
    assert out.returncode == 0 and lexical_tantivy.index_dir(store).is_dir(), out.stderr
    out = run_cli(tmp_path, "stats", "--check", "--store", str(store), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["integrity"] == "ok", out.stderr
    expected = bm25(tmp_path, tantivy_store, "steel")
    assert expected and bm25(tmp_path, store, "steel") == expected


def test_stats_check_passes_a_sound_index_and_finds_one_changed_byte(tmp_path: Path, tantivy_store: Path) -> None:
    out = run_cli(tmp_path, "stats", "--check", "--store", str(tantivy_store), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["integrity"] == "ok", out.stderr
    store = tmp_path / "s.db"
    shutil.copyfile(tantivy_store, store)
    shutil.copytree(lexical_tantivy.index_dir(tantivy_store), lexical_tantivy.index_dir(store))
    victim = next(f for f in lexical_tantivy.index_dir(store).iterdir() if f.suffix == ".store")
    data = bytearray(victim.read_bytes())
    data[len(data) // 4] ^= 0xFF  # in the document store, which queries never read
    victim.write_bytes(bytes(data))
    assert run_cli(tmp_path, "query", "steel", "--store", str(store)).returncode == 0
    out = run_cli(tmp_path, "stats", "--check", "--store", str(store))
    says_damaged_and_the_fix(out, store)
    assert f"{victim.name}: checksum mismatch" in last_line(out)


def test_only_a_panic_becomes_a_store_error(tmp_path: Path, tantivy_store: Path) -> None:
    """The guard around tantivy's reads catches PanicException (matched by class name: pyo3's
    ``pyo3_runtime`` module is not importable) and ValueError, never KeyboardInterrupt or SystemExit."""
    store = tmp_path / "s.db"
    shutil.copyfile(tantivy_store, store)
    s = EmbeddedStore(store)
    try:
        s.count()
        lex = s._lex
        assert lex is not None
        panic = type("PanicException", (BaseException,), {"__module__": "pyo3_runtime"})
        for raised, expected in ((panic("boom"), StoreError), (ValueError("bad"), StoreError),
                                 (KeyboardInterrupt(), KeyboardInterrupt), (SystemExit(3), SystemExit)):
            with pytest.raises(expected), lex._reading():
                raise raised
    finally:
        s.close()


def test_stats_names_the_lexical_engine(tmp_path: Path, tantivy_store: Path) -> None:
    fts5 = tmp_path / "fts5.db"
    out = run_cli(tmp_path, "ingest", "sample", "--store", str(fts5), "--text-model", "none", "--no-images",
                  env={ENGINE_ENV: "fts5"})
    assert out.returncode == 0, out.stderr
    for store, engine in ((fts5, "fts5"), (tantivy_store, "tantivy")):
        # whatever the setting says now: an existing store keeps (and reports) its own engine
        other = {ENGINE_ENV: "tantivy" if engine == "fts5" else "fts5"}
        out = run_cli(tmp_path, "stats", "--store", str(store), "--json", env=other)
        assert out.returncode == 0 and json.loads(out.stdout)["lexical_engine"] == engine, out.stderr
        out = run_cli(tmp_path, "stats", "--store", str(store), env=other)
        assert out.returncode == 0 and f"lexical_engine: {engine}" in out.stdout.splitlines(), out.stdout


def test_missing_tantivy_says_to_reinstall_ctir_es(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tantivy", None)  # import tantivy raises ImportError
    with pytest.raises(MissingExtraError) as info:
        lexical_tantivy.analyzer()
    assert "pip install ctir-es" in str(info.value) and "pip install -e ." in str(info.value)
    assert "[lexical]" not in str(info.value)
