#!/usr/bin/env python
"""The figures of issue #14's targets for the embedded store, each case in a fresh process.

    python benchmarks/targets.py                       # 100k and 1M x 512, 100k x 384/768, MiniLM recall
    python benchmarks/targets.py --sizes 100000 --size-dims 512 --recall-n 20000   # quicker
    python benchmarks/targets.py --smoke               # seconds: tiny sizes (keeps the script alive)

Cases (each ``python benchmarks/targets.py CASE ...`` in its own process, so time and memory are
its own):

- ``ingest``: ready vectors (synthetic catalogue, benchmarks/synthetic.py) through
  ``EmbeddedStore.upsert`` in batches of 5,000 with a checkpoint each, per lexical engine:
  products/s (generation of the documents excluded), file size against the raw vectors and
  against raw vectors + text;
- ``build``: the persisted approximate index (``build_vector_index``), seconds and disk;
- ``open``: a fresh process opens the store and answers its first kNN query with the persisted
  index (the "ANN open" target), then times kNN, BM25 and hybrid (both + RRF, sources in
  parallel threads) over the same queries, and reports RSS after them;
- ``recall``: recall@10 against exact kNN on real text vectors: MiniLM encodings of titles
  synthesised from the flipkart-1050 vocabulary (benchmarks/text_vectors.py states the method).

Speed is printed, never asserted by tests. State the load: it is printed with every run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from memory import file_bytes, machine, machine_line, mib, rss_bytes
from query import HYBRID_WEIGHTS, TOP, K, percentiles
from synthetic import FIELD, Catalogue

from ctir_es.products import Product
from ctir_es.ranking.fusion import fuse
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store import ann
from ctir_es.store.embedded import EmbeddedStore

ROOT = HERE.parent
STORES = ROOT / "artifacts" / "benchmarks" / "stores-14"


def store_path(n: int, dims: int, engine: str, root: Path = STORES) -> Path:
    return root / f"syn-{n}-{dims}d-{engine}.db"


def remove_store(path: Path) -> None:
    for p in path.parent.glob(path.name + "*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def time_calls(fn: Any, n: int, rounds: int) -> dict[str, float]:
    samples: list[float] = []
    per_round: list[list[float]] = []
    for _ in range(rounds):
        r = []
        for i in range(n):
            t = time.perf_counter()
            fn(i)
            r.append((time.perf_counter() - t) * 1000)
        per_round.append(r)
        samples += r
    return percentiles(samples, per_round)


# -- cases (one process each) --------------------------------------------------------------


def case_ingest(a: argparse.Namespace) -> dict[str, Any]:
    cat = Catalogue(a.n, a.dims)
    path = store_path(a.n, a.dims, a.engine, a.root)
    remove_store(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = EmbeddedStore(path, lexical=a.engine)
    store.setup(IndexSchema({FIELD: VectorField(a.dims, "cosine", {"id": f"synthetic-{a.dims}"})}))
    upsert_s = 0.0
    done = 0
    for docs in cat.documents(5000):  # generating the documents is not part of the figure
        t = time.perf_counter()
        result = store.upsert(docs, checkpoint=("bench", done + len(docs)))
        upsert_s += time.perf_counter() - t
        if result.errors:
            raise RuntimeError(next(iter(result.errors.values())))
        done += len(docs)
    t = time.perf_counter()
    store.clear_checkpoint("bench")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL folded into the file: counted
    store.close()
    upsert_s += time.perf_counter() - t
    raw = cat.raw_bytes()
    size = file_bytes(path) + sum(f.stat().st_size for f in path.parent.glob(path.name + ".lexical/*"))
    return {"n": a.n, "dims": a.dims, "engine": a.engine, "products_per_s": a.n / upsert_s, "seconds": upsert_s,
            "file_bytes": size, "raw_vector_bytes": raw["vectors"], "raw_text_bytes": raw["text"],
            "size_vs_vectors": size / raw["vectors"], "size_vs_raw": size / (raw["vectors"] + raw["text"])}


def case_build(a: argparse.Namespace) -> dict[str, Any]:
    path = store_path(a.n, a.dims, a.engine, a.root)
    t = time.perf_counter()
    EmbeddedStore(path).build_vector_index(a.index)
    secs = time.perf_counter() - t
    folder = next(ann.ann_dir(path).glob(f"{FIELD}.{a.index}.g*"))
    return {"n": a.n, "dims": a.dims, "index": a.index, "engine": a.engine, "build_s": secs,
            "index_bytes": sum(f.stat().st_size for f in folder.iterdir())}


def case_open(a: argparse.Namespace) -> dict[str, Any]:
    cat = Catalogue(a.n, a.dims)
    qv, qt = cat.query_vectors(a.queries), cat.query_texts(a.queries)
    path = store_path(a.n, a.dims, a.engine, a.root)
    rss0 = rss_bytes()
    t = time.perf_counter()
    store = EmbeddedStore(path, vector_index=a.index)
    if a.index != "exact":
        store._ann_index(FIELD)  # the persisted index, memory-mapped (the "ANN open")
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    store.search(None, [VectorQuery(FIELD, qv[0], "text")], K)  # sq8 scans every code: cold pages are read here
    first_s = time.perf_counter() - t
    used_index = a.index == "exact" or FIELD in store._ann
    store.search(LexicalQuery(qt[0]), [], K)  # opens the lexical side too

    def knn(i: int) -> object:
        return store.search(None, [VectorQuery(FIELD, qv[i], "text")], K)

    def lex(i: int) -> object:
        return store.search(LexicalQuery(qt[i]), [], K)

    def hybrid(i: int) -> object:
        return fuse("rrf", store.search(LexicalQuery(qt[i]), [VectorQuery(FIELD, qv[i], "text")], K), HYBRID_WEIGHTS, limit=TOP)

    modes: dict[str, Any] = {}
    for fn in (knn, lex, hybrid):  # warm-up pass: the first query of each kind was timed above
        for i in range(a.queries):
            fn(i)
    for _ in range(a.rounds):  # interleaved: one pass of each mode per round
        for name, fn in (("knn", knn), ("lexical", lex), ("hybrid", hybrid)):
            modes.setdefault(name, []).append(time_calls(fn, a.queries, 1)["p50_ms"])
    stats = {name: {"p50_ms": float(np.median(v)), "p50_min_ms": min(v), "p50_max_ms": max(v)} for name, v in modes.items()}
    slower = max(stats["knn"]["p50_ms"], stats["lexical"]["p50_ms"])
    out = {"n": a.n, "dims": a.dims, "index": a.index, "engine": store.lexical_engine, "open_s": open_s,
           "first_query_s": first_s, "open_first_query_s": open_s + first_s,
           "persisted_index_used": used_index, "modes": stats, "hybrid_vs_slower_source": stats["hybrid"]["p50_ms"] / slower,
           "rss_bytes": rss_bytes(), "rss_before_open_bytes": rss0, **rss_split()}
    store.close()
    return out


def rss_split() -> dict[str, int]:
    """Resident memory split: anonymous (heap: a loaded float32 matrix lands here) and file-backed
    (memory-mapped index files: clean pages the kernel can drop and re-read)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                out[f"{key.lower()}_bytes"] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def case_recall(a: argparse.Namespace) -> dict[str, Any]:
    import text_vectors

    docs, queries = text_vectors.load(a.n, a.queries)
    docs = np.asarray(docs, dtype=np.float32)
    titles = text_vectors.titles(a.n)
    path = a.root / f"minilm-{a.n}.db"
    if not path.with_suffix(".done").exists():
        remove_store(path)
        store = EmbeddedStore(path)
        store.setup(IndexSchema({"t": VectorField(docs.shape[1], "cosine", {"id": "all-MiniLM-L6-v2"})}))
        for s in range(0, a.n, 5000):
            store.upsert([Document(Product(id=f"m{i}", title=titles[i]), {"t": docs[i]}) for i in range(s, min(a.n, s + 5000))])
        store.close()
        path.with_suffix(".done").write_text("ok")
    scores = queries @ docs.T
    truth = np.argsort(-scores, axis=1)[:, :10]
    out: dict[str, Any] = {"n": a.n, "queries": len(queries), "dims": docs.shape[1], "method": "benchmarks/text_vectors.py"}
    for kind in a.kinds.split(","):
        t = time.perf_counter()
        EmbeddedStore(path).build_vector_index(kind)
        build_s = time.perf_counter() - t
        store = EmbeddedStore(path, vector_index=kind)
        got, times = [], []
        for q in queries:
            t = time.perf_counter()
            hits = store.search(None, [VectorQuery("t", q)], 10)["t"]
            times.append((time.perf_counter() - t) * 1000)
            got.append({int(h.id[1:]) for h in hits})
        recall = float(np.mean([len(got[i] & set(truth[i].tolist())) / 10 for i in range(len(queries))]))
        out[kind] = {"recall_at_10": recall, "build_s": build_s, "knn_k10_p50_ms": float(np.median(times[1:]))}
        store.close()
    return out


CASES = {"ingest": case_ingest, "build": case_build, "open": case_open, "recall": case_recall}


def sub(args: list[str], timeout: float = 7200) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = Path(fh.name)
    try:
        cmd = [sys.executable, str(HERE / "targets.py"), *args, "--json", str(out)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0 or out.stat().st_size == 0:
            return {"error": f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-600:]}"}
        return dict(json.loads(out.read_text()))
    finally:
        out.unlink(missing_ok=True)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


def run_all(a: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"machine": machine(), "command": " ".join(["python", "benchmarks/targets.py", *sys.argv[1:]]),
                           "ingest": [], "build": [], "open": [], "recall": None}
    root = ["--root", str(a.root)]
    engines = a.engines.split(",")
    for n in a.sizes:
        for engine in engines:
            print(f"ingest {label(n)} x {a.dims} {engine} ...", file=sys.stderr, flush=True)
            res["ingest"].append(sub(["ingest", "--n", str(n), "--dims", str(a.dims), "--engine", engine, *root]))
    for dims in a.size_dims:
        if dims != a.dims:
            print(f"ingest {label(a.size_n)} x {dims} (size) ...", file=sys.stderr, flush=True)
            res["ingest"].append(sub(["ingest", "--n", str(a.size_n), "--dims", str(dims), "--engine", engines[0], *root]))
    for n in a.sizes:
        kinds = [k for k in a.kinds.split(",") if n <= a.hnsw_max or k != "hnsw"]
        for engine in engines:
            for kind in kinds:
                print(f"build {label(n)} {kind} {engine} ...", file=sys.stderr, flush=True)
                res["build"].append(sub(["build", "--n", str(n), "--dims", str(a.dims), "--index", kind,
                                         "--engine", engine, *root]))
            for kind in ["exact", *kinds]:
                print(f"open {label(n)} {kind} {engine} ...", file=sys.stderr, flush=True)
                res["open"].append(sub(["open", "--n", str(n), "--dims", str(a.dims), "--index", kind, "--engine", engine,
                                        "--queries", str(a.queries), "--rounds", str(a.rounds), *root]))
    if a.recall_n:
        print(f"recall {label(a.recall_n)} MiniLM ...", file=sys.stderr, flush=True)
        res["recall"] = sub(["recall", "--n", str(a.recall_n), "--queries", str(a.recall_queries), "--kinds", a.kinds, *root])
    res["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    return res


def tables(res: dict[str, Any]) -> str:
    m = res["machine"]
    out = [f"{machine_line(m, res.get('load_avg_end'))}. Command: `{res['command']}`", ""]
    out += ["#### Ingest of ready vectors (upsert, batches of 5,000 with a checkpoint; target >= 100,000/s, size <= 1.3x)", "",
            "| products | dims | lexical | products/s | file (incl. lexical index) | / raw vectors | / raw vectors + text |",
            "|---|---|---|---|---|---|---|"]
    for r in res["ingest"]:
        if "error" in r:
            out.append(f"| error: {r['error'][:300]} |")
            continue
        out.append(f"| {label(r['n'])} | {r['dims']} | {r['engine']} | {r['products_per_s']:,.0f} | {mib(r['file_bytes'])} | "
                   f"{r['size_vs_vectors']:.2f} | {r['size_vs_raw']:.2f} |")
    out += ["", "#### Persisted approximate index: build (once, by the writer) and disk", "",
            "| products | dims | index | store (lexical) | build s | index on disk |", "|---|---|---|---|---|---|"]
    for r in res["build"]:
        if "error" in r:
            out.append(f"| error: {r['error'][:300]} |")
            continue
        out.append(f"| {label(r['n'])} | {r['dims']} | {r['index']} | {r['engine']} | {r['build_s']:.1f} | {mib(r['index_bytes'])} |")
    out += ["", ("#### Fresh process: open (the persisted index memory-mapped), the first query, then p50 per mode (k=100 per source; hybrid = both sources "
            "in parallel threads + RRF); median of per-round p50s (min-max)"), "",
            "| products | dims | kNN | lexical | open s | 1st query s | kNN p50 ms | BM25 p50 ms | hybrid p50 ms | hybrid / slower source | RSS (anon + file) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["open"]:
        if "error" in r:
            out.append(f"| error: {r['error'][:300]} |")
            continue
        s = r["modes"]
        cell = {k: f"{v['p50_ms']:.2f} ({v['p50_min_ms']:.2f}-{v['p50_max_ms']:.2f})" for k, v in s.items()}
        flag = "" if r["persisted_index_used"] else " (index not used!)"
        out.append(f"| {label(r['n'])} | {r['dims']} | {r['index']}{flag} | {r['engine']} | {r.get('open_s', float('nan')):.3f} | "
                   f"{r.get('first_query_s', r['open_first_query_s']):.3f} | "
                   f"{cell['knn']} | {cell['lexical']} | {cell['hybrid']} | {r['hybrid_vs_slower_source']:.2f} | {mib(r['rss_bytes'])}"
                   + (f" ({mib(r['rssanon_bytes'])} + {mib(r['rssfile_bytes'])})" if "rssanon_bytes" in r else "") + " |")
    rc = res.get("recall")
    if rc:
        out += ["", "#### Recall@10 against exact kNN, real text vectors", ""]
        if "error" in rc:
            out.append(f"error: {rc['error'][:300]}")
        else:
            out += [(f"{rc['n']:,} MiniLM title vectors ({rc['dims']} dims), {rc['queries']} MiniLM query vectors; "
                    "titles and queries synthesised from the flipkart-1050 vocabulary (benchmarks/text_vectors.py)."), "",
                    "| index | recall@10 | build s | kNN k=10 p50 ms |", "|---|---|---|---|"]
            for kind, v in rc.items():
                if isinstance(v, dict):
                    out.append(f"| {kind} | {v['recall_at_10']:.3f} | {v['build_s']:.1f} | {v['knn_k10_p50_ms']:.2f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", nargs="?", choices=sorted(CASES), help="run one case (in this process)")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=512)
    p.add_argument("--engine", default="fts5")
    p.add_argument("--index", default="exact")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kinds", default=",".join(ann.KINDS))
    p.add_argument("--root", type=Path, default=STORES)
    p.add_argument("--json", type=Path, default=None)
    # the whole run
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--size-dims", type=int, nargs="+", default=[384, 512, 768])
    p.add_argument("--size-n", type=int, default=100_000)
    p.add_argument("--engines", default="fts5,tantivy")
    p.add_argument("--hnsw-max", type=int, default=100_000, help="largest store given an hnsw index (its build is slow)")
    p.add_argument("--recall-n", type=int, default=100_000)
    p.add_argument("--recall-queries", type=int, default=1000)
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    if a.case:
        res = CASES[a.case](a)
        text = json.dumps(res, indent=2)
        a.json.write_text(text) if a.json else print(text)
        return
    if a.smoke:
        a.sizes, a.size_dims, a.size_n, a.queries, a.rounds, a.recall_n = [2000], [32], 2000, 20, 1, 0
        a.dims, a.root = 32, Path(tempfile.mkdtemp(prefix="targets-smoke-"))
    res = run_all(a)
    md = tables(res)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))
    print(md)
    if a.smoke:
        shutil.rmtree(a.root, ignore_errors=True)
    errors = [r["error"] for sec in ("ingest", "build", "open") for r in res[sec] if "error" in r]
    if errors:
        sys.exit(f"{len(errors)} case(s) failed; first: {errors[0][:500]}")


if __name__ == "__main__":
    main()
