"""Before and after: does a trained model beat what the index serves today?

Both sides are measured on the calibration's held-out slices (``ctir_es.calibrate``), which
training never saw (``learn`` trains on the rest):

- **Category queries**, P@10 and R@100 on the reporting slice, as indexed (``visible``) and
  with the slice's categories removed (``hidden``: a scratch copy, what a shop with missing
  category data serves), each split into categories some training product is filed under
  (``seen``) and the others (``unseen``). Systems: what is served now (``served``: the stored
  calibration, else the fixed default), the same sources recalibrated (``before``), the
  sources plus the trained model's vectors, calibrated (``after``: as serving will fuse them,
  each query with its group's weights, seen or unseen, see ``calibrate.choose``;
  ``after_single``: one set of weights for every query), and BM25 alone.
- **Categorize**, top-1 accuracy per level on up to ``CATEGORIZE_PRODUCTS`` products of the
  reporting slice: each signal alone, the fused signals as served now, and with the model's
  signal, weights tuned on the tuning slice.

The model's source is ranked in NumPy over the slice's products (exact cosine, like the
store's exact kNN restricted to the slice by an id filter), so nothing is written before the
model is known to win.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..calibrate import Measured, Pick, QuerySlice, picked_run, source_run
from ..categorize import core
from ..categorize.engine import DEFAULT_WEIGHTS, Categorizer, Evidence
from ..evaluation.categorize import headline, level_truth
from ..evaluation.categorize import measure as categorize_measure
from ..metrics import per_query
from ..products import CategoryPath, Product
from ..schema import Hit
from ..store.base import VectorReader
from ..vocabulary import CANDIDATE_DEPTH, CLIP_ITA_VECTOR, IMAGE_VECTOR, TITLE_VECTOR

QUERY_METRICS = ("precision@10", "recall@100")
LEVELS = (1, 2, 3)
CATEGORIZE_PRODUCTS = 300  # per slice: enough for a per-level accuracy within a few points
SIGNAL_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
Runs = dict[str, dict[str, float]]


def model_source(vectors: Mapping[str, np.ndarray], queries: Mapping[str, np.ndarray]
                 ) -> Callable[[QuerySlice, str], list[Hit]]:
    """``rank(slice, qid)`` for ``Measured.add_source``: the slice's products by cosine between
    their model vector and the query's category vector, ``CANDIDATE_DEPTH`` deep."""
    matrices: dict[int, tuple[list[str], np.ndarray]] = {}

    def rank(piece: QuerySlice, qid: str) -> list[Hit]:
        if id(piece) not in matrices:
            ids = [i for i in piece.ids if i in vectors]
            matrices[id(piece)] = (ids, np.stack([vectors[i] for i in ids]) if ids else np.zeros((0, 1)))
        ids, matrix = matrices[id(piece)]
        if not ids:
            return []
        scores = matrix @ queries[qid]
        top = np.argsort(-scores, kind="stable")[:CANDIDATE_DEPTH]
        return [Hit(ids[j], float(scores[j])) for j in top]

    return rank


def _groups(piece: QuerySlice, seen: set[CategoryPath]) -> dict[str, set[str]]:
    return {"all": set(piece.nodes), "seen": {q for q, n in piece.nodes.items() if n in seen},
            "unseen": {q for q, n in piece.nodes.items() if n not in seen}}


def query_figures(piece: QuerySlice, run: Runs, seen: set[CategoryPath]) -> dict[str, dict[str, float | int]]:
    """``{group: {metric: mean, "queries": n}}`` for all, seen and unseen category queries."""
    scores = per_query(piece.qrels, run, QUERY_METRICS)
    out: dict[str, dict[str, float | int]] = {}
    for group, qids in _groups(piece, seen).items():
        entry: dict[str, float | int] = {"queries": len(qids)}
        for metric in QUERY_METRICS:
            values = [v for q, v in scores[metric].items() if q in qids]
            if values:  # a group without queries (every category seen) has no figure: JSON has no NaN
                entry[metric] = float(np.mean(values))
        out[group] = entry
    return out


@dataclass
class QueryComparison:
    """``figures[view][system][group][metric]``; view is ``visible`` or ``hidden``."""

    figures: dict[str, dict[str, dict[str, dict[str, float | int]]]] = field(default_factory=dict)

    def p10(self, view: str, system: str, group: str = "all") -> float:
        value = self.figures.get(view, {}).get(system, {}).get(group, {}).get("precision@10")
        return float("nan") if value is None else float(value)

    def to_json(self) -> dict[str, Any]:
        return self.figures


def before_runs(measured: Measured, served: Pick, recalibrated: Pick) -> dict[str, dict[str, Runs]]:
    """The reporting slices ranked by today's sources (before the model's source replaces or
    joins them), each query fused as ``served`` / ``recalibrated`` pick for its node (see
    ``calibrate.served_pick``): ``{view: {system: run}}``."""
    views = {"visible": measured.report, **({"hidden": measured.hidden[1]} if measured.hidden else {})}
    out: dict[str, dict[str, Runs]] = {}
    for view, piece in views.items():
        out[view] = {"served": picked_run(piece, served),
                     "before": picked_run(piece, recalibrated),
                     "bm25": source_run(piece, "bm25")}
    return out


def compare_queries(measured: Measured, before: Mapping[str, Mapping[str, Runs]], after: Pick,
                    seen: set[CategoryPath], after_single: Pick | None = None) -> QueryComparison:
    """``after``: each query fused as serving will once the model is kept (its group's weights);
    ``after_single``: the calibration's single weights, for the record."""
    views = {"visible": measured.report, **({"hidden": measured.hidden[1]} if measured.hidden else {})}
    result = QueryComparison()
    for view, piece in views.items():
        runs = {**before[view], "after": picked_run(piece, after)}
        if after_single is not None:
            runs["after_single"] = picked_run(piece, after_single)
        result.figures[view] = {name: query_figures(piece, run, seen) for name, run in runs.items()}
    return result


# ---------------------------------------------------------------- categorize


def _sample(products: Sequence[Product], limit: int) -> list[Product]:
    with_categories = [p for p in products if p.categories]
    return with_categories[:limit]  # the slice is already a hash sample of the index


def evidence_of(store: Any, products: Sequence[Product], fields: Sequence[str]) -> dict[str, Evidence]:
    """Each product's own stored vectors as categorize evidence (never its categories)."""
    ids = [p.id for p in products]
    vectors: dict[str, dict[str, np.ndarray]] = {i: {} for i in ids}
    if isinstance(store, VectorReader):
        for name in fields:
            for pid, vec in store.vectors(ids, name).items():
                vectors[pid][name] = vec
    return {p.id: Evidence(p.title, p.title, p, vectors[p.id], (p.id,)) for p in products}


def signal_scores(categorizer: Categorizer, evidence: Mapping[str, Evidence], only: Sequence[str] | None = None
                  ) -> dict[str, dict[str, core.Scores]]:
    """``{signal: {product id: node scores}}`` for every signal that can run."""
    out: dict[str, dict[str, core.Scores]] = {}
    for pid, ev in evidence.items():
        for name, result in categorizer.signals(ev, only=only).items():
            if result.scores:
                out.setdefault(name, {})[pid] = result.scores
    return out


def accuracy(signals: Mapping[str, Mapping[str, core.Scores]], weights: Mapping[str, float] | core.SignalWeights,
             products: Mapping[str, Product], seen: set[CategoryPath]) -> dict[str, Any]:
    used = core.SignalWeights.of(weights)
    names = [n for n in signals if any(ws.get(n, 0.0) > 0 for ws in (used.default, *used.levels.values()))]
    fused = {pid: core.fuse({n: signals[n].get(pid, {}) for n in names}, used) for pid in products}
    return categorize_measure(fused, products, LEVELS, seen)


def _ascend(signals: Mapping[str, Mapping[str, core.Scores]], products: Mapping[str, Product],
            start: Mapping[str, float], score_of: Callable[[Mapping[str, Any]], float]) -> tuple[dict[str, float], float]:
    """Coordinate ascent over ``SIGNAL_GRID`` per signal from ``start``; ties keep the earlier
    weights."""
    names = sorted(signals)
    best = {n: float(start.get(n, 1.0)) for n in names}
    best_score = score_of(accuracy(signals, best, products, set()))
    for _round in range(3):
        improved = False
        for name in names:
            for g in SIGNAL_GRID:
                trial = {**best, name: g}
                if not any(trial.values()):
                    continue
                score = score_of(accuracy(signals, trial, products, set()))
                if score > best_score + 1e-12:
                    best, best_score, improved = trial, score, True
        if not improved:
            break
    return best, best_score


def _correct_at(signals: Mapping[str, Mapping[str, core.Scores]], weights: Mapping[str, float],
                products: Mapping[str, Product], level: int) -> dict[str, bool]:
    """Per product with a category at ``level``: is the fused top-1 node of that level right?"""
    names = [n for n in signals if weights.get(n, 0.0) > 0]
    out: dict[str, bool] = {}
    for pid, product in products.items():
        truth = level_truth(product, level)
        if truth:
            fused = core.fuse({n: signals[n].get(pid, {}) for n in names}, weights)
            top = core.ranked_at(fused, level, 1)
            out[pid] = bool(top) and top[0] in truth
    return out


# Standard deviations of the sign test a fusion must win by. At one, over five learn seeds on
# flipkart-1050 (``benchmarks/learn.py --part E``), a fusion picked on the tuning slice lost to
# the best single signal on the reporting slice at level 1 or 3 in 2 of 15 level choices, by up
# to 3.3 points; two keep the fusions that win clearly (level 2, +8 points on average).
CLEAR_MARGIN_SIGMAS = 2.0


def clearly_better(challenger: Mapping[str, bool], incumbent: Mapping[str, bool]) -> bool:
    """Does ``challenger`` (per product: right or not) beat ``incumbent`` by a sign-test margin:
    the products only it gets right minus the reverse at least ``CLEAR_MARGIN_SIGMAS`` times
    the square root of their sum?"""
    wins = sum(1 for pid, ok in challenger.items() if ok and not incumbent.get(pid, False))
    losses = sum(1 for pid, ok in challenger.items() if not ok and incumbent.get(pid, False))
    return wins - losses >= max(1.0, CLEAR_MARGIN_SIGMAS * (wins + losses) ** 0.5)


def tune_signal_weights(signals: Mapping[str, Mapping[str, core.Scores]], products: Mapping[str, Product],
                        start: Mapping[str, float], served: Mapping[str, float] | None = None) -> core.SignalWeights:
    """One set of weights for mean top-1 accuracy over levels 1-3 (coordinate ascent from
    ``start``), then per level the best single signal on these products, unless a fusion (the
    shared set, the level's own ascent from it, or today's ``served`` weights) beats it by a
    margin: the products it gets right and the signal wrong, minus the reverse, at least twice
    the square root of their sum (a sign test at two standard deviations). The held-out slices hold
    a few hundred products, where a fusion that wins by a product or two on the tuning slice
    as often loses on the reporting slice; a fusion that wins clearly there (level 2 on
    flipkart-1050) keeps winning."""
    shared, _ = _ascend(signals, products, start, lambda result: headline(result, LEVELS))
    alone = [{n: (1.0 if n == name else 0.0) for n in signals} for name in sorted(signals)]
    levels: dict[int, dict[str, float]] = {}
    for level in LEVELS:
        def top1(result: Mapping[str, Any], level: int = level) -> float:
            entry = result["levels"].get(level)
            return float(entry["top1"]) if entry else 0.0

        correct = [(_correct_at(signals, ws, products, level), ws) for ws in alone]
        if not correct or not correct[0][0]:
            continue  # no product has this level: nothing to choose on
        single_right, single = max(correct, key=lambda c: sum(c[0].values()))  # first wins ties
        tuned, _ = _ascend(signals, products, shared, top1)
        fusions = [shared, tuned] + ([{n: float(served.get(n, 0.0)) for n in signals}] if served else [])
        scored = [(_correct_at(signals, ws, products, level), ws) for ws in fusions if any(ws.values())]
        fused_right, fused = max(scored, key=lambda c: sum(c[0].values()))  # shared first on ties
        chosen = fused if clearly_better(fused_right, single_right) else single
        if chosen is not shared:
            levels[level] = chosen
    return core.SignalWeights(shared, levels)


@dataclass
class CategorizeComparison:
    per_level: dict[str, dict[str, float]]  # system -> level -> top-1
    weights_before: core.SignalWeights
    weights_after: core.SignalWeights
    products: int

    def to_json(self) -> dict[str, Any]:
        return {"top1_per_level": self.per_level, "weights_before": self.weights_before.to_json(),
                "weights_after": self.weights_after.to_json(), "products": self.products}


def compare_categorize(
    before: Categorizer, after: Categorizer, store: Any, tune: Sequence[Product], report: Sequence[Product],
    model_vectors: Mapping[str, np.ndarray], served_weights: core.SignalWeights, seen: set[CategoryPath],
    limit: int = CATEGORIZE_PRODUCTS,
) -> CategorizeComparison:
    fields = [f for f in (TITLE_VECTOR, IMAGE_VECTOR, CLIP_ITA_VECTOR) if f in before.vector_fields]
    slices = {"tune": _sample(tune, limit), "report": _sample(report, limit)}
    scores: dict[str, tuple[dict[str, dict[str, core.Scores]], dict[str, dict[str, core.Scores]]]] = {}
    for name, products in slices.items():
        evidence = evidence_of(store, products, fields)
        old = signal_scores(before, evidence)
        for pid, ev in evidence.items():  # the new model's own product vector
            if pid in model_vectors:
                ev.vectors = {**ev.vectors, CLIP_ITA_VECTOR: model_vectors[pid]}
        new = {**{k: v for k, v in old.items() if k != "clip_ita"},
               **signal_scores(after, evidence, only=["clip_ita"])}
        scores[name] = (old, new)
    by_id = {name: {p.id: p for p in products} for name, products in slices.items()}
    served = core.SignalWeights.of(served_weights, DEFAULT_WEIGHTS)
    tuned = tune_signal_weights(scores["tune"][1], by_id["tune"], {**served.default, "clip_ita": 1.0},
                                {**served.default, "clip_ita": 0.0})
    rep_old, rep_new = scores["report"]
    per_level: dict[str, dict[str, float]] = {}

    def levels(result: Mapping[str, Any]) -> dict[str, float]:
        return {str(lv): float(e["top1"]) for lv, e in result["levels"].items()}

    per_level["served"] = levels(accuracy(rep_old, served, by_id["report"], seen))
    per_level["after"] = levels(accuracy(rep_new, tuned, by_id["report"], seen))
    for signal in rep_new:
        per_level[f"{signal} alone"] = levels(accuracy(rep_new, {signal: 1.0}, by_id["report"], seen))
    return CategorizeComparison(per_level, served, tuned, len(slices["report"]))
