"""``learn``: train CLIP-ITA on the index's own products and categories, keep it only if it
wins, and serve with it.

The steps, each reported through ``progress``:

1. **Read** every stored product and its features (``learn.features``: the stored title and
   image vectors are the frozen encoders' outputs; attributes are computed through a cache).
2. **Train** CLIP-ITA (``training.train``) on the products outside the calibration's held-out
   slices: its validation split is the calibration's tuning slice and its test split the
   reporting slice, so the comparison below is on products the model never saw. The text
   modalities offline; the image modality too when the index holds image vectors.
3. **Compare** (``learn.compare``): category queries with visible and hidden categories, seen
   and unseen, and categorize per level, before and after. The model is **kept only if** the
   calibrated fusion with it beats today's serving (and today's sources recalibrated) on the
   reporting slice's P@10, averaged over visible and hidden categories.
4. **Write** (kept only): the model's vector of every product in place (``learn.fill``:
   resumable, a job record says what is under way), then the schema's ``clip_ita`` field, the
   query calibration, the categorize weights and the learned-model record, so every later
   search, categorize, audit and ingest uses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..calibrate import CalibrationConfig, choose, measure, served_pick, slice_spec
from ..config import Settings
from ..errors import StoreError
from ..learned import LEARNED_KEY, SEEN_FILE
from ..products import CategoryPath, Product, format_category_path, path_prefixes
from ..ranking.calibration import Calibration, encoder_ids, save_calibration, served_defaults
from ..ranking.plan import SOURCE_WEIGHTS
from ..schema import VectorField
from ..store.base import IdLister, IndexMetadata, VectorReader, VectorWriter
from ..vocabulary import (
    CLIP_ITA_SOURCE,
    CLIP_ITA_VECTOR,
    IMAGE_VECTOR,
    TITLE_VECTOR,
)
from . import compare
from .features import product_features, stored_products
from .fill import JOB_KEY, fill_vectors

if TYPE_CHECKING:
    from ..search import Search

ATTEMPT_KEY = "learned-model.last-attempt"
MIN_LABELLED = 50  # categorised products below which there is nothing to learn from
Progress = Callable[[str, dict[str, Any]], None]


def _noop(event: str, info: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class LearnConfig:
    """``modalities``: None picks image,title,attributes when the index has image vectors, else
    title,attributes. ``setting`` / ``pairs``: the training pairs (``ctir-es train``); serving
    answers queries at every level, so every level of each path is a training target."""

    modalities: tuple[str, ...] | None = None
    setting: str = "random"
    pairs: str = "ancestors"
    epochs: int = 30
    patience: int = 5
    seed: int = 13
    held_out: float = 0.4
    max_products: int = 2000
    force: bool = False  # keep the model even when it does not win (for experiments)
    write_chunk: int = 2000  # products per in-place write (each one transaction + checkpoint)

    def calibration(self) -> CalibrationConfig:
        return CalibrationConfig(seed=self.seed, held_out=self.held_out, max_products=self.max_products,
                                 tune_for="both")


@dataclass
class LearnReport:
    kept: bool
    model: str
    path: str
    reason: str
    queries: dict[str, Any] = field(default_factory=dict)
    categorize: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    written: int = 0
    resumed: bool = False

    def headline(self) -> dict[str, float]:
        """P@10 per system, the mean over visible and hidden categories (the decision's figure)."""
        out: dict[str, float] = {}
        for system in ("served", "before", "after", "bm25"):
            values = [self.queries[v][system]["all"]["precision@10"] for v in self.queries if system in self.queries[v]]
            if values:
                out[system] = float(np.mean(values))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"kept": self.kept, "model": self.model, "path": self.path, "reason": self.reason,
                "headline_p10": self.headline(), "queries": self.queries, "categorize": self.categorize,
                "training": self.training, "seconds": self.seconds, "written": self.written, "resumed": self.resumed}


def _modalities(search: Search, config: LearnConfig) -> tuple[str, ...]:
    if config.modalities:
        return tuple(config.modalities)
    schema = search.schema
    if IMAGE_VECTOR in schema.vectors and search.image_encoder is not None:
        return ("image", "title", "attributes")
    return ("title", "attributes")


def _check(search: Search) -> None:
    store = search.store
    missing = [cap.__name__ for cap in (IdLister, VectorReader, VectorWriter, IndexMetadata)
               if not isinstance(store, cap)]
    if missing:
        raise StoreError(f"{type(store).__name__} lacks {', '.join(missing)}, which `learn` needs")
    if search.text_encoder is None or TITLE_VECTOR not in search.schema.vectors:
        raise StoreError("`learn` needs an index with title vectors (ingest with a text model, the default)")


def _check_slices(products: Sequence[Product], config: LearnConfig) -> None:
    """The comparison needs categorised products in both held-out slices (``calibrate``'s hash
    split); a catalogue whose uncategorised products fall there is told so before training."""
    from ..protocol import split_of

    spec = slice_spec(len(products), config.calibration())
    held = {"val": 0, "test": 0}
    for p in products:
        part = split_of(p.id, spec)
        if p.categories and part in held:
            held[part] += 1
    if not held["val"] or not held["test"]:
        raise StoreError(f"the held-out slices of seed {config.seed} hold {held['val']} tuning and {held['test']} "
                         "reporting products with a category, too few to compare on: try another --seed "
                         "(or ingest the missing categories)")


def _model_name(settings: Settings) -> str:
    from ..encoders.models import safe_name

    where = settings.es_index if settings.server_url else Path(settings.store).stem
    return safe_name(f"learned-{where}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}")


def learn(search: Search, settings: Settings, config: LearnConfig | None = None,
          progress: Progress | None = None) -> LearnReport:
    """Train, compare, and (when it wins) serve a CLIP-ITA model for ``search``'s index. A
    write that was cut short (killed) is resumed instead of training again."""
    config = config or LearnConfig()
    say = progress or _noop
    _check(search)
    store = search.store
    assert isinstance(store, IndexMetadata)
    job = store.get_metadata(JOB_KEY)
    if job is not None and job.get("path") and Path(str(job["path"])).is_dir():
        return _resume(search, settings, job, say, config.write_chunk)
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    # 1. read
    t0 = time.perf_counter()
    products = stored_products(store, progress=lambda s, d, t: say("progress", {"stage": s, "done": d, "total": t}))
    labelled = sum(1 for p in products if p.categories)
    if labelled < MIN_LABELLED:
        raise StoreError(f"only {labelled} products of the index have a category; `learn` needs at least "
                         f"{MIN_LABELLED} (ingest a catalogue with categories)")
    _check_slices(products, config)  # before the minutes of training, not after
    modalities = _modalities(search, config)
    assert search.text_encoder is not None
    feats = product_features(store, products, modalities, text_encoder=search.text_encoder,
                             image_encoder=search.image_encoder, stored_fields=list(search.schema.vectors),
                             cache_dir=Path(settings.cache_dir),
                             progress=lambda s, d, t: say("progress", {"stage": s, "done": d, "total": t}))
    seconds["features"] = time.perf_counter() - t0

    # 2. train on everything outside the calibration's held-out slices
    t0 = time.perf_counter()
    result, exported = _train(search, settings, config, products, feats, modalities, say)
    seconds["training"] = time.perf_counter() - t0
    from ..encoders.registry import EncoderConfig, load_clip_ita

    model = load_clip_ita(str(exported.path), EncoderConfig.from_settings(settings),
                          text_encoder=search.text_encoder, image_encoder=search.image_encoder)
    vectors = _encode(model, products, feats, modalities)
    seen = _seen_nodes(products, result)
    (Path(exported.path) / SEEN_FILE).write_text(
        json.dumps(sorted(format_category_path(n) for n in seen), ensure_ascii=False), encoding="utf-8")

    # 3. compare on the held-out slices
    t0 = time.perf_counter()
    say("stage", {"stage": "comparing with today's serving on held-out products"})
    comparison = _compare(search, config, model, vectors, seen, say)
    seconds["comparison"] = time.perf_counter() - t0
    queries, categorize_cmp, after_cal = comparison
    report = LearnReport(False, str(model.manifest["name"]), str(exported.path), "", queries.to_json(),
                         categorize_cmp.to_json(),
                         {"modalities": list(modalities), "best_epoch": result.best_epoch,
                          "epochs_run": result.epochs_run, "data": result.data,
                          "config": result.config.to_json()})
    head = report.headline()
    baseline = max(head.get("served", 0.0), head.get("before", 0.0))
    report.kept = head.get("after", 0.0) > baseline or config.force
    report.reason = (f"P@10 (mean of visible and hidden categories) {100 * head.get('after', 0):.1f} with the model "
                     f"against {100 * baseline:.1f} without" + (" (kept by --force)" if config.force and
                                                                  head.get("after", 0.0) <= baseline else ""))
    if not report.kept:
        store.put_metadata(ATTEMPT_KEY, {"model": report.model, "kept": False, "reason": report.reason,
                                         "created": _now(), "headline_p10": head})
        seconds["total"] = time.perf_counter() - started
        report.seconds = {k: round(v, 2) for k, v in seconds.items()}
        return report

    # 4. write: a job record first, so a killed write resumes instead of training again
    spec = VectorField(model.dims, "cosine", dict(model.manifest))
    new_schema = search.schema.with_vector(CLIP_ITA_VECTOR, spec)
    after_cal = Calibration.from_json({**after_cal.to_json(), "encoders": encoder_ids(new_schema)})
    job = {"model": report.model, "path": report.path, "spec": spec.to_json(),
           "calibration": after_cal.to_json(),
           "categorize": {"weights": categorize_cmp.weights_after.to_json(), "per_level": categorize_cmp.per_level},
           "learned": _learned_record(report, products, labelled, seen, head),
           "report": report.to_json()}
    store.put_metadata(JOB_KEY, job)
    t0 = time.perf_counter()
    ids = [p.id for p in products]
    report.written = fill_vectors(store, CLIP_ITA_VECTOR, spec, ids, lambda chunk: np.stack([vectors[i] for i in chunk]),
                                  key=report.model, progress=say, chunk=config.write_chunk)
    seconds["write"] = time.perf_counter() - t0
    _finish(search, job)
    seconds["total"] = time.perf_counter() - started
    report.seconds = {k: round(v, 2) for k, v in seconds.items()}
    return report


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _train(search: Search, settings: Settings, config: LearnConfig, products: list[Product],
           feats: Mapping[str, np.ndarray], modalities: Sequence[str], say: Progress) -> tuple[Any, Any]:
    from ..encoders.models import default_models_dir
    from ..training.export import export_clip_ita
    from ..training.train import TrainConfig, train

    fraction = min(config.held_out, config.max_products / len(products))
    train_config = TrainConfig(modalities=tuple(modalities), setting=config.setting, pairs=config.pairs,
                               epochs=config.epochs, patience=config.patience, seed=config.seed,
                               split=(1 - fraction, fraction / 2, fraction / 2), backoff=False)
    name = _model_name(settings)
    run_dir = Path(settings.cache_dir) / "learn-runs" / name
    assert search.text_encoder is not None
    result = train(products, train_config, run_dir, text_encoder=search.text_encoder,
                   image_encoder=search.image_encoder if "image" in modalities else None, features=feats,
                   progress=lambda event, info: say(event, info))
    models_dir = Path(settings.models_dir) if settings.models_dir else default_models_dir(settings.cache_dir)
    exported = export_clip_ita(run_dir, models_dir=models_dir, name=name, force=True)
    return result, exported


def _encode(model: Any, products: Sequence[Product], feats: Mapping[str, np.ndarray],
            modalities: Sequence[str], chunk: int = 4096) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(products), chunk):
        part = products[start : start + chunk]
        given = {m: feats[m][start : start + chunk] for m in modalities}
        vecs = model.encode_products(part, None, precomputed=given)
        out.update({p.id: vecs[j] for j, p in enumerate(part)})
    return out


def _seen_nodes(products: Sequence[Product], result: Any) -> set[CategoryPath]:
    """Every node a training product is filed under (the protocol's "seen")."""
    from ..protocol import SplitSpec, split_of

    cfg = result.config
    spec = SplitSpec(cfg.seed, *cfg.split)
    return {prefix for p in products if split_of(p.id, spec) == "train"
            for path in p.categories for prefix in path_prefixes(path)}


def _compare(search: Search, config: LearnConfig, model: Any, vectors: Mapping[str, np.ndarray],
             seen: set[CategoryPath], say: Progress) -> tuple[compare.QueryComparison, compare.CategorizeComparison,
                                                              Calibration]:
    from ..categorize.engine import Categorizer

    schema = search.schema
    measured = measure(search, config.calibration(), lambda msg: say("stage", {"stage": msg}))
    served_seen = search.served_seen()  # an earlier learned model's: today's groups, if any
    before_cal = choose(measured, encoder_ids(schema), seen=served_seen).calibration
    today = list(measured.sources), dict(measured.defaults)  # copies: add_source below extends them
    before = compare.before_runs(measured, served_pick(served_defaults(search.store, schema), *today, served_seen),
                                 served_pick(before_cal, *today, served_seen))
    texts = sorted({qid for piece in measured.slices() for qid in piece.nodes})
    queries = dict(zip(texts, model.encode_categories(texts), strict=True)) if texts else {}
    measured.add_source(CLIP_ITA_SOURCE, SOURCE_WEIGHTS["category"][CLIP_ITA_SOURCE],
                        compare.model_source(vectors, queries))
    after_schema = schema.with_vector(CLIP_ITA_VECTOR, VectorField(model.dims, "cosine", dict(model.manifest)))
    # the after system is what serving will do: each query its group's weights (seen / unseen)
    after_cal = choose(measured, encoder_ids(after_schema), seen=seen).calibration
    single = Calibration.from_json({**after_cal.to_json(), "groups": None})
    after = served_pick(after_cal, measured.sources, measured.defaults, seen)
    query_cmp = compare.compare_queries(measured, before, after, seen,
                                        served_pick(single, measured.sources, measured.defaults, seen))

    say("stage", {"stage": "categorize before and after"})
    tune_products, report_products = measured.tune.products, measured.report.products  # read once, by measure
    old = search.categorizer()
    new = Categorizer(search.store, vector_fields=[*schema.vectors, CLIP_ITA_VECTOR], text_encoder=search.text_encoder,
                      image_encoder=search.image_encoder, category_encoder=model, labels=old.labels)
    cat_cmp = compare.compare_categorize(old, new, search.store, tune_products, report_products, vectors,
                                         search.category_weights(), seen)
    return query_cmp, cat_cmp, after_cal


def _learned_record(report: LearnReport, products: Sequence[Product], labelled: int, seen: set[CategoryPath],
                    head: Mapping[str, float]) -> dict[str, Any]:
    q = report.queries

    def p10(view: str, system: str) -> float | None:
        return q.get(view, {}).get(system, {}).get("all", {}).get("precision@10")

    def r100(view: str, system: str) -> float | None:
        return q.get(view, {}).get(system, {}).get("all", {}).get("recall@100")

    metrics = {side: {"P@10": p10("visible", system), "hidden P@10": p10("hidden", system),
                      "hidden R@100": r100("hidden", system)}
               for side, system in (("before", "served"), ("after", "after"))}
    return {"version": 1, "model": report.model, "path": report.path,
            "variant": report.training["config"]["variant"], "modalities": report.training["modalities"],
            "created": _now(), "products": len(products), "trained_products": report.training["data"]
            .get("split_sizes", {}).get("train", 0), "labelled_products": labelled, "categories_seen": len(seen),
            "unseen_at_learn": len({prefix for p in products for path in p.categories
                                    for prefix in path_prefixes(path)} - seen),
            "written_since": 0, "metrics": metrics, "kept": True}


def _finish(search: Search, job: Mapping[str, Any]) -> None:
    """After every vector is written: the schema names the model, then the calibrations and the
    record; the job record goes last (a kill before it resumes here, harmlessly)."""
    from ..categorize.core import SignalWeights
    from ..categorize.served import save_weights

    store = search.store
    assert isinstance(store, VectorWriter) and isinstance(store, IndexMetadata)
    spec = VectorField.from_json(job["spec"])
    schema = store.set_vector_field(CLIP_ITA_VECTOR, spec)
    save_calibration(store, Calibration.from_json(job["calibration"]))
    save_weights(store, schema, SignalWeights.from_json(job["categorize"]["weights"]), {"top1_per_level": job["categorize"]["per_level"]})
    store.put_metadata(LEARNED_KEY, job["learned"])
    store.put_metadata(JOB_KEY, {"done": True})  # the store keeps no delete of metadata: mark it done


def _resume(search: Search, settings: Settings, job: Mapping[str, Any], say: Progress, chunk: int) -> LearnReport:
    """Finish a write that was cut short: the model's vectors again (features from the index and
    the cache), written from the checkpoint on, then the records."""
    from ..encoders.registry import EncoderConfig, load_clip_ita

    say("stage", {"stage": f"resuming the write of {job['model']}"})
    started = time.perf_counter()
    store = search.store
    model = load_clip_ita(str(job["path"]), EncoderConfig.from_settings(settings),
                          text_encoder=search.text_encoder, image_encoder=search.image_encoder)
    products = stored_products(store)
    modalities = tuple(model.modalities)
    assert search.text_encoder is not None
    feats = product_features(store, products, modalities, text_encoder=search.text_encoder,
                             image_encoder=search.image_encoder, stored_fields=list(search.schema.vectors),
                             cache_dir=Path(settings.cache_dir))
    vectors = _encode(model, products, feats, modalities)
    spec = VectorField.from_json(job["spec"])
    written = fill_vectors(store, CLIP_ITA_VECTOR, spec, [p.id for p in products],
                           lambda ids: np.stack([vectors[i] for i in ids]), key=str(job["model"]), progress=say,
                           chunk=chunk)
    _finish(search, job)
    saved = dict(job.get("report") or {})
    return LearnReport(True, str(job["model"]), str(job["path"]), str(saved.get("reason", "resumed")),
                       saved.get("queries", {}), saved.get("categorize", {}), saved.get("training", {}),
                       {"total": round(time.perf_counter() - started, 2)}, written, resumed=True)
