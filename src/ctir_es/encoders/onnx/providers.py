"""The device an ONNX session runs on: onnxruntime's execution providers for ``auto``, ``cpu`` or ``cuda``.

- ``auto`` (the default): CUDA when onnxruntime offers its CUDA provider, else the CPU, silently.
- ``cpu``: the CPU, even where CUDA is there.
- ``cuda``: CUDA; where onnxruntime has no CUDA provider (the CPU package) or cannot create it
  (no GPU, CUDA or cuDNN libraries missing: ``check_session``) the session runs on the CPU and one
  warning per process says why and how to fix it. A fallback rather than an error: a config
  written for a GPU server must not stop an ingest on a laptop, and the index records the model
  an encoder runs, not the device.

The CUDA provider comes with the ``onnxruntime-gpu`` package (``pip install 'ctir-es[gpu]'``, see
docs/models.md). It and the CPU package ``onnxruntime`` install the same ``onnxruntime`` module,
so only one of them may be installed; ``install_conflict`` tells when both are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from ...errors import ConfigError, MissingExtraError

log = logging.getLogger(__name__)

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_INSTALL = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # a core dependency: only a broken install gets here
        raise MissingExtraError(f"onnxruntime is not installed ({exc}); pip install onnxruntime") from exc
    return onnxruntime


def check_device(device: object) -> str:
    """``device`` as one of ``DEVICES`` (case and spaces ignored); anything else is a ConfigError."""
    word = device.strip().lower() if isinstance(device, str) else device
    if word not in DEVICES:
        raise ConfigError(f"unknown ONNX device {device!r}; supported: {', '.join(DEVICES)}")
    return str(word)


def install_conflict() -> str | None:
    """Why the CUDA provider may be missing although ``onnxruntime-gpu`` is installed: the CPU
    package ``onnxruntime`` is installed too (both write the one ``onnxruntime`` module; the
    last installed wins). None when at most one of them is installed."""
    installed = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            installed.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    if len(installed) < 2:
        return None
    return f"both {' and '.join(installed)} are installed and share one module"


@dataclass(frozen=True)
class ProviderChoice:
    """What ``InferenceSession(providers=...)`` is given for a device, best first, and the
    notice to give when the device asked for cannot be had."""

    device: str
    providers: tuple[str, ...]
    notice: str | None = None

    @property
    def wants_cuda(self) -> bool:
        return self.providers[0] == CUDA


def choose_providers(device: str, available: Iterable[str], conflict: str | None = None) -> ProviderChoice:
    """The providers for ``device`` given onnxruntime's ``available`` ones (pure: no import,
    no logging). ``conflict``: an install problem to name in the fallback notice."""
    device = check_device(device)
    offered = set(available)
    if device != "cpu" and CUDA in offered:
        return ProviderChoice(device, (CUDA, CPU))
    if device != "cuda":
        return ProviderChoice(device, (CPU,))
    why = conflict or f"onnxruntime {'offers only ' + ', '.join(sorted(offered)) if offered else 'offers no provider'}"
    return ProviderChoice(device, (CPU,), f"ONNX device cuda asked for, but onnxruntime has no CUDA provider "
                                          f"({why}): running on the CPU; for CUDA: {GPU_INSTALL} "
                                          "(docs/models.md), or set --device cpu to say so")


_NOTICED: set[str] = set()  # notices already logged in this process: one each, not one per session
_NOTICED_LOCK = threading.Lock()
# Set when a session asked for CUDA came up on the CPU: later sessions of the process ask for the
# CPU at once, so onnxruntime's own two error lines about the failed CUDA provider appear once too.
_CUDA_FAILED = threading.Event()


def notice_once(message: str) -> None:
    """Log ``message`` as a warning the first time this process sees it."""
    with _NOTICED_LOCK:
        if message in _NOTICED:
            return
        _NOTICED.add(message)
    log.warning("%s", message)


def session_providers(device: str = "auto") -> ProviderChoice:
    """The providers a new session gets for ``device`` on this install; a ``cuda`` that cannot be
    had logs its notice (once per process) and runs on the CPU."""
    if _CUDA_FAILED.is_set():
        return ProviderChoice(check_device(device), (CPU,))  # the notice was given when it failed
    ort = import_onnxruntime()
    available = list(ort.get_available_providers())
    conflict = install_conflict() if check_device(device) == "cuda" and CUDA not in available else None
    choice = choose_providers(device, available, conflict)
    if choice.notice:
        notice_once(choice.notice)
    return choice


def check_session(session: Any, choice: ProviderChoice) -> str:
    """The provider ``session`` runs on first. onnxruntime-gpu lists CUDA as available even where
    its libraries (CUDA, cuDNN) or the GPU are missing, and then builds a CPU session with an error
    line of its own: the one notice says what happened and where the fix is."""
    running = active_provider(session)
    if choice.wants_cuda and running != CUDA:
        _CUDA_FAILED.set()
        notice_once(f"ONNX device {choice.device}: onnxruntime lists its CUDA provider but could not create it "
                    "(no GPU, or CUDA / cuDNN libraries missing or of another version): running on the CPU; "
                    "see onnxruntime's CUDA requirements (docs/models.md)")
    return running


def active_provider(session: Any) -> str:
    """The provider a session runs on first (``CUDAExecutionProvider`` or ``CPUExecutionProvider``)."""
    running = list(session.get_providers())
    return str(running[0]) if running else CPU
