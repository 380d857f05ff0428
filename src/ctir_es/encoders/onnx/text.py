"""Sentence-transformer text encoder on onnxruntime + HF ``tokenizers`` (no PyTorch).

The exported graph takes the tokenizer's outputs and returns the pooled, L2-normalised
sentence embedding (pooling and normalisation are inside the graph). Tokenization follows
sentence-transformers: strip each text, lower-case it when the model says so, prepend the
model's "query" / "document" prompt if it defines one, truncate to ``max_seq_length`` and pad
each batch to its longest text. Texts are batched by length (longest first), as
sentence-transformers does, and the rows are returned in input order.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import EncoderError
from ..base import l2_normalise
from ..models import SENTENCE_KIND, find_model, model_file, read_manifest
from .session import RuntimeOptions, input_names, open_session


def check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a sequence of strings, not one string")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str")
    return items


def load_tokenizer(path: Path) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # a core dependency
        raise EncoderError(f"the tokenizers package is not installed ({exc}); pip install tokenizers") from exc
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise EncoderError(f"cannot read tokenizer {path}: {' '.join(str(exc).split())[:200]}") from exc


class OnnxTextEncoder:
    """TextEncoder over an exported sentence-transformer (``kind: onnx-sentence``).

    ``model``: a model directory, or the name of one in the models dir. Construction does no
    I/O; ``load()`` (or the first use) reads the manifest, tokenizer and ONNX graph.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        batch_size: int = 64,
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
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: list[str] = []
        self._manifest: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OnnxTextEncoder({self.model_name!r}, loaded={self._session is not None})"

    def load(self) -> OnnxTextEncoder:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._load()
        return self

    def _load(self) -> None:
        model_dir = find_model(self.model_name, self.models_dir)
        if model_dir is None:
            raise EncoderError(
                f"no exported ONNX text model {self.model_name!r} (a model dir, or a name in the models dir); "
                "run `ctir-es models export text MODEL` first"
            )
        manifest = read_manifest(model_dir)
        if manifest.get("kind") != SENTENCE_KIND:
            raise EncoderError(f"{model_dir} holds a {manifest.get('kind')!r} model, not a text encoder ({SENTENCE_KIND})")
        text_cfg = manifest.get("text") or {}
        tokenizer = load_tokenizer(model_file(model_dir, manifest, "tokenizer"))
        max_len = int(text_cfg.get("max_seq_length") or 512)
        tokenizer.enable_truncation(max_length=max_len)
        tokenizer.enable_padding(pad_id=int(text_cfg.get("pad_id", 0)), pad_token=str(text_cfg.get("pad_token", "[PAD]")))
        session = open_session(model_file(model_dir, manifest, "model"), self.runtime)
        self._inputs = input_names(session)
        unknown = [n for n in self._inputs if n not in ("input_ids", "attention_mask", "token_type_ids")]
        if unknown:
            raise EncoderError(f"{model_dir}: the ONNX graph wants inputs {unknown} this runtime does not make")
        self._tokenizer = tokenizer
        self._manifest = {**manifest, "path": str(model_dir)}
        self.model_dir = model_dir
        self._session = session

    def _loaded_manifest(self) -> dict[str, Any]:
        self.load()
        if self._manifest is None:
            raise EncoderError(f"text model {self.model_name!r} did not load")
        return self._manifest

    @property
    def dims(self) -> int:
        return int(self._loaded_manifest()["dims"])

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self._loaded_manifest())

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "query")

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, "document")

    def _prepare(self, texts: list[str], task: str) -> list[str]:
        cfg = self._loaded_manifest().get("text") or {}
        prompt = (cfg.get("prompts") or {}).get(task) or ""
        out = [t.strip() for t in texts]
        if cfg.get("do_lower_case"):
            out = [t.lower() for t in out]
        return [prompt + t for t in out] if prompt else out

    def tokenize(self, texts: Sequence[str], task: str = "document") -> dict[str, np.ndarray]:
        """The graph inputs for one batch, as the encoder makes them (for tests and benchmarks)."""
        self.load()
        return self._feed(self._prepare(check_texts(texts), task))

    def _feed(self, prepared: list[str]) -> dict[str, np.ndarray]:
        encodings = self._tokenizer.encode_batch(prepared)
        feed = {"input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64)}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        return {k: feed[k] for k in self._inputs}

    def _encode(self, texts: Sequence[str], task: str) -> np.ndarray:
        items = check_texts(texts)
        self.load()
        if not items:
            return np.zeros((0, self.dims), dtype=np.float32)
        prepared = self._prepare(items, task)
        order = np.argsort([-len(t) for t in prepared], kind="stable")
        out = np.empty((len(items), self.dims), dtype=np.float32)
        for start in range(0, len(items), self.batch_size):
            idx = order[start:start + self.batch_size]
            feed = self._feed([prepared[i] for i in idx])
            try:
                (emb,) = self._session.run(None, feed)
            except Exception as exc:
                raise EncoderError(f"text model {self.model_name!r} failed: {' '.join(str(exc).split())[:200]}") from exc
            out[idx] = emb
        return l2_normalise(out)
