"""A CLIP-ITA source over HTTP: on an index with ``clip_ita`` vectors (the tiny CLIP-ITA model
trained on the sample), a category query fuses it, and ``weights=clip_ita=...`` weights it -
the HTTP API takes every source name of ``ctir_es.vocabulary``."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_support import CATEGORY, SAMPLE_IMAGES

from ctir_es.ingest.images import ImageLoader
from ctir_es.ingest.pipeline import Pipeline
from ctir_es.ingest.readers import read_jsonl
from ctir_es.ingest.report import IngestReport
from ctir_es.sample import sample_path
from ctir_es.search import Search
from ctir_es.service import create_app
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.vocabulary import CLIP_ITA_SOURCE, CLIP_ITA_VECTOR, RRF_K


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, tiny_onnx_text: Path, tiny_onnx_clip: Path, tiny_clip_ita):
    from ctir_es.encoders import OnnxClipEncoder, OnnxTextEncoder
    from ctir_es.encoders.onnx.heads import ClipItaEncoder

    text, image = OnnxTextEncoder(tiny_onnx_text), OnnxClipEncoder(tiny_onnx_clip)
    clip_ita = ClipItaEncoder(tiny_clip_ita.model_dir, text_encoder=text, image_encoder=image)
    store = EmbeddedStore(tmp_path_factory.mktemp("clip-ita") / "store.db")
    loader = ImageLoader()
    report = Pipeline(store, text_encoder=text, image_encoder=image, load_images=loader.load_many,
                      clip_ita=clip_ita).run(read_jsonl(sample_path(), IngestReport()), IngestReport())
    assert report.indexed == 280
    search = Search(store, text, image, loader, category_encoder=clip_ita)
    assert CLIP_ITA_VECTOR in search.schema.vectors
    yield TestClient(create_app(search, [SAMPLE_IMAGES]), raise_server_exceptions=False)
    search.close()


def test_a_clip_ita_source_can_be_weighted_over_http(client: TestClient) -> None:
    default = client.get("/search", params={"q": CATEGORY, "k": 20})
    assert default.status_code == 200, default.text
    page = default.json()
    assert CLIP_ITA_SOURCE in page["sources"] and page["source_hits"][CLIP_ITA_SOURCE] > 0
    assert any(CLIP_ITA_SOURCE in x["sources"] for x in page["results"])

    r = client.get("/search", params={"q": CATEGORY, "k": 20, "weights": "clip_ita=2.5"})
    assert r.status_code == 200, r.text
    weighted = r.json()
    assert weighted["weights"][CLIP_ITA_SOURCE] == 2.5
    assert weighted["weights"]["bm25"] == page["weights"]["bm25"]  # the others keep their defaults
    for x in weighted["results"]:
        if CLIP_ITA_SOURCE in x["sources"]:
            s = x["sources"][CLIP_ITA_SOURCE]
            assert s["contribution"] == pytest.approx(2.5 / (RRF_K + s["rank"]))
        assert sum(s["contribution"] for s in x["sources"].values()) == pytest.approx(x["score"])
    # weighting it up changes the ranking; weighting it out leaves it without a say
    assert [x["id"] for x in weighted["results"]] != [x["id"] for x in page["results"]]
    off = client.get("/search", params={"q": CATEGORY, "k": 20, "weights": "clip_ita=0"}).json()
    assert all(x["sources"].get(CLIP_ITA_SOURCE, {}).get("contribution", 0) == 0 for x in off["results"])
