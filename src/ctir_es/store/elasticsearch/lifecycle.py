"""Index lifecycle on a live cluster: setup, status, reindex with an alias swap, swap, drop.

The request bodies come from ``bodies.aliases`` and ``bodies.index``;
this module sequences them. Naming: the store's index name (``CTIR_ES_INDEX``, default
``products``) is an ALIAS; the data lives in ``products-v1``, ``products-v2``, ...

Every function talks to the cluster through an ``EsSession`` (``session.call``) and takes the
index name and an ``IndexPlan`` (how new versions are built); none touches a store object.

- ``setup``: create ``{alias}-v1`` with the alias in one request,
  or check the live index against the schema (dims, encoder ids) and add new vector fields.
  A name that is itself a version (``products-v4``) is created as a plain index with no
  alias: that is how an index for NEW encoders is filled beside the live one.
- ``reindex``: next version with the current mapping (its schema's vector fields plus any
  written in place and not in the schema yet; optionally another ``index_options``
  type or shard count), a verbatim copy (server-side ``_reindex`` where the cluster has the
  reindex module, else a client-side scroll + bulk), a ``_count`` check,
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import elasticsearch
from elasticsearch import helpers

from ...errors import ConfigError, SchemaMismatch, StoreError
from ...schema import IndexSchema, VectorField
from .bodies import aliases as bodies
from .bodies import index as mapping
from .bodies.responses import error_type
from .session import EsSession, response_body

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


@dataclass(frozen=True)
class IndexPlan:
    """How new index versions are built (existing ones keep what they were built with)."""

    index_options: str = mapping.DEFAULT_INDEX_OPTIONS
    shards: int = 1
    replicas: int | None = None


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
    method: str = "server"  # "server" (_reindex) or "client" (scroll + bulk)
    shards: int = 1

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------- what the cluster allows


def new_index_analyzer(session: EsSession) -> str:
    """The text analyser of a new index on this cluster (with a notice when not ``english``)."""
    analyzer = session.cluster_info().text_analyzer
    if analyzer != mapping.TEXT_ANALYZER:
        session.notice(
            f"this {session.engine} has no analysis-common module (the test distribution): text "
            f"fields use the {analyzer} analyser, without English stemming"
        )
    return analyzer


def check_index_options(session: EsSession, index_options: str) -> None:
    ok, why = session.cluster_info().index_options_support(index_options)
    if not ok:
        raise ConfigError(f"{why}; choose another --index-options (e.g. hnsw)")


# ---------------------------------------------------------------- resolution


def resolve(session: EsSession, name: str) -> Live:
    """Alias, plain index or nothing - one GET mapping request (it names the concrete index)."""

    def get() -> Live:
        try:
            body = response_body(session.client.indices.get_mapping(index=name))
        except elasticsearch.NotFoundError:
            return Live(name, None)
        indices = sorted(body)
        kind = "index" if indices == [name] else "alias"
        return Live(name, kind, indices, body[indices[0]] if indices else None)

    return session.call("reading the index mapping", get)


def versions(session: EsSession, alias: str) -> list[str]:
    """Every ``{alias}-vN`` index on the cluster, oldest first."""

    def get() -> list[str]:
        body = response_body(
            session.client.indices.get_alias(index=f"{alias}{bodies.VERSION_SEPARATOR}*")
        )
        found = [n for n in body if bodies.version_of(alias, n) is not None]
        return sorted(found, key=lambda n: bodies.version_of(alias, n) or 0)

    try:
        return session.call(f"listing the versions of {alias!r}", get)
    except StoreError:
        return []


# ---------------------------------------------------------------- setup


def mismatch_hint(session: EsSession, alias: str, live: Live) -> str:
    if bodies.parse_versioned(alias):
        return "use the encoders it was built with, or build another version (CTIR_ES_INDEX)"
    nxt = bodies.versioned_name(
        alias, bodies.next_version(alias, versions(session, alias) + live.indices)
    )
    return (
        "use the encoders it was built with, or build a new version with the new encoders "
        f"beside it and swap it in without downtime: `CTIR_ES_INDEX={nxt} ctir-es ingest ...` "
        f"then `ctir-es es swap {nxt}` (`ctir-es es reindex` rebuilds with the same encoders)"
    )


def _index_body(
    session: EsSession,
    schema: IndexSchema,
    plan: IndexPlan,
    index_options: str | None = None,
    unlisted: Mapping[str, VectorField] | None = None,
) -> dict[str, Any]:
    options = index_options or plan.index_options
    check_index_options(session, options)
    replicas = plan.replicas
    if replicas is None:  # derived from the cluster: 1 with a second data node, else 0
        replicas = session.cluster_info().default_replicas
    return mapping.index_body(
        schema,
        options,
        shards=plan.shards,
        replicas=replicas,
        text_analyzer=new_index_analyzer(session),
        unlisted=unlisted,
        vectors=session.vectors,
    )


def create_index(
    session: EsSession, schema: IndexSchema, plan: IndexPlan, name: str, alias: str | None
) -> bool:
    """Create ``name`` for ``schema`` (and point ``alias`` at it). False if it already existed."""
    body = _index_body(session, schema, plan)
    if alias:
        body = bodies.with_alias(body, alias)

    def create() -> bool:
        try:
            session.client.indices.create(index=name, **body)
        except elasticsearch.BadRequestError as exc:
            if error_type(exc.body) == "resource_already_exists_exception":
                return False
            raise
        return True

    created = session.call(f"creating index {name!r}", create)
    if created:
        log.info(
            "created index %s%s at %s",
            name,
            f" behind alias {alias}" if alias else "",
            session.connection.redacted_url,
        )
    return created


def setup(session: EsSession, name: str, plan: IndexPlan, schema: IndexSchema) -> IndexSchema:
    """``Store.setup`` for Elasticsearch: see the module docstring."""
    for field_name, vf in schema.vectors.items():
        session.vectors.vector_mapping(field_name, vf, plan.index_options)  # fail fast, before any I/O
    live = resolve(session, name)
    if live.kind is None:
        versioned = bodies.parse_versioned(name) is not None
        target = name if versioned else bodies.versioned_name(name, 1)
        if not versioned:
            taken = versions(session, name)
            if taken:  # versions exist but nothing is aliased: take the next number
                target = bodies.versioned_name(name, bodies.next_version(name, taken))
        if create_index(session, schema, plan, target, None if versioned else name):
            return schema
        live = resolve(session, name)
        if live.mapping is None:
            raise StoreError(f"index {target!r} exists but {name!r} does not resolve to it")
    if len(live.indices) > 1:
        raise StoreError(
            f"{name!r} points at several indices ({', '.join(live.indices)}); "
            f"point it at one with `ctir-es es swap INDEX`"
        )
    current = live.mapping or {}
    existing = mapping.schema_from_mapping(current)
    where = name if live.kind == "index" else f"{name} -> {live.concrete}"
    if existing is None:
        raise SchemaMismatch(
            f"index {where!r} exists but was not created by ctir-es (its mapping has no "
            "_meta.ctir_es); set CTIR_ES_INDEX to another name or delete that index"
        )
    problems = existing.differences(schema)
    if problems:
        raise SchemaMismatch(
            f"index {where!r} does not fit the encoders in use: {'; '.join(problems)}. "
            f"Nothing was written. To fix it, {mismatch_hint(session, name, live)}"
        )
    version = mapping.mapping_version_from_mapping(current) or 1
    if version < mapping.MAPPING_VERSION:
        raise SchemaMismatch(older_mapping_message(session, name, live, where, version))
    conflicts = mapping.value_conflicts(existing, current, schema)
    if conflicts:
        raise SchemaMismatch(
            f"index {where!r} holds typed values of other types: {'; '.join(conflicts)}. Nothing "
            f"was written. {session.engine} cannot change a mapped field's type: type the value as the "
            "index does, give it another name, or build a new index version beside it and swap "
            f"it in ({mismatch_hint(session, name, live)})"
        )
    options = mapping.index_options_from_mapping(current) or plan.index_options
    added = mapping.added_vector_properties(existing, schema, options, session.vectors)
    new_values = mapping.added_values(existing, current, schema)
    merged = mapping.merged_schema(existing, schema)
    summary = not mapping.has_summary(current)  # an index created before the field: add it
    if added or new_values or summary:
        properties = dict(added)
        if new_values:
            properties.update(mapping.values_put_mapping(merged.values))
        if summary:
            properties[mapping.SUMMARY_FIELD] = mapping.summary_mapping()
        meta = mapping.meta(
            merged, options, mapping.text_analyzer_from_mapping(current), mapping_version=version
        )
        what = [*(f"vector field {n}" for n in added), *(f"value {n}" for n in new_values),
                *(["the summary field"] if summary else [])]
        session.call(
            f"adding {', '.join(what)} to {where!r}",
            lambda: session.client.indices.put_mapping(index=name, properties=properties, meta=meta),
        )
    return merged


def older_mapping_message(session: EsSession, name: str, live: Live, where: str, version: int) -> str:
    """Why an index of an older mapping version takes no writes, and the way forward: a
    verbatim reindex from ``REINDEXABLE_FROM`` on, an ingest into a new version before it."""
    head = (
        f"index {where!r} was built by an older ctir-es mapping (v{version}, current "
        f"v{mapping.MAPPING_VERSION}, which maps typed values under values.<name>); it still "
        "answers searches without value filters, but takes no writes. "
    )
    if version >= mapping.REINDEXABLE_FROM and not bodies.parse_versioned(name):
        return head + (
            "Migrate it with `ctir-es es reindex` (a copy into the next version with the current "
            "mapping, then an atomic alias swap; the old version is kept for rollback); an "
            "ingest then fills the typed values"
        )
    return head + (
        "Ingest again into a new version beside it and swap it in "
        f"({mismatch_hint(session, name, live)})"
    )


# ---------------------------------------------------------------- status


def count(session: EsSession, name: str) -> int:
    """``_count`` of ``name`` (0 when it does not exist)."""

    def get() -> int:
        try:
            return int(response_body(session.client.count(index=name))["count"])
        except elasticsearch.NotFoundError:
            return 0

    return session.call(f"counting {name!r}", get)


def status(session: EsSession, name: str) -> dict[str, Any]:
    """Alias, live index, versions, schema, mapping version, analyser, count, cluster facts."""
    live = resolve(session, name)
    out: dict[str, Any] = {
        "url": session.connection.redacted_url,
        "alias": name,
        "kind": live.kind,
        "live": live.concrete,
        "versions": versions(session, name),
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
                "text_analyzer": mapping.text_analyzer_from_mapping(live.mapping),
                "needs_reindex": bool(version and version < mapping.MAPPING_VERSION),
                "count": count(session, name),
                **shard_settings(session, live.concrete or name),
            }
        )
    out["cluster"] = session.cluster_info().to_json()
    return out


def shard_settings(session: EsSession, index: str) -> dict[str, int | None]:
    """``{"shards", "replicas"}`` of a concrete index (None where they cannot be read)."""
    try:
        body = session.body(
            f"reading the settings of {index!r}",
            lambda: session.client.indices.get_settings(
                index=index, name="index.number_of_*", flat_settings=True
            ),
        )
    except StoreError:
        return {"shards": None, "replicas": None}
    first: dict[str, Any] = next(iter(body.values()), {})
    flat: dict[str, Any] = first.get("settings", {})
    shards, replicas = flat.get("index.number_of_shards"), flat.get("index.number_of_replicas")
    return {
        "shards": int(shards) if shards is not None else None,
        "replicas": int(replicas) if replicas is not None else None,
    }


# ---------------------------------------------------------------- reindex / swap


def swap(
    session: EsSession, alias: str, target: str, *, allow_empty: bool = False
) -> list[dict[str, Any]]:
    """Point the alias at ``target`` atomically; returns the actions sent."""
    parsed = bodies.parse_versioned(alias)
    if parsed:
        raise StoreError(
            f"{alias!r} is itself a version; set CTIR_ES_INDEX to the alias (e.g. "
            f"{parsed[0]!r}) to swap"
        )
    live = resolve(session, alias)

    def target_mapping() -> dict[str, Any] | None:
        try:
            body = response_body(session.client.indices.get_mapping(index=target))
        except elasticsearch.NotFoundError:
            return None
        return body.get(target)

    found = session.call(f"reading {target!r}", target_mapping)
    if found is None:
        known = ", ".join(versions(session, alias)) or "none"
        raise StoreError(f"index {target!r} does not exist; versions: {known}")
    if mapping.schema_from_mapping(found) is None:
        raise SchemaMismatch(f"index {target!r} was not created by ctir-es; not swapping it in")
    if not allow_empty:
        session.call(f"refreshing {target!r}", lambda: session.client.indices.refresh(index=target))
        if count(session, target) == 0:
            raise StoreError(
                f"index {target!r} holds no products; fill it first (or allow an empty swap)"
            )
    if live.kind == "index":
        # a plain index holds the alias' name: delete it in the same atomic request
        actions: list[dict[str, Any]] = [
            {"remove_index": {"index": alias}},
            {"add": {"index": target, "alias": alias, "is_write_index": True}},
        ]
    else:
        actions = bodies.alias_swap_actions(alias, live.indices, target)
    session.call(
        f"moving alias {alias!r} to {target!r}",
        lambda: session.client.indices.update_aliases(actions=actions),
    )
    log.info("alias %s now points at %s (was %s)", alias, target, ", ".join(live.indices) or "-")
    return actions


def _copy(session: EsSession, source: str, dest: str, timeout: float) -> tuple[str, dict[str, Any]]:
    """Copy every document verbatim: ``_reindex`` where the cluster has it, else scroll + bulk.
    Returns the method and a ``_reindex``-shaped response (``total``, ``took``, ``failures``)."""
    if session.cluster_info().server_reindex:
        request = bodies.reindex_body(source, dest)

        def server() -> dict[str, Any]:
            client = session.client.options(request_timeout=timeout, max_retries=0)
            return dict(
                response_body(client.reindex(**request, wait_for_completion=True, refresh=True))
            )

        return "server", session.call(f"copying {source!r} into {dest!r}", server)
    session.notice(
        f"this {session.engine} has no reindex module (the test distribution): copying "
        "client-side (scroll + bulk)"
    )

    def client_side() -> dict[str, Any]:
        client = session.client.options(request_timeout=timeout, max_retries=0)
        # helpers.reindex would first ask for data streams (x-pack): scan + bulk directly
        # 9.x keeps dense vectors out of _source by default: ask for them (8.x has no option)
        extra = bodies.source_with_vectors(session.cluster_info().version_tuple)
        actions = (
            {"_op_type": "index", "_index": dest, "_id": hit["_id"], "_source": hit["_source"]}
            for hit in helpers.scan(client, index=source, size=500, preserve_order=False, **extra)
        )
        copied, failures = 0, []
        for ok, item in helpers.streaming_bulk(
            client, actions, chunk_size=500, raise_on_error=False, max_retries=3
        ):
            info = next(iter(item.values()))
            if ok:
                copied += 1
            else:
                failures.append({"id": info.get("_id"), "cause": info.get("error") or {}})
        client.indices.refresh(index=dest)
        return {"total": copied, "failures": failures}

    return "client", session.call(f"copying {source!r} into {dest!r}", client_side)


def reindex(
    session: EsSession,
    alias: str,
    plan: IndexPlan,
    *,
    index_options: str | None = None,
    shards: int | None = None,
    replicas: int | None = None,
    delete_old: bool = False,
    timeout: float = REINDEX_TIMEOUT,
) -> ReindexReport:
    """Copy the live index into the next version (current mapping), then swap the alias."""
    if bodies.parse_versioned(alias):
        raise StoreError(f"{alias!r} is a version, not an alias: reindex works on the alias")
    live = resolve(session, alias)
    if live.kind is None or live.mapping is None:
        raise StoreError(f"nothing to reindex: {alias!r} does not exist (run `ctir-es es setup`)")
    if len(live.indices) != 1:
        raise StoreError(f"{alias!r} points at {len(live.indices)} indices; swap it to one first")
    source = live.indices[0]
    schema = mapping.schema_from_mapping(live.mapping)
    if schema is None:
        raise SchemaMismatch(f"index {source!r} was not created by ctir-es; not reindexing it")
    options = (
        index_options or mapping.index_options_from_mapping(live.mapping) or plan.index_options
    )
    # vector fields written in place but not in the schema yet (VectorWriter) are mapped too
    unlisted = mapping.unlisted_vector_fields(live.mapping, session.vectors)
    for name, vf in {**schema.vectors, **unlisted}.items():
        session.vectors.vector_mapping(name, vf, options)  # e.g. bbq_hnsw needs >= 64 dims
    dest = bodies.versioned_name(
        alias, bodies.next_version(alias, versions(session, alias) + [source])
    )
    new_plan = IndexPlan(
        options,
        shards if shards is not None else plan.shards,
        replicas if replicas is not None else plan.replicas,
    )
    body = _index_body(session, schema, new_plan, unlisted=unlisted)
    session.call(
        f"creating index {dest!r}", lambda: session.client.indices.create(index=dest, **body)
    )
    try:
        method, response = _copy(session, source, dest, timeout)
        failures = bodies.reindex_failures(response)
        if failures:
            raise StoreError(
                f"reindex {source} -> {dest} failed for {len(failures)} document(s): "
                + "; ".join(failures[:3])
            )
        copied, copy_count = count(session, source), count(session, dest)
        if copied != copy_count:
            raise StoreError(
                f"reindex {source} -> {dest}: {copy_count} documents in the copy, {copied} in "
                "the source (were products written meanwhile?); the alias was not moved"
            )
    except StoreError:
        try:
            session.client.indices.delete(index=dest)
        except Exception:  # noqa: BLE001 - best effort; the original error matters
            log.warning("could not delete the incomplete copy %s", dest)
        raise
    swap(session, alias, dest, allow_empty=True)
    if delete_old:
        session.call(f"deleting {source!r}", lambda: session.client.indices.delete(index=source))
    return ReindexReport(
        alias=alias,
        source=source,
        dest=dest,
        copied=int(response.get("total", copied)),
        count=copy_count,
        index_options=options,
        deleted_old=delete_old,
        took_ms=int(response.get("took", 0)),
        method=method,
        shards=new_plan.shards,
    )


# ---------------------------------------------------------------- drop


def drop(session: EsSession, name: str) -> list[str]:
    """Delete the alias' indices (every version), the checkpoint index; returns what went."""
    live = resolve(session, name)
    names = list(
        dict.fromkeys(live.indices + versions(session, name) + [session.connection.meta_index])
    )

    def delete() -> list[str]:
        gone = []
        for index in names:
            try:
                session.client.indices.delete(index=index)
                gone.append(index)
            except elasticsearch.NotFoundError:
                pass
        return gone

    return session.call(f"deleting {name!r}", delete)
