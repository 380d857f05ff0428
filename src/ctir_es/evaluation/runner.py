"""Run the protocol: read a catalogue, split it, build the evaluation indexes, run every
system through the Store API on the validation and test queries of each setting, tune the
linear fusion weight on validation, and measure the test runs.

``evaluate_catalogue`` is the function behind ``ctir-es evaluate``; it returns an
``EvalResult`` (plain data) that ``report`` writes out as Markdown, JSON, TREC files and a plot.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from .. import __version__, metrics
from ..config import Settings
from ..errors import ConfigError
from ..filters import Filter
from ..ingest.report import IngestReport
from ..products import CategoryPath, Product
from ..protocol import (
    QUERY_TEXTS,
    RELEVANCE,
    SETTINGS,
    QuerySet,
    SplitSpec,
    build_query_set,
    check_choice,
    known_nodes,
    split_products,
)
from ..ranking.fusion import fuse
from ..schema import Hit, LexicalQuery, VectorQuery
from ..store.base import Store
from ..vocabulary import CANDIDATE_DEPTH
from . import error_analysis, significance
from .index import EvalIndex, IndexBuilder, Progress
from .providers import PROVIDERS
from .systems import (
    DEFAULT_TEXT_MODELS,
    FUSION_METHODS,
    HYBRID_LEXICAL,
    LEXICAL_SYSTEMS,
    DenseSystem,
    HybridSystem,
    LexicalSystem,
    ProviderContext,
    Skipped,
    System,
    hybrid_label,
    hybrid_name,
    needed,
    selector,
)

# The paper's columns first (its mAP is the min(k, R) convention), then the trec_eval ones.
DEFAULT_METRICS: tuple[str, ...] = (
    "precision@1", "precision@5", "precision@10", "map_min@5", "map_min@10", "r-precision",
    "map@5", "map@10", "ndcg@10", "recall@100",
)
PK_METRICS: tuple[str, ...] = tuple(f"precision@{k}" for k in range(1, 11))
DEPTH = CANDIDATE_DEPTH  # results per system and query (recall@100 needs 100)

Run = dict[str, dict[str, float]]


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how. Defaults reproduce the table of docs/evaluation.md
    ("Results on flipkart-1050")."""

    settings: tuple[str, ...] = ("random", "general", "specific")
    query_text: str = "path"
    relevance: str = "subtree"
    split: SplitSpec = field(default_factory=SplitSpec)
    systems: tuple[str, ...] = ()  # name patterns (fnmatch); empty = every available system
    text_models: tuple[str, ...] = DEFAULT_TEXT_MODELS
    trained: tuple[Path, ...] = ()
    hybrid_lexical: str = HYBRID_LEXICAL
    depth: int = DEPTH
    metrics: tuple[str, ...] = DEFAULT_METRICS
    tune_metric: str = "map@10"
    linear_grid: tuple[float, ...] = tuple(round(i * 0.1, 1) for i in range(11))
    significance: bool = True
    significance_metrics: tuple[str, ...] = ("precision@10", "map@10", "ndcg@10")
    stat_test: str = "student"
    max_p: float = 0.05
    error_k: int = 10
    limit: int | None = None
    work_dir: Path | None = None
    rebuild: bool = False

    def __post_init__(self) -> None:
        if not self.settings:
            raise ConfigError("no setting chosen; supported: " + ", ".join(SETTINGS))
        for s in self.settings:
            check_choice("setting", s, SETTINGS)
        check_choice("query text", self.query_text, QUERY_TEXTS)
        check_choice("relevance", self.relevance, RELEVANCE)
        check_choice("statistical test", self.stat_test, significance.STAT_TESTS)
        if self.hybrid_lexical not in LEXICAL_SYSTEMS:
            raise ConfigError(f"unknown lexical system {self.hybrid_lexical!r}; supported: {', '.join(LEXICAL_SYSTEMS)}")
        for m in (*self.metrics, self.tune_metric, *self.significance_metrics):
            metrics.parse_metric(m)
        if self.depth < 10:
            raise ConfigError("depth must be >= 10")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("--limit must be >= 1")

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": list(self.settings),
            "query_text": self.query_text,
            "relevance": self.relevance,
            "split": self.split.to_json(),
            "systems": list(self.systems) or ["all"],
            "text_models": list(self.text_models),
            "trained": [str(p) for p in self.trained],
            "hybrid_lexical": self.hybrid_lexical,
            "depth": self.depth,
            "metrics": list(self.metrics),
            "tune_metric": self.tune_metric,
            "linear_grid": list(self.linear_grid),
            "significance": {"enabled": self.significance, "metrics": list(self.significance_metrics),
                             "stat_test": self.stat_test, "max_p": self.max_p},
            "error_k": self.error_k,
            "limit": self.limit,
        }


@dataclass
class SettingResult:
    """Everything measured for one setting on the test split."""

    setting: str
    test: QuerySet
    val: QuerySet
    runs: dict[str, Run] = field(default_factory=dict)  # system -> test run (rank-derived scores)
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # system -> metric -> qid
    means: dict[str, dict[str, float]] = field(default_factory=dict)
    by_level: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    by_seen: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    tuning: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    significance: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "label": SETTINGS[self.setting],
            "test_queries": self.test.summary(),
            "val_queries": self.val.summary(),
            "means": self.means,
            "by_level": {s: {str(lv): v for lv, v in levels.items()} for s, levels in self.by_level.items()},
            "by_seen": self.by_seen,
            "tuning": self.tuning,
            "errors": self.errors,
            "significance": self.significance,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class EvalResult:
    config: EvalConfig
    dataset: dict[str, Any]
    systems: list[System]
    skipped: list[Skipped]
    settings: dict[str, SettingResult]
    indexes: list[dict[str, Any]]
    environment: dict[str, Any]
    products: dict[str, Product] = field(default_factory=dict, repr=False)
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def system(self, name: str) -> System:
        for s in self.systems:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "ctir_es_version": __version__,
            "wall_seconds": round(self.wall_seconds, 2),
            "dataset": self.dataset,
            "config": self.config.to_json(),
            "seeds": {"split": self.config.split.seed, "random_level": self.config.split.seed,
                      "significance": self.config.split.seed},
            "environment": self.environment,
            "indexes": self.indexes,
            "systems": [_describe(s, self) for s in self.systems],
            "skipped": [s.describe() for s in self.skipped],
            "settings": {name: r.to_json() for name, r in self.settings.items()},
            "notes": self.notes,
        }


def _describe(system: System, result: EvalResult) -> dict[str, Any]:
    out = system.describe()
    if isinstance(system, HybridSystem) and system.fusion == "linear":
        out["weights_by_setting"] = {
            s: r.tuning[system.name]["chosen"] for s, r in result.settings.items() if system.name in r.tuning
        }
    return out


# ------------------------------------------------------------------------------ running


def to_run(ids: Sequence[str]) -> dict[str, float]:
    """A ranked id list as strictly decreasing scores (n, n-1, ..., 1): every tool that sorts by
    score (ranx, trec_eval) sees exactly the order the system served."""
    n = len(ids)
    return {pid: float(n - i) for i, pid in enumerate(ids)}


def _dedup(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class SystemRunner:
    """Runs the base systems of a query set through the Store API, grouped by index so that one
    ``store.search`` call fetches a lexical list and every vector list of that index."""

    def __init__(
        self,
        lexical: Sequence[LexicalSystem],
        dense: Sequence[DenseSystem],
        indexes: Mapping[str, EvalIndex],
        lexical_index: str,
        depth: int,
    ) -> None:
        self.lexical = list(lexical)
        self.dense = list(dense)
        self.indexes = indexes
        self.lexical_index = lexical_index
        self.depth = depth

    def run(self, query_set: QuerySet, progress: Progress = _noop, stage: str = "") -> dict[str, dict[str, list[Hit]]]:
        """``{system: {qid: hits}}`` for every base system."""
        queries = query_set.queries
        names = [*(s.name for s in self.lexical), *(s.name for s in self.dense)]
        out: dict[str, dict[str, list[Hit]]] = {name: {} for name in names}
        if not queries:
            return out
        texts = [q.text for q in queries]
        unique = _dedup(texts)
        vectors: dict[str, dict[str, Any]] = {}
        for system in self.dense:
            encoded = system.encode_queries(unique)
            vectors[system.name] = dict(zip(unique, encoded, strict=True))
        filters = [Filter("id", "in", query_set.candidates)]
        by_index: dict[str, list[DenseSystem]] = {}
        for system in self.dense:
            by_index.setdefault(system.index, []).append(system)
        index_keys = _dedup([self.lexical_index, *by_index])
        for n, q in enumerate(queries, start=1):
            for key in index_keys:
                store: Store = self.indexes[key].store
                vqs = [VectorQuery(s.field, vectors[s.name][q.text], s.name) for s in by_index.get(key, [])]
                lexicals: list[LexicalSystem | None] = list(self.lexical) if key == self.lexical_index else []
                if not lexicals:
                    lexicals = [None]
                for i, lex in enumerate(lexicals):
                    lq = LexicalQuery(q.text, dict(lex.weights)) if lex is not None else None
                    vq = vqs if i == 0 else []
                    if lq is None and not vq:
                        continue
                    lists = store.search(lq, vq, self.depth, filters)
                    if lex is not None:
                        out[lex.name][q.qid] = list(lists.get("bm25", []))
                    for v in vq:
                        out[v.name][q.qid] = list(lists.get(v.name, []))
            if n % 10 == 0 or n == len(queries):
                progress(stage, n, len(queries))
        return out


def fused_ids(hybrid: HybridSystem, base: Mapping[str, Mapping[str, list[Hit]]], qid: str, depth: int,
              weight: float | None = None) -> list[str]:
    lists = {hybrid.lexical: base[hybrid.lexical].get(qid, []), hybrid.dense: base[hybrid.dense].get(qid, [])}
    return [h.id for h in fuse(hybrid.fusion, lists, hybrid.weights(weight), limit=depth)]


def tune_linear(
    hybrid: HybridSystem,
    val_set: QuerySet,
    val_base: Mapping[str, Mapping[str, list[Hit]]],
    grid: Sequence[float],
    metric: str,
    depth: int,
) -> dict[str, Any]:
    """The BM25 weight of a linear hybrid that maximises ``metric`` on validation queries;
    ties go to the weight closest to 0.5 (an even mix)."""
    if not val_set.queries:
        return {"chosen": 0.5, "grid": {}, "metric": metric, "val_queries": 0,
                "note": "no validation queries: weight 0.5 used untuned"}
    scores: dict[float, float] = {}
    for w in grid:
        run = {q.qid: to_run(fused_ids(hybrid, val_base, q.qid, depth, w)) for q in val_set.queries}
        scores[w] = metrics.evaluate(val_set.qrels, run, [metric])[metric]
    best = max(scores.values())
    chosen = min((w for w, s in scores.items() if s >= best - 1e-12), key=lambda w: (abs(w - 0.5), w))
    return {"chosen": chosen, "grid": {f"{w:g}": s for w, s in scores.items()}, "metric": metric,
            "val_queries": len(val_set.queries)}


def _group_means(per_query: Mapping[str, Mapping[str, float]], groups: Mapping[Any, list[str]]) -> dict[Any, dict[str, float]]:
    out: dict[Any, dict[str, float]] = {}
    for key, qids in groups.items():
        row: dict[str, float] = {"queries": float(len(qids))}
        for metric, scores in per_query.items():
            row[metric] = metrics.mean(scores, qids)
        out[key] = row
    return out


# ------------------------------------------------------------------------------ top level


def load_products(kind: str, source: str | Path | None, settings: Settings, *, limit: int | None = None,
                  market: str | None = None, category: str | None = None) -> tuple[list[Product], IngestReport]:
    """The catalogue as the readers give it (first ``limit`` records), unique by id (the last
    record of an id wins, as in an ingest)."""
    from ..ingest.run import open_source

    report = IngestReport()
    stream, _ = open_source(kind, source, report, settings, market=market, category=category)
    if limit is not None:
        stream = islice(stream, limit)
    by_id: dict[str, Product] = {}
    for p in stream:
        if p.id in by_id:
            report.duplicates += 1
        by_id[p.id] = p
    return list(by_id.values()), report


def environment() -> dict[str, Any]:
    import numpy

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": __import__("os").cpu_count(),
        "numpy": numpy.__version__,
        "ctir_es": __version__,
    }
    for mod, dist in (("torch", "torch"), ("sentence_transformers", "sentence-transformers"),
                      ("open_clip", "open_clip_torch"), ("ranx", "ranx"), ("elasticsearch", "elasticsearch")):
        if mod in sys.modules:
            try:
                env[mod] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                env[mod] = getattr(sys.modules[mod], "__version__", "?")
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=here,
                               capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            env["git_commit"] = commit.stdout.strip()
            env["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return env


def evaluate_catalogue(
    kind: str,
    source: str | Path | None,
    settings: Settings,
    config: EvalConfig = EvalConfig(),
    *,
    market: str | None = None,
    category: str | None = None,
    progress: Progress = _noop,
) -> EvalResult:
    """Read a catalogue with its reader and evaluate it (see ``evaluate_products``)."""
    started = time.perf_counter()
    progress("read catalogue", 0, None)
    products, report = load_products(kind, source, settings, limit=config.limit, market=market, category=category)
    if not products:
        raise ConfigError(f"no products could be read from {kind} {source}: nothing to evaluate")
    meta = {
        "kind": kind,
        "source": str(source) if source is not None else kind,
        "read": report.read,
        "rejected": dict(report.rejected),
        "duplicates": report.duplicates,
        "notes": dict(report.notes),
    }
    result = evaluate_products(products, settings, config, dataset_meta=meta, progress=progress)
    result.wall_seconds = time.perf_counter() - started
    return result


def evaluate_products(
    products: Sequence[Product],
    settings: Settings,
    config: EvalConfig = EvalConfig(),
    *,
    dataset_meta: Mapping[str, Any] | None = None,
    progress: Progress = _noop,
) -> EvalResult:
    """Split ``products``, build the evaluation indexes, and measure every chosen system in
    every setting of ``config``."""
    started = time.perf_counter()
    meta = dict(dataset_meta or {})
    splits = split_products(products, config.split)
    notes: list[str] = []
    with IndexBuilder.for_products(products, settings, kind=str(meta.get("kind", "")), work_dir=config.work_dir,
                                   progress=progress, rebuild=config.rebuild) as builder:
        meta.update({
            "hash": f"sha256:{builder.dataset_hash}",
            "products": len(products),
            "with_category": sum(1 for p in products if p.categories),
            "category_nodes": len(known_nodes(products)),
            "splits": {name: len(items) for name, items in splits.items()},
        })
        ctx = ProviderContext(builder, settings, config.text_models, config.trained, progress, needed(config.systems),
                              notes, config.split)
        lineup = Lineup.choose(config, ctx)
        run = SettingRun(config, lineup, builder.indexes, splits, known_nodes(splits["train"]),
                         {p.id: p for p in products}, notes, progress)
        results = {setting: run.evaluate(setting) for setting in config.settings}
        return EvalResult(
            config=config,
            dataset=meta,
            systems=lineup.reported,
            skipped=lineup.skipped,
            settings=results,
            indexes=[i.to_json() for i in builder.indexes.values()],
            environment=environment(),
            products=run.by_id,
            wall_seconds=time.perf_counter() - started,
            notes=notes,
        )


@dataclass
class Lineup:
    """The systems of one evaluation: the base systems that run, the hybrids fused from them,
    the ones reported (not components run only for a hybrid) and the ones skipped."""

    lexical: list[LexicalSystem]
    dense: list[DenseSystem]
    hybrids: list[HybridSystem]
    reported: list[System]
    skipped: list[Skipped]
    lexical_index: str  # the index the lexical systems search (any index has BM25)

    @classmethod
    def choose(cls, config: EvalConfig, ctx: ProviderContext) -> Lineup:
        """Every system ``config.systems`` selects (and the components its hybrids need); the
        providers build the dense systems' indexes."""
        chosen = selector(config.systems)
        dense: list[DenseSystem] = []
        skipped: list[Skipped] = []
        for provider in PROVIDERS.values():
            for item in provider(ctx):
                if isinstance(item, Skipped):
                    skipped.append(item)
                else:
                    dense.append(item)
        lexical = [s for name, s in LEXICAL_SYSTEMS.items() if ctx.wanted(name)]
        hybrids = [
            HybridSystem(hybrid_name(f, config.hybrid_lexical, d.name), hybrid_label(f, d.label),
                         config.hybrid_lexical, d.name, f)
            for d in dense for f in FUSION_METHODS
            if chosen(hybrid_name(f, config.hybrid_lexical, d.name))
        ]
        if any(h.lexical not in {s.name for s in lexical} for h in hybrids):
            lexical.append(LEXICAL_SYSTEMS[config.hybrid_lexical])
        systems: list[System] = [*lexical, *dense, *hybrids]
        if not systems:
            raise ConfigError(f"no system matches --systems {','.join(config.systems)}; "
                              f"available: {', '.join([*LEXICAL_SYSTEMS, 'minilm', 'mpnet', 'clip', 'rrf:*', 'linear:*'])}")
        lexical_index = dense[0].index if dense else ctx.builder.with_encoders("bm25").key
        reported = [s for s in systems if chosen(s.name)] or systems
        return cls(lexical, dense, hybrids, reported, skipped, lexical_index)

    def active(self, system: System, setting: str) -> bool:
        """Trained models run in the setting they were trained for (when they say which)."""
        dense_by_name = {d.name: d for d in self.dense}
        runs: System = dense_by_name.get(system.dense, system) if isinstance(system, HybridSystem) else system
        return not isinstance(runs, DenseSystem) or not runs.settings or setting in runs.settings


@dataclass
class SettingRun:
    """Runs a lineup in one setting after the other: query sets, base runs, fusion tuned on the
    validation queries, then the metrics of the test runs."""

    config: EvalConfig
    lineup: Lineup
    indexes: Mapping[str, EvalIndex]
    splits: Mapping[str, list[Product]]
    train_nodes: set[CategoryPath]  # a test query is "seen" when its category is among these
    by_id: dict[str, Product]
    notes: list[str]
    progress: Progress

    def evaluate(self, setting: str) -> SettingResult:
        config, lineup = self.config, self.lineup
        t0 = time.perf_counter()
        test_set, val_set = (self._query_set(setting, part) for part in ("test", "val"))
        res = SettingResult(setting, test_set, val_set)
        label = SETTINGS[setting]
        if not test_set.queries:
            self.notes.append(f"{label}: no test queries (the test split holds "
                              f"{sum(1 for p in self.splits['test'] if p.categories)} products with a category); "
                              "its rows are empty - use a larger catalogue or another --split")
        runner = SystemRunner(lineup.lexical, [d for d in lineup.dense if lineup.active(d, setting)], self.indexes,
                              lineup.lexical_index, config.depth)
        here = [h for h in lineup.hybrids if lineup.active(h, setting)]
        val_base = runner.run(val_set, self.progress, f"{label}: validation queries") if here else {}
        test_base = runner.run(test_set, self.progress, f"{label}: test queries")
        for h in here:
            if h.fusion == "linear":
                res.tuning[h.name] = tune_linear(h, val_set, val_base, config.linear_grid, config.tune_metric,
                                                 config.depth)
        for s in (r for r in lineup.reported if lineup.active(r, setting)):
            if isinstance(s, HybridSystem):
                w = res.tuning[s.name]["chosen"] if s.name in res.tuning else None
                run = {q.qid: to_run(fused_ids(s, test_base, q.qid, config.depth, w)) for q in test_set.queries}
            else:
                run = {q.qid: to_run(_dedup(h.id for h in test_base[s.name].get(q.qid, [])))
                       for q in test_set.queries}
            self._measure(res, s.name, run)
        if config.significance:
            self.progress(f"{label}: significance tests", 0, None)
            res.significance = significance.compare(
                test_set.qrels, res.runs, config.significance_metrics, stat_test=config.stat_test,
                max_p=config.max_p, seed=config.split.seed)
        res.seconds = time.perf_counter() - t0
        return res

    def _query_set(self, setting: str, part: str) -> QuerySet:
        config = self.config
        return build_query_set(self.splits[part], setting, split=part, train_nodes=self.train_nodes,
                               query_text_mode=config.query_text, relevance=config.relevance, seed=config.split.seed)

    def _measure(self, res: SettingResult, name: str, run: Run) -> None:
        """The test run of system ``name``: metrics per query and their means, by query level,
        seen / unseen, and where its wrong results sit."""
        config, test_set = self.config, res.test
        res.runs[name] = run
        pq = metrics.per_query(test_set.qrels, run, _dedup([*config.metrics, *PK_METRICS, *config.significance_metrics]))
        res.per_query[name] = pq
        res.means[name] = {m: metrics.mean(v) for m, v in pq.items()}
        levels: dict[int, list[str]] = {}
        seen: dict[str, list[str]] = {"seen": [], "unseen": []}
        for q in test_set.queries:
            levels.setdefault(q.level, []).append(q.qid)
            seen["seen" if q.seen else "unseen"].append(q.qid)
        res.by_level[name] = _group_means(pq, dict(sorted(levels.items())))
        res.by_seen[name] = _group_means(pq, seen)
        rankings = {qid: metrics.ranking(scores) for qid, scores in run.items()}
        res.errors[name] = error_analysis.analyse(test_set, rankings, self.by_id, config.error_k)


__all__ = ["EvalConfig", "EvalResult", "SettingResult", "evaluate_catalogue", "evaluate_products"]
