"""Which encoders to load, and loading them eagerly so that failures show at start-up.

``EncoderConfig`` gathers the encoder knobs (built from ``Settings`` or from the manifest an
index was built with). The loaders force the model load: a missing model is reported before
an ingest starts, not after its first batch. ``try_load_image_encoder`` turns "no image
weights" into text-only mode plus a one-line notice.

Backends (``EncoderConfig.backend``, ``$CTIR_ES_BACKEND``):

- ``onnx`` (the default): exported models on onnxruntime + tokenizers + Pillow/NumPy; no
  PyTorch. ``text_model`` / ``clip_weights`` may name an exported model directly (a model dir
  or a name in the models dir). Otherwise the export of that source model is looked up by its
  default name; if there is none and PyTorch is installed it is exported once, with one line
  saying so; without PyTorch the error names ``ctir-es models export`` and the pip command.
- ``torch``: the sentence-transformers / open_clip reference encoders (the training extra).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import env_value
from ..errors import EncoderError, MissingExtraError
from ..vocabulary import DISABLED
from ._torch import TRAIN_EXTRA_HINT
from .base import ImageEncoder, TextEncoder
from .clip import OpenClipEncoder
from .models import (
    CLIP_KIND,
    SENTENCE_KIND,
    clip_model_name,
    default_models_dir,
    file_sha256,
    find_model,
    is_model_dir,
    read_manifest,
    safe_name,
)
from .onnx.clip import OnnxClipEncoder
from .onnx.session import RuntimeOptions
from .onnx.text import OnnxTextEncoder
from .sentence import KNOWN_TEXT_MODELS, SentenceTextEncoder, resolve_text_model, weights_sha256

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

BACKENDS = ("onnx", "torch")
DEFAULT_BACKEND = "onnx"

Notify = Callable[[str], None]


def _log_notice(message: str) -> None:
    log.warning("%s", message)


def backend_from_env(default: str = DEFAULT_BACKEND) -> str:
    return str(env_value("backend") or default).strip().lower()


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise EncoderError(f"unknown encoder backend {backend!r}; supported: {', '.join(BACKENDS)}")
    return backend


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder settings. ``clip_weights`` None / "none" / "off" means text-only (no images);
    "random" builds random CLIP weights (tests only)."""

    text_model: str = "all-MiniLM-L6-v2"
    clip_architecture: str = "ViT-B-32"
    clip_weights: str | None = "laion2b_s34b_b79k"
    device: str = "cpu"  # torch backend
    text_batch_size: int = 64
    image_batch_size: int = 32
    cache_dir: Path | None = None
    backend: str = field(default_factory=backend_from_env)
    models_dir: Path | None = None  # default: $CTIR_ES_MODELS_DIR or <cache_dir>/models
    threads: int | None = None  # onnx backend; default $CTIR_ES_ONNX_THREADS or onnxruntime's
    onnx_device: str | None = None  # onnx backend: auto, cpu or cuda; default $CTIR_ES_ONNX_DEVICE or auto
    auto_export: bool = True  # onnx backend: export a missing model when PyTorch is there

    def __post_init__(self) -> None:
        check_backend(self.backend)

    @property
    def images_enabled(self) -> bool:
        return self.clip_weights is not None and self.clip_weights.strip().lower() not in DISABLED

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or default_models_dir(self.cache_dir)

    @property
    def runtime(self) -> RuntimeOptions:
        return RuntimeOptions.from_env(threads=self.threads, device=self.onnx_device)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> EncoderConfig:
        """The encoder part of the app settings (``overrides`` win, e.g. ``device="cuda"``)."""
        cfg = cls(
            text_model=settings.text_model,
            clip_architecture=settings.clip_architecture,
            clip_weights=settings.clip_weights,
            text_batch_size=settings.batch_size,
            cache_dir=settings.cache_dir,
            models_dir=settings.models_dir,  # None: $CTIR_ES_MODELS_DIR or <cache_dir>/models
            backend=str(getattr(settings, "backend", None) or backend_from_env()).lower(),
            onnx_device=getattr(settings, "onnx_device", None),  # the setting, from a file, env or --device
            threads=getattr(settings, "onnx_threads", None),  # the setting, from a file or env
        )
        return replace(cfg, **overrides)


# ------------------------------------------------------------------ manifests -> configs


def _from_sentence_manifest(manifest: Mapping[str, Any], cfg: EncoderConfig) -> EncoderConfig:
    model = manifest.get("model") or manifest.get("source") or manifest.get("name")
    return replace(cfg, text_model=str(model)) if model else cfg


def _from_open_clip_manifest(manifest: Mapping[str, Any], cfg: EncoderConfig) -> EncoderConfig:
    arch = manifest.get("architecture") or manifest.get("name") or cfg.clip_architecture
    weights = manifest.get("weights") or cfg.clip_weights
    return replace(cfg, clip_architecture=str(arch), clip_weights=str(weights))


def _exported_ref(manifest: Mapping[str, Any]) -> str:
    """The exported model a manifest describes: its dir if it is still there, else its name."""
    path = manifest.get("path")
    if path and is_model_dir(Path(str(path))):
        return str(path)
    return str(manifest.get("name") or "")


def _from_onnx_sentence_manifest(manifest: Mapping[str, Any], cfg: EncoderConfig) -> EncoderConfig:
    if cfg.backend == "torch":  # the reference encoder of the same weights
        return replace(cfg, text_model=str((manifest.get("source") or {}).get("model") or manifest.get("name")))
    return replace(cfg, text_model=_exported_ref(manifest))


def _from_onnx_clip_manifest(manifest: Mapping[str, Any], cfg: EncoderConfig) -> EncoderConfig:
    source = manifest.get("source") or {}
    if cfg.backend == "torch":
        return replace(cfg, clip_architecture=str(source.get("architecture") or manifest.get("architecture")),
                       clip_weights=str(source.get("weights") or "random"))
    return replace(cfg, clip_architecture=str(manifest.get("architecture") or cfg.clip_architecture),
                   clip_weights=_exported_ref(manifest))


# manifest "kind" -> how it overrides the config; the keys also make the "supported" text.
MANIFEST_KINDS: dict[str, Callable[[Mapping[str, Any], EncoderConfig], EncoderConfig]] = {
    "sentence-transformer": _from_sentence_manifest,
    "open_clip": _from_open_clip_manifest,
    SENTENCE_KIND: _from_onnx_sentence_manifest,
    CLIP_KIND: _from_onnx_clip_manifest,
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


# ------------------------------------------------------------------ finding / exporting ONNX models


def _torch_missing() -> MissingExtraError | None:
    """None when PyTorch (and with it the exporters) can be imported."""
    from ._torch import import_torch

    try:
        import_torch()
    except MissingExtraError as exc:
        return exc
    return None


def _not_exported(what: str, export_cmd: str, where: Path, reason: str) -> EncoderError:
    return EncoderError(
        f"no ONNX export of {what} in {where} and {reason}: run `{export_cmd}` where the training extra is "
        f"installed ({TRAIN_EXTRA_HINT}), or point at an exported model directory"
    )


def expected_text_name(model: str, cache_dir: Path | None = None) -> str | None:
    """The default export name of a sentence-transformers model (None: only known after loading)."""
    resolved = resolve_text_model(model, cache_dir)
    known = {canonical for canonical, _ in KNOWN_TEXT_MODELS.values()}
    if resolved.name in known:
        return safe_name(resolved.name)
    if not resolved.local:
        return None
    return safe_name(f"{resolved.name}-{weights_sha256(Path(resolved.source))[:8]}")


def onnx_text_model_dir(cfg: EncoderConfig, notify: Notify | None = None) -> Path:
    """The exported model dir for ``cfg.text_model``, exporting it once if need be."""
    models_dir = cfg.resolved_models_dir
    found = find_model(cfg.text_model, models_dir)
    if found is not None:
        return found
    name = expected_text_name(cfg.text_model, cfg.cache_dir)  # EncoderError when the model is unknown
    if name is not None and is_model_dir(models_dir / name):
        return models_dir / name
    export_cmd = f"ctir-es models export text {cfg.text_model}"
    if not cfg.auto_export:
        raise _not_exported(f"text model {cfg.text_model!r}", export_cmd, models_dir, "automatic export is off")
    missing = _torch_missing()
    if missing is not None:
        raise _not_exported(f"text model {cfg.text_model!r}", export_cmd, models_dir, "PyTorch is not installed")
    from .export.common import ExportOptions
    from .export.text import export_sentence_transformer

    result = export_sentence_transformer(
        cfg.text_model, ExportOptions(models_dir=models_dir, cache_dir=cfg.cache_dir, name=name)
    )
    seconds = result.manifest["export"]["seconds"]
    cosine = result.manifest["parity"]["document"]["min_cosine"]
    (notify or _log_notice)(
        f"exported text model {cfg.text_model} to ONNX once ({seconds:.0f} s, cosine to PyTorch >= {cosine:.4f}): "
        f"{result.path}"
    )
    return result.path


def expected_clip_name(architecture: str, weights: str | None, seed: int = 0) -> str:
    """The default export name of an open_clip architecture + weights (hashes a weights file)."""
    arch = Path(architecture).stem if architecture.endswith(".json") else architecture
    if weights is None or str(weights).strip().lower() == "random":
        label = f"random-seed{seed}"
    elif Path(str(weights)).expanduser().is_file():
        label = "sha256:" + file_sha256(Path(str(weights)).expanduser())[:16]
    else:
        label = str(weights)
    return clip_model_name(f"{arch}@{label}")


def onnx_clip_model_dir(cfg: EncoderConfig, notify: Notify | None = None) -> Path:
    """The exported CLIP model dir for ``cfg``, exporting it once if need be."""
    models_dir = cfg.resolved_models_dir
    if cfg.clip_weights:
        found = find_model(cfg.clip_weights, models_dir)
        if found is not None:
            return found
    name = expected_clip_name(cfg.clip_architecture, cfg.clip_weights)
    if is_model_dir(models_dir / name):
        return models_dir / name
    what = f"CLIP {cfg.clip_architecture} with weights {cfg.clip_weights}"
    export_cmd = f"ctir-es models export clip --clip-model {cfg.clip_architecture} --clip-weights {cfg.clip_weights}"
    if not cfg.auto_export:
        raise _not_exported(what, export_cmd, models_dir, "automatic export is off")
    missing = _torch_missing()
    if missing is not None:
        raise _not_exported(what, export_cmd, models_dir, "PyTorch is not installed")
    from .export.clip import export_open_clip
    from .export.common import ExportOptions

    result = export_open_clip(cfg.clip_architecture, cfg.clip_weights,
                              ExportOptions(models_dir=models_dir, cache_dir=cfg.cache_dir, name=name))
    export = result.manifest["export"]
    seconds = export["image"]["seconds"] + export["text"]["seconds"]
    (notify or _log_notice)(f"exported {what} to ONNX once ({seconds:.0f} s): {result.path}")
    return result.path


# ------------------------------------------------------------------ loaders


def load_text_encoder(cfg: EncoderConfig, notify: Notify | None = None) -> TextEncoder:
    """The text encoder, loaded now (raises EncoderError / MissingExtraError)."""
    if cfg.backend == "torch":
        return SentenceTextEncoder(
            cfg.text_model, device=cfg.device, batch_size=cfg.text_batch_size, cache_dir=cfg.cache_dir
        ).load()
    model_dir = onnx_text_model_dir(cfg, notify)
    return OnnxTextEncoder(model_dir, batch_size=cfg.text_batch_size, runtime=cfg.runtime).load()


def load_image_encoder(cfg: EncoderConfig, notify: Notify | None = None) -> ImageEncoder:
    """The image encoder, loaded now (raises EncoderError / MissingExtraError)."""
    if not cfg.images_enabled:
        raise EncoderError("image vectors are disabled (clip_weights is none); set --clip-weights to enable them")
    if cfg.backend == "torch":
        return OpenClipEncoder(
            cfg.clip_architecture, cfg.clip_weights, device=cfg.device, batch_size=cfg.image_batch_size
        ).load()
    model_dir = onnx_clip_model_dir(cfg, notify)
    return OnnxClipEncoder(model_dir, batch_size=cfg.image_batch_size, runtime=cfg.runtime).load()


def try_load_image_encoder(
    cfg: EncoderConfig, notify: Notify | None = None
) -> tuple[ImageEncoder | None, str | None]:
    """``(encoder, None)``, or ``(None, notice)`` for text-only mode when no image model loads."""
    if not cfg.images_enabled:
        return None, "text-only mode: image vectors disabled (clip_weights is none)"
    try:
        return load_image_encoder(cfg, notify), None
    except (EncoderError, MissingExtraError) as exc:
        # two short lines: what happened, then the fix (the errors put it after "; ")
        cause, _, fix = str(exc).partition("; ")
        return None, f"text-only mode: {cause}" + (f"\n  fix: {fix}" if fix else "")


def describe_model(model_dir: Path) -> dict[str, Any]:
    """The manifest of an exported model dir (for ``ctir-es models``)."""
    return {**read_manifest(model_dir), "path": str(model_dir)}


# ------------------------------------------------------------------ CLIP-ITA


def _encoder_ref_config(ref: Mapping[str, Any], cfg: EncoderConfig, what: str) -> EncoderConfig:
    """The config that loads the encoder a CLIP-ITA manifest refers to (an export, else its source)."""
    if ref.get("kind") in MANIFEST_KINDS:
        return config_from_manifest(ref, cfg)
    raise EncoderError(f"CLIP-ITA manifest names a {what} encoder of unknown kind {ref.get('kind')!r}")


def load_clip_ita(
    model: str | Path,
    cfg: EncoderConfig,
    *,
    text_encoder: TextEncoder | None = None,
    image_encoder: ImageEncoder | None = None,
    notify: Notify | None = None,
) -> Any:
    """A CLIP-ITA model (exported heads) with the frozen encoders it was trained on, loaded now.

    ``text_encoder`` / ``image_encoder`` are reused when they are those encoders.
    """
    from .onnx.heads import ClipItaEncoder

    return ClipItaEncoder(
        model,
        models_dir=cfg.resolved_models_dir,
        runtime=cfg.runtime,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        load_text=lambda ref: load_text_encoder(_encoder_ref_config(ref, cfg, "text"), notify),
        load_image=lambda ref: load_image_encoder(_encoder_ref_config(ref, cfg, "image"), notify),
    ).load()
