"""CLIP-ITA's product features for the products an index already holds.

The frozen encoders' outputs are mostly in the index already: the ``title`` feature is the
title through the text encoder (``encode_documents``), which is exactly the stored
``title_vector``, and the ``image`` feature is the first image through CLIP's image tower,
exactly the stored ``image_vector`` (zeros where a product has none). They are read back, not
recomputed, so ``learn`` never refetches an image. Only the ``attributes`` feature (the mean
of each ``"name: value"`` embedding) is computed, through the training feature cache, so a
second run (or a resumed one) reads it back too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..encoders.base import ImageEncoder, TextEncoder
from ..errors import StoreError
from ..products import Product
from ..store.base import IdLister, Store, VectorReader
from ..training.features import FeatureCache, product_feature_matrices
from ..vocabulary import IMAGE_VECTOR, TITLE_VECTOR

CHUNK = 1000  # products per store round trip
STORED: dict[str, str] = {"title": TITLE_VECTOR, "image": IMAGE_VECTOR}  # modality -> vector field
Progress = Callable[[str, int, int], None]


def _noop(stage: str, done: int, total: int) -> None:
    return None


def stored_products(store: Store, ids: Sequence[str] | None = None, progress: Progress = _noop) -> list[Product]:
    """Every product of the index (or of ``ids``), in id order."""
    if ids is None:
        if not isinstance(store, IdLister):
            raise StoreError(f"{type(store).__name__} cannot list its products, so `learn` cannot read them")
        ids = store.ids()
    out: list[Product] = []
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        found = store.get(chunk)
        out.extend(found[i].product for i in chunk if i in found)
        progress("reading products", min(start + CHUNK, len(ids)), len(ids))
    return out


def stored_matrix(store: Store, ids: Sequence[str], field: str, dims: int) -> np.ndarray:
    """The stored ``field`` vectors of ``ids`` as rows (zeros for a product without one)."""
    if not isinstance(store, VectorReader):
        raise StoreError(f"{type(store).__name__} cannot return stored vectors, so `learn` cannot reuse them")
    out = np.zeros((len(ids), dims), dtype=np.float32)
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        found = store.vectors(chunk, field)
        for j, pid in enumerate(chunk):
            vec = found.get(pid)
            if vec is not None:
                out[start + j] = vec
    return out


def product_features(
    store: Store,
    products: Sequence[Product],
    modalities: Sequence[str],
    *,
    text_encoder: TextEncoder,
    image_encoder: ImageEncoder | None,
    stored_fields: Sequence[str],
    cache_dir: Path | None,
    progress: Progress = _noop,
) -> dict[str, np.ndarray]:
    """``{modality: (N, dims)}`` aligned with ``products``: stored vectors where the index has
    them, the attribute feature (and anything not stored) computed through the cache."""
    ids = [p.id for p in products]
    out: dict[str, np.ndarray] = {}
    computed: list[str] = []
    for modality in modalities:
        field = STORED.get(modality)
        if field is not None and field in stored_fields:
            encoder = image_encoder if modality == "image" else text_encoder
            if encoder is None:
                raise StoreError(f"the {modality} modality needs its encoder to know the vectors' dims")
            out[modality] = stored_matrix(store, ids, field, encoder.dims)
            progress(f"{modality} features (stored)", len(ids), len(ids))
        else:
            computed.append(modality)
    if computed:
        if "image" in computed:
            raise StoreError("the index holds no image vectors to train the image modality on: "
                             "ingest with CLIP weights first, or train the text modalities")
        cache = FeatureCache(cache_dir / "features") if cache_dir is not None else None
        feats, _ = product_feature_matrices(products, computed, text_encoder=text_encoder, image_encoder=None,
                                            cache=cache, progress=progress)
        out.update(feats)
    return out
