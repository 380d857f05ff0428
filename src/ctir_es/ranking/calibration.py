"""Serving fusion calibrated on the catalogue itself: the record, and where it lives.

``ctir-es calibrate`` (``ctir_es.calibrate``) measures category queries on a
held-out slice of the index's own products and picks a fusion method and weights; the
``Calibration`` it returns is kept with the index (``IndexMetadata``, key ``CALIBRATION_KEY``),
and ``Search`` uses it for category queries when the caller names no fusion and no weights.

A calibration is only valid for the encoders it was measured with: ``served_defaults`` compares
the encoder ids it recorded with the index's schema, and ignores a stale one with a notice
(logged once per store) rather than serving weights tuned for other vectors.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreError
from ..schema import IndexSchema
from ..store.base import IndexMetadata, Store
from ..vocabulary import FUSION_METHODS

log = logging.getLogger(__name__)

CALIBRATION_KEY = "serving-calibration.category"
FORMAT_VERSION = 1


def encoder_ids(schema: IndexSchema) -> dict[str, str]:
    """``{vector field: encoder id}``: what decides the vectors a calibration was measured on."""
    return {name: str(f.encoder.get("id", "")) for name, f in sorted(schema.vectors.items())}


@dataclass(frozen=True)
class Calibration:
    """The fusion a catalogue serves category queries with, and the evidence for it.

    ``figures`` are the reporting slice's means (``{system: {metric: value}}``) for at least
    ``calibrated``, ``default`` and every single source; ``sizes`` the products and queries of
    the tuning and reporting slices.
    """

    method: str
    weights: Mapping[str, float]
    metric: str
    figures: Mapping[str, Mapping[str, float]]
    sizes: Mapping[str, int]
    encoders: Mapping[str, str]
    created: str
    search: str = ""
    default: Mapping[str, Any] = field(default_factory=dict)
    hidden: Mapping[str, Any] | None = None  # the hidden-category measurement, when it was run
    settings: Mapping[str, Any] = field(default_factory=dict)  # seed, fractions, depth

    @property
    def sources(self) -> list[str]:
        return sorted(self.weights)

    def weights_for(self, sources: list[str]) -> dict[str, float] | None:
        """The weights for a query using ``sources``, or None when they are not the sources it
        was calibrated on (e.g. an encoder that did not load): the fixed defaults apply then."""
        if sorted(sources) != self.sources:
            return None
        return {name: float(self.weights[name]) for name in sources}

    def value(self, system: str, metric: str | None = None) -> float | None:
        return self.figures.get(system, {}).get(metric or self.metric)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "mode": "category",
            "method": self.method,
            "weights": dict(self.weights),
            "metric": self.metric,
            "figures": {k: dict(v) for k, v in self.figures.items()},
            "sizes": dict(self.sizes),
            "encoders": dict(self.encoders),
            "created": self.created,
            "search": self.search,
            "default": dict(self.default),
            "hidden": dict(self.hidden) if self.hidden is not None else None,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Calibration:
        """Raises ``StoreError`` naming what is wrong with a damaged or foreign record."""
        try:
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('version')!r}, expected {FORMAT_VERSION}")
            method = str(data["method"])
            if method not in FUSION_METHODS:
                raise ValueError(f"unknown fusion {method!r}")
            weights = {str(k): float(v) for k, v in dict(data["weights"]).items()}
            if not weights or any(not 0 <= w < float("inf") for w in weights.values()):
                raise ValueError("weights must be finite and >= 0")
            hidden = data.get("hidden")
            return cls(
                method=method,
                weights=weights,
                metric=str(data["metric"]),
                figures={str(k): {str(m): float(x) for m, x in dict(v).items()} for k, v in dict(data["figures"]).items()},
                sizes={str(k): int(v) for k, v in dict(data.get("sizes", {})).items()},
                encoders={str(k): str(v) for k, v in dict(data["encoders"]).items()},
                created=str(data["created"]),
                search=str(data.get("search", "")),
                default=dict(data.get("default") or {}),
                hidden=dict(hidden) if isinstance(hidden, Mapping) else None,
                settings=dict(data.get("settings") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"the stored serving calibration is not readable ({exc}); run `ctir-es calibrate` again") from None

    def stale_reason(self, schema: IndexSchema) -> str | None:
        """Why this calibration does not fit the index any more (encoders changed), or None."""
        now = encoder_ids(schema)
        if now == dict(self.encoders):
            return None
        changed = sorted(set(now) | set(self.encoders))
        diffs = [f"{name}: {self.encoders.get(name) or 'absent'} -> {now.get(name) or 'absent'}"
                 for name in changed if self.encoders.get(name) != now.get(name)]
        return "the index's encoders changed since it was calibrated (" + "; ".join(diffs) + ")"


def save_calibration(store: Store, calibration: Calibration) -> None:
    """Keep ``calibration`` with the index (replacing an earlier one)."""
    if not isinstance(store, IndexMetadata):
        raise StoreError(f"{type(store).__name__} cannot keep metadata with the index, so it cannot store a calibration")
    store.put_metadata(CALIBRATION_KEY, calibration.to_json())
    _forget(store)


def _forget(store: Store) -> None:
    """Drop the cached record of ``store`` (it was just replaced)."""
    try:
        _CACHE.pop(store, None)
    except TypeError:
        pass


def load_calibration(store: Store, schema: IndexSchema) -> tuple[Calibration | None, str | None]:
    """The stored calibration and, when it must not be used, why (stale, unreadable); both None
    when the index was never calibrated or the store keeps no metadata."""
    if not isinstance(store, IndexMetadata):
        return None, None
    raw = store.get_metadata(CALIBRATION_KEY)
    if raw is None:
        return None, None
    try:
        calibration = Calibration.from_json(raw)
    except StoreError as exc:
        return None, str(exc)
    return calibration, calibration.stale_reason(schema)


_NOTICED: set[tuple[int, str]] = set()  # (store, notice) pairs already logged in this process
# Serving reads the record at most once per CACHE_SECONDS per store (a query must not pay an
# extra round trip); a new calibration reaches a running server within that time.
CACHE_SECONDS = 30.0
_CACHE: weakref.WeakKeyDictionary[Any, tuple[float, Calibration | None]] = weakref.WeakKeyDictionary()


def served_defaults(store: Store, schema: IndexSchema) -> Calibration | None:
    """The calibration category queries are served with, or None for the fixed defaults
    (``ranking.plan.SOURCE_WEIGHTS`` with RRF). A stale or unreadable one is ignored with a
    logged notice that says how to refresh it."""
    now = time.monotonic()
    try:
        cached = _CACHE.get(store)
    except TypeError:  # a store that cannot be weakly referenced: read every time
        cached = None
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    calibration, problem = load_calibration(store, schema)
    if problem is not None:
        key = (id(store), problem)
        if key not in _NOTICED:
            _NOTICED.add(key)
            log.warning("serving calibration ignored: %s; fixed default fusion in use - run `ctir-es calibrate` "
                        "to measure it again", problem)
        calibration = None
    try:
        _CACHE[store] = (now, calibration)
    except TypeError:
        pass
    return calibration


def served_fusion(
    store: Store, schema: IndexSchema, sources: list[str]
) -> tuple[str | None, dict[str, float] | None]:
    """``(method, weights)`` for a category query over ``sources`` from the index's calibration,
    or ``(None, None)`` when there is none in force (the caller's fixed defaults apply)."""
    calibration = served_defaults(store, schema)
    weights = calibration.weights_for(sources) if calibration is not None else None
    if calibration is None or weights is None:
        return None, None
    return calibration.method, weights


def calibration_summary(store: Store, schema: IndexSchema) -> dict[str, Any]:
    """What ``stats`` (CLI and HTTP) show: the fusion category queries are served with, and
    the evidence (P@10 of the calibration and of the fixed default on the reporting slice)."""
    calibration, problem = load_calibration(store, schema)
    if calibration is None and problem is None:
        return {"status": "none", "note": "fixed default fusion (run `ctir-es calibrate`)"}
    if calibration is None:
        return {"status": "ignored", "note": problem}
    out: dict[str, Any] = {
        "status": "ignored" if problem else "in force",
        "method": calibration.method,
        "weights": dict(calibration.weights),
        "metric": calibration.metric,
        "calibrated": calibration.value("calibrated"),
        "default": calibration.value("default"),
        "best_single": max(
            (calibration.value(s) or 0.0 for s in calibration.sources if s in calibration.figures), default=None
        ),
        "report_products": calibration.sizes.get("report_products"),
        "report_queries": calibration.sizes.get("report_queries"),
        "created": calibration.created,
        "tuned_for": calibration.settings.get("tune_for", "visible"),
    }
    if problem:
        out["note"] = problem
    return out
