"""Index lifecycle requests as data: versioned indices behind an alias, reindex, alias swap.

The store reads and writes an alias (``products``); the documents live in a concrete, versioned
index (``products-v1``, ``products-v2``, ...). A change that needs a new index (a mapping
version, another ``index_options`` type, other encoders) builds the next version beside the
live one and then moves the alias in ONE ``POST _aliases`` request, which Elasticsearch applies
atomically: searches see the old index until the instant they see the new one.
Reference pages (Elasticsearch 8.x):

- create index with ``aliases`` (``is_write_index``): reference/8.15/indices-create-index.html
- ``POST _aliases`` with ``remove`` + ``add`` actions, atomic:
  reference/8.15/indices-aliases.html ("Multiple actions ... are applied atomically")
- ``GET _alias/{name}``: reference/8.15/indices-get-alias.html
- ``POST _reindex`` with ``dest.pipeline: _none`` and ``dest.op_type``: reference/8.15/docs-reindex.html
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ctir_es.errors import ConfigError

VERSION_SEPARATOR = "-v"
_VERSIONED = re.compile(r"^(?P<alias>.+)-v(?P<version>[0-9]{1,6})$")


def versioned_name(alias: str, version: int) -> str:
    """``products``, 3 -> ``products-v3``."""
    if version < 1:
        raise ConfigError(f"index versions start at 1, got {version}")
    return f"{alias}{VERSION_SEPARATOR}{version}"


def parse_versioned(name: str) -> tuple[str, int] | None:
    """``products-v3`` -> ``("products", 3)``; None for a name that is not a version."""
    m = _VERSIONED.match(name)
    return (m["alias"], int(m["version"])) if m else None


def version_of(alias: str, name: str) -> int | None:
    """The version of ``name`` if it is a version of ``alias``."""
    parsed = parse_versioned(name)
    return parsed[1] if parsed and parsed[0] == alias else None


def next_version(alias: str, existing: list[str]) -> int:
    """One more than the highest existing version of ``alias`` (1 when there is none)."""
    versions = [v for v in (version_of(alias, n) for n in existing) if v is not None]
    return max(versions, default=0) + 1


def with_alias(body: Mapping[str, Any], alias: str) -> dict[str, Any]:
    """A create-index body that also makes ``alias`` point at the new index (one request)."""
    return {**body, "aliases": {alias: {"is_write_index": True}}}


def alias_swap_actions(alias: str, old: list[str], new: str) -> list[dict[str, Any]]:
    """The ``POST _aliases`` actions moving ``alias`` from ``old`` indices to ``new``, atomically."""
    actions: list[dict[str, Any]] = [
        {"remove": {"index": name, "alias": alias}} for name in old if name != new
    ]
    actions.append({"add": {"index": new, "alias": alias, "is_write_index": True}})
    return actions


def reindex_body(source: str, dest: str) -> dict[str, Any]:
    """Copy every document of ``source`` into ``dest`` verbatim, by ``_id``.

    ``pipeline: _none`` keeps any default pipeline of the destination from running again on
    documents that were processed once already. ``op_type: index`` replaces a document already
    copied, so a reindex that is run again after a failure converges instead of failing on
    conflicts. (reference/8.15/docs-reindex.html, ``dest.pipeline``)
    """
    target: dict[str, Any] = {"index": dest, "op_type": "index", "pipeline": "_none"}
    return {"source": {"index": source}, "dest": target, "conflicts": "abort"}


def aliases_of(response: Mapping[str, Any], alias: str) -> list[str]:
    """Concrete indices ``alias`` points at, from a ``GET _alias/{alias}`` response."""
    return sorted(name for name, info in response.items() if alias in (info or {}).get("aliases", {}))


def reindex_failures(response: Mapping[str, Any]) -> list[str]:
    """Human-readable failures of a ``_reindex`` response (empty when it succeeded)."""
    out = []
    for failure in response.get("failures") or []:
        cause = failure.get("cause") or {}
        out.append(
            f"{failure.get('id', '?')}: {cause.get('type', 'error')}: {cause.get('reason', '')}"[:300]
        )
    return out


def source_with_vectors(version: tuple[int, int, int]) -> dict[str, Any]:
    """Search parameters that return dense vectors in ``_source``.

    From 9.x, new indices leave vectors out of ``_source`` unless a request says
    ``"_source": {"exclude_vectors": false}`` (``index.mapping.exclude_source_vectors``); 8.x
    always returns them and knows no such option. An unknown version (0.0.0) is treated as 8.x.
    (reference: dense-vector.html, "Synthetic _source / exclude_vectors")
    """
    return {"source": {"exclude_vectors": False}} if version >= (9, 0, 0) else {}
