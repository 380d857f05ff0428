"""Property-based tests: category paths, record validation, fusion invariants, FTS queries."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from store_contract import CATALOGUE, SCHEMA

from ctir_es.config import LEXICAL_ENGINES
from ctir_es.errors import InvalidRecord
from ctir_es.metrics import METRICS, evaluate
from ctir_es.products import Product, format_category_path, parse_category_path, path_prefixes
from ctir_es.ranking.fusion import linear, rrf
from ctir_es.schema import Hit, IndexSchema, LexicalQuery
from ctir_es.store.embedded import EmbeddedStore

level = st.text(st.characters(blacklist_characters=">", blacklist_categories=("Cs",)), min_size=1, max_size=20).map(
    lambda s: " ".join(s.split())).filter(bool)


@given(st.lists(level, min_size=1, max_size=8))
def test_path_format_parse_round_trip(levels: list[str]) -> None:
    assert parse_category_path(format_category_path(levels)) == tuple(levels)


@given(st.text(max_size=200))
def test_parse_is_idempotent_and_clean(text: str) -> None:
    path = parse_category_path(text)
    assert parse_category_path(format_category_path(path)) == path
    assert all(lv and lv == lv.strip() for lv in path)
    assert path_prefixes(path)[-1:] == ([path] if path else [])


any_level = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).map(
    lambda s: " ".join(s.split())).filter(bool)


@given(st.lists(any_level, min_size=1, max_size=6))
def test_levels_holding_separators_or_backslashes_round_trip(levels: list[str]) -> None:
    """The escaping rule (products.py): any level, '>' and '\\' included, survives format/parse."""
    assert parse_category_path(format_category_path(levels)) == tuple(levels)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["id", "title", "categories", "attributes", "description", "images",
                                        "market", "other"]), json_like, max_size=8))
def test_any_record_is_a_product_or_a_named_rejection(raw: dict) -> None:
    try:
        p = Product.from_mapping(raw)
    except InvalidRecord as exc:
        assert exc.reason and " " not in exc.reason
        return
    assert p.id and p.title
    assert Product.from_mapping(p.to_json()) == p


ids = st.sampled_from(list("abcdefghij"))
ranked = st.lists(ids, unique=True, max_size=10).map(
    lambda xs: [Hit(x, float(len(xs) - i)) for i, x in enumerate(xs)])
runs = st.dictionaries(st.sampled_from(["bm25", "text", "image"]), ranked, max_size=3)


@given(runs)
def test_rrf_basic_invariants(r: dict) -> None:
    fused = rrf(r)
    assert {h.id for h in fused} == {h.id for hits in r.values() for h in hits}
    assert all(h.score > 0 for h in fused)
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)
    assert rrf({**r, "empty": []}) == fused  # an empty list changes nothing
    swapped = rrf(dict(reversed(list(r.items()))))
    assert [(h.id, h.score) for h in swapped] == [(h.id, h.score) for h in fused]  # source order is irrelevant


@given(runs, st.data())
def test_rrf_is_monotone_in_rank(r: dict, data: st.DataObject) -> None:
    sources = [s for s, hits in r.items() if len(hits) >= 2]
    assume(sources)
    src = data.draw(st.sampled_from(sources))
    hits = r[src]
    i = data.draw(st.integers(1, len(hits) - 1))
    promoted = hits[:i - 1] + [hits[i]] + [hits[i - 1]] + hits[i + 1:]  # move hits[i] up one place
    before = {h.id: h.score for h in rrf(r)}
    after = {h.id: h.score for h in rrf({**r, src: promoted})}
    assert after[hits[i].id] > before[hits[i].id]
    assert after[hits[i - 1].id] < before[hits[i - 1].id]


@given(runs, st.floats(0, 1), st.floats(0, 1))
def test_linear_scores_are_bounded_by_the_weights(r: dict, w1: float, w2: float) -> None:
    weights = {"bm25": w1, "text": w2, "image": 1.0}
    for h in linear(r, weights):
        assert -1e-9 <= h.score <= sum(weights[s] for s in h.sources) + 1e-9


@pytest.fixture(scope="module", params=LEXICAL_ENGINES)
def small_store(request: pytest.FixtureRequest):
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(Path(tmp) / "s.db", lexical=request.param)  # each engine's query builder
        store.setup(SCHEMA)
        store.upsert(CATALOGUE)
        yield store
        store.close()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=100))
def test_any_query_text_is_safe_for_the_lexical_engine(small_store: EmbeddedStore, text: str) -> None:
    hits = small_store.search(LexicalQuery(text), [], 5)["bm25"]  # never an FTS5 / tantivy syntax error
    assert len(hits) <= 5
    assert isinstance(small_store.schema(), IndexSchema)


# -- evaluation metrics ---------------------------------------------------------------------

ALL_METRICS = ["precision@1", "precision@5", "precision@10", "recall@10", "recall@100", "map@5", "map@10",
               "map_min@5", "map_min@10", "ndcg@10", "mrr@10", "r-precision"]
docs = st.sampled_from([f"d{i}" for i in range(30)])


@given(st.lists(docs, unique=True, max_size=30), st.sets(docs, min_size=1, max_size=15))
def test_metrics_are_bounded_and_conventions_ordered(ranked: list[str], relevant: set[str]) -> None:
    run = {"q": {d: float(len(ranked) - i) for i, d in enumerate(ranked)}}
    scores = evaluate({"q": {d: 1 for d in relevant}}, run, ALL_METRICS)
    assert set(scores) == set(ALL_METRICS)
    assert all(0.0 <= v <= 1.0 + 1e-12 for v in scores.values())
    for k in (5, 10):  # min(k, R) <= R, so the paper's convention is never below trec_eval's
        assert scores[f"map_min@{k}"] >= scores[f"map@{k}"] - 1e-12


@given(st.sets(docs, min_size=1, max_size=15), st.lists(docs, unique=True, max_size=30))
def test_a_perfect_run_scores_the_maximum(relevant: set[str], others: list[str]) -> None:
    ranked = sorted(relevant) + [d for d in others if d not in relevant]
    run = {"q": {d: float(len(ranked) - i) for i, d in enumerate(ranked)}}
    r = len(relevant)
    scores = evaluate({"q": {d: 1 for d in relevant}}, run, ALL_METRICS)
    for k in (1, 5, 10):
        assert scores[f"precision@{k}"] == pytest.approx(min(k, r) / k)
    for name in ("map_min@5", "map_min@10", "ndcg@10", "mrr@10", "r-precision", "recall@100"):
        assert scores[name] == pytest.approx(1.0), name
    assert scores["map@10"] == pytest.approx(min(10, r) / r)


@given(st.sets(docs, min_size=1, max_size=15))
def test_an_empty_run_scores_zero_and_unjudged_queries_are_skipped(relevant: set[str]) -> None:
    qrels = {"q": {d: 1 for d in relevant}, "no-relevant": {"d0": 0}}
    scores = evaluate(qrels, {}, ALL_METRICS)
    assert all(v == 0.0 for v in scores.values())
    assert evaluate({"no-relevant": {"d0": 0}}, {"no-relevant": {"d0": 1.0}}, ALL_METRICS) == {
        m: 0.0 for m in ALL_METRICS}  # no query with a relevant item: nothing is averaged
    assert set(METRICS) >= {m.split("@")[0] for m in ALL_METRICS}
