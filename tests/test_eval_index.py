"""Evaluation indexes are cached between runs: one built with CLIP (whose encoder fills two
fields, image and title vectors) is reused like any other, not rebuilt on every run; a cached
index is reused only with the lexical engine in force."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_support import encoders

from ctir_es.config import Settings
from ctir_es.evaluation.index import IndexBuilder
from ctir_es.ingest.images import ImageLoader
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.sample import sample_path
from ctir_es.schema import Document, IndexSchema
from ctir_es.store.embedded import DEFAULT_LEXICAL_ENGINE, LEXICAL_ENV
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


def test_a_cached_index_is_reused_only_with_the_lexical_engine_in_force(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BM25 figures come from the engine a new index would get (the lexical_engine setting, else
    the store's default), never from a cache built with the other engine; each engine keeps its
    own cached index, and the report's ``indexes`` entry names the engine."""
    products = list(read_jsonl(sample_path(), IngestReport()))[:40]

    def build(engine: str | None, settings: Settings | None = None) -> tuple[bool, str | None, dict]:
        if engine is None:
            monkeypatch.delenv(LEXICAL_ENV, raising=False)
        else:
            monkeypatch.setenv(LEXICAL_ENV, engine)
        with IndexBuilder.for_products(products, settings or Settings(cache_dir=tmp_path / "cache"), kind="sample",
                                       work_dir=tmp_path / "eval") as builder:
            index = builder.with_documents("bm25", IndexSchema(), lambda batch: [Document(p, {}) for p in batch])
            assert index.indexed == len(products)
            return index.cached, getattr(index.store, "lexical_engine", None), index.to_json()

    other = "tantivy" if DEFAULT_LEXICAL_ENGINE == "fts5" else "fts5"
    cached, engine, entry = build(None)
    assert (cached, engine, entry["lexical_engine"]) == (False, DEFAULT_LEXICAL_ENGINE, DEFAULT_LEXICAL_ENGINE)
    assert build(other)[:2] == (False, other)  # the setting names the other engine: built anew
    assert build(other)[:2] == (True, other)
    assert build(DEFAULT_LEXICAL_ENGINE)[:2] == (True, DEFAULT_LEXICAL_ENGINE)  # kept beside the other
    # a Settings object naming the engine wins over the environment, as in open_store
    cached, engine, entry = build(DEFAULT_LEXICAL_ENGINE, Settings(cache_dir=tmp_path / "cache", lexical_engine=other))
    assert (cached, engine, entry["lexical_engine"]) == (True, other, other)
