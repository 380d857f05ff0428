"""onnxruntime sessions: the CUDA provider when it is available (and asked for), else the CPU.

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
from ...errors import EncoderError, MissingExtraError, one_line

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RuntimeOptions:
    """How ONNX models run. ``device``: ``auto`` (CUDA when onnxruntime has it, else CPU),
    ``cpu`` or ``cuda`` (an error when CUDA is not available)."""

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
        if self.device not in DEVICES:
            raise EncoderError(f"unknown ONNX device {self.device!r}; supported: {', '.join(DEVICES)}")
        if self.threads is not None and self.threads < 1:
            raise EncoderError("ONNX threads must be >= 1")

    @classmethod
    def from_env(cls, threads: int | None = None, device: str | None = None) -> RuntimeOptions:
        """Explicit values win over ``$CTIR_ES_ONNX_THREADS`` / ``$CTIR_ES_ONNX_DEVICE``."""
        threads = threads if threads is not None else env_value("onnx_threads")
        spin = bool(env_value("onnx_spin"))
        return cls(threads, (device or env_value("onnx_device") or "auto").strip().lower(), spin)


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # a core dependency: only a broken install gets here
        raise MissingExtraError(f"onnxruntime is not installed ({exc}); pip install onnxruntime") from exc
    return onnxruntime


def providers(device: str = "auto") -> list[str]:
    """The execution providers for ``device``, best first."""
    ort = import_onnxruntime()
    available = set(ort.get_available_providers())
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise EncoderError(
            "ONNX device cuda asked for, but onnxruntime has no CUDA provider "
            f"(available: {', '.join(sorted(available))}); pip install onnxruntime-gpu, or use device auto/cpu"
        )
    return ["CPUExecutionProvider"]


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
    try:
        return ort.InferenceSession(str(path), sess_options=so, providers=providers(options.device),
                                    disabled_optimizers=list(options.disabled_optimizers))
    except EncoderError:
        raise
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph / ... types
        raise EncoderError(f"onnxruntime cannot load {path}: {one_line(exc)}") from exc


def input_names(session: Any) -> list[str]:
    return [i.name for i in session.get_inputs()]
