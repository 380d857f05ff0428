"""``ctir-es evaluate ... --task diverse``: category landing pages with and without MMR.

The whole catalogue is indexed as it is served (BM25 over every field, title vectors) and
every category node of levels 1 to 3 is queried in category mode with the serving weights.
For the top 10 with and without ``diverse`` (MMR, several lambdas): the near-duplicate rate
(results whose normalised title equals, or whose title vector has cosine >= 0.95 with, a
result above them) and subtree P@10 (the precision cost).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..diversify import DUPLICATE_COSINE, near_duplicate_flags
from ..products import format_category_path, path_prefixes
from ..protocol import known_nodes
from ..search import Search
from .categorize import load_text_model
from .output import md_table, md_title, write_task
from .task_input import TaskInput


@dataclass(frozen=True)
class DiverseEvalConfig:
    lambdas: tuple[float, ...] = (0.9, 0.7, 0.5)
    levels: tuple[int, ...] = (1, 2, 3)
    k: int = 10
    text_model: str | None = None
    work_dir: Path | None = None
    rebuild: bool = False


def evaluate_diverse(task: TaskInput, config: DiverseEvalConfig = DiverseEvalConfig()) -> dict[str, Any]:
    products, progress = task.products, task.progress
    text = load_text_model(task.settings, config.text_model)
    with task.index_builder(config.work_dir, config.rebuild) as builder:
        index = builder.with_encoders("categorize-text", text_encoder=text)
        search = Search(index.store, text)
        nodes = sorted(n for n in known_nodes(products) if len(n) in config.levels)
        under: dict[tuple[str, ...], set[str]] = {}
        for p in products:
            for path in p.categories:
                for prefix in path_prefixes(tuple(path)):
                    under.setdefault(prefix, set()).add(p.id)
        variants: dict[str, float | bool] = {"plain": False, **{f"mmr {lam:g}": lam for lam in config.lambdas}}
        rows: dict[str, dict[str, list[float]]] = {v: {"dup": [], "p10": [], "pairs": []} for v in variants}
        per_level: dict[str, dict[int, list[float]]] = {v: {} for v in variants}
        for n, node in enumerate(nodes, start=1):
            query = format_category_path(node)
            for name, diverse in variants.items():
                results = search.search(query, mode="category", k=config.k, diverse=diverse).results
                ids = [r.id for r in results]
                titles = {r.id: r.title for r in results}
                vectors = search.result_vectors(ids)
                flags = near_duplicate_flags(ids, titles, vectors)
                rows[name]["dup"].append(sum(flags) / len(ids) if ids else 0.0)
                rows[name]["p10"].append(sum(i in under.get(node, set()) for i in ids) / config.k)
                per_level[name].setdefault(len(node), []).append(sum(flags) / len(ids) if ids else 0.0)
            if n % 25 == 0 or n == len(nodes):
                progress("category queries", n, len(nodes))
        results_out = {
            name: {"near_duplicate_rate@10": float(np.mean(r["dup"])), "p@10": float(np.mean(r["p10"])),
                   "queries_with_a_duplicate": float(np.mean([d > 0 for d in r["dup"]])),
                   "near_duplicate_rate_by_level": {lv: float(np.mean(v)) for lv, v in sorted(per_level[name].items())}}
            for name, r in rows.items()
        }
        return {"task": "diverse", "dataset": task.dataset(), "queries": len(nodes),
                "config": {"lambdas": list(config.lambdas), "levels": list(config.levels), "k": config.k,
                           "duplicate": f"identical normalised title, or title-vector cosine >= {DUPLICATE_COSINE}"},
                "results": results_out, "seconds": task.seconds()}


def markdown(report: Mapping[str, Any], command: str = "") -> str:
    head = ["ranking", "near-duplicate rate @10", "queries with a near-duplicate", "subtree P@10"]
    rows = [[name, f"{100 * r['near_duplicate_rate@10']:.1f}", f"{100 * r['queries_with_a_duplicate']:.1f}",
             f"{100 * r['p@10']:.1f}"] for name, r in report["results"].items()]
    lines = [*md_title("Diversified category pages (MMR)", command),
             (f"{report['queries']} category queries (levels {report['config']['levels']}); "
              f"near-duplicate: {report['config']['duplicate']}; {report['seconds']} s."), "",
             *md_table(head, rows)]
    return "\n".join(lines) + "\n"


def write(report: Mapping[str, Any], out_dir: Path, command: str = "") -> dict[str, str]:
    return write_task(report, out_dir, "diverse", markdown, command)
