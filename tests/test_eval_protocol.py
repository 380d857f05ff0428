"""The evaluation protocol: splits, settings, query sets, relevance, seen/unseen, errors, tuning."""

from __future__ import annotations

import pytest

from ctir_es.errors import ConfigError
from ctir_es.evaluation import error_analysis
from ctir_es.evaluation.runner import tune_linear
from ctir_es.evaluation.systems import (
    LEXICAL_SYSTEMS,
    HybridSystem,
    LexicalSystem,
    needed,
    selector,
)
from ctir_es.products import Product
from ctir_es.protocol import (
    SplitSpec,
    build_query_set,
    dataset_hash,
    known_nodes,
    labels,
    node_id,
    split_of,
    split_products,
)
from ctir_es.schema import Hit


def prod(pid: str, *paths: tuple[str, ...], title: str = "a thing") -> Product:
    return Product(id=pid, title=title, categories=tuple(paths))


CATALOGUE = [
    prod("p1", ("Kitchen", "Cookware", "Pans")),
    prod("p2", ("Kitchen", "Cookware", "Pots")),
    prod("p3", ("Kitchen", "Cookware")),  # filed at an inner node
    prod("p4", ("Kitchen", "Appliances", "Blenders")),
    prod("p5", ("Watches", "Men")),
    prod("p6", ("Watches", "Women"), ("Gifts", "For Her")),  # two paths
    prod("p7"),  # no category: a distractor only
]


def test_split_is_a_function_of_id_and_seed_only() -> None:
    ids = [f"id{i}" for i in range(3000)]
    spec = SplitSpec(seed=13)
    first = {i: split_of(i, spec) for i in ids}
    assert first == {i: split_of(i, spec) for i in reversed(ids)}  # order does not matter
    counts = {s: sum(1 for v in first.values() if v == s) for s in ("train", "val", "test")}
    assert abs(counts["train"] / 3000 - 0.7) < 0.04 and abs(counts["test"] / 3000 - 0.2) < 0.04
    other = {i: split_of(i, SplitSpec(seed=14)) for i in ids}
    assert other != first
    parts = split_products([Product(id=i, title="t") for i in ids], spec)
    assert sum(len(v) for v in parts.values()) == 3000


@pytest.mark.parametrize("bad", [(0.5, 0.5, 0.5), (-0.1, 0.6, 0.5)])
def test_split_fractions_are_checked(bad: tuple[float, float, float]) -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        SplitSpec(13, *bad)


def test_split_text_is_parsed_or_says_what_it_wants() -> None:
    """``--split TRAIN,VAL,TEST`` (evaluate and its tasks) is parsed by ``SplitSpec.parse``."""
    assert SplitSpec.parse("0.6,0.2,0.2", 5) == SplitSpec(seed=5, train=0.6, val=0.2, test=0.2)
    with pytest.raises(ConfigError, match="--split wants three fractions TRAIN,VAL,TEST"):
        SplitSpec.parse("0.7,0.3", 5)
    with pytest.raises(ConfigError, match="sum to 1"):
        SplitSpec.parse("0.7,0.3,0.3", 5)


def test_labels_per_setting() -> None:
    p6 = CATALOGUE[5]
    assert labels(p6, "general") == {("Watches",), ("Gifts",)}
    assert labels(p6, "specific") == {("Watches", "Women"), ("Gifts", "For Her")}
    drawn = labels(CATALOGUE[0], "random", seed=13)
    assert len(drawn) == 1 and next(iter(drawn)) in {("Kitchen",), ("Kitchen", "Cookware"), ("Kitchen", "Cookware", "Pans")}
    assert drawn == labels(CATALOGUE[0], "random", seed=13)  # seeded
    levels = {len(next(iter(labels(prod(f"x{i}", ("A", "B", "C", "D")), "random", seed=1)))) for i in range(200)}
    assert levels == {1, 2, 3, 4}  # every level gets drawn
    with pytest.raises(ConfigError, match="supported: random, general, specific"):
        labels(p6, "sideways")


def test_subtree_and_exact_relevance() -> None:
    spec = build_query_set(CATALOGUE, "specific", relevance="subtree")
    by_node = {q.node: q for q in spec.queries}
    cookware = by_node[("Kitchen", "Cookware")]  # p3's own leaf
    assert set(spec.qrels[cookware.qid]) == {"p1", "p2", "p3"}  # subtree: everything under it
    exact = build_query_set(CATALOGUE, "specific", relevance="exact")
    assert set(exact.qrels[cookware.qid]) == {"p3"}  # exact: only the product filed there
    general = build_query_set(CATALOGUE, "general")
    kitchen = next(q for q in general.queries if q.node == ("Kitchen",))
    assert set(general.qrels[kitchen.qid]) == {"p1", "p2", "p3", "p4"}
    assert {q.node for q in general.queries} == {("Kitchen",), ("Watches",), ("Gifts",)}
    assert "p7" in general.candidates  # ranked as a distractor
    assert all(general.qrels[q.qid] for q in general.queries)  # every query has a relevant product


def test_query_text_and_ids() -> None:
    path = build_query_set(CATALOGUE, "specific", query_text_mode="path")
    leaf = build_query_set(CATALOGUE, "specific", query_text_mode="leaf")
    assert {q.text for q in path.queries} >= {"Kitchen > Cookware > Pans", "Gifts > For Her"}
    assert {q.text for q in leaf.queries} >= {"Pans", "For Her"}
    assert [q.qid for q in path.queries] == [q.qid for q in leaf.queries]
    ids = [q.qid for q in path.queries]
    assert len(set(ids)) == len(ids) and all(" " not in i for i in ids)
    assert node_id("specific", ("A", "B")) != node_id("specific", ("A B",))  # levels, not joined text


def test_seen_and_unseen_come_from_the_train_split() -> None:
    train = [prod("t1", ("Kitchen", "Cookware", "Pans"))]
    qs = build_query_set(CATALOGUE, "specific", train_nodes=known_nodes(train))
    seen = {q.node: q.seen for q in qs.queries}
    assert seen[("Kitchen", "Cookware", "Pans")] and seen[("Kitchen", "Cookware")]  # an ancestor counts
    assert not seen[("Kitchen", "Cookware", "Pots")] and not seen[("Watches", "Men")]


def test_dataset_hash_ignores_image_folders_but_not_content() -> None:
    a = [Product(id="1", title="x", images=("/data/a/images/1.jpg",))]
    b = [Product(id="1", title="x", images=("/elsewhere/images/1.jpg",))]
    c = [Product(id="1", title="y", images=("/data/a/images/1.jpg",))]
    assert dataset_hash(a) == dataset_hash(b) != dataset_hash(c)


def test_error_relation_levels() -> None:
    node = ("Kitchen", "Cookware", "Pans")
    assert error_analysis.relation(node, prod("x", ("Kitchen", "Cookware", "Pots"))) == ("same tree", 1)
    assert error_analysis.relation(node, prod("x", ("Kitchen", "Appliances"))) == ("same tree", 2)
    assert error_analysis.relation(node, prod("x", ("Watches", "Men"), ("Kitchen", "Cookware", "Lids"))) == ("same tree", 1)
    assert error_analysis.relation(node, prod("x", ("Watches",))) == ("different tree", 0)
    assert error_analysis.relation(node, prod("x", (*node, "Small"))) == ("inside node", 0)
    assert error_analysis.relation(node, prod("x")) == ("no category", 0)
    qs = build_query_set(CATALOGUE, "general")
    kitchen = next(q for q in qs.queries if q.node == ("Kitchen",))
    got = error_analysis.analyse(qs, {kitchen.qid: ["p1", "p5", "p6", "p7"]}, {p.id: p for p in CATALOGUE}, k=10)
    assert got["wrong"] == 3 and got["by_kind"]["different tree"] == 2 and got["by_kind"]["no category"] == 1


def test_evaluation_never_searches_categories() -> None:
    for system in LEXICAL_SYSTEMS.values():
        assert "categories" not in system.weights
    with pytest.raises(ConfigError, match="categories are the answer"):
        LexicalSystem("cheat", "cheat", {"title": 1.0, "categories": 2.0})


def test_linear_weight_is_tuned_on_validation() -> None:
    qs = build_query_set(CATALOGUE[:4], "general")  # one query: Kitchen, relevant p1..p4
    qid = qs.queries[0].qid
    base = {
        "bm25-text": {qid: [Hit("p1", 9.0), Hit("x1", 8.0), Hit("x2", 7.0)]},
        "dense": {qid: [Hit("x3", 0.9), Hit("p2", 0.8), Hit("p3", 0.7), Hit("p4", 0.1)]},
    }
    h = HybridSystem("linear:bm25-text+dense", "h", "bm25-text", "dense", "linear")
    got = tune_linear(h, qs, base, [0.0, 0.5, 1.0], "map@10", 100)
    assert set(got["grid"]) == {"0", "0.5", "1"} and got["val_queries"] == 1
    assert got["grid"][f"{got['chosen']:g}"] == max(got["grid"].values())
    empty = build_query_set([], "general")
    assert tune_linear(h, empty, base, [0.0, 1.0], "map@10", 100)["chosen"] == 0.5


def test_system_selection_patterns() -> None:
    pick = selector(["bm25-*", "rrf:*"])
    assert pick("bm25-title") and pick("rrf:bm25-text+minilm") and not pick("minilm")
    need = needed(["linear:bm25-text+minilm"])
    assert need("bm25-text") and need("minilm") and not need("mpnet")
    assert needed(["rrf:*"])("mpnet")
    assert selector(None)("anything") and selector(["all"])("x")


def test_a_recorded_training_split_matches_only_the_same_spec() -> None:
    from ctir_es.protocol import SplitSpec, trained_split

    spec = SplitSpec(seed=7, train=0.6, val=0.2, test=0.2)
    manifest = {"source": {"data": {"split": {"seed": 7, "train": 0.6, "val": 0.2, "test": 0.2, "method": "x"}}}}
    assert spec.matches(trained_split(manifest))
    assert not SplitSpec(seed=8, train=0.6, val=0.2, test=0.2).matches(trained_split(manifest))
    assert not spec.matches({"seed": 7, "train": 0.6, "val": 0.2})  # a field missing is not a match
    assert trained_split({"source": {}}) == {} and trained_split({}) == {}
