"""What every evaluation task (``evaluation.tasks``) runs on besides its own config."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..products import Product
from .index import IndexBuilder, Progress


def _noop(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True)
class TaskInput:
    """The catalogue's ``products``, the ``settings``, what the dataset is (``dataset_meta``:
    its reader ``kind``, source...; reported back as the report's ``dataset``) and where
    ``progress`` goes. The task is timed from the input's creation (``seconds``)."""

    products: Sequence[Product]
    settings: Settings
    dataset_meta: Mapping[str, Any] = field(default_factory=dict)
    progress: Progress = _noop
    started: float = field(default_factory=time.perf_counter)

    @property
    def kind(self) -> str:
        """The reader the products came from ("" when not given); part of an index's key."""
        return str(self.dataset_meta.get("kind", ""))

    def dataset(self) -> dict[str, Any]:
        """A copy of ``dataset_meta`` for the report (a task may add to it)."""
        return dict(self.dataset_meta)

    def seconds(self) -> float:
        """Seconds since the input was made, to a tenth."""
        return round(time.perf_counter() - self.started, 1)

    def index_builder(
        self,
        work_dir: Path | None,
        rebuild: bool,
        *,
        products: Sequence[Product] | None = None,
        kind: str | None = None,
    ) -> IndexBuilder:
        """``IndexBuilder.for_products`` over the input's products (or ``products``), keyed by
        its ``kind`` (or ``kind``), reporting to its ``progress``."""
        return IndexBuilder.for_products(
            self.products if products is None else products,
            self.settings,
            kind=self.kind if kind is None else kind,
            work_dir=work_dir,
            progress=self.progress,
            rebuild=rebuild,
        )
