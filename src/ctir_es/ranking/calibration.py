"""Serving fusion calibrated on the catalogue itself: the record, and where it lives.

``ctir-es calibrate`` (``ctir_es.calibrate``) measures category queries on a
held-out slice of the index's own products and picks a fusion method and weights; the
``Calibration`` it returns is kept with the index (``IndexMetadata``, key ``CALIBRATION_KEY``),
and ``Search`` uses it for category queries when the caller names no fusion and no weights.

A calibration is only valid for the encoders it was measured with: ``served_defaults`` compares
the encoder ids it recorded with the index's schema, and ignores a stale one with a notice
(logged once per store) rather than serving weights tuned for other vectors.

**Groups.** When the index serves a trained CLIP-ITA model (``ctir-es learn``), its category
head is reliable for the categories it saw in training and not for the others, where the
zero-shot sources (BM25, the frozen text encoder) generalise better. The calibration then also
holds weights per group of category queries (``GROUPS``): ``seen`` (the query's node is one
the served model trained on, ``seen_distance`` 0) and ``unseen`` (the rest), each tuned on the
tuning slice's queries of that group. A group with fewer than ``MIN_GROUP_QUERIES`` tuning
queries has no entry and is served the single (all-query) weights, as is every query when the
model's seen list cannot be read. Records written before groups existed load unchanged (no
``groups``: the single weights for every query).

Within ``seen``, the catalogue's **roots** (``seen_root``) may have weights of their own: they
are the broadest queries, and a root's name shares words with deeper categories of other
branches ("Kitchen & Dining" and "Kitchen Linen Sets" under Home Furnishing), so BM25 misleads
most there. A catalogue has few roots, so this group rarely reaches ``MIN_GROUP_QUERIES``; it
gets its own weights only when they beat the ``seen`` ones clearly on its tuning queries (a sign
test over the relevant top-10 results, ``ctir_es.calibrate``), and is served the ``seen``
weights (``FALLBACK``) otherwise.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreError
from ..products import CategoryPath
from ..schema import IndexSchema
from ..store.base import IndexMetadata, Store
from ..vocabulary import FUSION_METHODS

log = logging.getLogger(__name__)

CALIBRATION_KEY = "serving-calibration.category"
FORMAT_VERSION = 1  # groups are an optional key: older readers ignore them, older records have none
GROUPS = ("seen", "unseen", "seen_root")  # in tuning order: a group is tuned after its fallback
FALLBACK = {"seen_root": "seen"}  # a group without weights of its own is served these, else the single ones
ALL_QUERIES = "all"  # the group name a response reports when the single weights were served
# Tuning queries a group needs for its own weights: on flipkart-1050 a group of 10 category
# queries is ~3% of the tuning slice; below that one P@10 tie decides the pick, so the single
# weights (tuned on every query) are the safer choice.
MIN_GROUP_QUERIES = 10


def seen_distance(node: CategoryPath, seen: set[CategoryPath] | frozenset[CategoryPath]) -> int:
    """Levels from ``node`` up to its deepest seen ancestor-or-self (``len(node)`` if none)."""
    for k in range(len(node), 0, -1):
        if tuple(node[:k]) in seen:
            return len(node) - k
    return len(node)


def query_group(node: CategoryPath, seen: set[CategoryPath] | frozenset[CategoryPath] | None) -> str | None:
    """``seen``, ``seen_root`` (a seen level-1 node) or ``unseen`` for a category query's node;
    None when the seen set is unknown."""
    if seen is None:
        return None
    if seen_distance(tuple(node), seen) != 0:
        return "unseen"
    return "seen_root" if len(node) == 1 else "seen"


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
    # group -> {"method", "weights", "tuning_queries", ...}: only the groups tuned on enough queries
    groups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        return sorted(self.weights)

    def weights_for(self, sources: list[str]) -> dict[str, float] | None:
        """The weights for a query using ``sources``, or None when they are not the sources it
        was calibrated on (e.g. an encoder that did not load): the fixed defaults apply then."""
        if sorted(sources) != self.sources:
            return None
        return {name: float(self.weights[name]) for name in sources}

    def fusion_for(self, sources: list[str], group: str | None = None) -> tuple[str, dict[str, float], str] | None:
        """``(method, weights, group served)`` for a category query over ``sources`` in ``group``:
        the group's own weights when it has them, else the single ones (group ``all``); None when
        ``sources`` are not the ones calibrated (the fixed defaults apply)."""
        if sorted(sources) != self.sources:
            return None
        entry = self.groups.get(group) if group is not None else None
        if entry is None and group in FALLBACK:
            group = FALLBACK[group]
            entry = self.groups.get(group)
        if entry is None:
            return self.method, {name: float(self.weights[name]) for name in sources}, ALL_QUERIES
        return str(entry["method"]), {name: float(entry["weights"][name]) for name in sources}, str(group)

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
            **({"groups": {g: dict(e) for g, e in self.groups.items()}} if self.groups else {}),
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
            groups = _groups(data.get("groups"), set(weights))
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
                groups=groups,
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


def _groups(raw: Any, sources: set[str]) -> dict[str, dict[str, Any]]:
    """The per-group fusions of a stored record ({} when it has none: a record from before
    groups); each must name a fusion and weigh exactly the calibrated sources."""
    if raw is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, entry in dict(raw).items():
        if name not in GROUPS:
            raise ValueError(f"unknown query group {name!r}")
        method = str(entry["method"])
        if method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion {method!r} for the {name} group")
        weights = {str(k): float(v) for k, v in dict(entry["weights"]).items()}
        if set(weights) != sources or any(not 0 <= w < float("inf") for w in weights.values()) or not any(
                weights.values()):
            raise ValueError(f"the {name} group's weights must cover {sorted(sources)}, finite, >= 0, not all 0")
        out[str(name)] = {**dict(entry), "method": method, "weights": weights}
    return out


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


def served_group_fusion(
    store: Store, schema: IndexSchema, sources: list[str], group: str | None
) -> tuple[str, dict[str, float], str] | None:
    """``(method, weights, group served)`` for a category query in ``group`` (``query_group``)
    from the index's calibration; None when none is in force (the fixed defaults apply)."""
    calibration = served_defaults(store, schema)
    return calibration.fusion_for(sources, group) if calibration is not None else None


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
    if calibration.groups:
        out["groups"] = {g: {"method": e["method"], "weights": dict(e["weights"]),
                             "tuning_queries": e.get("tuning_queries")} for g, e in calibration.groups.items()}
    if problem:
        out["note"] = problem
    return out
