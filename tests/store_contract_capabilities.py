"""The optional capabilities of ``store.base`` (``CAPABILITIES``), one mixin each.

Each case first calls ``require(self, store, Capability)``: it runs on a store that declares
the capability, and skips with a reason naming the store and the capability on one whose
contract class lists it in ``lacks`` (a store that does neither fails).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from store_contract_data import (
    CATALOGUE,
    DIMS,
    SCHEMA,
    VALUED,
    VALUES_SCHEMA,
    ContractBase,
    ids,
    product,
    require,
    unit,
)

from ctir_es.errors import SchemaMismatch
from ctir_es.filters import Filter
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.store.base import (
    CategoryCounter,
    Deleter,
    IdLister,
    ImageRoots,
    IndexMetadata,
    Store,
    SummaryReader,
    VectorReader,
    VectorWriter,
)


class VectorReaderContract(ContractBase):
    """Stored vectors by product id."""

    capability: ClassVar[type] = VectorReader

    def test_vectors_by_id(self, loaded: Store) -> None:
        require(self, loaded, VectorReader)
        got = loaded.vectors(["p1", "p3", "nope"], "title_vector")  # type: ignore[attr-defined]
        assert set(got) == {"p1", "p3"}
        assert got["p1"].dtype == np.float32 and got["p1"].shape == (DIMS,)
        assert np.allclose(got["p1"], unit(0), atol=1e-6)
        assert loaded.vectors(["p1"], "no_such_field") == {}  # type: ignore[attr-defined]
        assert loaded.vectors([], "title_vector") == {}  # type: ignore[attr-defined]


class CategoryCounterContract(ContractBase):
    """Products per category node, every level."""

    capability: ClassVar[type] = CategoryCounter

    def test_category_counts_count_each_product_once_per_node(self, loaded: Store) -> None:
        require(self, loaded, CategoryCounter)
        counts = loaded.category_counts()  # type: ignore[attr-defined]
        assert counts[("Kitchen & Dining",)] == 3
        assert counts[("Kitchen & Dining", "Cookware")] == 2
        assert counts[("Kitchen & Dining", "Cookware", "Pressure Cookers")] == 1
        assert counts[("Watches", "Wrist Watches")] == 1
        assert len(counts) == 11 and sum(n for p, n in counts.items() if len(p) == 1) == 5


class DeleterContract(ContractBase):
    """Delete by id: gone from get, count and every source."""

    capability: ClassVar[type] = Deleter

    def test_delete_by_id(self, loaded: Store) -> None:
        require(self, loaded, Deleter)
        assert loaded.delete(["p1", "nope"]) == 1  # type: ignore[attr-defined]
        assert loaded.count() == len(CATALOGUE) - 1
        assert loaded.get(["p1"]) == {}
        runs = loaded.search(
            LexicalQuery("pressure cooker steel"), [VectorQuery("title_vector", unit(0), "v")], 5
        )
        assert "p1" not in ids(runs["bm25"]) and "p1" not in ids(runs["v"])
        assert loaded.delete([]) == 0  # type: ignore[attr-defined]


class ImageRootsContract(ContractBase):
    """The directories of local absolute image paths."""

    capability: ClassVar[type] = ImageRoots

    def test_image_dirs_are_local_absolute_directories(self, store: Store) -> None:
        require(self, store, ImageRoots)
        store.setup(SCHEMA)
        docs = [
            Document(
                product("a", "pan", ("K",)), {"title_vector": unit(1)}, "/data/shop/img/a.jpg"
            ),
            Document(
                product("b", "pot", ("K",)), {"title_vector": unit(2)}, "/data/shop/img/b.jpg"
            ),
            Document(product("c", "cup", ("K",)), {"title_vector": unit(3)}, "/srv/more/c.png"),
            Document(product("d", "jug", ("K",)), {"title_vector": unit(4)}, "https://cdn/x/d.jpg"),
            Document(product("e", "mug", ("K",)), {"title_vector": unit(5)}, "relative/e.jpg"),
        ]
        store.upsert(docs)
        assert store.image_dirs() == ["/data/shop/img", "/srv/more"]  # type: ignore[attr-defined]


class IdListerContract(ContractBase):
    """Every product id, sorted."""

    capability: ClassVar[type] = IdLister

    def test_ids_lists_every_product_once(self, loaded: Store) -> None:
        require(self, loaded, IdLister)
        require(self, loaded, Deleter)
        assert loaded.ids() == sorted(d.product.id for d in CATALOGUE)  # type: ignore[attr-defined]
        loaded.delete(["p2"])  # type: ignore[attr-defined]
        assert "p2" not in loaded.ids()  # type: ignore[attr-defined]


class IndexMetadataContract(ContractBase):
    """Small JSON documents kept with the index."""

    capability: ClassVar[type] = IndexMetadata

    def test_metadata_round_trip(self, store: Store) -> None:
        require(self, store, IndexMetadata)
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


class VectorWriterContract(ContractBase):
    """A field added in place (write_vectors, set_vector_field)."""

    capability: ClassVar[type] = VectorWriter

    NEW_FIELD = "clip_ita"
    NEW_SPEC = VectorField(4, "cosine", {"id": "clip-ita@1", "dims": 4})

    @staticmethod
    def axis(i: int, dims: int = 4) -> np.ndarray:
        v = np.full(dims, 0.05, dtype=np.float32)
        v[i] = 1.0
        return v / np.linalg.norm(v)

    def test_write_vectors_adds_a_field_in_place(self, loaded: Store) -> None:
        require(self, loaded, VectorWriter)
        require(self, loaded, VectorReader)
        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        written = loaded.write_vectors(  # type: ignore[attr-defined]
            field, spec, {"p1": axis(0), "p3": axis(1), "ghost": axis(2), "p5": axis(3)}
        )
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
        assert ids(
            loaded.search(None, [VectorQuery("title_vector", unit(5))], 1)["title_vector"]
        ) == ["p4"]

        schema = loaded.set_vector_field(field, spec)  # type: ignore[attr-defined]
        assert schema == IndexSchema({**SCHEMA.vectors, field: spec}) == loaded.schema()
        hits = loaded.search(None, [VectorQuery(field, axis(1))], 10)[field]
        assert ids(hits)[0] == "p3" and set(ids(hits)) == {"p1", "p3", "p5"}
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        runs = loaded.search(
            LexicalQuery("cooker"),
            [VectorQuery(field, axis(0), "ita"), VectorQuery("title_vector", unit(6), "text")],
            2,
        )
        assert (
            ids(runs["ita"])[0] == "p1"
            and ids(runs["text"])[0] == "p5"
            and ids(runs["bm25"])[0] == "p1"
        )
        filtered = loaded.search(
            None, [VectorQuery(field, axis(1))], 10, [Filter("market", "eq", "in")]
        )[field]
        assert ids(filtered) == ["p1"]
        stats = loaded.stats()["vector_fields"]
        assert stats[field]["count"] == 3 and stats[field]["encoder"]["id"] == "clip-ita@1"

    def test_write_vectors_replaces_and_records_the_checkpoint(self, loaded: Store) -> None:
        require(self, loaded, VectorWriter)
        require(self, loaded, VectorReader)
        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        assert (
            loaded.write_vectors(
                field,
                spec,
                {"p1": axis(0), "p2": axis(1)},  # type: ignore[attr-defined]
                checkpoint=("learn", 2),
            )
            == 2
        )
        assert loaded.checkpoint("learn") == 2
        loaded.set_vector_field(field, spec)  # type: ignore[attr-defined]
        # a resumed run writes the next chunk; a retrained one replaces vectors already there
        assert (
            loaded.write_vectors(
                field,
                spec,
                {"p1": axis(3), "p4": axis(2)},  # type: ignore[attr-defined]
                checkpoint=("learn", 4),
            )
            == 2
        )
        assert loaded.checkpoint("learn") == 4
        got = loaded.vectors(["p1", "p2", "p4"], field)  # type: ignore[attr-defined]
        assert np.allclose(got["p1"], axis(3), atol=1e-6) and np.allclose(
            got["p4"], axis(2), atol=1e-6
        )
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
        require(self, loaded, VectorWriter)
        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        loaded.write_vectors(field, spec, {"p1": axis(0), "p2": axis(1)})  # type: ignore[attr-defined]
        loaded.set_vector_field(field, spec)  # type: ignore[attr-defined]
        retrained = VectorField(4, "cosine", {"id": "clip-ita@2", "dims": 4, "epochs": 3})
        assert loaded.set_vector_field(field, retrained).vectors[field] == retrained  # type: ignore[attr-defined]
        assert loaded.schema().vectors[field] == retrained  # type: ignore[union-attr]
        assert loaded.schema().vectors["title_vector"] == SCHEMA.vectors["title_vector"]  # type: ignore[union-attr]
        assert ids(loaded.search(None, [VectorQuery(field, axis(1))], 1)[field]) == ["p2"]
        with pytest.raises(SchemaMismatch):
            loaded.set_vector_field(
                field, VectorField(8, "cosine", {"id": "clip-ita@3", "dims": 8})
            )  # type: ignore[attr-defined]
        with pytest.raises(SchemaMismatch):  # an ingested field too
            loaded.set_vector_field("title_vector", VectorField(DIMS * 2, "cosine", {"id": "x@1"}))  # type: ignore[attr-defined]
        assert loaded.schema().vectors[field] == retrained  # type: ignore[union-attr]
        assert loaded.schema().vectors["title_vector"] == SCHEMA.vectors["title_vector"]  # type: ignore[union-attr]
        # the manifest of an ingested field may be replaced too (same dims)
        other = VectorField(DIMS, "cosine", {"id": "test-encoder@2", "dims": DIMS})
        assert loaded.set_vector_field("title_vector", other).vectors["title_vector"] == other  # type: ignore[attr-defined]
        assert ids(
            loaded.search(None, [VectorQuery("title_vector", unit(5))], 1)["title_vector"]
        ) == ["p4"]

    def test_write_vectors_refuses_bad_vectors_and_writes_nothing(self, loaded: Store) -> None:
        require(self, loaded, VectorWriter)
        require(self, loaded, VectorReader)
        from ctir_es.errors import StoreError

        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        with pytest.raises(StoreError, match="'p2'"):
            loaded.write_vectors(
                field,
                spec,
                {"p1": axis(0), "p2": np.ones(5, np.float32)},  # type: ignore[attr-defined]
                checkpoint=("learn", 2),
            )
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
        require(self, loaded, VectorWriter)
        require(self, loaded, VectorReader)
        field, spec, axis = self.NEW_FIELD, self.NEW_SPEC, self.axis
        loaded.write_vectors(field, spec, {"p1": axis(0), "p2": axis(1)})  # type: ignore[attr-defined]
        loaded.set_vector_field(field, spec)  # type: ignore[attr-defined]
        # an upsert replaces the product's vectors with the Document's (existing behaviour)
        renamed = Document(
            product("p1", "Hawkins aluminium pressure cooker", ("Kitchen & Dining", "Cookware")),
            {"title_vector": unit(3)},
            None,
        )
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
        assert ids(
            loaded.search(None, [VectorQuery("title_vector", unit(3))], 1)["title_vector"]
        ) == ["p1"]


class SummaryReaderContract(ContractBase):
    """Values and categories of many products, as ``get`` reads them (a shop request's candidates)."""

    capability: ClassVar[type] = SummaryReader

    def test_summaries_equal_what_get_reads(self, store: Store) -> None:
        require(self, store, SummaryReader)
        store.setup(VALUES_SCHEMA)
        assert store.upsert([*VALUED, *CATALOGUE]).written == len(VALUED) + len(CATALOGUE)
        wanted = [d.product.id for d in [*VALUED, *CATALOGUE]]
        got = store.summaries([*wanted, "ghost"])  # type: ignore[attr-defined]
        full = store.get(wanted)
        assert set(got) == set(wanted)  # unknown ids are absent
        for pid in wanted:
            assert got[pid].id == pid
            assert (got[pid].values, got[pid].categories) == (full[pid].product.values, full[pid].product.categories)
        assert got["v1"].values == {"brand": "Sony", "price": 899.0, "in_stock": True, "rating": 4.5}
        assert store.summaries([]) == {}  # type: ignore[attr-defined]
