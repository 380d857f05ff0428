"""The Python API (``ctir_es.Search``): index, search, similar, categorize, categories,
product - on the real embedded store, the bundled sample and the tiny real models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_support import CATEGORY, sample_image, sample_search

from ctir_es.categories import build_tree, vote_categories
from ctir_es.categorize.engine import DEFAULT_NEIGHBOURS
from ctir_es.errors import NotFound, QueryError, Unsupported
from ctir_es.ingest.report import IngestReport
from ctir_es.products import Product
from ctir_es.search import Search
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.vocabulary import CLIP_TITLE_VECTOR, IMAGE_VECTOR, TITLE_VECTOR


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path, tiny_clip):
    search, report = sample_search(tmp_path_factory.mktemp("api"), tiny_text_model_dir, tiny_clip)
    yield search, report
    search.close()


@pytest.fixture(scope="module")
def search(built) -> Search:
    return built[0]


def _image_nearest(results: list) -> str:
    """The result the image source ranked first (clip_title votes may reorder the fused list)."""
    return next(r.id for r in results if "image" in r.sources and r.sources["image"].rank == 1)


def _product_of_image(search: Search, image: Path) -> Product:
    return search.product(_image_nearest(search.search(image=str(image), mode="image", k=50).results)).product


def test_import_is_light_and_exports_search() -> None:
    code = (
        "import sys, ctir_es\n"
        "heavy = [m for m in ('torch', 'fastapi', 'ctir_es.search', 'sentence_transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from ctir_es.search import Search\n"
        "assert ctir_es.Search is Search and 'Search' in ctir_es.__all__\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_index_builds_the_sample_with_both_vector_fields(built) -> None:
    search, report = built
    if report is not None:  # only the first build of the session returns one
        assert report.read == report.indexed == 280 and report.rejected_total == 0
        assert report.images_missing_total == 0
    assert search.store.count() == 280
    # (and the CLIP text tower's title vectors where the ingest adds them, for image-to-text)
    assert set(search.schema.vectors) - {CLIP_TITLE_VECTOR} == {TITLE_VECTOR, IMAGE_VECTOR}


def test_index_takes_products_and_mappings_and_reports_bad_ones(
    tmp_path: Path, tiny_text_model_dir: Path, tiny_clip
) -> None:
    search, _ = sample_search(tmp_path, tiny_text_model_dir, tiny_clip)
    with search:
        image = str(sample_image())
        report = search.index([
            Product("new-1", "Cast iron skillet 26 cm", (("Kitchen & Dining", "Cookware", "Skillets"),),
                    images=(image,)),
            {"id": "new-2", "title": "Enamel casserole", "categories": "Kitchen & Dining > Cookware > Casseroles"},
            {"title": "no id"},
            "not an object",
        ])
        assert (report.read, report.indexed, report.rejected_total) == (4, 2, 2)
        assert set(report.rejected) == {"missing_id", "not_an_object"}
        assert search.store.count() == 282
        stored = search.product("new-1")
        assert set(stored.vector_fields) - {CLIP_TITLE_VECTOR} == {TITLE_VECTOR, IMAGE_VECTOR}
        # no image: the title vector only (and the CLIP text tower's, for image-to-text)
        assert set(search.product("new-2").vector_fields) - {CLIP_TITLE_VECTOR} == {TITLE_VECTOR}
        # BM25 only: the tiny random models rank at random
        res = search.search("Kitchen & Dining > Cookware > Skillets", k=3, weights={"bm25": 1, "text": 0, "image": 0})
        assert res.results[0].id == "new-1"


def test_category_search_ranks_the_subtree(search: Search) -> None:
    res = search.search(CATEGORY, k=10)
    assert res.mode == "category" and res.sources == ["bm25", "text", "image"]
    in_subtree = [r for r in res.results if r.categories[0][:2] == ["Kitchen & Dining", "Cookware"]]
    assert len(in_subtree) >= 8


def test_search_takes_an_image_as_path_bytes_or_pil(search: Search) -> None:
    image = sample_image()
    by_path = search.search(image=str(image), mode="image", k=50)
    by_bytes = search.search(image=image.read_bytes(), mode="image", k=50)
    with Image.open(image) as im:
        by_pil = search.search(image=im.copy(), mode="image", k=50)
    ids = [r.id for r in by_path.results]
    assert ids == [r.id for r in by_bytes.results] == [r.id for r in by_pil.results]
    assert search.product(_image_nearest(by_path.results)).image.endswith(image.name)


def test_product_and_not_found(search: Search) -> None:
    first = search.search(CATEGORY, k=1).results[0]
    assert search.product(first.id).product.title == first.title
    with pytest.raises(NotFound, match="no product"):
        search.product("no-such-id")


def test_similar_uses_own_vectors_and_never_returns_itself(search: Search) -> None:
    image = sample_image()
    me = _product_of_image(search, image)
    res = search.similar(me.id, k=20)
    assert res.mode == "similar" and res.query == me.id
    assert res.sources == ["image", "text"]
    assert len(res.results) == 20 and me.id not in {r.id for r in res.results}
    assert all(set(r.sources) <= {"image", "text"} for r in res.results)
    # the product's own image vector, queried directly, ranks the same neighbours first
    own = search.store.vectors([me.id], IMAGE_VECTOR)[me.id]
    direct = search.store.search(None, [_vq(IMAGE_VECTOR, own)], 3)[IMAGE_VECTOR]
    assert direct[0].id == me.id and direct[1].id in {r.id for r in res.results}
    with pytest.raises(NotFound):
        search.similar("no-such-id")


def _vq(field: str, vec: np.ndarray):
    from ctir_es.schema import VectorQuery

    return VectorQuery(field, vec)


def test_similar_without_vectors_falls_back_to_bm25(tmp_path: Path) -> None:
    with Search(EmbeddedStore(tmp_path / "bm25.db")) as search:
        search.index([
            {"id": "a", "title": "red cotton bath towel", "categories": "Home > Bath"},
            {"id": "b", "title": "blue cotton bath towel", "categories": "Home > Bath"},
            {"id": "c", "title": "steel wrist watch", "categories": "Watches"},
        ])
        res = search.similar("a", k=5)
        assert res.sources == ["bm25"] and [r.id for r in res.results] == ["b"]


def test_vectors_returns_stored_rows(search: Search) -> None:
    ids = [r.id for r in search.search(CATEGORY, k=3).results]
    got = search.store.vectors([*ids, "missing"], TITLE_VECTOR)
    assert set(got) == set(ids)
    assert all(v.shape == (32,) and v.dtype == np.float32 and abs(np.linalg.norm(v) - 1) < 1e-4 for v in got.values())


def test_categorize_own_image_by_its_nearest_product(search: Search) -> None:
    image = sample_image()
    me = _product_of_image(search, image)
    result = search.categorize(str(image), k=3, depth=2, neighbours=1)
    assert result.neighbours == 1 and result.depth == 2
    assert [c.path for c in result.categories] == [me.categories[0][:2]]
    assert result.categories[0].score == pytest.approx(1.0) and result.categories[0].support == 1
    wide = search.categorize(image.read_bytes(), k=50, depth=1)
    assert wide.neighbours == DEFAULT_NEIGHBOURS
    assert sum(c.score for c in wide.categories) == pytest.approx(1.0)
    assert [c.score for c in wide.categories] == sorted((c.score for c in wide.categories), reverse=True)


def test_categorize_needs_image_vectors(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    search, _ = sample_search(tmp_path, tiny_text_model_dir, None)  # text-only, the offline default
    with search, pytest.raises(Unsupported, match="no image vectors"):
        search.categorize(str(sample_image()))
    assert issubclass(Unsupported, QueryError)  # the CLI shows it as a one-line error


def test_categories_tree_has_counts(search: Search) -> None:
    tree = search.categories()
    assert [n.name for n in tree] == sorted((n.name for n in tree), key=str.casefold)
    assert len(tree) == 7 and all(n.count == 40 for n in tree)
    counts = search.store.category_counts()

    def walk(nodes):
        for n in nodes:
            assert counts[n.path] == n.count
            assert all(c.count <= n.count and c.path[:-1] == n.path for c in n.children)
            yield n
            yield from walk(n.children)

    assert len(list(walk(tree))) == len(counts)


def test_build_tree_and_vote_are_pure() -> None:
    tree = build_tree({("A",): 3, ("A", "B"): 2, ("A", "C"): 1, ("D", "E"): 1})
    assert [(n.name, n.count, [c.name for c in n.children]) for n in tree] == [
        ("A", 3, ["B", "C"]), ("D", 1, ["E"])]  # D is missing: the sum of its children
    votes = vote_categories([([("A", "B", "x")], 0.9), ([("A", "C")], 0.9), ([("A", "B", "y")], 0.1)], k=5, depth=2)
    assert [(c.path, c.support) for c in votes.categories] == [(("A", "B"), 2), (("A", "C"), 1)]
    assert sum(c.score for c in votes.categories) == pytest.approx(1.0)
    assert votes.categories[0].score == pytest.approx(0.5, abs=1e-6)  # the 0.1 voter weighs ~nothing
    with pytest.raises(QueryError):
        vote_categories([], k=0)
    assert vote_categories([], k=3).categories == []


def test_index_report_is_an_ingest_report(tmp_path: Path) -> None:
    with Search(EmbeddedStore(tmp_path / "r.db")) as search:
        report = search.index([{"id": "x", "title": "thing"}], report=IngestReport(source="mine"))
        assert isinstance(report, IngestReport) and report.source == "mine" and report.indexed == 1
