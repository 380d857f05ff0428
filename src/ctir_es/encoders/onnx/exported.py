"""The base of the onnxruntime encoders: an exported model directory, found by path or by
name in the models dir, checked to be of the class's kind, and run with ``RuntimeOptions``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..lazy import LazyEncoder
from ..models import find_exported
from .session import RuntimeOptions


class ExportedModelEncoder(LazyEncoder):
    """``model``: a model directory, or the name of one in the models dir; ``batch_size``: None
    for the class's ``default_batch_size``. Subclasses set ``kind`` (the manifest kind they run)
    and implement ``_open``."""

    kind: ClassVar[str]
    default_batch_size: ClassVar[int] = 32

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int | None = None,
        runtime: RuntimeOptions | None = None,
        models_dir: Path | None = None,
    ) -> None:
        super().__init__(str(model), self.default_batch_size if batch_size is None else batch_size)
        self.runtime = runtime or RuntimeOptions.from_env()
        self.models_dir = models_dir
        self.model_dir: Path | None = None  # set once loaded
        self.provider: str | None = None  # the execution provider its sessions run on, set once loaded

    def _open(self, model_dir: Path, manifest: dict[str, Any]) -> None:
        """Open the model's sessions and tokenizer (whatever the subclass runs)."""
        raise NotImplementedError

    def _load(self) -> dict[str, Any]:
        model_dir, manifest = find_exported(self.model_name, self.models_dir, self.kind)
        self._open(model_dir, manifest)
        self.model_dir = model_dir
        return {**manifest, "path": str(model_dir)}
