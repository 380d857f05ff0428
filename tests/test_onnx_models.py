"""Exported model directories: manifests, discovery by name, integrity, automatic export,
the no-PyTorch error, int8, and the query-time manifest check that says what differs."""

from __future__ import annotations

import io
import json
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TINY_CLIP_DIMS, TINY_TEXT_DIMS, TinyClip

from ctir_es.cli.main import cli
from ctir_es.encoders import OnnxClipEncoder, OnnxTextEncoder
from ctir_es.encoders.models import (
    CLIP_KIND,
    SENTENCE_KIND,
    file_sha256,
    find_model,
    list_models,
    read_manifest,
    staged_dir,
    verify,
)
from ctir_es.encoders.registry import (
    EncoderConfig,
    config_from_manifest,
    expected_clip_name,
    load_image_encoder,
    load_text_encoder,
    onnx_text_model_dir,
)
from ctir_es.errors import EncoderError, SchemaMismatch

TEXTS = ["Kitchen > Blenders", "stainless steel watch", "", "red running shoes, size 42"]


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / model_dir.name))


# ------------------------------------------------------------------ manifests and discovery


def test_text_manifest_describes_the_export(tiny_onnx_text: Path, tiny_text_model_dir: Path) -> None:
    m = read_manifest(tiny_onnx_text)
    assert m["kind"] == SENTENCE_KIND and m["dims"] == TINY_TEXT_DIMS and m["normalised"] is True
    assert m["quantize"] is None and isinstance(m["opset"], int) and m["opset"] >= 17
    assert m["source"]["path"] == str(tiny_text_model_dir.resolve()) and len(m["source"]["weights_sha256"]) == 64
    assert m["id"] == m["source"]["id"]  # fp32: the same embedding space as the PyTorch model
    assert m["text"]["max_seq_length"] == 64 and m["inputs"][:2] == ["input_ids", "attention_mask"]
    for key in ("model", "tokenizer"):
        entry = m["files"][key]
        assert file_sha256(tiny_onnx_text / entry["path"]) == entry["sha256"]
    assert m["name"] == tiny_onnx_text.name and m["name"].startswith("tiny-st-")
    assert verify(tiny_onnx_text) == []


def test_clip_manifest_holds_preprocessing_and_tokenizer(tiny_onnx_clip: Path, tiny_clip: TinyClip) -> None:
    m = read_manifest(tiny_onnx_clip)
    assert m["kind"] == CLIP_KIND and m["dims"] == TINY_CLIP_DIMS and m["architecture"] == tiny_clip.architecture
    assert m["image"]["size"] == [64, 64] and len(m["image"]["mean"]) == 3 and m["image"]["interpolation"]
    assert m["text"]["context_length"] == 77 and m["text"]["clean"] == "lower"
    assert set(m["files"]) == {"image", "text", "tokenizer"}
    assert m["source"]["weights_sha256"] == file_sha256(tiny_clip.checkpoint)
    assert tiny_onnx_clip.name == expected_clip_name(str(tiny_clip.config), str(tiny_clip.checkpoint))


def test_models_are_found_by_name_and_path(tiny_onnx_text: Path, session_models_dir: Path) -> None:
    assert find_model(tiny_onnx_text.name, session_models_dir) == tiny_onnx_text
    assert find_model(str(tiny_onnx_text)) == tiny_onnx_text.resolve()
    assert find_model("no-such-model", session_models_dir) is None
    assert find_model("../escape", session_models_dir) is None
    names = [m["name"] for m in list_models(session_models_dir)]
    assert tiny_onnx_text.name in names
    enc = OnnxTextEncoder(tiny_onnx_text.name, models_dir=session_models_dir)
    assert enc.encode_documents(TEXTS).shape == (4, TINY_TEXT_DIMS)


def test_encoders_are_aligned_normalised_and_lazy(tiny_onnx_text: Path, tiny_onnx_clip: Path) -> None:
    text = OnnxTextEncoder(tiny_onnx_text, batch_size=2)
    assert "loaded=False" in repr(text)
    docs = text.encode_documents(TEXTS)
    assert docs.dtype == np.float32 and np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-5)
    singles = np.vstack([text.encode_documents([t]) for t in TEXTS])
    np.testing.assert_allclose(docs, singles, atol=1e-5)  # row i is text i, whatever the batching
    assert text.encode_queries([]).shape == (0, TINY_TEXT_DIMS)
    with pytest.raises(TypeError, match="not one string"):
        text.encode_queries("blender")  # type: ignore[arg-type]
    clip = OnnxClipEncoder(tiny_onnx_clip, batch_size=2)
    from PIL import Image

    images = [Image.new("RGB", (40, 90), (i * 40, 0, 0)) for i in range(3)] + [Image.new("L", (30, 30), 9)]
    vecs = clip.encode_images(images)
    assert vecs.shape == (4, TINY_CLIP_DIMS) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert clip.encode_texts(TEXTS).shape == (4, TINY_CLIP_DIMS)


def test_threads_that_first_use_an_encoder_together_load_it_once(tiny_onnx_text: Path) -> None:
    opened: list[int] = []

    class Counting(OnnxTextEncoder):
        def _open(self, model_dir: Path, manifest: dict) -> None:
            opened.append(1)
            super()._open(model_dir, manifest)

    encoder = Counting(tiny_onnx_text)
    start = threading.Barrier(6)

    def first_use(_: int) -> np.ndarray:
        start.wait()
        return encoder.encode_documents(TEXTS)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(first_use, range(6)))
    assert len(opened) == 1 and encoder.loaded and "loaded=True" in repr(encoder)
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])


def test_a_bad_image_is_named_by_its_place_in_the_input(tiny_onnx_clip: Path) -> None:
    from PIL import Image

    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG")
    truncated = Image.open(io.BytesIO(buf.getvalue()[: buf.tell() // 2]))  # decoded lazily: fails in preprocessing
    good = [Image.new("RGB", (40, 40), (i * 50, 0, 0)) for i in range(3)]
    clip = OnnxClipEncoder(tiny_onnx_clip, batch_size=2)
    with pytest.raises(EncoderError, match="image 3 cannot be preprocessed"):
        clip.encode_images([*good, truncated])  # the second batch: its position in the input, not the batch
    with pytest.raises(TypeError, match="image 2 is str"):
        clip.encode_images([*good[:2], "photo.jpg"])  # type: ignore[list-item]


def test_changed_or_truncated_files_are_detected(tiny_onnx_text: Path, tmp_path: Path) -> None:
    copy = _copy(tiny_onnx_text, tmp_path)
    with (copy / "model.onnx").open("ab") as fh:
        fh.write(b"junk")
    assert any("does not match its sha256" in p for p in verify(copy))
    with pytest.raises(EncoderError, match="changed or truncated"):
        OnnxTextEncoder(copy).load()
    (copy / "tokenizer.json").unlink()
    assert any("missing" in p for p in verify(copy))


def test_not_a_model_dir_is_a_clear_error(tmp_path: Path, tiny_onnx_clip: Path) -> None:
    with pytest.raises(EncoderError, match="no exported ONNX text model"):
        OnnxTextEncoder(tmp_path / "nothing").load()
    with pytest.raises(EncoderError, match="not a text encoder"):
        OnnxTextEncoder(tiny_onnx_clip).load()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text('{"kind": "word2vec"}')
    with pytest.raises(EncoderError, match="supported: onnx-sentence"):
        read_manifest(tmp_path / "bad")


def test_a_killed_export_leaves_no_model(tmp_path: Path) -> None:
    target = tmp_path / "models" / "half"
    with pytest.raises(RuntimeError), staged_dir(target) as work:
        (work / "model.onnx").write_bytes(b"partial")
        raise RuntimeError("killed")
    assert not target.exists() and list((tmp_path / "models").iterdir()) == []
    with staged_dir(target) as work:
        (work / "manifest.json").write_text("{}")
    with pytest.raises(EncoderError, match="--force"), staged_dir(target):
        pass


# ------------------------------------------------------------------ backends and automatic export


def test_default_backend_is_onnx_and_torch_stays_available(tiny_text_model_dir: Path, tiny_onnx_text: Path) -> None:
    onnx = load_text_encoder(EncoderConfig(text_model=str(tiny_text_model_dir)))
    torch = load_text_encoder(EncoderConfig(text_model=str(tiny_text_model_dir), backend="torch"))
    assert isinstance(onnx, OnnxTextEncoder) and type(torch).__name__ == "SentenceTextEncoder"
    assert onnx.manifest["id"] == torch.manifest["id"]
    cos = (onnx.encode_documents(TEXTS) * torch.encode_documents(TEXTS)).sum(1)
    assert cos.min() >= 0.999
    with pytest.raises(EncoderError, match="supported: onnx, torch"):
        EncoderConfig(backend="tensorflow")


def test_first_use_exports_once_and_says_so(tiny_text_model_dir: Path, tmp_path: Path) -> None:
    cfg = EncoderConfig(text_model=str(tiny_text_model_dir), models_dir=tmp_path / "models")
    said: list[str] = []
    first = onnx_text_model_dir(cfg, said.append)
    assert len(said) == 1 and "exported text model" in said[0] and "\n" not in said[0] and str(first) in said[0]
    again = onnx_text_model_dir(cfg, said.append)
    assert again == first and len(said) == 1  # found, not exported again


def test_without_torch_a_missing_export_names_the_command(tiny_text_model_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    cfg = EncoderConfig(text_model=str(tiny_text_model_dir), models_dir=tmp_path / "empty")
    with pytest.raises(EncoderError) as err:
        load_text_encoder(cfg)
    msg = str(err.value)
    assert "ctir-es models export text" in msg and "pip install torch==2.13.0" in msg and "\n" not in msg
    image_cfg = EncoderConfig(clip_architecture="ViT-B-32", clip_weights="laion2b_s34b_b79k", models_dir=tmp_path)
    with pytest.raises(EncoderError, match="ctir-es models export clip"):
        load_image_encoder(image_cfg)


def test_manifests_reload_the_same_encoder(tiny_onnx_text: Path, tiny_onnx_clip: Path) -> None:
    text = OnnxTextEncoder(tiny_onnx_text).load()
    image = OnnxClipEncoder(tiny_onnx_clip).load()
    again_text = load_text_encoder(config_from_manifest(text.manifest, EncoderConfig()))
    again_image = load_image_encoder(config_from_manifest(image.manifest, EncoderConfig()))
    assert again_text.manifest["id"] == text.manifest["id"] and again_image.manifest["id"] == image.manifest["id"]
    # the torch backend reloads the source weights of an ONNX manifest
    torch_cfg = config_from_manifest(text.manifest, EncoderConfig(backend="torch"))
    assert load_text_encoder(torch_cfg).manifest["id"] == text.manifest["id"]


# ------------------------------------------------------------------ int8


def test_int8_export_is_smaller_and_close(tiny_text_model_dir: Path, tiny_onnx_text: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "export", "text", str(tiny_text_model_dir), "--quantize", "int8",
                                      "--models-dir", str(tmp_path), "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    int8 = Path(manifest["path"])
    assert manifest["quantize"] == "int8" and manifest["id"] == read_manifest(tiny_onnx_text)["id"] + "+int8"
    assert int8.name.endswith("-int8")
    assert (int8 / "model.onnx").stat().st_size < (tiny_onnx_text / "model.onnx").stat().st_size
    cos = (OnnxTextEncoder(int8).encode_documents(TEXTS) * OnnxTextEncoder(tiny_onnx_text).encode_documents(TEXTS)).sum(1)
    print(f"\ntiny text model int8 vs fp32: min cosine {cos.min():.4f}")
    assert cos.min() > 0.9
    assert manifest["parity"]["document"]["min_cosine"] > 0.9  # recorded, not enforced at 0.999


# ------------------------------------------------------------------ the index remembers its encoders


def test_query_with_another_encoder_says_what_differs(tiny_text_model_dir: Path, tiny_onnx_text: Path,
                                                      tmp_path: Path) -> None:
    from ctir_es.config import Settings
    from ctir_es.ingest.report import IngestReport
    from ctir_es.ingest.run import ingest_catalogue
    from ctir_es.search import Search

    model = _copy(tiny_onnx_text, tmp_path)  # the index will remember this folder
    settings = Settings(store=tmp_path / "store.db", clip_weights="none", cache_dir=tmp_path / "cache")
    ingest_catalogue("sample", None, settings, text_encoder=OnnxTextEncoder(model).load(), image_encoder=None,
                     report=IngestReport())
    with Search.open(settings) as search:
        assert search.search("Kitchen & Dining > Cookware", k=3).results
    # someone re-exports the model as int8 into the same folder: the index notices at query time
    result = CliRunner().invoke(cli, ["models", "export", "text", str(tiny_text_model_dir), "--quantize", "int8",
                                      "--models-dir", str(tmp_path / "m"), "--json"], catch_exceptions=False)
    int8 = Path(json.loads(result.output)["path"])
    for name in ("model.onnx", "manifest.json"):
        shutil.copyfile(int8 / name, model / name)
    with pytest.raises(SchemaMismatch) as err:
        Search.open(settings)
    msg = str(err.value)
    assert "title_vector" in msg and "id: index" in msg and "+int8" in msg and "re-ingest" in msg


def test_cli_list_and_verify(tiny_onnx_text: Path, session_models_dir: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(cli, ["models", "list", "--json", "--models-dir", str(session_models_dir)])
    assert listed.exit_code == 0 and tiny_onnx_text.name in {m["name"] for m in json.loads(listed.output)}
    ok = runner.invoke(cli, ["models", "verify", tiny_onnx_text.name, "--models-dir", str(session_models_dir)])
    assert ok.exit_code == 0 and "all files match" in ok.output
    missing = runner.invoke(cli, ["models", "verify", "nope", "--models-dir", str(session_models_dir)])
    assert missing.exit_code == 1 and "ctir-es models list" in missing.output
