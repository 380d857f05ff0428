#!/usr/bin/env python
"""The embedded store against the libraries a user would pick instead, on the same work.

    pip install -e '.[peers]'        # tantivy, lancedb, sqlite-vec, pymilvus + milvus-lite
    python benchmarks/peers.py --n 100000 [--dims 512] [--rounds 3] [--queries 200]

Workload: the synthetic catalogue of benchmarks/synthetic.py (the same products, vectors and
shopper queries as every other benchmark here), k=100 candidates per source, hybrid = BM25 and
exact-or-approximate kNN fused by reciprocal rank (k=60), top 10. Every system is built once in
its own process (ingest products/s of ready vectors), then each round queries every system in a
fresh process, the order alternating between rounds; the table shows the median over rounds of
each round's p50, and every row's ratio to the embedded store.

Systems (each only if it installs; a missing one is reported, not hidden):

- ``embedded``: ctir-es ``EmbeddedStore`` (its lexical engine and kNN option as given), through
  ``search`` + the project's RRF;
- ``tantivy+numpy``: a bare tantivy index (one English-stemmed text field) and a NumPy matrix;
- ``sqlite-vec``: a ``vec0`` table (exact kNN) beside an FTS5 table in one SQLite file;
- ``lancedb``: one table with a vector column and its native full-text index (flat kNN);
- ``milvus-lite``: a collection with a FLAT dense index and a BM25 function on the text.

Peers index title, category path and attribute text as one text field (what a user would do);
the embedded store weighs them per field. Peer libraries are imported from ``--peer-path``
(a ``pip install --target`` folder) when they are not installed in this environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

K = 100
TOP = 10
RRF_K = 60
SYSTEMS = ("embedded", "tantivy+numpy", "sqlite-vec", "lancedb", "milvus-lite")
DATA = ROOT / "artifacts" / "benchmarks" / "peers"


def rrf(*runs: list[str]) -> list[str]:
    scores: dict[str, float] = {}
    for run in runs:
        for rank, pid in enumerate(run, 1):
            scores[pid] = scores.get(pid, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores, key=lambda p: (-scores[p], p))[:TOP]


def rows(n: int, dims: int) -> Any:
    """(ids, texts, vectors) per batch of 5,000 of the synthetic catalogue."""
    from synthetic import Catalogue

    from ctir_es.products import format_category_path

    for docs in Catalogue(n, dims).documents(5000):
        ids = [d.product.id for d in docs]
        texts = [" ".join([d.product.title, *map(format_category_path, d.product.categories), d.product.attribute_text])
                 for d in docs]
        vecs = np.stack([d.vectors["title_vector"] for d in docs]).astype(np.float32)
        yield ids, texts, vecs


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")]


# -- systems: build(folder, n, dims) -> products/s; open(folder) -> (bm25, knn, hybrid) --------


class Embedded:
    def __init__(self, engine: str, index: str) -> None:
        self.engine, self.index = engine, index

    def build(self, folder: Path, n: int, dims: int) -> float:
        from synthetic import Catalogue

        from ctir_es.schema import IndexSchema, VectorField
        from ctir_es.store.embedded import EmbeddedStore

        store = EmbeddedStore(folder / "store.db", lexical=self.engine)
        store.setup(IndexSchema({"title_vector": VectorField(dims, "cosine", {"id": f"synthetic-{dims}"})}))
        spent = 0.0
        for docs in Catalogue(n, dims).documents(5000):
            t = time.perf_counter()
            store.upsert(docs)
            spent += time.perf_counter() - t
        t = time.perf_counter()
        store.close()
        spent += time.perf_counter() - t
        if self.index != "exact":
            EmbeddedStore(folder / "store.db").build_vector_index(self.index)  # not part of ingest
        return n / spent

    def open(self, folder: Path) -> tuple[Callable[..., Any], ...]:
        from ctir_es.ranking.fusion import fuse
        from ctir_es.schema import LexicalQuery, VectorQuery
        from ctir_es.store.embedded import EmbeddedStore

        store = EmbeddedStore(folder / "store.db", vector_index=self.index)

        def bm25(text: str, _v: np.ndarray) -> Any:
            return store.search(LexicalQuery(text), [], K)

        def knn(_t: str, v: np.ndarray) -> Any:
            return store.search(None, [VectorQuery("title_vector", v, "text")], K)

        def hybrid(text: str, v: np.ndarray) -> Any:
            runs = store.search(LexicalQuery(text), [VectorQuery("title_vector", v, "text")], K)
            return fuse("rrf", runs, {"bm25": 1.0, "text": 1.0}, limit=TOP)

        return bm25, knn, hybrid


class TantivyNumpy:
    def build(self, folder: Path, n: int, dims: int) -> float:
        import tantivy

        sb = tantivy.SchemaBuilder()
        sb.add_unsigned_field("row", indexed=False, fast=True)
        sb.add_text_field("text", tokenizer_name="en_stem")
        index = tantivy.Index(sb.build(), path=str(folder))
        writer = index.writer(heap_size=256_000_000)
        parts, ids, spent, row = [], [], 0.0, 0
        for batch_ids, texts, vecs in rows(n, dims):
            t = time.perf_counter()
            for text in texts:
                doc = tantivy.Document()
                doc.add_unsigned("row", row)
                doc.add_text("text", text)
                writer.add_document(doc)
                row += 1
            parts.append(vecs)
            ids += batch_ids
            spent += time.perf_counter() - t
        t = time.perf_counter()
        writer.commit()
        writer.wait_merging_threads()
        np.save(folder / "matrix.npy", np.concatenate(parts))
        np.save(folder / "ids.npy", np.asarray(ids))
        return n / (spent + time.perf_counter() - t)

    def open(self, folder: Path) -> tuple[Callable[..., Any], ...]:
        import tantivy

        index = tantivy.Index.open(str(folder))
        index.reload()
        searcher = index.searcher()
        matrix = np.load(folder / "matrix.npy")
        ids = np.load(folder / "ids.npy")

        def bm25(text: str, _v: np.ndarray) -> list[str]:
            hits = searcher.search(index.parse_query(text, ["text"]), limit=K).hits
            return ids[searcher.fast_field_values("row", [a for _, a in hits])].tolist() if hits else []

        def knn(_t: str, v: np.ndarray) -> list[str]:
            return ids[top_k(matrix @ v, K)].tolist()

        return bm25, knn, lambda t, v: rrf(bm25(t, v), knn(t, v))


def fts_expr(text: str) -> str:
    import re

    return " OR ".join(f'"{w}"' for w in dict.fromkeys(re.findall(r"\w+", text.lower())))


class SqliteVec:
    def _connect(self, folder: Path) -> Any:
        """sqlite3 when this Python can load extensions, else apsw (same SQL; a build of
        Python without ``enable_load_extension`` cannot load sqlite-vec)."""
        import sqlite_vec

        if hasattr(sqlite3.Connection, "enable_load_extension"):
            db: Any = sqlite3.connect(folder / "peer.db", isolation_level=None)
            db.enable_load_extension(True)
            sqlite_vec.load(db)
            db.enable_load_extension(False)
            return db
        import apsw

        db = apsw.Connection(str(folder / "peer.db"))
        db.enable_load_extension(True)
        db.load_extension(sqlite_vec.loadable_path())
        return db

    def build(self, folder: Path, n: int, dims: int) -> float:
        db = self._connect(folder)
        db.execute(f"CREATE VIRTUAL TABLE vec USING vec0(embedding float[{dims}] distance_metric=cosine)")
        db.execute("CREATE VIRTUAL TABLE fts USING fts5(text, tokenize='porter unicode61')")
        db.execute("CREATE TABLE ids (rowid INTEGER PRIMARY KEY, id TEXT)")
        spent, row = 0.0, 0
        for batch_ids, texts, vecs in rows(n, dims):
            t = time.perf_counter()
            rng = range(row + 1, row + 1 + len(batch_ids))
            db.execute("BEGIN")
            db.executemany("INSERT INTO ids VALUES (?, ?)", zip(rng, batch_ids, strict=True))
            db.executemany("INSERT INTO fts(rowid, text) VALUES (?, ?)", zip(rng, texts, strict=True))
            db.executemany("INSERT INTO vec(rowid, embedding) VALUES (?, ?)", zip(rng, (v.tobytes() for v in vecs), strict=True))
            db.execute("COMMIT")
            row += len(batch_ids)
            spent += time.perf_counter() - t
        return n / spent

    def open(self, folder: Path) -> tuple[Callable[..., Any], ...]:
        db = self._connect(folder)

        def bm25(text: str, _v: np.ndarray) -> list[str]:
            return [r[0] for r in db.execute(
                "SELECT i.id FROM (SELECT rowid, bm25(fts) s FROM fts WHERE fts MATCH ? ORDER BY s LIMIT ?) f "
                "JOIN ids i ON i.rowid = f.rowid ORDER BY f.s", (fts_expr(text), K))]

        def knn(_t: str, v: np.ndarray) -> list[str]:
            return [r[0] for r in db.execute(
                "SELECT i.id FROM (SELECT rowid, distance FROM vec WHERE embedding MATCH ? AND k = ?) v "
                "JOIN ids i ON i.rowid = v.rowid ORDER BY v.distance", (v.tobytes(), K))]

        return bm25, knn, lambda t, v: rrf(bm25(t, v), knn(t, v))


class Lance:
    def build(self, folder: Path, n: int, dims: int) -> float:
        import lancedb
        import pyarrow as pa

        db = lancedb.connect(str(folder))
        spent, table = 0.0, None
        for batch_ids, texts, vecs in rows(n, dims):
            t = time.perf_counter()
            data = pa.table({"id": batch_ids, "text": texts,
                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dims)})
            if table is None:
                table = db.create_table("products", data=data)
            else:
                table.add(data)
            spent += time.perf_counter() - t
        assert table is not None
        t = time.perf_counter()
        table.create_fts_index("text")
        return n / (spent + time.perf_counter() - t)

    def open(self, folder: Path) -> tuple[Callable[..., Any], ...]:
        import lancedb

        table = lancedb.connect(str(folder)).open_table("products")

        def bm25(text: str, _v: np.ndarray) -> list[str]:
            return table.search(text, query_type="fts").limit(K).select(["id"]).to_arrow()["id"].to_pylist()

        def knn(_t: str, v: np.ndarray) -> list[str]:
            return table.search(v).metric("cosine").limit(K).select(["id"]).to_arrow()["id"].to_pylist()

        return bm25, knn, lambda t, v: rrf(bm25(t, v), knn(t, v))


class MilvusLite:
    def build(self, folder: Path, n: int, dims: int) -> float:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        client = MilvusClient(str(folder / "milvus.db"))
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=32)
        schema.add_field("text", DataType.VARCHAR, max_length=2048, enable_analyzer=True)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dims)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                     output_field_names=["sparse"]))
        params = client.prepare_index_params()
        params.add_index(field_name="dense", index_type="FLAT", metric_type="COSINE")
        params.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        client.create_collection("products", schema=schema, index_params=params)
        spent = 0.0
        for batch_ids, texts, vecs in rows(n, dims):
            t = time.perf_counter()
            client.insert("products", [{"id": i, "text": x, "dense": v.tolist()}
                                       for i, x, v in zip(batch_ids, texts, vecs, strict=True)])
            spent += time.perf_counter() - t
        t = time.perf_counter()
        client.flush("products")
        client.close()
        return n / (spent + time.perf_counter() - t)

    def open(self, folder: Path) -> tuple[Callable[..., Any], ...]:
        from pymilvus import MilvusClient

        client = MilvusClient(str(folder / "milvus.db"))
        client.load_collection("products")

        def bm25(text: str, _v: np.ndarray) -> list[str]:
            res = client.search("products", data=[text], anns_field="sparse", limit=K, search_params={"metric_type": "BM25"})
            return [h["id"] for h in res[0]]

        def knn(_t: str, v: np.ndarray) -> list[str]:
            res = client.search("products", data=[v.tolist()], anns_field="dense", limit=K)
            return [h["id"] for h in res[0]]

        return bm25, knn, lambda t, v: rrf(bm25(t, v), knn(t, v))


def make(name: str, a: argparse.Namespace) -> Any:
    return {"embedded": lambda: Embedded(a.engine, a.index), "tantivy+numpy": TantivyNumpy, "sqlite-vec": SqliteVec,
            "lancedb": Lance, "milvus-lite": MilvusLite}[name]()


def folder_of(a: argparse.Namespace, name: str) -> Path:
    tag = f"-{a.engine}-{a.index}" if name == "embedded" else ""
    return a.data / f"{name}{tag}-{a.n}-{a.dims}d"


# -- one case per process -------------------------------------------------------------------


def case_build(a: argparse.Namespace) -> dict[str, Any]:
    folder = folder_of(a, a.system)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rate = make(a.system, a).build(folder, a.n, a.dims)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    (folder / ".done").write_text(json.dumps({"products_per_s": rate, "bytes": size}))
    return {"products_per_s": rate, "bytes": size}


def case_query(a: argparse.Namespace) -> dict[str, Any]:
    from synthetic import Catalogue

    cat = Catalogue(a.n, a.dims)
    texts, vecs = cat.query_texts(a.queries), cat.query_vectors(a.queries)
    t = time.perf_counter()
    fns = make(a.system, a).open(folder_of(a, a.system))
    fns[2](texts[0], vecs[0])
    out: dict[str, Any] = {"open_first_query_s": time.perf_counter() - t}
    for name, fn in zip(("bm25", "knn", "hybrid"), fns, strict=True):
        for i in range(min(20, a.queries)):  # warm-up
            fn(texts[i], vecs[i])
        times = []
        for i in range(a.queries):
            t = time.perf_counter()
            fn(texts[i], vecs[i])
            times.append((time.perf_counter() - t) * 1000)
        out[name] = float(np.median(times))
    return out


def sub(a: argparse.Namespace, case: str, system: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    args = [case, "--system", system, "--n", str(a.n), "--dims", str(a.dims), "--queries", str(a.queries),
            "--engine", a.engine, "--index", a.index, "--data", str(a.data), "--json", str(out)]
    env = {**os.environ}
    if a.peer_path and system != "embedded":
        env["PYTHONPATH"] = os.pathsep.join([str(a.peer_path), env.get("PYTHONPATH", "")])
    try:
        proc = subprocess.run([sys.executable, str(HERE / "peers.py"), *args], capture_output=True, text=True,
                              timeout=7200, check=False, env=env, cwd=ROOT)
        if proc.returncode != 0 or out.stat().st_size == 0:
            return {"error": proc.stderr.strip().splitlines()[-1][:300] if proc.stderr.strip() else f"exit {proc.returncode}"}
        return dict(json.loads(out.read_text()))
    finally:
        out.unlink(missing_ok=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", nargs="?", choices=("build", "query"))
    p.add_argument("--system", choices=SYSTEMS)
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--engine", default="tantivy", help="lexical engine of the embedded store")
    p.add_argument("--index", default="exact", help="kNN option of the embedded store (exact, sq8, ivf, hnsw)")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--peer-path", type=Path, default=ROOT / "artifacts" / "peers-lib" if (ROOT / "artifacts" / "peers-lib").exists() else None)
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    if a.case:
        res = case_build(a) if a.case == "build" else case_query(a)
        a.json.write_text(json.dumps(res)) if a.json else print(json.dumps(res))
        return
    from memory import machine

    systems = a.systems.split(",")
    res: dict[str, Any] = {"machine": machine(), "n": a.n, "dims": a.dims, "builds": {}, "rounds": {s: [] for s in systems},
                           "command": " ".join(["python", "benchmarks/peers.py", *sys.argv[1:]])}
    for s in systems:
        done = folder_of(a, s) / ".done"
        print(f"build {s} ...", file=sys.stderr, flush=True)
        res["builds"][s] = json.loads(done.read_text()) if done.exists() and not a.rebuild else sub(a, "build", s)
    for r in range(a.rounds):
        for s in systems if r % 2 == 0 else list(reversed(systems)):
            if "error" in res["builds"][s]:
                continue
            print(f"round {r + 1} {s} ...", file=sys.stderr, flush=True)
            res["rounds"][s].append(sub(a, "query", s))
    res["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(table(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


def table(res: dict[str, Any]) -> str:
    from memory import machine_line

    m = res["machine"]
    out = [(f"{machine_line(m, res['load_avg_end'])}. "
           f"{res['n']:,} products x {res['dims']} dims, k={K} per source, RRF top {TOP}. Command: `{res['command']}`"), "",
           ("| system | ingest products/s | disk MiB | open + 1st query s | BM25 p50 ms | kNN p50 ms | hybrid p50 ms | "
           "hybrid vs embedded |"), "|---|---|---|---|---|---|---|---|"]
    med: dict[str, dict[str, float]] = {}
    for s, rounds in res["rounds"].items():
        ok = [r for r in rounds if "error" not in r]
        if ok:
            med[s] = {k: float(np.median([r[k] for r in ok])) for k in ("bm25", "knn", "hybrid", "open_first_query_s")}
    base = med.get("embedded", {}).get("hybrid")
    for s in res["rounds"]:
        b = res["builds"].get(s, {})
        if "error" in b:
            out.append(f"| {s} | not measured: {b['error']} | | | | | | |")
            continue
        errs = [r["error"] for r in res["rounds"][s] if "error" in r]
        if s not in med:
            out.append(f"| {s} | {b['products_per_s']:,.0f} | {b['bytes'] / 2**20:.0f} | query failed: {errs[0] if errs else '?'} | | | | |")
            continue
        q = med[s]
        r = q["hybrid"] / base if base else None
        ratio = "-" if r is None else f"{r:.1f}x slower" if r >= 1 else f"{1 / r:.1f}x faster"
        out.append(f"| {s} | {b['products_per_s']:,.0f} | {b['bytes'] / 2**20:.0f} | {q['open_first_query_s']:.2f} | {q['bm25']:.2f} | "
                   f"{q['knn']:.2f} | {q['hybrid']:.2f} | {ratio if s != 'embedded' else '1.0x'} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
