"""``ctir-es serve --learn`` (issue 22): ``learn`` runs in the background on its own handle to
the store while the service keeps answering; ``/health`` shows it; a kept model is swapped in
(work under way finishes on the old ``Search``, closed after); a failure leaves serving as it
was; Ctrl-C stops it without touching the index. The bundled sample in a real embedded store,
the tiny real text model."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_support import CATEGORY, ServeProcess, encoders, sample_search

from ctir_es.config import Settings
from ctir_es.learn import LEARNED_KEY, LearnConfig
from ctir_es.learn.fill import JOB_KEY
from ctir_es.search import Search
from ctir_es.service import create_app
from ctir_es.service.learning import BackgroundLearn
from ctir_es.store.embedded import EmbeddedStore
from ctir_es.vocabulary import CLIP_ITA_SOURCE, CLIP_ITA_VECTOR

QUICK = LearnConfig(epochs=3, patience=2, force=True)  # a few epochs; kept whatever it scores


@pytest.fixture
def sample(tmp_path: Path, tiny_text_model_dir: Path) -> Iterator[tuple[Search, Settings]]:
    search, _ = sample_search(tmp_path, tiny_text_model_dir, None)
    yield search, Settings(store=tmp_path / "store.db", cache_dir=tmp_path / "cache")
    search.close()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def test_queries_are_answered_while_learning_and_the_kept_model_is_swapped_in(sample: tuple[Search, Settings]) -> None:
    search, settings = sample
    app = create_app(search)
    service = app.state.service
    with TestClient(app) as client:
        first = client.get("/search", params={"q": CATEGORY})
        assert first.status_code == 200 and CLIP_ITA_SOURCE not in first.json()["sources"]
        # enough epochs that training is seen mid-way; kept whatever it scores
        learning = BackgroundLearn(service, settings, LearnConfig(epochs=10, patience=10, force=True))
        service.learning = learning.start()
        answered_while_running = 0
        stages: list[tuple[str, Any]] = []
        while learning.running:
            before = client.get("/health").json()["learning"]
            page = client.get("/search", params={"q": CATEGORY})
            after = client.get("/health").json()["learning"]
            assert page.status_code == 200, page.text
            if before["state"] == after["state"] == "running":  # the query began and ended mid-run
                answered_while_running += 1
                assert CLIP_ITA_SOURCE not in page.json()["sources"]  # still the old serving
                stages.append((after["stage"], after["progress"]))
                assert after["started"] and after["finished"] is None
        assert answered_while_running >= 3
        assert any(stage == "training" and progress and progress["total"] == 10 for stage, progress in stages)

        health = client.get("/health").json()
        done = health["learning"]
        assert done["state"] == "kept" and done["finished"] and done["stage"] is None
        assert {"served", "before", "after"} <= set(done["headline_p10"]) and "P@10" in done["reason"]
        assert health["learned"]["model"] == done["model"] and health["learned"]["status"] in ("in use", "stale")
        assert CLIP_ITA_VECTOR in health["vector_fields"]
        page = client.get("/search", params={"q": CATEGORY}).json()
        assert CLIP_ITA_SOURCE in page["sources"] and page["source_hits"][CLIP_ITA_SOURCE] > 0
        assert any(CLIP_ITA_SOURCE in hit["sources"] for hit in page["results"])
        # the swap served a freshly opened Search; the one the app started with is closed
        assert service.search is not search and service.search.category_encoder is not None
    # the learner wrote through its own connection: the store records the model and no job is left
    with Search.open(settings) as reopened:
        assert reopened.store.get_metadata(LEARNED_KEY)["model"] == done["model"]  # type: ignore[attr-defined]
        assert reopened.store.get_metadata(JOB_KEY) == {"done": True}  # type: ignore[attr-defined]
    service.close()


def test_work_under_way_finishes_on_the_old_search_which_is_closed_after(sample: tuple[Search, Settings]) -> None:
    search, settings = sample
    app = create_app(search)
    service = app.state.service
    closed: list[Search] = []
    close = search.close
    search.close = lambda: (closed.append(search), close())  # type: ignore[method-assign]
    entered, release = threading.Event(), threading.Event()

    def slow(s: Search) -> tuple[Search, int]:
        entered.set()
        release.wait(30)
        return s, s.store.count()

    with TestClient(app) as client:
        result: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: result.update(out=client.portal.call(service.use, slow)))
        worker.start()
        assert entered.wait(30)
        fresh = Search.open(settings)
        service.swap(fresh)
        assert service.search is fresh and not closed  # still held by the request under way
        assert client.get("/search", params={"q": CATEGORY}).status_code == 200  # new work: the new Search
        release.set()
        worker.join(30)
        assert result["out"] == (search, 280)  # it finished on the old one, which then closed
        assert closed == [search]
        assert client.get("/health").json()["products"] == 280
    service.close()


def test_a_failed_learn_is_reported_and_serving_goes_on(tmp_path: Path, tiny_text_model_dir: Path) -> None:
    text, _ = encoders(tiny_text_model_dir, None)
    store = tmp_path / "bare.db"
    search = Search(EmbeddedStore(store), text, None)
    search.index([{"id": f"p{i}", "title": f"steel pan {i}"} for i in range(60)])  # no categories
    app = create_app(search)
    learning = BackgroundLearn(app.state.service, Settings(store=store, cache_dir=tmp_path / "cache"), QUICK)
    app.state.service.learning = learning.start()
    with TestClient(app) as client:
        learning.join(60)
        health = client.get("/health")
        assert health.status_code == 200
        state = health.json()["learning"]
        assert state["state"] == "failed" and state["finished"]
        assert state["error"].startswith("only 0 products of the index have a category")
        assert "\n" not in state["error"] and "Traceback" not in state["error"]
        assert client.get("/search", params={"q": "steel pan"}).json()["results"]
        assert app.state.service.search is search  # nothing swapped
    app.state.service.close()


def test_a_learner_that_cannot_reach_its_store_names_no_secret(sample: tuple[Search, Settings],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    monkeypatch.setenv("CTIR_ES_REQUEST_TIMEOUT", "2")
    search, settings = sample
    secret = "S3cret-Pa55word"
    settings = Settings(es_url=f"http://elastic:{secret}@127.0.0.1:{port}", cache_dir=settings.cache_dir)
    app = create_app(search)
    learning = BackgroundLearn(app.state.service, settings, QUICK)
    app.state.service.learning = learning.start()
    learning.join(60)
    state = learning.status()
    assert state["state"] == "failed" and f"127.0.0.1:{port}" in state["error"]
    assert secret not in state["error"]


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())  # type: ignore[no-any-return]


def test_ctrl_c_while_learning_stops_at_once_and_leaves_the_index_as_it_was(sample: tuple[Search, Settings],
                                                                            tmp_path: Path) -> None:
    search, settings = sample
    search.close()
    # many epochs: it is still training when interrupted
    with ServeProcess(settings.store, tmp_path, "--learn", "--learn-epochs", "500") as server:
        state = wait_for(lambda: (_get(f"{server.url}/health")["learning"] or {}).get("stage") == "training"
                         and _get(f"{server.url}/health")["learning"], 90, "training stage")
        assert state["state"] == "running" and state["progress"]["total"] == 500
        page = _get(f"{server.url}/search?" + urllib.parse.urlencode({"q": CATEGORY}))
        assert page["results"] and CLIP_ITA_SOURCE not in page["sources"]
        assert _get(f"{server.url}/health")["learning"]["state"] == "running"  # answered mid-training
        server.proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        server.proc.wait(timeout=30)
        assert time.monotonic() - started < 20
        output = server.output()
    assert "Traceback" not in output and "learning in the background" in output
    assert "learning stopped: the service shut down before the model was written" in output
    with Search.open(settings) as after:  # the index opens as before: no model, no job under way
        assert CLIP_ITA_VECTOR not in after.schema.vectors
        assert after.store.get_metadata(JOB_KEY) is None  # type: ignore[attr-defined]
        assert after.store.count() == 280
