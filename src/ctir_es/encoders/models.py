"""Exported model directories: where they live, their manifests, finding them by name.

A model directory holds ONNX files, tokenizer files and ``manifest.json``::

    <models dir>/all-MiniLM-L6-v2/        manifest.json  model.onnx  tokenizer.json
    <models dir>/ViT-B-32-laion2b_s34b_b79k/  manifest.json  image.onnx  text.onnx  tokenizer.json
    <models dir>/clip-ita-flipkart/        manifest.json  product_head.onnx  category_head.onnx

The models dir is ``$CTIR_ES_MODELS_DIR``, else ``<cache dir>/models``. The manifest says what
the model is (kind, id, dims, normalisation, preprocessing, tokenizer, opset), where it came
from (source weights and their sha256) and the sha256 of every file it lists, so an index and
the query side can check they agree. This module never imports PyTorch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import default_cache_dir as config_cache_dir
from ..config import env_value
from ..errors import EncoderError

MANIFEST = "manifest.json"
FORMAT = "ctir-es-onnx/1"
# kinds of exported models (the manifest's "kind")
SENTENCE_KIND = "onnx-sentence"
CLIP_KIND = "onnx-clip"
CLIP_ITA_KIND = "onnx-clip-ita"
KINDS = (SENTENCE_KIND, CLIP_KIND, CLIP_ITA_KIND)
# For errors, per kind: what a missing model is called, what the kind is, and how to make one.
KIND_NAMES: dict[str, tuple[str, str, str]] = {
    SENTENCE_KIND: ("ONNX text model", "a text encoder", "run `ctir-es models export text MODEL` first"),
    CLIP_KIND: ("ONNX CLIP model", "CLIP", "run `ctir-es models export clip` first"),
    CLIP_ITA_KIND: ("CLIP-ITA model", "CLIP-ITA",
                    "train one with `ctir-es train`, then `ctir-es models export clip-ita RUN_DIR`"),
}
QUANTIZATIONS = ("int8",)

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def default_models_dir(cache_dir: Path | None = None) -> Path:
    """``$CTIR_ES_MODELS_DIR``, else ``<cache dir>/models`` (cache dir: ``$CTIR_ES_CACHE_DIR`` or
    the platform's user cache)."""
    configured: Path | None = env_value("models_dir")
    if configured is not None:
        return configured
    return Path(cache_dir or default_cache_dir()).expanduser() / "models"


def default_cache_dir() -> Path:
    """Where models are assembled and exported: ``$CTIR_ES_CACHE_DIR`` or the platform's user cache."""
    configured: Path | None = env_value("cache_dir")
    return configured or config_cache_dir()


def safe_name(text: str) -> str:
    """A model-directory name from free text (tags, ids): letters, digits and ``._+-``."""
    name = _UNSAFE.sub("-", text).strip("-.")
    if not name:
        raise EncoderError(f"cannot make a model name from {text!r}")
    return name[:120]


def clip_model_name(source_id: str, quantize: str | None = None) -> str:
    """``ViT-B-32@laion2b_s34b_b79k`` -> ``ViT-B-32-laion2b_s34b_b79k`` (``-int8`` when quantised)."""
    return safe_name(source_id.replace("@", "-").replace(":", "-") + (f"-{quantize}" if quantize else ""))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_model_dir(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EncoderError(f"{model_dir} is not an exported model (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        raise EncoderError(
            f"{path} is not a ctir-es model manifest (kind {data.get('kind') if isinstance(data, dict) else None!r}; "
            f"supported: {', '.join(KINDS)})"
        )
    return data


def write_manifest(model_dir: Path, manifest: Mapping[str, Any]) -> None:
    path = Path(model_dir) / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8")


def file_entry(model_dir: Path, name: str) -> dict[str, Any]:
    """``{"path", "sha256", "bytes"}`` for a file of a model dir (for the manifest)."""
    path = Path(model_dir) / name
    return {"path": name, "sha256": file_sha256(path), "bytes": path.stat().st_size}


def model_file(model_dir: Path, manifest: Mapping[str, Any], key: str) -> Path:
    """The path of the file ``key`` of a manifest's ``files``; its size is checked (cheap)."""
    entry = (manifest.get("files") or {}).get(key)
    if not entry:
        raise EncoderError(f"model {manifest.get('name')!r} in {model_dir} lists no {key!r} file")
    path = Path(model_dir) / str(entry["path"])
    if not path.is_file():
        raise EncoderError(f"model {manifest.get('name')!r}: {path} is missing; export it again")
    size = entry.get("bytes")
    if size is not None and path.stat().st_size != int(size):
        raise EncoderError(
            f"model {manifest.get('name')!r}: {path.name} has {path.stat().st_size} bytes, the manifest says "
            f"{size}; the file was changed or truncated - export it again"
        )
    return path


def verify(model_dir: Path) -> list[str]:
    """Check every file of a model dir against its manifest sha256; returns the problems."""
    manifest = read_manifest(model_dir)
    problems = []
    for key, entry in (manifest.get("files") or {}).items():
        path = Path(model_dir) / str(entry["path"])
        if not path.is_file():
            problems.append(f"{key}: {path.name} is missing")
        elif entry.get("sha256") and file_sha256(path) != entry["sha256"]:
            problems.append(f"{key}: {path.name} does not match its sha256")
    return problems


def find_model(name_or_path: str | Path, models_dir: Path | None = None) -> Path | None:
    """A model directory given as a path, or by name in the models dir; None if there is none."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if is_model_dir(path):
        return path.resolve()
    if "/" in text or os.sep in text or text.startswith((".", "~")):
        return None
    try:
        candidate = (models_dir or default_models_dir()) / safe_name(text)
    except EncoderError:
        return None
    return candidate if is_model_dir(candidate) else None


def find_exported(model: str | Path, models_dir: Path | None, kind: str) -> tuple[Path, dict[str, Any]]:
    """The directory and manifest of exported model ``model`` (a model dir, or a name in the
    models dir), which must be of ``kind``; an EncoderError saying how to make one otherwise."""
    missing, what, how = KIND_NAMES[kind]
    model_dir = find_model(model, models_dir)
    if model_dir is None:
        raise EncoderError(f"no exported {missing} {str(model)!r} (a model dir, or a name in the models dir); {how}")
    manifest = read_manifest(model_dir)
    if manifest.get("kind") != kind:
        raise EncoderError(f"{model_dir} holds a {manifest.get('kind')!r} model, not {what} ({kind})")
    return model_dir, manifest


def list_models(models_dir: Path | None = None) -> list[dict[str, Any]]:
    """The manifests of every exported model in the models dir (``path`` added), by name."""
    root = models_dir or default_models_dir()
    if not root.is_dir():
        return []
    out = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and is_model_dir(child):
            try:
                manifest = read_manifest(child)
            except EncoderError:
                continue
            out.append({**manifest, "path": str(child)})
    return out


@contextmanager
def staged_dir(target: Path, *, force: bool = False) -> Iterator[Path]:
    """Build a model dir in a temporary sibling and move it into place only when complete.

    A killed export leaves no half-written model behind (only a ``.tmp-*`` folder that the
    next export of the same name removes). An existing model is replaced only with ``force``.
    """
    target = Path(target)
    if is_model_dir(target) and not force:
        raise EncoderError(f"{target} already holds an exported model; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".tmp-{target.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    work = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        yield work
        if not is_model_dir(work):
            raise EncoderError(f"export into {target} wrote no {MANIFEST}")
        if target.exists():
            old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(work, target)
        except OSError:
            if not is_model_dir(target):  # lost a race with another exporter: theirs is as good
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
