"""Which encoders to load, and loading them eagerly so that failures show at start-up.

``EncoderConfig`` gathers the encoder knobs (built from ``Settings`` or from the manifest an
index was built with). The loaders force the model load: a missing model is reported before
an ingest starts, not after its first batch. ``try_load_image_encoder`` turns "no image
weights" into text-only mode plus a one-line notice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import EncoderError, MissingExtraError
from .clip import OpenClipEncoder
from .sentence import SentenceTextEncoder

if TYPE_CHECKING:
    from ..config import Settings

DISABLED_WEIGHTS = ("", "none", "off", "false", "no")


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder settings. ``clip_weights`` None / "none" / "off" means text-only (no images);
    "random" builds random CLIP weights (tests only)."""

    text_model: str = "all-MiniLM-L6-v2"
    clip_architecture: str = "ViT-B-32"
    clip_weights: str | None = "laion2b_s34b_b79k"
    device: str = "cpu"
    text_batch_size: int = 64
    image_batch_size: int = 32
    cache_dir: Path | None = None

    @property
    def images_enabled(self) -> bool:
        return self.clip_weights is not None and self.clip_weights.strip().lower() not in DISABLED_WEIGHTS

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> EncoderConfig:
        """The encoder part of the app settings (``overrides`` win, e.g. ``device="cuda"``)."""
        cfg = cls(
            text_model=settings.text_model,
            clip_architecture=settings.clip_architecture,
            clip_weights=settings.clip_weights,
            text_batch_size=settings.batch_size,
            cache_dir=settings.cache_dir,
        )
        return replace(cfg, **overrides)


def _from_sentence_manifest(manifest: Mapping[str, Any], cfg: EncoderConfig) -> EncoderConfig:
    model = manifest.get("model") or manifest.get("source") or manifest.get("name")
    return replace(cfg, text_model=str(model)) if model else cfg


def _from_open_clip_manifest(manifest: Mapping[str, Any], cfg: EncoderConfig) -> EncoderConfig:
    arch = manifest.get("architecture") or manifest.get("name") or cfg.clip_architecture
    weights = manifest.get("weights") or cfg.clip_weights
    return replace(cfg, clip_architecture=str(arch), clip_weights=str(weights))


# manifest "kind" -> how it overrides the config; the keys also make the "supported" text.
MANIFEST_KINDS: dict[str, Callable[[Mapping[str, Any], EncoderConfig], EncoderConfig]] = {
    "sentence-transformer": _from_sentence_manifest,
    "open_clip": _from_open_clip_manifest,
}


def config_from_manifest(manifest: Mapping[str, Any], settings: Settings | EncoderConfig) -> EncoderConfig:
    """The config that reloads the encoder an index manifest describes (settings fill the rest)."""
    base = settings if isinstance(settings, EncoderConfig) else EncoderConfig.from_settings(settings)
    if not manifest:
        return base
    kind = str(manifest.get("kind", ""))
    if kind not in MANIFEST_KINDS:
        raise EncoderError(f"unknown encoder kind {kind!r} in index manifest; supported: {', '.join(MANIFEST_KINDS)}")
    return MANIFEST_KINDS[kind](manifest, base)


def load_text_encoder(cfg: EncoderConfig) -> SentenceTextEncoder:
    """The text encoder, loaded now (raises EncoderError / MissingExtraError)."""
    return SentenceTextEncoder(
        cfg.text_model, device=cfg.device, batch_size=cfg.text_batch_size, cache_dir=cfg.cache_dir
    ).load()


def load_image_encoder(cfg: EncoderConfig) -> OpenClipEncoder:
    """The image encoder, loaded now (raises EncoderError / MissingExtraError)."""
    if not cfg.images_enabled:
        raise EncoderError("image vectors are disabled (clip_weights is none); set --clip-weights to enable them")
    return OpenClipEncoder(
        cfg.clip_architecture, cfg.clip_weights, device=cfg.device, batch_size=cfg.image_batch_size
    ).load()


def try_load_image_encoder(cfg: EncoderConfig) -> tuple[OpenClipEncoder | None, str | None]:
    """``(encoder, None)``, or ``(None, notice)`` for text-only mode when no image model loads."""
    if not cfg.images_enabled:
        return None, "text-only mode: image vectors disabled (clip_weights is none)"
    try:
        return load_image_encoder(cfg), None
    except (EncoderError, MissingExtraError) as exc:
        return None, f"text-only mode: {exc}"
