"""CLIP-ITA generalisation: pairs at every level, the positive mask, train fractions, backoff."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import sample_products

from ctir_es.encoders import OnnxTextEncoder
from ctir_es.products import path_prefixes
from ctir_es.protocol import SplitSpec
from ctir_es.training.backoff import Backoff, product_vector, query_vector, seen_distance, tune
from ctir_es.training.data import TrainingData
from ctir_es.training.errors import TrainingError
from ctir_es.training.features import FeatureCache
from ctir_es.training.train import TrainConfig


def test_ancestor_pairs_cover_every_level_and_positives_are_the_whole_path() -> None:
    products = sample_products()
    label = TrainingData.build(products, "specific", SplitSpec(13))
    every = TrainingData.build(products, "specific", SplitSpec(13), pairs="ancestors")
    i = every.index["train"][0]
    paths = [p for p in every.products[i].categories if p]
    assert set(every.candidates(i)) == {n for p in paths for n in path_prefixes(p)} == every.positives(i)
    assert set(label.candidates(i)) == set(paths)
    assert len(every.pairs("train")) > len(label.pairs("train"))
    # the random setting draws one level per epoch with label pairs, all levels with ancestors
    rand = TrainingData.build(products, "random", SplitSpec(13))
    assert len(rand.pairs("train")) == len(rand.index["train"])
    rand_all = TrainingData.build(products, "random", SplitSpec(13), pairs="ancestors")
    assert len(rand_all.pairs("train")) == sum(len(rand_all.candidates(j)) for j in rand_all.index["train"])
    with pytest.raises(Exception, match="supported: label, ancestors"):
        TrainingData.build(products, "specific", pairs="parents")


def test_train_fraction_keeps_a_stable_subset_and_never_moves_products_to_test() -> None:
    products = sample_products()
    full = TrainingData.build(products, "specific", SplitSpec(13))
    parts = {f: TrainingData.build(products, "specific", SplitSpec(13), train_fraction=f) for f in (0.1, 0.5)}
    for f, d in parts.items():
        assert set(d.index["train"]) < set(full.index["train"])
        assert d.index["test"] == full.index["test"] and d.index["val"] == full.index["val"]
        assert d.unused_train == len(full.index["train"]) - len(d.index["train"])
        assert abs(len(d.index["train"]) / len(full.index["train"]) - f) < 0.15
    assert set(parts[0.1].index["train"]) <= set(parts[0.5].index["train"])  # nested: a learning curve
    assert parts[0.1].train_nodes <= full.train_nodes
    again = TrainingData.build(list(reversed(products)), "specific", SplitSpec(13), train_fraction=0.5)
    assert {again.products[i].id for i in again.index["train"]} == {parts[0.5].products[i].id
                                                                     for i in parts[0.5].index["train"]}
    with pytest.raises(TrainingError):
        TrainingData.build(products, "specific", train_fraction=0.0)


def test_info_nce_mask_drops_other_positives_from_both_softmaxes() -> None:
    torch = pytest.importorskip("torch")
    from ctir_es.training.loss import info_nce

    gen = torch.Generator().manual_seed(0)
    prods = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=-1)
    cats = torch.nn.functional.normalize(torch.randn(3, 8, generator=gen), dim=-1)
    targets = torch.tensor([0, 1, 2, 2])
    tau = torch.tensor(0.1)
    none = torch.zeros(4, 3, dtype=torch.bool)
    assert torch.allclose(info_nce(prods, cats, targets, tau), info_nce(prods, cats, targets, tau, mask=none))
    mask = none.clone()
    mask[0, 1] = True  # product 0 also belongs to category 1
    mask[0, 0] = True  # the target itself is never masked
    masked = info_nce(prods, cats, targets, tau, mask=mask)
    assert torch.isfinite(masked)
    # by hand: row 0 of p->c without category 1, column 1 of c->p without product 0
    logits = prods @ cats.T / tau
    f = torch.nn.functional
    pc = torch.stack([f.cross_entropy(logits[0, [0, 2]][None], torch.tensor([0]))[()],
                      *[f.cross_entropy(logits[i][None], targets[i:i + 1]) for i in (1, 2, 3)]]).mean()
    cp0 = -f.log_softmax(logits[:, 0], 0)[0]
    cp1 = -f.log_softmax(logits[1:, 1], 0)[0]
    cp2 = -(f.log_softmax(logits[:, 2], 0)[[2, 3]]).mean()
    expected = 0.5 * pc + 0.5 * torch.stack([cp0, cp1, cp2]).mean()
    assert torch.allclose(masked, expected, atol=1e-5)
    assert not torch.allclose(masked, info_nce(prods, cats, targets, tau))


def test_seen_distance_and_backoff_endpoints() -> None:
    seen = {("A",), ("A", "B")}
    assert seen_distance(("A", "B"), seen) == 0
    assert seen_distance(("A", "B", "C"), seen) == 1
    assert seen_distance(("A", "X", "Y"), seen) == 2
    assert seen_distance(("Z", "Y"), seen) == 2
    b = Backoff(0.8, 0.5)
    assert b.alpha(0) == pytest.approx(0.8) and b.alpha(2) == pytest.approx(0.2)

    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    tq, tp, zq, zp = (unit(rng.normal(size=s)) for s in ((5, 6), (9, 6), (5, 6), (9, 6)))
    alphas = np.asarray([1.0, 0.0, 0.5, 0.8, 0.2])
    mixed = b.scores(alphas, tq, tp, zq, zp)
    assert np.allclose(mixed[0], tq[0] @ tp.T) and np.allclose(mixed[1], zq[1] @ zp.T)
    # one vector field serves the same ranking: [head; title]/sqrt(2) against the mixed query
    served = query_vector(alphas, tq, zq) @ product_vector(tp, zp).T
    assert (np.argsort(-served, axis=1) == np.argsort(-mixed, axis=1)).all()
    assert np.allclose(np.linalg.norm(product_vector(tp, zp), axis=1), 1.0)


def test_tune_takes_the_best_grid_point_and_prefers_the_trained_model_on_ties() -> None:
    chosen, grid = tune(lambda b: -abs(b.weight_seen - 0.5) - abs(b.decay - 0.25))
    assert chosen == Backoff(0.5, 0.25) and len(grid) > 10
    flat, _ = tune(lambda b: 1.0)
    assert flat == Backoff(1.0, 1.0)


def test_train_tunes_the_backoff_and_writes_runs(tiny_onnx_text: Path, tmp_path: Path) -> None:
    from ctir_es.training.train import by_rank, train

    products = sample_products()
    text = OnnxTextEncoder(tiny_onnx_text)
    result = train(products, TrainConfig(modalities=("title", "attributes"), epochs=2, hidden=32, pairs="ancestors",
                                         train_fraction=0.5), tmp_path / "run", text_encoder=text,
                   cache=FeatureCache(tmp_path / "features"))
    assert result.data["pairs"] == "ancestors" and result.data["unused_train_products"] > 0
    assert {"weight_seen", "decay", "grid"} <= set(result.backoff)
    # the tuned point is the best of the grid on validation, so never below either endpoint there
    grid = result.backoff["grid"]
    chosen = grid[f"{result.backoff['weight_seen']:g},{result.backoff['decay']:g}"]
    assert chosen >= grid["1,1"] and chosen >= grid["0,1"]
    for split in ("val", "test"):
        assert set(result.runs[split]) == {"zero-shot", "clip-ta", "clip-ta+backoff"}
    test = result.test["exact"]
    hist = test["clip-ta"]["distance_histogram"]
    assert sum(hist.values()) == test["clip-ta"]["queries"] and hist.get("0", 0) == test["clip-ta"]["seen_queries"]
    ranked = by_rank(result.runs["test"]["zero-shot"])
    first = next(iter(ranked.values()))
    assert list(first.values()) == sorted(first.values(), reverse=True)
