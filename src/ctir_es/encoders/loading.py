"""Load the encoders an index was built with, from the manifests it stored, and check that
what loads now is what filled it (a model with other weights or dims is an error that says
what differs)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import SchemaMismatch
from ..schema import IndexSchema
from ..vocabulary import CLIP_ITA_VECTOR, IMAGE_VECTOR, TITLE_VECTOR
from .base import CategoryEncoder, ImageEncoder, TextEncoder, manifest_differences


def check_manifest(field_name: str, expected: Mapping[str, Any], actual: Mapping[str, Any]) -> None:
    """Fail fast when the encoder loaded now is not the one that filled the index.

    Compares what decides the vectors (id - weights and quantisation -, dims, normalisation,
    sequence length, image preprocessing) wherever torch and ONNX manifests keep it, and
    names each difference.
    """
    diffs = manifest_differences(expected, actual)
    if diffs:
        raise SchemaMismatch(
            f"the encoder for {field_name} differs from the one that built the index ({'; '.join(diffs)}); "
            "configure the same model or re-ingest into a new store"
        )


def encoders_for_schema(
    schema: IndexSchema, settings: Settings
) -> tuple[TextEncoder | None, ImageEncoder | None]:
    """Load the encoders named by the index manifests (falling back to the settings)."""
    from . import registry

    text = image = None
    if TITLE_VECTOR in schema.vectors:
        manifest = schema.vectors[TITLE_VECTOR].encoder
        text = registry.load_text_encoder(registry.config_from_manifest(manifest, settings))
        check_manifest(TITLE_VECTOR, manifest, text.manifest)
    if IMAGE_VECTOR in schema.vectors:
        manifest = schema.vectors[IMAGE_VECTOR].encoder
        image = registry.load_image_encoder(registry.config_from_manifest(manifest, settings))
        check_manifest(IMAGE_VECTOR, manifest, image.manifest)
    return text, image


def category_encoder_for_schema(
    schema: IndexSchema, settings: Settings, text: TextEncoder | None = None, image: ImageEncoder | None = None
) -> CategoryEncoder | None:
    """The CLIP-ITA model that filled the index's ``clip_ita`` vectors (None when there are none),
    checked against the manifest the index stored."""
    vector_field = schema.vectors.get(CLIP_ITA_VECTOR)
    if vector_field is None:
        return None
    from . import registry

    manifest = vector_field.encoder
    ref = manifest.get("path") if manifest.get("path") and Path(str(manifest["path"])).is_dir() else manifest.get("name")
    if not ref:
        raise SchemaMismatch(f"the index's {CLIP_ITA_VECTOR} field names no CLIP-ITA model")
    model = registry.load_clip_ita(str(ref), registry.EncoderConfig.from_settings(settings),
                                   text_encoder=text, image_encoder=image)
    check_manifest(CLIP_ITA_VECTOR, manifest, model.manifest)
    return model
