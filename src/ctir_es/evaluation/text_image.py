"""``ctir-es evaluate ... --task t2i|i2t``: fine-grained text-image retrieval between product
titles and product images, both ways, with the protocol of the text-image reproducibility
study (Recall@1/5/10; each held-out product is one (title, image) pair).

- The held-out products are the **test** split of the project's split (``SplitSpec``); a
  held-out product without a decodable image has no pair and is counted, not evaluated.
- They are indexed through the normal ingest ``Pipeline`` with the CLIP encoder, which stores
  the image through CLIP's image tower (``image_vector``) and the title through its text tower
  (``clip_title_vector``). The stored vectors are read back and every query goes through the
  store's kNN, restricted to the pairs by an id filter: the figures are what the store serves.
- ``t2i`` queries with each title's vector against the pairs' images; ``i2t`` with each
  image's vector against the pairs' titles. Recall@K is the share of queries whose match is
  among the first K results. Held-out products with the same normalised title carry the same
  text, so for a title (or an image) every pair with that title is a match.
- Per top category: the queries of the products filed under that root (a product with paths
  under two roots counts in both), always ranked against the whole held-out gallery.
- ``chance`` is the Recall@K of a random ranking (K / pairs, for distinct titles): a random
  CLIP model, such as the tests' tiny one, lands near it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..encoders.base import ImageEncoder
from ..errors import ConfigError, EncoderError, StoreError
from ..filters import Filter
from ..products import Product
from ..protocol import SplitSpec, dataset_hash, split_products
from ..schema import VectorQuery
from ..store.base import Store, VectorReader
from ..vocabulary import CLIP_TITLE_VECTOR, IMAGE_VECTOR
from .index import IndexBuilder, Progress
from .task_input import TaskInput

# direction -> (query vector field, gallery vector field, what it does)
DIRECTIONS: dict[str, tuple[str, str, str]] = {
    "t2i": (CLIP_TITLE_VECTOR, IMAGE_VECTOR, "each held-out title ranks the held-out images"),
    "i2t": (IMAGE_VECTOR, CLIP_TITLE_VECTOR, "each held-out image ranks the held-out titles"),
}
RECALL_KS: tuple[int, ...] = (1, 5, 10)
CLIP_HINT = ("pass --clip-model ARCH --clip-weights FILE|TAG (an open_clip checkpoint such as "
             "open_clip_model.safetensors, or a cached pretrained tag)")


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True)
class TextImageConfig:
    directions: tuple[str, ...] = ("t2i", "i2t")
    split: SplitSpec = field(default_factory=SplitSpec)
    held_out: tuple[str, ...] = ("test",)
    ks: tuple[int, ...] = RECALL_KS
    work_dir: Path | None = None
    rebuild: bool = False

    def __post_init__(self) -> None:
        unknown = [d for d in self.directions if d not in DIRECTIONS]
        if unknown or not self.directions:
            raise ConfigError(f"unknown direction {', '.join(unknown) or '(none)'}; supported: {', '.join(DIRECTIONS)}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError("recall cut-offs must be positive integers")
        bad = [s for s in self.held_out if s not in ("train", "val", "test")]
        if bad or not self.held_out:
            raise ConfigError(f"unknown split {', '.join(bad) or '(none)'}; supported: train, val, test")

    def to_json(self) -> dict[str, Any]:
        return {"directions": list(self.directions), "split": self.split.to_json(), "held_out": list(self.held_out),
                "ks": list(self.ks)}


# ------------------------------------------------------------------------------ metrics (pure)


def normalised_title(title: str) -> str:
    """The text a title carries, for deciding that two pairs share it."""
    return " ".join(title.casefold().split())


def matches(titles: Mapping[str, str]) -> dict[str, set[str]]:
    """For each pair id, the pair ids with the same normalised title (itself included)."""
    by_text: dict[str, set[str]] = {}
    for pid, title in titles.items():
        by_text.setdefault(normalised_title(title), set()).add(pid)
    return {pid: by_text[normalised_title(title)] for pid, title in titles.items()}


def hit_at(ranked: Sequence[str], relevant: set[str], k: int) -> bool:
    """Is a match among the first ``k`` results (cross-modal Recall@K of one query)?"""
    return any(r in relevant for r in ranked[:k])


def recall(run: Mapping[str, Sequence[str]], qrels: Mapping[str, set[str]], ks: Iterable[int],
           queries: Iterable[str] | None = None) -> dict[str, Any]:
    """Mean Recall@K over ``queries`` (default: every query of ``qrels``); a query missing from
    the run found nothing. ``{"n": ..., "recall@1": ..., ...}``; ``None`` values when n is 0."""
    qids = list(qrels if queries is None else queries)
    out: dict[str, Any] = {"n": len(qids)}
    for k in ks:
        hits = [hit_at(run.get(q, ()), qrels[q], k) for q in qids]
        out[f"recall@{k}"] = float(np.mean(hits)) if hits else None
    return out


def rank_exact(queries: Mapping[str, np.ndarray], gallery: Mapping[str, np.ndarray], k: int) -> dict[str, list[str]]:
    """The first ``k`` gallery ids of each query by cosine (unit vectors: dot product), ties by
    id. The exact reference the store's kNN is checked against."""
    ids = sorted(gallery)
    if not ids or not queries:
        return {q: [] for q in queries}
    matrix = np.stack([gallery[i] for i in ids]).astype(np.float32)
    qids = list(queries)
    scores = np.stack([queries[q] for q in qids]).astype(np.float32) @ matrix.T
    order = np.lexsort((np.tile(np.arange(len(ids)), (len(qids), 1)), -scores), axis=1)
    return {q: [ids[j] for j in order[n, :k]] for n, q in enumerate(qids)}


def top_categories(product: Product) -> list[str]:
    return sorted({path[0] for path in product.categories if path})


def measure(run: Mapping[str, Sequence[str]], qrels: Mapping[str, set[str]], groups: Mapping[str, Sequence[str]],
            ks: Sequence[int]) -> dict[str, Any]:
    """Overall and per-group Recall@K; groups (e.g. top categories) list their query ids."""
    return {"overall": recall(run, qrels, ks),
            "by_top_category": {g: recall(run, qrels, ks, qids) for g, qids in sorted(groups.items())}}


def chance(pairs: int, ks: Sequence[int]) -> dict[str, float]:
    return {f"recall@{k}": min(1.0, k / pairs) if pairs else 0.0 for k in ks}


# ------------------------------------------------------------------------------ runner


def load_clip(settings: Settings, task: str = "t2i") -> ImageEncoder:
    """The CLIP encoder of the settings, or one clear error saying how to give one."""
    from ..encoders.registry import EncoderConfig, load_image_encoder

    cfg = EncoderConfig.from_settings(settings)
    if not cfg.images_enabled:
        raise ConfigError(f"--task {task} needs CLIP, and image vectors are off (--clip-weights none): {CLIP_HINT}")
    try:
        return load_image_encoder(cfg)
    except (EncoderError, ImportError) as exc:
        raise ConfigError(f"--task {task} needs CLIP: {CLIP_HINT}; loading {cfg.clip_architecture} with "
                          f"weights {cfg.clip_weights!r} failed: {exc}") from None


def ranked_by_store(store: Store, queries: Mapping[str, np.ndarray], field_name: str, pair_ids: Sequence[str],
                    k: int, progress: Progress = _noop, stage: str = "") -> dict[str, list[str]]:
    """Each query vector through the store's kNN on ``field_name``, restricted to the pairs."""
    only_pairs = [Filter("id", "in", tuple(pair_ids))]
    out: dict[str, list[str]] = {}
    total = len(queries)
    for n, (qid, vector) in enumerate(queries.items(), start=1):
        runs = store.search(None, [VectorQuery(field_name, vector, field_name, max(k, 100))], k, only_pairs)
        out[qid] = [hit.id for hit in runs.get(field_name, [])][:k]
        if n % 50 == 0 or n == total:
            progress(stage, n, total)
    return out


def evaluate_text_image(
    task: TaskInput,
    config: TextImageConfig = TextImageConfig(),
    *,
    image_encoder: ImageEncoder | None = None,
    load_images: Callable[[Sequence[str]], list[Any]] | None = None,
) -> dict[str, Any]:
    """Recall@K of each direction, overall and per top category, over the held-out pairs.

    ``image_encoder`` defaults to the settings' CLIP (``load_clip``); ``load_images`` to an
    ``ImageLoader`` with the settings' cache and timeout.
    """
    products, settings, progress = task.products, task.settings, task.progress
    name = "/".join(config.directions)
    clip = image_encoder if image_encoder is not None else load_clip(settings, name)
    if load_images is None:
        from ..ingest.images import ImageLoader

        loader = ImageLoader(cache_dir=settings.image_cache, timeout=settings.image_timeout)
        workers = settings.image_workers

        def load_images(refs: Sequence[str]) -> list[Any]:
            return list(loader.load_many(refs, workers=workers))

    splits = split_products(products, config.split)
    held_out = [p for name in config.held_out for p in splits[name]]
    if not held_out:
        raise ConfigError(f"no {'/'.join(config.held_out)} products among {len(products)}: nothing to evaluate "
                          "(a larger catalogue or another --split)")
    digest = dataset_hash(held_out, f"{task.kind}:text-image")
    work_dir = Path(config.work_dir or settings.cache_dir / "eval")
    builder = IndexBuilder(held_out, digest, settings, work_dir, progress=progress, rebuild=config.rebuild)
    try:
        index = builder.with_encoders("text-image", image_encoder=clip, load_images=load_images)
        if CLIP_TITLE_VECTOR not in index.schema.vectors:  # a cached index from before CLIP titles
            builder.close()
            builder = IndexBuilder(held_out, digest, settings, work_dir, progress=progress, rebuild=True)
            index = builder.with_encoders("text-image", image_encoder=clip, load_images=load_images)
        store = index.store
        if not isinstance(store, VectorReader):
            raise StoreError(f"{type(store).__name__} cannot read stored vectors back")
        ids = [p.id for p in held_out]
        images = store.vectors(ids, IMAGE_VECTOR)
        titles = store.vectors(ids, CLIP_TITLE_VECTOR)
        pair_ids = [i for i in ids if i in images and i in titles]
        if not pair_ids:
            raise ConfigError(f"none of the {len(held_out)} held-out products has an image that could be read "
                              f"({dict(index.images_missing) or 'no image references'}): no pairs to evaluate")
        by_id = {p.id: p for p in held_out}
        qrels = matches({i: by_id[i].title for i in pair_ids})
        groups: dict[str, list[str]] = {}
        for i in pair_ids:
            for top in top_categories(by_id[i]):
                groups.setdefault(top, []).append(i)
        depth = max(config.ks)
        vectors = {IMAGE_VECTOR: images, CLIP_TITLE_VECTOR: titles}
        results: dict[str, Any] = {}
        for direction in config.directions:
            query_field, gallery_field, _ = DIRECTIONS[direction]
            queries = {i: vectors[query_field][i] for i in pair_ids}
            run = ranked_by_store(store, queries, gallery_field, pair_ids, depth, progress, f"{direction} queries")
            results[direction] = measure(run, qrels, groups, config.ks)
        shared = sum(1 for i in pair_ids if len(qrels[i]) > 1)
        manifest = clip.manifest
        return {
            "task": name,
            "dataset": task.dataset(),
            "config": config.to_json(),
            "encoder": {"id": manifest.get("id"), "kind": manifest.get("kind"), "dims": manifest.get("dims"),
                        "random": bool(manifest.get("random"))},
            "held_out": len(held_out),
            "pairs": len(pair_ids),
            "without_image": len(held_out) - len(pair_ids),
            "images_missing": dict(index.images_missing),
            "pairs_sharing_a_title": shared,
            "chance": chance(len(pair_ids), config.ks),
            "index": index.to_json(),
            "results": results,
            "seconds": task.seconds(),
        }
    finally:
        builder.close()


# ------------------------------------------------------------------------------ reports


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(report: Mapping[str, Any], command: str = "") -> str:
    ks = report["config"]["ks"]
    lines = ["# Text-image retrieval (titles and images of held-out products)", ""]
    if command:
        lines += ["```", command, "```", ""]
    enc = report["encoder"]
    lines += [(f"{report['pairs']} (title, image) pairs: the {'/'.join(report['config']['held_out'])} products "
               f"with an image ({report['without_image']} of {report['held_out']} without one); "
               f"{report['pairs_sharing_a_title']} pairs share their title with another. "
               f"CLIP {enc['id']}{' (random weights)' if enc['random'] else ''}; {report['seconds']} s."), ""]
    header = "| direction | queries | " + " | ".join(f"R@{k}" for k in ks) + " |"
    rule = "|---|---:|" + "---:|" * len(ks)
    lines += [header, rule]
    for direction, result in report["results"].items():
        row = result["overall"]
        lines.append(f"| {direction} | {row['n']} | " + " | ".join(_pct(row[f'recall@{k}']) for k in ks) + " |")
    lines.append("| chance | | " + " | ".join(_pct(report["chance"][f"recall@{k}"]) for k in ks) + " |")
    for direction, result in report["results"].items():
        lines += ["", f"## {direction} by top category ({DIRECTIONS[direction][2]})", "",
                  "| top category | queries | " + " | ".join(f"R@{k}" for k in ks) + " |", rule]
        for name, row in result["by_top_category"].items():
            lines.append(f"| {name} | {row['n']} | " + " | ".join(_pct(row[f'recall@{k}']) for k in ks) + " |")
    return "\n".join(lines) + "\n"


def write(report: Mapping[str, Any], out_dir: Path, command: str = "") -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "text-image-" + str(report["task"]).replace("/", "-")
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps({**report, "command": command}, indent=1, default=str), encoding="utf-8")
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(report, command), encoding="utf-8")
    return {"json": str(js), "markdown": str(md)}
