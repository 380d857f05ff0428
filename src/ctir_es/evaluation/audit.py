"""``ctir-es evaluate ... --task audit``: does the audit find mis-filed products?

A seeded share of the products (``--noise``, 5% by default) is moved to another category path
that exists in the catalogue, in two ways: **near** - the existing path sharing the longest
prefix with the original (a sibling leaf when there is one) - and **far** - a path under
another root. Each noisy catalogue is indexed through the ingest pipeline and audited like a
real one (every product judged by all the others). Reported: detection AUC (suspicion against
the noise label, all products), precision@k of the ranking, and the restore rate - how often
the suggestion of a moved product equals its original category (at the audited depth, and at
level 1).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audit import DEFAULT_DEPTH, AuditEntry, audit_products
from ..categorize.engine import Categorizer
from ..products import CategoryPath, Product
from ..protocol import known_nodes
from ..ranking.plan import TITLE_VECTOR
from ..store.base import VectorReader
from .categorize import load_text_model
from .error_analysis import common_depth
from .output import md_table, md_title, write_task
from .task_input import TaskInput

KINDS: dict[str, str] = {
    "near": "moved to the existing path sharing the longest prefix (a sibling leaf when there is one)",
    "far": "moved to a path under another root",
}
PRECISION_AT: tuple[int, ...] = (10, 50, 100)


@dataclass(frozen=True)
class AuditEvalConfig:
    noise: float = 0.05
    seed: int = 13
    depth: int = DEFAULT_DEPTH
    neighbours: int = 30
    kinds: tuple[str, ...] = ("near", "far")
    text_model: str | None = None
    work_dir: Path | None = None
    rebuild: bool = False


def inject_noise(products: Sequence[Product], share: float, kind: str, seed: int) -> tuple[list[Product], dict[str, CategoryPath]]:
    """A copy of the catalogue with ``share`` of the categorized products moved; returns the
    noisy products and ``{moved id: original path}``."""
    paths = sorted({tuple(p.categories[0]) for p in products if p.categories})
    rng = random.Random(f"{seed}:{kind}:{share}")
    candidates = sorted(p.id for p in products if p.categories)
    moved_ids = set(rng.sample(candidates, max(1, round(share * len(candidates)))))
    out: list[Product] = []
    original: dict[str, CategoryPath] = {}
    for p in products:
        if p.id not in moved_ids:
            out.append(p)
            continue
        here = tuple(p.categories[0])
        others = [q for q in paths if q != here]
        if kind == "far":
            pool = [q for q in others if q[0] != here[0]]
        else:
            best = max(common_depth(q, here) for q in others)
            pool = [q for q in others if common_depth(q, here) == best]
        target = rng.choice(pool or others)
        original[p.id] = here
        out.append(Product.from_mapping({**p.to_json(), "categories": [list(target)]}))
    return out, original


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """ROC AUC by the rank-sum (ties share their average rank)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def score_audit(entries: Sequence[AuditEntry], original: Mapping[str, CategoryPath], depth: int) -> dict[str, Any]:
    labels = [e.id in original for e in entries]
    out: dict[str, Any] = {"products": len(entries), "moved": sum(labels),
                           "auc": auc([e.suspicion for e in entries], labels),
                           "auc_max_gap": auc([e.gap for e in entries], labels)}
    for k in PRECISION_AT:
        top = entries[:k]
        out[f"precision@{k}"] = sum(e.id in original for e in top) / len(top) if top else 0.0
    moved = [e for e in entries if e.id in original]
    restored = [e for e in moved if e.suggested and e.suggested == original[e.id][: len(e.suggested)]
                and len(e.suggested) == min(depth, len(original[e.id]))]
    restored_root = [e for e in moved if e.suggested[:1] == original[e.id][:1]]
    out["restore_rate"] = len(restored) / len(moved) if moved else 0.0
    out["restore_rate_level1"] = len(restored_root) / len(moved) if moved else 0.0
    top_k = {e.id for e in entries[:50]}
    found = [e for e in moved if e.id in top_k]
    out["restore_rate_in_top50"] = (sum(e in restored for e in found) / len(found)) if found else 0.0
    out["mean_shared_levels"] = float(np.mean([common_depth(original[e.id], e.stored) for e in moved])) if moved else 0.0
    return out


def evaluate_audit(task: TaskInput, config: AuditEvalConfig = AuditEvalConfig()) -> dict[str, Any]:
    products, settings, progress = task.products, task.settings, task.progress
    text = load_text_model(settings, config.text_model)
    results: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    for kind in config.kinds:
        noisy, original = inject_noise(products, config.noise, kind, config.seed)
        with task.index_builder(config.work_dir, config.rebuild, products=noisy, kind=f"audit-{kind}") as builder:
            index = builder.with_encoders(f"audit-{kind}", text_encoder=text)
            store = index.store
            labels = sorted(known_nodes(noisy))
            categorizer = Categorizer(store, vector_fields=list(index.schema.vectors), text_encoder=text,
                                      labels=labels)
            vectors: dict[str, dict[str, np.ndarray]] = {}
            if isinstance(store, VectorReader):
                for pid, vec in store.vectors([p.id for p in noisy], TITLE_VECTOR).items():
                    vectors[pid] = {TITLE_VECTOR: vec}
            stage = f"audit ({kind} noise)"

            def step(n: int, total: int, stage: str = stage) -> None:
                progress(stage, n, total)

            entries = audit_products(categorizer, noisy, vectors, depth=config.depth, neighbours=config.neighbours,
                                     progress=step)
            results[kind] = score_audit(entries, original, config.depth)
            examples[kind] = [{**e.to_json(), "moved": e.id in original,
                               "original": list(original.get(e.id, ()))} for e in entries[:10]]
    return {
        "task": "audit",
        "dataset": task.dataset(),
        "config": {"noise": config.noise, "seed": config.seed, "depth": config.depth,
                   "neighbours": config.neighbours, "kinds": {k: KINDS[k] for k in config.kinds}},
        "results": results,
        "examples": examples,
        "seconds": task.seconds(),
    }


def markdown(report: Mapping[str, Any], command: str = "") -> str:
    c = report["config"]
    head = ["noise", "moved / products", "shared levels", "AUC (mean gap)", "AUC (max gap)", "P@10", "P@50",
            "P@100", "restored (depth)", "restored (level 1)"]
    rows = [[kind, f"{r['moved']} / {r['products']}", f"{r['mean_shared_levels']:.2f}", f"{r['auc']:.3f}",
             f"{r['auc_max_gap']:.3f}", *(f"{100 * r[f'precision@{k}']:.0f}" for k in PRECISION_AT),
             f"{100 * r['restore_rate']:.1f}", f"{100 * r['restore_rate_level1']:.1f}"]
            for kind, r in report["results"].items()]
    lines = [*md_title(f"Audit with {100 * c['noise']:.0f}% synthetic category noise", command),
             f"Seed {c['seed']}, audited depth {c['depth']}, {c['neighbours']} neighbours, {report['seconds']} s.", "",
             *md_table(head, rows)]
    return "\n".join(lines) + "\n"


def write(report: Mapping[str, Any], out_dir: Path, command: str = "") -> dict[str, str]:
    return write_task(report, out_dir, "audit", markdown, command)
