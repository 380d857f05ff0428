"""The device ONNX encoders run on (``--device`` / ``onnx_device``), with the real onnxruntime of
this install. This machine has no GPU and the CPU package: ``get_available_providers()`` really
lacks CUDA, so ``auto`` and ``cpu`` give the CPU and ``cuda`` falls back to it with one notice.
Nothing here mocks onnxruntime. The CUDA path itself (a machine whose onnxruntime offers CUDA) is
tested as data: the providers list that would be given to ``InferenceSession``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import click
import numpy as np
import onnxruntime
import pytest
from click.testing import CliRunner

from ctir_es.cli.main import cli, device_option, load_all_commands, settings_from
from ctir_es.config import Settings, load_settings
from ctir_es.encoders.onnx import providers
from ctir_es.encoders.onnx.providers import (
    CPU,
    CUDA,
    GPU_INSTALL,
    ProviderChoice,
    check_device,
    check_session,
    choose_providers,
    install_conflict,
    session_providers,
)
from ctir_es.encoders.onnx.session import RuntimeOptions, open_session
from ctir_es.encoders.onnx.text import OnnxTextEncoder
from ctir_es.encoders.registry import EncoderConfig, load_text_encoder
from ctir_es.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
NOTICE = "ONNX device cuda asked for, but onnxruntime has no CUDA provider"
AVAILABLE = onnxruntime.get_available_providers()
no_cuda_here = pytest.mark.skipif(CUDA in AVAILABLE, reason="this onnxruntime offers CUDA: the fallback "
                                  "tests are for an install without it")


@pytest.fixture(autouse=True)
def fresh_notices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: no notice given yet."""
    monkeypatch.setattr(providers, "_NOTICED", set())
    monkeypatch.setattr(providers, "_CUDA_FAILED", threading.Event())
    monkeypatch.delenv("CTIR_ES_ONNX_DEVICE", raising=False)


def notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == providers.log.name and r.levelno == logging.WARNING]


# ------------------------------------------------------------------ selection on this install


@no_cuda_here
@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_auto_and_cpu_run_on_the_cpu_without_a_word(device: str, caplog: pytest.LogCaptureFixture) -> None:
    choice = session_providers(device)
    assert choice.providers == (CPU,) and choice.notice is None
    assert notices(caplog) == []


@no_cuda_here
def test_cuda_without_cuda_falls_back_to_the_cpu_with_one_notice(caplog: pytest.LogCaptureFixture) -> None:
    first = session_providers("cuda")
    again = session_providers("CUDA ")  # any spelling of the same device: the same notice
    assert first.providers == again.providers == (CPU,)
    (notice,) = notices(caplog)  # one per process, however many sessions ask
    assert notice.startswith(NOTICE) and "running on the CPU" in notice
    assert GPU_INSTALL in notice and "--device cpu" in notice
    assert all(p in notice for p in AVAILABLE)  # what onnxruntime does offer


@pytest.mark.parametrize("bad", ["gpu", "cuda:0", "", 1, None])
def test_an_unknown_device_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="unknown ONNX device .*supported: auto, cpu, cuda"):
        check_device(bad)
    with pytest.raises(ConfigError):
        RuntimeOptions(device=bad)  # type: ignore[arg-type]


def test_an_unknown_device_from_env_or_file_is_a_config_error(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("CTIR_ES_ONNX_DEVICE", "gpu")
    with pytest.raises(ConfigError, match="onnx_device"):
        RuntimeOptions.from_env()
    monkeypatch.delenv("CTIR_ES_ONNX_DEVICE")
    config = tmp_path / "config.toml"
    config.write_text('onnx_device = "tpu"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="onnx_device"):
        load_settings(config_file=config)
    with pytest.raises(ConfigError, match="onnx_device"):
        Settings().with_overrides(onnx_device="gpu")


def test_the_cuda_providers_list_as_data() -> None:
    """What InferenceSession would be given where onnxruntime offers CUDA (no GPU here: the
    available list is data, not a mock of onnxruntime)."""
    gpu_build = ["TensorrtExecutionProvider", CUDA, CPU]
    assert choose_providers("cuda", gpu_build) == ProviderChoice("cuda", (CUDA, CPU))
    assert choose_providers("auto", gpu_build) == ProviderChoice("auto", (CUDA, CPU))
    assert choose_providers("cpu", gpu_build) == ProviderChoice("cpu", (CPU,))
    assert choose_providers("cuda", gpu_build).wants_cuda and not choose_providers("cpu", gpu_build).wants_cuda
    # the CPU package: CPU only, and only an explicit cuda says so
    cpu_build = ["AzureExecutionProvider", CPU]
    assert choose_providers("auto", cpu_build) == ProviderChoice("auto", (CPU,))
    fallback = choose_providers("cuda", cpu_build)
    assert fallback.providers == (CPU,) and fallback.notice and "AzureExecutionProvider, CPUExecutionProvider" in fallback.notice


def test_both_onnxruntime_packages_installed_is_named_in_the_notice() -> None:
    # here only the CPU package is installed (installing onnxruntime-gpu too would break it)
    assert install_conflict() is None
    conflict = "both onnxruntime 1.31.1 and onnxruntime-gpu 1.31.1 are installed and share one module"
    notice = choose_providers("cuda", [CPU], conflict).notice
    assert notice is not None and conflict in notice and GPU_INSTALL in notice


# ------------------------------------------------------------------ real sessions


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-node ONNX graph (y = x + 1), written with the onnx package."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "plus-one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime the project allows
    path = tmp_path_factory.mktemp("plus-one") / "model.onnx"
    onnx.save(model, str(path))
    return path


@no_cuda_here
@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
def test_a_real_session_runs_on_the_cpu(identity_model: Path, device: str, caplog: pytest.LogCaptureFixture) -> None:
    session = open_session(identity_model, RuntimeOptions(device=device))
    assert session.get_providers() == [CPU]
    (y,) = session.run(None, {"x": np.zeros((2, 4), dtype=np.float32)})
    assert np.array_equal(y, np.ones((2, 4), dtype=np.float32))
    assert len(notices(caplog)) == (device == "cuda")


def test_a_cuda_session_that_comes_up_on_the_cpu_is_noticed_once(identity_model: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """onnxruntime-gpu lists CUDA even where its libraries fail to load and then builds a CPU
    session: a real CPU session checked against a CUDA choice (the choice is data) gets the notice."""
    session = onnxruntime.InferenceSession(str(identity_model), providers=[CPU])
    choice = ProviderChoice("auto", (CUDA, CPU))
    assert check_session(session, choice) == CPU
    assert check_session(session, choice) == CPU
    (notice,) = notices(caplog)
    assert "could not create" in notice and "running on the CPU" in notice
    caplog.clear()
    assert check_session(session, ProviderChoice("cpu", (CPU,))) == CPU and notices(caplog) == []
    # later sessions of the process go straight to the CPU: no second try, no second notice
    for device in ("auto", "cuda"):
        assert session_providers(device) == ProviderChoice(device, (CPU,))
    assert notices(caplog) == []


@no_cuda_here
def test_the_text_encoder_built_from_settings_reports_its_provider(tiny_onnx_text: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings().with_overrides(onnx_device="cuda")
    cfg = EncoderConfig.from_settings(settings, text_model=str(tiny_onnx_text))
    assert cfg.runtime.device == "cuda"
    on_cuda = load_text_encoder(cfg)
    assert isinstance(on_cuda, OnnxTextEncoder) and on_cuda.provider == CPU
    assert on_cuda._session.get_providers() == [CPU]
    on_cpu = OnnxTextEncoder(tiny_onnx_text, runtime=RuntimeOptions(device="cpu")).load()
    titles = ["stainless steel pressure cooker 5 L", "red cotton bath towel"]
    np.testing.assert_allclose(on_cuda.encode_documents(titles), on_cpu.encode_documents(titles), atol=1e-6)
    assert [n for n in notices(caplog) if n.startswith(NOTICE)] and len(notices(caplog)) == 1


def test_the_config_file_setting_reaches_the_encoders(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('onnx_device = "cpu"\n', encoding="utf-8")
    assert EncoderConfig.from_settings(load_settings(config_file=config)).runtime.device == "cpu"
    assert EncoderConfig.from_settings(Settings()).runtime.device == "auto"


def test_the_config_file_threads_reach_the_encoders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTIR_ES_ONNX_THREADS", raising=False)
    config = tmp_path / "config.toml"
    config.write_text("onnx_threads = 1\n", encoding="utf-8")
    assert EncoderConfig.from_settings(load_settings(config_file=config)).runtime.threads == 1


# ------------------------------------------------------------------ the CLI


ENCODING_COMMANDS = [("ingest", "jsonl"), ("ingest", "sample"), ("learn",), ("query",), ("serve",),
                     ("categorize",), ("audit",), ("calibrate",), ("evaluate", "jsonl"), ("train",)]


@pytest.mark.parametrize("path", ENCODING_COMMANDS, ids=" ".join)
def test_every_command_that_encodes_takes_device(path: tuple[str, ...]) -> None:
    load_all_commands()
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    (option,) = [p for p in command.params if p.name == "device"]
    assert isinstance(option.type, click.Choice) and list(option.type.choices) == ["auto", "cpu", "cuda"]


def test_device_flag_wins_over_env_and_a_bad_one_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("CTIR_ES_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CTIR_ES_ONNX_DEVICE", "cpu")

    @click.command()
    @device_option
    @click.pass_context
    def probe(ctx: click.Context) -> None:
        ctx.obj = {}
        click.echo(settings_from(ctx).onnx_device)

    runner = CliRunner()
    assert runner.invoke(probe, ["--device", "CUDA"]).output.strip() == "cuda"
    assert runner.invoke(probe, []).output.strip() == "cpu"  # no flag: env
    bad = runner.invoke(probe, ["--device", "gpu"])
    assert bad.exit_code == 2 and "'gpu' is not one of 'auto', 'cpu', 'cuda'" in bad.output


@no_cuda_here
def test_ingest_and_query_with_device_cuda_say_it_once_and_succeed(tiny_text_model_dir: Path,
                                                                   tiny_onnx_text: Path, tmp_path: Path) -> None:
    """The real command in its own process: one notice line on stderr, no traceback, exit 0."""
    catalogue = tmp_path / "products.jsonl"
    catalogue.write_text("".join(json.dumps({"id": f"p{i}", "title": title, "categories": "Kitchen > Cookware"}) + "\n"
                                 for i, title in enumerate(["Steel wok 30 cm", "Pressure cooker 5 L", "Kadhai 2 L"])),
                         encoding="utf-8")
    env = {**os.environ, "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"), "CTIR_ES_CACHE_DIR": str(tmp_path / "cache"),
           "CTIR_ES_STORE": str(tmp_path / "store.db"), "CTIR_ES_TEXT_MODEL": str(tiny_text_model_dir),
           "CTIR_ES_CLIP_WEIGHTS": "none"}
    env.pop("CTIR_ES_URL", None)
    env.pop("CTIR_ES_ONNX_DEVICE", None)
    for args in (["ingest", "jsonl", str(catalogue), "--no-images", "--device", "cuda"],
                 ["query", "pressure cooker", "--device", "cuda", "--json"]):
        done = subprocess.run([sys.executable, "-m", "ctir_es.cli", *args], check=False, env=env, capture_output=True,
                              text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stderr.splitlines() if NOTICE in line]
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("WARNING ctir_es.encoders.onnx.providers: ")
        assert "Traceback" not in done.stderr
    assert json.loads(done.stdout)["results"][0]["id"] == "p1"


def test_the_gpu_extra_and_its_install_step_are_declared_and_documented() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert any(dep.startswith("onnxruntime>=") for dep in project["dependencies"])  # CPU by default
    assert [d for d in project["optional-dependencies"]["gpu"] if d.startswith("onnxruntime-gpu")]
    models = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    assert 'pip install "ctir-es[gpu]"' in models and GPU_INSTALL in models  # the step the notice names
