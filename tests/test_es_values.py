"""Typed values on a real Elasticsearch (mapping v4, issue 23): the typed fields of the mapping,
values read back exactly, every value filter on BM25 and inside kNN (a pre-filter: k hits
whenever k products match), keywords matched case-insensitively, fields added by setup, type
conflicts refused, and the migration of an index of mapping v3 (built from the v3 create body
kept as data in tests/golden/index_body_v3.json) by reindex + alias swap.

Runs against ``CTIR_ES_TEST_URL`` (``scripts/elasticsearch-local up``), like
test_es_store.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_contract import SCHEMA, unit

from ctir_es.errors import FilterError, SchemaMismatch, Unsupported
from ctir_es.filters import Filter
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorQuery
from ctir_es.store.elasticsearch import ElasticsearchStore
from ctir_es.store.elasticsearch.bodies import documents
from ctir_es.store.elasticsearch.bodies import index as mapping
from ctir_es.values import Value, ValueSpec

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).parent / "golden"
SPECS = {
    "brand": ValueSpec("keyword"),
    "price": ValueSpec("number", "INR"),
    "rating": ValueSpec("number"),
    "fk_advantage": ValueSpec("boolean"),
}
VALUED = IndexSchema(SCHEMA.vectors, SPECS)
AUDIO = ("Electronics", "Audio")
KITCHEN = ("Kitchen & Dining", "Cookware")

# id -> (category, values); every title holds "item", so one BM25 query matches them all.
ROWS: dict[str, tuple[tuple[str, ...], dict[str, Value]]] = {
    "v0": (AUDIO, {"brand": "Sony", "price": 1299.0, "rating": 4.5, "fk_advantage": True}),
    "v1": (AUDIO, {"brand": "SONY", "price": 450.0, "fk_advantage": False}),
    "v2": (AUDIO, {"brand": "Bose", "price": 2000.0, "rating": 3.9, "fk_advantage": True}),
    "v3": (AUDIO, {"brand": "Bose", "price": 2500.0, "rating": 4.1}),
    "v4": (AUDIO, {"brand": "JBL", "price": 499.99, "rating": 4.0, "fk_advantage": False}),
    "v5": (AUDIO, {"brand": "sony", "price": 800.0, "fk_advantage": True}),
    "v6": (KITCHEN, {"price": 100.0, "rating": 2.0}),
    "v7": (KITCHEN, {"brand": "Philips", "rating": 5.0, "fk_advantage": True}),
}


def catalogue() -> list[Document]:
    return [
        Document(
            Product(id=pid, title=f"item {pid} speaker", categories=(path,), values=values),
            {"title_vector": unit(int(pid[1:]))},
        )
        for pid, (path, values) in ROWS.items()
    ]


@pytest.fixture
def valued(make_store: Callable[..., ElasticsearchStore]) -> ElasticsearchStore:
    store = make_store()
    assert store.setup(VALUED) == VALUED
    result = store.upsert(catalogue())
    assert result.written == len(ROWS) and not result.errors
    return store


def live_mapping(store: ElasticsearchStore) -> dict[str, Any]:
    body = store.client.indices.get_mapping(index=store.index).body
    return dict(next(iter(body.values()))["mappings"])


# ---------------------------------------------------------------- mapping


def test_mapping_has_typed_value_fields(valued: ElasticsearchStore) -> None:
    current = live_mapping(valued)
    values = current["properties"]["values"]
    assert values["dynamic"] in (False, "false")
    assert values["properties"] == {
        "brand": {"type": "keyword", "normalizer": "lowercase"},
        "fk_advantage": {"type": "boolean"},
        "price": {"type": "double"},
        "rating": {"type": "double"},
    }
    assert current["_meta"]["ctir_es"]["mapping_version"] == mapping.MAPPING_VERSION == 4
    # the unit lives in the schema in _meta
    assert valued.schema() == VALUED
    assert valued.schema().values["price"].unit == "INR"  # type: ignore[union-attr]
    assert valued.status()["needs_reindex"] is False


def test_setup_adds_new_values_and_keeps_the_rest(valued: ElasticsearchStore) -> None:
    wider = IndexSchema(SCHEMA.vectors, {"colour": ValueSpec("keyword"), "weight": ValueSpec("number", "g")})
    merged = valued.setup(wider)
    assert merged.values == {**SPECS, "colour": ValueSpec("keyword"), "weight": ValueSpec("number", "g")}
    assert valued.schema() == merged
    props = live_mapping(valued)["properties"]["values"]["properties"]
    assert props["colour"] == {"type": "keyword", "normalizer": "lowercase"}
    assert props["weight"] == {"type": "double"} and props["price"] == {"type": "double"}
    assert valued.setup(wider) == merged  # idempotent: nothing more to add
    # the new fields are filterable at once
    valued.upsert([Document(Product(id="c1", title="item c1", values={"colour": "Red", "weight": 250.0}),
                            {"title_vector": unit(3)})])
    hits = valued.search(LexicalQuery("item"), [], 20, [Filter("colour", "in", ("RED",))])["bm25"]
    assert [h.id for h in hits] == ["c1"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ValueSpec("number"), "value 'brand' is a keyword in the index, the catalogue gives a number"),
        (ValueSpec("boolean"), "value 'brand' is a keyword in the index, the catalogue gives a boolean"),
    ],
)
def test_setup_refuses_a_value_of_another_type(
    valued: ElasticsearchStore, spec: ValueSpec, message: str
) -> None:
    before = live_mapping(valued)
    with pytest.raises(SchemaMismatch, match=message) as caught:
        valued.setup(IndexSchema(SCHEMA.vectors, {"brand": spec, "colour": ValueSpec("keyword")}))
    assert "Nothing was written" in str(caught.value)
    assert live_mapping(valued) == before  # colour was not added either


def test_setup_refuses_a_price_in_another_currency(valued: ElasticsearchStore) -> None:
    with pytest.raises(SchemaMismatch, match="'price' is a number in INR in the index, the catalogue gives a number in USD"):
        valued.setup(IndexSchema(SCHEMA.vectors, {"price": ValueSpec("number", "USD")}))
    # a bare number takes the index's unit
    assert valued.setup(IndexSchema(SCHEMA.vectors, {"price": ValueSpec("number")})).values["price"].unit == "INR"


# ---------------------------------------------------------------- documents


def test_values_round_trip_typed_exactly(valued: ElasticsearchStore) -> None:
    stored = valued.get(list(ROWS))
    for pid, (_, values) in ROWS.items():
        got = stored[pid].product.values
        assert got == values
        assert {n: type(v) for n, v in got.items()} == {n: type(v) for n, v in values.items()}
    assert stored["v1"].product.values["brand"] == "SONY"  # the catalogue's case is kept
    # _source holds them as written
    source = valued.client.get(index=valued.index, id="v4").body["_source"]
    assert source["values"] == {"brand": "JBL", "fk_advantage": False, "price": 499.99, "rating": 4.0}


def test_a_value_outside_the_schema_is_kept_not_indexed(valued: ElasticsearchStore) -> None:
    extra = Product(id="x1", title="item x1", values={"brand": "Sony", "material": "Steel"})
    assert not valued.upsert([Document(extra, {"title_vector": unit(1)})]).errors
    assert valued.get(["x1"])["x1"].product == extra
    assert "material" not in live_mapping(valued)["properties"]["values"]["properties"]
    with pytest.raises(FilterError, match="unknown filter field 'material'.*brand, fk_advantage, price, rating"):
        valued.search(LexicalQuery("item"), [], 5, [Filter("material", "in", ("Steel",))])


def test_a_value_of_another_kind_is_reported_by_id(valued: ElasticsearchStore) -> None:
    bad = Product(id="b1", title="item b1", values={"price": "1,299"})
    good = Product(id="g1", title="item g1", values={"price": 5.0})
    result = valued.upsert([Document(bad, {"title_vector": unit(1)}), Document(good, {"title_vector": unit(2)})])
    assert result.written == 1
    assert "value 'price': the index holds a number" in result.errors["b1"]
    assert set(valued.get(["b1", "g1"])) == {"g1"}


# ---------------------------------------------------------------- filters


def _norm(value: Value) -> Value:
    return value.lower() if isinstance(value, str) else value


def expected(f: Filter, typed: Any) -> set[str]:
    """The products ``f`` keeps, computed here from ROWS (``typed``: its value as typed)."""
    out = set()
    for pid, (_, values) in ROWS.items():
        has = f.field in values
        value = _norm(values[f.field]) if has else None
        if f.op == "in":
            keep = has and value in {_norm(v) for v in typed}
        elif f.op == "not_in":
            keep = not (has and value in {_norm(v) for v in typed})
        elif f.op == "eq":
            keep = has and value == _norm(typed)
        elif f.op == "range":
            low, high = typed
            keep = has and (low is None or value >= low) and (high is None or value <= high)
        else:
            keep = has == typed
        if keep:
            out.add(pid)
    return out


# (filter as a caller writes it, untyped; its value typed; the ids it keeps, spelled out)
CASES: list[tuple[Filter, Any, set[str]]] = [
    (Filter("brand", "in", ("sony",)), ("sony",), {"v0", "v1", "v5"}),
    (Filter("brand", "in", ("Bose", "jbl")), ("Bose", "jbl"), {"v2", "v3", "v4"}),
    (Filter("brand", "not_in", ("SONY",)), ("SONY",), {"v2", "v3", "v4", "v6", "v7"}),
    (Filter("brand", "eq", "BOSE"), "BOSE", {"v2", "v3"}),
    (Filter("price", "range", ("500", "2,000")), (500.0, 2000.0), {"v0", "v2", "v5"}),
    (Filter("price", "range", (None, "₹499.99")), (None, 499.99), {"v1", "v4", "v6"}),
    (Filter("price", "range", ("1,000", None)), (1000.0, None), {"v0", "v2", "v3"}),
    (Filter("price", "in", ("1,299", 450)), (1299.0, 450.0), {"v0", "v1"}),
    (Filter("price", "not_in", (1299,)), (1299.0,), {"v1", "v2", "v3", "v4", "v5", "v6", "v7"}),
    (Filter("rating", "eq", 4), 4.0, {"v4"}),
    (Filter("fk_advantage", "eq", True), True, {"v0", "v2", "v5", "v7"}),
    (Filter("fk_advantage", "eq", "no"), False, {"v1", "v4"}),
    (Filter("brand", "exists", False), False, {"v6"}),
    (Filter("rating", "exists", True), True, {"v0", "v2", "v3", "v4", "v6", "v7"}),
]


@pytest.mark.parametrize(("f", "typed", "ids"), CASES, ids=[f"{f.field}-{f.op}-{i}" for i, (f, _, _) in enumerate(CASES)])
def test_each_value_filter_on_bm25_and_knn(
    valued: ElasticsearchStore, f: Filter, typed: Any, ids: set[str]
) -> None:
    assert expected(f, typed) == ids  # the spelled-out answer agrees with the rule
    runs = valued.search(LexicalQuery("item"), [VectorQuery("title_vector", unit(0), "text")], len(ROWS), [f])
    assert {h.id for h in runs["bm25"]} == ids
    assert {h.id for h in runs["text"]} == ids


def test_value_filters_combine_with_the_category_subtree(valued: ElasticsearchStore) -> None:
    filters = [
        Filter("category", "subtree", "Electronics > Audio"),
        Filter("brand", "in", ("Sony", "Bose")),
        Filter("price", "range", (None, "1500")),
    ]
    runs = valued.search(LexicalQuery("item"), [VectorQuery("title_vector", unit(7), "text")], 8, filters)
    assert {h.id for h in runs["bm25"]} == {h.id for h in runs["text"]} == {"v0", "v1", "v5"}
    kitchen = [Filter("category", "subtree", "Kitchen & Dining"), Filter("fk_advantage", "eq", True)]
    runs = valued.search(LexicalQuery("item"), [VectorQuery("title_vector", unit(0), "text")], 8, kitchen)
    assert [h.id for h in runs["bm25"]] == [h.id for h in runs["text"]] == ["v7"]


def test_knn_prefilters_k_hits_whenever_k_match(valued: ElasticsearchStore) -> None:
    """The nearest products to the query (v0, v1, v5) are filtered out; with 3 candidates a
    post-filter would return nothing, the kNN filter returns the 3 that match."""
    query = unit(0, 1, 5)
    f = Filter("brand", "in", ("Bose", "JBL"))
    unfiltered = valued.search(None, [VectorQuery("title_vector", query, "text", num_candidates=3)], 3)["text"]
    assert {h.id for h in unfiltered} == {"v0", "v1", "v5"}
    hits = valued.search(None, [VectorQuery("title_vector", query, "text", num_candidates=3)], 3, [f])["text"]
    assert {h.id for h in hits} == {"v2", "v3", "v4"}
    # fewer than k match: all of them, nothing else
    hits = valued.search(None, [VectorQuery("title_vector", query, "text")], 5, [Filter("brand", "eq", "jbl")])["text"]
    assert [h.id for h in hits] == ["v4"]


def test_keywords_match_case_insensitively_and_read_back_as_written(valued: ElasticsearchStore) -> None:
    for spelling in ("sony", "SONY", "Sony", "sOnY"):
        hits = valued.search(LexicalQuery("item"), [], 10, [Filter("brand", "eq", spelling)])["bm25"]
        assert {h.id for h in hits} == {"v0", "v1", "v5"}
    shown = {pid: sp.product.values["brand"] for pid, sp in valued.get(["v0", "v1", "v5"]).items()}
    assert shown == {"v0": "Sony", "v1": "SONY", "v5": "sony"}


def test_bad_value_filters_name_what_the_index_holds(valued: ElasticsearchStore) -> None:
    with pytest.raises(FilterError, match="brand is a keyword; its filters: in, not_in, eq, exists"):
        valued.search(LexicalQuery("item"), [], 5, [Filter("brand", "range", ("a", "b"))])
    with pytest.raises(FilterError, match="price is a number in INR"):
        valued.search(LexicalQuery("item"), [], 5, [Filter("price", "range", ("cheap", None))])


# ---------------------------------------------------------------- migration from mapping v3


def v3_create_body(store: ElasticsearchStore) -> dict[str, Any]:
    """The v3 create-index body as mapping v3 wrote it (kept as data), behind the alias, with
    the cluster's text analyser (``english`` where the node has it)."""
    body: dict[str, Any] = json.loads((GOLDEN / "index_body_v3.json").read_text(encoding="utf-8"))
    assert body["mappings"]["_meta"]["ctir_es"]["mapping_version"] == 3
    assert "values" not in body["mappings"]["properties"]
    analyzer = store.cluster_info().text_analyzer
    for prop in body["mappings"]["properties"].values():
        if prop.get("analyzer"):
            prop["analyzer"] = analyzer
    body["mappings"]["_meta"]["ctir_es"]["text_analyzer"] = analyzer
    body["aliases"] = {store.index: {"is_write_index": True}}
    return body


def v3_schema(body: Mapping[str, Any]) -> IndexSchema:
    schema = mapping.schema_from_mapping(body)
    assert schema is not None and set(schema.vectors) == {"image_vector", "title_vector"}
    return schema


def random_unit(rng: np.random.Generator, dims: int) -> np.ndarray:
    v = rng.normal(size=dims).astype(np.float32)
    return v / np.linalg.norm(v)


def test_an_index_of_mapping_v3_migrates_by_reindex(make_store: Callable[..., ElasticsearchStore]) -> None:
    store = make_store()
    body = v3_create_body(store)
    schema = v3_schema(body)
    store.client.indices.create(index=f"{store.index}-v1", **copy.deepcopy(body))
    rng = np.random.default_rng(3)
    title_vectors = {pid: random_unit(rng, schema.vectors["title_vector"].dims) for pid in ROWS}
    # v3 documents as v3 wrote them: no values (its strict mapping has no such field)
    for pid, (path, _) in ROWS.items():
        doc = Document(Product(id=pid, title=f"item {pid} speaker", categories=(path,)),
                       {"title_vector": title_vectors[pid]})
        source = documents.document_source(doc, documents.ingest_time(), summary=False)  # as a v3 writer sent it
        assert "values" not in source
        store.client.index(index=store.index, id=pid, document=source)
    store.client.indices.refresh(index=store.index)

    # read-only until migrated: searches answer, writes and value filters say what to do
    assert store.status()["needs_reindex"] is True
    assert store.count() == len(ROWS)
    near = store.search(LexicalQuery("item"), [VectorQuery("title_vector", title_vectors["v2"], "text")], 3)
    assert near["text"][0].id == "v2" and len(near["bm25"]) == 3
    wanted = IndexSchema(schema.vectors, SPECS)
    with pytest.raises(SchemaMismatch, match=r"older ctir-es mapping \(v3, current v4.*`ctir-es es reindex`"):
        store.setup(wanted)
    with pytest.raises(Unsupported, match="mapping v3, which has no typed value fields.*ctir-es es reindex"):
        store.search(LexicalQuery("item"), [], 5, [Filter("brand", "in", ("Sony",))])

    reader = make_store(store.index)  # a serving store that read the v3 mapping before the migration
    with pytest.raises(Unsupported):
        reader.search(LexicalQuery("item"), [], 5, [Filter("brand", "exists", True)])
    report = store.reindex()
    assert (report.source, report.dest) == (f"{store.index}-v1", f"{store.index}-v2")
    assert report.count == len(ROWS) and not report.deleted_old
    assert store.status()["mapping_version"] == 4 and store.status()["needs_reindex"] is False
    migrated = live_mapping(store)["properties"]["values"]  # an object with no fields yet
    assert migrated["dynamic"] in (False, "false") and not migrated.get("properties")
    # the copied documents hold no values yet: nothing is "Sony", every product lacks a brand
    store.setup(wanted)
    assert store.search(LexicalQuery("item"), [], 10, [Filter("brand", "in", ("Sony",))])["bm25"] == []
    lacking = store.search(LexicalQuery("item"), [], 10, [Filter("brand", "exists", False)])["bm25"]
    assert len(lacking) == len(ROWS)
    assert store.get(["v0"])["v0"].product.values == {}

    # an ingest fills them (re-upserting replaces by id), and value filters work on BM25 and kNN
    docs = [
        Document(Product(id=pid, title=f"item {pid} speaker", categories=(path,), values=values),
                 {"title_vector": title_vectors[pid]})
        for pid, (path, values) in ROWS.items()
    ]
    assert not store.upsert(docs).errors
    assert store.count() == len(ROWS)
    f = Filter("price", "range", ("500", "2,000"))
    runs = store.search(LexicalQuery("item"), [VectorQuery("title_vector", title_vectors["v3"], "text")], 8, [f])
    assert {h.id for h in runs["bm25"]} == {h.id for h in runs["text"]} == {"v0", "v2", "v5"}
    assert store.get(["v4"])["v4"].product.values == ROWS["v4"][1]
    # the serving store sees the migration without being reopened
    assert {h.id for h in reader.search(LexicalQuery("item"), [], 8, [f])["bm25"]} == {"v0", "v2", "v5"}
    # the old version is kept for rollback and still answers (without the values)
    old = store.client.count(index=f"{store.index}-v1").body["count"]
    assert old == len(ROWS)


def test_vector_dims_of_the_v3_body_are_kept_by_the_migration(make_store: Callable[..., ElasticsearchStore]) -> None:
    """The reindex maps the same vector fields (dims, similarity, index type) as the v3 index."""
    store = make_store()
    body = v3_create_body(store)
    store.client.indices.create(index=f"{store.index}-v1", **copy.deepcopy(body))
    vector = random_unit(np.random.default_rng(5), 384)
    doc = Document(Product(id="a", title="item a"), {"title_vector": vector})
    store.client.index(index=store.index, id="a", document=documents.document_source(doc, summary=False), refresh=True)
    store.reindex()
    props = live_mapping(store)["properties"]
    for name in ("image_vector", "title_vector"):
        old = body["mappings"]["properties"][name]
        assert {k: props[name][k] for k in ("dims", "similarity")} == {k: old[k] for k in ("dims", "similarity")}
        assert props[name]["index_options"]["type"] == old["index_options"]["type"]
    assert store.schema() == v3_schema(body)
    hits = store.search(None, [VectorQuery("title_vector", vector, "text")], 1)["text"]
    assert [h.id for h in hits] == ["a"] and hits[0].score == pytest.approx(1.0, abs=1e-3)

