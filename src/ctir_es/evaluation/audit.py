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

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..audit import DEFAULT_DEPTH, AuditEntry, audit_products
from ..categorize.engine import Categorizer
from ..config import Settings
from ..products import CategoryPath, Product
from ..ranking.plan import TITLE_VECTOR
from ..store.base import VectorReader
from .categorize import _text_encoder
from .index import IndexBuilder, Progress
from .protocol import dataset_hash, known_nodes

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


def _common(a: CategoryPath, b: CategoryPath) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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
            best = max(_common(q, here) for q in others)
            pool = [q for q in others if _common(q, here) == best]
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
    out["mean_shared_levels"] = float(np.mean([_common(original[e.id], e.stored) for e in moved])) if moved else 0.0
    return out


def evaluate_audit(
    products: Sequence[Product],
    settings: Settings,
    config: AuditEvalConfig = AuditEvalConfig(),
    *,
    dataset_meta: Mapping[str, Any] | None = None,
    progress: Progress = lambda *a: None,
) -> dict[str, Any]:
    started = time.perf_counter()
    text = _text_encoder(settings, config.text_model)
    results: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    for kind in config.kinds:
        noisy, original = inject_noise(products, config.noise, kind, config.seed)
        digest = dataset_hash(noisy, f"audit-{kind}")
        builder = IndexBuilder(noisy, digest, settings, Path(config.work_dir or settings.cache_dir / "eval"),
                               progress=progress, rebuild=config.rebuild)
        try:
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
        finally:
            builder.close()
    return {
        "task": "audit",
        "dataset": dict(dataset_meta or {}),
        "config": {"noise": config.noise, "seed": config.seed, "depth": config.depth,
                   "neighbours": config.neighbours, "kinds": {k: KINDS[k] for k in config.kinds}},
        "results": results,
        "examples": examples,
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(report: Mapping[str, Any], command: str = "") -> str:
    c = report["config"]
    lines = [f"# Audit with {100 * c['noise']:.0f}% synthetic category noise", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [f"Seed {c['seed']}, audited depth {c['depth']}, {c['neighbours']} neighbours, {report['seconds']} s.", "",
              ("| noise | moved / products | shared levels | AUC (mean gap) | AUC (max gap) | P@10 | P@50 | P@100 "
               "| restored (depth) | restored (level 1) |"),
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, r in report["results"].items():
        lines.append(f"| {kind} | {r['moved']} / {r['products']} | {r['mean_shared_levels']:.2f} | {r['auc']:.3f} | "
                     f"{r['auc_max_gap']:.3f} | {100 * r['precision@10']:.0f} | {100 * r['precision@50']:.0f} | "
                     f"{100 * r['precision@100']:.0f} | {100 * r['restore_rate']:.1f} | "
                     f"{100 * r['restore_rate_level1']:.1f} |")
    return "\n".join(lines) + "\n"


def write(report: Mapping[str, Any], out_dir: Path, command: str = "") -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / "audit.json"
    js.write_text(json.dumps({**report, "command": command}, indent=1, default=str), encoding="utf-8")
    md = out_dir / "audit.md"
    md.write_text(markdown(report, command), encoding="utf-8")
    return {"json": str(js), "markdown": str(md)}
