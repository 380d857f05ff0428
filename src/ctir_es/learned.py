"""The model ``ctir-es learn`` trained on an index, as the index remembers it, and how stale it is.

``ctir-es learn`` keeps a ``LearnedModel`` record with the index (``IndexMetadata``, key
``LEARNED_KEY``): which CLIP-ITA model it trained, where the model folder is, on how many
products, and P@10 before and after. Every ingest that writes products afterwards adds them to
``written_since`` (``note_written``, one metadata read and write per run), so ``ctir-es stats``
and ``GET /health`` can say when the catalogue has moved on from the model (``learned_summary``):
many products written since, or category nodes the model never saw - the model dir's
``seen_categories.json`` lists the ones it did (``"A > B > C"`` strings).
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StoreError, one_line
from .products import parse_category_path
from .schema import IndexSchema
from .store.base import CategoryCounter, IndexMetadata, Store

log = logging.getLogger(__name__)

LEARNED_KEY = "learned-model"
FORMAT_VERSION = 1
SEEN_FILE = "seen_categories.json"  # in the model dir: the category paths the model trained on
STALE_SHARE = 0.2  # products written since learn, as a share of the products it learned from
RETRAIN_HINT = "run `ctir-es learn` to retrain"


@dataclass(frozen=True)
class LearnedModel:
    """What ``ctir-es learn`` trained on this index (see the module docstring)."""

    model: str
    path: str
    variant: str
    modalities: tuple[str, ...]
    created: str
    products: int  # products in the index when it learned
    trained_products: int
    categories_seen: int
    written_since: int = 0  # products written by ingests since
    metrics: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)  # before / after
    kept: bool = True  # False: learn measured it worse than before and did not put it in use
    # category nodes of the index the model did not see when it learned (the held-out slices);
    # None in records of older versions. Only nodes beyond these make it stale.
    unseen_at_learn: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "model": self.model,
            "path": self.path,
            "variant": self.variant,
            "modalities": list(self.modalities),
            "created": self.created,
            "products": self.products,
            "trained_products": self.trained_products,
            "categories_seen": self.categories_seen,
            "written_since": self.written_since,
            "metrics": {k: dict(v) for k, v in self.metrics.items()},
            "kept": self.kept,
            **({} if self.unseen_at_learn is None else {"unseen_at_learn": self.unseen_at_learn}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LearnedModel:
        """Raises ``StoreError`` naming what is wrong with a damaged or foreign record."""
        try:
            if not isinstance(data, Mapping):
                raise TypeError(f"a {type(data).__name__}, not an object")
            if data.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {data.get('version')!r}, expected {FORMAT_VERSION}")
            counts = {key: int(data[key]) for key in ("products", "trained_products", "categories_seen")}
            written = int(data.get("written_since", 0))
            if min(*counts.values(), written) < 0:
                raise ValueError("negative product or category counts")
            modalities = data["modalities"]
            if isinstance(modalities, str) or not all(isinstance(m, str) for m in modalities):
                raise TypeError("modalities must be a list of names")
            metrics = {str(phase): {str(name): None if value is None else float(value)
                                    for name, value in dict(figures).items()}
                       for phase, figures in dict(data.get("metrics") or {}).items()}
            kept = data.get("kept", True)
            if not isinstance(kept, bool):
                raise TypeError("kept must be true or false")
            unseen_at_learn = None if data.get("unseen_at_learn") is None else int(data["unseen_at_learn"])
            return cls(
                model=_text(data, "model"), path=_text(data, "path"), variant=str(data.get("variant") or ""),
                modalities=tuple(modalities), created=str(data.get("created") or ""),
                written_since=written, metrics=metrics, kept=kept, unseen_at_learn=unseen_at_learn, **counts,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"the stored learned-model record is not readable ({one_line(exc, 200)}); "
                             "run `ctir-es learn` again") from None

    @property
    def stale_share(self) -> float:
        """Products written since learn per product it learned from."""
        return self.written_since / max(self.products, 1)


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    return value


def load_learned(store: Store) -> LearnedModel | None:
    """The record ``ctir-es learn`` kept with the index; None when there is none (or the store
    keeps no metadata). A damaged record raises ``StoreError``."""
    if not isinstance(store, IndexMetadata):
        return None
    raw = store.get_metadata(LEARNED_KEY)
    return None if raw is None else LearnedModel.from_json(raw)


def save_learned(store: Store, record: LearnedModel) -> None:
    """Keep ``record`` with the index (replacing an earlier one)."""
    if not isinstance(store, IndexMetadata):
        raise StoreError(f"{type(store).__name__} cannot keep metadata with the index, so it cannot "
                         "record a learned model")
    store.put_metadata(LEARNED_KEY, record.to_json())
    _forget(store)


def note_written(store: Store, n: int) -> None:
    """Count ``n`` products an ingest wrote into ``written_since`` of the index's learned record
    (nothing when there is none). Never fails the ingest that calls it: the products are
    written already, so a store or record problem is logged, not raised."""
    if n <= 0 or not isinstance(store, IndexMetadata):
        return
    try:
        raw = store.get_metadata(LEARNED_KEY)
        if raw is None:
            return
        record = LearnedModel.from_json(raw)
        store.put_metadata(LEARNED_KEY, {**raw, "written_since": record.written_since + n})  # keeps unknown keys
        _forget(store)
    except StoreError as exc:
        log.warning("products written since `ctir-es learn` not counted: %s", one_line(exc))


def seen_categories(model_dir: str | Path) -> set[tuple[str, ...]] | None:
    """The category paths a model trained on (``seen_categories.json`` in its folder), with every
    ancestor of each (a node above a seen path was seen as part of it); None when the file is
    absent or unreadable."""
    try:
        paths = json.loads((Path(model_dir) / SEEN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(paths, list):
        return None
    seen: set[tuple[str, ...]] = set()
    for text in paths:
        if isinstance(text, str):
            path = parse_category_path(text)
            seen.update(path[:n] for n in range(1, len(path) + 1))
    return seen


def unseen_categories(store: Store, model_dir: str | Path) -> int | None:
    """Category nodes of the index the model never saw; None when that cannot be known (no seen
    list in the model folder, or a store that cannot count categories)."""
    seen = seen_categories(model_dir)
    if seen is None or not isinstance(store, CategoryCounter):
        return None
    return sum(1 for node in store.category_counts() if tuple(node) not in seen)


# The unseen count walks every category node: a server's /health reuses it for CACHE_SECONDS.
CACHE_SECONDS = 30.0
_CACHE: weakref.WeakKeyDictionary[Any, tuple[float, str, int | None]] = weakref.WeakKeyDictionary()


def _forget(store: Store) -> None:
    try:
        _CACHE.pop(store, None)
    except TypeError:
        pass


def _unseen(store: Store, record: LearnedModel, max_age: float) -> int | None:
    key = f"{record.path}|{record.created}"
    now = time.monotonic()
    try:
        cached = _CACHE.get(store)
    except TypeError:  # a store that cannot be weakly referenced: count every time
        cached = None
    if cached is not None and cached[1] == key and now - cached[0] < max_age:
        return cached[2]
    value = unseen_categories(store, record.path)
    try:
        _CACHE[store] = (now, key, value)
    except TypeError:
        pass
    return value


def learned_summary(store: Store, schema: IndexSchema, models_dir: Path | None = None, *,
                    max_age: float = 0.0) -> dict[str, Any]:
    """What ``stats`` (CLI and HTTP) show of the learned model: which, when, P@10 before and
    after, and whether the catalogue moved on (``stale``, with ``hint``: many products written
    since, or category nodes the model never saw). ``problem``: the index's CLIP-ITA model
    folder is gone (one line with the fix). ``max_age``: seconds an earlier count of unseen
    categories may be reused (a server's /health). ``models_dir``: where models are looked up by
    name (default: ``$CTIR_ES_MODELS_DIR`` or the user cache's)."""
    from .encoders.loading import missing_model
    from .encoders.models import default_models_dir

    gone = missing_model(schema, models_dir or default_models_dir())
    problem = {"problem": str(gone)} if gone is not None else {}
    try:
        record = load_learned(store)
    except StoreError as exc:
        return {"status": "unreadable", "note": str(exc), **problem}
    if record is None:
        return {"status": "none", "note": "no model learned on this index (run `ctir-es learn`)", **problem}
    unseen = _unseen(store, record, max_age)
    # categories new since learn: the ones it never saw beyond those already there (held out)
    new = unseen if unseen is None or record.unseen_at_learn is None else max(0, unseen - record.unseen_at_learn)
    stale = record.stale_share > STALE_SHARE or bool(new)
    out: dict[str, Any] = {
        "status": "stale" if stale else ("in use" if record.kept else "not kept"),
        "model": record.model,
        "variant": record.variant,
        "path": record.path,
        "created": record.created,
        "kept": record.kept,
        "products": record.products,
        "trained_products": record.trained_products,
        "categories_seen": record.categories_seen,
        "metrics": {k: dict(v) for k, v in record.metrics.items()},
        "written_since": record.written_since,
        "written_share": round(record.stale_share, 4),
        "unseen_categories": unseen,
        "unseen_at_learn": record.unseen_at_learn,
        "stale": stale,
        **problem,
    }
    if stale:
        out["hint"] = RETRAIN_HINT
    return out

