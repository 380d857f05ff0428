"""``ctir-es evaluate ... --task categorize``: category inference with the paper's split.

The catalogue is indexed through the normal ingest pipeline (title vectors; image vectors
with CLIP weights). Each val and test product is then categorized from its own title (and
attributes / image for CLIP-ITA) while its categories are hidden: only **train** products may
vote (an id filter on every store query, the product itself never among them), and the
zero-shot signals score a label space of train categories (``--label-space train``, the
default) or every node of the catalogue's taxonomy (``taxonomy``: the tree is known, the
product's label is not; this is what lets unseen categories be predicted at all).

Measured per signal alone and fused (default weights, and weights tuned on the val
products): top-1 / top-5 accuracy per level, seen vs unseen per level (a node is seen when
a train product is filed under it), hierarchical precision / recall / F1 of the suggested
path (micro, Kiritchenko et al.), and the expected calibration error of the top-1 score.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..categorize import core
from ..categorize.engine import DEFAULT_NEIGHBOURS, DEFAULT_WEIGHTS, Categorizer, Evidence
from ..config import Settings
from ..errors import ConfigError
from ..filters import Filter
from ..products import CategoryPath, Product, path_prefixes
from ..protocol import SplitSpec, known_nodes, split_products, trained_split
from ..ranking.plan import CLIP_ITA_VECTOR, TITLE_VECTOR
from ..store.base import VectorReader
from .index import Progress
from .output import md_table, md_title, write_task
from .task_input import TaskInput

LABEL_SPACES: dict[str, str] = {
    "train": "the categories of train products (nothing else is known)",
    "taxonomy": "every node of the catalogue's tree (the taxonomy is known, the test labels are not)",
}
WEIGHT_GRID: tuple[float, ...] = (0.0, 0.5, 1.0)
ECE_BINS = 10


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True)
class CategorizeConfig:
    split: SplitSpec = field(default_factory=SplitSpec)
    levels: tuple[int, ...] = (1, 2, 3, 4)
    neighbours: int = DEFAULT_NEIGHBOURS
    label_space: str = "train"
    path_min_score: float = 0.2
    text_model: str | None = None
    trained: tuple[Path, ...] = ()
    limit: int | None = None
    work_dir: Path | None = None
    rebuild: bool = False

    def __post_init__(self) -> None:
        if self.label_space not in LABEL_SPACES:
            raise ConfigError(f"unknown label space {self.label_space!r}; supported: {', '.join(LABEL_SPACES)}")
        if not 1 <= self.neighbours <= 1000:
            raise ConfigError("neighbours must be between 1 and 1000")

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split.to_json(), "levels": list(self.levels), "neighbours": self.neighbours,
                "label_space": self.label_space, "path_min_score": self.path_min_score,
                "text_model": self.text_model, "trained": [str(p) for p in self.trained], "limit": self.limit}


# ------------------------------------------------------------------------------ metrics


def level_truth(product: Product, level: int) -> set[CategoryPath]:
    return {tuple(p[:level]) for p in product.categories if len(p) >= level}


def measure(
    predictions: Mapping[str, core.Scores],
    products: Mapping[str, Product],
    levels: Sequence[int],
    seen: set[CategoryPath],
    path_min_score: float = 0.2,
) -> dict[str, Any]:
    """Accuracy per level (top-1 / top-5, seen / unseen), hierarchical P/R/F1 and ECE."""
    out: dict[str, Any] = {"products": len(predictions), "levels": {}}
    for level in levels:
        rows = []
        for pid, scores in predictions.items():
            truth = level_truth(products[pid], level)
            if not truth:
                continue
            ranked = core.ranked_at(scores, level, 5)
            top1 = bool(ranked) and ranked[0] in truth
            top5 = any(n in truth for n in ranked)
            conf = scores.get(ranked[0], 0.0) if ranked else 0.0
            rows.append((top1, top5, conf, any(n in seen for n in truth)))
        if not rows:
            continue
        entry: dict[str, Any] = {
            "n": len(rows),
            "top1": float(np.mean([r[0] for r in rows])),
            "top5": float(np.mean([r[1] for r in rows])),
            "ece": expected_calibration_error([r[2] for r in rows], [r[0] for r in rows]),
            "mean_confidence": float(np.mean([r[2] for r in rows])),
        }
        for group, flag in (("seen", True), ("unseen", False)):
            sub = [r for r in rows if r[3] == flag]
            entry[group] = {"n": len(sub), "top1": float(np.mean([r[0] for r in sub])) if sub else None,
                            "top5": float(np.mean([r[1] for r in sub])) if sub else None}
        out["levels"][level] = entry
    hit = pred = true = 0
    for pid, scores in predictions.items():
        truth = {n for p in products[pid].categories for n in path_prefixes(tuple(p))}
        path = core.greedy_path(scores, path_min_score)
        guess = set(path_prefixes(path))
        hit += len(guess & truth)
        pred += len(guess)
        true += len(truth)
    hp = hit / pred if pred else 0.0
    hr = hit / true if true else 0.0
    out["hierarchical"] = {"precision": hp, "recall": hr, "f1": 2 * hp * hr / (hp + hr) if hp + hr else 0.0}
    return out


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    if not confidence:
        return 0.0
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    ok = np.asarray(correct, dtype=np.float64)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(ok[mask].mean() - conf[mask].mean())
    return float(total / len(conf))


def headline(result: Mapping[str, Any], levels: Sequence[int] = (1, 2, 3)) -> float:
    """Mean top-1 accuracy over ``levels`` (what weight tuning maximises)."""
    vals = [result["levels"][lv]["top1"] for lv in levels if lv in result["levels"]]
    return float(np.mean(vals)) if vals else 0.0


def tune_weights(
    signals: Mapping[str, Mapping[str, core.Scores]],
    products: Mapping[str, Product],
    levels: Sequence[int],
    grid: Sequence[float] = WEIGHT_GRID,
) -> dict[str, Any]:
    """Grid search of the signal weights on validation products (mean top-1, levels 1-3); ties
    go to the combination closest to equal weights."""
    names = [n for n, preds in signals.items() if any(preds.values())]
    if not names:
        return {"chosen": {}, "score": 0.0, "tried": 0}
    ids = sorted({pid for preds in signals.values() for pid in preds})
    best: tuple[float, float, tuple[float, ...]] | None = None
    tried = 0
    for combo in itertools.product(grid, repeat=len(names)):
        if not any(combo):
            continue
        tried += 1
        w = dict(zip(names, combo, strict=True))
        fused = {pid: core.fuse({n: signals[n].get(pid, {}) for n in names}, w) for pid in ids}
        score = headline(measure(fused, products, [lv for lv in levels if lv <= 3], set()))
        spread = float(np.std([c / max(combo) for c in combo]))
        key = (score, -spread, combo)
        if best is None or key[:2] > best[:2]:
            best = key
    assert best is not None
    return {"chosen": dict(zip(names, best[2], strict=True)), "score": best[0], "tried": tried,
            "grid": list(grid), "metric": "mean top-1 accuracy, levels 1-3, val products"}


# ------------------------------------------------------------------------------ running


def load_text_model(settings: Settings, name: str | None) -> Any:
    """The text encoder a task runs with: ``name`` (``--text-model``), else the settings' one."""
    from ..encoders.registry import EncoderConfig, load_text_encoder

    return load_text_encoder(EncoderConfig.from_settings(settings, text_model=name) if name
                             else EncoderConfig.from_settings(settings))


def _clip_ita(settings: Settings, model_dir: Path, split: SplitSpec) -> Any:
    from ..encoders.registry import EncoderConfig, load_clip_ita

    manifest = json.loads((Path(model_dir) / "manifest.json").read_text(encoding="utf-8"))
    trained = trained_split(manifest)
    if trained and not split.matches(trained):
        raise ConfigError(f"{model_dir} was trained on another split ({trained}): some of its training products "
                          "would be test products here; evaluate with its --seed and --split")
    return load_clip_ita(str(model_dir), EncoderConfig.from_settings(settings))


def predict_all(
    categorizer: Categorizer,
    items: Sequence[Product],
    voters: Sequence[Filter],
    neighbours: int,
    title_vectors: Mapping[str, np.ndarray],
    clip_vectors: Mapping[str, np.ndarray],
    progress: Progress = _noop,
    stage: str = "",
) -> dict[str, dict[str, core.Scores]]:
    """``{signal: {product id: node scores}}`` with each product's categories hidden."""
    out: dict[str, dict[str, core.Scores]] = {s: {} for s in core.SIGNALS}
    for n, p in enumerate(items, start=1):
        vectors = {}
        if p.id in title_vectors:
            vectors[TITLE_VECTOR] = title_vectors[p.id]
        if p.id in clip_vectors:
            vectors[CLIP_ITA_VECTOR] = clip_vectors[p.id]
        evidence = Evidence(p.title, p.title, None, vectors, (p.id,))
        for signal, result in categorizer.signals(evidence, neighbours=neighbours, voters=voters).items():
            out[signal][p.id] = result.scores
        if n % 20 == 0 or n == len(items):
            progress(stage, n, len(items))
    return {s: preds for s, preds in out.items() if any(preds.values())}


def hide_categories(product: Product) -> Product:
    return Product.from_mapping({**product.to_json(), "categories": []})


def evaluate_categorize(task: TaskInput, config: CategorizeConfig = CategorizeConfig()) -> dict[str, Any]:
    products, settings, progress = task.products, task.settings, task.progress
    meta = task.dataset()
    splits = split_products(products, config.split)
    train_nodes = known_nodes(splits["train"])
    by_id = {p.id: p for p in products}
    with task.index_builder(config.work_dir, config.rebuild) as builder:
        meta.update({"hash": f"sha256:{builder.dataset_hash}", "products": len(products),
                     "splits": {k: len(v) for k, v in splits.items()}, "category_nodes": len(known_nodes(products))})
        text = load_text_model(settings, config.text_model)
        index = builder.with_encoders("categorize-text", text_encoder=text)
        store = index.store
        clip = None
        notes: list[str] = []
        for model_dir in config.trained:
            clip = _clip_ita(settings, model_dir, config.split)
            break
        if len(config.trained) > 1:
            notes.append("only the first --trained model is used as the clip_ita signal")
        labels = sorted(train_nodes if config.label_space == "train" else known_nodes(products))
        categorizer = Categorizer(store, vector_fields=list(index.schema.vectors), text_encoder=text,
                                  category_encoder=clip, labels=labels)
        voters = [Filter("id", "in", tuple(p.id for p in splits["train"]))]
        evaluated = [*splits["val"], *splits["test"]]
        title_vectors: dict[str, np.ndarray] = {}
        if isinstance(store, VectorReader):
            title_vectors = store.vectors([p.id for p in evaluated], TITLE_VECTOR)
        missing = [p for p in evaluated if p.id not in title_vectors and p.title]
        if missing:
            title_vectors.update(zip([p.id for p in missing], text.encode_documents([p.title for p in missing]),
                                     strict=True))
        clip_vectors: dict[str, np.ndarray] = {}
        if clip is not None:
            hidden = [hide_categories(p) for p in evaluated]  # the head never sees a category
            vecs = clip.encode_products(hidden, [None] * len(hidden))
            clip_vectors = dict(zip([p.id for p in evaluated], vecs, strict=True))
        val = predict_all(categorizer, splits["val"], voters, config.neighbours, title_vectors, clip_vectors,
                          progress, "categorize val products")
        test = predict_all(categorizer, splits["test"], voters, config.neighbours, title_vectors, clip_vectors,
                           progress, "categorize test products")
        rows: dict[str, Any] = {}
        for signal, preds in test.items():
            rows[signal] = measure(preds, by_id, config.levels, train_nodes, config.path_min_score)
        default_w = {s: DEFAULT_WEIGHTS.get(s, 1.0) for s in test}
        equal_w = dict.fromkeys(test, 1.0)
        progress("tune signal weights on val", 0, None)
        tuning = tune_weights(val, by_id, config.levels)
        for name, weights in (("fused (equal weights)", equal_w), ("fused (default weights)", default_w),
                              ("fused (tuned on val)", tuning["chosen"])):
            fused = {p.id: core.fuse({s: test[s].get(p.id, {}) for s in test}, weights) for p in splits["test"]}
            rows[name] = measure(fused, by_id, config.levels, train_nodes, config.path_min_score)
            rows[name]["weights"] = weights
        return {
            "task": "categorize",
            "dataset": meta,
            "config": config.to_json(),
            "label_space": {"kind": config.label_space, "labels": len(labels), "meaning": LABEL_SPACES[config.label_space]},
            "signals": {s: core.SIGNALS[s] for s in test},
            "unavailable": {s: why for s, why in categorizer.available().items() if why},
            "tuning": tuning,
            "results": rows,
            "index": index.to_json(),
            "notes": notes,
            "seconds": task.seconds(),
        }


def markdown(report: Mapping[str, Any], command: str = "") -> str:
    levels = report["config"]["levels"]
    ds = report["dataset"]
    lines = md_title(f"Categorization on {ds.get('source', '?')}", command)
    lines += [(f"{ds['products']} products, split {ds['splits']}, label space {report['label_space']['kind']} "
               f"({report['label_space']['labels']} nodes), {report['config']['neighbours']} neighbours, "
               f"{report['seconds']} s. Percent; test products."), ""]
    head = ["signal"] + [f"L{lv} top-1 / top-5" for lv in levels] + ["hP / hR / hF", "ECE L1 / L2"]
    rows = []
    for name, row in report["results"].items():
        h = row["hierarchical"]
        rows.append([name, *(f"{100 * e['top1']:.1f} / {100 * e['top5']:.1f}" if e else "-"
                             for e in _level_entries(row, levels)),
                     f"{100 * h['precision']:.1f} / {100 * h['recall']:.1f} / {100 * h['f1']:.1f}",
                     " / ".join(f"{100 * e['ece']:.1f}" if e else "-" for e in _level_entries(row, (1, 2)))])
    lines += md_table(head, rows, len(head))
    lines += ["", "Seen / unseen categories, top-1 (n):", ""]
    rows = [[name, *(f"{_group(e['seen'])} / {_group(e['unseen'])}" if e else "-" for e in _level_entries(row, levels))]
            for name, row in report["results"].items()]
    lines += md_table(["signal"] + [f"L{lv} seen / unseen" for lv in levels], rows, len(levels) + 1)
    tuning = report["tuning"]
    lines += ["", (f"Tuned weights: {tuning.get('chosen')} (val score {tuning.get('score', 0):.3f}, "
                   f"{tuning.get('tried')} combinations).")]
    for s, why in report.get("unavailable", {}).items():
        lines.append(f"- {s}: not measured ({why})")
    return "\n".join(lines) + "\n"


def _level_entries(row: Mapping[str, Any], levels: Sequence[int]) -> list[Mapping[str, Any] | None]:
    """A result row's entry per level (keys are ints in memory, strings once read from JSON)."""
    return [row["levels"].get(lv) or row["levels"].get(str(lv)) for lv in levels]


def _group(g: Mapping[str, Any]) -> str:
    return f"{100 * g['top1']:.1f} ({g['n']})" if g["top1"] is not None else f"- ({g['n']})"


def write(report: Mapping[str, Any], out_dir: Path, command: str = "") -> dict[str, str]:
    return write_task(report, out_dir, "categorize", markdown, command)


ProgressFn = Callable[[str, int, int | None], None]
