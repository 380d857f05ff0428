"""What one request may ask of the service: sizes, counts and time."""

from __future__ import annotations

from dataclasses import dataclass

from ..products import MAX_ID_CHARS
from ..ranking.plan import MAX_QUERY_CHARS
from ..vocabulary import MAX_K


@dataclass(frozen=True)
class Limits:
    """Request limits. Anything over a size limit gets 413, over a count limit 422, a request
    that takes longer than ``timeout`` seconds gets 503 (code ``timeout``), a body slower than
    ``body_timeout`` 408, and a request beyond ``max_pending`` in progress 503 ``overloaded``
    with ``Retry-After``. ``GET /audit`` judges at most ``max_audit`` products per request, on workers of its own
    (``max_apart_concurrency`` at once), and ``GET /categories`` returns at most
    ``max_category_nodes`` nodes."""

    max_query_chars: int = MAX_QUERY_CHARS  # q, within
    max_k: int = 100  # results per page
    max_depth: int = MAX_K  # offset + k: how deep pagination may go
    max_upload_bytes: int = 10_000_000  # an uploaded image file, before decoding
    max_image_pixels: int = 40_000_000  # width x height read from the header, before decoding
    max_id_chars: int = MAX_ID_CHARS
    timeout: float = 30.0  # seconds per request for store and model work (queueing included)
    max_concurrency: int = 2  # store / model calls running at once (the rest wait)
    max_image_file_bytes: int = 20_000_000  # a catalogue image file served by /products/{id}/image
    body_timeout: float = 30.0  # seconds for a whole request body to arrive (408 after)
    max_pending: int = 64  # requests processed at once (queueing on the workers included); more get 503
    # products one GET /audit judges (about 26 ms each with MiniLM + CLIP on 2 cores: 500 is ~13 s,
    # under ``timeout``); a larger selection is 422 unless the request pages with ``offset``
    max_audit: int = 500
    # whole-catalogue requests (GET /audit) running at once, on workers of their own beside the
    # max_concurrency ones searches use; more wait for a free one within ``timeout``
    max_apart_concurrency: int = 1
    # nodes one GET /categories answer holds at most (~120 bytes each); the default is smaller
    max_category_nodes: int = 10_000

    @property
    def max_body_bytes(self) -> int:
        """Whole request body: one upload plus room for the multipart envelope."""
        return self.max_upload_bytes + 64 * 1024

    @property
    def max_offset(self) -> int:
        return max(0, self.max_depth - self.max_k)
