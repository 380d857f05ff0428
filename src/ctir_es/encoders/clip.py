"""open_clip image + text towers (the reference PyTorch path for image vectors).

Weights are resolved before the model is built, offline unless ``CTIR_ES_ALLOW_DOWNLOADS=1``:
a local checkpoint file, or an open_clip pretrained tag that is already in the Hugging Face
cache. Anything else fails at once with one line saying what was tried and how to supply
weights - open_clip's own download path retries a dead network for about a minute.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import EncoderError, one_line
from ._torch import (
    ALLOW_DOWNLOADS_ENV,
    downloads_allowed,
    hub_offline,
    import_open_clip,
    import_torch,
)
from .inputs import check_images, check_texts, preprocess_rgb
from .lazy import LazyEncoder

log = logging.getLogger(__name__)

RANDOM = "random"
WEIGHTS_HINT = "use --clip-weights FILE (an open_clip .safetensors or .pt)"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ResolvedWeights:
    """What ``weights`` means for one architecture: a tag, a local file, or random init."""

    kind: str  # "tag" | "file" | "random"
    pretrained: str | None  # what open_clip gets as ``pretrained``
    label: str  # tag, file sha256 (16 hex) or "random-seed<N>": the id's suffix
    sha256: str | None = None


def architecture_name(open_clip: Any, architecture: str) -> str:
    """open_clip's name for ``architecture``; a ``*.json`` model config file is registered first.

    That is open_clip's own way to add a model description as data (``add_model_config``).
    """
    if architecture.endswith(".json"):
        path = Path(architecture).expanduser()
        if not path.is_file():
            raise EncoderError(f"open_clip model config {architecture} does not exist")
        if open_clip.get_model_config(path.stem) is None:
            open_clip.add_model_config(path)
        name = path.stem
    else:
        name = architecture
    if ":" in name.split("/")[0]:
        raise EncoderError(
            f"open_clip architecture {architecture!r}: schema names (hf-hub:, local-dir:) are not supported; "
            "pass a built-in name or a model config .json plus --clip-weights FILE"
        )
    if open_clip.get_model_config(name) is None:
        raise EncoderError(
            f"unknown open_clip architecture {architecture!r} (e.g. ViT-B-32, ViT-B-16, ViT-L-14; "
            "or a model config .json file)"
        )
    return str(name)


def _tag_cache_status(cfg: dict[str, Any]) -> tuple[bool, str]:
    """Is the file behind an open_clip tag cached locally, and where was it looked for?"""
    if cfg.get("file"):
        return Path(cfg["file"]).is_file(), str(cfg["file"])
    hub = str(cfg.get("hf_hub") or "")
    if hub:
        repo, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        candidates = [filename]
        if filename == "open_clip_pytorch_model.bin":
            candidates.insert(0, "open_clip_model.safetensors")
        elif filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False, f"Hugging Face cache for {repo} (huggingface_hub not installed)"
        for name in candidates:
            hit = try_to_load_from_cache(repo, name)
            if isinstance(hit, str) and Path(hit).is_file():
                return True, hit
        return False, f"the Hugging Face cache for {repo} ({' / '.join(candidates)})"
    url = str(cfg.get("url") or "")
    if url:
        path = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        return path.is_file(), str(path)
    return False, "nowhere (the tag names no file)"


def resolve_weights(open_clip: Any, name: str, weights: str | None, seed: int = 0) -> ResolvedWeights:
    """Decide, without network, what ``weights`` loads for architecture ``name``."""
    if weights is None or str(weights).strip().lower() == RANDOM:
        return ResolvedWeights("random", None, f"{RANDOM}-seed{seed}")
    weights = str(weights)
    path = Path(weights).expanduser()
    if path.is_file():
        digest = file_sha256(path)
        return ResolvedWeights("file", str(path.resolve()), f"sha256:{digest[:16]}", digest)
    tag_cfg = open_clip.get_pretrained_cfg(name, weights)
    if not tag_cfg:
        if path.suffix in CHECKPOINT_SUFFIXES or os.sep in weights or "/" in weights:
            raise EncoderError(f"CLIP weights file {weights} does not exist; {WEIGHTS_HINT}")
        tags = open_clip.list_pretrained_tags_by_model(name)
        known = f"known tags: {', '.join(tags[:8])}{' ...' if len(tags) > 8 else ''}" if tags else "it has no tags"
        raise EncoderError(
            f"CLIP weights {weights!r} are neither a file nor an open_clip tag for {name} ({known}); {WEIGHTS_HINT}"
        )
    cached, where = _tag_cache_status(tag_cfg)
    if not cached and not downloads_allowed():
        log.debug("CLIP weights %s %r: looked in %s", name, weights, where)
        raise EncoderError(
            f"no CLIP weights for {name} {weights!r} here (not cached, downloads off); "
            f"{WEIGHTS_HINT}, or {ALLOW_DOWNLOADS_ENV}=1"
        )
    return ResolvedWeights("tag", weights, weights)


class OpenClipEncoder(LazyEncoder):
    """ImageEncoder over open_clip. Construction does no I/O; the first use loads (so that
    missing weights show at start-up, not in the middle of an ingest)."""

    label = "open_clip"

    def __init__(
        self,
        architecture: str = "ViT-B-32",
        weights: str | None = "laion2b_s34b_b79k",
        device: str = "cpu",
        batch_size: int = 32,
        *,
        seed: int = 0,
    ) -> None:
        """``weights``: an open_clip tag, a checkpoint path, or None / "random" (tests only)."""
        super().__init__(architecture, batch_size)
        self.architecture = architecture
        self.weights = weights
        self.device = device
        self.seed = seed
        self._model: Any = None
        self._preprocess: Any = None
        self._tokenizer: Any = None

    def _repr_fields(self) -> dict[str, Any]:
        return {"weights": self.weights, "device": self.device}

    def _load(self) -> dict[str, Any]:
        open_clip = import_open_clip()
        torch = import_torch()
        name = architecture_name(open_clip, self.architecture)
        resolved = resolve_weights(open_clip, name, self.weights, self.seed)
        what = f"open_clip {name} with weights {resolved.pretrained or RANDOM}"
        try:
            with hub_offline(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)  # random init is reproducible; loaded weights overwrite it
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name,
                    pretrained=resolved.pretrained,
                    device=self.device,
                    pretrained_image=False,
                    pretrained_text=False,
                )
                tokenizer = open_clip.get_tokenizer(name)
        except Exception as exc:
            raise EncoderError(f"cannot load {what}: {one_line(exc)}; {WEIGHTS_HINT}") from exc
        model.eval()
        pre = open_clip.get_model_preprocess_cfg(model)
        dims = (open_clip.get_model_config(name) or {}).get("embed_dim")
        if not dims:
            with torch.inference_mode():
                dims = int(model.encode_text(tokenizer([""]).to(self.device)).shape[-1])
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self._model = model
        return {
            "id": f"{name}@{resolved.label}",
            "kind": "open_clip",
            "name": name,
            "architecture": self.architecture,
            "weights": resolved.pretrained if resolved.kind != "random" else RANDOM,
            "weights_sha256": resolved.sha256,
            "random": resolved.kind == "random",
            "dims": int(dims),
            "normalised": True,
            "context_length": int(getattr(model, "context_length", 0) or 0) or None,
            "image": {
                "size": _jsonable(pre.get("size")),
                "mode": pre.get("mode", "RGB"),
                "mean": _jsonable(pre.get("mean")),
                "std": _jsonable(pre.get("std")),
                "interpolation": pre.get("interpolation"),
                "resize_mode": pre.get("resize_mode"),
                "fill_color": pre.get("fill_color", 0),
            },
        }

    @property
    def manifest(self) -> dict[str, Any]:
        manifest = dict(self._loaded_manifest())
        manifest["image"] = dict(manifest["image"])
        return manifest

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images (converted to RGB) -> L2-normalised rows, aligned with the input."""
        items = check_images(images)
        self.load()
        return self._in_batches(items, lambda batch, start: self._tower(
            self._model.encode_image, import_torch().stack(preprocess_rgb(batch, self._preprocess, start))))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts through the CLIP text tower (same space as the images)."""
        items = check_texts(texts)
        self.load()
        return self._in_batches(items, lambda batch, _start: self._tower(
            self._model.encode_text, self._tokenizer(list(batch))))

    def _tower(self, encode: Any, inputs: Any) -> np.ndarray:
        """One batch through a tower (``model.encode_image`` / ``encode_text``), as NumPy rows."""
        torch = import_torch()
        with torch.inference_mode():
            feats = encode(inputs.to(self.device), normalize=True)
        return np.asarray(feats.float().cpu().numpy())


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value
