"""CLIP image and text towers on onnxruntime (no PyTorch).

Images: ``ImagePreprocess`` (Pillow + NumPy, open_clip's eval transform) then ``image.onnx``.
Texts: open_clip's text cleaning (``ftfy.fix_text`` when ftfy is installed, else NFC; HTML
unescaped twice; whitespace collapsed; lower case), then its byte-level BPE as a HF
``tokenizers`` file written at export (``<start_of_text> ... <end_of_text>``, truncated to
the context length with the end token kept last, padded with 0), then ``text.onnx``.
"""

from __future__ import annotations

import html
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import EncoderError
from ..base import l2_normalise
from ..models import CLIP_KIND, find_model, model_file, read_manifest
from .preprocess import ImagePreprocess
from .session import RuntimeOptions, input_names, open_session
from .text import check_texts, load_tokenizer

try:  # open_clip cleans text with ftfy; it is optional here (NFC is what it mostly does)
    import ftfy as _ftfy
except ImportError:  # pragma: no cover - depends on the install
    _ftfy = None  # type: ignore[assignment]


def clean_clip_text(text: str, clean: str = "lower") -> str:
    """open_clip's ``_clean_lower`` / ``_clean_whitespace``."""
    text = _ftfy.fix_text(text) if _ftfy is not None else unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text)).strip()
    text = " ".join(text.split()).strip()
    return text.lower() if clean == "lower" else text


class OnnxClipEncoder:
    """ImageEncoder over an exported open_clip model (``kind: onnx-clip``)."""

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int = 32,
        runtime: RuntimeOptions | None = None,
        models_dir: Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_name = str(model)
        self.batch_size = batch_size
        self.runtime = runtime or RuntimeOptions.from_env()
        self.models_dir = models_dir
        self.model_dir: Path | None = None
        self.preprocess: ImagePreprocess | None = None
        self._image: Any = None
        self._text: Any = None
        self._tokenizer: Any = None
        self._manifest: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OnnxClipEncoder({self.model_name!r}, loaded={self._image is not None})"

    def load(self) -> OnnxClipEncoder:
        if self._image is None:
            with self._lock:
                if self._image is None:
                    self._load()
        return self

    def _load(self) -> None:
        model_dir = find_model(self.model_name, self.models_dir)
        if model_dir is None:
            raise EncoderError(
                f"no exported ONNX CLIP model {self.model_name!r} (a model dir, or a name in the models dir); "
                "run `ctir-es models export clip` first"
            )
        manifest = read_manifest(model_dir)
        if manifest.get("kind") != CLIP_KIND:
            raise EncoderError(f"{model_dir} holds a {manifest.get('kind')!r} model, not CLIP ({CLIP_KIND})")
        text_cfg = manifest.get("text") or {}
        self._context = int(text_cfg.get("context_length") or 77)
        self._clean = str(text_cfg.get("clean") or "lower")
        if self._clean not in ("lower", "whitespace"):
            raise EncoderError(f"{model_dir}: text cleaning {self._clean!r} is not supported by the ONNX runtime")
        tokenizer = load_tokenizer(model_file(model_dir, manifest, "tokenizer"))
        tokenizer.enable_truncation(max_length=self._context)
        tokenizer.enable_padding(length=self._context, pad_id=int(text_cfg.get("pad_id", 0)),
                                 pad_token=str(text_cfg.get("pad_token", "!")))
        self.preprocess = ImagePreprocess.from_manifest(manifest.get("image") or {})
        text = open_session(model_file(model_dir, manifest, "text"), self.runtime)
        image = open_session(model_file(model_dir, manifest, "image"), self.runtime)
        self._image_input = input_names(image)[0]
        self._text_input = input_names(text)[0]
        self._tokenizer = tokenizer
        self._text = text
        self._manifest = {**manifest, "path": str(model_dir)}
        self.model_dir = model_dir
        self._image = image

    def _loaded_manifest(self) -> dict[str, Any]:
        self.load()
        if self._manifest is None:
            raise EncoderError(f"CLIP model {self.model_name!r} did not load")
        return self._manifest

    @property
    def dims(self) -> int:
        return int(self._loaded_manifest()["dims"])

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self._loaded_manifest())

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The image tower's input for ``images`` (N, 3, H, W), as ``encode_images`` makes it."""
        self.load()
        assert self.preprocess is not None
        out = []
        for i, im in enumerate(images):
            if not isinstance(im, Image.Image):
                raise TypeError(f"image {i} is {type(im).__name__}, not a PIL image")
            try:
                out.append(self.preprocess(im if im.mode == "RGB" else im.convert("RGB")))
            except Exception as exc:  # truncated file, decompression bomb, ...
                raise EncoderError(f"image {i} cannot be preprocessed: {' '.join(str(exc).split())[:200]}") from exc
        return np.stack(out) if out else np.zeros((0, 3, *self.preprocess.size), dtype=np.float32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images (converted to RGB) -> L2-normalised rows, aligned with the input."""
        items = list(images)
        self.load()
        if not items:
            return np.zeros((0, self.dims), dtype=np.float32)
        out = []
        for start in range(0, len(items), self.batch_size):
            batch = self.pixels(items[start:start + self.batch_size])
            out.append(self._run(self._image, {self._image_input: batch}))
        return l2_normalise(np.concatenate(out))

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """open_clip token ids (N, context_length) int64."""
        self.load()
        encodings = self._tokenizer.encode_batch([clean_clip_text(t, self._clean) for t in check_texts(texts)])
        return np.asarray([e.ids for e in encodings], dtype=np.int64)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        self.load()
        if not items:
            return np.zeros((0, self.dims), dtype=np.float32)
        out = []
        for start in range(0, len(items), self.batch_size):
            ids = self.tokenize(items[start:start + self.batch_size])
            out.append(self._run(self._text, {self._text_input: ids}))
        return l2_normalise(np.concatenate(out))

    def _run(self, session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return np.asarray(session.run(None, feed)[0], dtype=np.float32)
        except Exception as exc:
            raise EncoderError(f"CLIP model {self.model_name!r} failed: {' '.join(str(exc).split())[:200]}") from exc
