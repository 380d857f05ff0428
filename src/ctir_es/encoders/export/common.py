"""Shared export machinery: torch.onnx.export with fixed conventions, int8 quantisation,
the manifest fields every export writes, and the parity check every export runs.

This package needs the training extra (torch, onnx, onnxscript); import it only to export.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EncoderError, MissingExtraError, one_line
from .._torch import TRAIN_EXTRA_HINT, import_torch
from ..models import FORMAT, QUANTIZATIONS, default_models_dir

log = logging.getLogger(__name__)

# What fp32 exports must reach against PyTorch (cosine of each row), checked at export.
PARITY_MIN_COSINE = 0.999
# Short and long, ASCII and not, an empty string, a text past any max_seq_length.
PARITY_TEXTS: tuple[str, ...] = (
    "Kitchen & Dining > Cookware > Pots & Pans",
    "stainless steel hand blender 500 W with whisk attachment",
    "Baby Care",
    "",
    "Damen Sommerkleid, Größe 38 - Blumenmuster",
    "红色 运动鞋",
    "Wrist Watches > Titan Analog Watch - For Men",
    " ".join(["a very long product description that repeats itself"] * 60),
)


@dataclass(frozen=True)
class ExportOptions:
    """Where and how an export is written, the same for every exporter: into ``models_dir``
    (default: the one under ``cache_dir``) as ``name`` (default: derived from the model),
    ``quantize``d or not (checked and normalised here: "none"/"fp32" become None), over an
    existing export only with ``force``, checked on ``parity_texts`` besides ``PARITY_TEXTS``."""

    models_dir: Path | None = None
    name: str | None = None
    quantize: str | None = None
    force: bool = False
    cache_dir: Path | None = None
    parity_texts: Sequence[str] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantize", check_quantize(self.quantize))

    def target_dir(self, name: str) -> Path:
        """The folder of the export called ``name`` in the models dir."""
        return (self.models_dir or default_models_dir(self.cache_dir)) / name

    def all_parity_texts(self) -> list[str]:
        return [*PARITY_TEXTS, *self.parity_texts]


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: dict[str, Any]


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def exporter_versions() -> dict[str, str | None]:
    return {name: _version(dist) for name, dist in (
        ("ctir_es", "ctir-es"), ("torch", "torch"), ("onnx", "onnx"), ("onnxscript", "onnxscript"),
        ("onnxruntime", "onnxruntime"), ("open_clip", "open_clip_torch"),
        ("sentence_transformers", "sentence-transformers"), ("tokenizers", "tokenizers"))}


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise MissingExtraError(f"the onnx package is not installed ({exc}); install the training extra: "
                                f"{TRAIN_EXTRA_HINT}") from exc
    return onnx


def export_record(**parts: Any) -> dict[str, Any]:
    """The manifest's ``export`` entry: ``parts`` (exporter infos, quantisation), then the
    exporter's versions and the time."""
    return {**parts, "versions": exporter_versions(), "created": timestamp()}


def manifest_head(kind: str, name: str, source: Mapping[str, Any], quantize: str | None) -> dict[str, Any]:
    """The first fields of an exported model's manifest; the id is the source id (``+int8``)."""
    return {"format": FORMAT, "kind": kind, "name": name, "id": str(source["id"]) + (f"+{quantize}" if quantize else ""),
            "dims": int(source["dims"]), "normalised": True, "quantize": quantize}


@contextlib.contextmanager
def export_errors(what: str) -> Iterator[None]:
    """Any exporter failure as one line: ``cannot export {what} to ONNX: ...``."""
    try:
        yield
    except EncoderError:
        raise
    except Exception as exc:
        raise EncoderError(f"cannot export {what} to ONNX: {one_line(exc)}") from exc


def place_onnx(fp32: Path, target: Path, quantize: str | None) -> dict[str, Any] | None:
    """The fp32 export copied to ``target``, or int8-quantised there; the quantisation record."""
    if quantize:
        return quantize_int8(fp32, target)
    shutil.copyfile(fp32, target)
    return None


def check_quantize(quantize: str | None) -> str | None:
    if quantize in (None, "", "none", "fp32"):
        return None
    if quantize not in QUANTIZATIONS:
        raise EncoderError(f"unknown quantisation {quantize!r}; supported: none, {', '.join(QUANTIZATIONS)}")
    return quantize


def export_onnx(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic: Mapping[str, Mapping[int, str]],
    dim_max: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Export ``module(*args)`` to one self-contained ``.onnx`` file.

    Uses the torch.export-based exporter (``dynamo=True``, torch's default) with the named
    dynamic axes (``dim_max`` bounds an axis, e.g. a sequence by the position table); if that
    fails, the TorchScript exporter (opset 17). Returns ``{"exporter", "opset", "seconds"}``.
    """
    torch = import_torch()
    onnx = require_onnx()
    module = module.eval()
    # The exporters print progress to stdout and warn at length: neither is for our users (and
    # stdout may be carrying JSON).
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = _export(torch, module, args, path, input_names, output_names, dynamic, dim_max)
    log.debug("exporter output: %s", chatter.getvalue())
    model = onnx.load(str(path), load_external_data=False)
    info["opset"] = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return info


def _export(torch: Any, module: Any, args: tuple[Any, ...], path: Path, input_names: Sequence[str],
            output_names: Sequence[str], dynamic: Mapping[str, Mapping[int, str]],
            dim_max: Mapping[str, int] | None) -> dict[str, Any]:
    start = time.perf_counter()
    exporter = "dynamo"
    try:
        bounds = dict(dim_max or {})
        dims = {label: torch.export.Dim(label, max=bounds[label]) if label in bounds else torch.export.Dim(label)
                for axes in dynamic.values() for label in axes.values()}
        # positional: the i-th input of the module is the i-th name
        shapes = tuple({axis: dims[label] for axis, label in dynamic.get(name, {}).items()} for name in input_names)
        with torch.no_grad():
            program = torch.onnx.export(
                module, args, dynamo=True, input_names=list(input_names), output_names=list(output_names),
                dynamic_shapes=shapes, external_data=False, verbose=False,
            )
        program.save(str(path), external_data=False)
    except Exception as exc:  # noqa: BLE001 - exporter failures come as many types; the fallback reports it
        log.warning("dynamo ONNX export failed (%s); using the TorchScript exporter", one_line(exc))
        exporter = "torchscript"
        with torch.no_grad():
            torch.onnx.export(
                module, args, str(path), dynamo=False, opset_version=17, input_names=list(input_names),
                output_names=list(output_names), dynamic_axes={k: dict(v) for k, v in dynamic.items()},
            )
    return {"exporter": exporter, "seconds": round(time.perf_counter() - start, 2)}


def quantize_int8(src: Path, dst: Path) -> dict[str, Any]:
    """Dynamic int8 quantisation of MatMul/Gemm weights, per output channel.

    Activations are quantised on the fly. Per-channel scales matter: on MiniLM per-tensor int8
    kept a mean cosine of 0.963 to fp32 on catalogue titles, per-channel 0.993.
    """
    require_onnx()
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise MissingExtraError(f"onnxruntime.quantization is unavailable ({exc})") from exc
    start = time.perf_counter()
    # The quantiser logs a pre-processing hint with logging.warning(), which would also install
    # a root handler (basicConfig) as a side effect: give root a silent handler meanwhile.
    root = logging.getLogger()
    level, silent = root.level, logging.NullHandler()
    root.addHandler(silent)
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
                         per_channel=True)
    finally:
        root.setLevel(level)
        root.removeHandler(silent)
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "per_channel": True,
            "op_types": ["MatMul", "Gemm"], "seconds": round(time.perf_counter() - start, 2)}


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(na * nb, 1e-12)


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    cos = row_cosines(reference, candidate)
    return {"min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6),
            "inputs": len(cos)}


def check_parity(what: str, result: Mapping[str, float], quantized: bool) -> None:
    """fp32 exports must match PyTorch; int8 ones are only reported."""
    if not quantized and result["min_cosine"] < PARITY_MIN_COSINE:
        raise EncoderError(
            f"{what}: the ONNX export differs from PyTorch (min cosine {result['min_cosine']:.6f} < "
            f"{PARITY_MIN_COSINE}); the export is not usable"
        )


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start
