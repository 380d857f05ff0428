"""The tantivy engine's native BM25F scorer (native/, ``ctir_es_native``): its scores equal SQLite
FTS5's ``bm25()`` formula (ext/fts5/fts5_aux.c) recomputed here in Python from the products'
text, on a hand-made catalogue and on flipkart-1050; filters compose; deletes are honoured; an
index written by tantivy-py (the engine's writer) opens.

The reference analyses each field with the engine's own analyzer (tantivy-py's), so token
counts and term frequencies are the index's; a field's length is quantised as tantivy stores it
(one byte per field and document: exact to 40 tokens, rounded down past that)."""

from __future__ import annotations

import bisect
import math
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ctir_es.errors import StoreError
from ctir_es.filters import Filter
from ctir_es.ingest.readers import read_flipkart
from ctir_es.ingest.report import IngestReport
from ctir_es.products import Product, format_category_path
from ctir_es.schema import LEXICAL_FIELDS, Document, IndexSchema, LexicalQuery
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.store.embedded import lexical_tantivy as lt

native = pytest.importorskip("ctir_es_native", reason="the native module is built by `make install` (native/)")

K1, B = 1.2, 0.75

# tantivy's fieldnorm byte -> length (tantivy 0.27 src/fieldnorm/code.rs, FIELD_NORMS_TABLE): a
# field's length is stored as the largest entry not above it.
FIELD_NORMS_TABLE = [
    *range(41), 42, 44, 46, 48, 50, 52, 54, 56, 60, 64, 68, 72, 76, 80, 84, 88, 96, 104, 112, 120, 128, 136,
    144, 152, 168, 184, 200, 216, 232, 248, 264, 280, 312, 344, 376, 408, 440, 472, 504, 536, 600, 664, 728,
    792, 856, 920, 984, 1048, 1176, 1304, 1432, 1560, 1688, 1816, 1944, 2072, 2328, 2584, 2840, 3096, 3352,
    3608, 3864, 4120, 4632, 5144, 5656, 6168, 6680, 7192, 7704, 8216, 9240, 10264, 11288, 12312, 13336,
    14360, 15384, 16408, 18456, 20504, 22552, 24600, 26648, 28696, 30744, 32792, 36888, 40984, 45080,
    49176, 53272, 57368, 61464, 65560, 73752, 81944, 90136, 98328, 106520, 114712, 122904, 131096, 147480,
    163864, 180248, 196632, 213016, 229400, 245784, 262168, 294936, 327704, 360472, 393240, 426008,
    458776, 491544, 524312, 589848, 655384, 720920, 786456, 851992, 917528, 983064, 1048600, 1179672,
    1310744, 1441816, 1572888, 1703960, 1835032, 1966104, 2097176, 2359320, 2621464, 2883608, 3145752,
    3407896, 3670040, 3932184, 4194328, 4718616, 5242904, 5767192, 6291480, 6815768, 7340056, 7864344,
    8388632, 9437208, 10485784, 11534360, 12582936, 13631512, 14680088, 15728664, 16777240, 18874392,
    20971544, 23068696, 25165848, 27263000, 29360152, 31457304, 33554456, 37748760, 41943064, 46137368,
    50331672, 54525976, 58720280, 62914584, 67108888, 75497496, 83886104, 92274712, 100663320, 109051928,
    117440536, 125829144, 134217752, 150994968, 167772184, 184549400, 201326616, 218103832, 234881048,
    251658264, 268435480, 301989912, 335544344, 369098776, 402653208, 436207640, 469762072, 503316504,
    536870936, 603979800, 671088664, 738197528, 805306392, 872415256, 939524120, 1006632984, 1073741848,
    1207959576, 1342177304, 1476395032, 1610612760, 1744830488, 1879048216, 2013265944,
]
assert len(FIELD_NORMS_TABLE) == 256


def quantised(length: int) -> int:
    return FIELD_NORMS_TABLE[bisect.bisect_right(FIELD_NORMS_TABLE, length) - 1]


def fts5_idf(n: int, hits: int) -> float:
    idf = math.log((n - hits + 0.5) / (hits + 0.5))
    return 1e-6 if idf <= 0 else idf


class Reference:
    """FTS5's bm25() over analysed rows: {rowid: {field: tokens}} (live rows), and the token count
    of every row ever indexed (deleted ones included) for avgdl, as tantivy's totals keep them
    until a merge."""

    def __init__(self, rows: Mapping[int, Mapping[str, list[str]]], indexed_tokens: int | None = None,
                 indexed_rows: int | None = None) -> None:
        self.rows = rows
        tokens = sum(len(t) for fields in rows.values() for t in fields.values())
        self.avgdl = (indexed_tokens if indexed_tokens is not None else tokens) / (indexed_rows or len(rows))
        self.tf = {r: {f: Counter(t) for f, t in fields.items()} for r, fields in rows.items()}
        self.ntok = {r: sum(quantised(len(t)) for t in fields.values()) for r, fields in rows.items()}

    def scores(self, terms: Sequence[str], weights: Mapping[str, float]) -> dict[int, float]:
        fields = [f for f in LEXICAL_FIELDS if weights.get(f, 0) > 0]
        n = len(self.rows)
        idf = [fts5_idf(n, sum(any(self.tf[r][f][t] for f in fields) for r in self.rows)) for t in terms]
        out = {}
        for r in self.rows:
            freqs = [sum(weights[f] * self.tf[r][f][t] for f in fields) for t in terms]
            if not any(freqs):
                continue
            k = K1 * (1 - B + B * self.ntok[r] / self.avgdl)
            out[r] = sum(i * w * (K1 + 1) / (w + k) for i, w in zip(idf, freqs, strict=True) if w)
        return out


def analysed_rows(store_path: Path, where: str = "1") -> dict[int, dict[str, list[str]]]:
    """The store's products as the index took them: each lexical field through the engine's analyzer."""
    analyzer = lt.analyzer()
    cols = ", ".join(LEXICAL_FIELDS)
    with sqlite3.connect(store_path) as conn:
        rows = conn.execute(f"SELECT rowid, {cols} FROM products WHERE {where}").fetchall()
    conn.close()
    return {r[0]: {f: analyzer.analyze(text) if text else [] for f, text in zip(LEXICAL_FIELDS, r[1:], strict=True)}
            for r in rows}


def rowid_of(store_path: Path) -> dict[str, int]:
    with sqlite3.connect(store_path) as conn:
        out = dict(conn.execute("SELECT id, rowid FROM products").fetchall())
    conn.close()
    return out


def assert_same_scores(got: Mapping[int, float], expected: Mapping[int, float]) -> None:
    assert got.keys() == expected.keys()
    for r, score in expected.items():
        assert got[r] == pytest.approx(score, rel=1e-6, abs=1e-5), r


LONG = " ".join(f"word{i}" for i in range(70))  # a description past 40 tokens: a quantised length

CATALOGUE = [
    Product(id="a", title="Stainless steel pressure cooker 5 L", categories=(("Kitchen", "Cookware", "Pressure Cookers"),),
            attributes={"Material": "Steel"}, description="A steel cooker. " + LONG, market="in"),
    Product(id="b", title="Cotton bath towel", categories=(("Home", "Bath", "Towels"),),
            attributes={"Colour": "Red", "Material": "Cotton"}, description="Soft cotton towel, steel blue.",
            market="in"),
    Product(id="c", title="Steel water bottle", categories=(("Kitchen", "Bottles"),), description="", market="us"),
    Product(id="d", title="Cookware set", categories=(("Kitchen", "Cookware"),),
            attributes={"Pieces": "5", "Material": "Aluminium"}, description="Cooker, pan and kadhai. " * 9,
            market="us"),
    Product(id="e", title="Wall clock", categories=(("Home", "Decor", "Clocks"),), description="steel hands", market="de"),
    Product(id="f", title="Red towel towel towel", categories=(("Home", "Bath", "Towels"),), market="de"),
    Product(id="g", title="Kitchen towel", categories=(("Kitchen", "Linen"),), attributes={"Colour": "Blue"},
            market="in"),
]

QUERIES = [("steel cooker", None), ("towel", None), ("red cotton towel", {"title": 3.0, "attributes": 1.0}),
           ("kitchen steel", {"title": 2.0, "categories": 6.0, "attributes": 1.0, "description": 0.3}),
           ("cookware kadhai pressure", {"description": 1.0}), ("steel", {"title": 1.0, "categories": 0.0})]


@pytest.fixture
def small_store(tmp_path: Path) -> Any:
    store = EmbeddedStore(tmp_path / "s.db", lexical="tantivy")
    store.setup(IndexSchema())
    assert not store.upsert([Document(p) for p in CATALOGUE]).errors
    yield store, tmp_path / "s.db"
    store.close()


def engine_scores(store: EmbeddedStore, path: Path, text: str, weights: Mapping[str, float] | None,
                  filters: Sequence[Filter] = ()) -> dict[int, float]:
    q = LexicalQuery(text) if weights is None else LexicalQuery(text, weights)
    hits = store.search(q, [], 10_000, filters)["bm25"]
    ids = rowid_of(path)
    return {ids[h.id]: h.score for h in hits}


def test_scores_are_fts5s_bm25_on_a_hand_made_catalogue(small_store: Any) -> None:
    store, path = small_store
    ref = Reference(analysed_rows(path))
    lex = store._lex
    assert lex is not None
    assert any(quantised(len(f["description"])) != len(f["description"]) for f in ref.rows.values())
    for text, weights in QUERIES:
        w = dict(LexicalQuery(text).weights) if weights is None else weights
        expected = ref.scores(lex.terms(text), w)
        assert expected, text
        assert_same_scores(engine_scores(store, path, text, weights), expected)
    # "steel" is in more than half the products' title or description: FTS5's IDF floor
    floor = ref.scores(["steel"], {"title": 1.0, "description": 1.0})
    assert len(floor) > len(CATALOGUE) / 2 and max(floor.values()) < 1e-5
    assert_same_scores(engine_scores(store, path, "steel", {"title": 1.0, "description": 1.0}), floor)


def test_statistics_add_up_over_segments(tmp_path: Path) -> None:
    """Each batch is a tantivy commit, a segment of its own: N, avgdl and nHit are the whole
    index's, and every segment is scored with them."""
    import json

    path = tmp_path / "s.db"
    store = EmbeddedStore(path, lexical="tantivy")
    store.setup(IndexSchema())
    for start in range(0, len(CATALOGUE), 3):
        assert not store.upsert([Document(p) for p in CATALOGUE[start:start + 3]]).errors
    try:
        assert len(json.loads((lt.index_dir(path) / "meta.json").read_text())["segments"]) >= 2
        ref = Reference(analysed_rows(path))
        for text, weights in QUERIES:
            w = dict(LexicalQuery(text).weights) if weights is None else weights
            assert_same_scores(engine_scores(store, path, text, weights), ref.scores(store._lex.terms(text), w))
            q = LexicalQuery(text) if weights is None else LexicalQuery(text, weights)
            best = sorted(ref.scores(store._lex.terms(text), w).values(), reverse=True)
            assert [h.score for h in store.search(q, [], 2)["bm25"]] == pytest.approx(best[:2], rel=1e-6, abs=1e-5)
    finally:
        store.close()


def test_the_ranking_is_fts5s_own_where_the_tokenizers_agree(tmp_path: Path) -> None:
    """On text both analyzers split and stem alike, the two engines give the same scores, but
    for a product with a field past 40 tokens (tantivy's rounded length: within 1 %)."""
    long = {p.id for p in CATALOGUE if len((p.description or "").split()) > 40}
    assert long
    stores = {}
    for engine in ("fts5", "tantivy"):
        s = EmbeddedStore(tmp_path / f"{engine}.db", lexical=engine)
        s.setup(IndexSchema())
        assert not s.upsert([Document(p) for p in CATALOGUE]).errors
        stores[engine] = s
    for text in ("steel cooker", "towel", "kitchen clock", "towels towel red"):  # one stem twice: FTS5 counts it twice
        a, b = (stores[e].search(LexicalQuery(text), [], 50)["bm25"] for e in ("fts5", "tantivy"))
        fts5, ours = {h.id: h.score for h in a}, {h.id: h.score for h in b}
        assert fts5.keys() == ours.keys(), text
        for pid, score in fts5.items():
            assert ours[pid] == pytest.approx(score, rel=1e-2 if pid in long else 1e-6, abs=1e-5), (text, pid)
    for s in stores.values():
        s.close()


FILTERS: list[tuple[Filter, Callable[[Product], bool]]] = [
    (Filter("category", "subtree", ("Kitchen",)), lambda p: any(c[0] == "Kitchen" for c in p.categories)),
    (Filter("category", "subtree", ("Kitchen", "Cookware")),
     lambda p: any(c[:2] == ("Kitchen", "Cookware") for c in p.categories)),
    (Filter("market", "eq", "in"), lambda p: p.market == "in"),
    (Filter("market", "in", ("us", "de")), lambda p: p.market in ("us", "de")),
    (Filter("id", "in", ("a", "b", "f")), lambda p: p.id in ("a", "b", "f")),
    (Filter("id", "not_in", ("a", "d")), lambda p: p.id not in ("a", "d")),
    (Filter("id", "in", ()), lambda p: False),
    (Filter("id", "not_in", ()), lambda p: True),
    (Filter("has_image", "eq", False), lambda p: True),
    (Filter("has_image", "eq", True), lambda p: False),
]


@pytest.mark.parametrize("case", range(len(FILTERS)))
def test_filters_compose_and_leave_the_scores_alone(small_store: Any, case: int) -> None:
    """A filter decides which products come back, never their scores (FTS5's statistics are the
    whole table's whatever the WHERE clause says)."""
    store, path = small_store
    ref = Reference(analysed_rows(path))
    ids = rowid_of(path)
    flt, passes = FILTERS[case]
    for text, weights in QUERIES[:4]:
        w = dict(LexicalQuery(text).weights) if weights is None else weights
        keep = {ids[p.id] for p in CATALOGUE if passes(p)}
        expected = {r: s for r, s in ref.scores(store._lex.terms(text), w).items() if r in keep}
        assert_same_scores(engine_scores(store, path, text, weights, [flt]), expected)
    (kitchen, in_kitchen), (not_ad, neither) = FILTERS[0], FILTERS[5]  # Must and MustNot at once
    assert not_ad.op == "not_in"
    keep = {ids[p.id] for p in CATALOGUE if in_kitchen(p) and neither(p)}
    expected = {r: s for r, s in ref.scores(["steel"], {"title": 3.0}).items() if r in keep}
    assert expected
    assert_same_scores(engine_scores(store, path, "steel", {"title": 3.0}, [kitchen, not_ad]), expected)


def test_rowid_sets_and_must_not_on_the_native_reader(small_store: Any) -> None:
    _, path = small_store
    ref = Reference(analysed_rows(path))
    reader = native.Reader(str(lt.index_dir(path)), list(LEXICAL_FIELDS))
    weights = [("title", 3.0), ("description", 0.5)]
    full = ref.scores(["towel", "steel"], dict(weights))
    some = sorted(full)[:3]
    cases = [([("rowid", "must", some)], set(some)), ([("rowid", "must_not", some)], set(full) - set(some)),
             ([("rowid", "must", some[:1])], set(some[:1])), ([("rowid", "must", [])], set()),
             ([("rowid", "must", some), ("market", "must_not", ["in"])],
              set(some) & {rowid_of(path)[p.id] for p in CATALOGUE if p.market != "in"})]
    for filters, keep in cases:
        got = dict(reader.search(["towel", "steel"], weights, filters, 100))
        assert_same_scores(got, {r: s for r, s in full.items() if r in keep})
    # best first, and `limit` cuts the same ranking
    ranked = reader.search(["towel", "steel"], weights, [], 100)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert reader.search(["towel", "steel"], weights, [], 2) == ranked[:2]
    assert reader.search(["towel"], weights, [], 0) == []
    assert reader.search(["nosuchword"], weights, [], 10) == []


def test_native_errors_are_typed(small_store: Any, tmp_path: Path) -> None:
    store, path = small_store
    reader = native.Reader(str(lt.index_dir(path)), list(LEXICAL_FIELDS))
    with pytest.raises(native.BadQuery):
        reader.search(["towel"], [("colour", 1.0)], [], 10)
    with pytest.raises(native.BadQuery):
        reader.search(["towel"], [("title", 1.0)], [("market", "should", ["in"])], 10)
    with pytest.raises(native.BadQuery):  # a text field filtered with numbers
        reader.search(["towel"], [("title", 1.0)], [("market", "must", [1])], 10)
    with pytest.raises(native.IndexUnavailable):
        native.Reader(str(tmp_path / "nothing"), list(LEXICAL_FIELDS))
    assert issubclass(native.IndexDamaged, native.NativeError) and issubclass(native.BadQuery, native.NativeError)
    lex = store._lex  # the engine maps them to the store's errors by type (damage: test_tantivy_damage.py)
    with pytest.raises(StoreError, match="cannot be searched"), lex._native_errors():
        lex.native().search(["towel"], [("colour", 1.0)], [], 10)


def test_an_index_written_by_tantivy_py_opens_and_honours_deletes(tmp_path: Path) -> None:
    """The engine's writer is tantivy-py: an index it writes (schema, analyzer and all, as
    ``lexical_tantivy`` builds them), deletes included, is read by the native reader. Deleted
    documents are never returned and leave N and nHit; tantivy keeps their tokens in the
    average length until a merge, as the reference does here."""
    import tantivy

    folder = tmp_path / "index"
    folder.mkdir()
    index = tantivy.Index(lt._schema(), path=str(folder))
    index.register_tokenizer(lt.ANALYZER, lt.analyzer())
    writer = index.writer(heap_size=20_000_000, num_threads=1)
    analyzer = lt.analyzer()
    rows: dict[int, dict[str, list[str]]] = {}
    for rowid, p in enumerate(CATALOGUE * 3, start=1):
        texts = dict(zip(LEXICAL_FIELDS, (p.title, "\n".join(map(format_category_path, p.categories)), p.attribute_text,
                          p.description),
                         strict=True))
        doc = tantivy.Document()
        doc.add_unsigned("rowid", rowid)
        doc.add_text("pid", f"{p.id}{rowid}")
        for name, text in texts.items():
            if text:
                doc.add_text(name, text)
        doc.add_unsigned("has_image", 0)
        writer.add_document(doc)
        rows[rowid] = {f: analyzer.analyze(t) if t else [] for f, t in texts.items()}
    writer.commit()
    reader = native.Reader(str(folder), list(LEXICAL_FIELDS))
    weights = {"title": 3.0, "categories": 5.0, "attributes": 1.0, "description": 0.5}
    terms = ["towel", "steel", "cooker", "kitchen"]
    assert_same_scores(dict(reader.search(terms, list(weights.items()), [], 100)),
                       Reference(rows).scores(terms, weights))
    gone = [2, 3, 9, 16]
    writer.delete_documents_by_query(tantivy.Query.term_set_query(index.schema, "rowid", gone))
    writer.commit()
    writer.wait_merging_threads()
    before = dict(reader.search(terms, list(weights.items()), [], 100))
    assert set(gone) <= set(before)  # not reloaded yet: the view of the last reload
    reader.reload()
    got = dict(reader.search(terms, list(weights.items()), [], 100))
    all_tokens = sum(len(t) for fields in rows.values() for t in fields.values())
    live = {r: f for r, f in rows.items() if r not in gone}
    assert not set(gone) & set(got)
    n, avgdl, hits = reader.stats(terms, list(weights.items()))
    assert n == len(live) and avgdl == pytest.approx(all_tokens / len(rows))
    assert_same_scores(got, Reference(live, all_tokens, len(rows)).scores(terms, weights))
    assert hits == [sum(any(t in f[name] for name in weights) for f in live.values()) for t in terms]


def test_store_deletes_and_updates_are_honoured(small_store: Any) -> None:
    store, _ = small_store
    assert store.delete(["b"]) == 1
    changed = Product(id="f", title="Blue mug", categories=(("Kitchen", "Mugs"),), market="de")
    assert not store.upsert([Document(changed)]).errors
    hits = {h.id for h in store.search(LexicalQuery("towel mug"), [], 50)["bm25"]}
    assert "b" not in hits and "f" in hits
    assert {h.id for h in store.search(LexicalQuery("red"), [], 50)["bm25"]} == set()  # b and the old f held it


# -- flipkart-1050 ---------------------------------------------------------------------------

FLIPKART_QUERIES = [
    "Kitchen & Dining > Cookware", "Clothing > Women's Clothing > Western Wear", "Watches > Wrist Watches",
    "Beauty and Personal Care", "Home Decor & Festive Needs > Showpieces", "Computers > Laptop Accessories",
    "cotton kurta for women", "stainless steel pressure cooker 5 L", "led bulb", "baby boys t-shirt",
]


@pytest.fixture(scope="module")
def flipkart_tantivy(flipkart_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("bm25f") / "flipkart.db"
    store = EmbeddedStore(path, lexical="tantivy")
    store.setup(IndexSchema())
    products = list(read_flipkart(flipkart_dir, IngestReport()))
    assert len(products) == 1050
    assert not store.upsert([Document(p) for p in products]).errors
    yield store, path, Reference(analysed_rows(path))
    store.close()


@pytest.mark.parametrize("weights", [None, {"title": 3.0, "attributes": 1.0, "description": 0.5},
                                     {"title": 2.0, "categories": 6.0, "attributes": 1.0, "description": 0.3}])
def test_scores_are_fts5s_bm25_on_flipkart(flipkart_tantivy: Any, weights: dict[str, float] | None) -> None:
    store, path, ref = flipkart_tantivy
    assert sum(quantised(n) != n for n in (len(t) for f in ref.rows.values() for t in f.values())) > 500
    for text in FLIPKART_QUERIES:
        w = dict(LexicalQuery(text).weights) if weights is None else weights
        expected = ref.scores(store._lex.terms(text), w)
        assert expected, text
        assert_same_scores(engine_scores(store, path, text, weights), expected)
        # a short top k is pruned (MaxScore), never cut wrong: the k best scores, best first
        q = LexicalQuery(text) if weights is None else LexicalQuery(text, weights)
        best = sorted(expected.values(), reverse=True)
        for k in (1, 3, 10, 50):
            got = [h.score for h in store.search(q, [], k)["bm25"]]
            assert got == pytest.approx(best[:k], rel=1e-6, abs=1e-5), (text, k)
    filt = Filter("category", "subtree", ("Kitchen & Dining",))
    got = engine_scores(store, path, "steel bottle", weights, [filt])
    with sqlite3.connect(path) as conn:
        kitchen = {r for (r,) in conn.execute("SELECT rowid FROM products WHERE categories LIKE 'Kitchen & Dining%'")}
    conn.close()
    w = dict(LexicalQuery("x").weights) if weights is None else weights
    expected = {r: s for r, s in ref.scores(store._lex.terms("steel bottle"), w).items() if r in kitchen}
    assert expected
    assert_same_scores(got, expected)
