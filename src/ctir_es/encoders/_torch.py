"""The one place that imports the PyTorch stack (torch, open_clip, sentence-transformers).

Why a module of its own:

- PyTorch is an optional extra (training / export / the reference encoders). A missing
  piece raises :class:`MissingExtraError` naming the pip command, never a bare ImportError.
- torchvision on PyPI is a CUDA build. Next to the CPU torch wheel its C extension does not
  load, and ``import torchvision`` then dies with ``operator torchvision::nms does not exist``
  - which also breaks ``import open_clip`` and ``import transformers``. We try to load the
  extension the way torchvision does; only if that fails do we define the two op schemas
  its meta registrations need (the ops themselves stay unusable; nothing here calls them).
- Model hubs must never make a load hang. Unless the user opted in with
  ``CTIR_ES_ALLOW_DOWNLOADS=1`` we set ``HF_HUB_OFFLINE=1`` before huggingface_hub is
  imported (it reads the variable once, at import), and callers resolve weights to local
  files themselves before handing them to the libraries.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from ..config import env_name, env_value
from ..errors import MissingExtraError

TRAIN_EXTRA_HINT = "pip install torch==2.13.0 && pip install 'ctir-es[train]'"
ALLOW_DOWNLOADS_ENV = env_name("allow_downloads")

_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

# Keeps the op definitions registered: a torch Library unregisters them when collected.
_TORCHVISION_LIB: Any = None
_TORCHVISION_CHECKED = False
_WE_SET_OFFLINE = False  # HF_HUB_OFFLINE came from us, not from the user


def downloads_allowed() -> bool:
    """True when the user opted in to fetching weights from model hubs at run time."""
    return bool(env_value("allow_downloads"))


def _missing(what: str, exc: BaseException) -> MissingExtraError:
    return MissingExtraError(f"{what} is not installed ({exc}); install the training extra: {TRAIN_EXTRA_HINT}")


def _prepare_env() -> None:
    """Hub settings that huggingface_hub reads once, at import: set them before it loads."""
    global _WE_SET_OFFLINE
    if not downloads_allowed():
        if "HF_HUB_OFFLINE" not in os.environ:
            os.environ["HF_HUB_OFFLINE"] = "1"
            _WE_SET_OFFLINE = True
        # "Loading weights" bars on every local load are noise in a CLI; downloads keep theirs.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _torchvision_extension() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = folder / f"_C{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _patch_torchvision_ops(torch: ModuleType) -> None:
    """Make ``import torchvision`` work next to a torch it was not built for (see module doc)."""
    global _TORCHVISION_LIB, _TORCHVISION_CHECKED
    if _TORCHVISION_CHECKED or "torchvision" in sys.modules:
        return
    _TORCHVISION_CHECKED = True
    if importlib.util.find_spec("torchvision") is None:
        return
    if _op_exists(torch, "nms"):
        return
    extension = _torchvision_extension()
    if extension is not None:
        try:
            torch.ops.load_library(str(extension))  # what torchvision.extension does itself
        except (OSError, ImportError, RuntimeError):
            pass
        if _op_exists(torch, "nms"):
            return
    try:
        lib = torch.library.Library("torchvision", "DEF")
    except RuntimeError:  # someone else owns the namespace: add to it
        lib = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _TORCHVISION_SCHEMAS:
        if not _op_exists(torch, schema.split("(", 1)[0]):
            lib.define(schema)
    _TORCHVISION_LIB = lib


def _op_exists(torch: ModuleType, name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def import_torch() -> ModuleType:
    """``torch``, with torchvision made importable and hub access offline unless opted in."""
    _prepare_env()
    try:
        import torch
    except ImportError as exc:
        raise _missing("PyTorch", exc) from exc
    _patch_torchvision_ops(torch)
    return torch


def _import_extra(module: str, dist: str) -> ModuleType:
    """``module`` of the training extra (after torch), or a MissingExtraError naming ``dist``."""
    import_torch()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(dist, exc) from exc


def import_open_clip() -> ModuleType:
    """``open_clip`` (open_clip_torch), or a MissingExtraError with the pip command."""
    return _import_extra("open_clip", "open_clip_torch")


def import_sentence_transformers() -> ModuleType:
    """``sentence_transformers``, or a MissingExtraError with the pip command."""
    return _import_extra("sentence_transformers", "sentence-transformers")


def import_torch_stack() -> tuple[ModuleType, ModuleType, ModuleType]:
    """``(torch, open_clip, sentence_transformers)`` in one call, for training / export code."""
    return import_torch(), import_open_clip(), import_sentence_transformers()


@contextmanager
def hub_offline() -> Iterator[None]:
    """Block Hugging Face Hub requests for the duration of a load, unless downloads are allowed.

    ``HF_HUB_OFFLINE`` only counts if it is set before huggingface_hub is imported; when some
    other code imported it first, this flips the module constant it reads at request time, so a
    missing model fails in milliseconds instead of retrying a dead network for a minute.
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # no hub client, no hub requests
        yield
        return
    if downloads_allowed() and not _WE_SET_OFFLINE:
        yield  # the user's own HF_HUB_OFFLINE (if any) stands
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = not downloads_allowed()
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before
