"""Elasticsearch responses read back as plain values: hits, ``_msearch`` items, error text,
and scores turned back into cosine similarities (no client, no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ctir_es.errors import AccessDenied, LicenceRequired, StoreError
from ctir_es.schema import Hit, IndexSchema, VectorQuery


def parse_hits(
    response: Mapping[str, Any], to_score: Callable[[float], float] | None = None
) -> list[Hit]:
    """Hits of one search response, in rank order (scores mapped through ``to_score``)."""
    hits = response.get("hits", {}).get("hits", [])
    convert = to_score or float
    return [Hit(str(h["_id"]), convert(float(h["_score"]))) for h in hits]


def cosine_from_score(score: float) -> float:
    """Elasticsearch scores cosine and dot_product kNN as ``(1 + cos) / 2``; give back ``cos``.

    The embedded store returns the cosine itself, so both backends report the same numbers.
    (reference/8.15/dense-vector.html#dense-vector-similarity)
    """
    return 2.0 * score - 1.0


def score_converter(similarity: str | None) -> Callable[[float], float] | None:
    return cosine_from_score if similarity in ("cosine", "dot_product") else None


def error_text(error: Any) -> str:
    """``type: reason`` of an Elasticsearch error object (or of a whole error response)."""
    if isinstance(error, Mapping) and "error" in error:
        error = error["error"]
    if isinstance(error, Mapping):
        root = error.get("root_cause") or []
        first = root[0] if root and isinstance(root[0], Mapping) else error
        caused = error.get("caused_by")
        text = f"{first.get('type', 'error')}: {first.get('reason', '')}"
        if (
            isinstance(caused, Mapping)
            and caused.get("reason")
            and caused.get("reason") != first.get("reason")
        ):
            text += f" ({caused.get('reason')})"
        return text[:500]
    return str(error)[:500]


LICENCE_FIELD = "license.expired.feature"
"""Set on an error the licence refuses (``LicenseUtils.newComplianceException``: a 403
``security_exception`` carrying the feature), whatever its wording."""


def error_type(body: Any) -> str | None:
    """The ``type`` of an error response (``{"error": {"type": ...}}``), or None."""
    error = body.get("error") if isinstance(body, Mapping) else None
    return str(error["type"]) if isinstance(error, Mapping) and "type" in error else None


def refused_feature(body: Any) -> str | None:
    """The feature the cluster's licence does not cover, when ``body`` is a licence refusal."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return None
    causes = [error, *[c for c in error.get("root_cause") or [] if isinstance(c, Mapping)]]
    return next((str(c[LICENCE_FIELD]) for c in causes if LICENCE_FIELD in c), None)


def error_class(status: int | None, body: Any) -> type[StoreError]:
    """Which ``StoreError`` an error response is, from its status and body (never its text):
    a licence refusal is ``LicenceRequired``, any other 403 ``AccessDenied``, the rest a plain
    ``StoreError``."""
    if refused_feature(body) is not None:
        return LicenceRequired
    if status == 403:
        return AccessDenied
    return StoreError


class PartialResults(StoreError):
    """Some shards did not answer (e.g. a node left and no copy took over yet): the hits
    would be incomplete. Raised instead of returning them; a retry usually succeeds."""


def shard_failures(item: Mapping[str, Any]) -> str | None:
    """Why a search response is incomplete (failed shards, a time-out), or None."""
    shards = item.get("_shards") or {}
    failed = int(shards.get("failed") or 0)
    if failed:
        reasons = {
            error_text(f.get("reason") or {}) for f in shards.get("failures") or [] if f
        }
        total = shards.get("total", "?")
        return f"{failed} of {total} shards failed" + (f" ({'; '.join(sorted(reasons))[:200]})" if reasons else "")
    if item.get("timed_out"):
        return "the search timed out"
    return None


def parse_msearch(
    names: Sequence[str],
    response: Mapping[str, Any],


    converters: Mapping[str, Callable[[float], float] | None] | None = None,
) -> dict[str, list[Hit]]:
    """Map ``_msearch`` responses back to result names; a failed or partial sub-search raises
    (``PartialResults`` when shards are missing: never an incomplete list)."""
    responses = list(response.get("responses", []))
    if len(responses) != len(names):
        raise StoreError(f"_msearch returned {len(responses)} responses for {len(names)} searches")
    out: dict[str, list[Hit]] = {}
    for name, item in zip(names, responses):
        if "error" in item:
            raise StoreError(
                f"search {name!r} failed ({item.get('status', '?')}): {error_text(item['error'])}"
            )
        partial = shard_failures(item)
        if partial:
            raise PartialResults(f"search {name!r} is incomplete: {partial}")
        out[name] = parse_hits(item, (converters or {}).get(name))
    return out


def vector_score_converters(
    vectors: Sequence[VectorQuery], schema: IndexSchema | None
) -> dict[str, Callable[[float], float] | None]:
    """Per result name, how to turn kNN ``_score`` back into the field's similarity."""
    if schema is None:
        return {}
    return {
        vq.name: score_converter(schema.vectors[vq.field].similarity)
        for vq in vectors
        if vq.field in schema.vectors
    }
