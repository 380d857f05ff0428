"""``Search``: the one entry point the CLI (and the HTTP service) call to query a store.

    from ctir_es.search import Search
    with Search.open() as s:                      # default embedded store, its encoders
        for r in s.search("Kitchen & Dining > Cookware", k=5).results:
            print(r.rank, r.id, r.title, r.score, r.sources)

The encoders are the ones the index was built with (read from its manifests); a model that
loads with other weights or dims is an error that says what differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from PIL import Image

from .config import FUSION_LOCATIONS, Settings, load_settings
from .encoders.base import CategoryEncoder, ImageEncoder, TextEncoder
from .encoders.loading import category_encoder_for_schema, encoders_for_schema
from .errors import NotFound, QueryError, ServerFusionUnavailable, StoreError, Unsupported
from .filters import Filter, check_filters
from .ranking.calibration import query_group, served_group_fusion
from .ranking.fusion import FusedHit, fuse
from .ranking.plan import Plan, detect_mode, plan_query
from .ranking.weights import weights_in_force
from .results import SearchResponse, SearchResult, ranking_notices
from .schema import DEFAULT_FIELD_WEIGHTS, IndexSchema, LexicalQuery, StoredProduct, VectorQuery
from .shop.cursor import PIN_DEPTH, MemoryPins, PinnedHit, Pins, query_digests
from .store.base import CategoryCounter, IdLister, ServerFusion, Store, VectorReader
from .store.open import open_store
from .vocabulary import (
    CANDIDATE_DEPTH,
    CLIP_ITA_VECTOR,
    DEFAULT_FUSION,
    IMAGE_SOURCE,
    IMAGE_VECTOR,
    LEXICAL_SOURCE,
    MAX_K,
    TEXT_SOURCE,
    TITLE_VECTOR,
)

if TYPE_CHECKING:
    from .audit import AuditReport
    from .categories import CategoryNode
    from .categorize import Categorizer, Evidence, Suggestion
    from .categorize.core import SignalWeights
    from .ingest.pipeline import IngestOptions
    from .ingest.report import IngestReport
    from .products import CategoryPath, Product

__all__ = ["MAX_K", "NotFound", "Search", "SearchResponse", "SearchResult", "Unsupported", "open_store"]

CATEGORY_REREAD = 5.0  # seconds: a category missing from the cached tree re-reads it at most this often
MAX_AUDIT = 10_000  # products one audit call lists by kNN (Elasticsearch's k limit)
# "More like this": the product's own vectors, queried against the same fields.
SIMILAR_SOURCES: Mapping[str, str] = {IMAGE_VECTOR: IMAGE_SOURCE, TITLE_VECTOR: TEXT_SOURCE}


class Search:
    """Query a store with its own encoders, fuse the sources, return explained results."""

    def __init__(
        self,
        store: Store,
        text_encoder: TextEncoder | None = None,
        image_encoder: ImageEncoder | None = None,
        image_loader: Any | None = None,
        category_encoder: CategoryEncoder | None = None,
        fusion_location: str = "client",
    ) -> None:
        if fusion_location not in FUSION_LOCATIONS:
            raise QueryError(
                f"fusion_location must be one of {', '.join(FUSION_LOCATIONS)}, got {fusion_location!r}"
            )
        self.store = store
        self.fusion_location = fusion_location
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.image_loader = image_loader
        self.category_encoder = category_encoder  # CLIP-ITA: category queries against clip_ita vectors
        self._schema: IndexSchema | None = None
        self._categorizer: Categorizer | None = None
        self._seen: tuple[set[tuple[str, ...]] | None] | None = None  # (the model's seen nodes,) once read
        self._categories_read: tuple[float, dict[CategoryPath, int]] | None = None  # (when, counts)
        self._category_weights: SignalWeights | None = None
        self.pins: Pins | None = None  # pinned rankings for cursors (a MemoryPins on first use)

    @classmethod
    def open(cls, settings: Settings | None = None, *, allow_missing_model: bool = False) -> Search:
        """A search over the configured store with the encoders its index was built with.

        ``allow_missing_model``: when the index's CLIP-ITA model folder is gone, serve without it
        (category queries lose the ``clip_ita`` source; a warning says so) instead of raising
        ``ModelMissing`` - for a server, whose /health then reports it."""
        from .errors import ModelMissing

        settings = settings or load_settings()
        store = open_store(settings)
        try:
            schema = store.schema()
            if schema is None:
                raise StoreError(_nothing_indexed(settings))
            text, image = encoders_for_schema(schema, settings)
            try:
                category = category_encoder_for_schema(schema, settings, text, image)
            except ModelMissing as exc:
                if not allow_missing_model:
                    raise
                import logging

                logging.getLogger(__name__).warning("%s; serving without it", exc)
                category = None
        except BaseException:
            store.close()  # a failed open leaves no file handle behind
            raise
        from .ingest.images import ImageLoader

        loader = ImageLoader(cache_dir=settings.image_cache, timeout=settings.image_timeout,
                             allow_private=settings.allow_private_images)
        return cls(store, text, image, loader, category, settings.fusion_location)

    def __enter__(self) -> Self:
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
        image: str | bytes | Image.Image | None = None,
        mode: str | None = None,
        k: int = 10,
        filters: Sequence[Filter] = (),
        fusion: str | None = None,  # None: the index's calibration (category queries), else DEFAULT_FUSION
        weights: Mapping[str, float] | None = None,
        field_weights: Mapping[str, float] | None = None,
        diverse: float | bool = False,
        facets: Sequence[str] = (),
        facet_size: int | None = None,
        sort: str | None = None,
        collapse: str | None = None,
        pin: bool = False,
        cursor: str | None = None,
        pins: Pins | None = None,
    ) -> SearchResponse:
        """Category (``"A > B"``), free-text or image search (a path / URL, raw bytes or a
        decoded PIL image).

        Shop options (``ctir_es.shop``, docs/shop-search.md): ``facets`` (value names, or
        ``category``) counted over the fused candidates, disjunctively; ``sort`` (``relevance``,
        ``price_asc``, ``rating``, ``newest``, ``NAME_asc|desc``) within the top relevant ones;
        ``collapse`` (``auto`` or a keyword value's name) folds variants under one result.

        Stable pages (``ctir_es.shop.cursor``): ``pin=True`` keeps the ranking (fused 1000 deep,
        then arranged by the shop options) and returns its first ``k`` with ``next_cursor``;
        ``cursor=`` returns the next ``k`` of that same list (query arguments may be omitted;
        any given must match the pinned query). ``pins``: where pins are kept (default: this
        search's own, in memory)."""
        if not 1 <= k <= MAX_K:
            raise QueryError(f"k must be between 1 and {MAX_K}")
        filters = self.checked(filters)
        from .shop.request import ShopRequest

        shop = ShopRequest.of(facets, facet_size, sort, collapse).checked(self.schema)  # before store work
        paged = pin or cursor is not None  # stable pages (ctir_es.shop.cursor)
        if paged and diverse is not False:
            raise QueryError("a cursor pages a pinned ranking: it cannot be combined with diverse "
                             "(a showcase of one page)")
        query = query_digests(text=text, image=image, mode=mode, filters=filters, fusion=fusion,
                              weights=weights, field_weights=field_weights,
                              arrangement=shop if shop.active else None) if paged else {}
        if cursor is not None:  # a later page: a slice of the pinned list, no search at all
            return self.pins_for(pins).next_page(cursor, k, query, self._page_results)
        if shop.active and diverse is not False:
            raise QueryError("diverse cannot be combined with facets, sort or collapse")
        if diverse is not False:  # MMR over a deeper fused list (ctir_es.diversify)
            return self._diversified(text, image=image, mode=mode, k=k, filters=filters, fusion=fusion,
                                     weights=weights, field_weights=field_weights, diverse=diverse)
        mode = mode or detect_mode(text, image)
        image_vector = None
        if mode == "image":
            ref = image if image is not None else text
            if ref is None or (isinstance(ref, (str, bytes)) and not ref):
                raise QueryError("image mode needs an image path or URL")
            image_vector = self._image_vector(ref)
            text = ref if isinstance(ref, str) else (text or "(image)")
        depth = PIN_DEPTH if pin else k  # a pin keeps the whole list a cursor may page through
        candidates = max(CANDIDATE_DEPTH, 2 * depth)
        plan = self.plan(text, mode=mode, image_vector=image_vector, field_weights=field_weights)
        about = self.category_notices(plan.category, filters)  # paths the index does not hold
        group = None
        if plan.mode == "category" and fusion is None and weights is None and field_weights is None:
            # nothing chosen by the caller: the fusion `ctir-es calibrate` / `learn` measured on this
            # index, for the query's group (a category the served model saw in training, or not)
            node = plan.category
            served = served_group_fusion(self.store, self.schema, plan.sources,
                                         query_group(node, self.served_seen()) if node else None)
            if served is not None:
                fusion, weights, group = served
        fusion = fusion or DEFAULT_FUSION
        used = weights_in_force(plan.sources, plan.weights, weights)  # checked before any store work
        source_hits: dict[str, int | None] = dict.fromkeys(plan.sources)

        def notes() -> list[str]:
            return [*about, *ranking_notices(plan.sources, source_hits)]

        if self.fusion_location == "client" or shop.active:  # a shop request needs the whole fused list
            runs = self.store.search(plan.lexical, plan.vectors, candidates, filters)
            source_hits.update({name: len(hits) for name, hits in runs.items()})
            fused = fuse(fusion, runs, used, limit=None if shop.active else depth)
        else:
            fused = self.fused_by_server(plan, depth, candidates, filters, fusion, used)
        if pin and not shop.active:  # pin the final ordered list (arranged ones: below)
            header = SearchResponse(text or "", mode, fusion, plan.sources, [], used, source_hits,
                                    notes(), group)
            return self.pins_for(pins).first_page(header, fused, k, query, self._page_results)
        if shop.active:
            from .shop.arrange import arrange

            def retrieve(without: Sequence[Filter]) -> list[FusedHit]:  # a disjunctive facet's query
                return fuse(fusion, self.store.search(plan.lexical, plan.vectors, candidates, without), used)

            base = SearchResponse(text or "", mode, fusion, plan.sources, [], used, source_hits,
                                  notes(), group)
            if pin:  # arranged to the cutoff, then pinned: later pages are slices of the arrangement
                from .shop.request import CANDIDATE_CUTOFF

                whole = arrange(self, shop, base, fused, CANDIDATE_CUTOFF, filters, retrieve)
                hits = [PinnedHit(r.id, r.score, r.sources, r.collapsed) for r in whole.results]
                return self.pins_for(pins).first_page(replace(whole, results=[]), hits, k, query,
                                                      self._page_results)
            return arrange(self, shop, base, fused, k, filters, retrieve)
        return SearchResponse(text or "", mode, fusion, plan.sources, self._results(fused), used,
                              source_hits, notes(), group)

    def checked(self, filters: Sequence[Filter]) -> list[Filter]:
        """``filters`` checked against this index's typed values, their values typed
        (``check_filters``): stores only ever see typed filters, users get errors that name
        what the index holds. A value name the cached schema lacks re-reads it once (an
        ingest elsewhere may have added it since)."""
        if not filters:
            return []
        if any(f.on_value and f.field not in self.schema.values for f in filters):
            self._schema = None
        return check_filters(filters, self.schema)

    def served_seen(self) -> set[tuple[str, ...]] | None:
        """The category nodes the served CLIP-ITA model trained on (its folder's
        ``seen_categories.json``, read once), or None: no model, or no readable list."""
        if self._seen is None:
            from .learned import seen_categories

            model_dir = getattr(self.category_encoder, "model_dir", None)
            self._seen = (seen_categories(model_dir) if model_dir is not None else None,)
        return self._seen[0]

    def plan(self, text: str | None, *, mode: str, image_vector: np.ndarray | None = None,
             field_weights: Mapping[str, float] | None = None) -> Plan:
        """The store requests of one query with this index's encoders (``ranking.plan``)."""
        return plan_query(mode=mode, text=text, schema=self.schema, text_encoder=self.text_encoder,
                          image_encoder=self.image_encoder, image_vector=image_vector,
                          field_weights=field_weights, category_encoder=self.category_encoder)

    def _diversified(self, text: str | None, *, diverse: float | bool, k: int, **kwargs: Any) -> SearchResponse:
        from .diversify import DEFAULT_LAMBDA, mmr

        lam = DEFAULT_LAMBDA if diverse is True else float(diverse)
        deep = self.search(text, k=min(MAX_K, max(5 * k, 50)), **kwargs)
        titles = {r.id: r.title for r in deep.results}
        vectors = self.result_vectors([r.id for r in deep.results])
        order = mmr([(r.id, r.score) for r in deep.results], titles, vectors, k, lam)
        by_id = {r.id: r for r in deep.results}
        results = [replace(by_id[i], rank=n) for n, i in enumerate(order, start=1)]
        return replace(deep, results=results, fusion=f"{deep.fusion}+mmr({lam:g})")

    def result_vectors(self, ids: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
        """Stored title and image vectors of ``ids`` (empty where the store cannot return them)."""
        out: dict[str, dict[str, np.ndarray]] = {i: {} for i in ids}
        if isinstance(self.store, VectorReader):
            for field_name in (TITLE_VECTOR, IMAGE_VECTOR):
                if field_name in self.schema.vectors:
                    for pid, vec in self.store.vectors(list(ids), field_name).items():
                        out[pid][field_name] = vec
        return out

    def fused_by_server(
        self,
        plan: Any,
        k: int,
        candidates: int,
        filters: Sequence[Filter],
        fusion: str,
        weights: Mapping[str, float],
    ) -> list[FusedHit]:
        """``fusion_location`` server / auto: one retriever round trip where the store and the
        cluster can; else ``auto`` fuses client-side (the store logs one notice saying why) and
        ``server`` says why it cannot. The store never fuses: it fuses, or raises
        ``ServerFusionUnavailable``."""
        if not isinstance(self.store, ServerFusion):
            if self.fusion_location == "server":
                raise Unsupported(
                    f"fusion_location=server needs Elasticsearch; {type(self.store).__name__} "
                    "fuses client-side (use client or auto)"
                )
        else:
            try:
                hits = self.store.search_fused(
                    plan.lexical, plan.vectors, k, filters, method=fusion, weights=weights, window=candidates
                )
            except ServerFusionUnavailable as exc:
                if self.fusion_location == "server" and exc.reason:
                    raise Unsupported(f"{exc} (fusion_location=server; use auto)") from None
            else:
                return [FusedHit(h.id, h.score, {}) for h in hits]
        runs = self.store.search(plan.lexical, plan.vectors, candidates, filters)
        return fuse(fusion, runs, weights, limit=k)

    def _results(self, fused: Sequence[FusedHit],
                 stored: Mapping[str, StoredProduct] | None = None, start: int = 1) -> list[SearchResult]:
        """``stored``: the products when the caller read them already (a shop request);
        ``start``: the rank of the first (a later page of a pinned ranking)."""
        if stored is None:
            stored = self.store.get([h.id for h in fused])
        out = []
        for rank, hit in enumerate(fused, start=start):
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
                    values=dict(doc.product.values),
                )
            )
        return out

    def pins_for(self, pins: Pins | None = None) -> Pins:
        """Where pinned rankings are kept: ``pins`` (the service's, the CLI's files), else this
        search's own ``MemoryPins`` (bounded; ``ctir_es.shop.cursor``)."""
        if pins is not None:
            return pins
        if self.pins is None:
            self.pins = MemoryPins()
        return self.pins

    def _page_results(self, hits: Sequence[FusedHit], first_rank: int) -> list[SearchResult]:
        """A page of a pinned ranking as results, products read from the store now (a product
        deleted since the pin is dropped from the page)."""
        results = self._results(hits, start=first_rank)
        folded = {h.id: h.collapsed for h in hits if isinstance(h, PinnedHit)}
        return [replace(r, collapsed=folded[r.id]) if folded.get(r.id) is not None else r for r in results]

    # -- product-level API: what the HTTP service exposes --------------------------------

    def product(self, product_id: str) -> StoredProduct:
        """The stored product, or ``NotFound``."""
        found = self.store.get([product_id]).get(product_id)
        if found is None:
            raise NotFound(f"no product with id {product_id[:200]!r}")
        return found

    def similar(
        self,
        product_id: str,
        *,
        k: int = 10,
        filters: Sequence[Filter] = (),
        fusion: str | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> SearchResponse:
        """Products like ``product_id`` (never itself): kNN on its own stored image and title
        vectors, fused. A product without stored vectors (a BM25-only index, or a store that
        cannot return vectors) falls back to BM25 over its title."""
        if not 1 <= k <= MAX_K:
            raise QueryError(f"k must be between 1 and {MAX_K}")
        filters = self.checked(filters)
        stored = self.product(product_id)
        queries = []
        if isinstance(self.store, VectorReader):
            for field_name, source in SIMILAR_SOURCES.items():
                if field_name in stored.vector_fields:
                    vec = self.store.vectors([product_id], field_name).get(product_id)
                    if vec is not None:
                        queries.append(VectorQuery(field_name, vec, source))
        lexical = None if queries else LexicalQuery(stored.product.title, dict(DEFAULT_FIELD_WEIGHTS))
        not_itself = [*filters, Filter("id", "not_in", (product_id,))]
        sources = ([LEXICAL_SOURCE] if lexical else []) + [q.name for q in queries]
        used = weights_in_force(sources, dict.fromkeys(sources, 1.0), weights)
        runs = self.store.search(lexical, queries, max(CANDIDATE_DEPTH, 2 * k), not_itself)
        method = fusion or DEFAULT_FUSION
        fused = fuse(method, runs, used, limit=k)
        return SearchResponse(product_id, "similar", method, sources, self._results(fused), used)

    def categorize(
        self,
        image: str | bytes | Image.Image | None = None,
        *,
        id: str | None = None,
        product: Product | Mapping[str, Any] | None = None,
        text: str | None = None,
        k: int = 5,
        depth: int | None = 3,
        neighbours: int | None = None,
        filters: Sequence[Filter] = (),
        signals: Sequence[str] | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> Suggestion:
        """Rank the catalogue's category nodes for ONE input: a stored product (``id``, which
        never votes for itself), a product record (``product``: title, attributes, image), free
        ``text``, or an ``image``. Signals (``ctir_es.categorize.SIGNALS``): kNN votes over title
        and image vectors, a BM25 vote, zero-shot category names, and the index's CLIP-ITA
        category head; fused into 0..1 scores per level, each with the signals that voted.
        Works on a text-only index; an image needs image vectors (else ``Unsupported``)."""
        from .categorize.engine import DEFAULT_NEIGHBOURS

        given = [name for name, v in (("image", image), ("id", id), ("product", product), ("text", text))
                 if v is not None]
        if len(given) != 1:
            raise QueryError("categorize takes exactly one of image, id, product or text"
                             + (f" (got {', '.join(given)})" if given else ""))
        neighbours = DEFAULT_NEIGHBOURS if neighbours is None else neighbours
        if not 1 <= neighbours <= MAX_K:
            raise QueryError(f"neighbours must be between 1 and {MAX_K}")
        filters = self.checked(filters)
        categorizer = self.categorizer()
        if image is not None:
            if IMAGE_VECTOR not in self.schema.vectors:
                raise Unsupported(
                    "this index has no image vectors, so images cannot be categorized: "
                    "ingest with CLIP weights (--clip-weights TAG|FILE)"
                )
            from .categorize.engine import Evidence

            label = image if isinstance(image, str) else "(image)"
            evidence = Evidence(label[:200], "", None, {IMAGE_VECTOR: self._image_vector(image)})
        elif id is not None:
            evidence = self._stored_evidence(self.product(id))
        else:
            from .products import Product as ProductRecord

            if text is not None:
                if not text.strip():
                    raise QueryError("text to categorize is empty")
                record = ProductRecord.from_mapping({"id": "query", "title": text})
            elif isinstance(product, ProductRecord):
                record = product
            else:
                record = ProductRecord.from_mapping({"id": "query", **dict(product or {})})  # type: ignore[arg-type]
            image_vec = None
            if record.images and IMAGE_VECTOR in self.schema.vectors and self.image_encoder is not None:
                image_vec = self._image_vector(record.images[0])
            evidence = categorizer.evidence_for_product(record, image_vector=image_vec)
            if record.id != "query" and self.store.get([record.id]):
                evidence.exclude = (record.id,)
        return categorizer.suggest(evidence, k=k, depth=depth, neighbours=neighbours, voters=filters,
                                   only=signals, weights=weights or self.category_weights())

    def audit(
        self,
        ids: Sequence[str] | None = None,
        *,
        k: int = 50,
        depth: int = 3,
        neighbours: int | None = None,
        weights: Mapping[str, float] | None = None,
        filters: Sequence[Filter] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> AuditReport:
        """Products whose stored category disagrees most with what the other products say
        (``ctir_es.audit``), most suspicious first, with the suggested category and the gap.
        ``ids``: audit these (default: every product; ``filters`` narrow that, e.g. a subtree).
        ``progress(done, total)``: called as products are judged (each one asks the store for
        its neighbours: minutes on a large Elasticsearch index)."""
        from .audit import AuditReport, audit_products
        from .categorize.engine import DEFAULT_NEIGHBOURS

        if not 1 <= k <= MAX_K:
            raise QueryError(f"k must be between 1 and {MAX_K}")
        if not 1 <= depth <= 32:
            raise QueryError("depth must be between 1 and 32")
        filters = self.checked(filters)
        tell = progress or (lambda done, total: None)
        wanted = list(dict.fromkeys(ids)) if ids is not None else self._all_ids(filters)
        vector_fields = [f for f in (TITLE_VECTOR, IMAGE_VECTOR, CLIP_ITA_VECTOR) if f in self.schema.vectors]
        entries = []
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            stored = self.store.get(chunk)
            missing = [i for i in chunk if i not in stored]
            if ids is not None and missing:
                raise NotFound(f"no product with id {missing[0][:200]!r}")
            vectors: dict[str, dict[str, np.ndarray]] = {i: {} for i in stored}
            if isinstance(self.store, VectorReader):
                for field_name in vector_fields:
                    for pid, vec in self.store.vectors(list(stored), field_name).items():
                        vectors[pid][field_name] = vec
            def judged(n: int, _of: int, before: int = start) -> None:
                tell(before + n, len(wanted))

            entries.extend(audit_products(
                self.categorizer(), [d.product for d in stored.values()], vectors, depth=depth,
                neighbours=neighbours or DEFAULT_NEIGHBOURS, weights=weights or self.category_weights(),
                progress=judged))
            tell(start + len(chunk), len(wanted))  # products without a category are not judged: counted here
        entries.sort(key=lambda e: (-e.suspicion, -e.gap, e.id))
        return AuditReport(entries[:k], len(entries), depth)

    def audit_selection(self, filters: Sequence[Filter] = ()) -> list[str]:
        """The ids ``audit`` judges when given none: every product matching ``filters``, in id
        order (a service pages through it, bounding the work of one request)."""
        return self._all_ids(filters)

    def _all_ids(self, filters: Sequence[Filter] = ()) -> list[str]:
        """Every product id (matching ``filters``), sorted: the store lists them where it can;
        filtered, a kNN query over the matching products only, at most ``MAX_AUDIT`` deep
        (Elasticsearch's k limit), so a narrow filter works on an index of any size."""
        if not filters and isinstance(self.store, IdLister):
            return self.store.ids()
        field_name = next((f for f in (TITLE_VECTOR, IMAGE_VECTOR) if f in self.schema.vectors), None)
        if field_name is None:
            raise Unsupported("auditing a whole index needs title or image vectors to list its products "
                              "(pass ids, or ingest with a text model)")
        total = self.store.count()
        dims = self.schema.vectors[field_name].dims
        probe = np.full(dims, 1.0 / np.sqrt(dims), dtype=np.float32)
        hits = self.store.search(None, [VectorQuery(field_name, probe, "all")], min(max(total, 1), MAX_AUDIT), filters)
        found = sorted(h.id for h in hits.get("all", []))
        if len(found) >= MAX_AUDIT and total > MAX_AUDIT:  # the listing may have been cut
            which = "match the filter" if filters else "are in the index"
            raise Unsupported(f"{MAX_AUDIT:,} or more of the index's {total:,} products {which}; audit at most "
                              f"{MAX_AUDIT:,} at once (pass ids or narrow it with a category filter)")
        return found

    def categorizer(self) -> Categorizer:
        """The signals over this index (label space: every category node of the index)."""
        from .categorize.engine import Categorizer

        if self._categorizer is None:
            labels = sorted(self.store.category_counts()) if isinstance(self.store, CategoryCounter) else []
            self._categorizer = Categorizer(
                self.store, vector_fields=list(self.schema.vectors), text_encoder=self.text_encoder,
                image_encoder=self.image_encoder, category_encoder=self.category_encoder, labels=labels,
            )
        return self._categorizer

    def category_weights(self) -> SignalWeights:
        """The fusion weights of the categorization signals (per level of the tree): tuned on
        this catalogue by ``ctir-es learn`` when the index holds them, else the measured defaults."""
        from .categorize.core import SignalWeights
        from .categorize.engine import DEFAULT_WEIGHTS
        from .categorize.served import served_weights

        if self._category_weights is None:
            self._category_weights = served_weights(self.store, self.schema) or SignalWeights(dict(DEFAULT_WEIGHTS))
        return self._category_weights

    def _stored_evidence(self, stored: StoredProduct) -> Evidence:
        """A stored product's own vectors (never its categories); it does not vote for itself."""
        from .categorize.engine import Evidence

        p = stored.product
        vectors: dict[str, np.ndarray] = {}
        if isinstance(self.store, VectorReader):
            for field_name in (TITLE_VECTOR, IMAGE_VECTOR, CLIP_ITA_VECTOR):
                if field_name in stored.vector_fields:
                    vec = self.store.vectors([p.id], field_name).get(p.id)
                    if vec is not None:
                        vectors[field_name] = vec
        if TITLE_VECTOR not in vectors and self.text_encoder is not None and p.title:
            vectors[TITLE_VECTOR] = self.text_encoder.encode_documents([p.title])[0]
        if CLIP_ITA_VECTOR not in vectors and self.category_encoder is not None:
            blank = type(p).from_mapping({**p.to_json(), "categories": []})
            vectors[CLIP_ITA_VECTOR] = self.category_encoder.encode_products([blank], [None])[0]
        return Evidence(p.title, p.title, p, vectors, (p.id,))

    def category_notices(self, category: CategoryPath | None, filters: Sequence[Filter]) -> list[str]:
        """Notices for category paths the index does not hold: the category a query names
        (its results then match its words only) and each category filter (it matches nothing),
        each with the closest categories. Empty for a store that cannot count categories.

        The index's categories are read once and again only when a path is missing (an ingest
        elsewhere may have added it), at most every ``CATEGORY_REREAD`` seconds."""
        from .categories import unknown_category_notice

        asked = [(p, False) for p in [category] if p]
        asked += [(f.path, True) for f in filters if f.field == "category" and f.op == "subtree"]
        if not asked or not isinstance(self.store, CategoryCounter):
            return []
        known = self._known_categories()
        if any(tuple(p) not in known for p, _ in asked):
            known = self._known_categories(stale_after=CATEGORY_REREAD)
        out = []
        for path, is_filter in asked:
            what = ("the category filter matches no product" if is_filter
                    else "the results match its words, not a category")
            notice = unknown_category_notice(path, known, what, exact=is_filter)
            if notice is not None:
                out.append(notice)
        return out

    def _known_categories(self, stale_after: float | None = None) -> Mapping[CategoryPath, int]:
        """Products per category node, cached; re-read when older than ``stale_after`` seconds."""
        now = time.monotonic()
        cached = self._categories_read
        if cached is None or (stale_after is not None and now - cached[0] >= stale_after):
            counts = self.store.category_counts() if isinstance(self.store, CategoryCounter) else {}
            cached = self._categories_read = (now, dict(counts))
        return cached[1]

    def categories(self) -> list[CategoryNode]:
        """The category tree (roots, children sorted by name) with product counts per node."""
        from .categories import build_tree

        if not isinstance(self.store, CategoryCounter):
            raise Unsupported(f"{type(self.store).__name__} cannot list categories yet")
        return build_tree(self.store.category_counts())

    def index(
        self,
        products: Iterable[Product | Mapping[str, Any]],
        *,
        options: IngestOptions | None = None,
        report: IngestReport | None = None,
    ) -> IngestReport:
        """Encode and upsert products (``Product`` or generic-JSONL-shaped mappings) with this
        search's encoders, through the ingest pipeline. Bad records are rejected and counted
        in the returned report, never raised; images are fetched only for an image encoder."""
        from .errors import InvalidRecord
        from .ingest.pipeline import IngestOptions, Pipeline
        from .ingest.report import IngestReport
        from .products import Product

        report = report if report is not None else IngestReport(source="api")
        options = options or IngestOptions()
        loader = self.image_loader

        def validated() -> Iterable[Product]:
            for n, item in enumerate(products, start=1):
                report.read += 1
                try:  # a Product built directly is checked like a record (e.g. lone surrogates)
                    yield Product.from_mapping(item.to_json() if isinstance(item, Product) else item)
                except InvalidRecord as exc:
                    report.reject(f"item {n}", exc.reason, exc.detail)

        load = loader.load_many if (self.image_encoder is not None and loader is not None) else None
        pipeline = Pipeline(
            self.store, text_encoder=self.text_encoder, image_encoder=self.image_encoder,
            load_images=load, options=options, clip_ita=self.category_encoder,  # keeps clip_ita filled
        )
        try:
            return pipeline.run(validated(), report)
        finally:
            self._schema = None  # the first index() creates the schema
            self._categorizer = None  # new category nodes

    def _image_vector(self, image: str | bytes | Image.Image) -> np.ndarray:
        """An image (path / URL, raw bytes, or decoded) through the index's image encoder."""
        if self.image_encoder is None or IMAGE_VECTOR not in self.schema.vectors:
            raise Unsupported("this index has no image vectors: ingest with CLIP weights to search by image")
        if isinstance(image, Image.Image):
            decoded = image.convert("RGB")
        elif isinstance(image, bytes):
            from .ingest.images import decode

            decoded = decode(image, max_bytes=getattr(self.image_loader, "max_bytes", None))
        else:
            if self.image_loader is None:
                raise QueryError("no image loader configured")
            decoded = self.image_loader.load(image)
        return self.image_encoder.encode_images([decoded])[0]


def _nothing_indexed(settings: Settings) -> str:
    """Say which store was read and what to type next (``make demo`` writes its own store)."""
    if settings.server_url:
        engine = "OpenSearch" if settings.engine == "opensearch" else "Elasticsearch"
        return f"nothing indexed yet in {engine} index {settings.es_index!r}: run `ctir-es ingest ...` first"
    hint = "run `ctir-es ingest sample` (or jsonl / flipkart / xmarket) first"
    from pathlib import Path

    demo = Path("artifacts/sample.db")
    if demo.exists() and demo.resolve() != Path(settings.store).resolve():
        hint += f", or read the store `make demo` wrote: --store {demo}"
    return f"nothing indexed yet in {settings.store}: {hint}"
