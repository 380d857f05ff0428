"""CLIP image preprocessing in Pillow and NumPy, step for step what open_clip's eval transform
does (``open_clip.transform.image_transform`` with ``is_train=False``):

- ``shortest`` (the default): torchvision ``Resize(size)`` of the shortest side (short side to
  ``size``, long side ``int(size * long / short)``; an image already that size is left alone),
  then ``CenterCrop`` (zero padding when the image is smaller than the crop, crop offsets
  ``int(round((H - h) / 2))``);
- ``longest``: ``ResizeKeepRatio(longest=1)`` then ``CenterCropOrPad`` with ``fill_color``;
- ``squash``: resize to exactly ``size``;
- then ``convert("RGB")``, ``ToTensor`` (``uint8 / 255`` in float32) and ``Normalize``.

torchvision resizes PIL images with PIL itself, so the same Pillow calls give the same pixels;
``tests/test_onnx_preprocess.py`` states the maximum difference on real catalogue photos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ...errors import EncoderError

RESIZE_MODES = ("shortest", "longest", "squash")
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "random": Image.Resampling.BICUBIC,  # open_clip: "random" means bicubic at inference
}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _pair(size: Any) -> tuple[int, int]:
    """(height, width) from an int or a 1/2-element sequence."""
    if isinstance(size, int):
        return size, size
    values = [int(v) for v in size]
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise EncoderError(f"image size must be an int or (height, width), got {size!r}")


def _three(values: Any, default: Sequence[float]) -> tuple[float, float, float]:
    if values is None:
        values = default
    if isinstance(values, (int, float)):
        values = (values,) * 3
    out = tuple(float(v) for v in values)
    if len(out) != 3:
        raise EncoderError(f"image mean/std must have 3 values, got {values!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class ImagePreprocess:
    """open_clip's eval preprocessing for one model (from its manifest ``image`` section)."""

    size: tuple[int, int] = (224, 224)  # (height, width)
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise EncoderError(f"unknown interpolation {self.interpolation!r}; supported: {', '.join(INTERPOLATIONS)}")
        if self.resize_mode not in RESIZE_MODES:
            raise EncoderError(f"unknown resize mode {self.resize_mode!r}; supported: {', '.join(RESIZE_MODES)}")

    @classmethod
    def from_manifest(cls, image: Mapping[str, Any]) -> ImagePreprocess:
        return cls(
            size=_pair(image.get("size") or 224),
            mean=_three(image.get("mean"), OPENAI_MEAN),
            std=_three(image.get("std"), OPENAI_STD),
            interpolation=str(image.get("interpolation") or "bicubic"),
            resize_mode=str(image.get("resize_mode") or "shortest"),
            fill_color=int(image.get("fill_color") or 0),
        )

    def to_json(self) -> dict[str, Any]:
        return {"size": list(self.size), "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation, "resize_mode": self.resize_mode,
                "fill_color": self.fill_color}

    # -- the steps -----------------------------------------------------------------------

    @property
    def _resample(self) -> Image.Resampling:
        return INTERPOLATIONS[self.interpolation]

    def _resize(self, img: Image.Image, height: int, width: int) -> Image.Image:
        if (img.height, img.width) == (height, width):
            return img  # torchvision returns the image untouched
        return img.resize((width, height), self._resample)

    def _resize_shortest(self, img: Image.Image) -> Image.Image:
        th, tw = self.size
        w, h = img.size
        if th == tw:  # torchvision Resize(int): short side to size, long side truncated
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = th, int(th * long / short)
            new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
            return self._resize(img, new_h, new_w)
        return self._resize_keep_ratio(img, longest=0.0)

    def _resize_keep_ratio(self, img: Image.Image, longest: float) -> Image.Image:
        th, tw = self.size
        h, w = img.height, img.width
        ratio_h, ratio_w = h / th, w / tw
        ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
        return self._resize(img, round(h / ratio), round(w / ratio))

    def _center_crop(self, img: Image.Image, fill: int) -> Image.Image:
        ch, cw = self.size
        w, h = img.size
        if cw > w or ch > h:
            left = (cw - w) // 2 if cw > w else 0
            top = (ch - h) // 2 if ch > h else 0
            right = (cw - w + 1) // 2 if cw > w else 0
            bottom = (ch - h + 1) // 2 if ch > h else 0
            padded = Image.new(img.mode, (w + left + right, h + top + bottom), _fill(img, fill))
            if img.mode == "P" and img.getpalette() is not None:
                padded.putpalette(img.getpalette())  # type: ignore[arg-type]
            padded.paste(img, (left, top))
            img = padded
            w, h = img.size
            if (w, h) == (cw, ch):
                return img
        top = round((h - ch) / 2.0)  # torchvision: int(round(...))
        left = round((w - cw) / 2.0)
        return img.crop((left, top, left + cw, top + ch))

    def geometry(self, img: Image.Image) -> Image.Image:
        """Resize and crop (the PIL part), before RGB conversion."""
        if self.resize_mode == "shortest":
            return self._center_crop(self._resize_shortest(img), 0)
        if self.resize_mode == "longest":
            return self._center_crop(self._resize_keep_ratio(img, longest=1.0), self.fill_color)
        return self._resize(img, *self.size)

    def __call__(self, img: Image.Image) -> np.ndarray:
        """One PIL image -> float32 array (3, height, width), normalised."""
        rgb = self.geometry(img).convert("RGB")
        scaled = np.asarray(rgb, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
        normed = (scaled - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(normed.transpose(2, 0, 1), dtype=np.float32)

    def batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, 3, height, width) float32."""
        if not images:
            return np.zeros((0, 3, *self.size), dtype=np.float32)
        return np.stack([self(im) for im in images])


def _fill(img: Image.Image, fill: int) -> Any:
    bands = len(img.getbands())
    return fill if bands == 1 else (fill,) * bands
