"""onnxruntime sessions: options, and the device they run on (``providers.py``: ``auto``, ``cpu``, ``cuda``).

Threads: ``RuntimeOptions.threads`` or ``$CTIR_ES_ONNX_THREADS``; unset means onnxruntime's
default (one thread per physical core). Idle worker threads do not spin
(``session.intra_op.allow_spinning = 0``; ``RuntimeOptions.spin`` / ``$CTIR_ES_ONNX_SPIN=1``
turn it back on): a search service shares its cores with the store and other processes, and
on this 2-core machine under load spinning made MiniLM at batch 32 about 15% slower.

Batch parallelism (text encoders): with ``batch_parallel`` (the default) the session runs each
call on one thread and the encoder runs ``threads`` batches at once (default: one per core).
Small transformer GEMMs (32 titles x ~20 tokens) split badly across cores; whole batches side
by side do not. A single query is then one single-threaded run, a few milliseconds for MiniLM.

One graph rewrite is off by default (``disabled_optimizers``): ``SkipLayerNormFusion``. On the
torch.export graphs of BERT-style models here the fused SkipLayerNormalization kernel took
9.5% of MiniLM's time against ~3% for the unfused Add + LayerNormalization; without it the
model ran 9% faster (same outputs to 1e-7). It made no difference to the CLIP towers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import env_value
from ...errors import EncoderError, one_line
from .providers import DEVICES, check_device, check_session, import_onnxruntime, session_providers

__all__ = ["DEVICES", "RuntimeOptions", "import_onnxruntime", "input_names", "open_session"]


@dataclass(frozen=True)
class RuntimeOptions:
    """How ONNX models run. ``device``: ``auto`` (CUDA when onnxruntime has it, else CPU),
    ``cpu`` or ``cuda`` (the CPU with one notice when CUDA is not available; providers.py)."""

    threads: int | None = None
    device: str = "auto"
    spin: bool = False
    batch_parallel: bool = True
    disabled_optimizers: tuple[str, ...] = ("SkipLayerNormFusion",)

    @property
    def workers(self) -> int:
        """Batches a text encoder runs at once."""
        return self.threads or os.cpu_count() or 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", check_device(self.device))  # ConfigError when unknown
        if self.threads is not None and self.threads < 1:
            raise EncoderError("ONNX threads must be >= 1")

    @classmethod
    def from_env(cls, threads: int | None = None, device: str | None = None) -> RuntimeOptions:
        """Explicit values win over ``$CTIR_ES_ONNX_THREADS`` / ``$CTIR_ES_ONNX_DEVICE``."""
        threads = threads if threads is not None else env_value("onnx_threads")
        spin = bool(env_value("onnx_spin"))
        return cls(threads, device or env_value("onnx_device") or "auto", spin)


def open_session(path: Path, options: RuntimeOptions = RuntimeOptions(), *, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path`` with all graph optimisations on.

    ``threads`` (intra-op) overrides ``options.threads``; 1 runs each call on its caller.
    """
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = threads or options.threads
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: shape-inference chatter is not for users
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spin else "0")
    choice = session_providers(options.device)
    try:
        session = ort.InferenceSession(str(path), sess_options=so, providers=list(choice.providers),
                                       disabled_optimizers=list(options.disabled_optimizers))
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / ... types
        raise EncoderError(f"onnxruntime cannot load {path}: {one_line(exc)}") from exc
    check_session(session, choice)
    return session


def input_names(session: Any) -> list[str]:
    return [i.name for i in session.get_inputs()]
