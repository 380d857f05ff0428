"""The HTTP service (FastAPI) and its web page, a thin layer over ``ctir_es.Search``.

    from ctir_es import Search
    from ctir_es.service import Limits, create_app

    app = create_app(Search.open(), image_roots=[Path("/data/images")], limits=Limits())

``ctir-es serve`` builds the same app and runs it with uvicorn. Needs the ``fastapi``,
``uvicorn`` and ``python-multipart`` packages (runtime dependencies of ctir-es).
"""

from .app import create_app
from .limits import Limits

__all__ = ["Limits", "create_app"]
