"""The same questions to the embedded store and to Elasticsearch: how alike are the answers?

Both indices must hold the same catalogue built with the same encoders, e.g.:

    ctir-es ingest flipkart ../shared/datasets/flipkart-1050 --store artifacts/fk.db
    ctir-es ingest flipkart ../shared/datasets/flipkart-1050 --es-url http://127.0.0.1:9200
    python benchmarks/store_parity.py --store artifacts/fk.db --es-url http://127.0.0.1:9200

Queries: every category node of levels 1-2 (category mode, as ``ctir-es query "A > B"``) and
the first words of a sample of titles (text mode). For each mode it prints how many top-10
lists are identical (same order), the same set, and the mean overlap, for the fused result and
for each source alone (``bm25``, ``text``), so a difference can be traced to its source.
``--show N`` lists the N least similar queries with both top 10s.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctir_es.config import load_settings
from ctir_es.products import format_category_path, parse_category_path
from ctir_es.search import Search


def category_queries(search: Search, levels: Sequence[int] = (1, 2)) -> list[str]:
    counts = search.store.category_counts()  # type: ignore[attr-defined]
    return sorted(format_category_path(p) for p in counts if len(p) in levels)


def text_queries(search: Search, count: int, seed: int = 0) -> list[str]:
    # a deterministic sample of titles: the answers to every top-level category query
    rng = random.Random(seed)
    titles: list[str] = []
    for query in category_queries(search, (1,)):
        for result in search.search(query, k=50).results:
            titles.append(result.title)
    rng.shuffle(titles)
    return [" ".join(t.split()[:3]) for t in dict.fromkeys(titles)][:count]


def per_source(search: Search, query: str, mode: str, k: int) -> dict[str, list[str]]:
    plan = search.plan(query, mode=mode)
    runs = search.store.search(plan.lexical, plan.vectors, k)
    return {name: [h.id for h in hits[:k]] for name, hits in runs.items()}


def compare(a: list[str], b: list[str]) -> tuple[bool, bool, float]:
    k = max(len(a), len(b)) or 1
    return a == b, set(a) == set(b), len(set(a) & set(b)) / k


def in_category(results: Sequence[Any], query: str) -> float:
    """The share of results filed under the queried category node (its subtree)."""
    node = parse_category_path(query)
    inside = [
        any(tuple(path[: len(node)]) == node for path in r.categories) for r in results
    ]
    return sum(inside) / len(inside) if inside else 0.0


def run(embedded: Search, es: Search, queries: list[str], mode: str, k: int) -> dict[str, Any]:
    rows: dict[str, list[tuple[bool, bool, float]]] = {}
    worst: list[tuple[float, str, list[str], list[str]]] = []
    precision: dict[str, list[float]] = {"embedded": [], "elasticsearch": []}
    for query in queries:
        mine, theirs = embedded.search(query, mode=mode, k=k), es.search(query, mode=mode, k=k)
        a = [r.id for r in mine.results]
        b = [r.id for r in theirs.results]
        if mode == "category":
            precision["embedded"].append(in_category(mine.results, query))
            precision["elasticsearch"].append(in_category(theirs.results, query))
        rows.setdefault("fused", []).append(compare(a, b))
        worst.append((compare(a, b)[2], query, a, b))
        sa, sb = per_source(embedded, query, mode, k), per_source(es, query, mode, k)
        for name in sorted(set(sa) | set(sb)):
            rows.setdefault(name, []).append(compare(sa.get(name, []), sb.get(name, [])))
    summary = {
        name: {
            "queries": len(vals),
            "identical": sum(v[0] for v in vals),
            "same_set": sum(v[1] for v in vals),
            "mean_overlap": round(statistics.fmean(v[2] for v in vals), 4),
        }
        for name, vals in rows.items()
    }
    worst.sort()
    subtree = {name: round(statistics.fmean(v), 4) for name, v in precision.items() if v}
    return {"mode": mode, "summary": summary, "subtree_p_at_k": subtree, "worst": worst}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="the embedded store file")
    parser.add_argument("--es-url", required=True)
    parser.add_argument("--es-index", default="products")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--text-queries", type=int, default=50)
    parser.add_argument("--show", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    base = load_settings()
    embedded = Search.open(base.with_overrides(store=args.store, es_url=None))
    es = Search.open(base.with_overrides(es_url=args.es_url, es_index=args.es_index))
    results = []
    for mode, queries in (
        ("category", category_queries(embedded)),
        ("text", text_queries(embedded, args.text_queries)),
    ):
        result = run(embedded, es, queries, mode, args.k)
        results.append(result)
        print(f"\n{mode} queries (top {args.k}, embedded vs Elasticsearch)")
        print(f"{'list':<10}{'queries':>9}{'identical':>11}{'same set':>10}{'mean overlap':>14}")
        for name, s in result["summary"].items():
            print(
                f"{name:<10}{s['queries']:>9}{s['identical']:>11}{s['same_set']:>10}"
                f"{s['mean_overlap']:>14.3f}"
            )
        for name, value in result["subtree_p_at_k"].items():
            print(f"  {name}: {value:.3f} of the top {args.k} are in the queried category (mean)")
        for overlap, query, a, b in result["worst"][: args.show]:
            print(f"  least alike: {query!r} overlap {overlap:.1f}\n    embedded {a}\n    es       {b}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    embedded.close()
    es.close()


if __name__ == "__main__":
    main()
