"""Value filters through every surface: the Python API, the CLI (``--filter``) and HTTP
(``?filter=``), on the bundled sample given typed values, with the real tiny text model and
the embedded store. Results carry their values; errors name what the index holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from service_support import encoders, sample_store_with_values

from ctir_es.cli.main import cli
from ctir_es.filters import parse_filter_text
from ctir_es.ingest.images import ImageLoader
from ctir_es.search import Search
from ctir_es.service import create_app
from ctir_es.store.embedded import EmbeddedStore

BRANDS = ("Acme", "Bolt", "Crest")
CATEGORY = "Kitchen & Dining > Cookware"


def _values(i: int) -> dict[str, Any]:
    return {"Brand": BRANDS[i % 3], "Price": f"₹{100 + 10 * i:,}", "In Stock": "yes" if i % 4 else "no"}


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory, tiny_text_model_dir: Path) -> Path:
    """The sample, every product given a brand, a price in INR and a stock flag (by its line)."""
    root = tmp_path_factory.mktemp("shop-filters")
    return sample_store_with_values(root, tiny_text_model_dir, _values)


@pytest.fixture
def search(store_file: Path, tiny_text_model_dir: Path) -> Any:
    text, _ = encoders(tiny_text_model_dir, None)
    with Search(EmbeddedStore(store_file), text, None, ImageLoader()) as s:
        yield s


def _expected(search: Search, keep: Any) -> set[str]:
    """Ids of every stored product ``keep`` accepts (its stored values), read product by product."""
    ids = search.store.ids()  # type: ignore[attr-defined]
    stored = search.store.get(ids)
    return {pid for pid, doc in stored.items() if keep(doc.product.values)}


def test_the_index_types_the_values(search: Search) -> None:
    specs = {n: s.to_json() for n, s in search.schema.values.items()}
    assert specs == {"brand": {"kind": "keyword", "unit": None}, "price": {"kind": "number", "unit": "INR"},
                     "in_stock": {"kind": "boolean", "unit": None}}


def test_python_api_filters_inside_every_source(search: Search) -> None:
    filters = [parse_filter_text(t) for t in ("price:500..1500", "-brand:acme", "in_stock:true")]
    response = search.search(CATEGORY, k=200, filters=filters)
    want = _expected(search, lambda v: 500 <= v["price"] <= 1500 and v["brand"] != "Acme" and v["in_stock"])
    got = {r.id for r in response.results}
    assert got and got <= want
    assert len(got) == min(200, len(want))  # kNN prefilters: every matching product reaches the fusion
    assert all(set(r.values) == {"brand", "price", "in_stock"} for r in response.results)
    assert {r.values["brand"] for r in response.results} <= {"Bolt", "Crest"}


def test_cli_filter_and_its_errors(store_file: Path, tiny_text_model_dir: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    base = ["query", CATEGORY, "--store", str(store_file), "--k", "50", "--json"]
    out = runner.invoke(cli, [*base, "--filter", "brand:Bolt|crest", "--filter", "price:..1,000"],
                        catch_exceptions=False)
    assert out.exit_code == 0, out.output
    results = json.loads(out.stdout)["results"]
    assert results and all(r["values"]["brand"] in ("Bolt", "Crest") and r["values"]["price"] <= 1000
                           for r in results)
    bad = runner.invoke(cli, [*base, "--filter", "colour:red"])
    assert bad.exit_code != 0 and "this index's values: brand, in_stock, price" in bad.output
    assert "Traceback" not in bad.output
    worse = runner.invoke(cli, [*base, "--filter", "price"])
    assert worse.exit_code != 0 and "NAME:VALUE" in worse.output
    stats = runner.invoke(cli, ["stats", "--store", str(store_file), "--json"], catch_exceptions=False)
    assert json.loads(stats.stdout)["values"]["price"] == {"kind": "number", "unit": "INR"}
    human = runner.invoke(cli, ["stats", "--store", str(store_file)], catch_exceptions=False)
    assert "price (number, INR)" in " ".join(human.stdout.split())  # rich wraps at the terminal width


def test_http_filter_and_its_errors(search: Search) -> None:
    client = TestClient(create_app(search), raise_server_exceptions=False)
    health = client.get("/health").json()
    assert health["values"]["price"] == {"kind": "number", "unit": "INR"}
    r = client.get("/search", params=[("q", CATEGORY), ("k", "50"), ("filter", "brand:Acme"),
                                      ("filter", "has:price"), ("filter", "in_stock:false")])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results and all(x["values"]["brand"] == "Acme" and x["values"]["in_stock"] is False for x in results)
    assert {x["id"] for x in results} <= _expected(search, lambda v: v["brand"] == "Acme" and not v["in_stock"])
    product = client.get(f"/products/{results[0]['id']}").json()
    assert product["values"] == results[0]["values"]
    for text, says in (("colour:red", "this index's values"), ("price:cheap..", "price is a number in INR"),
                       ("brand:a..b", None)):
        r = client.get("/search", params={"q": CATEGORY, "filter": text})
        if says is None:  # a keyword never reads as a range: no match, not an error
            assert r.status_code == 200 and r.json()["results"] == []
        else:
            assert r.status_code == 400 and says in r.text and "Traceback" not in r.text
    too_many = client.get("/search", params=[("q", CATEGORY)] + [("filter", "has:brand")] * 21)
    assert too_many.status_code in (400, 422)
    param = next(p for p in client.get("/openapi.json").json()["paths"]["/search"]["get"]["parameters"]
                 if p["name"] == "filter")
    assert "price:500..2000" in param["description"]

