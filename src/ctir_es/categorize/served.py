"""Categorize signal weights tuned on the catalogue itself (by ``ctir-es learn``), kept with
the index and served by ``Search.categorize`` and ``Search.audit``.

Like the query calibration (``ranking.calibration``), the record names the encoders it was
tuned with; when the index's encoders changed since, it is ignored and the measured defaults
(``categorize.engine.DEFAULT_WEIGHTS``) apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..ranking.calibration import encoder_ids
from ..schema import IndexSchema
from ..store.base import IndexMetadata, Store
from .core import SignalWeights

CATEGORIZE_KEY = "serving-calibration.categorize"
FORMAT_VERSION = 1


def save_weights(store: Store, schema: IndexSchema, weights: SignalWeights, evidence: Mapping[str, Any]) -> None:
    if isinstance(store, IndexMetadata):
        store.put_metadata(CATEGORIZE_KEY, {"version": FORMAT_VERSION, "weights": dict(weights.default),
                                            "levels": {str(lv): dict(w) for lv, w in weights.levels.items()},
                                            "encoders": encoder_ids(schema), "evidence": dict(evidence)})


def _weights(raw: Any) -> dict[str, float] | None:
    try:
        weights = {str(k): float(v) for k, v in dict(raw).items()}
    except (TypeError, ValueError):
        return None
    if not weights or any(not 0 <= w < float("inf") for w in weights.values()):
        return None
    return weights


def served_weights(store: Store, schema: IndexSchema) -> SignalWeights | None:
    """The stored weights (per level when tuned so) when they were tuned on the index's current
    encoders, else None."""
    if not isinstance(store, IndexMetadata):
        return None
    raw = store.get_metadata(CATEGORIZE_KEY)
    if not raw or raw.get("version") != FORMAT_VERSION or raw.get("encoders") != encoder_ids(schema):
        return None
    default = _weights(raw.get("weights"))
    if default is None:
        return None
    levels: dict[int, dict[str, float]] = {}
    for level, given in dict(raw.get("levels") or {}).items():
        weights = _weights(given)
        if weights is None or not str(level).isdigit():
            return None  # a damaged record serves the defaults, not half of itself
        levels[int(level)] = weights
    return SignalWeights(default, levels)
