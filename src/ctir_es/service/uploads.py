"""Uploads: the body is capped while it streams in (``guards.BodyGuard``: 413 before anything
is parsed or decoded), then the image header is checked against the pixel limit before decoding."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from ..errors import ImageError, described
from ..ingest.images import ALLOWED_FORMATS, decode


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the image header (nothing is decoded)."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
            return im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("decompression_bomb", str(exc)[:200]) from None
    except UnidentifiedImageError:
        raise ImageError("not_an_image", f"not a {'/'.join(ALLOWED_FORMATS)} image") from None
    except Exception as exc:  # noqa: BLE001 - hostile headers
        raise ImageError("corrupt", described(exc)) from None


def decode_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Uploaded bytes -> RGB image, refusing oversized files and pixel bombs first."""
    if len(data) > max_bytes:
        raise ImageError("too_large", f"upload larger than {max_bytes:,} bytes")
    if not data:
        raise ImageError("not_an_image", "empty file")
    width, height = image_size(data)
    if width * height > max_pixels:
        raise ImageError("decompression_bomb", f"{width}x{height} pixels > {max_pixels:,}")
    return decode(data, max_bytes=max_bytes)
