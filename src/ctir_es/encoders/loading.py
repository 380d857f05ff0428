"""Load the encoders an index was built with, from the manifests it stored, and check that
what loads now is what filled it (a model with other weights or dims is an error that says
what differs)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import ModelMissing, SchemaMismatch
from ..schema import IndexSchema
from ..vocabulary import CLIP_ITA_VECTOR, IMAGE_VECTOR, TITLE_VECTOR
from .base import CategoryEncoder, ImageEncoder, TextEncoder, manifest_differences
from .models import default_models_dir, find_model


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


def models_dir_of(settings: Settings) -> Path:
    """Where exported models are looked up by name: the setting, else ``$CTIR_ES_MODELS_DIR`` or
    ``<cache dir>/models``."""
    return settings.models_dir or default_models_dir(settings.cache_dir)


def index_model_dir(manifest: Mapping[str, Any], models_dir: Path) -> Path | None:
    """The folder of the model a ``clip_ita`` manifest names: the path the index recorded if it is
    still a model dir, else the model's name in ``models_dir`` (a store copied to another machine
    finds it there); None when neither is."""
    path, name = manifest.get("path"), manifest.get("name")
    found = find_model(str(path), models_dir) if path else None
    if found is None and name:
        found = find_model(str(name), models_dir)
    return found


def missing_model(schema: IndexSchema, models_dir: Path) -> ModelMissing | None:
    """The error loading the index's CLIP-ITA model would meet because its folder is gone, or None
    (no ``clip_ita`` field, or the folder is there). Cheap: looks at the file system only."""
    vector_field = schema.vectors.get(CLIP_ITA_VECTOR)
    if vector_field is None:
        return None
    manifest = vector_field.encoder
    name = str(manifest.get("name") or "")
    if not name and not manifest.get("path"):
        return ModelMissing(f"the index's {CLIP_ITA_VECTOR} field names no CLIP-ITA model; run `ctir-es learn` "
                            "to train one again")
    if index_model_dir(manifest, models_dir) is not None:
        return None
    where = f"{manifest['path']} nor " if manifest.get("path") else ""
    target = models_dir / name if name else models_dir  # found there by its name
    return ModelMissing(
        f"the index's CLIP-ITA model {name or '?'!r} is missing: not at {where}in the models dir {models_dir}; "
        f"run `ctir-es learn` to train it again, or copy the model folder to {target}"
    )


def category_encoder_for_schema(
    schema: IndexSchema, settings: Settings, text: TextEncoder | None = None, image: ImageEncoder | None = None
) -> CategoryEncoder | None:
    """The CLIP-ITA model that filled the index's ``clip_ita`` vectors (None when there are none),
    checked against the manifest the index stored. ``ModelMissing`` (one line, with the fix) when
    its folder is gone."""
    vector_field = schema.vectors.get(CLIP_ITA_VECTOR)
    if vector_field is None:
        return None
    from . import registry

    models_dir = models_dir_of(settings)
    manifest = vector_field.encoder
    model_dir = index_model_dir(manifest, models_dir)
    if model_dir is None:
        raise missing_model(schema, models_dir) or ModelMissing(f"no CLIP-ITA model in {models_dir}")
    model = registry.load_clip_ita(model_dir, registry.EncoderConfig.from_settings(settings, models_dir=models_dir),
                                   text_encoder=text, image_encoder=image)
    check_manifest(CLIP_ITA_VECTOR, manifest, model.manifest)
    return model
