"""CLIP image and text towers on onnxruntime (no PyTorch).

Images: ``ImagePreprocess`` (Pillow + NumPy, open_clip's eval transform) then ``image.onnx``.
Texts: open_clip's text cleaning (``ftfy.fix_text`` when ftfy is installed, else NFC; HTML
unescaped twice; whitespace collapsed; lower case), then its byte-level BPE as a HF
``tokenizers`` file written at export (``<start_of_text> ... <end_of_text>``, truncated to
the context length with the end token kept last, padded with 0), then ``text.onnx``.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import EncoderError
from ..inputs import check_images, check_texts, preprocess_rgb
from ..models import CLIP_KIND, model_file
from .exported import ExportedModelEncoder
from .preprocess import ImagePreprocess
from .providers import active_provider
from .session import input_names, open_session
from .text import load_tokenizer

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


class OnnxClipEncoder(ExportedModelEncoder):
    """ImageEncoder over an exported open_clip model (``kind: onnx-clip``)."""

    kind = CLIP_KIND
    label = "CLIP model"
    default_batch_size = 32
    # set by _open
    preprocess: ImagePreprocess | None = None
    _image: Any = None
    _text: Any = None
    _tokenizer: Any = None

    def _open(self, model_dir: Path, manifest: dict[str, Any]) -> None:
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
        self._image = image
        self.provider = active_provider(image)

    def pixels(self, images: Sequence[Image.Image], start: int = 0) -> np.ndarray:
        """The image tower's input for ``images`` (N, 3, H, W), as ``encode_images`` makes it.
        ``start``: the position of ``images[0]`` in the caller's input (for errors)."""
        self.load()
        assert self.preprocess is not None
        out = preprocess_rgb(check_images(images), self.preprocess, start)
        return np.stack(out) if out else np.zeros((0, 3, *self.preprocess.size), dtype=np.float32)

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images (converted to RGB) -> L2-normalised rows, aligned with the input."""
        items = check_images(images)
        self.load()
        return self._in_batches(items, lambda batch, start: self._run(
            self._image, {self._image_input: self.pixels(batch, start)}))

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        """open_clip token ids (N, context_length) int64."""
        self.load()
        encodings = self._tokenizer.encode_batch([clean_clip_text(t, self._clean) for t in check_texts(texts)])
        return np.asarray([e.ids for e in encodings], dtype=np.int64)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        self.load()
        return self._in_batches(items, lambda batch, _start: self._run(
            self._text, {self._text_input: self.tokenize(batch)}))

    def _run(self, session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
        try:
            return np.asarray(session.run(None, feed)[0], dtype=np.float32)
        except Exception as exc:
            raise self._failed(exc) from exc
