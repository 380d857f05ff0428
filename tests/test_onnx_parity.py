"""fp32 ONNX against PyTorch on real inputs: every exported encoder must reach cosine >= 0.999.

- the real all-MiniLM-L6-v2 on flipkart-1050 titles (queries and documents);
- the CLIP towers (a tiny random open_clip ViT: no CLIP weights exist offline) on flipkart
  photos and titles, and the CLIP tokenizer against open_clip's on every title;
- the CLIP-ITA heads (tests/test_training.py exports and checks them).

The cosines are printed (``pytest -s``); ``benchmarks/encoders.py`` runs the same checks on
the full-size ViT-B-32 architecture and on int8 exports.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import TinyClip
from PIL import Image

from ctir_es.encoders import OnnxClipEncoder, OnnxTextEncoder, OpenClipEncoder, SentenceTextEncoder
from ctir_es.encoders.export.common import PARITY_MIN_COSINE, row_cosines


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "products.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def titles(flipkart_dir: Path) -> list[str]:
    return [r["product_name"] for r in _rows(flipkart_dir)]


@pytest.fixture(scope="module")
def photos(flipkart_dir: Path) -> list[Image.Image]:
    out = []
    for row in _rows(flipkart_dir)[:40]:
        path = flipkart_dir / "images" / row["image"]
        if path.is_file():
            with Image.open(path) as im:
                out.append(im.convert("RGB"))
    return out


def _check(what: str, reference: np.ndarray, onnx: np.ndarray) -> None:
    cos = row_cosines(reference, onnx)
    print(f"\n{what}: fp32 ONNX vs PyTorch over {len(cos)} inputs: min cosine {cos.min():.7f}, mean {cos.mean():.7f}")
    assert cos.min() >= PARITY_MIN_COSINE


def test_minilm_onnx_matches_pytorch_on_flipkart_titles(minilm_onnx: Path, titles: list[str]) -> None:
    texts = titles[:300] + ["Kitchen & Dining > Cookware > Pots & Pans", "Watches > Wrist Watches", ""]
    torch_enc = SentenceTextEncoder("all-MiniLM-L6-v2", batch_size=32)
    onnx_enc = OnnxTextEncoder(minilm_onnx, batch_size=32)
    assert onnx_enc.manifest["id"] == torch_enc.manifest["id"]  # same weights, same embedding space
    _check("all-MiniLM-L6-v2 documents", torch_enc.encode_documents(texts), onnx_enc.encode_documents(texts))
    _check("all-MiniLM-L6-v2 queries", torch_enc.encode_queries(texts[:50]), onnx_enc.encode_queries(texts[:50]))


def test_clip_towers_match_pytorch_on_flipkart(tiny_onnx_clip: Path, tiny_clip: TinyClip, titles: list[str],
                                               photos: list[Image.Image]) -> None:
    torch_enc = OpenClipEncoder(str(tiny_clip.config), str(tiny_clip.checkpoint), batch_size=8)
    onnx_enc = OnnxClipEncoder(tiny_onnx_clip, batch_size=8)
    assert onnx_enc.manifest["id"] == torch_enc.manifest["id"]
    _check("CLIP image tower (tiny ViT)", torch_enc.encode_images(photos), onnx_enc.encode_images(photos))
    _check("CLIP text tower (tiny ViT)", torch_enc.encode_texts(titles[:200]), onnx_enc.encode_texts(titles[:200]))


def test_clip_tokenizer_matches_open_clip_on_every_title(tiny_onnx_clip: Path, tiny_clip: TinyClip,
                                                         titles: list[str]) -> None:
    from ctir_es.encoders._torch import import_open_clip

    open_clip = import_open_clip()
    reference = open_clip.get_tokenizer("ViT-B-32")
    texts = [*titles, "Fish &amp; Chips", "  spaced   out  ", "Ünïcödé ﬁne", "<end_of_text> inside", "x " * 200, ""]
    ours = OnnxClipEncoder(tiny_onnx_clip).tokenize(texts)
    np.testing.assert_array_equal(ours, reference(texts).numpy())


def test_exports_record_their_parity(minilm_onnx: Path, tiny_onnx_clip: Path) -> None:
    """The check every export runs is in its manifest (``ctir-es models list`` shows it)."""
    text = OnnxTextEncoder(minilm_onnx).manifest["parity"]
    clip = OnnxClipEncoder(tiny_onnx_clip).manifest["parity"]
    assert min(text["query"]["min_cosine"], text["document"]["min_cosine"]) >= PARITY_MIN_COSINE
    assert clip["tokens_equal"] is True and clip["pixels_max_abs_diff"] == 0.0
    assert min(clip["image"]["min_cosine"], clip["text"]["min_cosine"]) >= PARITY_MIN_COSINE
