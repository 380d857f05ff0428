"""Typed values at ingest and in the embedded store (issue 23, parts 1-2): the types an ingest
decides (index, config ``[values]``, reader, inferred), the values normalised and the bad ones
dropped and counted, value filters through ``Search`` on the real flipkart-1050 catalogue, and
the store format's upgrade. No encoders: BM25 only, so each test takes about a second."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli
from ctir_es.config import Settings, load_settings
from ctir_es.errors import ConfigError, FilterError
from ctir_es.filters import Filter, check_filters, parse_filter_text
from ctir_es.ingest import value_types
from ctir_es.ingest.pipeline import IngestOptions
from ctir_es.ingest.run import ingest_catalogue
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, LexicalQuery, VectorField, VectorQuery
from ctir_es.search import Search
from ctir_es.store.embedded import SCHEMA_VERSION, EmbeddedStore, filter_sql
from ctir_es.values import ValueSpec

# Every flipkart-1050 product holds one of these words (checked below), so a BM25 query of them
# reaches the whole catalogue and a filter alone decides what comes back.
EVERY_PRODUCT = "flipkart com buy genuine products shipping delivery price specifications the a of"


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(store=tmp_path / "store.db", cache_dir=tmp_path / "cache", text_model="none",
                    clip_weights="none", **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def flipkart_store(flipkart_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """flipkart-1050 ingested by the CLI, text only, no images."""
    root = tmp_path_factory.mktemp("flipkart-values")
    store = root / "store.db"
    env = {"CTIR_ES_CONFIG": str(root / "absent.toml"), "CTIR_ES_CACHE_DIR": str(root / "cache")}
    result = CliRunner().invoke(cli, ["ingest", "flipkart", str(flipkart_dir), "--no-images", "--text-model", "none",
                                      "--clip-weights", "none", "--store", str(store), "--json"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["indexed"] == 1050
    assert not any(note.startswith("dropped value") for note in report["notes"])  # the README's figure
    return store


def _csv_rows(flipkart_dir: Path) -> list[dict[str, str]]:
    with open(flipkart_dir / "products.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_flipkart_ingest_declares_the_readers_types(flipkart_store: Path) -> None:
    values = EmbeddedStore(flipkart_store).schema().values  # type: ignore[union-attr]
    assert values["price"] == values["retail_price"] == ValueSpec("number", "INR")
    assert values["brand"] == values["colour"] == ValueSpec("keyword")
    assert values["rating"] == ValueSpec("number")
    assert values["fk_advantage"] == ValueSpec("boolean")
    assert values["added"] == ValueSpec("number", "unix_time")


def test_flipkart_price_range_returns_exactly_the_csv_products_in_range(flipkart_store: Path, flipkart_dir: Path,
                                                                        tmp_path: Path) -> None:
    rows = _csv_rows(flipkart_dir)
    expected = {r["uniq_id"] for r in rows if r["discounted_price"].strip()
                and 500 <= float(r["discounted_price"]) <= 1000}
    assert 100 < len(expected) < 1000  # a real slice of the catalogue, within one page of results
    store = EmbeddedStore(flipkart_store)
    assert len(store.search(LexicalQuery(EVERY_PRODUCT), [], 2000)["bm25"]) == len(rows) == 1050
    with Search(store) as search:
        res = search.search(EVERY_PRODUCT, filters=[Filter("price", "range", (500, 1000))], k=1000)
        assert {r.id for r in res.results} == expected
        # the text form, typed by the schema: "1,000" is a number in INR
        text = search.search(EVERY_PRODUCT, filters=[parse_filter_text("price:500..1,000", search.schema)], k=1000)
        assert {r.id for r in text.results} == expected
        # a brand, in another case than the catalogue's, and a negation with it
        brand = "Elegance"
        branded = {r["uniq_id"] for r in rows if r["brand"].strip() == brand}
        assert branded
        got = search.search(EVERY_PRODUCT, filters=[Filter("brand", "in", ("ELEGANCE",))], k=1000)
        assert {r.id for r in got.results} == branded
        for r in got.results:
            assert search.product(r.id).product.values["brand"] == brand  # display keeps the case
        cheap_not = search.search(EVERY_PRODUCT, k=1000, filters=[Filter("price", "range", (500, 1000)),
                                                                  parse_filter_text("-brand:elegance")])
        assert {r.id for r in cheap_not.results} == expected - branded
        with pytest.raises(FilterError, match="this index's values: added, brand"):
            search.search("curtain", filters=[Filter("colour_name", "in", ("red",))])
        with pytest.raises(FilterError, match="price is a number in INR"):
            search.search("curtain", filters=[Filter("price", "range", ("cheap", None))])


def _jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _records(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"id": f"s{i}", "title": f"speaker model {i}", "categories": ["Audio"],
             "values": {"Price": f"${100 + i}.99", "Brand": "Sony" if i % 2 else "Bose", "In Stock": "yes" if i % 3 else "no",
                        "Size": str(40 + i % 3)}} for i in range(start, start + n)]


def test_jsonl_types_are_inferred_with_a_config_override(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('store = "%s"\ntext_model = "none"\nclip_weights = "none"\n\n[values]\n"Size" = "keyword"\n'
                      % (tmp_path / "store.db"), encoding="utf-8")
    settings = load_settings({"CTIR_ES_CONFIG": str(config), "CTIR_ES_CACHE_DIR": str(tmp_path / "cache")})
    assert settings.value_types == {"size": ValueSpec("keyword")}
    records = _records(30)
    records[4]["values"]["Price"] = "call us"  # type: ignore[index]
    report = ingest_catalogue("jsonl", _jsonl(tmp_path / "a.jsonl", records), settings, text_encoder=None,
                              image_encoder=None, options=IngestOptions(with_images=False, batch_size=8))
    assert report.indexed == 30
    assert report.notes["dropped value price (not_a_number)"] == 1  # 29 of 30 parse: still a number
    assert any("'s4'" in m and "price" in m for m in report.messages)
    store = EmbeddedStore(settings.store)
    assert store.schema().values == {  # type: ignore[union-attr]
        "brand": ValueSpec("keyword"), "in_stock": ValueSpec("boolean"), "price": ValueSpec("number", "USD"),
        "size": ValueSpec("keyword")}  # without the override: a number
    got = store.get(["s3", "s4"])
    assert dict(got["s3"].product.values) == {"price": 103.99, "brand": "Sony", "in_stock": False, "size": "40"}
    assert "price" not in got["s4"].product.values and got["s4"].product.values["brand"] == "Bose"
    with Search(store) as search:
        hits = search.search("speaker", k=50, filters=[parse_filter_text("size:40", search.schema),
                                                       parse_filter_text("price:..110", search.schema)])
        assert {r.id for r in hits.results} == {"s0", "s3", "s6", "s9"}
        stocked = search.search("speaker", k=50, filters=[parse_filter_text("in_stock:false", search.schema)])
        assert {r.id for r in stocked.results} == {f"s{i}" for i in range(0, 30, 3)}


def test_a_later_ingest_keeps_the_index_types_and_adds_new_names(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(value_types, "INFER_SAMPLE", 4)  # names first seen after the sample: typed per batch
    settings = _settings(tmp_path)
    first = _records(10)
    first[8]["values"]["Warranty Years"] = "2"  # type: ignore[index]
    ingest_catalogue("jsonl", _jsonl(tmp_path / "a.jsonl", first), settings, text_encoder=None, image_encoder=None,
                     options=IngestOptions(with_images=False, batch_size=3))
    store = EmbeddedStore(settings.store)
    assert store.schema().values["warranty_years"] == ValueSpec("number")  # type: ignore[union-attr]
    assert store.schema().values["size"] == ValueSpec("number")  # type: ignore[union-attr]
    store.close()
    # a second file writes sizes as words and adds a colour: size stays a number (those values
    # are dropped and counted), colour joins the schema
    later = [{"id": f"t{i}", "title": f"speaker t{i}", "values": {"Size": "large", "Colour": "Red", "Price": 5}}
             for i in range(3)]
    report = ingest_catalogue("jsonl", _jsonl(tmp_path / "b.jsonl", later), settings, text_encoder=None,
                              image_encoder=None, options=IngestOptions(with_images=False))
    assert report.indexed == 3 and report.notes["dropped value size (not_a_number)"] == 3
    store = EmbeddedStore(settings.store)
    values = store.schema().values  # type: ignore[union-attr]
    assert values["size"] == ValueSpec("number") and values["colour"] == ValueSpec("keyword")
    assert dict(store.get(["t0"])["t0"].product.values) == {"colour": "Red", "price": 5.0}
    store.close()
    # a config override that contradicts the index is refused before anything is written
    with pytest.raises(ConfigError, match="holds it as number"):
        ingest_catalogue("jsonl", tmp_path / "b.jsonl", _settings(tmp_path, value_types={"size": ValueSpec("keyword")}),
                         text_encoder=None, image_encoder=None, options=IngestOptions(with_images=False))


def test_a_bad_values_table_in_the_config_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    for body, message in [('[values]\nprice = "money"\n', "price: unknown value kind 'money'"),
                          ('[values]\nprice = {kind = "keyword", unit = "INR"}\n', "only a number has a unit"),
                          ('values = 3\n', "must be a table"),
                          ('[values]\n"!!" = "keyword"\n', "has no letters or digits")]:
        config.write_text(body, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_settings({"CTIR_ES_CONFIG": str(config)})


# -- the store format ---------------------------------------------------------------------------


def _vec(i: int) -> np.ndarray:
    v = np.full(4, 0.1, dtype=np.float32)
    v[i % 4] = 1.0
    return v / np.linalg.norm(v)


SCHEMA = IndexSchema({"t": VectorField(4, "cosine", {"id": "t@1"})}, {"brand": ValueSpec("keyword")})


def test_a_format_2_store_gains_the_values_table_on_open(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    store = EmbeddedStore(path)
    store.setup(IndexSchema(SCHEMA.vectors))
    store.upsert([Document(Product(id=f"p{i}", title=f"pan {i}"), {"t": _vec(i)}) for i in range(6)])
    store.close()
    with sqlite3.connect(path) as conn:  # what format 2 wrote: no values table, the vectors as blobs
        conn.execute("DROP TABLE product_values")
        rows = [(rowid, _vec(int(pid[1:])).tobytes()) for rowid, pid in conn.execute("SELECT rowid, id FROM products")]
        conn.execute("DROP TABLE vectors")
        conn.execute("DROP TABLE vector_files")
        conn.execute("CREATE TABLE vectors (field TEXT NOT NULL, product INTEGER NOT NULL REFERENCES products(rowid) "
                     "ON DELETE CASCADE, vec BLOB NOT NULL, UNIQUE (field, product))")
        conn.executemany("INSERT INTO vectors VALUES ('t', ?, ?)", rows)
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'store_version'")
    shutil.rmtree(Path(str(path) + ".vectors"))
    store = EmbeddedStore(path)
    assert store.count() == 6  # a reader that can write the file upgrades it
    version = store.conn.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchone()[0]
    assert version == str(SCHEMA_VERSION) == "4"
    assert store.search(None, [VectorQuery("t", _vec(2))], 1)["t"][0].score == pytest.approx(1.0)  # blobs moved
    brand = check_filters([Filter("brand", "exists", True)], SCHEMA)
    assert store.search(None, [VectorQuery("t", _vec(0))], 10, brand)["t"] == []
    store.setup(SCHEMA)
    store.upsert([Document(Product(id="p1", title="pan 1", values={"brand": "Tefal"}), {"t": _vec(1)})])
    assert [h.id for h in store.search(None, [VectorQuery("t", _vec(0))], 10, brand)["t"]] == ["p1"]
    assert [h.id for h in store.search(LexicalQuery("pan"), [], 10, brand)["bm25"]] == ["p1"]
    assert store.check() == []
    store.close()


def test_value_filters_on_a_store_without_the_table_match_nothing_or_everything() -> None:
    """A format-2 store read where it cannot be upgraded holds no values: a filter that needs a
    value matches nothing, a negation everything."""
    for f, sql in [(Filter("brand", "in", ("x",)), "0"), (Filter("brand", "exists", True), "0"),
                   (Filter("price", "range", (1, 2)), "0"), (Filter("brand", "not_in", ("x",)), "1"),
                   (Filter("brand", "exists", False), "1")]:
        assert filter_sql([f], values=False) == (sql, [])


def test_tantivy_reads_deeper_for_a_broad_value_filter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above TERM_SET_MAX passing products, tantivy's best matches are read deeper and the
    others dropped: the same BM25 hits as the term set on rowid gives below it."""
    pytest.importorskip("tantivy")
    from ctir_es.store.embedded import lexical_tantivy

    store = EmbeddedStore(tmp_path / "t.db", lexical="tantivy")
    store.setup(SCHEMA)
    # "pan" twice in the odd titles (they rank first), the filter lets the even ones through
    store.upsert([Document(Product(id=f"p{i}", title="pan pan" if i % 2 else f"pan {i}",
                                   values={"brand": "B" if i % 2 else "A"}),
                           {"t": _vec(i)}) for i in range(300)])
    even = check_filters([Filter("brand", "in", ("a",))], SCHEMA)
    small = store.search(LexicalQuery("pan"), [], 7, even)["bm25"]
    store.close()
    monkeypatch.setattr(lexical_tantivy, "TERM_SET_MAX", 10)
    store = EmbeddedStore(tmp_path / "t.db")
    deep = store.search(LexicalQuery("pan"), [], 7, even)["bm25"]
    assert [h.id for h in deep] == [h.id for h in small] and len(deep) == 7
    assert all(int(h.id[1:]) % 2 == 0 for h in deep)
    store.close()
