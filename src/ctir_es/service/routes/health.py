"""``GET /health``: liveness and what this index can do."""

from typing import Any

from fastapi import APIRouter

from ...learned import CACHE_SECONDS, learned_summary
from ...ranking.calibration import calibration_summary
from ..errors import ApiError, documented
from ..models import HealthOut
from ..runtime import ServiceDep

router = APIRouter(tags=["service"])


@router.get("/health", response_model=HealthOut, responses=documented())
async def health(service: ServiceDep) -> dict[str, Any]:
    """Liveness and what this index can do, with the fusion category queries are served with
    (``calibration``) and the model ``ctir-es learn`` trained (``learned``), as ``ctir-es stats``
    shows them; 503 once a request found the store corrupted."""
    if service.store_error is not None:
        raise ApiError(503, "store_corrupted", service.store_error)
    search = service.search
    count = await service.run(search.store.count)
    return {
        "status": "ok",
        "products": count,
        "backend": type(search.store).__name__,
        "vector_fields": sorted(search.schema.vectors),
        "image_search": service.image_search,
        "image_roots": len(service.image_roots),
        "calibration": await service.run(calibration_summary, search.store, search.schema),
        # the learned model, its staleness and a missing model folder (served without it then)
        "learned": await service.run(learned_summary, search.store, search.schema, max_age=CACHE_SECONDS),
    }
