"""Encoder protocols. Every encoder returns L2-normalised float32 rows aligned with its input.

Each encoder carries a manifest (plain JSON data) that the index stores, so the query side
can check it uses the same model that built the index.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
