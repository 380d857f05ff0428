"""Issue 13: categorize (API, CLI, HTTP), audit, diversified showcase and their measurements -
pure functions first, then the real embedded store over the bundled sample (text-only: the
offline default) with the tiny text model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from service_support import sample_search

from ctir_es.audit import judge
from ctir_es.categorize import core
from ctir_es.cli.main import cli
from ctir_es.diversify import mmr, near_duplicate_flags, normalise_title
from ctir_es.errors import QueryError
from ctir_es.evaluation.audit import auc, inject_noise
from ctir_es.evaluation.categorize import expected_calibration_error, measure
from ctir_es.products import Product
from ctir_es.search import NotFound, Search, Unsupported
from ctir_es.service import create_app

A, B, C = ("Home", "Bed", "Sheets"), ("Home", "Bed", "Pillows"), ("Kitchen", "Mugs", "Coffee")

# ------------------------------------------------------------------------- pure functions


def test_votes_flow_to_every_level_and_sum_to_one_per_level() -> None:
    scores, support = core.vote([((A,), 0.9), ((B,), 0.9), ((C,), 0.5)], temperature=0.05)
    assert scores[("Home",)] == pytest.approx(scores[A] + scores[B])
    for level in (1, 2, 3):
        assert sum(v for n, v in scores.items() if len(n) == level) == pytest.approx(1.0)
    assert support[("Home",)] == 2 and support[C] == 1
    assert scores[A] == pytest.approx(scores[B]) and scores[C] < 1e-3  # 0.4 cosine lower at T=0.05


def test_fuse_is_a_weighted_mean_over_signals_that_voted() -> None:
    fused = core.fuse({"title": {A: 1.0}, "bm25": {B: 1.0}, "image": {}}, {"title": 3.0, "bm25": 1.0})
    assert fused == {A: pytest.approx(0.75), B: pytest.approx(0.25)}  # image did not vote: not in the mean
    assert core.fuse({"title": {A: 1.0}}, {"title": 0.0}) == {}


def test_greedy_path_stops_below_the_threshold() -> None:
    scores = {("Home",): 0.9, ("Home", "Bed"): 0.8, A: 0.3, B: 0.5, ("Kitchen",): 0.1}
    assert core.greedy_path(scores) == B
    assert core.greedy_path(scores, min_score=0.6) == ("Home", "Bed")


def test_measure_counts_levels_hierarchical_f1_and_seen() -> None:
    products = {"p": Product.from_mapping({"id": "p", "title": "t", "categories": [list(A)]}),
                "q": Product.from_mapping({"id": "q", "title": "t", "categories": [list(C)]})}
    preds = {"p": {("Home",): 1.0, ("Home", "Bed"): 1.0, B: 0.6, A: 0.4},  # leaf wrong
             "q": {("Home",): 0.7, ("Kitchen",): 0.3}}  # root wrong
    out = measure(preds, products, [1, 2, 3], seen={A})
    assert out["levels"][1]["top1"] == 0.5 and out["levels"][3]["top1"] == 0.0 and out["levels"][3]["top5"] == 0.5
    assert out["levels"][3]["seen"] == {"n": 1, "top1": 0.0, "top5": 1.0}
    # p predicts Home > Bed > Pillows (2 of 3 right), q predicts Home (0 of 1): hP 2/4, hR 2/6
    assert out["hierarchical"]["precision"] == pytest.approx(0.5)
    assert out["hierarchical"]["recall"] == pytest.approx(2 / 6)


def test_calibration_error() -> None:
    assert expected_calibration_error([0.9] * 10, [True] * 9 + [False]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [False, False]) == pytest.approx(1.0)


def test_audit_judge_gap_and_suggestion() -> None:
    fused = {("Home",): 0.9, ("Home", "Bed"): 0.9, A: 0.8, ("Kitchen",): 0.1, ("Kitchen", "Mugs"): 0.1, C: 0.1}
    wrong = judge("x", "bed sheet", C, fused, depth=3)
    right = judge("y", "bed sheet", A, fused, depth=3)
    assert wrong.suggested == A and wrong.gap == pytest.approx(0.8) and wrong.suspicion == pytest.approx(0.77, abs=0.01)
    assert right.suspicion == 0.0 and right.suggested == A


def test_auc_matches_definition_and_noise_is_seeded() -> None:
    assert auc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auc([0.5, 0.5], [True, False]) == 0.5
    rng = np.random.default_rng(0)
    s, y = rng.random(200), rng.random(200) < 0.3
    pairs = [(a > b) + 0.5 * (a == b) for a, ya in zip(s, y, strict=True) if ya for b, yb in zip(s, y, strict=True) if not yb]
    assert auc(s, y) == pytest.approx(np.mean(pairs))
    products = [Product.from_mapping({"id": str(i), "title": "t", "categories": [list(p)]})
                for i, p in enumerate([A, B, C] * 20)]
    noisy, original = inject_noise(products, 0.1, "far", seed=1)
    again, _ = inject_noise(products, 0.1, "far", seed=1)
    assert [p.categories for p in noisy] == [p.categories for p in again] and len(original) == 6
    moved = [p for p in noisy if p.id in original]
    assert all(p.categories[0][0] != original[p.id][0] for p in moved)  # far: another root
    near, orig_near = inject_noise(products, 0.1, "near", seed=1)
    assert all(p.categories[0][:2] == orig_near[p.id][:2] for p in near if p.id in orig_near and orig_near[p.id] != C)


def test_mmr_pushes_near_duplicates_down() -> None:
    titles = {"a": "Red Mug 300 ml", "b": "red mug, 300 ML", "c": "Blue plate"}
    vecs = {i: {} for i in titles}
    assert normalise_title(titles["a"]) == normalise_title(titles["b"])
    ranked = [("a", 1.0), ("b", 0.95), ("c", 0.5)]
    assert near_duplicate_flags(["a", "b", "c"], titles, vecs) == [False, True, False]
    assert mmr(ranked, titles, vecs, 3, lam=1.0) == ["a", "b", "c"]  # lambda 1: relevance only
    assert mmr(ranked, titles, vecs, 3, lam=0.5) == ["a", "c", "b"]
    with pytest.raises(QueryError):
        mmr(ranked, titles, vecs, 3, lam=1.5)


# ------------------------------------------------------------------- the real sample store


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path):
    s, _ = sample_search(tmp_path_factory.mktemp("categorize"), tiny_text_model_dir, None)  # text-only
    yield s
    s.close()


def _some_product(search: Search) -> Product:
    hit = search.search("Kitchen & Dining > Cookware", k=1).results[0]
    return search.product(hit.id).product


def test_categorize_text_on_a_text_only_index(search: Search) -> None:
    p = _some_product(search)
    result = search.categorize(text=p.title, k=3, depth=2)
    voted = {s.name for s in result.signals if s.voters}
    assert {"title", "bm25", "names"} <= voted
    assert {s.name: s.note for s in result.signals if not s.voters}.keys() == {"image", "clip_ita"}
    assert result.categories and all(0.0 <= c.score <= 1.0 for c in result.categories)
    assert sum(c.score for c in result.levels[1]) <= 1.0 + 1e-9
    assert result.categories[0].path == p.categories[0][:2]  # its own title finds its category
    assert set(result.categories[0].signals) <= voted
    assert [c.path for c in result.path] == [result.path[-1].path[:i] for i in range(1, len(result.path) + 1)]


def test_categorize_by_id_never_votes_for_itself(search: Search) -> None:
    p = _some_product(search)
    only_title = search.categorize(id=p.id, signals=["title"], neighbours=1, depth=None)
    own = search.categorize(text=p.title, signals=["title"], neighbours=1, depth=None)
    assert own.categories[0].path == tuple(p.categories[0])  # text: the product itself is the nearest
    nearest_other = search.similar(p.id, k=1).results[0]
    assert only_title.categories[0].path == tuple(nearest_other.categories[0])  # id: the nearest OTHER product
    with pytest.raises(NotFound):
        search.categorize(id="no-such-id")


def test_categorize_product_record_and_bad_input(search: Search) -> None:
    record = Product.from_mapping({"id": "new", "title": "stainless steel pressure cooker",
                                   "attributes": {"Brand": "X"}, "categories": [["Wrong", "Label"]]})
    result = search.categorize(product=record)
    assert all(c.path[0] != "Wrong" for c in result.categories)  # its own categories are never used
    with pytest.raises(QueryError, match="exactly one"):
        search.categorize(text="a", id="b")
    with pytest.raises(QueryError, match="empty"):
        search.categorize(text="   ")
    with pytest.raises(QueryError, match="unknown signal"):
        search.categorize(text="mug", signals=["nope"])
    with pytest.raises(Unsupported, match="no image vectors"):
        search.categorize(b"\x89PNG")


def test_audit_finds_a_product_moved_to_a_far_category(search: Search, tmp_path: Path) -> None:
    p = _some_product(search)  # a cookware product, re-filed under an unrelated root
    far = next(n for n in sorted(search.store.category_counts()) if n[0] != p.categories[0][0] and len(n) == 3)
    search.index([{**p.to_json(), "categories": [list(far)]}])
    try:
        _check_audit(search, p, far)
    finally:
        search.index([p.to_json()])  # put it back for the other tests


def _check_audit(search: Search, p: Product, far: tuple[str, ...]) -> None:
    report = search.audit(k=5)
    assert report.audited == search.store.count()
    top = report.entries[0]
    assert top.id == p.id and top.stored == far
    assert top.suggested[:1] == p.categories[0][:1] and top.gap > 0.3
    assert [e.suspicion for e in report.entries] == sorted((e.suspicion for e in report.entries), reverse=True)
    only = search.audit([p.id], k=5)
    assert only.audited == 1 and only.entries[0].id == p.id
    with pytest.raises(NotFound):
        search.audit(["nope"])


def test_diverse_search_keeps_results_and_reranks(search: Search) -> None:
    plain = search.search("Kitchen & Dining", k=10)
    diverse = search.search("Kitchen & Dining", k=10, diverse=0.5)
    assert len(diverse.results) == 10 and diverse.fusion.endswith("mmr(0.5)")
    assert [r.rank for r in diverse.results] == list(range(1, 11))
    vecs = search.result_vectors([r.id for r in plain.results])
    titles = {r.id: r.title for r in plain.results}
    dup_plain = sum(near_duplicate_flags([r.id for r in plain.results], titles, vecs, 0.9))
    vecs_d = search.result_vectors([r.id for r in diverse.results])
    titles_d = {r.id: r.title for r in diverse.results}
    assert sum(near_duplicate_flags([r.id for r in diverse.results], titles_d, vecs_d, 0.9)) <= dup_plain


# --------------------------------------------------------------------------- CLI and HTTP


@pytest.fixture(scope="module")
def store_path(search: Search) -> Path:
    return Path(search.store.path)  # type: ignore[attr-defined]


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout  # stderr holds notices (categorize --jsonl's summary line)


def test_cli_categorize_and_audit(search: Search, store_path: Path, tmp_path: Path, tiny_text_model_dir: Path) -> None:
    p = _some_product(search)
    out = json.loads(_run("categorize", "--text", p.title, "--json", "--store", str(store_path)))
    assert out["categories"] and {s["name"] for s in out["signals"]} == set(core.SIGNALS)
    table = _run("categorize", "--id", p.id, "--store", str(store_path))
    assert "suggested path:" in table and "signals:" in table
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(json.dumps({"id": "n1", "title": p.title, "categories": [["X"]]}) + "\nnot json\n", encoding="utf-8")
    lines = [json.loads(x) for x in _run("categorize", "--jsonl", str(jsonl), "--json", "--store", str(store_path)).splitlines()]
    assert lines[0]["id"] == "n1" and all(c["path"][0] != "X" for c in lines[0]["categories"])
    assert lines[1]["line"] == 2 and "error" in lines[1]
    bad = CliRunner().invoke(cli, ["categorize", "--text", "a", "--id", "b", "--store", str(store_path)])
    assert bad.exit_code == 2 and "exactly one" in bad.output and "Traceback" not in bad.output
    bad = CliRunner().invoke(cli, ["categorize", "--text", "a", "--weight", "bm25=x", "--store", str(store_path)])
    assert bad.exit_code == 2 and "not a number" in bad.output
    csv_file = tmp_path / "audit.csv"
    audit = json.loads(_run("audit", "--k", "3", "--json", "--csv", str(csv_file), "--store", str(store_path)))
    assert len(audit["entries"]) == 3 and audit["audited"] == search.store.count()
    rows = list(csv.DictReader(csv_file.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == [e["id"] for e in audit["entries"]]
    query = json.loads(_run("query", "Kitchen & Dining", "--diverse", "--json", "--store", str(store_path)))
    assert query["fusion"] == "rrf+mmr(0.7)"


def test_http_categorize_json_and_audit(search: Search) -> None:
    client = TestClient(create_app(search, []), raise_server_exceptions=False)
    p = _some_product(search)
    for body in ({"text": p.title}, {"id": p.id}, {"title": p.title, "attributes": {"Brand": "X"}}):
        r = client.post("/categorize", json=body, params={"k": 3})
        assert r.status_code == 200, r.text
        assert r.json()["categories"] and r.json()["signals"]
    for body, code in (({"text": "a", "id": "b"}, 422), ({"title": "x", "images": ["/etc/passwd"]}, 422),
                       ({"nope": 1}, 422), ([1, 2], 422), ({"id": "missing"}, 404)):
        r = client.post("/categorize", json=body)
        assert r.status_code == code, (body, r.text)
        assert set(r.json()["error"]) == {"code", "message"}
    r = client.post("/categorize", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.get("/audit", params={"k": 2})
    assert r.status_code == 200 and len(r.json()["entries"]) == 2
