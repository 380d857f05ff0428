"""Evaluation indexes: the catalogue indexed through the normal ingest ``Pipeline`` into a
store of its own, cached by dataset hash + encoder manifest ids.

Every system is then run through the ``Store`` API against these indexes, so the numbers are
what the product serves. The embedded store puts each index in one SQLite file under the work
dir; with Elasticsearch each is an index named ``ctir-eval-<hash>``. A JSON marker written
after a complete build makes a later run with the same data and encoders reuse the index; an
embedded index is reused only with the lexical engine a new one would get (the
``lexical_engine`` setting, else the store's default), so BM25 figures always come from the
engine in force. Each engine has its own file, so switching back and forth rebuilds nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ..config import Settings, env_value
from ..encoders.base import ImageEncoder, TextEncoder
from ..ingest.pipeline import IngestOptions, Pipeline
from ..ingest.report import IngestReport
from ..products import Product
from ..protocol import dataset_hash
from ..schema import Document, IndexSchema
from ..store.base import Store
from ..store.embedded import DEFAULT_LEXICAL_ENGINE
from ..store.open import open_store

MARKER_VERSION = 1
Progress = Callable[[str, int, int | None], None]


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass
class EvalIndex:
    """A built evaluation index: its store (open), schema and how it came to be."""

    key: str
    store: Store
    schema: IndexSchema
    cached: bool
    seconds: float
    location: str
    indexed: int
    rejected: dict[str, str] = field(default_factory=dict)
    images_missing: dict[str, int] = field(default_factory=dict)
    lexical_engine: str | None = None  # of an embedded store; None: the server's (Elasticsearch, OpenSearch)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "location": self.location,
            "lexical_engine": self.lexical_engine or self.location.split(" ", 1)[0],
            "cached": self.cached,
            "build_seconds": round(self.seconds, 2),
            "indexed": self.indexed,
            "rejected": dict(list(self.rejected.items())[:20]),
            "rejected_total": len(self.rejected),
            "images_missing": self.images_missing,
            "vector_fields": {n: f.to_json() for n, f in self.schema.vectors.items()},
        }


def index_tag(manifests: Sequence[dict[str, Any]]) -> str:
    """Short id of what an index holds: the encoder kinds and ids (or 'bm25' when no vectors)."""
    ids = sorted(f"{m.get('kind', '')}:{m.get('id', m.get('name', ''))}" for m in manifests)
    if not ids:
        return "bm25"
    return hashlib.sha1("|".join(ids).encode("utf-8")).hexdigest()[:10]


class IndexBuilder:
    """Builds (or reuses) evaluation indexes for one catalogue under ``work_dir``."""

    def __init__(
        self,
        products: Sequence[Product],
        dataset_hash: str,
        settings: Settings,
        work_dir: Path,
        *,
        progress: Progress = _noop,
        batch_size: int = 64,
        rebuild: bool = False,
    ) -> None:
        self.products = products
        self.dataset_hash = dataset_hash
        self.settings = settings
        self.work_dir = Path(work_dir)
        self.progress = progress
        self.batch_size = batch_size
        self.rebuild = rebuild
        self.indexes: dict[str, EvalIndex] = {}

    @classmethod
    def for_products(
        cls,
        products: Sequence[Product],
        settings: Settings,
        *,
        kind: str = "",
        work_dir: Path | None = None,
        progress: Progress = _noop,
        rebuild: bool = False,
    ) -> IndexBuilder:
        """A builder for ``products`` keyed by their hash (``kind``, e.g. the reader, goes into
        it) under ``work_dir`` (default ``<cache dir>/eval``); use it in a ``with`` block."""
        return cls(products, dataset_hash(products, kind), settings, Path(work_dir or settings.cache_dir / "eval"),
                   progress=progress, rebuild=rebuild)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- locations ------------------------------------------------------------------------

    def _lexical_engine(self) -> str | None:
        """The lexical engine of a new embedded index (None with Elasticsearch): what
        ``open_store`` gives a new store, the setting's, else the store's default."""
        if self.settings.server_url:
            return None
        return str(self.settings.lexical_engine or env_value("lexical_engine") or DEFAULT_LEXICAL_ENGINE)

    def _name(self, tag: str) -> str:
        engine = self._lexical_engine()
        return f"{self.dataset_hash[:16]}-{tag}" + (f"-{engine}" if engine else "")

    def _settings_for(self, name: str) -> Settings:
        if self.settings.server_url:
            return self.settings.with_overrides(es_index=f"ctir-eval-{name}")
        return self.settings.with_overrides(store=self.work_dir / f"{name}.db")

    def _marker_path(self, name: str) -> Path:
        backend = {"elasticsearch": "es", "opensearch": "os"}.get(self.settings.engine, "embedded")
        return self.work_dir / f"{name}.{backend}.json"

    def _location(self, settings: Settings) -> str:
        engine = settings.engine
        return f"{engine} index {settings.es_index}" if engine != "embedded" else str(settings.store)

    # -- building -------------------------------------------------------------------------

    def _reuse(self, key: str, name: str, settings: Settings, manifests: list[dict[str, Any]]) -> EvalIndex | None:
        marker = self._marker_path(name)
        if self.rebuild or not marker.is_file():
            return None
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        engine = self._lexical_engine()
        if (data.get("version") != MARKER_VERSION or data.get("dataset_hash") != self.dataset_hash
                or data.get("lexical_engine") != engine):
            return None
        store = open_store(settings)
        schema = store.schema()
        # one encoder may fill several fields (CLIP: image and title vectors): compare the sets
        expected = {str(m.get("id")) for m in manifests}
        held = {str(f.encoder.get("id")) for f in (schema.vectors.values() if schema else [])}
        if (schema is None or held != expected or store.count() != data.get("indexed")
                or getattr(store, "lexical_engine", None) != engine):
            store.close()
            return None
        return EvalIndex(key, store, schema, True, 0.0, self._location(settings), int(data["indexed"]),
                         dict(data.get("rejected", {})), dict(data.get("images_missing", {})), engine)

    def _fresh_store(self, settings: Settings) -> Store:
        if settings.server_url:
            store = open_store(settings)
            drop = getattr(store, "drop", None)
            if callable(drop) and store.schema() is not None:
                drop()  # an incomplete earlier build: start again
            return store
        for suffix in ("", "-wal", "-shm"):
            Path(f"{settings.store}{suffix}").unlink(missing_ok=True)
        return open_store(settings)

    def _finish(self, key: str, name: str, settings: Settings, store: Store, started: float,
                report: IngestReport, rejected: dict[str, str]) -> EvalIndex:
        schema = store.schema() or IndexSchema()
        indexed = store.count()
        marker = {
            "version": MARKER_VERSION,
            "dataset_hash": self.dataset_hash,
            "indexed": indexed,
            "rejected": rejected,
            "images_missing": dict(report.images_missing),
            "lexical_engine": getattr(store, "lexical_engine", None),
            "schema": schema.to_json(),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._marker_path(name).write_text(json.dumps(marker, indent=1, sort_keys=True), encoding="utf-8")
        index = EvalIndex(key, store, schema, False, time.perf_counter() - started, self._location(settings),
                          indexed, rejected, dict(report.images_missing), getattr(store, "lexical_engine", None))
        return index

    def _index(self, key: str, manifests: list[dict[str, Any]],
               fill: Callable[[Store, str], tuple[IngestReport, dict[str, str]]]) -> EvalIndex:
        """Index ``key``: reused from an earlier run when its marker matches, else built in a
        fresh store by ``fill(store, name)``, which returns the report and the rejections."""
        name = self._name(index_tag(manifests))
        settings = self._settings_for(name)
        index = self._reuse(key, name, settings, manifests)
        if index is None:
            started = time.perf_counter()
            store = self._fresh_store(settings)
            report, rejected = fill(store, name)
            index = self._finish(key, name, settings, store, started, report, rejected)
        self.indexes[key] = index
        return index

    def with_encoders(
        self,
        key: str,
        *,
        text_encoder: TextEncoder | None = None,
        image_encoder: ImageEncoder | None = None,
        load_images: Callable[[Sequence[str]], list[Any]] | None = None,
    ) -> EvalIndex:
        """The catalogue through the ingest ``Pipeline`` (title vectors and/or image vectors)."""
        if key in self.indexes:
            return self.indexes[key]

        def fill(store: Store, name: str) -> tuple[IngestReport, dict[str, str]]:
            report = IngestReport(source=f"evaluation:{self.dataset_hash[:16]}")
            options = IngestOptions(batch_size=self.batch_size, with_images=load_images is not None, resume=False)
            pipeline = Pipeline(store, text_encoder=text_encoder, image_encoder=image_encoder,
                                load_images=load_images, options=options)
            total = len(self.products)
            self.progress(f"index {key}", 0, total)
            pipeline.run(self.products, report, checkpoint_key=f"eval:{name}",
                         on_batch=lambda r: self.progress(f"index {key}", r.indexed + r.rejected_total, total))
            return report, {r.location: f"{r.reason}: {r.detail}" for r in report.rejections}

        return self._index(key, [e.manifest for e in (text_encoder, image_encoder) if e is not None], fill)

    def with_documents(
        self,
        key: str,
        schema: IndexSchema,
        make_documents: Callable[[Sequence[Product]], list[Document]],
    ) -> EvalIndex:
        """A custom index (e.g. a trained model's own vector field): ``make_documents`` turns a
        batch of products into documents; categories must never feed a vector (no leakage)."""
        if key in self.indexes:
            return self.indexes[key]

        def fill(store: Store, name: str) -> tuple[IngestReport, dict[str, str]]:
            store.setup(schema)
            rejected: dict[str, str] = {}
            total = len(self.products)
            for start in range(0, total, self.batch_size):
                batch = list(self.products[start : start + self.batch_size])
                rejected.update(store.upsert(make_documents(batch)).errors)
                self.progress(f"index {key}", min(start + self.batch_size, total), total)
            return IngestReport(source=f"evaluation:{self.dataset_hash[:16]}"), rejected

        return self._index(key, [dict(f.encoder) for f in schema.vectors.values()], fill)

    def close(self) -> None:
        for index in self.indexes.values():
            index.store.close()
        self.indexes.clear()
