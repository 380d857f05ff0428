"""The contract every Store implementation must meet.

An implementation's test module subclasses ``StoreContract`` and supplies a ``store`` fixture
(a fresh, empty store). The embedded store runs it here; the Elasticsearch store runs it
where a Docker engine answers (testcontainers).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ctir_es.errors import SchemaMismatch
from ctir_es.filters import Filter, check_filters
from ctir_es.products import Product
from ctir_es.store.base import Document, IndexSchema, LexicalQuery, Store, VectorField, VectorQuery
from ctir_es.values import ValueSpec

DIMS = 8
SCHEMA = IndexSchema({"title_vector": VectorField(DIMS, "cosine", {"id": "test-encoder@1", "dims": DIMS})})


def unit(*hot: int) -> np.ndarray:
    v = np.full(DIMS, 0.01, dtype=np.float32)
    for i in hot:
        v[i] = 1.0
    return v / np.linalg.norm(v)


def product(pid: str, title: str, path: tuple[str, ...], **kw: object) -> Product:
    return Product(id=pid, title=title, categories=(path,), **kw)  # type: ignore[arg-type]


CATALOGUE = [
    Document(
        product("p1", "Prestige stainless steel pressure cooker", ("Kitchen & Dining", "Cookware", "Pressure Cookers"),
                attributes={"Brand": "Prestige", "Material": "Steel"}, market="in"),
        {"title_vector": unit(0)}, "img/p1.jpg"),
    Document(
        product("p2", "Non-stick frying pan 24 cm", ("Kitchen & Dining", "Cookware", "Pans"),
                attributes={"Brand": "Hawkins"}, market="in"),
        {"title_vector": unit(0, 1)}, "img/p2.jpg"),
    Document(
        product("p3", "Philips hand blender 250 W", ("Kitchen & Dining", "Kitchen Appliances", "Blenders"),
                market="us"),
        {"title_vector": unit(2)}, None),
    Document(
        product("p4", "Titan analog wrist watch for men", ("Watches", "Wrist Watches"), market="in",
                description="a steel strap watch"),
        {"title_vector": unit(5)}, "img/p4.jpg"),
    Document(
        product("p5", "Cotton bath towel set", ("Home Furnishing", "Bath Linen", "Towels"), market="us"),
        {"title_vector": unit(6)}, "img/p5.jpg"),
]


def ids(hits: list) -> list[str]:
    return [h.id for h in hits]


class StoreContract:
    """Subclass and provide a ``store`` fixture returning a fresh, empty Store."""

    @pytest.fixture
    def loaded(self, store: Store) -> Store:
        store.setup(SCHEMA)
        result = store.upsert(CATALOGUE)
        assert result.written == len(CATALOGUE) and not result.errors
        return store

    def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    def test_schema_absent_then_recorded(self, store: Store) -> None:
        assert store.schema() is None
        store.setup(SCHEMA)
        assert store.schema() == SCHEMA

    def test_setup_refuses_other_dims_and_encoder(self, loaded: Store) -> None:
        other_dims = IndexSchema({"title_vector": VectorField(DIMS * 2, "cosine", {"id": "test-encoder@1"})})
        with pytest.raises(SchemaMismatch, match="dims"):
            loaded.setup(other_dims)
        other_model = IndexSchema({"title_vector": VectorField(DIMS, "cosine", {"id": "another@2"})})
        with pytest.raises(SchemaMismatch, match="another@2"):
            loaded.setup(other_model)

    def test_setup_is_idempotent(self, loaded: Store) -> None:
        assert loaded.setup(SCHEMA) == SCHEMA
        assert loaded.count() == len(CATALOGUE)

    def test_round_trip(self, loaded: Store) -> None:
        got = loaded.get(["p1", "p3", "missing"])
        assert set(got) == {"p1", "p3"}
        assert got["p1"].product == CATALOGUE[0].product
        assert got["p1"].image == "img/p1.jpg"
        assert got["p3"].image is None
        assert loaded.count() == len(CATALOGUE)

    def test_reupsert_updates_never_duplicates(self, loaded: Store) -> None:
        renamed = Document(product("p1", "Hawkins aluminium pressure cooker", ("Kitchen & Dining", "Cookware")),
                           {"title_vector": unit(3)}, None)
        assert loaded.upsert([renamed]).written == 1
        assert loaded.count() == len(CATALOGUE)
        assert loaded.get(["p1"])["p1"].product.title.startswith("Hawkins")
        lex = loaded.search(LexicalQuery("prestige"), [], 10)["bm25"]
        assert "p1" not in ids(lex)  # the old text is gone from the lexical index
        knn = loaded.search(None, [VectorQuery("title_vector", unit(3))], 1)["title_vector"]
        assert ids(knn) == ["p1"]  # and the old vector from the vector index

    def test_lexical_ranks_matching_products(self, loaded: Store) -> None:
        hits = loaded.search(LexicalQuery("pressure cooker"), [], 10)["bm25"]
        assert ids(hits)[0] == "p1"
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))

    def test_lexical_searches_only_weighted_fields(self, loaded: Store) -> None:
        # "Appliances" appears only in p3's category path: with the category field excluded
        # (as evaluation must do) it cannot be found.
        with_cat = loaded.search(LexicalQuery("appliances", {"title": 1, "categories": 1}), [], 10)["bm25"]
        assert ids(with_cat) == ["p3"]
        without = loaded.search(LexicalQuery("appliances", {"title": 1, "attributes": 1, "description": 1}), [], 10)
        assert ids(without["bm25"]) == []

    def test_lexical_treats_operators_as_words(self, loaded: Store) -> None:
        for text in ['cooker AND "', "NEAR(x y)", "title: *", "-", ""]:
            loaded.search(LexicalQuery(text), [], 5)  # must not raise

    def test_knn_orders_by_cosine(self, loaded: Store) -> None:
        hits = loaded.search(None, [VectorQuery("title_vector", unit(0))], 3)["title_vector"]
        assert ids(hits)[:2] == ["p1", "p2"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert hits[0].score > hits[1].score > hits[2].score

    def test_one_call_returns_every_source(self, loaded: Store) -> None:
        runs = loaded.search(
            LexicalQuery("cooker"),
            [VectorQuery("title_vector", unit(0), "text"), VectorQuery("title_vector", unit(5), "other")],
            2,
        )
        assert set(runs) == {"bm25", "text", "other"}
        assert ids(runs["other"])[0] == "p4"
        assert all(len(hits) <= 2 for hits in runs.values())

    def test_category_subtree_filter(self, loaded: Store) -> None:
        cookware = [Filter("category", "subtree", ("Kitchen & Dining", "Cookware"))]
        knn = loaded.search(None, [VectorQuery("title_vector", unit(2))], 10, cookware)["title_vector"]
        assert set(ids(knn)) == {"p1", "p2"}
        lex = loaded.search(LexicalQuery("steel"), [], 10, cookware)["bm25"]
        assert ids(lex) == ["p1"]  # p4 (a watch) also says steel
        root = [Filter("category", "subtree", "Kitchen & Dining")]
        assert set(ids(loaded.search(None, [VectorQuery("title_vector", unit(2))], 10, root)["title_vector"])) == {
            "p1", "p2", "p3"}
        # a prefix of a level name is not an ancestor
        assert loaded.search(None, [VectorQuery("title_vector", unit(2))], 10,
                             [Filter("category", "subtree", ("Kitchen",))])["title_vector"] == []

    def test_market_image_and_id_filters(self, loaded: Store) -> None:
        q = [VectorQuery("title_vector", unit(0))]
        us = loaded.search(None, q, 10, [Filter("market", "eq", "US")])["title_vector"]
        assert set(ids(us)) == {"p3", "p5"}
        assert set(ids(loaded.search(None, q, 10, [Filter("market", "in", ["US", "xx"])])["title_vector"])) == {
            "p3", "p5"}
        with_image = loaded.search(None, q, 10, [Filter("has_image", "eq", True)])["title_vector"]
        assert set(ids(with_image)) == {"p1", "p2", "p4", "p5"}
        not_in = loaded.search(None, q, 10, [Filter("id", "not_in", ["p1", "p2"])])["title_vector"]
        assert set(ids(not_in)) == {"p3", "p4", "p5"}

    def test_bad_vector_is_reported_and_others_kept(self, store: Store) -> None:
        store.setup(SCHEMA)
        bad = Document(product("bad", "wrong dims", ("X",)), {"title_vector": np.ones(DIMS + 1, np.float32)})
        zero = Document(product("zero", "zero vector", ("X",)), {"title_vector": np.zeros(DIMS, np.float32)})
        result = store.upsert([CATALOGUE[0], bad, zero, CATALOGUE[1]])
        assert result.written == 2
        assert set(result.errors) == {"bad", "zero"}
        assert store.count() == 2

    def test_checkpoint_is_recorded_with_the_batch(self, store: Store) -> None:
        store.setup(SCHEMA)
        assert store.checkpoint("src") is None
        store.upsert(CATALOGUE[:2], checkpoint=("src", 2))
        assert store.checkpoint("src") == 2
        store.upsert(CATALOGUE[2:], checkpoint=("src", 5))
        assert store.checkpoint("src") == 5
        store.clear_checkpoint("src")
        assert store.checkpoint("src") is None

    def test_stats(self, loaded: Store) -> None:
        stats = loaded.stats()
        assert stats["products"] == len(CATALOGUE)
        assert "title_vector" in stats["vector_fields"]
        assert stats["vector_fields"]["title_vector"]["encoder"]["id"] == "test-encoder@1"

    # -------------------------------------------------------- optional capabilities

    def test_declares_every_capability(self, store: Store) -> None:
        from ctir_es.store.base import CAPABILITIES

        missing = [cap.__name__ for cap in CAPABILITIES if not isinstance(store, cap)]
        assert missing == []

    def test_vectors_by_id(self, loaded: Store) -> None:
        got = loaded.vectors(["p1", "p3", "nope"], "title_vector")  # type: ignore[attr-defined]
        assert set(got) == {"p1", "p3"}
        assert got["p1"].dtype == np.float32 and got["p1"].shape == (DIMS,)
        assert np.allclose(got["p1"], unit(0), atol=1e-6)
        assert loaded.vectors(["p1"], "no_such_field") == {}  # type: ignore[attr-defined]
        assert loaded.vectors([], "title_vector") == {}  # type: ignore[attr-defined]

    def test_category_counts_count_each_product_once_per_node(self, loaded: Store) -> None:
        counts = loaded.category_counts()  # type: ignore[attr-defined]
        assert counts[("Kitchen & Dining",)] == 3
        assert counts[("Kitchen & Dining", "Cookware")] == 2
        assert counts[("Kitchen & Dining", "Cookware", "Pressure Cookers")] == 1
        assert counts[("Watches", "Wrist Watches")] == 1
        assert len(counts) == 11 and sum(n for p, n in counts.items() if len(p) == 1) == 5

    def test_delete_by_id(self, loaded: Store) -> None:
        assert loaded.delete(["p1", "nope"]) == 1  # type: ignore[attr-defined]
        assert loaded.count() == len(CATALOGUE) - 1
        assert loaded.get(["p1"]) == {}
        runs = loaded.search(
            LexicalQuery("pressure cooker steel"), [VectorQuery("title_vector", unit(0), "v")], 5
        )
        assert "p1" not in ids(runs["bm25"]) and "p1" not in ids(runs["v"])
        assert loaded.delete([]) == 0  # type: ignore[attr-defined]

    def test_image_dirs_are_local_absolute_directories(self, store: Store) -> None:
        store.setup(SCHEMA)
        docs = [
            Document(product("a", "pan", ("K",)), {"title_vector": unit(1)}, "/data/shop/img/a.jpg"),
            Document(product("b", "pot", ("K",)), {"title_vector": unit(2)}, "/data/shop/img/b.jpg"),
            Document(product("c", "cup", ("K",)), {"title_vector": unit(3)}, "/srv/more/c.png"),
            Document(product("d", "jug", ("K",)), {"title_vector": unit(4)}, "https://cdn/x/d.jpg"),
            Document(product("e", "mug", ("K",)), {"title_vector": unit(5)}, "relative/e.jpg"),
        ]
        store.upsert(docs)
        assert store.image_dirs() == ["/data/shop/img", "/srv/more"]  # type: ignore[attr-defined]

    def test_ids_lists_every_product_once(self, loaded: Store) -> None:
        assert loaded.ids() == sorted(d.product.id for d in CATALOGUE)  # type: ignore[attr-defined]
        loaded.delete(["p2"])  # type: ignore[attr-defined]
        assert "p2" not in loaded.ids()  # type: ignore[attr-defined]

    def test_metadata_round_trip(self, store: Store) -> None:
        from ctir_es.errors import StoreError

        store.setup(SCHEMA)
        assert store.get_metadata("serving") is None  # type: ignore[attr-defined]
        weights = {"fusion": "linear", "weights": {"bm25": 0.7, "text": 0.3}, "note": "é"}
        store.put_metadata("serving", weights)  # type: ignore[attr-defined]
        assert store.get_metadata("serving") == weights  # type: ignore[attr-defined]
        store.put_metadata("serving", {"fusion": "rrf"})  # type: ignore[attr-defined]
        assert store.get_metadata("serving") == {"fusion": "rrf"}  # type: ignore[attr-defined]
        store.upsert(CATALOGUE)  # data writes leave metadata alone
        assert store.get_metadata("serving") == {"fusion": "rrf"}  # type: ignore[attr-defined]
        for bad_key in ("", "has space", "x" * 200):
            with pytest.raises(StoreError, match="bad metadata key"):
                store.put_metadata(bad_key, {})  # type: ignore[attr-defined]
        with pytest.raises(StoreError, match="not JSON"):
            store.put_metadata("bad", {"v": float("nan")})  # type: ignore[attr-defined]

    # ------------------------------------------------- VectorWriter: a field added in place

    NEW_FIELD = "clip_ita"
    NEW_SPEC = VectorField(4, "cosine", {"id": "clip-ita@1", "dims": 4})

    @staticmethod
    def axis(i: int, dims: int = 4) -> np.ndarray:
        v = np.full(dims, 0.05, dtype=np.float32)
        v[i] = 1.0
        return v / np.linalg.norm(v)

    def test_write_vectors_adds_a_field_in_place(self, loaded: Store) -> None:
        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        written = loaded.write_vectors(  # type: ignore[attr-defined]
            field, spec, {"p1": axis(0), "p3": axis(1), "ghost": axis(2), "p5": axis(3)})
        assert written == 3  # "ghost" is not in the index: skipped
        assert loaded.get(["ghost"]) == {} and loaded.count() == len(CATALOGUE)  # never created
        assert loaded.schema() == SCHEMA  # not listed before set_vector_field
        got = loaded.vectors(["p1", "p2", "p3", "p5", "ghost"], field)  # type: ignore[attr-defined]
        assert set(got) == {"p1", "p3", "p5"}
        assert got["p3"].dtype == np.float32 and np.allclose(got["p3"], axis(1), atol=1e-6)
        assert loaded.get(["p1"])["p1"].vector_fields == (field, "title_vector")
        assert loaded.get(["p2"])["p2"].vector_fields == ("title_vector",)
        # the products and their other vectors are untouched
        assert loaded.get(["p1"])["p1"].product == CATALOGUE[0].product
        assert ids(loaded.search(None, [VectorQuery("title_vector", unit(5))], 1)["title_vector"]) == ["p4"]

        schema = loaded.set_vector_field(field, spec)  # type: ignore[attr-defined]
        assert schema == IndexSchema({**SCHEMA.vectors, field: spec}) == loaded.schema()
        hits = loaded.search(None, [VectorQuery(field, axis(1))], 10)[field]
        assert ids(hits)[0] == "p3" and set(ids(hits)) == {"p1", "p3", "p5"}
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        runs = loaded.search(LexicalQuery("cooker"), [VectorQuery(field, axis(0), "ita"),
                                                      VectorQuery("title_vector", unit(6), "text")], 2)
        assert ids(runs["ita"])[0] == "p1" and ids(runs["text"])[0] == "p5" and ids(runs["bm25"])[0] == "p1"
        filtered = loaded.search(None, [VectorQuery(field, axis(1))], 10, [Filter("market", "eq", "in")])[field]
        assert ids(filtered) == ["p1"]
        stats = loaded.stats()["vector_fields"]
        assert stats[field]["count"] == 3 and stats[field]["encoder"]["id"] == "clip-ita@1"

    def test_write_vectors_replaces_and_records_the_checkpoint(self, loaded: Store) -> None:
        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        assert loaded.write_vectors(field, spec, {"p1": axis(0), "p2": axis(1)},  # type: ignore[attr-defined]
                                    checkpoint=("learn", 2)) == 2
        assert loaded.checkpoint("learn") == 2
        loaded.set_vector_field(field, spec)  # type: ignore[attr-defined]
        # a resumed run writes the next chunk; a retrained one replaces vectors already there
        assert loaded.write_vectors(field, spec, {"p1": axis(3), "p4": axis(2)},  # type: ignore[attr-defined]
                                    checkpoint=("learn", 4)) == 2
        assert loaded.checkpoint("learn") == 4
        got = loaded.vectors(["p1", "p2", "p4"], field)  # type: ignore[attr-defined]
        assert np.allclose(got["p1"], axis(3), atol=1e-6) and np.allclose(got["p4"], axis(2), atol=1e-6)
        hits = loaded.search(None, [VectorQuery(field, axis(3))], 3)[field]  # seen at once
        assert ids(hits)[0] == "p1" and set(ids(hits)) == {"p1", "p2", "p4"}
        assert loaded.stats()["vector_fields"][field]["count"] == 3
        # nothing to write still records the checkpoint
        assert loaded.write_vectors(field, spec, {}, checkpoint=("learn", 9)) == 0  # type: ignore[attr-defined]
        assert loaded.checkpoint("learn") == 9
        assert loaded.write_vectors(field, spec, {"ghost": axis(0)}, checkpoint=("learn", 10)) == 0  # type: ignore[attr-defined]
        assert loaded.checkpoint("learn") == 10
        loaded.clear_checkpoint("learn")
        assert loaded.checkpoint("learn") is None

    def test_set_vector_field_replaces_the_manifest_not_the_dims(self, loaded: Store) -> None:
        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        loaded.write_vectors(field, spec, {"p1": axis(0), "p2": axis(1)})  # type: ignore[attr-defined]
        loaded.set_vector_field(field, spec)  # type: ignore[attr-defined]
        retrained = VectorField(4, "cosine", {"id": "clip-ita@2", "dims": 4, "epochs": 3})
        assert loaded.set_vector_field(field, retrained).vectors[field] == retrained  # type: ignore[attr-defined]
        assert loaded.schema().vectors[field] == retrained  # type: ignore[union-attr]
        assert loaded.schema().vectors["title_vector"] == SCHEMA.vectors["title_vector"]  # type: ignore[union-attr]
        assert ids(loaded.search(None, [VectorQuery(field, axis(1))], 1)[field]) == ["p2"]
        with pytest.raises(SchemaMismatch):
            loaded.set_vector_field(field, VectorField(8, "cosine", {"id": "clip-ita@3", "dims": 8}))  # type: ignore[attr-defined]
        with pytest.raises(SchemaMismatch):  # an ingested field too
            loaded.set_vector_field("title_vector", VectorField(DIMS * 2, "cosine", {"id": "x@1"}))  # type: ignore[attr-defined]
        assert loaded.schema().vectors[field] == retrained  # type: ignore[union-attr]
        assert loaded.schema().vectors["title_vector"] == SCHEMA.vectors["title_vector"]  # type: ignore[union-attr]
        # the manifest of an ingested field may be replaced too (same dims)
        other = VectorField(DIMS, "cosine", {"id": "test-encoder@2", "dims": DIMS})
        assert loaded.set_vector_field("title_vector", other).vectors["title_vector"] == other  # type: ignore[attr-defined]
        assert ids(loaded.search(None, [VectorQuery("title_vector", unit(5))], 1)["title_vector"]) == ["p4"]

    def test_write_vectors_refuses_bad_vectors_and_writes_nothing(self, loaded: Store) -> None:
        from ctir_es.errors import StoreError

        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        with pytest.raises(StoreError, match="'p2'"):
            loaded.write_vectors(field, spec, {"p1": axis(0), "p2": np.ones(5, np.float32)},  # type: ignore[attr-defined]
                                 checkpoint=("learn", 2))
        nan = axis(1).copy()
        nan[2] = np.nan
        with pytest.raises(StoreError, match="'p3'"):
            loaded.write_vectors(field, spec, {"p1": axis(0), "p3": nan}, checkpoint=("learn", 2))  # type: ignore[attr-defined]
        with pytest.raises(StoreError, match="'p4'"):
            loaded.write_vectors(field, spec, {"p1": axis(0), "p4": np.zeros(4, np.float32)})  # type: ignore[attr-defined]
        assert loaded.vectors(["p1", "p2", "p3", "p4"], field) == {}  # type: ignore[attr-defined]
        assert loaded.checkpoint("learn") is None
        assert loaded.get(["p1"])["p1"].vector_fields == ("title_vector",)
        # vectors of other dims than the field's (schema or stored vectors)
        with pytest.raises(SchemaMismatch):
            loaded.write_vectors("title_vector", VectorField(4), {"p1": axis(0)})  # type: ignore[attr-defined]
        assert np.allclose(loaded.vectors(["p1"], "title_vector")["p1"], unit(0), atol=1e-6)  # type: ignore[attr-defined]
        loaded.write_vectors(field, spec, {"p1": axis(0)})  # type: ignore[attr-defined]
        wider = VectorField(8, "cosine", {"id": "clip-ita@3"})
        with pytest.raises(SchemaMismatch):
            loaded.write_vectors(field, wider, {"p2": unit(1)}, checkpoint=("learn", 1))  # type: ignore[attr-defined]
        assert set(loaded.vectors(["p1", "p2"], field)) == {"p1"}  # type: ignore[attr-defined]
        assert loaded.checkpoint("learn") is None

    def test_upsert_after_write_vectors(self, loaded: Store) -> None:
        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        loaded.write_vectors(field, spec, {"p1": axis(0), "p2": axis(1)})  # type: ignore[attr-defined]
        loaded.set_vector_field(field, spec)  # type: ignore[attr-defined]
        # an upsert replaces the product's vectors with the Document's (existing behaviour)
        renamed = Document(product("p1", "Hawkins aluminium pressure cooker", ("Kitchen & Dining", "Cookware")),
                           {"title_vector": unit(3)}, None)
        assert loaded.upsert([renamed]).written == 1
        assert loaded.count() == len(CATALOGUE)
        assert loaded.get(["p1"])["p1"].product.title.startswith("Hawkins")
        assert ids(loaded.search(None, [VectorQuery(field, axis(0))], 5)[field]) == ["p2"]
        assert set(loaded.vectors(["p1", "p2"], field)) == {"p2"}  # type: ignore[attr-defined]
        both = Document(CATALOGUE[2].product, {"title_vector": unit(2), field: axis(2)}, None)
        assert loaded.upsert([both]).written == 1 and not loaded.upsert([both]).errors
        hits = loaded.search(None, [VectorQuery(field, axis(2))], 5)[field]
        assert ids(hits)[0] == "p3" and set(ids(hits)) == {"p2", "p3"}
        assert loaded.write_vectors(field, spec, {"p1": axis(3)}) == 1  # type: ignore[attr-defined]
        assert loaded.get(["p1"])["p1"].vector_fields == (field, "title_vector")
        assert ids(loaded.search(None, [VectorQuery("title_vector", unit(3))], 1)["title_vector"]) == ["p1"]

    # ------------------------------------------------- typed values and value filters (issue 23)

    @pytest.fixture
    def valued(self, store: Store, request: pytest.FixtureRequest) -> Store:
        """The VALUED catalogue in a store whose schema types its values."""
        if type(store).__name__ in VALUES_PENDING:
            request.applymarker(pytest.mark.xfail(strict=True, reason=VALUES_PENDING[type(store).__name__]))
        store.setup(VALUES_SCHEMA)
        result = store.upsert(VALUED)
        assert result.written == len(VALUED) and not result.errors
        return store

    def test_values_round_trip_typed(self, valued: Store) -> None:
        assert valued.schema() == VALUES_SCHEMA
        got = valued.get(["v1", "v3", "v6"])
        assert {k: got[k].product for k in got} == {d.product.id: d.product for d in VALUED if d.product.id in got}
        v1 = dict(got["v1"].product.values)
        assert v1 == {"brand": "Sony", "price": 899.0, "in_stock": True, "rating": 4.5}
        assert [type(v1[n]) for n in ("brand", "price", "in_stock", "rating")] == [str, float, bool, float]
        assert got["v3"].product.values["brand"] == "BOSE"  # display keeps the catalogue's case
        assert dict(got["v6"].product.values) == {}

    def test_keyword_filters_are_case_insensitive_on_both_sources(self, valued: Store) -> None:
        for spelling in ("sony", "SONY", "Sony"):
            f = typed(Filter("brand", "in", (spelling, "nobody")))
            assert set(ids(knn(valued, *f))) == {"v1", "v2", "v7"}
            assert set(ids(bm25(valued, *f))) == {"v1", "v2", "v7"}
        assert set(ids(knn(valued, *typed(Filter("brand", "eq", "bose"))))) == {"v3", "v4"}

    def test_each_value_operator_on_bm25_and_knn(self, valued: Store) -> None:
        cases = [
            (Filter("price", "range", (500, 1000)), {"v1", "v3"}),  # ends included: 500.0 and 899.0
            (Filter("price", "range", (None, 500)), {"v3", "v5"}),
            (Filter("price", "range", (1000.5, None)), {"v2", "v4"}),
            (Filter("price", "in", ("899", "1,999")), {"v1", "v2"}),
            (Filter("price", "eq", 120), {"v5"}),
            (Filter("in_stock", "eq", True), {"v1", "v3", "v5"}),
            (Filter("in_stock", "eq", "no"), {"v2", "v4"}),
            (Filter("brand", "not_in", ("Sony",)), {"v3", "v4", "v5", "v6"}),  # without a brand: kept
            (Filter("brand", "exists", True), {"v1", "v2", "v3", "v4", "v7"}),
            (Filter("brand", "exists", False), {"v5", "v6"}),
            (Filter("rating", "exists", False), {"v3", "v4", "v5", "v6", "v7"}),
        ]
        for f, expected in cases:
            checked = typed(f)
            assert set(ids(knn(valued, *checked))) == expected, f
            assert set(ids(bm25(valued, *checked))) == expected, f

    def test_value_filters_combine_with_each_other_and_the_category_subtree(self, valued: Store) -> None:
        audio = Filter("category", "subtree", ("Electronics", "Audio"))
        both = typed(audio, Filter("brand", "in", ("sony", "bose")), Filter("price", "range", (None, 1000)))
        assert set(ids(knn(valued, *both))) == {"v1", "v3"}  # v2 is over 1000, v7 is not audio
        assert set(ids(bm25(valued, *both))) == {"v1", "v3"}
        negated = typed(audio, Filter("brand", "not_in", ("Sony",)), Filter("in_stock", "eq", False))
        assert set(ids(knn(valued, *negated))) == {"v4"}
        assert set(ids(bm25(valued, *typed(audio, Filter("brand", "exists", False))))) == {"v5", "v6"}
        cameras = Filter("category", "subtree", ("Electronics", "Cameras"))
        assert knn(valued, *typed(cameras, Filter("brand", "exists", False))) == []

    def test_updates_replace_values_and_deletes_remove_them(self, valued: Store) -> None:
        renamed = Document(Product(id="v1", title="Sony speaker", categories=(("Electronics", "Audio"),),
                                   values={"brand": "Bose", "price": 50.0}), {"title_vector": unit(1)}, None)
        assert valued.upsert([renamed]).written == 1
        assert dict(valued.get(["v1"])["v1"].product.values) == {"brand": "Bose", "price": 50.0}
        assert "v1" not in ids(knn(valued, *typed(Filter("brand", "in", ("Sony",)))))
        assert "v1" not in ids(knn(valued, *typed(Filter("in_stock", "exists", True))))
        assert "v1" in ids(knn(valued, *typed(Filter("brand", "in", ("bose",)))))
        assert "v1" in ids(bm25(valued, *typed(Filter("price", "range", (0, 60)))))
        # vectors written in place leave the values alone
        valued.write_vectors("title_vector", VectorField(DIMS, "cosine", {"id": "test-encoder@1"}),  # type: ignore[attr-defined]
                             {"v1": unit(4)})
        assert dict(valued.get(["v1"])["v1"].product.values) == {"brand": "Bose", "price": 50.0}
        assert ids(knn(valued, *typed(Filter("price", "range", (0, 60))))) == ["v1"]
        assert valued.delete(["v1", "v3"]) == 2  # type: ignore[attr-defined]
        assert set(ids(knn(valued, *typed(Filter("brand", "in", ("bose",)))))) == {"v4"}
        assert set(ids(bm25(valued, *typed(Filter("brand", "exists", True))))) == {"v2", "v4", "v7"}

    def test_a_value_filter_is_a_prefilter_k_results_when_k_match(self, store: Store,
                                                                  request: pytest.FixtureRequest) -> None:
        """5 of 300 products are brand Rare, and none of them is near the query: kNN still
        returns the 5, ranked exactly, as BM25 does."""
        if type(store).__name__ in VALUES_PENDING:
            request.applymarker(pytest.mark.xfail(strict=True, reason=VALUES_PENDING[type(store).__name__]))
        store.setup(VALUES_SCHEMA)
        rng = np.random.default_rng(7)
        vecs = rng.standard_normal((300, DIMS)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        query = vecs[0]
        far = np.argsort(vecs @ query)[:5].tolist()  # the 5 least similar products
        docs = [Document(Product(id=f"q{i}", title=f"plain widget {i}", categories=(("Widgets",),),
                                 values={"brand": "Rare" if i in far else f"Common{i % 7}", "price": float(i)}),
                         {"title_vector": vecs[i]}) for i in range(300)]
        assert store.upsert(docs).written == 300
        rare = typed(Filter("brand", "in", ("rare",)))
        hits = store.search(LexicalQuery("widget"), [VectorQuery("title_vector", query)], 5, rare)
        expected = [f"q{i}" for i in sorted(far, key=lambda i: -float(vecs[i] @ query))]
        assert ids(hits["title_vector"]) == expected
        assert set(ids(hits["bm25"])) == set(expected)
        top3 = store.search(None, [VectorQuery("title_vector", query)], 3, rare)["title_vector"]
        assert ids(top3) == expected[:3]
        # a broad filter (half the catalogue): still exactly the best k of the matching ones
        cheap = typed(Filter("price", "range", (None, 149)))
        got = store.search(None, [VectorQuery("title_vector", query)], 10, cheap)["title_vector"]
        best = sorted(range(150), key=lambda i: -float(vecs[i] @ query))[:10]
        assert ids(got) == [f"q{i}" for i in best]


# Stores whose value support lands later: their value cases are expected to fail (strict: an
# unexpected pass fails too, so the marker goes once the support is there).
VALUES_PENDING: dict[str, str] = {}

VALUES_SCHEMA = IndexSchema(SCHEMA.vectors, {
    "brand": ValueSpec("keyword"),
    "price": ValueSpec("number", "INR"),
    "in_stock": ValueSpec("boolean"),
    "rating": ValueSpec("number"),
})


def valued_product(pid: str, title: str, path: tuple[str, ...], **values: object) -> Product:
    return Product(id=pid, title=f"{title} speaker", categories=(path,), values=values)  # type: ignore[arg-type]


AUDIO = ("Electronics", "Audio")
VALUED = [
    Document(valued_product("v1", "Sony", AUDIO, brand="Sony", price=899.0, in_stock=True, rating=4.5),
             {"title_vector": unit(0)}),
    Document(valued_product("v2", "Sony", AUDIO, brand="SONY", price=1999.0, in_stock=False, rating=3.0),
             {"title_vector": unit(0, 1)}),
    Document(valued_product("v3", "Bose", AUDIO, brand="BOSE", price=500.0, in_stock=True),
             {"title_vector": unit(1)}),
    Document(valued_product("v4", "Bose", AUDIO, brand="Bose", price=2500.0, in_stock=False),
             {"title_vector": unit(2)}),
    Document(valued_product("v5", "No-name", AUDIO, price=120.0, in_stock=True), {"title_vector": unit(3)}),
    Document(valued_product("v6", "Bare", AUDIO), {"title_vector": unit(4)}),
    Document(valued_product("v7", "Sony", ("Electronics", "Cameras"), brand="sony"), {"title_vector": unit(5)}),
]


def typed(*filters: Filter) -> list[Filter]:
    """Filters as ``Search`` hands them to a store: checked and typed against the schema."""
    return check_filters(list(filters), VALUES_SCHEMA)


def knn(store: Store, *filters: Filter) -> list:
    return store.search(None, [VectorQuery("title_vector", unit(0))], 20, filters)["title_vector"]


def bm25(store: Store, *filters: Filter) -> list:
    return store.search(LexicalQuery("speaker"), [], 20, filters)["bm25"]
