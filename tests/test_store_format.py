"""Store format 2 of the embedded store: category nodes kept as postings blocks
(store/batch_write.py), and the upgrade of a format-1 store written with format 1's SQL.

Format 1 kept one ``category_nodes`` row per (node, product); format 2 keeps one row per (node,
block) with the block's rowids as a JSON array. The postings are checked against a plain Python
model through random upserts, updates that move products and deletes (with tiny blocks, so
blocks split, fill and empty); the upgrade is checked by the answers a format-1 store gives
with format 1's own SQL before, and the store's answers after."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from test_reliability_cli import in_namespace
from test_reliability_ingest import CLI

from ctir_es.errors import StoreError
from ctir_es.filters import Filter
from ctir_es.products import Product, format_category_path
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store import batch_write
from ctir_es.store.embedded import (
    _FTS_DDL,
    NODE_SEP,
    SCHEMA_VERSION,
    EmbeddedStore,
    lexical_tantivy,
)
from ctir_es.vocabulary import LEXICAL_SOURCE

DIMS = 8
SCHEMA = IndexSchema({"t": VectorField(DIMS, "cosine", {"id": "x"})})
ENGINES = ["fts5"]
try:
    import tantivy  # noqa: F401

    ENGINES.append("tantivy")
except ImportError:  # pragma: no cover - part of the [test] extra
    pass

# Format 1's tables, as ctir-es wrote them before format 2 (src/ctir_es/store/embedded.py at
# store_version 1). The lexical engines' SQL (FTS5 table and triggers, tantivy's change log) did
# not change between the formats and is taken from the code.
V1_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    categories TEXT NOT NULL,
    attributes TEXT NOT NULL,
    description TEXT NOT NULL,
    extra TEXT NOT NULL,
    image TEXT,
    market TEXT,
    has_image INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS category_nodes (
    node TEXT NOT NULL,
    product INTEGER NOT NULL REFERENCES products(rowid) ON DELETE CASCADE,
    PRIMARY KEY (node, product)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS category_nodes_product ON category_nodes(product);
CREATE TABLE IF NOT EXISTS vectors (
    field TEXT NOT NULL,
    product INTEGER NOT NULL REFERENCES products(rowid) ON DELETE CASCADE,
    vec BLOB NOT NULL,
    UNIQUE (field, product)
);
CREATE INDEX IF NOT EXISTS vectors_product ON vectors(product);
"""
V1_FILTER = "SELECT p.id FROM products p WHERE p.rowid IN (SELECT product FROM category_nodes WHERE node = ?)"

TREES = [("Home", "Kitchen", "Pans"), ("Home", "Kitchen", "Pots"), ("Home", "Bath", "Towels"),
         ("Fashion", "Watches"), ("Fashion", "Bags", "Tote"), ("Küche", "Töpfe > Pfannen")]
WORDS = ["steel", "pan", "cotton", "towel", "watch", "leather", "tote", "pot", "blue", "large"]


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def _doc(i: int, rng: random.Random, version: int = 0) -> Document:
    paths = tuple(rng.sample(TREES, rng.choice([0, 1, 1, 1, 2])))
    title = " ".join(rng.sample(WORDS, 3)) + f" item{i}"
    p = Product(id=f"p{i}", title=title, categories=paths, attributes={"Brand": f"b{i % 4}"},
                market=rng.choice(["in", "us", None]), description=f"version {version}")
    return Document(p, {"t": _vec(i * 7 + version)}, f"/img/{i}.jpg" if i % 3 else None)


def _nodes(paths: tuple[tuple[str, ...], ...]) -> set[str]:
    return {NODE_SEP.join(path[:d]) for path in paths for d in range(1, len(path) + 1)}


def _postings(store: EmbeddedStore) -> dict[str, set[str]]:
    """node -> product ids, from the postings blocks; checks each block's shape on the way."""
    blocks = store.conn.execute("SELECT node, lo, hi, n, products FROM category_postings ORDER BY node, lo").fetchall()
    by_rowid = dict(store.conn.execute("SELECT rowid, id FROM products"))
    out: dict[str, set[str]] = {}
    for i, (node, lo, hi, n, products) in enumerate(blocks):
        rowids = json.loads(products)
        assert rowids and rowids == sorted(set(rowids)), (node, rowids)
        assert rowids[0] >= lo and rowids[-1] == hi and n == len(rowids) <= batch_write.BLOCK_MAX
        if i + 1 < len(blocks) and blocks[i + 1][0] == node:
            assert hi < blocks[i + 1][1], "blocks of a node hold disjoint ranges"
        ids = {by_rowid[r] for r in rowids}
        assert not ids & out.get(node, set()), "a product listed twice under a node"
        out.setdefault(node, set()).update(ids)
    return out


@pytest.fixture
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of at most 5 rowids, appended to below 3: splits and rewrites happen at once."""
    monkeypatch.setattr(batch_write, "BLOCK_MAX", 5)
    monkeypatch.setattr(batch_write, "SMALL_BLOCK", 3)


@pytest.mark.parametrize("engine", ENGINES)
def test_postings_follow_random_upserts_updates_and_deletes(tmp_path: Path, tiny_blocks: None, engine: str) -> None:
    rng = random.Random(11)
    store = EmbeddedStore(tmp_path / "s.db", lexical=engine)
    store.setup(SCHEMA)
    model: dict[str, Document] = {}
    for step in range(40):
        if step % 5 == 4 and model:
            gone = rng.sample(sorted(model), min(len(model), rng.randint(1, 6)))
            assert store.delete([*gone, "never-there"]) == len(gone)
            for pid in gone:
                del model[pid]
        else:
            # new ids, updates of old ones (moving categories), duplicates within the batch
            batch = [_doc(rng.randint(0, 80), rng, step) for _ in range(rng.choice([1, 1, 2, 9, 30]))]
            assert store.upsert(batch).written == len(batch)
            for doc in batch:
                model[doc.product.id] = doc
        expected: dict[str, set[str]] = {}
        for pid, doc in model.items():
            for node in _nodes(doc.product.categories):
                expected.setdefault(node, set()).add(pid)
        assert _postings(store) == expected, f"step {step}"
    counts = store.category_counts()
    assert counts == {tuple(node.split(NODE_SEP)): len(ids) for node, ids in expected.items()}
    for path in [("Home",), ("Home", "Kitchen"), ("Fashion", "Bags", "Tote"), ("Küche", "Töpfe > Pfannen")]:
        want = expected.get(NODE_SEP.join(path), set())
        hits = store.search(LexicalQuery(" ".join(WORDS)), [VectorQuery("t", _vec(1))], 1000,
                            [Filter("category", "subtree", path)])
        assert {h.id for h in hits["t"]} == want
        assert {h.id for h in hits[LEXICAL_SOURCE]} == want
    # the last versions won: text, vectors and categories as the model says
    got = store.get(sorted(model))
    assert {pid: s.product.categories for pid, s in got.items()} == {
        pid: tuple(tuple(c) for c in d.product.categories) for pid, d in model.items()}
    assert store.check() == []
    store.close()


def test_one_product_writes_append_to_the_last_small_block(tmp_path: Path) -> None:
    """The service writes one product at a time: each write rewrites at most one small block
    per node, and the blocks fill up to SMALL_BLOCK instead of one block per write."""
    store = EmbeddedStore(tmp_path / "s.db", lexical="fts5")
    store.setup(SCHEMA)
    n = batch_write.SMALL_BLOCK * 2 + 5
    for i in range(n):
        store.upsert([Document(Product(id=f"p{i}", title="x", categories=(("Home", "Pans"),)), {"t": _vec(i)})])
    sizes = [r[0] for r in store.conn.execute("SELECT n FROM category_postings WHERE node = 'Home' ORDER BY lo")]
    assert sizes == [batch_write.SMALL_BLOCK, batch_write.SMALL_BLOCK, 5]
    assert store.category_counts() == {("Home",): n, ("Home", "Pans"): n}
    # a large batch after them starts its own blocks (the last one, small, takes them first)
    store.upsert([Document(Product(id=f"q{i}", title="x", categories=(("Home",),)), {"t": _vec(i)}) for i in range(3000)])
    sizes = [r[0] for r in store.conn.execute("SELECT n FROM category_postings WHERE node = 'Home' ORDER BY lo")]
    assert sizes[:2] == [batch_write.SMALL_BLOCK] * 2 and max(sizes) <= batch_write.BLOCK_MAX
    assert sum(sizes) == n + 3000
    store.close()


# -- the upgrade from format 1 -----------------------------------------------------------------


def _catalogue(n: int = 120) -> list[Document]:
    rng = random.Random(5)
    return [_doc(i, rng) for i in range(n)]


def build_v1(path: Path, docs: list[Document], engine: str) -> None:
    """A format-1 store holding ``docs``, written row by row with format 1's SQL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size=32768")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(V1_DDL)
    conn.executescript(_FTS_DDL if engine == "fts5" else lexical_tantivy.LOG_DDL)
    conn.execute("BEGIN")
    for key, value in [("store_version", "1"), ("lexical_engine", engine), ("store_uuid", uuid.uuid4().hex),
                       ("schema", json.dumps(SCHEMA.to_json(), sort_keys=True))]:
        conn.execute("INSERT INTO meta VALUES (?, ?)", (key, value))
    for doc in docs:
        p = doc.product
        extra = json.dumps({"categories": [list(c) for c in p.categories], "attributes": dict(p.attributes),
                            "images": list(p.images)}, ensure_ascii=False, separators=(",", ":"))
        rowid = conn.execute(
            "INSERT INTO products (id, title, categories, attributes, description, extra, image, market, has_image) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (p.id, p.title, "\n".join(format_category_path(c) for c in p.categories), p.attribute_text,
             p.description, extra, doc.image, p.market, int(doc.image is not None))).lastrowid
        conn.executemany("INSERT INTO category_nodes VALUES (?, ?)", [(node, rowid) for node in _nodes(p.categories)])
        for name, vec in doc.vectors.items():
            conn.execute("INSERT INTO vectors VALUES (?, ?, ?)", (name, rowid, np.asarray(vec, np.float32).tobytes()))
    conn.execute("COMMIT")
    conn.close()


def _v1_answers(path: Path) -> dict[str, object]:
    """What format 1's own SQL says about the store: counts, top level, members of each node."""
    with sqlite3.connect(path) as conn:
        counts = dict(conn.execute("SELECT node, count(*) FROM category_nodes GROUP BY node"))
        return {
            "counts": {tuple(node.split(NODE_SEP)): n for node, n in counts.items()},
            "members": {node: {r[0] for r in conn.execute(V1_FILTER, (node,))} for node in counts},
            "top": {node: n for node, n in counts.items() if NODE_SEP not in node},
            "nodes": len(counts),
        }


def _answers(store: EmbeddedStore, nodes: list[str]) -> dict[str, object]:
    """The store's answers to every query that reads categories, and to plain queries."""
    out: dict[str, object] = {"counts": store.category_counts()}
    stats = store.stats()
    out["top"], out["nodes"] = stats["top_categories"], stats["category_nodes"]
    members, ranked = {}, {}
    for node in nodes:
        f = [Filter("category", "subtree", tuple(node.split(NODE_SEP)))]
        hits = store.search(LexicalQuery("steel pan towel watch"), [VectorQuery("t", _vec(3))], 1000, f)
        members[node] = {h.id for h in hits["t"]}
        ranked[node] = [(h.id, round(h.score, 5)) for h in hits[LEXICAL_SOURCE]]
    out["members"], out["ranked"] = members, ranked
    plain = store.search(LexicalQuery("leather tote"), [VectorQuery("t", _vec(9))], 20,
                         [Filter("market", "eq", "us")])
    out["plain"] = {k: [(h.id, round(h.score, 5)) for h in v] for k, v in plain.items()}
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_a_format_1_store_is_upgraded_on_open_with_the_same_answers(tmp_path: Path, engine: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_write, "BLOCK_MAX", 16)  # nodes of several blocks
    docs = _catalogue()
    old = tmp_path / "v1.db"
    build_v1(old, docs, engine)
    before = _v1_answers(old)
    nodes = sorted(before["members"])  # type: ignore[call-overload]
    # the same catalogue written by format 2: same rowids, so the same BM25 statistics and ranks
    ref = EmbeddedStore(tmp_path / "v2.db", lexical=engine)
    ref.setup(SCHEMA)
    ref.upsert(docs)

    store = EmbeddedStore(old)  # a reader that can write the file upgrades it
    after = _answers(store, nodes)
    assert after["counts"] == before["counts"]
    assert after["members"] == before["members"]
    assert after["top"] == before["top"] and after["nodes"] == before["nodes"]
    assert after == _answers(ref, nodes)  # ranks and scores too
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
    assert "category_nodes" not in tables and "category_nodes_product" not in tables
    assert store.conn.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert max(r[0] for r in store.conn.execute("SELECT n FROM category_postings")) == 16
    assert store.check() == []

    # and it keeps working as a format-2 store: updates that move products, deletes
    rng = random.Random(8)
    changed = [_doc(i, rng, 1) for i in range(0, 120, 3)]
    for s in (store, ref):
        s.upsert(changed)
        s.delete([f"p{i}" for i in range(1, 120, 10)])
    assert _answers(store, nodes) == _answers(ref, nodes)
    assert _postings(store) == _postings(ref)
    store.close()
    ref.close()
    assert EmbeddedStore(old).count() == 120 - 12  # opens as format 2 from now on


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = EmbeddedStore(path)
    store.setup(SCHEMA)
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'store_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(StoreError, match=f"written by store format {SCHEMA_VERSION + 1}, this ctir-es reads {SCHEMA_VERSION}"):
        EmbeddedStore(path).count()


def test_a_read_only_format_1_store_says_how_to_upgrade_it(tmp_path: Path) -> None:
    build_v1(tmp_path / "v1.db", _catalogue(30), "fts5")
    media = tmp_path / "media"
    media.mkdir()
    script = f"""
set -u
mount -t tmpfs -o size=20m tmpfs {media}
cp {tmp_path}/v1.db {media}/v1.db
mount -o remount,ro {media}
"$CLI" stats --store {media}/v1.db --json > {tmp_path}/ro.out 2> {tmp_path}/ro.err
echo "stats=$?"
"""
    out = in_namespace(script, tmp_path)  # skips, saying why, without root and unshare(1)
    assert "stats=1" in out.stdout, out.stdout + out.stderr
    err = (tmp_path / "ro.err").read_text()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "store format 1" in last and f"ctir-es stats --store {media}/v1.db" in last and "writable" in last
    # where it can be written, that command upgrades it
    done = subprocess.run([*CLI, "stats", "--store", str(tmp_path / "v1.db"), "--json"], capture_output=True,
                          text=True, env={**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "none.toml")},
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["products"] == 30
    with sqlite3.connect(tmp_path / "v1.db") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchone()[0] == str(SCHEMA_VERSION)


def test_an_ingest_into_a_format_1_store_upgrades_it_first(tmp_path: Path) -> None:
    """The writer's path (the file opened to write, not to read): upgraded, then written."""
    docs = _catalogue(40)
    path = tmp_path / "v1.db"
    build_v1(path, docs[:30], "fts5")
    before = _v1_answers(path)
    store = EmbeddedStore(path)
    assert store.upsert(docs[30:]).written == 10  # the first call opens the file to write
    ref = EmbeddedStore(tmp_path / "v2.db", lexical="fts5")
    ref.setup(SCHEMA)
    ref.upsert(docs[:30])
    ref.upsert(docs[30:])
    assert _postings(store) == _postings(ref)
    assert store.category_counts() == ref.category_counts() != before["counts"]
    assert store.conn.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchone()[0] == str(SCHEMA_VERSION)
    store.close()
    ref.close()
