"""Encoder protocols. Every encoder returns L2-normalised float32 rows aligned with its input.

Each encoder carries a manifest (plain JSON data) that the index stores, so the query side
can check it uses the same model that built the index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image


@runtime_checkable
class TextEncoder(Protocol):
    """Sentence embeddings for queries (category names, search text) and product text."""

    @property
    def dims(self) -> int: ...

    @property
    def manifest(self) -> dict[str, Any]:
        """At least ``id`` (stable, changes with the weights), ``name``, ``dims``, ``kind``."""
        ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class ImageEncoder(Protocol):
    """A CLIP-style pair of towers: images and texts land in one space."""

    @property
    def dims(self) -> int: ...

    @property
    def manifest(self) -> dict[str, Any]: ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


# Beside the products, a category encoder takes their decoded images (None: no image) and
# modality features already at hand (``title`` / ``image`` rows).
ProductImages = Sequence[Image.Image | None]
Precomputed = Mapping[str, np.ndarray]


@runtime_checkable
class CategoryEncoder(Protocol):
    """A trained category-to-product model (CLIP-ITA): category texts and products land in one
    space. ``encode_products`` takes the products and their decoded images (None: no image)."""

    @property
    def dims(self) -> int: ...

    @property
    def manifest(self) -> dict[str, Any]: ...

    def encode_categories(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_products(self, products: Sequence[Any], images: ProductImages | None = None,
                        precomputed: Precomputed | None = None) -> np.ndarray:
        """``precomputed``: modality features already at hand (``title`` / ``image`` rows)."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# What must agree between the encoder that built an index and the one that queries it. The
# id names the weights (and the quantisation); the rest would change vectors without changing
# the id. Torch and ONNX manifests of the same weights keep these in different places.
_SIGNATURE_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "id": (("id",),),
    "dims": (("dims",),),
    "normalised": (("normalised",),),
    "max_seq_length": (("max_seq_length",), ("text", "max_seq_length")),
    "image size": (("image", "size"),),
    "image mean": (("image", "mean"),),
    "image std": (("image", "std"),),
    "image interpolation": (("image", "interpolation"),),
    "image resize_mode": (("image", "resize_mode"),),
    "context_length": (("context_length",), ("text", "context_length")),
}


def _lookup(manifest: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = manifest
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return list(value) if isinstance(value, tuple) else value


def manifest_signature(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an encoder manifest that decide its vectors, wherever the manifest keeps them."""
    out = {}
    for name, paths in _SIGNATURE_PATHS.items():
        for path in paths:
            value = _lookup(manifest, path)
            if value is not None:
                out[name] = value
                break
    return out


def manifest_differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    """``"key: index X, loaded Y"`` for each signature field both manifests state and differ on."""
    mine, theirs = manifest_signature(expected), manifest_signature(actual)
    return [f"{key}: index {mine[key]!r}, loaded {theirs[key]!r}"
            for key in mine if key in theirs and mine[key] != theirs[key]]
