"""Evaluation indexes are cached between runs: one built with CLIP (whose encoder fills two
fields, image and title vectors) is reused like any other, not rebuilt on every run."""

from __future__ import annotations

from pathlib import Path

from service_support import encoders

from ctir_es.config import Settings
from ctir_es.evaluation.index import IndexBuilder
from ctir_es.ingest.images import ImageLoader
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.sample import sample_path
from ctir_es.vocabulary import CLIP_TITLE_VECTOR, IMAGE_VECTOR


def test_a_clip_index_is_reused(tmp_path: Path, tiny_text_model_dir: Path, tiny_clip) -> None:
    _, clip = encoders(tiny_text_model_dir, tiny_clip)
    products = list(read_jsonl(sample_path(), IngestReport()))[:40]
    settings = Settings(cache_dir=tmp_path / "cache")
    loader = ImageLoader(cache_dir=tmp_path / "images")
    built = []
    for _ in range(2):
        with IndexBuilder.for_products(products, settings, kind="sample", work_dir=tmp_path / "eval") as builder:
            index = builder.with_encoders("clip", image_encoder=clip, load_images=loader.load_many)
            assert {IMAGE_VECTOR, CLIP_TITLE_VECTOR} <= set(index.schema.vectors)
            built.append(index.cached)
    assert built == [False, True]
