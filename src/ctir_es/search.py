"""``Search``: the one entry point the CLI (and the HTTP service) call to query a store.

    from ctir_es.search import Search
    with Search.open() as s:                      # default embedded store, its encoders
        for r in s.search("Kitchen & Dining > Cookware", k=5).results:
            print(r.rank, r.id, r.title, r.score, r.sources)

The encoders are the ones the index was built with (read from its manifests); a model that
loads with other weights or dims is an error that says what differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import Settings, load_settings
from .encoders.base import ImageEncoder, TextEncoder
from .errors import QueryError, SchemaMismatch, StoreError
from .filters import Filter
from .ranking.fusion import FusedHit, SourceScore, fuse
from .ranking.plan import IMAGE_VECTOR, TITLE_VECTOR, detect_mode, plan_query
from .store.base import IndexSchema, Store

# Each source returns this many candidates before fusion (fusion needs depth to work with).
MIN_CANDIDATES = 100
MAX_K = 1_000


@dataclass(frozen=True, slots=True)
class SearchResult:
    rank: int
    id: str
    title: str
    categories: list[list[str]]
    image: str | None
    score: float
    sources: Mapping[str, SourceScore]

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.id,
            "title": self.title,
            "categories": self.categories,
            "image": self.image,
            "score": self.score,
            "sources": {
                name: {k: v for k, v in {"rank": s.rank, "score": s.score, "normalised": s.normalised}.items()
                       if v is not None}
                for name, s in self.sources.items()
            },
        }


@dataclass(frozen=True, slots=True)
class SearchResponse:
    query: str
    mode: str
    fusion: str
    sources: list[str]
    results: list[SearchResult] = field(default_factory=list)
    weights: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "mode": self.mode,
            "fusion": self.fusion,
            "sources": self.sources,
            "weights": dict(self.weights),
            "results": [r.to_json() for r in self.results],
        }


def open_store(settings: Settings) -> Store:
    """The Elasticsearch store when a URL is configured, else the embedded SQLite file."""
    if settings.es_url:
        from .store.elasticsearch import ElasticsearchStore, EsConnection

        # The [elasticsearch] config table mixes connection fields (url, api_key, ...) and
        # store options (index_options, chunk_size, ...): route each to its owner.
        conn_fields = set(EsConnection.__dataclass_fields__)
        conn_opts = {k: v for k, v in settings.es_options.items() if k in conn_fields}
        store_opts = {k: v for k, v in settings.es_options.items() if k not in conn_fields}
        conn = EsConnection.from_env(url=settings.es_url, index=settings.es_index, **conn_opts)
        return ElasticsearchStore(conn, **store_opts)
    from .store.embedded import EmbeddedStore

    return EmbeddedStore(settings.store)


def check_manifest(field_name: str, expected: Mapping[str, Any], actual: Mapping[str, Any]) -> None:
    """Fail fast when the encoder loaded now is not the one that filled the index."""
    diffs = [
        f"{key}: index {expected.get(key)!r}, loaded {actual.get(key)!r}"
        for key in ("id", "dims")
        if expected.get(key) is not None and expected.get(key) != actual.get(key)
    ]
    if diffs:
        raise SchemaMismatch(
            f"the encoder for {field_name} differs from the one that built the index ({'; '.join(diffs)}); "
            "configure the same model or re-ingest into a new store"
        )


def encoders_for_schema(
    schema: IndexSchema, settings: Settings
) -> tuple[TextEncoder | None, ImageEncoder | None]:
    """Load the encoders named by the index manifests (falling back to the settings)."""
    from .encoders import registry

    text = image = None
    if TITLE_VECTOR in schema.vectors:
        manifest = schema.vectors[TITLE_VECTOR].encoder
        text = registry.load_text_encoder(registry.config_from_manifest(manifest, settings))
        check_manifest(TITLE_VECTOR, manifest, text.manifest)
    if IMAGE_VECTOR in schema.vectors:
        manifest = schema.vectors[IMAGE_VECTOR].encoder
        image = registry.load_image_encoder(registry.config_from_manifest(manifest, settings))
        check_manifest(IMAGE_VECTOR, manifest, image.manifest)
    return text, image


class Search:
    """Query a store with its own encoders, fuse the sources, return explained results."""

    def __init__(
        self,
        store: Store,
        text_encoder: TextEncoder | None = None,
        image_encoder: ImageEncoder | None = None,
        image_loader: Any | None = None,
    ) -> None:
        self.store = store
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.image_loader = image_loader
        self._schema: IndexSchema | None = None

    @classmethod
    def open(cls, settings: Settings | None = None) -> Search:
        settings = settings or load_settings()
        store = open_store(settings)
        schema = store.schema()
        if schema is None:
            where = settings.es_url and "the Elasticsearch index" or str(settings.store)
            raise StoreError(f"nothing indexed yet in {where}: run `ctir-es ingest ...` first")
        text, image = encoders_for_schema(schema, settings)
        from .ingest.images import ImageLoader

        loader = ImageLoader(cache_dir=settings.image_cache, timeout=settings.image_timeout)
        return cls(store, text, image, loader)

    def __enter__(self) -> Search:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def schema(self) -> IndexSchema:
        if self._schema is None:
            self._schema = self.store.schema() or IndexSchema()
        return self._schema

    def search(
        self,
        text: str | None = None,
        *,
        image: str | None = None,
        mode: str | None = None,
        k: int = 10,
        filters: Sequence[Filter] = (),
        fusion: str = "rrf",
        weights: Mapping[str, float] | None = None,
        field_weights: Mapping[str, float] | None = None,
    ) -> SearchResponse:
        """Category (``"A > B"``), free-text or image (path / URL) search."""
        if not 1 <= k <= MAX_K:
            raise QueryError(f"k must be between 1 and {MAX_K}")
        mode = mode or detect_mode(text, image)
        image_vector = None
        if mode == "image":
            ref = image or text
            if not ref:
                raise QueryError("image mode needs an image path or URL")
            if self.image_encoder is None:
                raise QueryError("this index has no image encoder: ingest with CLIP weights to search by image")
            if self.image_loader is None:
                raise QueryError("no image loader configured")
            image_vector = self.image_encoder.encode_images([self.image_loader.load(ref)])[0]
            text = ref
        candidates = max(MIN_CANDIDATES, 2 * k)
        plan = plan_query(
            mode=mode,
            text=text,
            schema=self.schema,
            text_encoder=self.text_encoder,
            image_encoder=self.image_encoder,
            image_vector=image_vector,
            field_weights=field_weights,
        )
        runs = self.store.search(plan.lexical, plan.vectors, candidates, filters)
        fused = fuse(fusion, runs, weights if weights is not None else plan.weights)[:k]
        return SearchResponse(text or "", mode, fusion, plan.sources, self._results(fused),
                              dict(weights if weights is not None else plan.weights))

    def _results(self, fused: Sequence[FusedHit]) -> list[SearchResult]:
        stored = self.store.get([h.id for h in fused])
        out = []
        for rank, hit in enumerate(fused, start=1):
            doc = stored.get(hit.id)
            if doc is None:  # deleted between search and fetch
                continue
            out.append(
                SearchResult(
                    rank=rank,
                    id=hit.id,
                    title=doc.product.title,
                    categories=[list(c) for c in doc.product.categories],
                    image=doc.image,
                    score=hit.score,
                    sources=hit.sources,
                )
            )
        return out
