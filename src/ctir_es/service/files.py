"""Serving catalogue images without serving anything else.

A product's image reference comes from the index, never from the request. Still, a
catalogue is untrusted data, so a local file is served only when

1. its real path (symlinks resolved) lies under one of the configured image roots, and
2. it is a regular file, opened without following a symlink at the last step, and
3. its bytes are a raster image in an allowed format (its type comes from the bytes, not
   from the name).

Anything else is a 404 that says no more than "no image".

Remote images (``http(s)://`` references) are served from the ingest's image cache when
they are there (no outbound request on behalf of a web client: no SSRF, and pages keep
working offline), and otherwise redirected to (307): the browser fetches them itself, the
server never proxies arbitrary URLs. ``file:`` and other schemes are never served.
"""

from __future__ import annotations

import io
import logging
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

from ..errors import StoreError, one_line
from ..ingest.images import ALLOWED_FORMATS

log = logging.getLogger("ctir_es.service")

MEDIA_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
               "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}


@dataclass(frozen=True)
class ImageFile:
    data: bytes
    media_type: str


@dataclass(frozen=True)
class Redirect:
    url: str


def normalise_roots(roots: Iterable[str | Path]) -> list[Path]:
    """Resolved, existing directories; nested ones collapsed into their ancestor. The
    filesystem root itself is refused (it would allow every image on the machine)."""
    out: list[Path] = []
    for raw in roots:
        try:
            root = Path(raw).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            log.warning("image root %s does not exist: skipped", raw)
            continue
        if not root.is_dir():
            log.warning("image root %s is not a directory: skipped", raw)
            continue
        if root == Path(root.anchor):
            log.warning("refusing the filesystem root %s as an image root", root)
            continue
        out.append(root)
    out = sorted(set(out), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for root in out:
        if not any(root.is_relative_to(k) for k in kept):
            kept.append(root)
    return kept


def derive_image_roots(store: object, problems: list[str] | None = None) -> list[Path]:
    """Roots from the directories of the products' stored image files (stores that can list
    them: ``EmbeddedStore.image_dirs``); other stores give none (pass ``--image-root``).

    A listing that fails (one stored path with a flipped byte is not UTF-8, and SQLite refuses
    the whole column) gives no roots instead of keeping the server down: the reason goes to
    ``problems`` (``serve`` prints it with the fix) and the log."""
    dirs = getattr(store, "image_dirs", None)
    if dirs is None:
        return []
    try:
        listed = dirs()
    except StoreError as exc:  # a damaged file too: serve starts, and /health reports the damage
        reason = f"the image directories could not be listed from the store ({one_line(exc, 200)})"
        if problems is None:
            log.warning("%s", reason)
        else:
            problems.append(reason)
        return []
    return normalise_roots(listed)


def sniff(data: bytes) -> str | None:
    """The media type of an allowed raster image, from its header; None for anything else."""
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
            return MEDIA_TYPES.get(im.format or "")
    except Exception:  # noqa: BLE001 - not an image, hostile header, bomb: all "no"
        return None


def read_local(ref: str, roots: Sequence[Path], max_bytes: int) -> ImageFile | None:
    """The image at ``ref`` if it passes every check in the module docstring, else None."""
    if not roots or "\x00" in ref:
        return None
    try:
        real = Path(ref).expanduser().resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not any(real.is_relative_to(root) for root in roots):
        log.info("image outside the image roots refused: %s", real)
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    media = sniff(data) if len(data) <= max_bytes else None
    return ImageFile(data, media) if media else None


def resolve_image(
    ref: str | None, roots: Sequence[Path], cache_file: Path | None, max_bytes: int
) -> ImageFile | Redirect | None:
    """What ``/products/{id}/image`` answers for a stored image reference."""
    if not ref:
        return None
    parts = urlsplit(ref)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if cache_file is not None and cache_file.is_file():
            try:
                data = cache_file.read_bytes()
            except OSError:
                data = b""
            media = sniff(data) if 0 < len(data) <= max_bytes else None
            if media:
                return ImageFile(data, media)
        return Redirect(ref) if parts.netloc else None
    if scheme == "" or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return read_local(ref, roots, max_bytes)
    return None  # file:, data:, ftp:, javascript:, ...
