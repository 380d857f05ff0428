"""Ingest and query where `import torch` fails: the ONNX runtime path needs no PyTorch.

The CLI runs in a subprocess whose torch, torchvision, open_clip, sentence-transformers and
transformers imports all fail; it ingests the bundled sample with exported (tiny) text and
CLIP models plus a CLIP-ITA model, then answers category, text and image queries. At exit the
subprocess reports which of those modules got loaded: none may.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import TinyClipIta

HEAVY = ("torch", "torchvision", "open_clip", "sentence_transformers", "transformers")
BOOT = f"""
import atexit, sys
HEAVY = {HEAVY!r}
for name in HEAVY:
    sys.modules[name] = None  # `import torch` (and its submodules) now raise ImportError
def report():
    loaded = sorted(m for m, mod in sys.modules.items() if mod is not None and m.split('.')[0] in HEAVY)
    sys.stderr.write('HEAVY-LOADED=' + ','.join(loaded) + '\\n')
atexit.register(report)
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit('torch is importable: the test is broken')
from ctir_es.cli.main import main
sys.argv = ['ctir-es'] + sys.argv[1:]
main()
"""


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-c", BOOT, *args], capture_output=True, text=True, env=env, timeout=300,
                         check=False)
    assert "HEAVY-LOADED=\n" in out.stderr, out.stderr[-2000:]
    return out


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTIR_ES_")}
    env.update({"CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "cache"),
                "CTIR_ES_STORE": str(tmp_path / "store.db"), **extra})
    return env


def test_ingest_and_query_without_torch(tiny_onnx_text: Path, tiny_onnx_clip: Path, tiny_clip_ita: TinyClipIta,
                                        tmp_path: Path) -> None:
    env = _env(tmp_path, CTIR_ES_MODELS_DIR=str(tmp_path / "models"), CTIR_ES_CLIP_ITA=str(tiny_clip_ita.model_dir))
    ingest = _run(["ingest", "sample", "--text-model", str(tiny_onnx_text), "--clip-weights", str(tiny_onnx_clip),
                   "--json"], env)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    report = json.loads(ingest.stdout)
    assert report["indexed"] == report["store_count"] == 280
    assert any("CLIP-ITA" in m for m in report["messages"])

    category = _run(["query", "Kitchen & Dining > Cookware", "--json", "--k", "5"], env)
    assert category.returncode == 0, category.stderr[-2000:]
    response = json.loads(category.stdout)
    assert set(response["sources"]) == {"bm25", "text", "image", "clip_ita"} and len(response["results"]) == 5

    text = _run(["query", "red cotton bath towel", "--json"], env)
    assert text.returncode == 0 and json.loads(text.stdout)["results"]

    photo = next((Path(__file__).resolve().parents[1] / "src/ctir_es/sample/images").glob("*.jpg"))
    image = _run(["query", str(photo), "--mode", "image", "--json", "--k", "3"], env)
    assert image.returncode == 0, image.stderr[-2000:]
    assert json.loads(image.stdout)["sources"] == ["image", "clip_title"]


def test_without_torch_or_export_the_error_names_the_fix(tmp_path: Path) -> None:
    env = _env(tmp_path, CTIR_ES_MODELS_DIR=str(tmp_path / "empty-models"))
    out = _run(["ingest", "sample", "--clip-weights", "none"], env)
    assert out.returncode == 1
    assert "ctir-es models export text all-MiniLM-L6-v2" in out.stderr and "pip install torch==2.13.0" in out.stderr
