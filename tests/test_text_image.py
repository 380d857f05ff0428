"""Image-to-text and text-image evaluation (issue 13 item 6): CLIP title vectors at ingest,
image queries that also match titles (products without a photo included), and
``evaluate --task t2i|i2t`` - on the embedded store and the real Elasticsearch node, with the
tiny random CLIP (ONNX) built by conftest and, where a known answer is needed, an aligned
stand-in encoder."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import sample_products
from PIL import Image

from ctir_es.cli.main import cli
from ctir_es.config import Settings
from ctir_es.encoders.registry import EncoderConfig, load_image_encoder
from ctir_es.errors import ConfigError
from ctir_es.evaluation import text_image as ti
from ctir_es.evaluation.task_input import TaskInput
from ctir_es.ingest.images import ImageLoader
from ctir_es.ingest.pipeline import IngestOptions, Pipeline, index_schema
from ctir_es.ingest.report import IngestReport
from ctir_es.products import Product
from ctir_es.protocol import SplitSpec, split_products
from ctir_es.ranking.plan import SOURCE_WEIGHTS, plan_query
from ctir_es.sample import sample_path
from ctir_es.schema import IndexSchema, VectorField
from ctir_es.search import Search
from ctir_es.store.base import Store
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.vocabulary import (
    CLIP_TITLE_SOURCE,
    CLIP_TITLE_VECTOR,
    IMAGE_SOURCE,
    IMAGE_VECTOR,
)

SAMPLE_IMAGES = sample_path().parent / "images"


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def clip(tiny_clip: Any, tiny_onnx_clip: Path) -> Any:
    """The tiny random CLIP on onnxruntime, loaded the way ingest loads it."""
    return load_image_encoder(EncoderConfig(clip_architecture=str(tiny_clip.config),
                                            clip_weights=str(tiny_clip.checkpoint)))


def photo(i: int = 0) -> Path:
    return sorted(SAMPLE_IMAGES.glob("*.jpg"))[i]


def small_catalogue() -> list[Product]:
    """Four products with photos and two without (their titles are all an image query can find)."""
    with_photo = [Product(f"ph{i}", f"Steel pressure cooker {i} litre", (("Kitchen", "Cookware"),),
                          images=(str(photo(i)),)) for i in range(4)]
    without = [Product("nophoto-1", "Analog watch with a leather strap", (("Watches", "Men"),)),
               Product("nophoto-2", "Cotton bath towel", (("Bath", "Towels"),))]
    return with_photo + without


def ingest(store: Store, products: Sequence[Product], clip: Any, options: IngestOptions | None = None) -> IngestReport:
    options = options or IngestOptions()
    loader = ImageLoader()
    pipeline = Pipeline(store, text_encoder=None, image_encoder=clip, load_images=loader.load_many, options=options)
    return pipeline.run(products, IngestReport(source="test"))


# ------------------------------------------------------------------------------ ingest


def test_ingest_adds_clip_title_vectors_to_every_product(tmp_path: Path, clip: Any) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    products = small_catalogue()
    report = ingest(store, products, clip)
    assert report.indexed == 6 and report.images_missing == {"no_image": 2}
    schema = store.schema()
    assert schema is not None and set(schema.vectors) == {IMAGE_VECTOR, CLIP_TITLE_VECTOR}
    assert schema.vectors[CLIP_TITLE_VECTOR].encoder["id"] == clip.manifest["id"]
    assert schema.vectors[CLIP_TITLE_VECTOR].dims == clip.dims
    titles = store.vectors([p.id for p in products], CLIP_TITLE_VECTOR)
    assert set(titles) == {p.id for p in products}  # photo or not
    expected = clip.encode_texts([p.title for p in products])
    for p, want in zip(products, expected, strict=True):
        np.testing.assert_allclose(titles[p.id], want, atol=1e-5)
    assert set(store.vectors([p.id for p in products], IMAGE_VECTOR)) == {f"ph{i}" for i in range(4)}
    assert store.get(["nophoto-1"])["nophoto-1"].vector_fields == (CLIP_TITLE_VECTOR,)


def test_clip_titles_can_be_turned_off(tmp_path: Path, clip: Any) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    ingest(store, small_catalogue(), clip, IngestOptions(clip_titles=False))
    schema = store.schema()
    assert schema is not None and set(schema.vectors) == {IMAGE_VECTOR}
    assert index_schema(None, clip, clip_titles=False).vectors.keys() == {IMAGE_VECTOR}
    assert index_schema(None, None).vectors == {}  # no CLIP, no CLIP titles


# ------------------------------------------------------------------------------ planning


def _schema(*fields: str) -> IndexSchema:
    return IndexSchema({f: VectorField(4) for f in fields})


def test_image_plan_queries_the_clip_titles_with_the_same_vector() -> None:
    vec = np.array([1, 0, 0, 0], dtype=np.float32)
    plan = plan_query(mode="image", text=None, schema=_schema(IMAGE_VECTOR, CLIP_TITLE_VECTOR),
                      text_encoder=None, image_encoder=None, image_vector=vec)
    assert plan.sources == [IMAGE_SOURCE, CLIP_TITLE_SOURCE]
    by_source = {v.source: v for v in plan.vectors}
    assert by_source[CLIP_TITLE_SOURCE].field == CLIP_TITLE_VECTOR
    assert by_source[CLIP_TITLE_SOURCE].vector is by_source[IMAGE_SOURCE].vector
    assert plan.weights == dict(SOURCE_WEIGHTS["image"]) == {IMAGE_SOURCE: 1.0, CLIP_TITLE_SOURCE: 0.3}
    # an index without CLIP titles (built before them, or with them turned off): image only
    old = plan_query(mode="image", text=None, schema=_schema(IMAGE_VECTOR), text_encoder=None,
                     image_encoder=None, image_vector=vec)
    assert old.sources == [IMAGE_SOURCE]


def test_text_and_category_plans_do_not_use_clip_titles(clip: Any) -> None:
    schema = _schema(IMAGE_VECTOR, CLIP_TITLE_VECTOR)
    for mode, text in (("text", "steel cooker"), ("category", "Kitchen > Cookware")):
        plan = plan_query(mode=mode, text=text, schema=schema, text_encoder=None, image_encoder=clip)
        assert CLIP_TITLE_SOURCE not in plan.sources


# ------------------------------------------------------------------------------ image queries


def _check_image_query_reaches_titles(store: Store, clip: Any) -> None:
    """An image query lists every product by its title in the clip_title source, in the exact
    order of cosine(image, title); photo-less products are reached only that way."""
    products = small_catalogue()
    ingest(store, products, clip)
    search = Search(store, None, clip, ImageLoader())
    query = photo(7)  # not one of the catalogue's photos
    res = search.search(image=str(query), mode="image", k=10)
    assert res.sources == [IMAGE_SOURCE, CLIP_TITLE_SOURCE]
    assert {r.id for r in res.results} == {p.id for p in products}
    by_id = {r.id: r for r in res.results}
    for pid in ("nophoto-1", "nophoto-2"):
        assert list(by_id[pid].sources) == [CLIP_TITLE_SOURCE]
    with Image.open(query) as im:
        qvec = clip.encode_images([im.convert("RGB")])[0]
    cosines = clip.encode_texts([p.title for p in products]) @ qvec
    expected = [products[i].id for i in np.argsort(-cosines, kind="stable")]
    title_ranks = {r.id: r.sources[CLIP_TITLE_SOURCE].rank for r in res.results}
    assert sorted(title_ranks, key=title_ranks.__getitem__) == expected


def test_image_query_reaches_products_without_a_photo_embedded(tmp_path: Path, clip: Any) -> None:
    _check_image_query_reaches_titles(EmbeddedStore(tmp_path / "s.db"), clip)


def test_http_image_upload_reaches_products_without_a_photo(tmp_path: Path, clip: Any) -> None:
    from fastapi.testclient import TestClient

    from ctir_es.service import create_app

    store = EmbeddedStore(tmp_path / "s.db")
    ingest(store, small_catalogue(), clip)
    client = TestClient(create_app(Search(store, None, clip, ImageLoader()), [SAMPLE_IMAGES]),
                        raise_server_exceptions=False)
    query = photo(7)
    r = client.post("/search/image", files={"file": (query.name, query.read_bytes(), "image/jpeg")}, params={"k": 10})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["sources"] == [IMAGE_SOURCE, CLIP_TITLE_SOURCE]
    by_id = {x["id"]: x for x in page["results"]}
    assert set(by_id) == {p.id for p in small_catalogue()}
    assert list(by_id["nophoto-1"]["sources"]) == [CLIP_TITLE_SOURCE]
    assert set(by_id["ph0"]["sources"]) == {IMAGE_SOURCE, CLIP_TITLE_SOURCE}


@pytest.mark.integration
def test_image_query_reaches_products_without_a_photo_elasticsearch(make_store: Callable[..., Any], clip: Any) -> None:
    store = make_store()
    _check_image_query_reaches_titles(store, clip)
    mapping = store.client.indices.get_mapping(index=store.index)
    props = next(iter(mapping.body.values()))["mappings"]["properties"]
    assert props[CLIP_TITLE_VECTOR]["type"] == "dense_vector"
    assert props[CLIP_TITLE_VECTOR]["dims"] == clip.dims


@pytest.mark.integration
def test_clip_titles_are_added_to_an_elasticsearch_index_built_without_them(
    make_store: Callable[..., Any], clip: Any
) -> None:
    store = make_store()
    ingest(store, small_catalogue()[:2], clip, IngestOptions(clip_titles=False))
    assert set(store.schema().vectors) == {IMAGE_VECTOR}
    ingest(store, small_catalogue(), clip)  # a later ingest with CLIP titles on
    assert CLIP_TITLE_VECTOR in store.schema().vectors
    assert set(store.vectors(["ph0", "nophoto-1"], CLIP_TITLE_VECTOR)) == {"ph0", "nophoto-1"}


# ------------------------------------------------------------------------------ metrics (pure)


def test_recall_counts_a_query_whose_match_is_in_the_top_k() -> None:
    qrels = {"a": {"a"}, "b": {"b"}, "c": {"c"}}
    run = {"a": ["a", "b", "c"], "b": ["a", "c", "b"], "c": ["a", "b"]}
    got = ti.recall(run, qrels, (1, 2, 3))
    assert got == {"n": 3, "recall@1": pytest.approx(1 / 3), "recall@2": pytest.approx(1 / 3),
                   "recall@3": pytest.approx(2 / 3)}
    assert ti.recall({}, qrels, (1,))["recall@1"] == 0.0  # a query missing from the run found nothing
    assert ti.recall(run, qrels, (1,), queries=[])["recall@1"] is None


def test_pairs_with_the_same_title_match_each_other() -> None:
    got = ti.matches({"a": "Red  Mug", "b": "red mug", "c": "Blue mug"})
    assert got == {"a": {"a", "b"}, "b": {"a", "b"}, "c": {"c"}}


def test_rank_exact_orders_by_cosine_with_ties_by_id() -> None:
    gallery = {"z": np.array([1.0, 0.0]), "a": np.array([1.0, 0.0]), "m": np.array([0.0, 1.0])}
    queries = {"q1": np.array([1.0, 0.0]), "q2": np.array([0.0, 1.0])}
    assert ti.rank_exact(queries, gallery, 3) == {"q1": ["a", "z", "m"], "q2": ["m", "a", "z"]}
    assert ti.rank_exact(queries, gallery, 1) == {"q1": ["a"], "q2": ["m"]}


def test_measure_splits_by_top_category_and_chance_is_k_over_pairs() -> None:
    qrels = {"a": {"a"}, "b": {"b"}, "c": {"c"}, "d": {"d"}}
    run = {"a": ["a"], "b": ["a"], "c": ["c"], "d": ["a"]}
    got = ti.measure(run, qrels, {"X": ["a", "b"], "Y": ["c", "d"]}, (1,))
    assert got["overall"] == {"n": 4, "recall@1": 0.5}
    assert got["by_top_category"] == {"X": {"n": 2, "recall@1": 0.5}, "Y": {"n": 2, "recall@1": 0.5}}
    assert ti.chance(20, (1, 5, 10)) == {"recall@1": 0.05, "recall@5": 0.25, "recall@10": 0.5}
    assert ti.chance(4, (10,)) == {"recall@10": 1.0}


def test_config_refuses_unknown_directions_and_splits() -> None:
    with pytest.raises(ConfigError, match="supported: t2i, i2t"):
        ti.TextImageConfig(directions=("x2y",))
    with pytest.raises(ConfigError, match="supported: train, val, test"):
        ti.TextImageConfig(held_out=("holdout",))


# ------------------------------------------------------------------------------ the runner


class AlignedClip:
    """A stand-in CLIP whose two towers agree by construction: image ``i`` (a solid colour
    whose red channel is ``i``) and the title ``item i`` both map to one-hot ``i``; with
    ``crossed`` the title maps to minus that, so its own image comes last. It gives the runner
    a known answer (R@1 of 1.0, and R@10 of 0.0 crossed), which a random model cannot."""

    dims = 256

    def __init__(self, crossed: bool = False) -> None:
        self.crossed = crossed
        self.manifest = {"id": f"aligned@{int(crossed)}", "kind": "test-aligned", "name": "aligned",
                         "dims": self.dims, "normalised": True}

    def _onehot(self, values: Sequence[int], sign: float = 1.0) -> np.ndarray:
        out = np.zeros((len(values), self.dims), dtype=np.float32)
        out[np.arange(len(values)), np.asarray(values) % self.dims] = sign
        return out

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self._onehot([int(im.convert("RGB").getpixel((0, 0))[0]) for im in images])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        numbers = [int(re.search(r"item (\d+)", t).group(1)) for t in texts]  # type: ignore[union-attr]
        return self._onehot(numbers, -1.0 if self.crossed else 1.0)


def coloured_catalogue(root: Path, n: int = 120) -> list[Product]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = root / f"c{i}.png"
        Image.new("RGB", (8, 8), (i, 0, 0)).save(path)
        top = ("Kitchen", "Watches", "Bath")[i % 3]
        images = (str(path),) if i % 10 != 9 else ()  # every tenth product has no photo
        out.append(Product(f"p{i:03d}", f"item {i}", ((top, "Sub"),), images=images))
    return out


def _settings(tmp_path: Path, **over: Any) -> Settings:
    return Settings(store=tmp_path / "unused.db", cache_dir=tmp_path / "cache", **over)


def _check_aligned_runner(products: list[Product], settings: Settings) -> dict[str, Any]:
    config = ti.TextImageConfig(work_dir=settings.cache_dir / "eval")
    task = TaskInput(products, settings, {"kind": "test"})
    report = ti.evaluate_text_image(task, config, image_encoder=AlignedClip())
    held_out = split_products(products, SplitSpec())["test"]
    assert report["held_out"] == len(held_out)
    assert report["pairs"] == sum(1 for p in held_out if p.images)
    assert report["without_image"] == sum(1 for p in held_out if not p.images) > 0
    for direction in ("t2i", "i2t"):
        result = report["results"][direction]
        assert result["overall"] == {"n": report["pairs"], "recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0}
        assert sum(r["n"] for r in result["by_top_category"].values()) == report["pairs"]
        assert set(result["by_top_category"]) == {p.categories[0][0] for p in held_out if p.images}
    crossed = ti.evaluate_text_image(TaskInput(products, settings, {"kind": "test"}), config,
                                     image_encoder=AlignedClip(crossed=True))
    assert crossed["pairs"] > 10
    for direction in ("t2i", "i2t"):
        assert crossed["results"][direction]["overall"]["recall@10"] == 0.0
    return report


def test_runner_finds_every_pair_of_an_aligned_encoder_embedded(tmp_path: Path) -> None:
    _check_aligned_runner(coloured_catalogue(tmp_path / "img"), _settings(tmp_path))


@pytest.mark.integration
def test_runner_finds_every_pair_of_an_aligned_encoder_elasticsearch(
    tmp_path: Path, es_connection: Any, make_store: Callable[..., Any]
) -> None:
    settings = _settings(tmp_path, es_url=es_connection.url)
    report = _check_aligned_runner(coloured_catalogue(tmp_path / "img"), settings)
    assert report["index"]["location"].startswith("elasticsearch index ctir-eval-")
    for marker in (settings.cache_dir / "eval").glob("*.es.json"):  # drop the evaluation indexes
        make_store(f"ctir-eval-{marker.name.split('.')[0]}")


def test_runner_with_the_tiny_clip_matches_an_exact_ranking(tmp_path: Path, clip: Any) -> None:
    """The store's kNN gives the figures an exact cosine ranking over the encoder's own
    vectors gives (the tiny random model itself is near chance: that is not the point)."""
    products = sample_products()[:150]
    settings = _settings(tmp_path)
    report = ti.evaluate_text_image(TaskInput(products, settings, {"kind": "sample"}),
                                    ti.TextImageConfig(work_dir=tmp_path / "eval"), image_encoder=clip)
    held_out = split_products(products, SplitSpec())["test"]
    assert report["pairs"] == len(held_out) and report["without_image"] == 0  # the sample has every photo
    assert report["encoder"]["id"] == clip.manifest["id"]
    loader = ImageLoader()
    images = dict(zip([p.id for p in held_out], clip.encode_images(loader.load_many([p.images[0] for p in held_out])),
                      strict=True))
    titles = dict(zip([p.id for p in held_out], clip.encode_texts([p.title for p in held_out]), strict=True))
    qrels = ti.matches({p.id: p.title for p in held_out})
    for direction, (queries, gallery) in {"t2i": (titles, images), "i2t": (images, titles)}.items():
        expected = ti.recall(ti.rank_exact(queries, gallery, 10), qrels, (1, 5, 10))
        assert report["results"][direction]["overall"] == pytest.approx(expected)
    md = ti.markdown(report, "ctir-es evaluate sample --task t2i")
    assert "| t2i |" in md and "| chance |" in md and "by top category" in md


# ------------------------------------------------------------------------------ CLI


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("CTIR_ES_URL", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_MODEL", "CTIR_ES_CLIP_WEIGHTS", "CTIR_ES_STORE"):
        monkeypatch.delenv(var, raising=False)

    def invoke(*args: str, ok: bool = True) -> Any:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.mark.parametrize("task", ["t2i", "i2t"])
def test_cli_evaluate_task_writes_the_report(run: Callable[..., Any], tmp_path: Path, tiny_clip: Any,
                                             tiny_onnx_clip: Path, task: str) -> None:
    out = tmp_path / "out"
    result = run("evaluate", "sample", "--task", task, "--limit", "100", "--clip-model", str(tiny_clip.config),
                 "--clip-weights", str(tiny_clip.checkpoint), "--out", str(out), "--json")
    report = json.loads(result.stdout)
    assert report["task"] == task and list(report["results"]) == [task]
    overall = report["results"][task]["overall"]
    assert overall["n"] == report["pairs"] > 0 and set(overall) == {"n", "recall@1", "recall@5", "recall@10"}
    assert all(0.0 <= overall[f"recall@{k}"] <= 1.0 for k in (1, 5, 10))
    assert (out / f"text-image-{task}.md").is_file()
    assert json.loads((out / f"text-image-{task}.json").read_text())["results"] == report["results"]


def test_cli_evaluate_without_clip_says_what_to_pass(run: Callable[..., Any], tmp_path: Path) -> None:
    off = run("evaluate", "sample", "--task", "t2i", "--clip-weights", "none", ok=False)
    assert off.exit_code == 1 and "needs CLIP" in off.output and "--clip-weights" in off.output
    assert "Traceback" not in off.output
    missing = run("evaluate", "sample", "--task", "i2t", "--clip-weights", str(tmp_path / "absent.safetensors"),
                  ok=False)
    assert missing.exit_code == 1 and "needs CLIP" in missing.output and "absent.safetensors" in missing.output


def test_cli_ingest_and_image_query_reach_products_without_a_photo(run: Callable[..., Any], tmp_path: Path,
                                                                   tiny_clip: Any, tiny_onnx_clip: Path) -> None:
    jsonl = tmp_path / "products.jsonl"
    jsonl.write_text("".join(json.dumps(p.to_json()) + "\n" for p in small_catalogue()), encoding="utf-8")
    store = str(tmp_path / "cli.db")
    clip_args = ["--clip-model", str(tiny_clip.config), "--clip-weights", str(tiny_clip.checkpoint)]
    report = json.loads(run("ingest", "jsonl", str(jsonl), "--store", store, "--text-model", "none", *clip_args,
                            "--json").stdout)
    assert report["indexed"] == 6
    res = json.loads(run("query", str(photo(7)), "--mode", "image", "--store", store, "--json").stdout)
    assert res["sources"] == [IMAGE_SOURCE, CLIP_TITLE_SOURCE]
    by_id = {r["id"]: r for r in res["results"]}
    assert list(by_id["nophoto-2"]["sources"]) == [CLIP_TITLE_SOURCE]
    stats = json.loads(run("stats", "--store", store, "--json").stdout)
    assert stats["vector_fields"][CLIP_TITLE_VECTOR]["count"] == 6 and stats["vector_fields"][IMAGE_VECTOR]["count"] == 4
