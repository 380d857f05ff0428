#!/usr/bin/env python
"""BM25 top-k: the embedded store's lexical engines against a bare tantivy index.

    python benchmarks/lexical.py --n 100000 [--n 1000000] [--queries 200] [--rounds 5]

The same synthetic catalogue (benchmarks/synthetic.py) goes into an EmbeddedStore with
``lexical="tantivy"`` (through ``upsert``, so the SQLite source of truth, the change log and
the catch-up are all paid), optionally one with FTS5 (``--fts5``), and a bare tantivy index
holding the same four text fields (what a user of tantivy + NumPy would build). Queries: the
same 1-2 word shopper queries, k=100, default field weights (title 3, categories 5,
attributes 1, description 0.5), no query encoding. Rounds are interleaved (store, bare, store,
bare, ...), and the order inside a round alternates. Vectors are 8-dimensional: they do not
take part in BM25 and would only slow the build.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from query import percentiles
from synthetic import FIELD, Catalogue

from ctir_es.products import format_category_path
from ctir_es.schema import (
    DEFAULT_FIELD_WEIGHTS,
    LEXICAL_FIELDS,
    IndexSchema,
    LexicalQuery,
    VectorField,
)
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.store.embedded.lexical_tantivy import analyzer

K = 100
DIMS = 8


def build_store(cat: Catalogue, path: Path, engine: str) -> float:
    for p in path.parent.glob(path.name + "*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    store = EmbeddedStore(path, lexical=engine)
    t = time.perf_counter()
    store.setup(IndexSchema({FIELD: VectorField(cat.dims, "cosine", {"id": "synthetic"})}))
    for docs in cat.documents(20_000):
        result = store.upsert(docs)
        if result.errors:
            raise RuntimeError(next(iter(result.errors.values())))
    elapsed = time.perf_counter() - t
    store.close()
    return elapsed


def build_bare(cat: Catalogue, path: Path) -> tuple[Any, Any, float]:
    import tantivy

    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    for name in LEXICAL_FIELDS:
        sb.add_text_field(name, tokenizer_name="ctir_en", index_option="freq")
    schema = sb.build()
    index = tantivy.Index(schema, path=str(path))
    index.register_tokenizer("ctir_en", analyzer())
    t = time.perf_counter()
    writer = index.writer(heap_size=256_000_000, num_threads=1)
    leaves = cat.leaves()
    for start in range(0, cat.n, 50_000):
        for p in cat.products(start, min(cat.n, start + 50_000), leaves):
            doc = tantivy.Document()
            doc.add_text("id", p.id)
            doc.add_text("title", p.title)
            doc.add_text("categories", "\n".join(format_category_path(c) for c in p.categories))
            doc.add_text("attributes", p.attribute_text)
            writer.add_document(doc)
    writer.commit()
    writer.wait_merging_threads()
    elapsed = time.perf_counter() - t
    index.reload()
    return index, schema, elapsed


def bare_search(index: Any, texts: list[str]) -> Callable[[int], list[str]]:
    """The top-K ids of ``texts[i]`` straight from a bare tantivy index, default field weights."""
    searcher = index.searcher()
    weights = {f: w for f, w in DEFAULT_FIELD_WEIGHTS.items() if w > 0}
    fields = list(weights)

    def bare(i: int) -> list[str]:
        q = index.parse_query_lenient(texts[i], fields, field_boosts=weights)[0]
        found = searcher.search(q, limit=K, count=False).hits
        return [searcher.doc(addr)["id"][0] for _, addr in found]

    return bare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, action="append")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fts5", action="store_true", help="also time a store with the FTS5 engine")
    ap.add_argument("--out", type=Path, default=Path("artifacts/benchmarks/lexical"))
    args = ap.parse_args()
    sizes = args.n or [100_000]
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"load_start": os.getloadavg(), "k": K, "rounds": args.rounds, "queries": args.queries,
                              "cases": []}
    for n in sizes:
        cat = Catalogue(n, DIMS)
        texts = cat.query_texts(args.queries)
        engines = ["tantivy"] + (["fts5"] if args.fts5 else [])
        build: dict[str, float] = {}
        stores: dict[str, EmbeddedStore] = {}
        for engine in engines:
            path = args.out / f"store-{n}-{engine}.db"
            build[f"store_{engine}_s"] = build_store(cat, path, engine)
            stores[engine] = EmbeddedStore(path)
        index, _schema, build["bare_tantivy_s"] = build_bare(cat, args.out / f"bare-{n}")
        bare = bare_search(index, texts)
        runners = {f"store ({e})": (lambda i, s=stores[e], t=texts: s.search(LexicalQuery(t[i]), [], K))
                   for e in engines}
        runners["bare tantivy"] = bare
        samples: dict[str, list[list[float]]] = {name: [] for name in runners}
        for fn in runners.values():
            fn(0)
        for r in range(args.rounds):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for name in order:
                fn = runners[name]
                times = []
                for i in range(len(texts)):
                    t = time.perf_counter()
                    fn(i)
                    times.append((time.perf_counter() - t) * 1000)
                samples[name].append(times)
        overlap = []
        for i in range(len(texts)):
            a = {h.id for h in stores["tantivy"].search(LexicalQuery(texts[i]), [], 10)["bm25"]}
            overlap.append(len(a & set(bare(i)[:10])) / max(1, min(10, len(a))))
        case = {"n": n, "build": build, "top10_overlap_store_vs_bare": float(np.mean(overlap)), "rows": {}}
        for name, rounds in samples.items():
            case["rows"][name] = percentiles([x for rr in rounds for x in rr], rounds)
        base = case["rows"]["bare tantivy"]["p50_ms"]
        for row in case["rows"].values():
            row["vs_bare_p50"] = row["p50_ms"] / base
        report["cases"].append(case)
        for s in stores.values():
            s.close()
    report["load_end"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"load average at start {report['load_start']}, at end {report['load_end']}; k={K}, "
          f"{args.queries} queries x {args.rounds} interleaved rounds")
    print("| products | engine | p50 ms (rounds min-max) | p99 ms | vs bare tantivy p50 | build s (products/s) |")
    print("|---|---|---|---|---|---|")
    for case in report["cases"]:
        for name, row in case["rows"].items():
            key = "bare_tantivy_s" if name == "bare tantivy" else f"store_{name[7:-1]}_s"
            b = case["build"][key]
            print(f"| {case['n']:,} | {name} | {row['p50_ms']:.3f} ({row['p50_round_min_ms']:.3f}-"
                  f"{row['p50_round_max_ms']:.3f}) | {row['p99_ms']:.3f} | {row['vs_bare_p50']:.2f}x | "
                  f"{b:.1f} ({case['n'] / b:,.0f}) |")
        print(f"top-10 overlap store vs bare tantivy at {case['n']:,}: {case['top10_overlap_store_vs_bare']:.3f}")


if __name__ == "__main__":
    main()
