"""What every encoder accepts: a sequence of strings, or a sequence of PIL images.

A bad item is a ``TypeError`` that names its position; an image its preprocessing cannot
take (truncated file, decompression bomb, ...) is an ``EncoderError`` that names it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from PIL import Image

from ..errors import EncoderError, one_line

T = TypeVar("T")


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list; one string instead of a sequence, or a non-string item, is refused."""
    if isinstance(texts, str):
        raise TypeError("pass a sequence of strings, not one string")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str")
    return items


def check_images(images: Sequence[Image.Image]) -> list[Image.Image]:
    """``images`` as a list; an item that is not a PIL image is refused."""
    items = list(images)
    for i, im in enumerate(items):
        if not isinstance(im, Image.Image):
            raise TypeError(f"image {i} is {type(im).__name__}, not a PIL image")
    return items


def preprocess_rgb(images: Sequence[Image.Image], preprocess: Callable[[Image.Image], T],
                   start: int = 0) -> list[T]:
    """``preprocess`` of each image in RGB. ``start``: the position of ``images[0]`` in the
    caller's input, so an error names the image the caller passed."""
    out = []
    for i, im in enumerate(images, start=start):
        try:
            out.append(preprocess(im if im.mode == "RGB" else im.convert("RGB")))
        except Exception as exc:  # truncated file, decompression bomb, ...
            raise EncoderError(f"image {i} cannot be preprocessed: {one_line(exc)}") from exc
    return out
