"""``ctir-es evaluate`` end to end on small catalogues with tiny models: every output, metrics
recomputed from the written TREC files by trec_eval (pytrec_eval) and ranx, index caching, the
skipped-systems list, and the hook through which a trained model plugs in."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli
from ctir_es.config import Settings
from ctir_es.evaluation import providers as eval_providers
from ctir_es.evaluation import systems as eval_systems
from ctir_es.evaluation.runner import EvalConfig, evaluate_products
from ctir_es.evaluation.trec import read_qrels, read_run
from ctir_es.products import Product
from ctir_es.schema import Document, IndexSchema, VectorField

TREE = {
    "Kitchen": {"Cookware": ["Pans", "Pots"], "Appliances": ["Blenders", "Toasters"]},
    "Watches": {"Men": ["Analog", "Digital"], "Women": ["Analog", "Smart"]},
    "Bath": {"Towels": ["Hand", "Beach"]},
}
WORDS = ["steel", "red", "blue", "premium", "classic", "set", "large", "small", "home", "gift"]


def catalogue(n: int = 120, seed: int = 0) -> list[Product]:
    rng = random.Random(seed)
    leaves = [(r, s, leaf) for r, subs in TREE.items() for s, ls in subs.items() for leaf in ls]
    out = []
    for i in range(n):
        path = leaves[i % len(leaves)]
        noise = " ".join(rng.sample(WORDS, 3))
        # Titles name the leaf half the time, so lexical and dense systems both have work to do.
        title = f"{path[2] if rng.random() < 0.5 else path[1]} {noise} item {i}"
        out.append(Product(id=f"p{i:03d}", title=title, categories=(path,),
                           attributes={"Colour": rng.choice(["red", "blue"])}, description=f"{noise} product"))
    return out


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "products.jsonl"
    path.write_text("".join(json.dumps(p.to_json()) + "\n" for p in catalogue()), encoding="utf-8")
    return path


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("CTIR_ES_URL", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_MODEL", "CTIR_ES_CLIP_WEIGHTS", "CTIR_ES_STORE"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    return invoke


def test_evaluate_jsonl_writes_every_output_and_metrics_match_trec_eval(
    run, jsonl: Path, tmp_path: Path, tiny_text_model_dir: Path
) -> None:
    out = tmp_path / "out"
    args = ["evaluate", "jsonl", str(jsonl), "--text-model", str(tiny_text_model_dir), "--clip-weights", "none",
            "--out", str(out), "--seed", "7"]
    text = run(*args)
    assert "random" in text and "bm25-title" in text and "rrf:bm25-text+text-tiny-st" in text
    report = json.loads((out / "report.json").read_text())
    names = [s["name"] for s in report["systems"]]
    assert names == ["bm25-title", "bm25-text", "text-tiny-st", "rrf:bm25-text+text-tiny-st",
                     "linear:bm25-text+text-tiny-st"]
    skipped = {s["name"]: s["skipped"] for s in report["skipped"]}
    assert "image vectors disabled" in skipped["clip"] and "no trained model" in skipped["clip-ita"]
    assert report["seeds"]["split"] == 7 and report["dataset"]["hash"].startswith("sha256:")
    assert report["dataset"]["splits"]["test"] > 10
    assert report["systems"][2]["encoder"]["id"]  # the model manifest is recorded
    assert report["systems"][4]["weights_by_setting"].keys() == {"random", "general", "specific"}
    md = (out / "report.md").read_text()
    for heading in ("## Results on the test split", "## Hybrid fusion against its best single component",
                    "## Linear fusion weights", "## By query level", "## Seen and unseen",
                    "## Error analysis", "## Significance", "## Reproducibility"):
        assert heading in md
    assert "| most specific | BM25 (title) |" in md
    png = (out / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # Recompute from the files on disk: the TREC runs and qrels reproduce the reported means.
    pytrec_eval = pytest.importorskip("pytrec_eval")
    for setting in ("random", "general", "specific"):
        qrels = read_qrels(out / "qrels" / f"{setting}.qrels")
        assert len(qrels) == report["settings"][setting]["test_queries"]["queries"]
        for name in names:
            file = out / "runs" / setting / f"{name.replace(':', '_')}.trec"
            trec_run = read_run(file)
            evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"P_10", "map_cut_10", "ndcg_cut_10", "Rprec",
                                                               "recall_100"})
            per_q = evaluator.evaluate(trec_run)
            means = report["settings"][setting]["means"][name]
            for trec_name, ours in (("P_10", "precision@10"), ("map_cut_10", "map@10"),
                                    ("ndcg_cut_10", "ndcg@10"), ("Rprec", "r-precision"),
                                    ("recall_100", "recall@100")):
                expected = sum(per_q.get(q, {}).get(trec_name, 0.0) for q in qrels) / len(qrels)
                assert means[ours] == pytest.approx(expected, abs=1e-6), (setting, name, ours)

    # A second run reuses the cached index and gives the same numbers.
    run(*args[:-4], "--out", str(tmp_path / "out2"), "--seed", "7", "--no-significance", "--setting", "specific")
    again = json.loads((tmp_path / "out2" / "report.json").read_text())
    assert all(i["cached"] for i in again["indexes"])
    assert again["settings"]["specific"]["means"] == report["settings"]["specific"]["means"]


def test_trained_model_plugs_in_through_the_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for a trained CLIP-ITA: its own vector field, filled from titles by a hashed
    bag of words, and a query encoder into the same space."""
    dims = 64

    def embed(texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), dims), 1e-3, dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(">", " ").split():
                out[row, sum(map(ord, word)) % dims] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def loader(ctx: eval_systems.ProviderContext, model_dir: Path) -> list:
        if not (model_dir / "fake-model.json").is_file():
            return []
        manifest = {"id": "fake-clip-ita@1", "name": "fake", "dims": dims}
        schema = IndexSchema({"clip_ita": VectorField(dims, "cosine", manifest)})
        ctx.builder.with_documents("clip-ita", schema, lambda batch: [
            Document(p, {"clip_ita": v}) for p, v in zip(batch, embed([p.title for p in batch]), strict=True)])
        return [eval_systems.DenseSystem("clip-ita", "CLIP-ITA (fake)", "clip-ita", "clip_ita", embed, manifest,
                                         "title")]

    monkeypatch.setattr(eval_providers, "TRAINED_LOADERS", [loader])
    model = tmp_path / "model"
    model.mkdir()
    (model / "fake-model.json").write_text("{}")
    settings = Settings(store=tmp_path / "x.db", cache_dir=tmp_path / "cache", clip_weights="none")
    config = EvalConfig(settings=("specific",), systems=("bm25-text", "clip-ita", "*:bm25-text+clip-ita"),
                        text_models=(), trained=(model,), significance=False, work_dir=tmp_path / "eval")
    result = evaluate_products(catalogue(90), settings, config)
    names = [s.name for s in result.systems]
    assert names == ["bm25-text", "clip-ita", "rrf:bm25-text+clip-ita", "linear:bm25-text+clip-ita"]
    means = result.settings["specific"].means
    assert means["clip-ita"]["precision@1"] > 0.2  # the fake model does find leaves by their words
    assert result.skipped == []  # systems not selected are not listed as skipped either


def test_flipkart_quick_run(run, flipkart_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "fk"
    run("evaluate", "flipkart", str(flipkart_dir), "--limit", "150", "--systems", "bm25-*", "--setting", "general",
        "--setting", "specific", "--query-text", "leaf", "--relevance", "exact", "--out", str(out),
        "--no-significance")
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["products"] == 150 and report["config"]["limit"] == 150
    assert set(report["settings"]) == {"general", "specific"}
    assert [s["name"] for s in report["systems"]] == ["bm25-title", "bm25-text"]
    assert report["config"]["relevance"] == "exact" and report["config"]["query_text"] == "leaf"


def test_zero_shot_clip_runs_when_weights_are_given(run, tmp_path: Path, tiny_clip) -> None:
    """With (tiny, random) CLIP weights the image system is built through the Pipeline from the
    product photos and queried with CLIP's text tower."""
    out = tmp_path / "clip"
    run("evaluate", "sample", "--limit", "60", "--systems", "bm25-text,clip,rrf:bm25-text+clip", "--setting", "general",
        "--clip-model", str(tiny_clip.config), "--clip-weights", str(tiny_clip.checkpoint), "--out", str(out),
        "--no-significance")
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["systems"]] == ["bm25-text", "clip", "rrf:bm25-text+clip"]
    clip = report["systems"][1]
    assert clip["field"] == "image_vector" and clip["product_inputs"] == "image"
    index = next(i for i in report["indexes"] if i["key"] == "clip")
    assert index["vector_fields"]["image_vector"]["dims"] == tiny_clip.dims and index["indexed"] == 60
    assert index["images_missing"] == {}  # the sample ships every photo
    assert report["settings"]["general"]["means"]["clip"]["recall@100"] > 0


class FakeClipIta:
    """Stands in for ``encoders.onnx.heads.ClipItaEncoder`` (an exported model's two heads)."""

    modalities = ("title", "attributes")
    dims = 48

    def __init__(self, model_dir: Path) -> None:
        self.manifest = {"kind": "onnx-clip-ita", "id": "clip-ta-test@1", "dims": self.dims,
                         "modalities": list(self.modalities), "path": str(model_dir)}
        self.seen: list[str] = []

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), self.dims), 1e-3, dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(">", " ").split():
                out[row, sum(map(ord, word)) % self.dims] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_categories(self, texts: list[str]) -> np.ndarray:
        return self._embed(list(texts))

    text_encoder = None  # no frozen encoder: the evaluation falls back to encoding batch by batch

    def encode_products(self, products: list[Product], images: object = None, precomputed: object = None) -> np.ndarray:
        texts = [p.title + " " + p.attribute_text for p in products]
        self.seen.extend(texts)
        return self._embed(texts)


def test_exported_clip_ita_model_is_evaluated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ctir_es.encoders import registry

    model = tmp_path / "clip-ta-flipkart"
    model.mkdir()
    (model / "manifest.json").write_text(json.dumps({"kind": "onnx-clip-ita", "modalities": ["title", "attributes"],
                                                     "setting": "specific"}))
    fake = FakeClipIta(model)
    monkeypatch.setattr(registry, "load_clip_ita", lambda path, cfg, **kw: fake, raising=False)
    other = tmp_path / "clip-ita-other-split"  # trained with another seed: would leak test products
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({
        "kind": "onnx-clip-ita", "modalities": ["image", "title", "attributes"], "setting": "specific",
        "source": {"data": {"split": {"seed": 99, "train": 0.7, "val": 0.1, "test": 0.2}}}}))
    run_dir = tmp_path / "run"  # a training run that was never exported
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"")
    settings = Settings(store=tmp_path / "x.db", cache_dir=tmp_path / "cache", clip_weights="none")
    config = EvalConfig(settings=("specific", "general"), systems=("clip-*", "trained-*", "linear:bm25-text+clip-ta"),
                        text_models=(), trained=(model, other, run_dir), significance=False, work_dir=tmp_path / "eval")
    products = catalogue(60)
    result = evaluate_products(products, settings, config)
    assert [s.name for s in result.systems] == ["clip-ta", "linear:bm25-text+clip-ta"]
    system = result.systems[0]
    assert system.field == "clip_ita" and system.inputs == "title+attributes"
    assert result.settings["specific"].means["clip-ta"]["precision@1"] > 0.2
    assert "most specific" in system.label and system.settings == ("specific",)
    assert not result.settings["general"].means  # a model trained for one setting runs in that one
    skipped = {s.name: s.reason for s in result.skipped}
    assert "ctir-es models export clip-ita" in skipped["trained-run"]
    assert set(skipped) == {"clip-i", "clip-ia", "clip-ita", "trained-run"}  # "clip" is not selected
    assert "another split (seed 99" in skipped["clip-ita"] and "--seed 99" in skipped["clip-ita"]
    assert len(fake.seen) == len(products)  # every product went through the product head once


def test_xmarket_source_and_empty_settings_are_reported(run, tmp_path: Path) -> None:
    source = Path(__file__).parent / "data" / "xmarket"
    out = tmp_path / "xm"
    text = run("evaluate", "xmarket", "--source", str(source), "--market", "us", "--systems", "bm25-*",
               "--no-significance", "--out", str(out))
    assert "no test queries" in text  # a handful of products: the default test split is empty
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["kind"] == "xmarket" and any("no test queries" in n for n in report["notes"])
    run("evaluate", "xmarket", "--source", str(source), "--market", "us", "--systems", "bm25-*",
        "--no-significance", "--split", "0,0,1", "--out", str(out))
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["specific"]["test_queries"]["queries"] > 0
    assert report["settings"]["specific"]["test_queries"]["seen"] == 0  # nothing was trained on
