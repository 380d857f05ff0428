"""The CLI loads a command's module only when the command runs: help and usage errors are
instant, and the listing's one-line help never drifts from the commands' own docstrings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from ctir_es.cli.main import COMMANDS, cli, load_all_commands
from ctir_es.config import configuration_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_listing_help_is_each_commands_own_first_line() -> None:
    load_all_commands()
    assert set(cli.commands) == set(COMMANDS)
    for name, line in COMMANDS.items():
        assert cli.commands[name].get_short_help_str(limit=500) == line, name


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from ctir_es.cli.main import cli\n"
        "out = CliRunner().invoke(cli, ['--help'])\n"
        "assert out.exit_code == 0 and 'query' in out.output, out.output\n"
        "heavy = [m for m in ('numpy', 'elasticsearch', 'torch', 'onnxruntime', 'fastapi', 'PIL') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_an_unknown_command_is_a_usage_error() -> None:
    out = CliRunner().invoke(cli, ["qurey"])
    assert out.exit_code == 2 and "No such command 'qurey'" in out.output


def test_config_shows_values_and_their_origin(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('text_model = "from-file"\nbatch_size = 8\n', encoding="utf-8")
    env = {"CTIR_ES_CONFIG": str(file), "CTIR_ES_TEXT_MODEL": "from-env", "CTIR_ES_CLIP_WEIGHTS": "off"}
    out = CliRunner().invoke(cli, ["config", "--json"], env=env)
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)["settings"]
    assert shown["text_model"] == {"value": "from-env", "from": "env CTIR_ES_TEXT_MODEL"}
    assert shown["batch_size"] == {"value": 8, "from": "config file"}
    assert shown["clip_weights"] == {"value": None, "from": "env CTIR_ES_CLIP_WEIGHTS"}
    assert shown["fusion_location"] == {"value": "client", "from": "default"}


def test_a_bad_setting_is_one_clear_line(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["config"], env={"CTIR_ES_VECTOR_INDEX": "annoy"})
    assert out.exit_code == 1
    assert "setting 'vector_index' must be one of exact, sq8, ivf, hnsw, got 'annoy'" in out.output


def test_configuration_page_is_the_settings_table() -> None:
    assert configuration_markdown() in DOCS.read_text(encoding="utf-8")


def test_a_reader_that_leaves_early_gets_no_error_text() -> None:
    """`ctir-es config --markdown | head -1`: a closed pipe ends the command quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "ctir_es.cli", "config", "--markdown"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 1 and "BrokenPipe" not in err and "Traceback" not in err


def test_on_off_settings_take_the_usual_spellings() -> None:
    from ctir_es.config import env_value

    for word, value in (("0", False), ("off", False), ("no", False), ("1", True), ("Yes", True), ("on", True)):
        assert env_value("onnx_spin", {"CTIR_ES_ONNX_SPIN": word}) is value, word
    assert env_value("onnx_spin", {}) is None
