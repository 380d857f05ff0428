"""``ElasticsearchStore``: the production backend of the ``Store`` protocol.

A thin layer: request bodies come from the pure functions in ``ctir_es.es_mappings``
(golden-tested as data); this module owns the connection settings, the lazy client, the
round trips and the translation of client exceptions into ``StoreError`` with secrets
redacted. Construction does no I/O; the first call connects.

Client/server versions: elasticsearch-py 9.x asks for REST API compatibility 9, which 8.x
servers reject ("Accept version must be either version 8 or 7"). By default the store asks
for compatibility 8 instead (``EsConnection.api_compat``), which 8.x serves natively and 9.x
serves through its N-1 REST compatibility, so one client works against both.
(reference/8.15/rest-api-compatibility.html)
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import elastic_transport
import elasticsearch
from elasticsearch import Elasticsearch, helpers

from ..errors import ConfigError, CtirError, SchemaMismatch, StoreError
from ..es_mappings import index as mapping
from ..es_mappings import queries
from ..filters import Filter
from .base import (
    LEXICAL_FIELDS,
    LEXICAL_SOURCE,
    Document,
    Hit,
    IndexSchema,
    LexicalQuery,
    StoredProduct,
    VectorQuery,
    WriteResult,
)

__all__ = [
    "ElasticsearchStore",
    "EsConnection",
    "build_client",
    "bulk_actions",
    "es_filter",
    "knn_body",
    "lexical_body",
    "msearch_body",
    "redact_url",
]

# The pure request builders live in ctir_es.es_mappings.queries; re-exported for discovery.
bulk_actions = queries.bulk_actions
es_filter = queries.es_filter
knn_body = queries.knn_body
lexical_body = queries.lexical_body
msearch_body = queries.msearch_body

log = logging.getLogger(__name__)

DEFAULT_URL = "http://localhost:9200"
DEFAULT_INDEX = "products"
META_INDEX_SUFFIX = "-ctir-meta"
ENV_PREFIX = "CTIR_ES_"
REDACTED = "***"

_T = TypeVar("_T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_USERINFO = re.compile(r"(?<=//)[^/@]*@")
_BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')


# ---------------------------------------------------------------- connection settings


def redact_url(url: str) -> str:
    """``https://user:pw@host`` -> ``https://***@host`` (for messages and repr)."""
    return _USERINFO.sub(f"{REDACTED}@", url)


def _parse_bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _check_index_name(name: str) -> None:
    """Elasticsearch's index-name rules, checked before any request is made."""
    if (
        not name
        or name != name.lower()
        or name[0] in "-_+"
        or name in (".", "..")
        or set(name) & _BAD_INDEX_CHARS
        or len(name.encode()) > 255 - len(META_INDEX_SUFFIX)
    ):
        raise ConfigError(
            f"bad index name {name!r}: use lowercase letters, digits, '-', '_' or '.', "
            f"not starting with '-', '_' or '+' (set CTIR_ES_INDEX)"
        )


@dataclass(frozen=True, slots=True)
class EsConnection:
    """Where and how to reach Elasticsearch. Secrets never appear in ``repr``/``str``.

    Credentials may be given as ``api_key`` (``"id:key"`` or the encoded form), as
    ``username``/``password``, or embedded in ``url`` (``https://user:pw@host:9200``); they
    are moved out of the URL so it can be shown and logged.
    ``api_compat`` is the REST API compatibility major version to request (8 works with
    8.x and 9.x servers; None sends what the installed client sends).
    """

    url: str = DEFAULT_URL
    index: str = DEFAULT_INDEX
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0
    api_compat: int | None = 8

    def __post_init__(self) -> None:
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"CTIR_ES_URL must be an http(s) URL such as {DEFAULT_URL}, got {redact_url(self.url)!r}"
            )
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"bad port in CTIR_ES_URL {redact_url(self.url)!r}") from None
        if parts.username is not None or parts.password is not None:
            if self.username is None and parts.username:
                object.__setattr__(self, "username", unquote(parts.username))
            if self.password is None and parts.password is not None:
                object.__setattr__(self, "password", unquote(parts.password))
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            netloc = f"{host}:{port}" if port else host
            object.__setattr__(self, "url", urlunsplit(parts._replace(netloc=netloc)))
        else:
            object.__setattr__(self, "url", self.url.strip())
        _check_index_name(self.index)
        if self.api_key and (self.username or self.password):
            raise ConfigError(
                "give either an API key (CTIR_ES_API_KEY) or a username/password, not both"
            )
        if self.username and self.password is None:
            raise ConfigError("CTIR_ES_USERNAME is set but CTIR_ES_PASSWORD is not")
        if self.password and not self.username:
            raise ConfigError("CTIR_ES_PASSWORD is set but CTIR_ES_USERNAME is not")
        if not self.request_timeout or self.request_timeout <= 0:
            raise ConfigError(f"request_timeout must be > 0 seconds, got {self.request_timeout!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> EsConnection:
        """Settings from ``CTIR_ES_*`` variables; keyword overrides (not None) win.

        Reads CTIR_ES_URL, CTIR_ES_INDEX, CTIR_ES_API_KEY, CTIR_ES_USERNAME,
        CTIR_ES_PASSWORD, CTIR_ES_CA_CERTS, CTIR_ES_VERIFY_CERTS, CTIR_ES_REQUEST_TIMEOUT
        and CTIR_ES_API_COMPAT ("8", "9" or "none").
        """
        env = os.environ if env is None else env
        fields = set(cls.__dataclass_fields__)
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(
                f"unknown Elasticsearch setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
            )
        values: dict[str, Any] = {}
        for name in ("url", "index", "api_key", "username", "password", "ca_certs"):
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw.strip():
                values[name] = raw.strip()
        if (raw := env.get("CTIR_ES_VERIFY_CERTS")) is not None and raw.strip():
            values["verify_certs"] = _parse_bool("CTIR_ES_VERIFY_CERTS", raw)
        if (raw := env.get("CTIR_ES_REQUEST_TIMEOUT")) is not None and raw.strip():
            try:
                values["request_timeout"] = float(raw)
            except ValueError:
                raise ConfigError(
                    f"CTIR_ES_REQUEST_TIMEOUT must be a number of seconds, got {raw!r}"
                ) from None
        if (raw := env.get("CTIR_ES_API_COMPAT")) is not None and raw.strip():
            text = raw.strip().lower()
            if text in ("none", "off"):
                values["api_compat"] = None
            elif text.isdigit():
                values["api_compat"] = int(text)
            else:
                raise ConfigError(
                    f"CTIR_ES_API_COMPAT must be a major version such as 8, or none; got {raw!r}"
                )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def meta_index(self) -> str:
        return self.index + META_INDEX_SUFFIX

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def secrets(self) -> list[str]:
        return [s for s in (self.api_key, self.password) if s]

    def scrub(self, text: str) -> str:
        """Remove every secret (and URL userinfo) from a message before it is shown."""
        text = redact_url(text)
        for secret in self.secrets():
            text = text.replace(secret, REDACTED)
        return text

    def with_index(self, index: str) -> EsConnection:
        return replace(self, index=index)

    def __repr__(self) -> str:
        return (
            f"EsConnection(url={self.redacted_url!r}, index={self.index!r}, "
            f"api_key={REDACTED if self.api_key else None!r}, username={self.username!r}, "
            f"password={REDACTED if self.password else None!r}, ca_certs={self.ca_certs!r}, "
            f"verify_certs={self.verify_certs!r}, request_timeout={self.request_timeout!r}, "
            f"api_compat={self.api_compat!r})"
        )

    __str__ = __repr__


# ---------------------------------------------------------------- client


_JSON_MIMETYPE = re.compile(r"application/(json|x-ndjson)")


def compat_mimetype(value: str, major: int) -> str:
    """``application/json`` -> ``application/vnd.elasticsearch+json; compatible-with=8``."""
    return _JSON_MIMETYPE.sub(rf"application/vnd.elasticsearch+\1; compatible-with={major}", value)


def client_major() -> int:
    return int(elasticsearch.__versionstr__.split(".")[0])


@functools.cache
def compat_client_class(major: int | None) -> type[Elasticsearch]:
    """An ``Elasticsearch`` subclass that requests REST compatibility ``major``.

    The client rewrites plain ``application/json`` to its own major version; a header that
    already names a compatible version is left alone, so rewriting it first wins.
    ``options()`` (used by the bulk helpers) rebuilds ``type(self)``, keeping the subclass.
    """
    if major is None or major >= client_major():
        return Elasticsearch
    version: int = major

    class CompatElasticsearch(Elasticsearch):
        def perform_request(
            self, method: str, path: str, *, headers: Any = None, **kwargs: Any
        ) -> Any:
            if headers:
                headers = {
                    k: compat_mimetype(v, version) if k.lower() in ("accept", "content-type") else v
                    for k, v in headers.items()
                }
            return super().perform_request(method, path, headers=headers, **kwargs)

    CompatElasticsearch.__name__ = CompatElasticsearch.__qualname__ = f"Elasticsearch{major}Compat"
    return CompatElasticsearch


def client_kwargs(conn: EsConnection) -> dict[str, Any]:
    """Keyword arguments for ``Elasticsearch(...)`` (holds secrets: never log it)."""
    kwargs: dict[str, Any] = {
        "hosts": [conn.url],
        "request_timeout": conn.request_timeout,
        "retry_on_timeout": True,
        "max_retries": 3,
    }
    if conn.api_key:
        key_id, sep, key = conn.api_key.partition(":")
        kwargs["api_key"] = (key_id, key) if sep else conn.api_key
    elif conn.username:
        kwargs["basic_auth"] = (conn.username, conn.password or "")
    if conn.url.startswith("https:"):
        kwargs["verify_certs"] = conn.verify_certs
        if conn.ca_certs:
            kwargs["ca_certs"] = conn.ca_certs
    return kwargs


def build_client(conn: EsConnection) -> Elasticsearch:
    """The client for ``conn``; constructing it does no I/O."""
    return compat_client_class(conn.api_compat)(**client_kwargs(conn))


def _body(response: Any) -> Any:
    return getattr(response, "body", response)


# ---------------------------------------------------------------- store


class ElasticsearchStore:
    """Products in one Elasticsearch index; checkpoints in ``{index}-ctir-meta``.

    ``index_options`` sets the kNN index type of new vector fields (see
    ``ctir_es.es_mappings.index``); ``refresh`` makes each ``upsert`` visible to the next
    search (turn it off for bulk loads that refresh once at the end); ``max_retries`` and
    ``initial_backoff`` retry bulk chunks or items rejected with 429/503.
    """

    def __init__(
        self,
        connection: EsConnection | None = None,
        *,
        index_options: str = mapping.DEFAULT_INDEX_OPTIONS,
        shards: int = 1,
        replicas: int | None = None,
        refresh: bool = True,
        chunk_size: int = 500,
        max_retries: int = 3,
        initial_backoff: float = 2.0,
        max_backoff: float = 60.0,
        multi_match_type: str = queries.MULTI_MATCH_TYPE,
        client: Elasticsearch | None = None,
    ) -> None:
        if index_options not in mapping.INDEX_OPTION_TYPES:
            raise ConfigError(
                f"unknown index_options type {index_options!r}; supported: {', '.join(mapping.INDEX_OPTION_TYPES)}"
            )
        self.connection = connection if connection is not None else EsConnection.from_env()
        self.index_options = index_options
        self.shards = shards
        self.replicas = replicas
        self.refresh = refresh
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.multi_match_type = multi_match_type
        self._client = client
        self._schema: IndexSchema | None = None
        self._meta_index_ready = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> ElasticsearchStore:
        return cls(EsConnection.from_env(env), **options)

    @property
    def index(self) -> str:
        return self.connection.index

    def __repr__(self) -> str:
        return f"ElasticsearchStore(url={self.connection.redacted_url!r}, index={self.index!r})"

    __str__ = __repr__

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------- plumbing

    @property
    def client(self) -> Elasticsearch:
        """The client, built on first use."""
        if self._client is None:
            self._client = build_client(self.connection)
        return self._client

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        """Run one request; client errors become ``StoreError`` with secrets removed."""
        conn = self.connection
        try:
            return fn()
        except CtirError:
            raise
        except elasticsearch.AuthenticationException:
            raise StoreError(
                f"{what}: Elasticsearch at {conn.redacted_url} rejected the credentials (401); "
                "set CTIR_ES_API_KEY, or CTIR_ES_USERNAME and CTIR_ES_PASSWORD"
            ) from None
        except elasticsearch.AuthorizationException as exc:
            raise StoreError(
                f"{what}: the Elasticsearch user lacks a privilege on {self.index!r} (403): "
                f"{conn.scrub(queries.error_text(exc.body))}"
            ) from None
        except elasticsearch.ApiError as exc:
            raise StoreError(
                f"{what} failed ({exc.meta.status}): {conn.scrub(queries.error_text(exc.body))}"
            ) from None
        except (elastic_transport.TransportError, elasticsearch.TransportError) as exc:
            raise StoreError(
                f"{what}: cannot reach Elasticsearch at {conn.redacted_url}: "
                f"{conn.scrub(type(exc).__name__ + ': ' + str(exc))[:300]}; is it running? "
                "(docker compose -f docker/docker-compose.yml up -d, or set CTIR_ES_URL)"
            ) from None

    def _get_mapping(self) -> dict[str, Any] | None:
        """The index mapping (first concrete index behind a name or alias), None if absent."""

        def get() -> dict[str, Any] | None:
            try:
                body = _body(self.client.indices.get_mapping(index=self.index))
            except elasticsearch.NotFoundError:
                return None
            return next(iter(body.values()), None)

        return self._call("reading the index mapping", get)

    # -------------------------------------------------------- Store protocol

    def setup(self, schema: IndexSchema) -> IndexSchema:
        for name, field in schema.vectors.items():
            mapping.vector_mapping(name, field, self.index_options)  # fail fast, before I/O
        current = self._get_mapping()
        if current is None:
            body = mapping.index_body(
                schema, self.index_options, shards=self.shards, replicas=self.replicas
            )

            def create() -> bool:
                try:
                    self.client.indices.create(index=self.index, **body)
                except elasticsearch.BadRequestError as exc:
                    if "resource_already_exists_exception" in str(exc.error):
                        return False  # created concurrently: check it below
                    raise
                return True

            if self._call(f"creating index {self.index!r}", create):
                log.info("created index %s at %s", self.index, self.connection.redacted_url)
                self._schema = schema
                return schema
            current = self._get_mapping() or {}
        existing = mapping.schema_from_mapping(current)
        if existing is None:
            raise SchemaMismatch(
                f"index {self.index!r} exists but was not created by ctir-es (its mapping has no "
                "_meta.ctir_es); set CTIR_ES_INDEX to another name or delete that index"
            )
        problems = existing.differences(schema)
        if problems:
            raise SchemaMismatch(
                f"index {self.index!r} does not fit the encoders in use: {'; '.join(problems)}. "
                "Use the encoders it was built with, or ingest into a new index (CTIR_ES_INDEX)"
            )
        added = mapping.added_vector_properties(existing, schema, self.index_options)
        merged = mapping.merged_schema(existing, schema)
        if added:
            options = mapping.index_options_from_mapping(current) or self.index_options
            self._call(
                f"adding vector fields {', '.join(added)} to {self.index!r}",
                lambda: self.client.indices.put_mapping(
                    index=self.index, properties=added, meta=mapping.meta(merged, options)
                ),
            )
        self._schema = merged
        return merged

    def schema(self) -> IndexSchema | None:
        current = self._get_mapping()
        self._schema = None if current is None else mapping.schema_from_mapping(current)
        return self._schema

    def upsert(
        self, docs: Sequence[Document], checkpoint: tuple[str, int] | None = None
    ) -> WriteResult:
        schema = self._schema or self.schema()
        if schema is None:
            raise StoreError(
                f"index {self.index!r} does not exist: call setup(schema) before upsert"
            )
        result = WriteResult()
        good = []
        for doc in docs:
            reason = queries.check_document(doc, schema)
            if reason is None:
                good.append(doc)
            else:
                result.errors[doc.product.id] = reason
        if good:
            self._call(f"bulk indexing into {self.index!r}", lambda: self._bulk(good, result))
            if self.refresh:
                self._call(
                    "refreshing the index", lambda: self.client.indices.refresh(index=self.index)
                )
        if checkpoint is not None:
            key, position = checkpoint
            self._write_checkpoint(key, int(position))
        return result

    def _bulk(self, docs: Sequence[Document], result: WriteResult) -> None:
        """Index ``docs``; items rejected for good are recorded, 429/503 are retried."""
        for ok, item in helpers.streaming_bulk(
            self.client,
            queries.bulk_actions(docs, self.index),
            chunk_size=self.chunk_size,
            raise_on_error=False,
            raise_on_exception=True,
            max_retries=self.max_retries,
            initial_backoff=self.initial_backoff,
            max_backoff=self.max_backoff,
            retry_on_status=(429, 503),
        ):
            if ok:
                result.written += 1
            else:
                pid, reason = queries.bulk_item_error(item)
                result.errors[pid] = self.connection.scrub(reason)

    def _ensure_meta_index(self) -> None:
        if self._meta_index_ready:
            return
        name = self.connection.meta_index

        def ensure() -> None:
            if not self.client.indices.exists(index=name):
                try:
                    self.client.indices.create(index=name, **mapping.meta_index_body())
                except elasticsearch.BadRequestError as exc:
                    if "resource_already_exists_exception" not in str(exc.error):
                        raise

        self._call(f"creating checkpoint index {name!r}", ensure)
        self._meta_index_ready = True

    def _write_checkpoint(self, key: str, position: int) -> None:
        self._ensure_meta_index()
        self._call(
            f"recording checkpoint {key!r}",
            lambda: self.client.index(
                index=self.connection.meta_index,
                id=key,
                document={"key": key, "position": position},
            ),
        )

    def checkpoint(self, key: str) -> int | None:
        def get() -> int | None:
            try:
                doc = _body(self.client.get(index=self.connection.meta_index, id=key))
            except elasticsearch.NotFoundError:
                return None  # no such key, or no checkpoint index yet
            return int(doc["_source"]["position"])

        return self._call(f"reading checkpoint {key!r}", get)

    def clear_checkpoint(self, key: str) -> None:
        def delete() -> None:
            try:
                self.client.delete(index=self.connection.meta_index, id=key)
            except elasticsearch.NotFoundError:
                pass

        self._call(f"clearing checkpoint {key!r}", delete)

    def search(
        self,
        lexical: LexicalQuery | None,
        vectors: Sequence[VectorQuery],
        k: int,
        filters: Sequence[Filter] = (),
    ) -> dict[str, list[Hit]]:
        schema = self._schema
        if vectors and schema is None:
            schema = self.schema()  # once per store: field dims and similarity
        queries.check_vector_queries(vectors, schema)
        names, searches = queries.msearch_body(
            self.index, lexical, vectors, k, filters, multi_match_type=self.multi_match_type
        )
        results: dict[str, list[Hit]] = {}
        if lexical is not None:
            results[LEXICAL_SOURCE] = []  # stays empty when the text has nothing to search
        if not searches:
            return results
        response = self._call(
            f"searching {self.index!r}", lambda: _body(self.client.msearch(searches=searches))
        )
        converters = queries.vector_score_converters(vectors, schema)
        try:
            results.update(queries.parse_msearch(names, response, converters))
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
                    index=self.index, ids=wanted, source_includes=list(queries.SOURCE_FIELDS)
                )
            except elasticsearch.NotFoundError:
                return {}
            return queries.mget_products(_body(response))

        return self._call(f"fetching {len(wanted)} products", mget)

    def count(self) -> int:
        def count() -> int:
            try:
                return int(_body(self.client.count(index=self.index))["count"])
            except elasticsearch.NotFoundError:
                return 0

        return self._call(f"counting {self.index!r}", count)

    def stats(self) -> dict[str, Any]:
        current = self._get_mapping()
        schema = mapping.schema_from_mapping(current) if current is not None else None
        counts: dict[str, Any] = {
            "products": 0,
            "with_image": 0,
            "vector_counts": {},
            "markets": {},
        }
        if current is not None:
            counts = queries.parse_stats(
                self._call(
                    f"reading statistics of {self.index!r}",
                    lambda: _body(self.client.search(index=self.index, **queries.stats_body())),
                )
            )
        vectors = schema.vectors if schema else {}
        return {
            "backend": "elasticsearch",
            "url": self.connection.redacted_url,
            "index": self.index,
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
        }

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    # -------------------------------------------------------- beyond the protocol

    def drop(self) -> None:
        """Delete the product index and its checkpoint index (tests, ``reset``)."""

        def delete() -> None:
            for name in (self.index, self.connection.meta_index):
                try:
                    self.client.indices.delete(index=name)
                except elasticsearch.NotFoundError:
                    pass

        self._call(f"deleting {self.index!r}", delete)
        self._schema = None
        self._meta_index_ready = False
