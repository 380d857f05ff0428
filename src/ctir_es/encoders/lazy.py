"""Lazy, thread-safe loading, shared by every encoder class.

Construction does no I/O. ``load()`` - or the first use of ``dims``, ``manifest`` or an
``encode_*`` method - loads the model once, even when several threads ask at the same time
(a search service warms up while requests arrive). A subclass implements ``_load()``: it sets
up the model and returns the manifest, which is published last, so a thread that sees a
manifest also sees a ready model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Self, TypeVar

import numpy as np

from ..errors import EncoderError, one_line
from .base import l2_normalise

T = TypeVar("T")


class LazyEncoder:
    """Base of the encoder classes: ``model_name``, ``batch_size``, the lock, ``load()``,
    ``dims`` / ``manifest``, and batching helpers."""

    label: ClassVar[str] = "model"  # what the model is in error messages, e.g. "text model"

    def __init__(self, model_name: str, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_name = model_name
        self.batch_size = batch_size
        self._manifest: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        """Load the model; return its manifest (at least ``id``, ``dims``)."""
        raise NotImplementedError

    def _repr_fields(self) -> dict[str, Any]:
        """Keyword fields ``repr`` shows after the model name."""
        return {}

    def __repr__(self) -> str:
        fields = "".join(f", {k}={v!r}" for k, v in self._repr_fields().items())
        return f"{type(self).__name__}({self.model_name!r}{fields}, loaded={self.loaded})"

    @property
    def loaded(self) -> bool:
        return self._manifest is not None

    def load(self) -> Self:
        """Load now, so that a missing or broken model shows at start-up."""
        self._loaded_manifest()
        return self

    def _loaded_manifest(self) -> dict[str, Any]:
        manifest = self._manifest
        if manifest is None:
            with self._lock:
                if self._manifest is None:
                    self._manifest = self._load()
                manifest = self._manifest
        return manifest

    @property
    def dims(self) -> int:
        return int(self._loaded_manifest()["dims"])

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self._loaded_manifest())

    def _no_rows(self) -> np.ndarray:
        """The answer to an empty input: ``(0, dims)`` float32."""
        return np.zeros((0, self.dims), dtype=np.float32)

    def _in_batches(self, items: Sequence[T], encode: Callable[[Sequence[T], int], np.ndarray]) -> np.ndarray:
        """``encode(batch, start)`` over ``batch_size`` slices of ``items`` (``start``: the
        position of the batch's first item), stacked and L2-normalised, aligned with ``items``."""
        if not items:
            return self._no_rows()
        out = [encode(items[start:start + self.batch_size], start) for start in range(0, len(items), self.batch_size)]
        return l2_normalise(np.concatenate(out))

    def _failed(self, exc: BaseException, doing: str = "failed") -> EncoderError:
        """The error to raise when running the model raised ``exc``."""
        return EncoderError(f"{self.label} {self.model_name!r} {doing}: {one_line(exc)}")
