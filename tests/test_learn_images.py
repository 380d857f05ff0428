"""``ctir-es learn`` with CLIP weights (issue 22): on an index holding image vectors, ``learn``
trains CLIP-ITA proper (image + title + attributes) from the stored image vectors, writes its
vector of every product, serves it (category queries, categorize), and later ingests and a
resumed write compute that vector through the image tower. The bundled sample (local photos;
a few products stripped of theirs) in the embedded store, with the tiny random ONNX text model
and CLIP."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ctir_es.config import Settings
from ctir_es.ingest.images import ImageLoader
from ctir_es.ingest.pipeline import MAX_IMAGE_SIDE
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.learn import LEARNED_KEY, LearnConfig, learn
from ctir_es.learn.fill import JOB_KEY
from ctir_es.products import Product
from ctir_es.sample import sample_path
from ctir_es.search import Search
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.vocabulary import CLIP_ITA_SOURCE, CLIP_ITA_VECTOR, IMAGE_VECTOR, TITLE_VECTOR

CATEGORY = "Kitchen & Dining > Cookware"
ITA = ["image", "title", "attributes"]
LATER = 10  # sample products held back from the first ingest, ingested after learn
NO_PHOTO = 40  # every 40th product is ingested without its photo (its image feature is zeros)
CHUNK = 50  # products per in-place write
KILLED_AT = 2 * CHUNK  # the fixture snapshots the store once this many vectors are written
# a few epochs, kept whatever it scores (random encoders need not win)
QUICK = LearnConfig(epochs=3, patience=2, force=True, write_chunk=CHUNK)
ATOL = 1e-4  # float32 heads over the same features, computed in another batch


@dataclass
class Learned:
    root: Path
    settings: Settings
    report: Any  # LearnReport
    events: list[tuple[str, dict[str, Any]]]
    first: list[Product]
    later: list[Product]
    image_id: str
    killed: Path  # a copy of the store taken in the middle of learn's write


def _encoders(tiny_onnx_text: Path, tiny_onnx_clip: Path) -> tuple[Any, Any]:
    from ctir_es.encoders import OnnxClipEncoder, OnnxTextEncoder

    return OnnxTextEncoder(tiny_onnx_text), OnnxClipEncoder(tiny_onnx_clip)


def _images(products: Sequence[Product]) -> list[Image.Image | None]:
    """Each product's first photo, decoded and shrunk as the ingest pipeline does."""
    loader = ImageLoader()
    out: list[Image.Image | None] = []
    for p in products:
        if not p.images:
            out.append(None)
            continue
        image = loader.load(p.images[0])
        image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.BICUBIC)
        out.append(image)
    return out


def _with_the_image_tower(model: Any, products: Sequence[Product]) -> np.ndarray:
    """The model's product vectors computed from scratch: photos through CLIP's image tower,
    titles and attributes through the text model (nothing read from the index)."""
    images = _images(products)
    expected = np.asarray(model.encode_products(products, images))
    # the photos matter: the products that have one land elsewhere without it
    blind = np.asarray(model.encode_products(products, [None] * len(products)))
    with_photo = [i for i, im in enumerate(images) if im is not None]
    assert with_photo and all(float(np.abs(expected[i] - blind[i]).max()) > 100 * ATOL for i in with_photo)
    return expected


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory, tiny_onnx_text: Path, tiny_onnx_clip: Path) -> Learned:
    root = tmp_path_factory.mktemp("learn-images")
    text, image = _encoders(tiny_onnx_text, tiny_onnx_clip)
    products = [p if n % NO_PHOTO else replace(p, images=())
                for n, p in enumerate(read_jsonl(sample_path(), IngestReport()), start=1)]
    assert sum(not p.images for p in products[-LATER:]) == 1  # one later product has no photo
    first, later = products[:-LATER], products[-LATER:]
    db = root / "store.db"
    search = Search(EmbeddedStore(db), text, image, ImageLoader())
    ingested = search.index(first)
    assert ingested.indexed == len(first) and dict(ingested.images_missing) == {"no_image": 6}  # the stripped ones
    assert {TITLE_VECTOR, IMAGE_VECTOR} <= set(search.schema.vectors)
    search.close()

    settings = Settings(store=db, cache_dir=root / "cache", models_dir=root / "models")
    events: list[tuple[str, dict[str, Any]]] = []
    killed = root / "killed.db"

    def record(event: str, info: dict[str, Any]) -> None:
        events.append((event, dict(info)))
        if event == "progress" and info.get("stage") == "writing vectors" and info["done"] == KILLED_AT:
            # the store exactly as a kill -9 at this point leaves it (two chunks committed)
            with sqlite3.connect(db) as live, sqlite3.connect(killed) as copy:
                live.backup(copy)
            # then the vector files (store format 4): append-only, so at least as long as the
            # snapshot committed; bytes past that are the uncommitted tail a kill leaves
            shutil.copytree(Path(str(db) + ".vectors"), Path(str(killed) + ".vectors"))

    search = Search(EmbeddedStore(db), text, image, ImageLoader())
    try:
        report = learn(search, settings, QUICK, record)
    finally:
        search.close()
    assert killed.is_file()
    return Learned(root, settings, report, events, first, later, str(image.manifest["id"]), killed)


def test_learn_trains_image_title_attributes_and_serves_it(learned: Learned) -> None:
    report = learned.report
    assert report.kept and report.written == len(learned.first)
    assert report.training["modalities"] == ITA
    manifest = json.loads((Path(report.path) / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["modalities"] == ITA and manifest["image_encoder"]["id"] == learned.image_id
    # the image feature is the stored image vector, read back (no photo fetched again)
    stages = {str(info.get("stage")) for event, info in learned.events if event == "progress"}
    assert "image features (stored)" in stages and "title features (stored)" in stages

    with Search.open(learned.settings) as served:
        assert served.image_encoder is not None and served.image_encoder.manifest["id"] == learned.image_id
        field = served.schema.vectors[CLIP_ITA_VECTOR]
        assert field.encoder["name"] == report.model and list(field.encoder["modalities"]) == ITA
        assert served.store.get_metadata(LEARNED_KEY)["modalities"] == ITA  # type: ignore[attr-defined]
        model = served.category_encoder
        assert model is not None and list(model.modalities) == ITA

        ids = [p.id for p in learned.first]
        stored = served.store.vectors(ids, CLIP_ITA_VECTOR)  # type: ignore[attr-defined]
        assert set(stored) == set(ids)
        # what learn wrote (from stored image vectors) is the model over the photos themselves
        some = [p for n, p in enumerate(learned.first) if n % 27 == 0 or not p.images]
        assert any(not p.images for p in some)
        expected = _with_the_image_tower(model, some)
        np.testing.assert_allclose(np.stack([stored[p.id] for p in some]), expected, atol=ATOL)

        page = served.search(CATEGORY, k=10)
        assert CLIP_ITA_SOURCE in page.sources and page.source_hits.get(CLIP_ITA_SOURCE, 0) > 0
        suggestion = served.categorize(id=ids[0], k=3)
        signal = next(s for s in suggestion.signals if s.name == CLIP_ITA_SOURCE)
        assert signal.weight > 0


def _jsonl(products: Sequence[Product], path: Path) -> Path:
    path.write_text("".join(json.dumps(p.to_json()) + "\n" for p in products), encoding="utf-8")
    return path


def test_a_later_ingest_adds_clip_ita_through_the_image_tower(learned: Learned, tiny_onnx_text: Path,
                                                              tiny_onnx_clip: Path) -> None:
    from ctir_es.ingest.run import ingest_catalogue

    text, image = _encoders(tiny_onnx_text, tiny_onnx_clip)
    by_cli, by_api = learned.later[: LATER // 2], learned.later[LATER // 2 :]
    # the ingest command's path: no model named, the pipeline loads the index's (index_model)
    report = ingest_catalogue("jsonl", _jsonl(by_cli, learned.root / "later.jsonl"), learned.settings,
                              text_encoder=text, image_encoder=image)
    assert report.indexed == len(by_cli)
    assert any("the index's model" in m and "image+title+attributes" in m for m in report.messages)

    with Search.open(learned.settings) as served:
        assert served.index(by_api).indexed == len(by_api)  # Search.index: the model it opened with
        model = served.category_encoder
        assert model is not None
        stored = served.store.vectors([p.id for p in learned.later], CLIP_ITA_VECTOR)  # type: ignore[attr-defined]
        assert set(stored) == {p.id for p in learned.later}
        expected = _with_the_image_tower(model, learned.later)
        np.testing.assert_allclose(np.stack([stored[p.id] for p in learned.later]), expected, atol=ATOL)


def test_a_write_killed_midway_resumes_with_the_image_tower(learned: Learned) -> None:
    settings = Settings(store=learned.killed, cache_dir=learned.settings.cache_dir,
                        models_dir=learned.settings.models_dir)
    with Search.open(settings) as killed:
        assert CLIP_ITA_VECTOR not in killed.schema.vectors  # named only after the last chunk
        job = killed.store.get_metadata(JOB_KEY)  # type: ignore[attr-defined]
        assert job["model"] == learned.report.model
        report = learn(killed, settings, QUICK)  # a new process: the encoders the index names
        assert report.resumed and report.written == len(learned.first) - KILLED_AT  # no retraining, no rewrite
        assert report.training["modalities"] == ITA
        assert killed.store.get_metadata(JOB_KEY) == {"done": True}  # type: ignore[attr-defined]

    ids = sorted(p.id for p in learned.first)
    with Search.open(settings) as served, Search.open(learned.settings) as straight:
        model = served.category_encoder
        assert model is not None and list(model.modalities) == ITA
        resumed = served.store.vectors(ids, CLIP_ITA_VECTOR)  # type: ignore[attr-defined]
        assert set(resumed) == set(ids)
        # the resumed vectors are the uninterrupted run's, and the model over the photos
        whole = straight.store.vectors(ids, CLIP_ITA_VECTOR)  # type: ignore[attr-defined]
        np.testing.assert_allclose(np.stack([resumed[i] for i in ids]), np.stack([whole[i] for i in ids]), atol=ATOL)
        by_id = {p.id: p for p in learned.first}
        after_kill = [by_id[i] for i in ids[KILLED_AT:]]
        some = [p for n, p in enumerate(after_kill) if n % 30 == 0 or not p.images]
        expected = _with_the_image_tower(model, some)
        np.testing.assert_allclose(np.stack([resumed[p.id] for p in some]), expected, atol=ATOL)
