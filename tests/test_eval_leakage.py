"""No leakage: no system under evaluation can see a test product's category.

The evaluation index is built through the normal ingest Pipeline, so it does index the category
path in the store's lexical index (serving needs it). These tests prove that the fields
evaluation searches never reach it, and that product vectors come from titles only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctir_es.config import Settings
from ctir_es.evaluation.index import IndexBuilder
from ctir_es.evaluation.runner import SystemRunner
from ctir_es.evaluation.systems import LEXICAL_SYSTEMS, DenseSystem
from ctir_es.products import Product
from ctir_es.protocol import build_query_set
from ctir_es.ranking.plan import TITLE_VECTOR
from ctir_es.schema import DEFAULT_FIELD_WEIGHTS, LexicalQuery, VectorQuery

UNIQUE = "Zorblaxian"

PRODUCTS = [
    Product(id="leak1", title="Steel frying pan 24 cm", categories=(("Kitchen", f"{UNIQUE} Cookware"),),
            attributes={"Brand": "Acme", "Material": "Steel"}, description="A pan for the stove."),
    Product(id="leak2", title="Steel frying pan 24 cm", categories=(("Garden", "Tools"),),
            attributes={"Brand": "Acme", "Material": "Steel"}, description="A pan for the stove."),
    Product(id="other1", title="Cotton bath towel", categories=(("Home", "Bath", "Towels"),),
            attributes={"Brand": "Soft"}, description="Absorbent towel."),
    Product(id="other2", title="Analog wrist watch", categories=(("Watches", "Men"),),
            description="A steel strap watch."),
]


@pytest.fixture
def builder(tmp_path: Path, tiny_text_model_dir: Path):
    from ctir_es.encoders.registry import EncoderConfig, load_text_encoder

    settings = Settings(store=tmp_path / "unused.db", cache_dir=tmp_path / "cache", clip_weights="none")
    b = IndexBuilder(PRODUCTS, "0" * 64, settings, tmp_path / "eval")
    encoder = load_text_encoder(EncoderConfig(text_model=str(tiny_text_model_dir)))
    b.with_encoders("tiny", text_encoder=encoder)
    yield b, encoder
    b.close()


def test_category_text_is_indexed_but_never_searched_by_evaluation(builder) -> None:
    b, _ = builder
    store = b.indexes["tiny"].store
    # The category column is in the index: a serving query with the default weights finds it...
    served = store.search(LexicalQuery(UNIQUE, dict(DEFAULT_FIELD_WEIGHTS)), [], 10)["bm25"]
    assert [h.id for h in served] == ["leak1"]
    # ...and no lexical field used in evaluation can reach it.
    for system in LEXICAL_SYSTEMS.values():
        assert store.search(LexicalQuery(UNIQUE, dict(system.weights)), [], 10)["bm25"] == [], system.name
    # Words that are in the title do match through the same fields (the query path works).
    found = store.search(LexicalQuery("frying", dict(LEXICAL_SYSTEMS["bm25-text"].weights)), [], 10)["bm25"]
    assert {h.id for h in found} == {"leak1", "leak2"}


def test_the_runner_cannot_find_a_product_by_its_unique_category(builder) -> None:
    b, encoder = builder
    qs = build_query_set(PRODUCTS, "specific", query_text_mode="leaf")
    query = next(q for q in qs.queries if q.node == ("Kitchen", f"{UNIQUE} Cookware"))
    qs.queries = [query]
    dense = DenseSystem("tiny", "tiny", "tiny", TITLE_VECTOR, encoder.encode_queries, encoder.manifest)
    hits = SystemRunner(list(LEXICAL_SYSTEMS.values()), [dense], b.indexes, "tiny", 10).run(qs)
    for name in LEXICAL_SYSTEMS:
        assert hits[name][query.qid] == [], name  # "Zorblaxian Cookware" matches no evaluated field
    # The dense list ranks every product, but leak1 and its twin leak2 (same title, other
    # category) get exactly the same score: the vector cannot know the category.
    scores = {h.id: h.score for h in hits["tiny"][query.qid]}
    assert scores["leak1"] == pytest.approx(scores["leak2"], abs=1e-6)


def test_product_vectors_are_title_only(builder) -> None:
    b, encoder = builder
    store = b.indexes["tiny"].store
    expected = encoder.encode_documents([PRODUCTS[0].title])[0]
    hits = store.search(None, [VectorQuery(TITLE_VECTOR, expected, "v")], 4)["v"]
    top = {h.id: h.score for h in hits}
    # Both products with this title are at cosine 1 whatever their categories and attributes.
    assert top["leak1"] == pytest.approx(1.0, abs=1e-5) and top["leak2"] == pytest.approx(1.0, abs=1e-5)
    assert max(s for pid, s in top.items() if pid not in ("leak1", "leak2")) < 0.9999


def test_index_is_cached_by_dataset_and_encoder(tmp_path: Path, builder, tiny_text_model_dir: Path) -> None:
    b, encoder = builder
    again = IndexBuilder(PRODUCTS, "0" * 64, b.settings, b.work_dir)
    try:
        index = again.with_encoders("tiny", text_encoder=encoder)
        assert index.cached and index.indexed == len(PRODUCTS)
        other = IndexBuilder(PRODUCTS[:2], "1" * 64, b.settings, b.work_dir)  # another dataset
        try:
            assert not other.with_encoders("tiny", text_encoder=encoder).cached
        finally:
            other.close()
    finally:
        again.close()
    assert np.isfinite(index.seconds)
