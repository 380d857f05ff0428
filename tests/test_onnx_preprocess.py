"""CLIP image preprocessing in Pillow/NumPy against open_clip's own transform.

On real catalogue photos and on awkward synthetic ones (tiny images that need padding, odd
aspect ratios, grayscale / RGBA / palette modes, every resize mode, non-square targets), the
maximum absolute difference of the preprocessed tensors is printed and must be 0: the same
Pillow resize calls give the same pixels.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctir_es.encoders.onnx.preprocess import ImagePreprocess

MAX_PIXEL_DIFF = 1e-6


def _open_clip_transform(pre: ImagePreprocess):
    from ctir_es.encoders._torch import import_open_clip

    open_clip = import_open_clip()
    from open_clip.transform import image_transform

    size = pre.size if pre.size[0] != pre.size[1] else pre.size[0]
    return image_transform(size, is_train=False, mean=pre.mean, std=pre.std, resize_mode=pre.resize_mode,
                           interpolation=pre.interpolation, fill_color=pre.fill_color), open_clip


def _max_diff(pre: ImagePreprocess, images: list[Image.Image]) -> float:
    transform, _ = _open_clip_transform(pre)
    worst = 0.0
    for im in images:
        ours = pre(im)
        theirs = transform(im).numpy()
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def _flipkart_images(root: Path, limit: int) -> list[Image.Image]:
    with (root / "products.csv").open(encoding="utf-8") as fh:
        names = [row["image"] for row in csv.DictReader(fh)]
    out = []
    for name in names:
        path = root / "images" / name
        if path.is_file():
            with Image.open(path) as im:
                out.append(im.convert("RGB"))
        if len(out) == limit:
            break
    return out


def _synthetic() -> list[Image.Image]:
    rng = np.random.default_rng(1)
    shapes = [(224, 224), (225, 224), (224, 225), (500, 180), (180, 500), (31, 97), (97, 31), (10, 10), (223, 300)]
    out = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in shapes]
    out.append(Image.fromarray(rng.integers(0, 255, (120, 90), dtype=np.uint8), mode="L"))
    out.append(Image.fromarray(rng.integers(0, 255, (90, 150, 4), dtype=np.uint8), mode="RGBA"))
    out.append(Image.new("RGB", (300, 200), (255, 0, 0)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8))
    return out


def test_matches_open_clip_on_real_photos(flipkart_dir: Path) -> None:
    """ViT-B-32's preprocessing (224 px, bicubic, shortest side, OpenAI mean/std) on 80 photos."""
    images = _flipkart_images(flipkart_dir, 80)
    diff = _max_diff(ImagePreprocess(), images)
    print(f"\nmax |pixel difference| vs open_clip on {len(images)} flipkart photos: {diff}")
    assert diff <= MAX_PIXEL_DIFF


@pytest.mark.parametrize("pre", [
    ImagePreprocess(),
    ImagePreprocess(size=(64, 64), interpolation="bilinear"),
    ImagePreprocess(size=(256, 192)),  # non-square target: ResizeKeepRatio + CenterCrop
    ImagePreprocess(resize_mode="longest", fill_color=128),
    ImagePreprocess(size=(160, 224), resize_mode="longest"),
    ImagePreprocess(resize_mode="squash", interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
], ids=["default", "bilinear64", "non-square", "longest", "longest-non-square", "squash"])
def test_matches_open_clip_on_awkward_images(pre: ImagePreprocess) -> None:
    diff = _max_diff(pre, _synthetic())
    print(f"\n{pre.to_json()}: max |pixel difference| {diff}")
    assert diff <= MAX_PIXEL_DIFF


def test_batch_shape_and_manifest_round_trip() -> None:
    pre = ImagePreprocess.from_manifest({"size": [224, 224], "interpolation": "bicubic", "resize_mode": "shortest",
                                         "mean": [0.1, 0.2, 0.3], "std": [1, 1, 1]})
    assert pre.batch([]).shape == (0, 3, 224, 224)
    assert pre.batch(_synthetic()[:3]).shape == (3, 3, 224, 224)
    assert ImagePreprocess.from_manifest(pre.to_json()) == pre
    assert ImagePreprocess.from_manifest({"size": 96}).size == (96, 96)


def test_bad_constants_are_clear_errors() -> None:
    from ctir_es.errors import EncoderError

    with pytest.raises(EncoderError, match="supported: bicubic, bilinear"):
        ImagePreprocess(interpolation="lanczos")
    with pytest.raises(EncoderError, match="resize mode"):
        ImagePreprocess(resize_mode="crop")
    with pytest.raises(EncoderError, match="3 values"):
        ImagePreprocess.from_manifest({"mean": [0.5, 0.5]})
