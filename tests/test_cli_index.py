"""``ctir-es index build``: the embedded store's approximate index, built and saved on demand,
then opened by the next process; clear errors for what it cannot do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField, VectorQuery
from ctir_es.store import ann
from ctir_es.store.embedded import EmbeddedStore

pytest.importorskip("faiss", reason="approximate indexes need the [ann] extra (faiss-cpu)")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((400, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    s = EmbeddedStore(path)
    s.setup(IndexSchema({"title_vector": VectorField(16, "cosine", {"id": "t"})}))
    assert not s.upsert([Document(Product(id=f"p{i}", title=f"item {i}"), {"title_vector": v})
                         for i, v in enumerate(vecs)]).errors
    s.close()
    np.save(tmp_path / "vecs.npy", vecs)
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    return {"CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_URL": "", "CTIR_ES_VECTOR_INDEX": ""}


@pytest.mark.parametrize("kind", ann.KINDS)
def test_build_saves_an_index_the_next_store_opens(tmp_path: Path, store: Path, kind: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = CliRunner().invoke(cli, ["index", "build", "--vector-index", kind, "--store", str(store), "--json"],
                             env=_env(tmp_path))
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["vector_index"] == kind and set(report["seconds"]) == {"title_vector"}
    assert [e.name for e in ann.ann_dir(store).iterdir() if not e.name.startswith(".")] == [f"title_vector.{kind}.g1"]

    def no_build(*_a: object, **_k: object) -> None:
        raise AssertionError("the saved index should be opened, not rebuilt")

    monkeypatch.setattr(ann, "build", no_build)
    vecs = np.load(tmp_path / "vecs.npy")
    opened = EmbeddedStore(store, vector_index=kind)
    assert opened.search(None, [VectorQuery("title_vector", vecs[7])], 1)["title_vector"][0].id == "p7"
    opened.close()


def test_build_says_what_it_needs(tmp_path: Path, store: Path) -> None:
    runner = CliRunner()
    exact = runner.invoke(cli, ["index", "build", "--store", str(store)], env=_env(tmp_path))
    assert exact.exit_code == 2 and "--vector-index sq8|ivf|hnsw" in exact.output
    missing = runner.invoke(cli, ["index", "build", "--vector-index", "ivf", "--store", str(tmp_path / "no.db")],
                            env=_env(tmp_path))
    assert missing.exit_code == 1 and "no store at" in missing.output and not (tmp_path / "no.db").exists()
    es = runner.invoke(cli, ["index", "build", "--vector-index", "ivf"],
                       env={**_env(tmp_path), "CTIR_ES_URL": "http://127.0.0.1:9"})
    assert es.exit_code == 1 and "for the embedded store" in es.output
