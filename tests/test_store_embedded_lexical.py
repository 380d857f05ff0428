"""The tantivy lexical engine of the embedded store (issue #14): the store contract on every
vector option, catch-up from SQLite (SQLite is the source of truth), crash safety of the
derived index, agreement with FTS5's ranking. Correctness only, never speed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from store_contract import CATALOGUE, SCHEMA, StoreContract, unit

from ctir_es.errors import StoreError
from ctir_es.filters import Filter
from ctir_es.products import Product
from ctir_es.schema import Document, LexicalQuery
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.store.embedded.lexical_tantivy import index_dir
from ctir_es.vocabulary import LEXICAL_SOURCE

pytest.importorskip("tantivy", reason="the tantivy engine needs the [lexical] extra")

OPTIONS = ["exact"]
try:
    import faiss  # noqa: F401

    OPTIONS += ["sq8", "ivf", "hnsw"]
except ImportError:  # pragma: no cover - the [ann] extra is part of [test]
    pass


@pytest.fixture(params=OPTIONS)
def vector_index(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestTantivyStoresMeetTheContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path, vector_index: str):
        s = EmbeddedStore(tmp_path / "store.db", vector_index=vector_index, lexical="tantivy")
        yield s
        s.close()


def _filled(path: Path, engine: str) -> EmbeddedStore:
    store = EmbeddedStore(path, lexical=engine)
    store.setup(SCHEMA)
    assert not store.upsert(CATALOGUE).errors
    return store


def test_engine_is_recorded_in_the_store_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _filled(path, "tantivy").close()
    reopened = EmbeddedStore(path)  # no engine named: the store's own
    assert reopened.count() == len(CATALOGUE)
    assert reopened.lexical_engine == "tantivy"
    assert reopened.search(LexicalQuery("cooker"), [], 5)["bm25"]
    reopened.close()
    with pytest.raises(StoreError, match="uses the tantivy lexical engine"):
        EmbeddedStore(path, lexical="fts5").count()
    with pytest.raises(StoreError, match="supported: fts5, tantivy"):
        EmbeddedStore(path, lexical="lucene")


def test_index_is_rebuilt_from_sqlite_when_missing_or_foreign(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = _filled(path, "tantivy")
    expected = [h.id for h in store.search(LexicalQuery("steel cooker towel"), [], 10)["bm25"]]
    assert expected
    store.close()
    shutil.rmtree(index_dir(path))  # lost: derived data, rebuilt on open
    again = EmbeddedStore(path)
    assert [h.id for h in again.search(LexicalQuery("steel cooker towel"), [], 10)["bm25"]] == expected
    again.close()
    state = index_dir(path) / "state.json"
    data = json.loads(state.read_text())
    state.write_text(json.dumps({**data, "store": "someone-else"}))  # an index of another store
    third = EmbeddedStore(path)
    assert [h.id for h in third.search(LexicalQuery("steel cooker towel"), [], 10)["bm25"]] == expected
    third.close()


def test_writes_the_index_missed_are_caught_up_on_open(tmp_path: Path) -> None:
    """A writer killed after its SQLite commit and before tantivy's: the log replays."""
    path = tmp_path / "s.db"
    store = _filled(path, "tantivy")
    state = index_dir(path) / "state.json"
    before = state.read_text()
    extra = Document(Product(id="late", title="zebra striped umbrella", categories=(("Rain",),)),
                     {"title_vector": unit(7)})
    store.upsert([extra])
    store.delete(["p1"])
    store.close()
    # a crash after the tantivy commit and before the final state file: the state says the
    # old position (with the rowid bound written before the commit); the replay replaces the
    # documents the index holds since, never duplicates them
    old_applied = json.loads(before)["applied"]
    state.write_text(json.dumps({**json.loads(state.read_text()), "applied": old_applied}))
    again = EmbeddedStore(path)
    hits = again.search(LexicalQuery("zebra umbrella"), [], 10)["bm25"]
    assert [h.id for h in hits] == ["late"]
    assert again._lex is not None and again._lex.num_docs() == len(CATALOGUE)  # -p1 +late
    all_ids = {h.id for h in again.search(LexicalQuery(" ".join(_words())), [], 100)["bm25"]}
    assert "p1" not in all_ids
    again.close()


def _words() -> list[str]:
    return sorted({w for d in CATALOGUE for w in d.product.title.lower().split()})


def test_reader_process_sees_writer_commits(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = _filled(path, "tantivy")
    code = (
        "import sys; from ctir_es.store.embedded import EmbeddedStore; from ctir_es.store.base import LexicalQuery;"
        "s = EmbeddedStore(sys.argv[1]); print(','.join(h.id for h in s.search(LexicalQuery('zebra'), [], 5)['bm25']))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    store.upsert([Document(Product(id="z", title="zebra"), {"title_vector": unit(3)})])
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "z"
    store.close()


def test_upsert_replaces_the_text_of_an_id(tmp_path: Path) -> None:
    store = _filled(tmp_path / "s.db", "tantivy")
    store.upsert([Document(Product(id="p1", title="quokka"), {"title_vector": unit(1)})])
    store.upsert([Document(Product(id="p1", title="wombat"), {"title_vector": unit(1)})])
    assert store.search(LexicalQuery("quokka"), [], 5)["bm25"] == []
    assert [h.id for h in store.search(LexicalQuery("wombat"), [], 5)["bm25"]] == ["p1"]
    store.close()


def _random_catalogue(n: int, seed: int = 0) -> list[Document]:
    rng = np.random.default_rng(seed)
    nouns = ["shoe", "kettle", "lamp", "shirt", "watch", "bag", "chair", "mug", "phone", "case"]
    adjs = ["red", "blue", "steel", "cotton", "leather", "running", "smart", "mini", "large", "wooden"]
    docs = []
    for i in range(n):
        words = [adjs[j] for j in rng.choice(10, 2, replace=False)] + [nouns[int(rng.integers(10))]]
        cat = (("Home", "Kitchen") if i % 3 else ("Fashion", "Shoes"))
        docs.append(Document(
            Product(id=f"r{i}", title=" ".join(words), categories=(cat,),
                    attributes={"Color": adjs[int(rng.integers(10))]}, market="us" if i % 2 else "de"),
            {"title_vector": unit(i % 8)},
        ))
    return docs


def test_ranking_is_fts5s_bm25f(tmp_path: Path) -> None:
    """The tantivy engine ranks with the native scorer (native/), FTS5's bm25(): the row as one
    document, weighted term frequencies saturated once, FTS5's IDF. On this catalogue both
    analyzers give the same tokens and no field passes 40 tokens (tantivy's exact lengths), so
    every score is FTS5's own, with and without filters (tests/test_tantivy_bm25f.py checks the
    formula itself)."""
    docs = _random_catalogue(600)
    stores = {}
    for engine in ("fts5", "tantivy"):
        s = EmbeddedStore(tmp_path / f"{engine}.db", lexical=engine)
        s.setup(SCHEMA)
        assert not s.upsert(docs).errors
        stores[engine] = s
    filters_cases = [(), (Filter("category", "subtree", ("Fashion",)),), (Filter("market", "eq", "us"),),
                     (Filter("id", "not_in", ("r1", "r2", "r4")),), (Filter("market", "in", ("de",)),),
                     (Filter("has_image", "eq", False),)]
    for text in ("red shoe", "leather bag", "smart watches", "wooden chairs kitchen", "cotton"):
        for weights in (None, {"title": 3.0}, {"title": 1.0, "categories": 2.0, "attributes": 0.5}):
            q = LexicalQuery(text) if weights is None else LexicalQuery(text, weights)
            for filters in filters_cases:
                a = stores["fts5"].search(q, [], 600, filters)["bm25"]
                b = stores["tantivy"].search(q, [], 600, filters)["bm25"]
                assert a and {h.id for h in a} == {h.id for h in b}  # the same matches pass the same filters
                fts5 = {h.id: h.score for h in a}
                for h in b:
                    assert h.score == pytest.approx(fts5[h.id], rel=1e-5), (text, weights, filters, h.id)
    for s in stores.values():
        s.close()


def test_a_batch_is_indexed_from_its_own_rows_and_from_sqlite_when_the_log_holds_more(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after a batch the writer indexes the rows it has just written (no read-back from
    SQLite); when the log also holds changes the index has not seen (here one written by plain
    SQL, as a crashed writer leaves them), it catches up from the log and SQLite instead."""
    from ctir_es.store.embedded import lexical_tantivy

    reads: list[int] = []
    real_rows = lexical_tantivy.TantivyLexical._rows

    def counted(self: lexical_tantivy.TantivyLexical, conn: object, rowids: list[int]) -> object:
        reads.append(len(rowids))
        return real_rows(self, conn, rowids)  # type: ignore[arg-type]

    monkeypatch.setattr(lexical_tantivy.TantivyLexical, "_rows", counted)
    store = _filled(tmp_path / "s.db", "tantivy")
    assert reads == []  # indexed from the batch itself
    lexical = LexicalQuery("cooker")
    assert [h.id for h in store.search(lexical, [], 10, [Filter("category", "subtree", ("Kitchen & Dining",))])[
        LEXICAL_SOURCE]] == ["p1"]
    # a change the index has not seen: a product row written without the store (its log entry stays)
    store._wconn.execute(
        "INSERT INTO products (id, title, categories, attributes, description, extra, market, has_image) "
        "VALUES ('raw', 'zeppelin cooker', 'Toys', '', '', '{\"categories\":[[\"Toys\"]]}', 'in', 0)")
    update = Document(Product(id="p2", title="zeppelin pan", categories=(("Toys", "Air"),)), {"title_vector": unit(1)})
    store.upsert([update])
    assert sorted(reads) == [2]  # the log held the raw row and the batch: both read back from SQLite
    found = store.search(LexicalQuery("zeppelin"), [], 10, [Filter("category", "subtree", ("Toys",))])[LEXICAL_SOURCE]
    assert sorted(h.id for h in found) == ["p2", "raw"]
    assert store.search(LexicalQuery("frying"), [], 10)[LEXICAL_SOURCE] == []  # p2's old title is gone
    store.close()


def test_a_failed_batch_leaves_nothing_in_the_tantivy_index(tmp_path: Path) -> None:
    """A batch reaches tantivy's writer inside the SQLite transaction: when the transaction
    fails after that, tantivy drops the batch too (never committed), and the next one is indexed."""
    path = tmp_path / "s.db"
    store = _filled(path, "tantivy")
    # the checkpoint row, written after the batch went to tantivy, fails inside SQLite
    store._wconn.execute("CREATE TRIGGER boom BEFORE INSERT ON meta WHEN new.key LIKE 'checkpoint:%' "
                         "BEGIN SELECT RAISE(ABORT, 'boom'); END")
    docs = [Document(Product(id=f"z{i}", title=f"zeppelin {i}"), {"title_vector": unit(i % 8)}) for i in range(9)]
    with pytest.raises(Exception, match="boom"):
        store.upsert(docs, checkpoint=("src", 9))
    assert store.count() == len(CATALOGUE)
    assert store.search(LexicalQuery("zeppelin"), [], 20)[LEXICAL_SOURCE] == []
    store._wconn.execute("DROP TRIGGER boom")
    assert store.upsert(docs[:4], checkpoint=("src", 4)).written == 4
    assert sorted(h.id for h in store.search(LexicalQuery("zeppelin"), [], 20)[LEXICAL_SOURCE]) == ["z0", "z1", "z2", "z3"]
    store.close()
    again = EmbeddedStore(path)
    assert sorted(h.id for h in again.search(LexicalQuery("zeppelin"), [], 20)[LEXICAL_SOURCE]) == ["z0", "z1", "z2", "z3"]
    assert again._lex is not None and again._lex.num_docs() == len(CATALOGUE) + 4
    again.close()


def test_a_lost_index_is_rebuilt_from_every_product_not_from_the_trimmed_log(tmp_path: Path) -> None:
    """The change log is trimmed after each batch tantivy has applied, so a new index (lost,
    copied without it, or left half-built by a crash) is filled from the products table."""
    path = tmp_path / "s.db"
    store = _filled(path, "tantivy")
    for i in range(3):  # later batches: the log entries of the earlier ones are trimmed
        store.upsert([Document(Product(id=f"z{i}", title=f"zeppelin {i}"), {"title_vector": unit(i)})])
    everything = len(CATALOGUE) + 3
    assert store._lex is not None and store._lex.num_docs() == everything
    def ranked(s: EmbeddedStore, text: str) -> list[tuple[float, str]]:  # ties in any order
        return sorted((-round(h.score, 4), h.id) for h in s.search(LexicalQuery(text), [], 10)[LEXICAL_SOURCE])

    expected = {text: ranked(store, text) for text in ("steel cooker towel", "zeppelin")}
    store.close()
    shutil.rmtree(index_dir(path))
    again = EmbeddedStore(path)
    assert {text: ranked(again, text) for text in expected} == expected
    assert again._lex is not None and again._lex.num_docs() == everything
    again.upsert([Document(Product(id="z9", title="zeppelin nine"), {"title_vector": unit(3)})])  # and it goes on
    assert again._lex.num_docs() == everything + 1
    again.close()
    # a rebuild cut short by a crash (its state not complete): done again on the next open
    state = index_dir(path) / "state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "complete": False}))
    third = EmbeddedStore(path)
    assert [h.id for h in third.search(LexicalQuery("zeppelin nine"), [], 10)[LEXICAL_SOURCE]][:1] == ["z9"]
    assert third._lex is not None and third._lex.num_docs() == everything + 1
    third.close()


def test_bm25_alone_names_hits_from_an_id_map_that_follows_every_change(tmp_path: Path) -> None:
    """Repeated BM25-only queries read every (rowid, id) once (embedded.ID_MAP_AFTER) and name
    tantivy's hits from it; any commit drops it, so a deleted product is never named and a new
    one is, by this process's writes and by another process's."""
    from ctir_es.store import embedded

    path = tmp_path / "s.db"
    store = EmbeddedStore(path, lexical="tantivy")
    store.setup(SCHEMA)
    docs = _random_catalogue(60)
    assert not store.upsert(docs).errors
    reader = EmbeddedStore(path)

    def ids(s: EmbeddedStore, text: str) -> list[str]:
        return [h.id for h in s.search(LexicalQuery(text), [], 10)["bm25"]]

    first = ids(reader, "red kettle")
    assert first
    for _ in range(embedded.ID_MAP_AFTER + 1):
        assert ids(reader, "red kettle") == first  # by SQL, then from the map: the same answer
    assert reader._id_map is not None and len(reader._id_map[0]) == 60

    store.delete([first[0]])  # another connection commits: the reader's map is dropped
    store.upsert([Document(Product(id="new-kettle", title="red kettle red kettle"), {"title_vector": unit(1)})])
    for _ in range(embedded.ID_MAP_AFTER + 1):
        got = ids(reader, "red kettle")
        assert first[0] not in got and got[0] == "new-kettle"
    assert reader._id_map is not None  # reread after the change: the new id in, the deleted one out
    assert "new-kettle" in reader._id_map[1].tolist() and first[0] not in reader._id_map[1].tolist()
    for _ in range(embedded.ID_MAP_AFTER + 1):
        got = ids(store, "red kettle")  # the writer's own commits drop its map too
        assert first[0] not in got and got[0] == "new-kettle"
    reader.close()
    store.close()
