"""``GET /health``: liveness and what this index can do."""

from typing import Any

from fastapi import APIRouter

from ...errors import StoreCorrupted
from ...learned import CACHE_SECONDS, learned_summary
from ...ranking.calibration import calibration_summary
from ...search import Search
from ..errors import ApiError, documented
from ..models import HealthOut
from ..runtime import ServiceDep

router = APIRouter(tags=["service"])


def _facts(search: Search) -> dict[str, Any]:
    """What /health reads from the store, in one worker on one ``Search``."""
    return {
        "products": search.store.count(),
        "backend": type(search.store).__name__,
        "vector_fields": sorted(search.schema.vectors),
        "values": {name: spec.to_json() for name, spec in sorted(search.schema.values.items())},
        "calibration": calibration_summary(search.store, search.schema),
        # the learned model, its staleness and a missing model folder (served without it then)
        "learned": learned_summary(search.store, search.schema, max_age=CACHE_SECONDS),
    }


# exclude_unset: `learning` only appears under `serve --learn`
@router.get("/health", response_model=HealthOut, response_model_exclude_unset=True, responses=documented())
async def health(service: ServiceDep) -> dict[str, Any]:
    """Liveness and what this index can do, with the fusion category queries are served with
    (``calibration``) and the model ``ctir-es learn`` trained (``learned``), as ``ctir-es stats``
    shows them, and under ``serve --learn`` the training under way or its outcome
    (``learning``); 503 ``store_corrupted`` once a request or ``serve``'s background read of
    every page (``integrity``: checking | ok) found the store damaged."""
    if service.store_error is not None:
        raise ApiError(503, "store_corrupted", service.store_error)
    try:
        facts = await service.use(_facts)
    except StoreCorrupted as exc:  # found by this very request (``run`` recorded it)
        raise ApiError(503, "store_corrupted", str(exc)) from None
    out = {"status": "ok", **facts, "image_search": service.image_search, "image_roots": len(service.image_roots)}
    if service.integrity is not None:
        out["integrity"] = service.integrity.state
    if service.learning is not None:
        out["learning"] = service.learning.status()
    return out
