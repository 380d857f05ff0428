"""Helpers for the Search API, HTTP service and browser tests: the bundled sample indexed
once per session with the tiny real models (through ``Search.index``), then copied."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ctir_es.ingest.images import ImageLoader
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.sample import sample_path
from ctir_es.search import Search
from ctir_es.store.embedded import EmbeddedStore

SAMPLE_IMAGES = sample_path().parent / "images"
CATEGORY = "Kitchen & Dining > Cookware"

_encoders: dict[tuple[str, str | None], tuple[Any, Any]] = {}
_built: dict[tuple[str, str | None], Path] = {}


def encoders(text_dir: Path, clip: Any | None) -> tuple[Any, Any]:
    """The tiny text encoder and (when ``clip`` is given) the tiny CLIP, loaded once."""
    from ctir_es.encoders.registry import EncoderConfig, load_image_encoder, load_text_encoder

    key = (str(text_dir), str(clip.checkpoint) if clip else None)
    if key not in _encoders:
        text = load_text_encoder(EncoderConfig(text_model=str(text_dir)))
        image = None
        if clip is not None:
            # the config .json as architecture: the index manifest then names a file that a
            # `ctir-es serve` subprocess can load too
            image = load_image_encoder(EncoderConfig(clip_architecture=str(clip.config),
                                                     clip_weights=str(clip.checkpoint)))
        _encoders[key] = (text, image)
    return _encoders[key]


def sample_search(tmp_dir: Path, text_dir: Path, clip: Any | None) -> tuple[Search, IngestReport | None]:
    """A ``Search`` over a private copy of the sample store (built on first use with
    ``Search.index``; the report is returned only for that first build)."""
    text, image = encoders(text_dir, clip)
    key = (str(text_dir), str(clip.checkpoint) if clip else None)
    report = None
    tmp_dir.mkdir(parents=True, exist_ok=True)
    if key not in _built:
        build_dir = tmp_dir / "built"
        build_dir.mkdir()
        builder = Search(EmbeddedStore(build_dir / "sample.db"), text, image, ImageLoader())
        report = builder.index(read_jsonl(sample_path(), IngestReport()))
        builder.close()
        _built[key] = build_dir / "sample.db"
    path = tmp_dir / "store.db"
    shutil.copyfile(_built[key], path)
    return Search(EmbeddedStore(path), text, image, ImageLoader(cache_dir=tmp_dir / "cache")), report


def sample_image(name_part: str = "") -> Path:
    return next(p for p in sorted(SAMPLE_IMAGES.glob("*.jpg")) if name_part in p.name)
