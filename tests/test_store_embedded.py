"""The embedded (SQLite) store: the shared contract, plus what only a file-backed store can show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from store_contract import CATALOGUE, SCHEMA, StoreContract, unit

from ctir_es.schema import LexicalQuery, VectorQuery
from ctir_es.store import scan
from ctir_es.store.embedded import EmbeddedStore, fts_query, knn


class TestEmbeddedStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path):
        s = EmbeddedStore(tmp_path / "store.db")
        yield s
        s.close()


class TestEmbeddedStoreSourcesInParallel(StoreContract):
    """Hybrid queries of large stores run BM25 in a second thread beside kNN, which then shares
    the exact scan's chunks: the same contract with that path forced on (it starts at
    PARALLEL_MIN_ROWS vectors) and chunks of 2 rows, so every scan is really split."""

    @pytest.fixture
    def store(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setattr(knn, "PARALLEL_MIN_ROWS", 0)
        monkeypatch.setattr(scan, "CHUNK_ROWS", 2)
        s = EmbeddedStore(tmp_path / "store.db")
        yield s
        s.close()


def test_parallel_hybrid_equals_sequential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # FTS5: the engine whose BM25 runs in a side thread beside the exact scan (beside_exact_scan)
    store = EmbeddedStore(tmp_path / "s.db", new_lexical="fts5")
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    query = (LexicalQuery("steel cooker watch"), [VectorQuery("title_vector", unit(0, 5))], 5)
    sequential = store.search(*query)
    monkeypatch.setattr(knn, "PARALLEL_MIN_ROWS", 0)
    assert store.search(*query) == sequential
    assert store._pool is not None  # it did run in the side thread
    store.close()
    assert store._pool is None


def test_construction_does_no_io(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "store.db"
    EmbeddedStore(path)
    assert not path.parent.exists()


def test_second_process_sees_committed_data(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = EmbeddedStore(path)
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    # keep our connection open (as a running ingest would) while another process reads
    code = (
        "import sys; from ctir_es.store.embedded import EmbeddedStore;"
        "s = EmbeddedStore(sys.argv[1]); print(s.count(), s.get(['p4'])['p4'].product.title)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split(maxsplit=1) == ["5", "Titan analog wrist watch for men\n"]
    store.close()


def test_vector_cache_sees_other_connections_writes(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    reader, writer = EmbeddedStore(path), EmbeddedStore(path)
    writer.setup(SCHEMA)
    writer.upsert(CATALOGUE[:1])
    q = [VectorQuery("title_vector", unit(6))]
    assert [h.id for h in reader.search(None, q, 5)["title_vector"]] == ["p1"]
    writer.upsert(CATALOGUE[4:5])  # p5 matches unit(6)
    assert reader.search(None, q, 1)["title_vector"][0].id == "p5"


def test_failed_batch_leaves_nothing_half_written(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store.db")
    store.setup(SCHEMA)
    store.upsert(CATALOGUE[:2], checkpoint=("src", 2))

    class Boom(Exception):
        pass

    class Exploding(list):
        def __iter__(self):
            yield CATALOGUE[2]
            raise Boom

    with pytest.raises(Boom):
        store.upsert(Exploding(), checkpoint=("src", 5))
    assert store.count() == 2 and store.checkpoint("src") == 2


def test_fts_query_quotes_every_word() -> None:
    assert fts_query('Kitchen & Dining > "Cookware"', ["title", "categories"]) == (
        '{title categories} : ("kitchen" OR "dining" OR "cookware")'
    )
    assert fts_query("  > & ", ["title"]) is None


def test_knn_top_k_larger_than_store(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    store.setup(SCHEMA)
    store.upsert(CATALOGUE)
    hits = store.search(None, [VectorQuery("title_vector", unit(0))], 50)["title_vector"]
    assert len(hits) == 5
    assert np.all(np.diff([h.score for h in hits]) <= 0)
