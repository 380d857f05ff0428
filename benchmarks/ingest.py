"""End-to-end ingest through the real ``Pipeline``: products/s, the time split into read,
image decode, encode and index, the overhead over pure encoder time, and peak RSS.

    python benchmarks/ingest.py flipkart [--limit N] [--json out.json]   # ONNX MiniLM + CLIP ViT-B-32 (random weights)
    python benchmarks/ingest.py synthetic --n 100000 [--json out.json]   # text plus synthetic vectors

Each case runs in its own process (``run.py`` starts one per case) so peak RSS is its own.
Image decoding runs in the pipeline's prefetch thread, overlapped with encoding, so the
split's parts add up to more than the wall time; "overhead" is wall time over the time the
same encoders take on the same inputs alone (images pre-decoded).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from memory import file_bytes, peak_rss_bytes
from synthetic import Catalogue

from ctir_es.ingest.pipeline import IngestOptions, Pipeline
from ctir_es.ingest.report import IngestReport
from ctir_es.store.embedded import EmbeddedStore

FLIPKART = Path(os.environ.get("CTIR_ES_FLIPKART_DIR", Path(__file__).resolve().parents[2] / "shared/datasets/flipkart-1050"))


class Clock:
    def __init__(self) -> None:
        self.t: dict[str, float] = {"read": 0.0, "decode": 0.0, "encode": 0.0, "index": 0.0}

    def add(self, key: str, since: float) -> None:
        self.t[key] += time.perf_counter() - since


def timed_iter(items: Iterable[Any], clock: Clock) -> Iterator[Any]:
    it = iter(items)
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        clock.add("read", t)
        yield item


class TimedEncoder:
    """Wraps an encoder; every encode_* call counts as 'encode'."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self._inner, self._clock = inner, clock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not name.startswith("encode"):
            return attr

        def wrapped(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return attr(*a, **kw)
            finally:
                self._clock.add("encode", t)
        return wrapped


class TimedStore:
    def __init__(self, inner: EmbeddedStore, clock: Clock) -> None:
        self._inner, self._clock = inner, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def upsert(self, docs: Sequence[Any], checkpoint: Any = None) -> Any:
        t = time.perf_counter()
        try:
            return self._inner.upsert(docs, checkpoint=checkpoint)
        finally:
            self._clock.add("index", t)


class SyntheticEncoder:
    """A 'text encoder' that returns the catalogue's synthetic vectors (no model cost)."""

    def __init__(self, cat: Catalogue) -> None:
        self.cat, self.dims = cat, cat.dims
        self.manifest = {"id": f"synthetic-{cat.dims}", "name": "synthetic", "dims": cat.dims, "kind": "text"}
        self._rng = np.random.default_rng(0)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        m = self._rng.standard_normal((len(texts), self.dims)).astype(np.float32)
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    encode_queries = encode_documents


def run_pipeline(products: Iterable[Any], store_path: Path, text: Any, image: Any, load: Any,
                 batch: int) -> dict[str, Any]:
    clock = Clock()
    store = EmbeddedStore(store_path)

    def timed_load(refs: Sequence[str]) -> list[Any]:
        t = time.perf_counter()
        try:
            return load(refs)
        finally:
            clock.add("decode", t)

    pipe = Pipeline(TimedStore(store, clock), text_encoder=TimedEncoder(text, clock) if text else None,  # type: ignore[arg-type]
                    image_encoder=TimedEncoder(image, clock) if image else None,
                    load_images=timed_load if load else None, options=IngestOptions(batch_size=batch))
    report = IngestReport()
    t = time.perf_counter()
    pipe.run(timed_iter(products, clock), report)
    wall = time.perf_counter() - t
    store.close()
    return {"wall_s": wall, "split_s": clock.t, "indexed": report.indexed, "products_per_s": report.indexed / wall,
            "file_bytes": file_bytes(store_path)}


def flipkart(limit: int | None, batch: int, rounds: int, models_dir: Path | None) -> dict[str, Any]:
    from ctir_es.encoders import OnnxClipEncoder, OnnxTextEncoder
    from ctir_es.encoders.models import default_models_dir
    from ctir_es.ingest.images import ImageLoader
    from ctir_es.ingest.readers import get_reader

    models = models_dir or default_models_dir()
    text = OnnxTextEncoder(models / "all-MiniLM-L6-v2", batch_size=batch).load()
    clip_dir = models / "ViT-B-32-random-seed0"
    image = OnnxClipEncoder(clip_dir, batch_size=batch).load() if clip_dir.is_dir() else None
    loader = ImageLoader(cache_dir=Path(tempfile.mkdtemp()) / "img")

    def products() -> list[Any]:
        items = list(get_reader("flipkart")(FLIPKART, IngestReport()))
        return items[:limit] if limit else items

    runs = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            source = itertools.islice(get_reader("flipkart")(FLIPKART, IngestReport()), limit)
            runs.append(run_pipeline(source, Path(tmp) / "s.db", text, image,
                                     lambda refs: loader.load_many(refs, workers=2), batch))
    # pure encoder time on the same inputs, images decoded beforehand
    items = products()
    titles = [p.title for p in items]
    imgs = [im for im in loader.load_many([p.images[0] for p in items if p.images], workers=2)
            if not isinstance(im, Exception)]
    enc = []
    for _ in range(rounds):
        t = time.perf_counter()
        for i in range(0, len(titles), batch):
            text.encode_documents(titles[i : i + batch])
        for i in range(0, len(imgs), batch):
            if image is not None:
                image.encode_images(imgs[i : i + batch])
        for i in range(0, len(titles), batch):  # the pipeline's CLIP title vectors (clip_titles, on by default)
            if image is not None and IngestOptions().clip_titles:
                image.encode_texts(titles[i : i + batch])
        enc.append(time.perf_counter() - t)
    out = summarise(runs)
    out.update({"case": "flipkart-1050", "products": len(items), "images": len(imgs), "batch": batch,
                "encoders": {"text": "onnx all-MiniLM-L6-v2 fp32",
                             "image": "onnx CLIP ViT-B-32 (random weights) fp32, images and titles" if image else None},
                "encoder_only_s": float(np.median(enc)), "encoder_only_runs_s": enc})
    out["overhead"] = out["wall_s"] / out["encoder_only_s"] - 1
    return out


def synthetic(n: int, dims: int, batch: int, rounds: int) -> dict[str, Any]:
    cat = Catalogue(n, dims)
    runs = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            leaves = cat.leaves()
            prods = (p for s in range(0, n, 10_000) for p in cat.products(s, min(n, s + 10_000), leaves))
            runs.append(run_pipeline(prods, Path(tmp) / "s.db", SyntheticEncoder(cat), None, None, batch))
    out = summarise(runs)
    out.update({"case": f"synthetic-{n}", "products": n, "dims": dims, "batch": batch,
                "encoders": {"text": "synthetic random unit vectors (no model)"}})
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    med = runs[int(np.argsort(walls)[len(walls) // 2])]
    return {"wall_s": float(np.median(walls)), "wall_min_s": min(walls), "wall_max_s": max(walls),
            "products_per_s": med["products_per_s"], "split_s": med["split_s"], "indexed": med["indexed"],
            "file_bytes": med["file_bytes"], "rounds": len(runs), "peak_rss_bytes": peak_rss_bytes()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case", choices=["flipkart", "synthetic"])
    p.add_argument("--limit", type=int, default=None, help="flipkart: first N products")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=384)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--models-dir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    res = (flipkart(a.limit, a.batch, a.rounds, a.models_dir) if a.case == "flipkart"
           else synthetic(a.n, a.dims, a.batch, a.rounds))
    text = json.dumps(res, indent=2)
    if a.json:
        a.json.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
