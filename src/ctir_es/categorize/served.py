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

CATEGORIZE_KEY = "serving-calibration.categorize"
FORMAT_VERSION = 1


def save_weights(store: Store, schema: IndexSchema, weights: Mapping[str, float], evidence: Mapping[str, Any]) -> None:
    if isinstance(store, IndexMetadata):
        store.put_metadata(CATEGORIZE_KEY, {"version": FORMAT_VERSION, "weights": dict(weights),
                                            "encoders": encoder_ids(schema), "evidence": dict(evidence)})


def served_weights(store: Store, schema: IndexSchema) -> dict[str, float] | None:
    """The stored weights when they were tuned on the index's current encoders, else None."""
    if not isinstance(store, IndexMetadata):
        return None
    raw = store.get_metadata(CATEGORIZE_KEY)
    if not raw or raw.get("version") != FORMAT_VERSION or raw.get("encoders") != encoder_ids(schema):
        return None
    try:
        weights = {str(k): float(v) for k, v in dict(raw["weights"]).items()}
    except (KeyError, TypeError, ValueError):
        return None
    if not weights or any(not 0 <= w < float("inf") for w in weights.values()):
        return None
    return weights
