"""Index lifecycle on a live cluster: setup, status, reindex with an alias swap, swap, drop.

The request bodies come from ``ctir_es.es_mappings.lifecycle`` / ``index`` / ``pipeline``;
this module sequences them. Naming: the store's index name (``CTIR_ES_INDEX``, default
``products``) is an ALIAS; the data lives in ``products-v1``, ``products-v2``, ...

- ``setup``: ensure the ingest pipeline; create ``{alias}-v1`` with the alias in one request,
  or check the live index against the schema (dims, encoder ids) and add new vector fields.
  A name that is itself a version (``products-v4``) is created as a plain index with no
  alias: that is how an index for NEW encoders is filled beside the live one.
- ``reindex``: next version with the current mapping (and optionally another ``index_options``
  type or shard count), server-side ``_reindex`` through the pipeline, a ``_count`` check,
  then ONE atomic ``POST _aliases`` moving the alias. The old version is kept for rollback
  (``swap`` back to it) unless asked to delete it.
- ``swap``: point the alias at another version (after checking it is a ctir-es index that
  holds documents).
- ``drop``: delete every version, the alias and the checkpoint index.

Writes that arrive while ``_reindex`` copies are not in the copy: pause ingests during a
reindex (reads are never interrupted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import elasticsearch

from ...errors import SchemaMismatch, StoreError
from ...es_mappings import index as mapping
from ...es_mappings import lifecycle as bodies
from ...es_mappings.pipeline import PIPELINE_ID, pipeline_body
from ..base import IndexSchema
from .connection import _body

if TYPE_CHECKING:
    from ..elasticsearch import ElasticsearchStore

log = logging.getLogger(__name__)

REINDEX_TIMEOUT = 3600.0  # seconds a synchronous _reindex may take


@dataclass
class Live:
    """What the store's name resolves to right now."""

    name: str  # the store's index name (an alias, normally)
    kind: str | None  # "alias", "index" (a plain index of that name) or None (nothing)
    indices: list[str] = field(default_factory=list)  # concrete indices behind it
    mapping: dict[str, Any] | None = None  # mapping of the (first) concrete index

    @property
    def concrete(self) -> str | None:
        return self.indices[0] if self.indices else None


@dataclass
class ReindexReport:
    alias: str
    source: str
    dest: str
    copied: int
    count: int
    index_options: str
    deleted_old: bool
    took_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------- pipeline


def ensure_pipeline(store: ElasticsearchStore) -> bool:
    """Create or update the ingest pipeline when the cluster's copy differs. True if written."""
    body = pipeline_body()

    def ensure() -> bool:
        try:
            current = _body(store.client.ingest.get_pipeline(id=PIPELINE_ID)).get(PIPELINE_ID)
        except elasticsearch.NotFoundError:
            current = None
        if current is not None and all(current.get(k) == v for k, v in body.items()):
            return False
        store.client.ingest.put_pipeline(id=PIPELINE_ID, **body)
        return True

    written = store._call(f"installing ingest pipeline {PIPELINE_ID!r}", ensure)
    if written:
        log.info("ingest pipeline %s installed", PIPELINE_ID)
    return written


# ---------------------------------------------------------------- resolution


def resolve(store: ElasticsearchStore) -> Live:
    """Alias, plain index or nothing - one GET mapping request (it names the concrete index)."""
    name = store.index

    def get() -> Live:
        try:
            body = _body(store.client.indices.get_mapping(index=name))
        except elasticsearch.NotFoundError:
            return Live(name, None)
        indices = sorted(body)
        kind = "index" if indices == [name] else "alias"
        return Live(name, kind, indices, body[indices[0]] if indices else None)

    return store._call("reading the index mapping", get)


def versions(store: ElasticsearchStore, alias: str | None = None) -> list[str]:
    """Every ``{alias}-vN`` index on the cluster, oldest first."""
    alias = alias or store.index

    def get() -> list[str]:
        body = _body(
            store.client.indices.get_alias(index=f"{alias}{bodies.VERSION_SEPARATOR}*")
        )
        found = [n for n in body if bodies.version_of(alias, n) is not None]
        return sorted(found, key=lambda n: bodies.version_of(alias, n) or 0)

    try:
        return store._call(f"listing the versions of {alias!r}", get)
    except StoreError:
        return []


# ---------------------------------------------------------------- setup


def mismatch_hint(store: ElasticsearchStore, live: Live) -> str:
    alias = store.index
    if bodies.parse_versioned(alias):
        return "use the encoders it was built with, or build another version (CTIR_ES_INDEX)"
    nxt = bodies.versioned_name(alias, bodies.next_version(alias, versions(store) + live.indices))
    return (
        "use the encoders it was built with, or build a new version with the new encoders "
        f"beside it and swap it in without downtime: `CTIR_ES_INDEX={nxt} ctir-es ingest ...` "
        f"then `ctir-es es swap {nxt}` (`ctir-es es reindex` rebuilds with the same encoders)"
    )


def create_index(
    store: ElasticsearchStore, schema: IndexSchema, name: str, alias: str | None
) -> bool:
    """Create ``name`` for ``schema`` (and point ``alias`` at it). False if it already existed."""
    body = mapping.index_body(
        schema, store.index_options, shards=store.shards, replicas=store.replicas
    )
    if alias:
        body = bodies.with_alias(body, alias)

    def create() -> bool:
        try:
            store.client.indices.create(index=name, **body)
        except elasticsearch.BadRequestError as exc:
            if "resource_already_exists_exception" in str(exc.error):
                return False
            raise
        return True

    created = store._call(f"creating index {name!r}", create)
    if created:
        log.info(
            "created index %s%s at %s",
            name,
            f" behind alias {alias}" if alias else "",
            store.connection.redacted_url,
        )
    return created


def setup(store: ElasticsearchStore, schema: IndexSchema) -> IndexSchema:
    """``Store.setup`` for Elasticsearch: see the module docstring."""
    for name, vf in schema.vectors.items():
        mapping.vector_mapping(name, vf, store.index_options)  # fail fast, before any I/O
    live = resolve(store)
    try:
        ensure_pipeline(store)
    except StoreError as exc:
        if live.kind is None:
            raise
        log.warning("could not check the ingest pipeline (%s); writing without changing it", exc)
    if live.kind is None:
        versioned = bodies.parse_versioned(store.index) is not None
        target = store.index if versioned else bodies.versioned_name(store.index, 1)
        if not versioned:
            taken = versions(store)
            if taken:  # versions exist but nothing is aliased: take the next number
                target = bodies.versioned_name(store.index, bodies.next_version(store.index, taken))
        if create_index(store, schema, target, None if versioned else store.index):
            return schema
        live = resolve(store)
        if live.mapping is None:
            raise StoreError(f"index {target!r} exists but {store.index!r} does not resolve to it")
    if len(live.indices) > 1:
        raise StoreError(
            f"{store.index!r} points at several indices ({', '.join(live.indices)}); "
            f"point it at one with `ctir-es es swap INDEX`"
        )
    current = live.mapping or {}
    existing = mapping.schema_from_mapping(current)
    where = store.index if live.kind == "index" else f"{store.index} -> {live.concrete}"
    if existing is None:
        raise SchemaMismatch(
            f"index {where!r} exists but was not created by ctir-es (its mapping has no "
            "_meta.ctir_es); set CTIR_ES_INDEX to another name or delete that index"
        )
    problems = existing.differences(schema)
    if problems:
        raise SchemaMismatch(
            f"index {where!r} does not fit the encoders in use: {'; '.join(problems)}. "
            f"Nothing was written. To fix it, {mismatch_hint(store, live)}"
        )
    version = mapping.mapping_version_from_mapping(current) or 1
    if version < mapping.MAPPING_VERSION:
        log.warning(
            "index %s was built by an older ctir-es mapping (v%d, current v%d): "
            "run `ctir-es es reindex` to get the derived category fields",
            where,
            version,
            mapping.MAPPING_VERSION,
        )
    added = mapping.added_vector_properties(existing, schema, store.index_options)
    merged = mapping.merged_schema(existing, schema)
    if added:
        options = mapping.index_options_from_mapping(current) or store.index_options
        meta = mapping.meta(
            merged, options, mapping.pipeline_from_mapping(current), mapping_version=version
        )
        store._call(
            f"adding vector fields {', '.join(added)} to {where!r}",
            lambda: store.client.indices.put_mapping(
                index=store.index, properties=added, meta=meta
            ),
        )
    return merged


# ---------------------------------------------------------------- status


def status(store: ElasticsearchStore) -> dict[str, Any]:
    """Alias, live index, versions, schema, mapping version, pipeline, count, cluster facts."""
    live = resolve(store)
    out: dict[str, Any] = {
        "url": store.connection.redacted_url,
        "alias": store.index,
        "kind": live.kind,
        "live": live.concrete,
        "versions": versions(store),
    }
    if live.mapping is not None:
        schema = mapping.schema_from_mapping(live.mapping)
        version = mapping.mapping_version_from_mapping(live.mapping)
        out.update(
            {
                "created_by_ctir_es": schema is not None,
                "schema": schema.to_json() if schema else None,
                "mapping_version": version,
                "current_mapping_version": mapping.MAPPING_VERSION,
                "index_options": mapping.index_options_from_mapping(live.mapping),
                "ingest_pipeline": mapping.pipeline_from_mapping(live.mapping),
                "needs_reindex": bool(version and version < mapping.MAPPING_VERSION),
                "count": store.count(),
            }
        )

    def pipeline() -> bool:
        try:
            return PIPELINE_ID in _body(store.client.ingest.get_pipeline(id=PIPELINE_ID))
        except elasticsearch.NotFoundError:
            return False

    try:
        out["pipeline_installed"] = store._call("reading the ingest pipeline", pipeline)
    except StoreError as exc:
        out["pipeline_installed"] = None
        out["pipeline_error"] = str(exc)
    out["cluster"] = store.cluster_info().to_json()
    return out


# ---------------------------------------------------------------- reindex / swap


def _count(store: ElasticsearchStore, name: str) -> int:
    return int(
        store._call(
            f"counting {name!r}", lambda: _body(store.client.count(index=name))["count"]
        )
    )


def swap(store: ElasticsearchStore, target: str, *, allow_empty: bool = False) -> list[dict[str, Any]]:
    """Point the alias at ``target`` atomically; returns the actions sent."""
    alias = store.index
    if bodies.parse_versioned(alias):
        raise StoreError(
            f"{alias!r} is itself a version; set CTIR_ES_INDEX to the alias (e.g. "
            f"{bodies.parse_versioned(alias)[0]!r}) to swap"  # type: ignore[index]
        )
    live = resolve(store)

    def target_mapping() -> dict[str, Any] | None:
        try:
            body = _body(store.client.indices.get_mapping(index=target))
        except elasticsearch.NotFoundError:
            return None
        return body.get(target)

    found = store._call(f"reading {target!r}", target_mapping)
    if found is None:
        raise StoreError(f"index {target!r} does not exist; versions: {', '.join(versions(store)) or 'none'}")
    if mapping.schema_from_mapping(found) is None:
        raise SchemaMismatch(f"index {target!r} was not created by ctir-es; not swapping it in")
    if not allow_empty:
        store._call(f"refreshing {target!r}", lambda: store.client.indices.refresh(index=target))
        if _count(store, target) == 0:
            raise StoreError(f"index {target!r} holds no products; fill it first (or allow an empty swap)")
    if live.kind == "index":
        # a plain index holds the alias' name: delete it in the same atomic request
        actions: list[dict[str, Any]] = [
            {"remove_index": {"index": alias}},
            {"add": {"index": target, "alias": alias, "is_write_index": True}},
        ]
    else:
        actions = bodies.alias_swap_actions(alias, live.indices, target)
    store._call(
        f"moving alias {alias!r} to {target!r}",
        lambda: store.client.indices.update_aliases(actions=actions),
    )
    store._schema = None
    log.info("alias %s now points at %s (was %s)", alias, target, ", ".join(live.indices) or "-")
    return actions


def reindex(
    store: ElasticsearchStore,
    *,
    index_options: str | None = None,
    shards: int | None = None,
    replicas: int | None = None,
    delete_old: bool = False,
    timeout: float = REINDEX_TIMEOUT,
) -> ReindexReport:
    """Copy the live index into the next version (current mapping), then swap the alias."""
    alias = store.index
    if bodies.parse_versioned(alias):
        raise StoreError(f"{alias!r} is a version, not an alias: reindex works on the alias")
    live = resolve(store)
    if live.kind is None or live.mapping is None:
        raise StoreError(f"nothing to reindex: {alias!r} does not exist (run `ctir-es es setup`)")
    if len(live.indices) != 1:
        raise StoreError(f"{alias!r} points at {len(live.indices)} indices; swap it to one first")
    source = live.indices[0]
    schema = mapping.schema_from_mapping(live.mapping)
    if schema is None:
        raise SchemaMismatch(f"index {source!r} was not created by ctir-es; not reindexing it")
    options = index_options or mapping.index_options_from_mapping(live.mapping) or store.index_options
    for name, vf in schema.vectors.items():
        mapping.vector_mapping(name, vf, options)  # e.g. bbq_hnsw needs >= 64 dims
    ensure_pipeline(store)
    dest = bodies.versioned_name(alias, bodies.next_version(alias, versions(store) + [source]))
    body = mapping.index_body(
        schema,
        options,
        shards=shards if shards is not None else store.shards,
        replicas=replicas if replicas is not None else store.replicas,
    )
    store._call(f"creating index {dest!r}", lambda: store.client.indices.create(index=dest, **body))
    request = bodies.reindex_body(source, dest, PIPELINE_ID)

    def copy() -> dict[str, Any]:
        client = store.client.options(request_timeout=timeout, max_retries=0)
        return dict(_body(client.reindex(**request, wait_for_completion=True, refresh=True)))

    try:
        response = store._call(f"copying {source!r} into {dest!r}", copy)
        failures = bodies.reindex_failures(response)
        if failures:
            raise StoreError(
                f"reindex {source} -> {dest} failed for {len(failures)} document(s): "
                + "; ".join(failures[:3])
            )
        copied, count = _count(store, source), _count(store, dest)
        if copied != count:
            raise StoreError(
                f"reindex {source} -> {dest}: {count} documents in the copy, {copied} in the "
                "source (were products written meanwhile?); the alias was not moved"
            )
    except StoreError:
        try:
            store.client.indices.delete(index=dest)
        except Exception:  # noqa: BLE001 - best effort; the original error matters
            log.warning("could not delete the incomplete copy %s", dest)
        raise
    swap(store, dest, allow_empty=True)
    if delete_old:
        store._call(f"deleting {source!r}", lambda: store.client.indices.delete(index=source))
    return ReindexReport(
        alias=alias,
        source=source,
        dest=dest,
        copied=int(response.get("total", copied)),
        count=count,
        index_options=options,
        deleted_old=delete_old,
        took_ms=int(response.get("took", 0)),
    )


# ---------------------------------------------------------------- drop


def drop(store: ElasticsearchStore) -> list[str]:
    """Delete the alias' indices (every version), the checkpoint index; returns what went."""
    live = resolve(store)
    names = list(dict.fromkeys(live.indices + versions(store) + [store.connection.meta_index]))

    def delete() -> list[str]:
        gone = []
        for name in names:
            try:
                store.client.indices.delete(index=name)
                gone.append(name)
            except elasticsearch.NotFoundError:
                pass
        return gone

    return store._call(f"deleting {store.index!r}", delete)
