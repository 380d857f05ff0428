"""The README's Python API example runs as written (the docs-test idea of sqlite-utils): on the
bundled sample, text-only (what `make demo` builds) and with CLIP image vectors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from service_support import sample_image, sample_search
from store_support import copy_vectors

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    section = README.read_text(encoding="utf-8").split("### Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Python API section has no python block"
    return match.group(1)


@pytest.mark.parametrize("with_clip", [False, True], ids=["text-only", "clip"])
def test_python_api_example_runs(
    tmp_path: Path, tiny_text_model_dir: Path, tiny_clip, with_clip: bool
) -> None:
    search, _ = sample_search(
        tmp_path / "build", tiny_text_model_dir, tiny_clip if with_clip else None
    )
    store = Path(search.store.path)
    search.close()
    work = tmp_path / "work"
    (work / "artifacts").mkdir(parents=True)
    shutil.copyfile(store, work / "artifacts" / "sample.db")
    copy_vectors(store, work / "artifacts" / "sample.db")
    shutil.copyfile(sample_image(), work / "photo.jpg")
    env = {
        **os.environ,
        "CTIR_ES_CONFIG": str(tmp_path / "absent.toml"),
        "CTIR_ES_CACHE_DIR": str(tmp_path / "cache"),
    }
    for var in ("CTIR_ES_STORE", "CTIR_ES_URL", "CTIR_ES_TEXT_MODEL", "CTIR_ES_CLIP_WEIGHTS"):
        env.pop(var, None)
    out = subprocess.run(
        [sys.executable, "-c", python_example()],
        check=False,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("1 ") and "bm25" in lines[0]  # ranked results with their sources
    assert lines[-1] == "Hand blender 500 W"


def test_readme_is_a_front_page() -> None:
    """The README stays short (issue 26: about 250 lines); the rest is said once, in docs/."""
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_ci_runs_the_readme_test_command() -> None:
    """The quick start's two set-up commands are `make demo` and `make test`, and `.ci/run` runs
    the README's test command as it stands."""
    section = README.read_text(encoding="utf-8").split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block, "the README's quick start has no bash block"
    commands = [
        line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()
    ]
    assert commands == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.MULTILINE), (
        ".ci/run no longer runs the README's test command"
    )
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.MULTILINE) and re.search(
        r"^test:", makefile, re.MULTILINE
    )
