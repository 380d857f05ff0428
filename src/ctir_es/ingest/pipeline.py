"""The ingest pipeline: products -> (images, vectors) -> store, in batches.

- Images of the next batch are fetched and decoded in a thread while the current batch is
  encoded, so encoding (the expensive part) rarely waits for I/O.
- Each batch commits together with a checkpoint (its last position in the source), so a
  killed ingest resumes where it stopped; upsert by id means a product is never duplicated.
- Nothing is dropped silently: store errors, missing images and duplicates are counted.
- With a CLIP encoder, each title also goes through CLIP's text tower (``clip_title_vector``),
  so image queries find products by their titles too, including products without a photo.
- Typed values (``Product.values``) are typed and normalised (``ingest/value_types.py``): the
  first ``INFER_SAMPLE`` products are read ahead once to infer the types nothing else gives;
  the types join the index's schema before the first product that carries them is written.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np
from PIL import Image

from ..encoders.base import CategoryEncoder, ImageEncoder, TextEncoder
from ..errors import ImageError, StoreError
from ..learned import note_written
from ..products import Product
from ..schema import Document, IndexSchema, VectorField
from ..store.base import Store
from ..vocabulary import CLIP_ITA_VECTOR, CLIP_TITLE_VECTOR, IMAGE_VECTOR, TITLE_VECTOR
from .report import MERGED_AFTER_NORMALISING, IngestReport
from .value_types import INFER_SAMPLE, ValueTyper

# Decoded images are shrunk right after loading: CLIP needs 224-336 px, and a batch of
# full-size catalogue photos would otherwise hold hundreds of MB.
MAX_IMAGE_SIDE = 768

ImageLoad = Callable[[Sequence[str]], list[Image.Image | ImageError]]


@dataclass(frozen=True)
class IngestOptions:
    batch_size: int = 64
    with_images: bool = True  # fetch images (needed for image vectors; reports missing ones)
    resume: bool = True
    clip_titles: bool = True  # with a CLIP encoder, also encode titles with its text tower


@dataclass(frozen=True)
class _Loaded:
    """One product's image outcome: the decoded image, or why there is none."""

    ref: str | None
    image: Image.Image | None
    error: str | None = None
    detail: str = ""


def index_schema(text_encoder: TextEncoder | None, image_encoder: ImageEncoder | None,
                 clip_ita: CategoryEncoder | None = None, *, clip_titles: bool = True) -> IndexSchema:
    vectors = {}
    if text_encoder is not None:
        vectors[TITLE_VECTOR] = VectorField(text_encoder.dims, "cosine", text_encoder.manifest)
    if image_encoder is not None:
        vectors[IMAGE_VECTOR] = VectorField(image_encoder.dims, "cosine", image_encoder.manifest)
        if clip_titles:  # CLIP's text tower: the same manifest, the same space as the images
            vectors[CLIP_TITLE_VECTOR] = VectorField(image_encoder.dims, "cosine", image_encoder.manifest)
    if clip_ita is not None:
        vectors[CLIP_ITA_VECTOR] = VectorField(clip_ita.dims, "cosine", clip_ita.manifest)
    return IndexSchema(vectors)


def source_key(kind: str, path: str | Path | None, extra: str = "") -> str:
    """A checkpoint key that changes when the source file changes (path, size, mtime)."""
    parts = [kind, extra]
    if path is not None:
        p = Path(path)
        try:
            st = p.stat()
            parts += [str(p.resolve()), str(st.st_size), str(st.st_mtime_ns)]
        except OSError:
            parts.append(str(p))
    return f"{kind}:{hashlib.sha1('|'.join(parts).encode()).hexdigest()[:16]}"


def _batches(items: Iterable[tuple[int, Product]], size: int) -> Iterator[list[tuple[int, Product]]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _load_images(products: Sequence[Product], load: ImageLoad | None) -> list[_Loaded]:
    out: list[_Loaded] = []
    refs = [p.images[0] if p.images else None for p in products]
    wanted = [r for r in refs if r is not None]
    results = iter(load(wanted) if (load and wanted) else [])
    for ref in refs:
        if ref is None:
            out.append(_Loaded(None, None, "no_image"))
        elif load is None:
            out.append(_Loaded(ref, None))  # images not fetched: keep the reference for display
        else:
            res = next(results)
            if isinstance(res, ImageError):
                out.append(_Loaded(ref, None, res.reason, res.detail))
            else:
                res.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.BICUBIC)
                out.append(_Loaded(ref, res))
    return out


class Pipeline:
    """Encode and index products into a store. Create one per ingest run."""

    def __init__(
        self,
        store: Store,
        *,
        text_encoder: TextEncoder | None,
        image_encoder: ImageEncoder | None,
        load_images: ImageLoad | None,
        options: IngestOptions = IngestOptions(),
        clip_ita: CategoryEncoder | None = None,
        index_model: Callable[[IndexSchema], CategoryEncoder | None] | None = None,
        value_types: ValueTyper | None = None,
    ) -> None:
        """``index_model``: when no ``clip_ita`` model is given, called with the schema in force
        to load the model the index already holds (so later ingests add its vector).
        ``value_types``: the config's and the reader's value types (default: inferred only)."""
        self.store = store
        self.values = value_types or ValueTyper()
        self.index_model = index_model
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.clip_ita = clip_ita  # a trained CLIP-ITA model: adds the clip_ita product vector
        self.load_images = load_images if options.with_images else None
        self.options = options

    def run(
        self,
        products: Iterable[Product],
        report: IngestReport,
        checkpoint_key: str | None = None,
        on_batch: Callable[[IngestReport], None] | None = None,
    ) -> IngestReport:
        # Stores that can be written by one process at a time say so (the embedded file);
        # Elasticsearch serialises writes itself.
        lock = getattr(self.store, "exclusive_writer", None)
        with lock() if lock else contextlib.nullcontext():
            before = report.indexed
            try:
                return self._run(products, report, checkpoint_key, on_batch)
            finally:
                # what was committed counts even when the run fails later: the learned model's
                # staleness (ctir_es.learned); one metadata read (and write) per run
                note_written(self.store, report.indexed - before)

    def _run(
        self,
        products: Iterable[Product],
        report: IngestReport,
        checkpoint_key: str | None,
        on_batch: Callable[[IngestReport], None] | None,
    ) -> IngestReport:
        schema = self.store.setup(index_schema(self.text_encoder, self.image_encoder, self.clip_ita,
                                               clip_titles=self.options.clip_titles))
        if self.clip_ita is None and self.index_model is not None:
            self.clip_ita = self.index_model(schema)
        self.schema = schema
        self.values.start(schema.values, report)
        start = self.store.checkpoint(checkpoint_key) if (checkpoint_key and self.options.resume) else None
        seen: set[str] = set()

        def numbered() -> Iterator[tuple[int, Product]]:
            for position, product in enumerate(products, start=1):
                if product.id in seen:
                    report.duplicates += 1  # the later record wins (upsert by id)
                    if product.id in report.respelled_ids:  # "a " and "a", or NFD and NFC "é"
                        report.note(MERGED_AFTER_NORMALISING)
                seen.add(product.id)
                if start is not None and position <= start:
                    report.skipped_resumed += 1
                    continue
                yield position, product

        def typed() -> Iterator[tuple[int, Product]]:
            items = numbered()
            ahead = list(islice(items, INFER_SAMPLE))  # the types nothing declares: inferred from these
            self._add_value_types([p for _, p in ahead])
            return chain(ahead, items)

        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctir-images") as pool:
                pending: tuple[list[tuple[int, Product]], Future[list[_Loaded]]] | None = None
                for batch in _batches(typed(), self.options.batch_size):
                    future = pool.submit(_load_images, [p for _, p in batch], self.load_images)
                    if pending is not None:
                        self._index_batch(*pending, report, checkpoint_key)
                        if on_batch:
                            on_batch(report)
                    pending = (batch, future)
                if pending is not None:
                    self._index_batch(*pending, report, checkpoint_key)
                    if on_batch:
                        on_batch(report)
        except StoreError as exc:
            if not checkpoint_key:
                raise
            # say what is safe and how to go on (the store failed, e.g. a node died)
            raise StoreError(
                f"{exc} - {report.indexed} products were committed in this run with their "
                "checkpoint; nothing committed is lost: run the same ingest again to resume "
                "from there"
            ) from None
        if checkpoint_key:
            self.store.clear_checkpoint(checkpoint_key)  # complete: a later run starts afresh
        return report

    def _index_batch(
        self,
        batch: list[tuple[int, Product]],
        images: Future[list[_Loaded]],
        report: IngestReport,
        checkpoint_key: str | None,
    ) -> None:
        self._add_value_types([p for _, p in batch])  # names first seen after the sample
        products = [self.values.apply(p, report) for _, p in batch]
        loaded = images.result()
        title_vecs = (
            self.text_encoder.encode_documents([p.title for p in products]) if self.text_encoder else None
        )
        image_vecs: dict[int, np.ndarray] = {}
        decoded = [i for i, item in enumerate(loaded) if item.image is not None]
        if self.image_encoder is not None and decoded:
            vecs = self.image_encoder.encode_images([loaded[i].image for i in decoded])  # type: ignore[misc]
            image_vecs = dict(zip(decoded, vecs, strict=True))
        clip_title_vecs = (
            self.image_encoder.encode_texts([p.title for p in products])
            if self.image_encoder is not None and self.options.clip_titles else None
        )
        clip_ita_vecs = self._clip_ita_vectors(products, loaded, title_vecs, image_vecs)

        docs = []
        for i, product in enumerate(products):
            item = loaded[i]
            if item.error:
                report.image_missing(product.id, item.error, item.detail)
            vectors = {}
            if title_vecs is not None:
                vectors[TITLE_VECTOR] = title_vecs[i]
            if i in image_vecs:
                vectors[IMAGE_VECTOR] = image_vecs[i]
            if clip_title_vecs is not None:
                vectors[CLIP_TITLE_VECTOR] = clip_title_vecs[i]
            if clip_ita_vecs is not None:
                vectors[CLIP_ITA_VECTOR] = clip_ita_vecs[i]
            shown = item.ref if (item.image is not None or (item.ref and not item.error)) else None
            docs.append(Document(product, vectors, shown))
        # Within a batch the last record of an id wins, as it does across batches.
        unique = list({d.product.id: d for d in docs}.values())
        checkpoint = (checkpoint_key, batch[-1][0]) if checkpoint_key else None
        result = self.store.upsert(unique, checkpoint=checkpoint)
        report.indexed += result.written
        for pid, reason in result.errors.items():
            report.reject(pid, "store_error", reason)

    def _add_value_types(self, products: Sequence[Product]) -> None:
        """Type the value names of ``products`` the index does not hold yet, and put them into
        its schema before any product carrying them is written."""
        new = self.values.learn(products)
        if new:
            wanted = IndexSchema(self.schema.vectors, {**self.schema.values, **new})
            self.schema = self.store.setup(wanted)

    def _clip_ita_vectors(self, products: list[Product], loaded: list[_Loaded], title_vecs: np.ndarray | None,
                          image_vecs: dict[int, np.ndarray]) -> np.ndarray | None:
        """The CLIP-ITA product head over the batch, reusing title / image vectors computed above
        when they come from the encoders the model was trained on."""
        if self.clip_ita is None:
            return None
        ref = self.clip_ita.manifest
        reuse: dict[str, np.ndarray] = {}
        text_id = (ref.get("text_encoder") or {}).get("id")
        if title_vecs is not None and self.text_encoder is not None and self.text_encoder.manifest.get("id") == text_id:
            reuse["title"] = title_vecs
        image_id = (ref.get("image_encoder") or {}).get("id")
        if self.image_encoder is not None and image_id and self.image_encoder.manifest.get("id") == image_id:
            dims = self.image_encoder.dims
            reuse["image"] = np.stack([image_vecs.get(i, np.zeros(dims, dtype=np.float32))
                                       for i in range(len(products))])
        return self.clip_ita.encode_products(products, [item.image for item in loaded], precomputed=reuse)
