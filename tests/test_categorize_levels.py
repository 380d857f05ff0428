"""Categorize signal weights per level of the tree (``categorize.core.SignalWeights``): the
fusion, the record kept with the index, and the tuning ``learn`` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctir_es.categorize import core
from ctir_es.categorize.served import CATEGORIZE_KEY, save_weights, served_weights
from ctir_es.learn.compare import accuracy, tune_signal_weights
from ctir_es.products import Product
from ctir_es.schema import IndexSchema, VectorField
from ctir_es.store.embedded import EmbeddedStore

A, AB, AC, D, DE = ("A",), ("A", "B"), ("A", "C"), ("D",), ("D", "E")


def test_per_level_weights_fuse_each_level_with_its_own_set() -> None:
    signals = {"x": {A: 1.0, AB: 1.0}, "y": {D: 1.0, AC: 0.2, A: 0.2}}
    shared = core.fuse(signals, {"x": 1.0, "y": 1.0})
    assert shared[A] == pytest.approx(0.6) and shared[AB] == pytest.approx(0.5)
    # level 1 listens to y only, level 2 to both
    levels = core.fuse(signals, core.SignalWeights({"x": 1.0, "y": 1.0}, {1: {"x": 0.0, "y": 1.0}}))
    assert levels[A] == pytest.approx(0.2) and levels[D] == pytest.approx(1.0)
    assert levels[AB] == pytest.approx(0.5) and levels[AC] == pytest.approx(0.1)
    assert core.ranked_at(levels, 1, 1) == [D] and core.ranked_at(shared, 1, 1) == [A]
    # no levels: the same as a plain mapping
    assert core.fuse(signals, core.SignalWeights({"x": 1.0, "y": 1.0})) == shared


def test_signal_weights_json_round_trip_and_flat_form() -> None:
    weights = core.SignalWeights({"title": 1.0, "clip_ita": 0.5}, {3: {"title": 0.0, "clip_ita": 1.0}})
    assert core.SignalWeights.from_json(weights.to_json()) == weights
    assert core.SignalWeights.from_json({"title": 2}) == core.SignalWeights({"title": 2.0})
    merged = core.SignalWeights.of({"title": 2.0}, {"title": 1.0, "bm25": 0.5})
    assert merged.default == {"title": 2.0, "bm25": 0.5} and merged.at(2) == merged.default


def _products() -> dict[str, Product]:
    # signal "leaf" is right at level 2 and wrong at level 1; "root" the other way round
    items = {}
    for i in range(12):
        items[f"p{i}"] = Product.from_mapping({"id": f"p{i}", "title": f"t{i}",
                                               "categories": [["A", "B"] if i % 2 else ["D", "E"]]})
    return items


def _signals(products: dict[str, Product]) -> dict[str, dict[str, core.Scores]]:
    leaf: dict[str, core.Scores] = {}
    root: dict[str, core.Scores] = {}
    for pid, p in products.items():
        true = tuple(p.categories[0])
        other = DE if true == AB else AB
        leaf[pid] = {other[:1]: 0.9, true[:1]: 0.1, true: 0.9, other: 0.1}  # wrong root, right leaf
        root[pid] = {true[:1]: 0.9, other[:1]: 0.1, other: 0.9, true: 0.1}  # right root, wrong leaf
    return {"leaf": leaf, "root": root}


def test_tuning_picks_a_set_per_level_that_beats_every_single_signal() -> None:
    products = _products()
    signals = _signals(products)
    tuned = tune_signal_weights(signals, products, {"leaf": 1.0, "root": 1.0})
    result = accuracy(signals, tuned, products, set())
    assert result["levels"][1]["top1"] == 1.0 and result["levels"][2]["top1"] == 1.0
    for name in signals:
        alone = accuracy(signals, {name: 1.0}, products, set())
        assert min(alone["levels"][lv]["top1"] for lv in (1, 2)) == 0.0
    assert tuned.levels  # one shared set cannot be right at both levels here


def test_served_weights_round_trip_with_levels_and_damage(tmp_path: Path) -> None:
    schema = IndexSchema({"title_vector": VectorField(4, "cosine", {"id": "m"})})
    store = EmbeddedStore(tmp_path / "s.db")
    try:
        store.setup(schema)
        weights = core.SignalWeights({"title": 1.0}, {2: {"title": 0.5, "clip_ita": 1.0}})
        save_weights(store, schema, weights, {"note": "test"})
        assert served_weights(store, schema) == weights
        # tuned on other encoders: not served
        other = IndexSchema({"title_vector": VectorField(4, "cosine", {"id": "other"})})
        assert served_weights(store, other) is None
        # a damaged level serves the defaults rather than half a record
        raw = store.get_metadata(CATEGORIZE_KEY)
        assert raw is not None
        store.put_metadata(CATEGORIZE_KEY, {**raw, "levels": {"2": {"title": "nan-ish"}}})
        assert served_weights(store, schema) is None
    finally:
        store.close()


def test_a_fusion_replaces_the_best_single_signal_only_when_it_wins_clearly() -> None:
    from ctir_es.learn.compare import clearly_better

    def right(n_right: int, wrong: range) -> dict[str, bool]:
        return {f"p{i}": i not in wrong for i in range(n_right)}

    single = right(100, range(90, 100))  # 90 right
    assert clearly_better(right(100, range(95, 100)), single)  # +5, no losses: 5 >= 2 sqrt(5)
    # +2 and -1: one product better on a few hundred is noise (1 < 2 sqrt(3))
    assert not clearly_better({**right(100, range(92, 100)), "p0": False}, single)
    # +4 and -1: 3 < 2 sqrt(5) = 4.5 (one standard deviation, 2.2, would have taken it)
    assert not clearly_better({**right(100, range(94, 100)), "p0": False}, single)
    assert not clearly_better(single, single)
    assert clearly_better(right(100, range(99, 100)), single)  # +9: clear
