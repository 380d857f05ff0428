"""``ElasticsearchStore``: the production backend of the ``Store`` protocol.

A thin layer over the package's parts: ``bodies`` (every request and response as pure data,
golden-tested), ``session`` (the lazy client, error translation, cluster facts),
``lifecycle`` (versioned indices behind an alias, reindex, alias swap), ``bulk`` (chunked
writes with retries), ``connection`` (settings, auth, TLS, redaction) and ``cluster``
(what the cluster's version, modules and licence allow). Construction does no I/O.

Fusion is not a store concern: ``search`` returns one ranked list per source and
``ctir_es.ranking.fusion`` fuses them client-side, exactly as for the embedded store - the default
path. ``search_fused`` is an extra for this backend: ONE ``_search`` with an ``rrf`` or ``linear``
retriever when the cluster's version, modules and licence allow it (``cluster_info``), else a
``ServerFusionUnavailable`` saying why (one notice logged); ``Search`` uses it when
``fusion_location`` is ``server`` or ``auto`` and fuses client-side itself when told it cannot.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

import elasticsearch
import numpy as np
from elasticsearch import Elasticsearch, helpers

from ...errors import (
    AccessDenied,
    ConfigError,
    LicenceRequired,
    QueryError,
    SchemaMismatch,
    ServerFusionUnavailable,
    StoreError,
    Unsupported,
)
from ...filters import Filter, check_filters
from ...products import Product
from ...schema import (
    LEXICAL_FIELDS,
    Document,
    Hit,
    IndexSchema,
    LexicalQuery,
    StoredProduct,
    VectorField,
    VectorQuery,
    WriteResult,
)
from ...vocabulary import CANDIDATE_DEPTH, LEXICAL_SOURCE
from ..base import metadata_json, new_vectors
from . import lifecycle
from .bodies import documents, responses
from .bodies import index as mapping
from .bodies import search as search_bodies
from .bodies import stats as stats_bodies
from .bulk import BulkAborted, BulkLine, BulkOptions, BulkResult, BulkUnreachable, BulkWriter
from .cluster import QUANTIZED_INDEX_OPTIONS, ClusterInfo
from .connection import EsConnection
from .lifecycle import IndexPlan
from .session import EsSession, response_body

log = logging.getLogger(__name__)

PARTIAL_RETRIES = 3  # a search missing shards is asked again, then reported
PARTIAL_BACKOFF = 0.5  # seconds, times the attempt number
SUMMARY_CHUNK = 1000  # ids per summaries search (a shop request has at most CANDIDATE_CUTOFF = 1000)
MIN_FUSION_WINDOW = CANDIDATE_DEPTH  # as Search: each source contributes at least this many candidates


@dataclass
class BulkLoadReport:
    """Outcome of ``ElasticsearchStore.bulk_load``."""

    written: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    requests: int = 0
    skipped_resumed: int = 0  # documents before the checkpoint, not sent again
    last_position: int = 0
    count_before: int = 0
    count_after: int = 0
    distinct_written: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ElasticsearchStore:
    """Products behind one alias (``{index}`` -> ``{index}-vN``); checkpoints in ``{index}-ctir-meta``.

    ``index_options`` sets the kNN index type of new vector fields (hnsw, int8_hnsw, bbq_hnsw,
    ...; see ``bodies.index``); ``num_candidates`` the default kNN candidates per shard (a
    ``VectorQuery`` may set its own; default ``max(100, 2k)``); ``refresh`` makes each
    ``upsert`` visible to the next search (turn it off for bulk loads that refresh once at the
    end); ``chunk_size``, ``max_chunk_bytes``, ``max_retries``, ``initial_backoff`` and
    ``max_backoff`` shape bulk writes (see ``bulk``). ``sleep`` is for tests.
    """

    backend = "elasticsearch"  # stats()["backend"]
    session_class: type[EsSession] = EsSession  # the engine's dialect (OpenSearch has its own)

    def __init__(
        self,
        connection: EsConnection | None = None,
        *,
        index_options: str | None = None,
        shards: int = 1,
        replicas: int | None = None,
        refresh: bool = True,
        chunk_size: int = 500,
        max_chunk_bytes: int = 10 * 1024 * 1024,
        max_retries: int = 5,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        multi_match_type: str | None = None,
        num_candidates: int | None = None,
        client: Elasticsearch | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.connection = connection if connection is not None else EsConnection.from_env()
        self.session = self.session_class(self.connection, client)
        types = self.session.vectors.index_option_types
        if index_options is None:
            index_options = self.session.vectors.default_index_options
        if index_options not in types:
            raise ConfigError(f"unknown index_options type {index_options!r}; supported: {', '.join(types)}")
        if num_candidates is not None:
            search_bodies.num_candidates(1, num_candidates)  # validates
        self.plan = IndexPlan(index_options, shards, replicas)
        self.refresh = refresh
        self.bulk_options = BulkOptions(
            chunk_size=chunk_size,
            max_chunk_bytes=max_chunk_bytes,
            max_retries=max_retries,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
        )
        self._multi_match_type = multi_match_type
        self.num_candidates = num_candidates
        self._sleep = sleep
        self._live: dict[str, Any] | None = None  # mapping of the live index, once read
        self._meta_index_ready = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> Self:
        return cls(EsConnection.from_env(env), **options)

    @property
    def multi_match_type(self) -> str:
        """The lexical query type: the one given, else ``combined_fields`` (BM25F)."""
        return self._multi_match_type or search_bodies.MULTI_MATCH_TYPE

    @property
    def index(self) -> str:
        return self.connection.index

    @property
    def index_options(self) -> str:
        return self.plan.index_options

    @property
    def client(self) -> Elasticsearch:
        """The client, built on first use."""
        return self.session.client

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.connection.redacted_url!r}, index={self.index!r})"

    __str__ = __repr__

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------- plumbing

    def _read_live(self) -> dict[str, Any] | None:
        self._live = lifecycle.resolve(self.session, self.index).mapping
        return self._live

    def _live_mapping(self) -> dict[str, Any] | None:
        current = self._live if self._live is not None else self._read_live()
        return current or None  # {} marks a mapping this user may not read

    def _schema(self) -> IndexSchema | None:
        current = self._live_mapping()
        return None if current is None else mapping.schema_from_mapping(current)

    def _query_schema(self) -> IndexSchema | None:
        """The schema for checking and scoring queries; None when a search-only user may not
        read the mapping (403): queries then go unchecked and cosine scores are assumed (the
        similarity ctir-es indices use), with a notice."""
        try:
            return self._schema()
        except AccessDenied:
            self.session.notice(
                "cannot read the index mapping (403: the user lacks view_index_metadata): "
                "queries are not checked against the index and kNN scores are taken as cosine"
            )
            self._live = {}  # do not ask again in this store
            return None

    def _checked_filters(self, filters: Sequence[Filter]) -> Sequence[Filter]:
        """``filters`` with the value filters typed against the index's schema
        (``check_filters``: ``"1,299"`` -> 1299.0, an unknown name or a wrong operator is a
        ``FilterError`` naming what the index holds). An index of a mapping older than v4 has
        no typed value fields: a value filter on it is ``Unsupported`` with the way out, never
        a silently empty answer. Without the right to read the mapping they go as given."""
        if not any(f.on_value for f in filters):
            return filters
        schema = self._query_schema()
        current = self._live_mapping()
        if schema is None or current is None:
            return filters
        version = mapping.mapping_version_from_mapping(current) or 1
        if version < mapping.MAPPING_VERSION:  # migrated since this store read it?
            current = self._read_live() or {}
            schema = mapping.schema_from_mapping(current) or schema
            version = mapping.mapping_version_from_mapping(current) or 1
        if version < mapping.MAPPING_VERSION:
            raise Unsupported(
                f"index {self.index!r} was built by ctir-es mapping v{version}, which has no typed "
                f"value fields (v{mapping.MAPPING_VERSION} has): migrate it with `ctir-es es "
                "reindex`, then ingest to fill the values"
            )
        return check_filters(filters, schema)

    def _rescore(self) -> float:
        """The oversample of kNN rescoring with the float vectors (0: none): quantised index
        types on 8.18+."""
        current = self._live_mapping()
        options = mapping.index_options_from_mapping(current) if current else None
        if options not in QUANTIZED_INDEX_OPTIONS:
            return 0.0  # float vectors: the scores are exact already
        if not self.session.cluster_info().rescore_vector(options):
            return 0.0
        return search_bodies.rescore_oversample(options)

    # -------------------------------------------------------- Store protocol

    def setup(self, schema: IndexSchema) -> IndexSchema:
        """Create ``{index}-v1`` behind the alias ``{index}``, or check the live index against
        ``schema`` (``SchemaMismatch`` names the way out)."""
        merged = lifecycle.setup(self.session, self.index, self.plan, schema)
        self._read_live()
        return merged

    def schema(self) -> IndexSchema | None:
        current = self._read_live()
        return None if current is None else mapping.schema_from_mapping(current)

    def _writer(self) -> BulkWriter:
        def send(body: str) -> Mapping[str, Any]:
            client = self.client.options(max_retries=0)
            # a pre-serialised NDJSON body: chunks were cut by its exact byte size
            return response_body(client.bulk(operations=body))  # type: ignore[arg-type]

        kwargs: dict[str, Any] = {"scrub": self.connection.scrub}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        return BulkWriter(send, self.bulk_options, **kwargs)

    def _lines(
        self, numbered: Iterable[tuple[int, Document]], schema: IndexSchema, errors: dict[str, str]
    ) -> Iterator[BulkLine]:
        """Bulk lines of the documents that can be sent; the others go to ``errors`` by id."""
        dumps = self.client.transport.serializers.get_serializer("application/json").dumps

        def encode(obj: Any) -> str:
            data = dumps(obj)
            return data.decode() if isinstance(data, bytes) else data

        stamp = documents.ingest_time()
        summary = self._has_summary()
        for position, doc in numbered:
            reason = documents.check_document(doc, schema)
            if reason is not None:
                errors[doc.product.id] = reason
                continue
            pid, action, source = documents.bulk_lines([doc], self.index, encode, stamp, summary)[0]
            yield BulkLine(pid, action, source, position)

    def _require_schema(self) -> IndexSchema:
        schema = self._schema()
        if schema is None:
            raise StoreError(
                f"index {self.index!r} does not exist: call setup(schema) (or `ctir-es es setup`) first"
            )
        return schema

    def _refresh(self) -> None:
        self.session.call(
            "refreshing the index", lambda: self.client.indices.refresh(index=self.index)
        )

    def _bulk(self, what: str, lines: Any) -> Any:
        """Send bulk ``lines`` through the session; an abort on a lost connection names the
        (redacted) cluster URL."""
        try:
            return self.session.call(what, lambda: self._writer().write(lines))
        except BulkUnreachable as exc:
            raise BulkUnreachable(
                f"cannot reach {self.session.engine} at {self.connection.redacted_url}: {exc}",
                exc.result,
                exc.pending,
            ) from None

    def upsert(
        self, docs: Sequence[Document], checkpoint: tuple[str, int] | None = None
    ) -> WriteResult:
        """Index ``docs`` by id in chunks with retries; per-document errors come back by id.

        The checkpoint is recorded only after every document was sent; when retries run out a
        ``BulkAborted`` (a ``StoreError``) says what is missing, and the previous checkpoint
        still marks where a new run resumes."""
        schema = self._require_schema()
        errors: dict[str, str] = {}
        lines = list(self._lines(enumerate(docs, 1), schema, errors))
        result = WriteResult(errors=errors)
        if lines:
            bulk = self._bulk(f"bulk indexing into {self.index!r}", lines)
            result.written = bulk.written
            result.errors.update(bulk.errors)
        self._after_write(bool(lines), checkpoint)
        return result

    def _after_write(self, sent: bool, checkpoint: tuple[str, int] | None) -> None:
        """What ends ``upsert`` and ``write_vectors``: a refresh (when on) if anything was
        sent, then ``checkpoint`` recorded, only now that every item went out."""
        if sent and self.refresh:
            self._refresh()
        if checkpoint is not None:
            key, position = checkpoint
            self._write_checkpoint(key, int(position))

    def bulk_load(
        self,
        docs: Iterable[Document],
        *,
        checkpoint_key: str | None = None,
        resume: bool = True,
        on_chunk: Callable[[BulkLoadReport], None] | None = None,
    ) -> BulkLoadReport:
        """Stream ``docs`` into the index: chunks by count and bytes, retries with backoff,
        per-document errors collected, a checkpoint after every chunk, and at the end a
        ``_count`` check that every product written is there.

        With ``checkpoint_key`` and ``resume``, documents up to the recorded position are
        skipped (they were written by an earlier run); the checkpoint is cleared on success.
        Raises ``BulkAborted`` (with the checkpoint position in its message) when a chunk
        cannot be written, and ``StoreError`` when ``_count`` shows missing products."""
        schema = self._require_schema()
        report = BulkLoadReport()
        start = self.checkpoint(checkpoint_key) if (checkpoint_key and resume) else None
        report.last_position = start or 0
        self.session.call("refreshing the index", lambda: self.session.client.indices.refresh(index=self.index))
        report.count_before = self.count()
        written_ids: set[str] = set()

        def numbered() -> Iterator[tuple[int, Document]]:
            for position, doc in enumerate(docs, start=1):
                if start is not None and position <= start:
                    report.skipped_resumed += 1
                    continue
                yield position, doc

        def after_chunk(chunk: list[BulkLine], total: BulkResult) -> None:
            report.last_position = chunk[-1].position
            report.written, report.retries, report.requests = (
                total.written,
                total.retries,
                total.requests,
            )
            report.errors.update(total.errors)
            if checkpoint_key:
                self._write_checkpoint(checkpoint_key, report.last_position)
            if on_chunk is not None:
                on_chunk(report)

        writer = self._writer()
        try:
            total = self.session.call(
                f"bulk indexing into {self.index!r}",
                lambda: writer.write(self._lines(numbered(), schema, report.errors), after_chunk),
            )
        except BulkAborted as exc:
            where = (
                f"checkpoint {checkpoint_key!r} is at position {report.last_position}; run the "
                "same load again to resume from there (documents sent twice are replaced, "
                "never duplicated)"
                if checkpoint_key
                else "no checkpoint key was given: a new run starts from the beginning"
            )
            raise type(exc)(
                f"{exc} - {exc.result.written} written in this run; {where}",
                exc.result,
                exc.pending,
            ) from None
        written_ids = total.written_ids
        report.errors.update(total.errors)
        report.written, report.retries, report.requests = total.written, total.retries, total.requests
        report.distinct_written = len(written_ids)
        self.session.call("refreshing the index", lambda: self.session.client.indices.refresh(index=self.index))
        report.count_after = self.count()
        low = max(report.distinct_written, report.count_before) if report.count_before == 0 else report.count_before
        if report.count_after < low:
            raise StoreError(
                f"bulk load into {self.index!r}: _count is {report.count_after} after writing "
                f"{report.distinct_written} distinct products (was {report.count_before}): "
                "products are missing"
            )
        if checkpoint_key:
            self.clear_checkpoint(checkpoint_key)
        return report

    def _ensure_meta_index(self) -> None:
        if self._meta_index_ready:
            return
        name = self.connection.meta_index

        def ensure() -> None:
            if not self.client.indices.exists(index=name):
                try:
                    self.client.indices.create(index=name, **mapping.meta_index_body())
                    return
                except elasticsearch.BadRequestError as exc:
                    if responses.error_type(exc.body) != "resource_already_exists_exception":
                        raise
            # made by an older ctir-es: add the fields it lacks (idempotent)
            self.client.indices.put_mapping(index=name, properties=mapping.meta_index_properties())

        self.session.call(f"creating checkpoint index {name!r}", ensure)
        self._meta_index_ready = True

    def _write_checkpoint(self, key: str, position: int) -> None:
        self._ensure_meta_index()
        self.session.call(
            f"recording checkpoint {key!r}",
            lambda: self.client.index(
                index=self.connection.meta_index,
                id=key,
                document={"key": key, "position": position},
                refresh=True,
            ),
        )

    def checkpoint(self, key: str) -> int | None:
        def get() -> int | None:
            try:
                doc = response_body(self.client.get(index=self.connection.meta_index, id=key))
            except elasticsearch.NotFoundError:
                return None  # no such key, or no checkpoint index yet
            return int(doc["_source"]["position"])

        return self.session.call(f"reading checkpoint {key!r}", get)

    def clear_checkpoint(self, key: str) -> None:
        def delete() -> None:
            try:
                self.client.delete(index=self.connection.meta_index, id=key)
            except elasticsearch.NotFoundError:
                pass

        self.session.call(f"clearing checkpoint {key!r}", delete)

    def _with_candidates(self, vectors: Sequence[VectorQuery]) -> list[VectorQuery]:
        if self.num_candidates is None:
            return list(vectors)
        return [
            vq if vq.num_candidates is not None else replace(vq, num_candidates=self.num_candidates)
            for vq in vectors
        ]

    def _msearch_body(
        self, lexical: LexicalQuery | None, vectors: Sequence[VectorQuery], k: int, filters: Sequence[Filter]
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Result names and the ``_msearch`` lines of one ``search`` (the engine's bodies)."""
        rescore = self._rescore() if vectors else 0.0
        return search_bodies.msearch_body(
            self.index,
            lexical,
            vectors,
            k,
            filters,
            multi_match_type=self.multi_match_type,
            vector_body=lambda vq, k, filters: search_bodies.knn_body(vq, k, filters, rescore=rescore),
        )

    def _score_converters(
        self, vectors: Sequence[VectorQuery], schema: IndexSchema | None
    ) -> dict[str, Callable[[float], float] | None]:
        """Per result name, how the engine's kNN score turns back into the similarity."""
        if schema is None:  # unknown (mapping unreadable): ctir-es fields are cosine
            return {vq.name: responses.cosine_from_score for vq in vectors}
        return responses.vector_score_converters(vectors, schema)

    def search(
        self,
        lexical: LexicalQuery | None,
        vectors: Sequence[VectorQuery],
        k: int,
        filters: Sequence[Filter] = (),
    ) -> dict[str, list[Hit]]:
        """One ``_msearch`` round trip: the lexical search and every kNN search, one list each.
        The same filters restrict each of them (kNN pre-filters: ``k`` hits whenever ``k``
        products match)."""
        filters = self._checked_filters(filters)
        schema = self._query_schema() if vectors else None  # the mapping is read once per store
        search_bodies.check_vector_queries(vectors, schema)
        vectors = self._with_candidates(vectors)
        names, searches = self._msearch_body(lexical, vectors, k, filters)
        results: dict[str, list[Hit]] = {}
        if lexical is not None:
            results[LEXICAL_SOURCE] = []  # stays empty when the text has nothing to search
        if not searches:
            return results
        converters = self._score_converters(vectors, schema)
        for attempt in range(PARTIAL_RETRIES + 1):
            response = self.session.body(
                f"searching {self.index!r}", lambda: self.client.msearch(searches=searches)
            )
            try:
                results.update(responses.parse_msearch(names, response, converters))
                return results
            except responses.PartialResults as exc:
                # a shard copy is moving (a node left or came back): ask again shortly
                if attempt == PARTIAL_RETRIES:
                    raise responses.PartialResults(self.connection.scrub(str(exc))) from None
                self.session.notice(f"{exc}; searching again")
                (self._sleep or time.sleep)(PARTIAL_BACKOFF * (attempt + 1))
            except StoreError as exc:
                raise StoreError(self.connection.scrub(str(exc))) from None
        return results

    def get(self, ids: Sequence[str]) -> dict[str, StoredProduct]:
        wanted = list(dict.fromkeys(str(i) for i in ids))
        if not wanted:
            return {}

        def mget() -> dict[str, StoredProduct]:
            try:
                response = self.client.mget(
                    index=self.index, ids=wanted, source_includes=list(documents.SOURCE_FIELDS)
                )
            except elasticsearch.NotFoundError:
                return {}
            return documents.mget_products(response_body(response))

        return self.session.call(f"fetching {len(wanted)} products", mget)

    def summaries(self, ids: Sequence[str]) -> dict[str, Product]:
        """Values and categories of ``ids`` from doc values (``documents.summaries_body``): a
        tenth of what reading ``_source`` costs for a shop request's candidates. Products
        without a summary (written before the field existed) are read whole with ``get``."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        out: dict[str, Product] = {}
        for start in range(0, len(wanted), SUMMARY_CHUNK):
            chunk = wanted[start : start + SUMMARY_CHUNK]

            def read(chunk: list[str] = chunk) -> dict[str, Product]:
                try:
                    response = self.client.search(index=self.index, **documents.summaries_body(chunk))
                except elasticsearch.NotFoundError:
                    return {}
                return documents.parse_summaries(response_body(response))

            out.update(self.session.call(f"reading {len(chunk)} product summaries", read))
        rest = [pid for pid in wanted if pid not in out]
        if rest:  # no summary (an older document): its _source has everything
            out.update({pid: stored.product for pid, stored in self.get(rest).items()})
        return out

    def _has_summary(self) -> bool:
        current = self._live_mapping()
        return current is not None and mapping.has_summary(current)

    def count(self) -> int:
        return lifecycle.count(self.session, self.index)

    def stats(self) -> dict[str, Any]:
        current = self._read_live()
        schema = mapping.schema_from_mapping(current) if current is not None else None
        counts: dict[str, Any] = {
            "products": 0,
            "with_image": 0,
            "vector_counts": {},
            "markets": {},
        }
        if current is not None:
            counts = stats_bodies.parse_stats(
                self.session.body(
                    f"reading statistics of {self.index!r}",
                    lambda: self.client.search(index=self.index, **stats_bodies.stats_body()),
                )
            )
        vectors = schema.vectors if schema else {}
        live = lifecycle.resolve(self.session, self.index)
        return {
            "backend": self.backend,
            "url": self.connection.redacted_url,
            "index": self.index,
            "live_index": live.concrete,
            "exists": current is not None,
            "products": counts["products"],
            "with_image": counts["with_image"],
            "markets": counts["markets"],
            "lexical_fields": list(LEXICAL_FIELDS),
            "vector_fields": {
                name: {**f.to_json(), "count": counts["vector_counts"].get(name, 0)}
                for name, f in vectors.items()
            },
            "index_options": mapping.index_options_from_mapping(current) if current else None,
            "text_analyzer": mapping.text_analyzer_from_mapping(current) if current else None,
            "mapping_version": mapping.mapping_version_from_mapping(current) if current else None,
        }

    def close(self) -> None:
        self.session.close()

    # -------------------------------------------------------- optional capabilities (store.base)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete products by id; returns how many existed. Visible to the next search."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        if not wanted:
            return 0
        response = self.session.body(
            f"deleting {len(wanted)} products",
            lambda: self.client.bulk(
                operations=documents.delete_operations(wanted, self.index), refresh=True
            ),
        )
        deleted, errors = documents.deleted_count(response)
        if errors:
            first = next(iter(errors.items()))
            raise StoreError(f"deleting {len(errors)} product(s) failed, e.g. {first[0]}: {first[1]}")
        return deleted

    def vectors(self, ids: Sequence[str], field: str) -> dict[str, np.ndarray]:
        """The stored ``field`` vectors of ``ids`` (an id without one is absent). ``field`` is
        one of the schema, or one mapped by ``write_vectors`` and not in the schema yet."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        schema = self._schema()
        if not wanted or schema is None:
            return {}
        if field not in schema.vectors:
            current = self._live_mapping()
            if current is None or mapping.mapped_vector_field(current, field, self.session.vectors) is None:
                return {}

        def mget() -> dict[str, np.ndarray]:
            try:
                response = self.client.mget(
                    index=self.index, ids=wanted, **documents.vector_fetch_params(field)
                )
            except elasticsearch.NotFoundError:
                return {}
            return documents.mget_vectors(response_body(response), field)

        return self.session.call(f"reading {field} of {len(wanted)} products", mget)

    def category_counts(self) -> dict[tuple[str, ...], int]:
        """Products per category node (every level), from a terms aggregation on the
        ancestor keys: the same counts as the embedded store's category tree."""
        if self._live_mapping() is None:
            return {}
        return stats_bodies.parse_category_counts(
            self.session.body(
                f"counting the categories of {self.index!r}",
                lambda: self.client.search(index=self.index, **stats_bodies.category_counts_body()),
            )
        )

    def image_dirs(self) -> list[str]:
        """Distinct directories of the local image files the products refer to (URLs left
        out): where a server may serve catalogue images from."""
        if self._live_mapping() is None:
            return []
        return stats_bodies.parse_image_dirs(
            self.session.body(
                f"listing the image directories of {self.index!r}",
                lambda: self.client.search(index=self.index, **stats_bodies.image_dirs_body()),
            )
        )

    def ids(self) -> list[str]:
        """Every product id, sorted (a scroll over ``_id`` only)."""
        if self._live_mapping() is None:
            return []

        def scan() -> list[str]:
            hits = helpers.scan(
                self.client, index=self.index, query={"query": {"match_all": {}}, "_source": False},
                size=2000, preserve_order=False,
            )
            return sorted(str(hit["_id"]) for hit in hits)

        return self.session.call(f"listing the ids of {self.index!r}", scan)

    def get_metadata(self, key: str) -> dict[str, Any] | None:
        metadata_json(key, {})  # checks the key

        def get() -> dict[str, Any] | None:
            try:
                doc = response_body(
                    self.client.get(index=self.connection.meta_index, id=f"metadata:{key}")
                )
            except elasticsearch.NotFoundError:
                return None  # no such key, or no side index yet
            value = doc["_source"].get("value")
            return dict(value) if isinstance(value, Mapping) else None

        return self.session.call(f"reading metadata {key!r}", get)

    def put_metadata(self, key: str, value: Mapping[str, Any]) -> None:
        document = {"key": key, "value": json.loads(metadata_json(key, value))}
        self._ensure_meta_index()
        self.session.call(
            f"writing metadata {key!r}",
            lambda: self.client.index(
                index=self.connection.meta_index, id=f"metadata:{key}", document=document,
                refresh=True,
            ),
        )

    def _existing_index(self, doing: str) -> tuple[dict[str, Any], IndexSchema]:
        """The live mapping (read now) and schema of a ctir-es index that exists."""
        current = self._read_live()
        if current is None:
            raise StoreError(
                f"index {self.index!r} does not exist: call setup(schema) (or `ctir-es es setup`) "
                f"before {doing}"
            )
        schema = mapping.schema_from_mapping(current)
        if schema is None:
            raise SchemaMismatch(
                f"index {self.index!r} was not created by ctir-es (its mapping has no _meta.ctir_es); "
                f"not {doing}"
            )
        return current, schema

    def write_vectors(
        self,
        field: str,
        spec: VectorField,
        vectors: Mapping[str, np.ndarray],
        checkpoint: tuple[str, int] | None = None,
    ) -> int:
        """Set ``field``'s vector of the products in ``vectors`` by partial updates (ids not in
        the index are skipped, never created); see ``store.base.VectorWriter``.

        The ``dense_vector`` mapping of ``field`` is added first when absent (the index's own
        ``index_options``), ``_meta`` left alone: ``schema()`` lists the field once
        ``set_vector_field`` ran. Per chunk, one ``_mget`` reads which ids exist and the vector
        fields they hold, then one ``_bulk`` of ``update`` actions sets the vector and adds the
        field to ``vector_fields`` (through the bulk layer: chunks, retries, per-item triage).
        The checkpoint is recorded after every vector was sent, as ``upsert`` does."""
        ids, matrix = new_vectors(field, spec, vectors)  # no I/O: a bad vector writes nothing
        current, schema = self._existing_index(f"writing {field!r} vectors")
        options = mapping.index_options_from_mapping(current) or self.plan.index_options
        body = mapping.add_vector_field_body(field, spec, options, self.session.vectors)  # checks name and dims
        listed = schema.vectors.get(field)
        mapped = mapping.mapped_vector_field(current, field, self.session.vectors)
        for what, known in (("the schema", listed), ("the mapping", mapped)):
            if known is not None and known.dims != spec.dims:
                raise SchemaMismatch(
                    f"index {self.index!r}: vector field {field!r} has {known.dims} dims in {what}, "
                    f"the vectors have {spec.dims}; nothing was written"
                )
        if mapped is None:
            self.session.call(
                f"adding vector field {field!r} to the mapping of {self.index!r}",
                lambda: self.client.indices.put_mapping(index=self.index, **body),
            )
            self._read_live()
        written = self._update_vectors(field, ids, matrix) if ids else 0
        self._after_write(bool(ids), checkpoint)
        return written

    def _update_vectors(self, field: str, ids: list[str], matrix: np.ndarray) -> int:
        dumps = self.client.transport.serializers.get_serializer("application/json").dumps

        def encode(obj: Any) -> str:
            data = dumps(obj)
            return data.decode() if isinstance(data, bytes) else data

        group = self.bulk_options.chunk_size

        def lines() -> Iterator[BulkLine]:
            for start in range(0, len(ids), group):
                wanted = ids[start : start + group]
                present = self._held_vector_fields(wanted)
                updates = [
                    (pid, matrix[start + i], present[pid])
                    for i, pid in enumerate(wanted)
                    if pid in present
                ]
                for pid, action, source in documents.vector_update_lines(
                    updates, field, self.index, encode
                ):
                    yield BulkLine(pid, action, source)

        bulk = self._bulk(f"writing {field!r} vectors into {self.index!r}", lines())
        if bulk.errors:
            shown = "; ".join(f"{pid}: {why}" for pid, why in list(bulk.errors.items())[:3])
            raise StoreError(
                f"writing {field!r} vectors into {self.index!r}: {len(bulk.errors)} product(s) "
                f"failed ({bulk.written} written), e.g. {shown}"
            )
        return bulk.written

    def _held_vector_fields(self, ids: list[str]) -> dict[str, list[str]]:
        """``{id: vector fields it holds}`` of the ``ids`` in the index (one ``_mget``)."""
        return documents.mget_vector_fields(
            self.session.body(
                f"reading the vector fields of {len(ids)} products",
                lambda: self.client.mget(
                    index=self.index, ids=ids, **documents.vector_fields_fetch_params()
                ),
            )
        )

    def set_vector_field(self, field: str, spec: VectorField) -> IndexSchema:
        """Record ``field`` with ``spec`` in the mapping's ``_meta`` (the schema), replacing the
        entry of that name, and map it if ``write_vectors`` did not. Elasticsearch cannot change
        a mapped field's dims or similarity: those raise ``SchemaMismatch``."""
        current, schema = self._existing_index(f"setting vector field {field!r}")
        options = mapping.index_options_from_mapping(current) or self.plan.index_options
        mapped = mapping.mapped_vector_field(current, field, self.session.vectors)
        if mapped is not None and (mapped.dims, mapped.similarity) != (spec.dims, spec.similarity):
            raise SchemaMismatch(
                f"index {self.index!r} maps vector field {field!r} with {mapped.dims} dims "
                f"({mapped.similarity}), not {spec.dims} ({spec.similarity}); {self.session.engine} cannot "
                "change a mapped field: write the new vectors to another field, or build a new "
                "index version with the new encoders and swap it in (`ctir-es es swap`)"
            )
        body = mapping.set_vector_field_body(
            schema,
            field,
            spec,
            options,
            mapping.text_analyzer_from_mapping(current),
            mapping.mapping_version_from_mapping(current) or 1,
            add_property=mapped is None,
            vectors=self.session.vectors,
        )
        self.session.call(
            f"setting vector field {field!r} of {self.index!r}",
            lambda: self.client.indices.put_mapping(
                index=self.index, properties=body.get("properties"), meta=body["_meta"]
            ),
        )
        self._read_live()
        return mapping.replaced_schema(schema, field, spec)

    # -------------------------------------------------------- beyond the protocol: cluster facts

    def cluster_info(self, refresh: bool = False) -> ClusterInfo:
        """Version, modules and licence, read once per store."""
        return self.session.cluster_info(refresh)

    def search_fused(
        self,
        lexical: LexicalQuery | None,
        vectors: Sequence[VectorQuery],
        k: int,
        filters: Sequence[Filter] = (),
        *,
        method: str = "rrf",
        weights: Mapping[str, float] | None = None,
        window: int | None = None,
    ) -> list[Hit]:
        """Hybrid search fused by the cluster in ONE round trip (an ``rrf`` / ``linear``
        retriever): the top ``k``, without a per-source breakdown.

        Raises ``ServerFusionUnavailable`` (with the reason, logged once per store) when the
        cluster's version, modules or licence, or the installed client, cannot, when ``rrf`` is
        given per-source weights (the 8.x retriever weighs sources equally), or when there is
        one source only: the caller then fuses ``search`` runs itself (``Search`` does) -
        fusion is not a store concern. ``window`` is each source's depth (default
        ``max(100, 2k)``, as ``Search``).
        """
        if method not in search_bodies.RETRIEVER_FUSIONS:
            raise QueryError(
                f"unknown fusion {method!r}; supported: {', '.join(search_bodies.RETRIEVER_FUSIONS)}"
            )
        depth = window or min(search_bodies.MAX_K, max(MIN_FUSION_WINDOW, 2 * k))
        ok, why = self._fusion_support(method, weights)
        if ok:
            filters = self._checked_filters(filters)
            schema = self._query_schema() if vectors else None
            search_bodies.check_vector_queries(vectors, schema)
            body = self._fused_body(method, lexical, self._with_candidates(vectors), k, filters, depth, weights)
            if body is None:
                raise ServerFusionUnavailable(method)  # one source: nothing to fuse, no notice
            try:
                response = self._send_fused(method, body)
            except TypeError:
                # a client older than 8.14 has no ``retriever`` argument
                why = "the installed elasticsearch client is older than 8.14"
            except LicenceRequired as exc:
                self.session.forget_cluster()  # licence changed: read it again next time
                why = str(exc)
            else:
                return responses.parse_hits(response)[:k]
        unavailable = ServerFusionUnavailable(method, why)
        self.session.notice(f"{unavailable}; fusing client-side")
        raise unavailable

    def _fusion_support(self, method: str, weights: Mapping[str, float] | None) -> tuple[bool, str]:
        """``(allowed, reason)`` for server-side ``method`` fusion with these weights."""
        ok, why = self.cluster_info().fusion_support(method)
        if ok and method == "rrf" and weights and len(set(weights.values()) | {1.0}) > 1:
            ok, why = False, "the rrf retriever of Elasticsearch 8.x takes no per-source weights"
        return ok, why

    def _fused_body(
        self,
        method: str,
        lexical: LexicalQuery | None,
        vectors: Sequence[VectorQuery],
        k: int,
        filters: Sequence[Filter],
        depth: int,
        weights: Mapping[str, float] | None,
    ) -> dict[str, Any] | None:
        """The one ``_search`` body fusing the sources (a retriever), or None for one source."""
        return search_bodies.retriever_body(
            method,
            lexical,
            vectors,
            k,
            filters,
            window=depth,
            weights=weights,
            multi_match_type=self.multi_match_type,
            rescore=self._rescore() if vectors else 0.0,
        )[1]

    def _send_fused(self, method: str, body: dict[str, Any]) -> Any:
        return self.session.body(
            f"searching {self.index!r} ({method} retriever)",
            lambda: self.client.search(index=self.index, **body),
        )

    # -------------------------------------------------------- beyond the protocol: lifecycle

    def status(self) -> dict[str, Any]:
        """Alias, live version, all versions, schema, mapping version, analyser, cluster."""
        return lifecycle.status(self.session, self.index)

    def reindex(self, **options: Any) -> lifecycle.ReindexReport:
        """Next version + a verbatim copy + count check + atomic alias swap."""
        report = lifecycle.reindex(self.session, self.index, self.plan, **options)
        self._read_live()
        return report

    def swap(self, target: str, *, allow_empty: bool = False) -> list[dict[str, Any]]:
        """Point the alias at ``target`` (another version) atomically."""
        actions = lifecycle.swap(self.session, self.index, target, allow_empty=allow_empty)
        self._read_live()
        return actions

    def drop(self) -> list[str]:
        """Delete every version of the index, the alias and the checkpoint index."""
        gone = lifecycle.drop(self.session, self.index)
        self._live = None
        self._meta_index_ready = False
        return gone
