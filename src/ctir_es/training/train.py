"""The CLIP-ITA training loop: cached frozen features, AdamW, early stopping on validation.

``train`` works on products and loaded encoders and writes a run directory::

    checkpoint.pt   the best heads (state dict + dims + config)
    config.json     the training config, data summary, encoder manifests, feature stats
    curve.json/csv  per epoch: train loss, validation loss and metrics, seconds
    metrics.json    test split: CLIP-ITA and the zero-shot text baseline, all / seen / unseen

``train_catalogue`` is the function behind ``ctir-es train``: read a catalogue, load the
encoders (the default ONNX backend), train, and return the result.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.base import ImageEncoder, TextEncoder
from ..encoders.onnx.heads import check_modalities, variant_name
from ..products import Product
from ..protocol import SplitSpec
from .backoff import Backoff, seen_distance, tune
from .data import PAIR_MODES, TrainingData
from .errors import TrainingError
from .evaluate import METRICS, evaluate, evaluate_run, query_set, rank_scores
from .features import FeatureCache, ImageLoad, category_matrix, product_feature_matrices

Progress = Callable[[str, dict[str, Any]], None]
RELEVANCE = ("exact", "subtree")


def _noop(event: str, info: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters.

    The paper states τ = 1, λ = 0.5, AdamW, 30 epochs, batch 128 (8 in the most general
    setting), plain MLP heads; its authors' related code uses lr = weight decay = 1e-3; ``d``
    is not stated. ``PAPER`` holds exactly that. The defaults differ where measurements on
    flipkart-1050 said so (docs/models.md): a learnt τ starting at CLIP's 0.07 (τ = 1 caps
    the logits at ±1 and the loss barely moves), heads with an identity-started skip path and
    lr 1e-4 (plain heads from random init forget what the text encoder knows about categories
    never seen in training, which here are two thirds of the test categories), ``d`` = the
    text encoder's dims.
    """

    modalities: tuple[str, ...] = ("image", "title", "attributes")
    setting: str = "specific"
    query_text: str = "path"
    epochs: int = 30
    batch_size: int | None = None  # None: 128, or 8 in the general setting (the paper)
    lr: float = 1e-4
    weight_decay: float = 1e-3
    lam: float = 0.5
    tau: float = 0.07
    learn_tau: bool = True
    out_dim: int | None = None  # None: the text encoder's dims (needed for the skip's identity start)
    hidden: int = 512
    dropout: float = 0.1
    skip: bool = True
    patience: int = 5  # epochs without a better validation score before stopping
    early_stop_metric: str = "map@10"
    relevance: str = "exact"  # the paper's reading; "subtree" is also reported
    seed: int = 13
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    # generalisation (issue 16; measured in docs/models.md, "Generalisation")
    pairs: str = "label"  # "ancestors": pair every product with every node of its paths
    train_fraction: float = 1.0  # learning curves: train on this stable share of the train split
    backoff: bool = True  # also report the head mixed with zero-shot by distance to the seen categories

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", check_modalities(self.modalities))
        if self.pairs not in PAIR_MODES:
            raise TrainingError(f"unknown pairs {self.pairs!r}; supported: {', '.join(PAIR_MODES)}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise TrainingError(f"train fraction must be in (0, 1], got {self.train_fraction}")
        if self.epochs < 1 or (self.batch_size is not None and self.batch_size < 2):
            raise TrainingError("epochs must be >= 1 and batch size >= 2")
        if not 0.0 <= self.lam <= 1.0 or self.tau <= 0:
            raise TrainingError("lambda must be in [0, 1] and tau > 0")
        if self.relevance not in RELEVANCE:
            raise TrainingError(f"unknown relevance {self.relevance!r}; supported: {', '.join(RELEVANCE)}")
        if self.early_stop_metric not in METRICS:
            raise TrainingError(f"unknown metric {self.early_stop_metric!r}; supported: {', '.join(METRICS)}")

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size or (8 if self.setting == "general" else 128)

    @property
    def split_spec(self) -> SplitSpec:
        return SplitSpec(self.seed, *self.split)

    @property
    def variant(self) -> str:
        return variant_name(self.modalities)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "modalities": list(self.modalities), "split": list(self.split),
                "variant": self.variant, "batch_size": self.effective_batch_size}


# The paper's configuration, for reproduction runs (``ctir-es train --paper``).
PAPER: dict[str, Any] = {"lr": 1e-3, "weight_decay": 1e-3, "tau": 1.0, "learn_tau": False, "skip": False,
                         "lam": 0.5, "epochs": 30, "out_dim": 256}


@dataclass
class TrainResult:
    run_dir: Path
    config: TrainConfig
    best_epoch: int
    epochs_run: int
    seconds: dict[str, float]
    test: dict[str, dict[str, Any]]  # relevance -> system -> evaluate() result
    curve: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    backoff: dict[str, Any] = field(default_factory=dict)  # tuned weights and the validation grid
    # split ("val" | "test") -> system -> run with cosine scores (top 100), for fusion studies
    runs: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)

    def headline(self, metric: str = "precision@10", relevance: str | None = None) -> dict[str, float]:
        rel = relevance or self.config.relevance
        return {name: r["all"][metric] for name, r in self.test[rel].items()}


def _batches(n: int, size: int, rng: random.Random) -> list[list[int]]:
    order = list(range(n))
    rng.shuffle(order)
    return [order[i:i + size] for i in range(0, n, size)]


def train(
    products: Sequence[Product],
    config: TrainConfig,
    run_dir: Path,
    *,
    text_encoder: TextEncoder,
    image_encoder: ImageEncoder | None = None,
    load_images: ImageLoad | None = None,
    cache: FeatureCache | None = None,
    progress: Progress = _noop,
    features: Mapping[str, np.ndarray] | None = None,
) -> TrainResult:
    """``features``: the modalities' feature matrices, one row per product of ``products`` in
    order (``ctir-es learn`` reads most of them from the index); computed here when None."""
    from ..encoders._torch import import_torch

    torch = import_torch()
    from .loss import info_nce
    from .model import ClipIta

    if "image" in config.modalities and image_encoder is None:
        raise TrainingError(f"{config.variant} uses images: it needs CLIP weights (an image encoder); "
                            "train the text-only variant with --modalities title,attributes")
    started = time.perf_counter()
    data = TrainingData.build(products, config.setting, config.split_spec, config.query_text,
                              pairs=config.pairs, train_fraction=config.train_fraction)
    progress("data", data.summary())

    # -- frozen features, once (cached across runs) ----------------------------------------
    t0 = time.perf_counter()
    if features is not None:
        missing = [m for m in config.modalities if m not in features]
        if missing or any(len(features[m]) != len(products) for m in config.modalities):
            raise TrainingError(f"the given features lack {missing or 'rows'}: one row per product and modality")
        row = {p.id: i for i, p in enumerate(products)}
        keep = [row[p.id] for p in data.products]
        feats = {m: np.asarray(features[m], dtype=np.float32)[keep] for m in config.modalities}
        feature_stats = {m: {"given": len(keep)} for m in config.modalities}
    else:
        feats, feature_stats = product_feature_matrices(
            data.products, config.modalities, text_encoder=text_encoder, image_encoder=image_encoder,
            load_images=load_images, cache=cache, progress=lambda stage, done, total: progress(
                "features", {"stage": stage, "done": done, "total": total}))
    x_all = np.concatenate([feats[m] for m in config.modalities], axis=1)
    nodes = sorted({n for i in range(len(data.products)) for n in data.candidates(i)})
    node_index = {n: j for j, n in enumerate(nodes)}
    cat_all = category_matrix([data.text(n) for n in nodes], text_encoder, cache)
    feature_seconds = time.perf_counter() - t0
    progress("features done", {"seconds": feature_seconds, "stats": feature_stats})

    # -- model ------------------------------------------------------------------------------
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    offsets = np.cumsum([0] + [feats[m].shape[1] for m in config.modalities])
    title_offset = int(offsets[config.modalities.index("title")]) if "title" in config.modalities else None
    out_dim = config.out_dim or cat_all.shape[1]
    model = ClipIta(x_all.shape[1], cat_all.shape[1], out_dim, config.hidden, config.dropout,
                    config.tau, config.learn_tau, config.skip, title_offset)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    x_t = torch.from_numpy(x_all)
    c_t = torch.from_numpy(cat_all)
    val_qs = query_set(data, "val", config.relevance)
    val_rows = data.index.get("val", [])
    val_pairs = data.pairs("val", random.Random(config.seed))
    batch = config.effective_batch_size
    # with every level as a target, a product's other levels must not be its negatives
    positives = ({i: {node_index[n] for n in data.positives(i) if n in node_index} for i in range(len(data.products))}
                 if config.pairs == "ancestors" else None)

    def batch_loss(pairs: list[Any], idx: list[int]) -> Any:
        chosen = [pairs[i] for i in idx]
        uniq = sorted({node_index[p.node] for p in chosen})
        where = {c: j for j, c in enumerate(uniq)}
        targets = torch.tensor([where[node_index[p.node]] for p in chosen])
        prods = model.encode_products(x_t[[p.product for p in chosen]])
        cats = model.encode_categories(c_t[uniq])
        mask = None
        if positives is not None:
            mask = torch.tensor([[c in positives[p.product] for c in uniq] for p in chosen], dtype=torch.bool)
        return info_nce(prods, cats, targets, model.tau, config.lam, mask)

    def embed(fn: Any, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return fn(torch.from_numpy(x)).numpy()

    def encode_category_texts(texts: list[str]) -> np.ndarray:
        return embed(model.encode_categories, category_matrix(texts, text_encoder, cache))

    curve: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -math.inf, "epoch": 0, "state": None, "stale": 0}

    def validate(epoch: int, losses: list[float], e0: float) -> dict[str, Any]:
        """Score the heads on the validation split; keep them if they are the best so far.

        Epoch 0 is the untrained model: with ``skip`` (and the title) that is zero-shot, so
        early stopping never returns heads worse on validation than the text encoder alone.
        """
        model.eval()
        with torch.no_grad():
            val_losses = [float(batch_loss(val_pairs, idx))
                          for idx in _batches(len(val_pairs), batch, random.Random(0)) if len(idx) >= 2]
        val = (evaluate(val_qs, encode_category_texts, embed(model.encode_products, x_all[val_rows]))
               if val_qs.queries else {"all": {}})
        score = val["all"].get(config.early_stop_metric, -float(np.mean(val_losses or [0.0])))
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None,
               "val_loss": float(np.mean(val_losses)) if val_losses else None,
               **{f"val_{k}": v for k, v in val["all"].items()},
               "tau": float(model.tau.detach()), "seconds": round(time.perf_counter() - e0, 3)}
        curve.append(row)
        improved = score > best["score"]
        if improved:
            best.update(score=score, epoch=epoch, stale=0,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
        elif epoch > 0:
            best["stale"] += 1
        progress("epoch", {**row, "best_epoch": best["epoch"], "improved": improved, "epochs": config.epochs})
        return row

    t0 = time.perf_counter()
    validate(0, [], t0)
    for epoch in range(1, config.epochs + 1):
        e0 = time.perf_counter()
        model.train()
        pairs = data.pairs("train", rng)
        losses = []
        for idx in _batches(len(pairs), batch, rng):
            if len(idx) < 2:
                continue
            loss = batch_loss(pairs, idx)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        validate(epoch, losses, e0)
        if best["stale"] >= config.patience:
            break
    train_seconds = time.perf_counter() - t0
    best_epoch = int(best["epoch"])
    model.load_state_dict(best["state"])
    model.eval()

    # -- test: CLIP-ITA against the zero-shot text encoder -------------------------------
    test_rows = data.index.get("test", [])
    title = feats["title"] if "title" in feats else product_feature_matrices(
        data.products, ("title",), text_encoder=text_encoder, image_encoder=None, cache=cache)[0]["title"]
    zero_q = lambda texts: category_matrix(texts, text_encoder, cache)
    seen = data.train_nodes
    trained_p = embed(model.encode_products, x_all)

    def backoff_run(qs: Any, rows: list[int], chosen: Backoff) -> dict[str, dict[str, float]]:
        texts = [q.text for q in qs.queries]
        if not texts:
            return {}
        scores = chosen.scores(
            chosen.alphas([q.node for q in qs.queries], seen), encode_category_texts(texts), trained_p[rows],
            zero_q(texts), title[rows])
        return rank_scores([q.qid for q in qs.queries], scores, qs.candidates, raw=True)

    def dense_run(qs: Any, encode: Any, vectors: np.ndarray) -> dict[str, dict[str, float]]:
        texts = [q.text for q in qs.queries]
        if not texts:
            return {}
        return rank_scores([q.qid for q in qs.queries], encode(texts) @ vectors.T, qs.candidates, raw=True)

    backoff_info: dict[str, Any] = {}
    chosen = Backoff()
    if config.backoff:
        metric = config.early_stop_metric
        chosen, grid = (tune(lambda b: evaluate_run(val_qs, by_rank(backoff_run(val_qs, val_rows, b)),
                                                   (metric,))["all"][metric])
                        if val_qs.queries else (Backoff(), {}))
        backoff_info = {**chosen.to_json(), "tuned_on": f"validation {metric} ({len(val_qs.queries)} queries)",
                        "grid": grid}
        progress("backoff", backoff_info)
    runs: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for split, rows in (("val", val_rows), ("test", test_rows)):
        qs = query_set(data, split, config.relevance)  # the queries (and runs) are the same for both readings
        runs[split] = {"zero-shot": dense_run(qs, zero_q, title[rows]),
                       config.variant: dense_run(qs, encode_category_texts, trained_p[rows])}
        if config.backoff:
            runs[split][f"{config.variant}+backoff"] = backoff_run(qs, rows, chosen)
    results: dict[str, dict[str, Any]] = {}
    for relevance in RELEVANCE:
        qs = query_set(data, "test", relevance)
        results[relevance] = {name: evaluate_run(qs, by_rank(run)) for name, run in runs["test"].items()}
        distances = [seen_distance(q.node, seen) for q in qs.queries]
        for res in results[relevance].values():
            res["distance_histogram"] = {str(d): distances.count(d) for d in sorted(set(distances))}
    seconds = {"features": round(feature_seconds, 2), "training": round(train_seconds, 2),
               "total": round(time.perf_counter() - started, 2)}
    result = TrainResult(Path(run_dir), config, best_epoch, len(curve) - 1, seconds, results, curve, data.summary(),
                         backoff_info, runs)
    _write_run(result, model, torch, (x_all.shape[1], cat_all.shape[1], out_dim), feats, feature_stats,
               text_encoder, image_encoder)
    progress("done", {"seconds": seconds, "best_epoch": best_epoch})
    return result


def by_rank(run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Scores replaced by ``n .. 1`` in the run's own order, so tied scores never reach the
    metric's tie-break (runs keep ``rank_scores``' order)."""
    return {q: {d: float(len(docs) - r) for r, d in enumerate(docs)} for q, docs in run.items()}


def _write_run(result: TrainResult, model: Any, torch: Any, dims: tuple[int, int, int],
               feats: dict[str, np.ndarray], feature_stats: dict[str, Any], text_encoder: TextEncoder,
               image_encoder: ImageEncoder | None) -> None:
    run_dir = result.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    config = result.config
    product_dim, category_dim, out_dim = dims
    meta = {
        "config": config.to_json(),
        "data": result.data,
        "product_dim": product_dim,
        "category_dim": category_dim,
        "out_dim": out_dim,
        "feature_dims": {m: int(feats[m].shape[1]) for m in config.modalities},
        "feature_stats": feature_stats,
        "text_encoder": text_encoder.manifest,
        "image_encoder": image_encoder.manifest if (image_encoder and "image" in config.modalities) else None,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "backoff": result.backoff,
        "seconds": result.seconds,
    }
    torch.save({"state_dict": model.state_dict(), **{k: meta[k] for k in ("product_dim", "category_dim", "out_dim")},
                "config": meta["config"]}, run_dir / "checkpoint.pt")
    (run_dir / "config.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    (run_dir / "curve.json").write_text(json.dumps(result.curve, indent=2), encoding="utf-8")
    keys = sorted({k for row in result.curve for k in row}, key=lambda k: (k != "epoch", k))
    with (run_dir / "curve.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(result.curve)
    (run_dir / "metrics.json").write_text(json.dumps({"split": "test", "setting": config.setting,
                                                      "query_text": config.query_text, "results": result.test},
                                                     indent=2), encoding="utf-8")


def train_catalogue(
    kind: str,
    source: str | Path | None,
    settings: Any,
    config: TrainConfig,
    run_dir: Path,
    *,
    progress: Progress = _noop,
    limit: int | None = None,
) -> TrainResult:
    """Read a catalogue (as ``ctir-es ingest`` does), load its encoders, train, write ``run_dir``."""
    from ..encoders.registry import EncoderConfig, load_text_encoder, try_load_image_encoder
    from ..ingest.images import ImageLoader
    from ..ingest.report import IngestReport
    from ..ingest.run import open_source

    report = IngestReport()
    stream, _ = open_source(kind, source, report, settings)
    products = [p for _, p in zip(range(limit), stream, strict=False)] if limit else list(stream)
    cfg = EncoderConfig.from_settings(settings)
    notify = lambda message: progress("notice", {"message": message})
    text_encoder = load_text_encoder(cfg, notify)
    image_encoder = None
    if "image" in config.modalities:
        image_encoder, notice = try_load_image_encoder(cfg, notify)
        if image_encoder is None:
            raise TrainingError(f"{config.variant} needs an image encoder: {notice}")
    loader = ImageLoader(cache_dir=settings.image_cache, timeout=settings.image_timeout)
    cache = FeatureCache(Path(settings.cache_dir) / "features")
    result = train(products, config, run_dir, text_encoder=text_encoder, image_encoder=image_encoder,
                   load_images=lambda refs: loader.load_many(refs, workers=settings.image_workers),
                   cache=cache, progress=progress)
    result.data["source"] = report.source
    result.data["read_rejected"] = report.rejected_total
    return result


__all__ = ["TrainConfig", "TrainResult", "train", "train_catalogue"]
