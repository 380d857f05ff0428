"""A trained model's vectors written into every stored product, in place and resumably.

The write goes in chunks of ids (sorted), each with a checkpoint recorded in the same write,
so a killed ``learn`` resumes after the last chunk that landed. The schema names the model's
field only after the last chunk (``learn.run._finish``), so no query uses a half-written field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..schema import VectorField
from ..store.base import Store, VectorWriter

JOB_KEY = "learned-model.job"
WRITE_STAGE = "writing vectors"  # the progress stage of the write: serve --learn lets it finish
CHUNK = 2000


def fill_vectors(store: Store, field: str, spec: VectorField, ids: Sequence[str],
                 vectors_of: Callable[[list[str]], np.ndarray], *, key: str,
                 progress: Callable[[str, dict[str, Any]], None] | None = None, chunk: int = CHUNK) -> int:
    """Write ``vectors_of(chunk)`` for every chunk of ``ids`` from the checkpoint ``learn:<key>``
    on; returns the products written by this call."""
    assert isinstance(store, VectorWriter)
    say = progress or (lambda event, info: None)
    ordered = sorted(ids)
    checkpoint = f"learn:{key}"
    start = store.checkpoint(checkpoint) or 0
    written = 0
    for begin in range(start, len(ordered), chunk):
        part = ordered[begin : begin + chunk]
        matrix = vectors_of(part)
        written += store.write_vectors(field, spec, dict(zip(part, matrix, strict=True)),
                                       checkpoint=(checkpoint, begin + len(part)))
        say("progress", {"stage": WRITE_STAGE, "done": begin + len(part), "total": len(ordered)})
    store.clear_checkpoint(checkpoint)
    return written
