"""Measure and pick the serving fusion of category queries on the index's own products.

The protocol (the evaluation's, over a held-out slice of the index itself):

- **Slices.** Every product id goes, by ``ctir_es.protocol.split_of`` (a sha256 of
  ``seed:id``), to the *tuning* slice, the *reporting* slice or neither (``held_out`` of the
  catalogue, capped at ``max_products``, half each). The two slices never share a product, so
  the weights are picked on one and the figures reported on the other.
- **Queries.** Per slice: every category node (any level) that a product of the slice is filed
  under, as a shop writes it (``"A > B > C"``); a product is relevant when one of its paths
  passes through the node (subtree relevance); only the slice's products are ranked (an id
  filter), each source ``CANDIDATE_DEPTH`` deep.
- **Sources.** Exactly what serving runs for a category query (``Search.plan``):
  BM25 with the category field weights (serving reads the category field; that is the point
  of measuring what is served) and the index's vector sources (text, image, clip_ita).
- **Search.** RRF and linear fusion, each with per-source weights from ``WEIGHT_GRID``. Both
  fusions are unchanged by scaling every weight, so only weight vectors whose largest weight
  is 1 are tried: exhaustively up to ``MAX_EXHAUSTIVE`` candidates (three sources: 127 per
  method), else coordinate ascent over the grid from the fixed default. The fixed default
  (RRF, ``SOURCE_WEIGHTS``) is always a candidate.
- **Selection.** Mean P@10 on the tuning slice: the figure the gap to the best system is
  stated in, and what a category landing page shows. Ties (frequent: many deep nodes hold one
  product, where P@10 cannot see the order inside the top 10) go to the paper's mAP@10
  (AP@10 / min(10, R)), then to the fixed default.
- **Hidden categories** (``hide_categories``): a scratch copy of the index in which the
  held-out products have no category (vectors copied, never re-encoded: no vector reads
  categories), queried with the true categories of the reporting slice. It measures what
  category queries find when the category field is missing: each source, the fixed default,
  the calibration, and weights tuned on the hidden tuning slice.
- **What is tuned for** (``tune_for``): the held-out products as indexed (``visible``, the
  default), with their categories hidden (``hidden``), or the mean of both (``both``: a
  catalogue where some products lack categories). The reporting slices are never tuned on.
- **Groups** (an index with a trained CLIP-ITA source and the model's seen categories, ``seen``
  of ``choose``): the same search again on the tuning queries of each group
  (``ranking.calibration.GROUPS``: nodes the model trained on, the rest, and the seen roots), when
  the group has at least ``MIN_GROUP_QUERIES`` of them or, with fewer, when its own weights beat
  the ones it would be served otherwise by a sign-test margin. Unseen-group ties go to the larger BM25 share of the
  weights (the guard: the trained head is unreliable there, so a tie never moves weight away
  from BM25). The calibration's figures (``calibrated``) are then the grouped fusion, as served;
  ``calibrated_single`` the single weights.
"""

from __future__ import annotations

import itertools
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, StoreError
from .filters import Filter
from .metrics import evaluate, per_query
from .products import CategoryPath, Product, format_category_path, path_prefixes
from .protocol import SplitSpec, split_of
from .ranking.calibration import (
    ALL_QUERIES,
    FALLBACK,
    GROUPS,
    MIN_GROUP_QUERIES,
    Calibration,
    encoder_ids,
    query_group,
)
from .ranking.fusion import fuse
from .ranking.fusion_matrix import RunMatrix
from .schema import Document, Hit
from .store.base import IdLister, Store, VectorReader
from .vocabulary import (
    CANDIDATE_DEPTH,
    CLIP_ITA_SOURCE,
    DEFAULT_FUSION,
    FUSION_METHODS,
    LEXICAL_SOURCE,
)

if TYPE_CHECKING:
    from .search import Search

WEIGHT_GRID: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
MAX_EXHAUSTIVE = 300  # weight vectors per method tried exhaustively; beyond, coordinate ascent
SELECT_BY = "precision@10"
TIE_BREAK = "map_min@10"
# recall@100: how many of a category's products a query finds at all (the hidden-category case)
REPORTED = (SELECT_BY, TIE_BREAK, "ndcg@10", "recall@100")
LABELS = {"precision@10": "P@10", "map_min@10": "mAP@10", "ndcg@10": "nDCG@10", "recall@100": "R@100"}
CHUNK = 500  # products per get / upsert round trip
TUNE_FOR: dict[str, str] = {
    "visible": "the held-out products as indexed, with their categories (what the catalogue serves today)",
    "hidden": "the held-out products with their categories removed (a catalogue whose category data is missing)",
    "both": "the mean of the two (a catalogue where some products lack categories)",
}

Runs = dict[str, list[Hit]]  # one category query: source -> ranked hits
Seen = set[CategoryPath] | frozenset[CategoryPath]
# the fusion one category query is served with, by its node: (method, weights)
Pick = Callable[[CategoryPath], tuple[str, Mapping[str, float]]]


@dataclass(frozen=True)
class CalibrationConfig:
    """``held_out``: fraction of the catalogue held out (half tunes, half reports), capped at
    ``max_products`` products; ``max_level``: deepest category level queried (None: all);
    ``hide_categories``: also measure products without categories (implied by ``tune_for``
    ``hidden`` or ``both``)."""

    seed: int = 13
    held_out: float = 0.4
    max_products: int = 2000
    max_level: int | None = None
    hide_categories: bool = False
    tune_for: str = "visible"  # the slice(s) the weights are picked on: see TUNE_FOR

    def __post_init__(self) -> None:
        if self.tune_for not in TUNE_FOR:
            raise ConfigError(f"unknown tune_for {self.tune_for!r}; supported: {', '.join(TUNE_FOR)}")
        if not 0 < self.held_out <= 1:
            raise ConfigError(f"held_out must be in (0, 1], got {self.held_out}")
        if self.max_products < 2:
            raise ConfigError("max_products must be at least 2 (one to tune, one to report)")
        if self.max_level is not None and self.max_level < 1:
            raise ConfigError("max_level must be at least 1")


@dataclass
class QuerySlice:
    """The category queries of one slice: the query nodes, relevance, and each query's runs."""

    name: str
    products: list[Product]
    nodes: dict[str, CategoryPath]  # qid (the path text) -> node
    qrels: dict[str, dict[str, int]]
    runs: dict[str, Runs] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.products]

    def without_runs(self) -> QuerySlice:
        return QuerySlice(self.name, self.products, self.nodes, self.qrels)

    def only(self, qids: set[str]) -> QuerySlice:
        """The queries in ``qids`` (with their runs): one group's share of the slice."""
        return QuerySlice(self.name, self.products, {q: n for q, n in self.nodes.items() if q in qids},
                          {q: r for q, r in self.qrels.items() if q in qids},
                          {q: r for q, r in self.runs.items() if q in qids})

    def sizes(self) -> dict[str, int]:
        return {"products": len(self.products), "queries": len(self.nodes)}


@dataclass(frozen=True)
class Candidate:
    method: str
    weights: tuple[tuple[str, float], ...]

    @property
    def weight_map(self) -> dict[str, float]:
        return dict(self.weights)

    def label(self) -> str:
        return f"{self.method} " + " ".join(f"{n}={w:g}" for n, w in self.weights)


@dataclass
class CalibrationReport:
    """What ``calibrate`` measured: the stored record plus the tuning trace and timings."""

    calibration: Calibration
    tried: list[dict[str, Any]]  # the best candidates on the tuning slice, best first
    per_level: dict[str, dict[str, float]]  # system -> level -> P@10 (reporting slice)
    seconds: float
    stored: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"calibration": self.calibration.to_json(), "tried": self.tried, "per_level": self.per_level,
                "seconds": round(self.seconds, 2), "stored": self.stored}


# ---------------------------------------------------------------- slices and queries


def slice_spec(products: int, config: CalibrationConfig) -> SplitSpec:
    """The hash split of an index of ``products``: ``val`` is the tuning slice, ``test`` the
    reporting slice, ``train`` the rest (what ``learn`` trains on)."""
    fraction = min(config.held_out, config.max_products / max(products, 1))
    return SplitSpec(seed=config.seed, train=1 - fraction, val=fraction / 2, test=fraction / 2)


def held_out_slices(store: Store, config: CalibrationConfig) -> tuple[list[Product], list[Product], int]:
    """The tuning and reporting slices (disjoint, by a hash of ``seed:id``) and the index size."""
    if not isinstance(store, IdLister):
        raise StoreError(f"{type(store).__name__} cannot list its products, so it cannot be calibrated")
    ids = store.ids()
    if not ids:
        raise StoreError("the index is empty: ingest a catalogue before calibrating it")
    spec = slice_spec(len(ids), config)
    picked = {"val": [], "test": []}  # type: dict[str, list[str]]
    for pid in ids:
        part = split_of(pid, spec)
        if part in picked:
            picked[part].append(pid)
    tune, report = (_products(store, picked[name]) for name in ("val", "test"))
    return tune, report, len(ids)


def _products(store: Store, ids: Sequence[str]) -> list[Product]:
    out: list[Product] = []
    for start in range(0, len(ids), CHUNK):
        stored = store.get(list(ids[start : start + CHUNK]))
        out.extend(stored[i].product for i in ids[start : start + CHUNK] if i in stored)
    return out


def category_queries(name: str, products: Sequence[Product], max_level: int | None = None) -> QuerySlice:
    """Every node a product of the slice is filed under (to ``max_level``), judged by subtree."""
    nodes: dict[str, CategoryPath] = {}
    qrels: dict[str, dict[str, int]] = {}
    for p in products:
        for path in p.categories:
            for node in path_prefixes(path):
                if max_level is not None and len(node) > max_level:
                    continue
                qid = format_category_path(node)
                nodes.setdefault(qid, node)
                qrels.setdefault(qid, {})[p.id] = 1
    return QuerySlice(name, list(products), dict(sorted(nodes.items())), qrels)


def collect_runs(search: Search, store: Store, piece: QuerySlice) -> tuple[list[str], dict[str, float]]:
    """Rank the slice's products for each of its queries with every serving source (one store
    round trip per query); returns the sources and their fixed default weights."""
    only = [Filter("id", "in", tuple(piece.ids))]
    sources: list[str] = []
    defaults: dict[str, float] = {}
    for qid in piece.nodes:
        plan = search.plan(qid, mode="category")
        sources, defaults = plan.sources, plan.weights
        found = store.search(plan.lexical, plan.vectors, CANDIDATE_DEPTH, only)
        piece.runs[qid] = {s: list(found.get(s, [])) for s in sources}
    return sources, defaults


# ---------------------------------------------------------------- scoring


def _as_run(order: Sequence[str]) -> dict[str, float]:
    """Rank-derived scores (n ... 1), so the metrics see exactly the served order."""
    n = len(order)
    return {pid: float(n - i) for i, pid in enumerate(order)}


def fused_run(piece: QuerySlice, method: str, weights: Mapping[str, float]) -> dict[str, dict[str, float]]:
    return {qid: _as_run([h.id for h in fuse(method, runs, weights)]) for qid, runs in piece.runs.items()}


def picked_run(piece: QuerySlice, pick: Pick) -> dict[str, dict[str, float]]:
    """Each query fused with the fusion ``pick`` gives its node (e.g. its group's weights)."""
    out: dict[str, dict[str, float]] = {}
    for qid, runs in piece.runs.items():
        method, weights = pick(piece.nodes[qid])
        out[qid] = _as_run([h.id for h in fuse(method, runs, weights)])
    return out


def served_pick(calibration: Calibration | None, sources: Sequence[str], defaults: Mapping[str, float],
                seen: Seen | None) -> Pick:
    """What ``Search`` serves a category query over ``sources``: the calibration's weights for the
    query's group (``seen`` unknown: the single weights), or the fixed default fusion when there
    is no calibration or it was measured with other sources."""
    names = list(sources)
    fixed = (DEFAULT_FUSION, {s: float(defaults[s]) for s in names})

    def pick(node: CategoryPath) -> tuple[str, Mapping[str, float]]:
        chosen = calibration.fusion_for(names, query_group(node, seen)) if calibration is not None else None
        return (chosen[0], chosen[1]) if chosen is not None else fixed

    return pick


def source_run(piece: QuerySlice, source: str) -> dict[str, dict[str, float]]:
    return {qid: _as_run(list(dict.fromkeys(h.id for h in runs.get(source, [])))) for qid, runs in piece.runs.items()}


def ideal_run(piece: QuerySlice) -> dict[str, dict[str, float]]:
    """Every relevant product first: the ceiling of each metric (P@10 < 1 where R < 10)."""
    return {qid: _as_run(sorted(rel)) for qid, rel in piece.qrels.items()}


def figures(piece: QuerySlice, run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return evaluate(piece.qrels, run, REPORTED)


def per_level(piece: QuerySlice, run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    scores = per_query(piece.qrels, run, [SELECT_BY])[SELECT_BY]
    levels: dict[int, list[float]] = {}
    for qid, value in scores.items():
        levels.setdefault(len(piece.nodes[qid]), []).append(value)
    return {str(level): sum(v) / len(v) for level, v in sorted(levels.items())}


# ---------------------------------------------------------------- the search


def weight_vectors(sources: Sequence[str]) -> list[tuple[float, ...]]:
    """Every grid weight vector whose largest weight is 1 (both fusions are scale-invariant)."""
    return [w for w in itertools.product(WEIGHT_GRID, repeat=len(sources)) if max(w) == 1.0]


def bm25_share(c: Candidate) -> float:
    """The BM25 weight's share of all weights (scale-free, like the fusions): the guard's key."""
    w = c.weight_map
    total = sum(w.values())
    return w.get(LEXICAL_SOURCE, 0.0) / total if total > 0 else 0.0


def search_fusion(
    pieces: QuerySlice | Sequence[QuerySlice], sources: Sequence[str], default: Candidate,
    prefer: Callable[[Candidate], float] | None = None,
) -> tuple[Candidate, list[tuple[Candidate, dict[str, float]]], str]:
    """The best candidate on the tuning slice(s) (by ``SELECT_BY``, then ``TIE_BREAK``, then the
    larger ``prefer`` when given, then the default; with several slices, the mean of their
    means), every candidate tried with its figures, and a sentence saying how the search went."""
    slices = [pieces] if isinstance(pieces, QuerySlice) else list(pieces)
    scored: dict[Candidate, dict[str, float]] = {}
    # every candidate fuses the same runs: laid out once, each candidate is one product and sort
    matrices = [RunMatrix(p.runs, p.qrels, sources) for p in slices]

    def score(c: Candidate) -> tuple[float, float, float, bool]:
        if c not in scored:
            weights = [c.weight_map[s] for s in sources]
            each = [m.scores(c.method, weights) for m in matrices]
            scored[c] = {SELECT_BY: sum(e[0] for e in each) / len(each), TIE_BREAK: sum(e[1] for e in each) / len(each)}
        f = scored[c]
        guard = round(prefer(c), 12) if prefer is not None else 0.0
        return (round(f[SELECT_BY], 12), round(f[TIE_BREAK], 12), guard, c == default)

    def make(method: str, ws: Sequence[float]) -> Candidate:
        return Candidate(method, tuple(zip(sources, (float(w) for w in ws), strict=True)))

    vectors = weight_vectors(sources)
    score(default)
    if len(vectors) <= MAX_EXHAUSTIVE:
        for method in FUSION_METHODS:
            for ws in vectors:
                score(make(method, ws))
        how = (f"exhaustive grid: {', '.join(FUSION_METHODS)} x {len(vectors)} weight vectors over "
               f"{'/'.join(sources)} from {{{', '.join(f'{g:g}' for g in WEIGHT_GRID)}}} with the largest weight 1")
    else:
        for method in FUSION_METHODS:
            best = Candidate(method, default.weights)
            for _round in range(5):  # coordinate ascent: one weight at a time over the grid
                improved = False
                for i in range(len(sources)):
                    for g in WEIGHT_GRID:
                        trial = [w for _, w in best.weights]
                        trial[i] = g
                        if max(trial) <= 0:
                            continue
                        c = make(method, trial)
                        if score(c) > score(best):
                            best, improved = c, True
                if not improved:
                    break
        how = (f"coordinate ascent per fusion ({', '.join(FUSION_METHODS)}) over {'/'.join(sources)}, one weight "
               f"at a time over {{{', '.join(f'{g:g}' for g in WEIGHT_GRID)}}}, from the fixed default")
    ranked = sorted(scored, key=lambda c: score(c), reverse=True)
    how += f"; {len(scored)} candidates scored on the tuning slice"
    return ranked[0], [(c, scored[c]) for c in ranked], how


# ---------------------------------------------------------------- the whole calibration


@dataclass
class Measured:
    """The held-out slices of one index ranked by every serving source: what the fusion search
    chooses from. ``hidden`` holds the same slices ranked with their categories removed."""

    config: CalibrationConfig
    tune: QuerySlice
    report: QuerySlice
    sources: list[str]
    defaults: dict[str, float]
    total: int
    hidden: tuple[QuerySlice, QuerySlice] | None = None

    def slices(self) -> list[QuerySlice]:
        return [self.tune, self.report, *(self.hidden or ())]

    def add_source(self, name: str, default_weight: float, rank: Callable[[QuerySlice, str], list[Hit]]) -> None:
        """Add one more source to every slice's runs: ``rank(slice, qid)`` ranks the slice's
        products for a query (e.g. a trained model's vectors, before they are in the index)."""
        for piece in self.slices():
            for qid in piece.nodes:
                piece.runs.setdefault(qid, {})[name] = rank(piece, qid)
        if name not in self.sources:
            self.sources.append(name)
        self.defaults[name] = default_weight


def measure(search: Search, config: CalibrationConfig | None = None,
            progress: Callable[[str], None] | None = None) -> Measured:
    """Rank the tuning and reporting slices (and, when asked, their hidden-category copies) with
    every source the index serves category queries with."""
    config = config or CalibrationConfig()
    say = progress or (lambda _msg: None)
    store = search.store
    tune_products, report_products, total = held_out_slices(store, config)
    tune = category_queries("tune", tune_products, config.max_level)
    report = category_queries("report", report_products, config.max_level)
    if not tune.nodes or not report.nodes:
        held = [sum(1 for p in ps if p.categories) for ps in (tune_products, report_products)]
        raise StoreError(
            f"too few categorised products to calibrate: of the held-out slices' {len(tune_products)} tuning and "
            f"{len(report_products)} reporting products, {held[0]} and {held[1]} have a category (ingest a "
            "catalogue with categories, raise --held-out, or try another --seed)"
        )
    say(f"ranking {len(tune.nodes)} tuning and {len(report.nodes)} reporting category queries")
    sources, defaults = collect_runs(search, store, tune)
    collect_runs(search, store, report)
    hidden_pieces = None
    if config.hide_categories or config.tune_for != "visible":
        say("copying the index with the held-out products' categories hidden")
        hidden_pieces = hidden_slices(search, tune, report)
    return Measured(config, tune, report, list(sources), dict(defaults), total, hidden_pieces)


def group_fusions(tuning: Sequence[QuerySlice], sources: Sequence[str], default: Candidate, seen: Seen,
                  single: Candidate | None = None,
                  ) -> tuple[dict[str, Candidate], dict[str, dict[str, Any]], dict[str, int]]:
    """Per query group (``GROUPS``), the best candidate on that group's share of the tuning
    slice(s); unseen ties go to the larger BM25 share. A group needs ``MIN_GROUP_QUERIES`` tuning
    queries; a refinement of another group (``FALLBACK``: the seen roots) with fewer gets its
    own weights only when they beat that group's clearly: a sign test over the relevant top-10
    results (``clearly_better_results``). Returns the candidates, their record entries and the
    tuning query count of every group that has queries."""
    chosen: dict[str, Candidate] = {}
    entries: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for group in GROUPS:
        qids = {q for q, node in tuning[0].nodes.items() if query_group(node, seen) == group}
        if not qids:
            continue
        counts[group] = len(qids)
        if len(qids) < MIN_GROUP_QUERIES and group not in FALLBACK:
            continue  # too few to tune on: the single weights serve this group
        pieces = [piece.only(qids) for piece in tuning]
        best, tried, _ = search_fusion(pieces, sources, default, prefer=bm25_share if group == "unseen" else None)
        entry: dict[str, Any] = {}
        if len(qids) < MIN_GROUP_QUERIES:
            fallback = chosen.get(FALLBACK[group], single)
            wins, losses = result_signs(pieces, best, fallback) if fallback is not None else (0, 0)
            if fallback is None or not clearly_better_results(wins, losses):
                continue  # too few to tune on unless the win is clear: the fallback serves this group
            entry["admitted"] = (f"{len(qids)} tuning queries, under {MIN_GROUP_QUERIES}: clearly better than "
                                 f"{fallback.label()} ({wins} relevant top-10 results gained, {losses} lost)")
        tuned = next(f for c, f in tried if c == best)
        chosen[group] = best
        entries[group] = {"method": best.method, "weights": best.weight_map, "tuning_queries": len(qids),
                          "tuning_" + SELECT_BY: tuned[SELECT_BY],
                          "ties": "larger BM25 share" if group == "unseen" else "mAP@10, then the default", **entry}
    return chosen, entries, counts


def result_signs(pieces: Sequence[QuerySlice], challenger: Candidate, incumbent: Candidate,
                 depth: int = 10) -> tuple[int, int]:
    """Relevant top-``depth`` results ``challenger`` gains over ``incumbent`` and loses, summed per
    query over ``pieces`` (a query with 2 more relevant results counts 2 gained)."""
    gained = lost = 0
    for piece in pieces:
        runs = [fused_run(piece, c.method, c.weight_map) for c in (challenger, incumbent)]
        for qid, rel in piece.qrels.items():
            a, b = (_relevant_on_top(run.get(qid, {}), rel, depth) for run in runs)
            gained += max(a - b, 0)
            lost += max(b - a, 0)
    return gained, lost


def _relevant_on_top(scores: Mapping[str, float], rel: Mapping[str, int], depth: int) -> int:
    top = sorted(scores, key=lambda pid: -scores[pid])[:depth]
    return sum(1 for pid in top if rel.get(pid, 0) > 0)


def clearly_better_results(gained: int, lost: int) -> bool:
    """A sign test at one standard deviation: gains minus losses at least the square root of
    their sum (and at least one). One, not the two of ``learn.compare.clearly_better``: a
    catalogue has a handful of roots (7 on flipkart-1050, 70 top-10 results), where two would
    take a gain of 4 results with no loss, and the refinement only ever moves roots between
    weights already tuned on the same slice."""
    return gained - lost >= max(1.0, (gained + lost) ** 0.5)


def group_pick(single: Candidate, groups: Mapping[str, Candidate], seen: Seen | None) -> Pick:
    """A query's group's candidate, else the single one (what ``Search`` serves)."""
    def pick(node: CategoryPath) -> tuple[str, Mapping[str, float]]:
        group = query_group(node, seen)
        if group is not None and group not in groups:
            group = FALLBACK.get(group)
        c = groups.get(group, single) if group is not None else single
        return c.method, c.weight_map

    return pick


def choose(measured: Measured, encoders: Mapping[str, str], started: float | None = None,
           progress: Callable[[str], None] | None = None, seen: Seen | None = None) -> CalibrationReport:
    """Search the fusion on the tuning slice(s), report it on the reporting slice; the returned
    report holds the ``Calibration`` to store for an index whose vector fields are ``encoders``.
    ``seen``: the category nodes the served CLIP-ITA model trained on; with a ``clip_ita``
    source, weights are also tuned per query group (seen / unseen)."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter() if started is None else started
    config, tune, report, sources = measured.config, measured.tune, measured.report, measured.sources
    hidden_pieces = measured.hidden
    default = Candidate(DEFAULT_FUSION, tuple((s, float(measured.defaults[s])) for s in sources))
    say(f"searching fusion over {', '.join(sources)}")
    tuning = {"visible": [tune], "hidden": [hidden_pieces[0]] if hidden_pieces else [],
              "both": [tune, hidden_pieces[0]] if hidden_pieces else []}[config.tune_for]
    best, tried, how = search_fusion(tuning, sources, default)
    how += f"; tuned for {config.tune_for} - {TUNE_FOR[config.tune_for]}"
    grouped: dict[str, Candidate] = {}
    entries: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    if seen is not None and CLIP_ITA_SOURCE in sources:  # only a trained model knows seen from unseen
        say("searching fusion per query group (seen / unseen categories)")
        grouped, entries, counts = group_fusions(tuning, sources, default, seen, best)
        how += (f"; then per group of queries ({', '.join(GROUPS)}: the served model's training categories or "
                f"not, and the seen roots) with >= {MIN_GROUP_QUERIES} tuning queries or a clear win over "
                "the weights they would get otherwise, unseen ties to the larger BM25 share")
    pick = group_pick(best, grouped, seen)

    systems = {s: source_run(report, s) for s in sources}
    systems["default"] = fused_run(report, default.method, default.weight_map)
    systems["calibrated"] = picked_run(report, pick)
    if grouped:
        systems["calibrated_single"] = fused_run(report, best.method, best.weight_map)
    measured_figures = {name: figures(report, run) for name, run in systems.items()}
    levels = {name: per_level(report, run) for name, run in systems.items()}
    measured_figures["ideal"] = figures(report, ideal_run(report))
    levels["ideal"] = per_level(report, ideal_run(report))
    tuned = next(f for c, f in tried if c == best)
    measured_figures["calibrated"]["tuning_" + SELECT_BY] = tuned[SELECT_BY]
    hidden = hidden_figures(*hidden_pieces, sources, default, best, pick if grouped else None) if hidden_pieces else None
    group_settings = ({"groups": {"min_tuning_queries": MIN_GROUP_QUERIES, "tuning_queries": counts,
                                  "fallback": f"a group without weights is served the single ({ALL_QUERIES}) ones"}}
                      if counts else {})

    calibration = Calibration(
        method=best.method,
        weights=best.weight_map,
        metric=SELECT_BY,
        figures=measured_figures,
        sizes={"index_products": measured.total, "tune_products": len(tune.products), "tune_queries": len(tune.nodes),
               "report_products": len(report.products), "report_queries": len(report.nodes)},
        encoders=dict(encoders),
        created=datetime.now(UTC).replace(microsecond=0).isoformat(),
        search=how,
        default={"method": default.method, "weights": default.weight_map},
        hidden=hidden,
        settings={"seed": config.seed, "held_out": config.held_out, "tune_for": config.tune_for,
                  "max_products": config.max_products, "max_level": config.max_level, "depth": CANDIDATE_DEPTH,
                  "selected_by": SELECT_BY, "tie_break": TIE_BREAK,
                  "slices": "disjoint: weights picked on the tuning slice, figures from the reporting slice",
                  **group_settings},
        groups=entries,
    )
    top = [{"fusion": c.label(), **{LABELS[k]: v for k, v in f.items()}} for c, f in tried[:10]]
    return CalibrationReport(calibration, top, levels, time.perf_counter() - started)


def calibrate(search: Search, config: CalibrationConfig | None = None,
              progress: Callable[[str], None] | None = None) -> CalibrationReport:
    """Measure every serving source, the fixed default and the searched fusions on held-out
    products of ``search``'s own index; the returned report holds the ``Calibration`` to store
    (``calibration.save_calibration``). Raises ``StoreError`` / ``ConfigError`` on an index that
    cannot be calibrated (empty, no categories, no id listing)."""
    started = time.perf_counter()
    measured = measure(search, config, progress)
    return choose(measured, encoder_ids(search.schema), started, progress, seen=search.served_seen())


# ---------------------------------------------------------------- hidden categories


def hidden_slices(search: Search, tune: QuerySlice, report: QuerySlice) -> tuple[QuerySlice, QuerySlice]:
    """The two slices ranked for products whose category is missing: the held-out products are
    copied without categories into a scratch index and ranked there, judged by their true ones."""
    hide = set(tune.ids) | set(report.ids)
    h_tune, h_report = tune.without_runs(), report.without_runs()
    with scratch_store(search.store) as scratch:
        copy_index(search.store, scratch, search.schema, hide)
        collect_runs(search, scratch, h_tune)
        collect_runs(search, scratch, h_report)
    return h_tune, h_report


def hidden_figures(
    h_tune: QuerySlice, h_report: QuerySlice, sources: Sequence[str], default: Candidate, calibrated: Candidate,
    grouped: Pick | None = None,
) -> dict[str, Any]:
    """Each source, the fixed default, the calibration (``grouped``: its per-group fusion, as
    served, and ``calibrated_single`` its single weights), and weights tuned on the hidden tuning
    slice, on the hidden reporting slice."""
    for_hidden, _, _ = search_fusion(h_tune, sources, default)
    systems = {s: source_run(h_report, s) for s in sources}
    systems["default"] = fused_run(h_report, default.method, default.weight_map)
    single = fused_run(h_report, calibrated.method, calibrated.weight_map)
    systems["calibrated"] = picked_run(h_report, grouped) if grouped is not None else single
    if grouped is not None:
        systems["calibrated_single"] = single
    systems["tuned_on_hidden"] = fused_run(h_report, for_hidden.method, for_hidden.weight_map)
    return {
        "figures": {name: figures(h_report, run) for name, run in systems.items()},
        "per_level": {name: per_level(h_report, run) for name, run in systems.items()},
        "tuned_on_hidden": {"method": for_hidden.method, "weights": for_hidden.weight_map},
        "hidden_products": len(h_tune.products) + len(h_report.products),
        "how": "held-out products copied without their categories into a scratch index (vectors copied); "
               "queries and relevance from their true categories; the reporting slice is ranked",
    }


def copy_index(source: Store, target: Store, schema: Any, hide: set[str]) -> int:
    """Copy every product with its stored vectors into ``target``, with the categories of the
    ids in ``hide`` removed. Returns the products written."""
    if not isinstance(source, IdLister) or not isinstance(source, VectorReader):
        raise StoreError(f"{type(source).__name__} cannot list products and vectors, so it cannot be copied")
    target.setup(schema)
    ids = source.ids()
    written = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        stored = source.get(chunk)
        vectors = {name: source.vectors(chunk, name) for name in schema.vectors}
        docs = []
        for pid in chunk:
            if pid not in stored:
                continue
            product = stored[pid].product
            if pid in hide:
                product = replace(product, categories=())
            docs.append(Document(product, {n: v[pid] for n, v in vectors.items() if pid in v}, stored[pid].image))
        result = target.upsert(docs)
        if result.errors:
            first = next(iter(result.errors.items()))
            raise StoreError(f"copying the index failed for {len(result.errors)} products (first: {first[0]}: {first[1]})")
        written += result.written
    return written


@contextmanager
def scratch_store(store: Store) -> Iterator[Store]:
    """An empty store of the same kind, deleted afterwards: a temporary SQLite file, or a
    temporary index on the same Elasticsearch (or OpenSearch) cluster."""
    from .store.elasticsearch import ElasticsearchStore
    from .store.embedded import EmbeddedStore

    if isinstance(store, EmbeddedStore):
        with tempfile.TemporaryDirectory(prefix="ctir-calibrate-") as tmp:
            scratch = EmbeddedStore(Path(tmp) / "hidden.db", vector_index=store.vector_index,
                                    lexical=store.lexical_engine)
            try:
                yield scratch
            finally:
                scratch.close()
    elif isinstance(store, ElasticsearchStore):
        conn = store.connection.with_index(f"{store.index}-calibration-{uuid.uuid4().hex[:8]}")
        # the same class: an OpenSearchStore's scratch index is on OpenSearch too
        scratch_es = type(store)(conn, index_options=store.index_options)
        try:
            yield scratch_es
        finally:
            try:
                scratch_es.drop()
            finally:
                scratch_es.close()
    else:
        raise StoreError(f"cannot make a scratch copy of a {type(store).__name__} to hide categories")
