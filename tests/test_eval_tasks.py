"""The evaluation tasks beside the ranking protocol (``--task categorize|audit|diverse``) on the
bundled sample with the tiny text model: what they measure, the JSON + Markdown pair they
write, and a second run that reuses the cached indexes and gives the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import sample_products

from ctir_es.config import Settings
from ctir_es.evaluation import audit, categorize, diverse
from ctir_es.evaluation.task_input import TaskInput
from ctir_es.protocol import SplitSpec


@pytest.fixture(scope="module")
def products() -> list:
    return sample_products()


def _settings(tmp_path: Path) -> Settings:
    return Settings(store=tmp_path / "x.db", cache_dir=tmp_path / "cache", clip_weights="none")


def _written(files: dict[str, str], task: str, command: str) -> tuple[dict, str]:
    assert Path(files["json"]).name == f"{task}.json" and Path(files["markdown"]).name == f"{task}.md"
    data = json.loads(Path(files["json"]).read_text(encoding="utf-8"))
    text = Path(files["markdown"]).read_text(encoding="utf-8")
    assert data["command"] == command and f"```\n{command}\n```" in text
    return data, text


def test_audit_finds_injected_noise_and_writes_its_report(products: list, tmp_path: Path,
                                                          tiny_text_model_dir: Path) -> None:
    config = audit.AuditEvalConfig(noise=0.1, text_model=str(tiny_text_model_dir), work_dir=tmp_path / "eval")
    stages: list[str] = []
    task = TaskInput(products, _settings(tmp_path), {"kind": "jsonl"},
                     progress=lambda stage, done, total: stages.append(stage))
    result = audit.evaluate_audit(task, config)
    assert set(result["results"]) == {"near", "far"} and "audit (far noise)" in stages
    for r in result["results"].values():
        assert r["products"] == len(products) and r["moved"] == round(0.1 * len(products))
        assert 0.0 <= r["auc"] <= 1.0 and 0.0 <= r["restore_rate"] <= 1.0
    # far noise (another root) is easier to find than a move to a sibling
    assert result["results"]["far"]["auc"] > result["results"]["near"]["auc"]
    data, text = _written(audit.write(result, tmp_path / "out", "ctir-es evaluate sample --task audit"), "audit",
                          "ctir-es evaluate sample --task audit")
    assert text.startswith("# Audit with 10% synthetic category noise")
    assert text.count("\n| near |") == 1 and text.count("\n| far |") == 1
    assert data["results"]["far"]["moved"] == result["results"]["far"]["moved"]
    again = audit.evaluate_audit(TaskInput(products, _settings(tmp_path), {"kind": "jsonl"}), config)
    assert again["results"] == result["results"]  # the cached noisy indexes, the same numbers


def test_diverse_measures_duplicates_with_and_without_mmr(products: list, tmp_path: Path,
                                                          tiny_text_model_dir: Path) -> None:
    config = diverse.DiverseEvalConfig(lambdas=(0.5,), levels=(1, 2), text_model=str(tiny_text_model_dir),
                                       work_dir=tmp_path / "eval")
    result = diverse.evaluate_diverse(TaskInput(products, _settings(tmp_path), {"kind": "jsonl"}), config)
    assert set(result["results"]) == {"plain", "mmr 0.5"} and result["queries"] > 0
    plain, mmr = result["results"]["plain"], result["results"]["mmr 0.5"]
    assert mmr["near_duplicate_rate@10"] <= plain["near_duplicate_rate@10"]
    data, text = _written(diverse.write(result, tmp_path / "out", "cmd"), "diverse", "cmd")
    assert text.startswith("# Diversified category pages (MMR)") and "| mmr 0.5 |" in text
    assert data["queries"] == result["queries"]


def test_categorize_task_reports_every_signal(products: list, tmp_path: Path, tiny_text_model_dir: Path) -> None:
    config = categorize.CategorizeConfig(split=SplitSpec(seed=3), levels=(1, 2), text_model=str(tiny_text_model_dir),
                                         work_dir=tmp_path / "eval")
    result = categorize.evaluate_categorize(TaskInput(products, _settings(tmp_path), {"kind": "jsonl"}), config)
    assert result["dataset"]["hash"].startswith("sha256:") and result["index"]["indexed"] == len(products)
    assert "fused (tuned on val)" in result["results"]
    for row in result["results"].values():
        assert set(row["levels"]) <= {1, 2} and 0.0 <= row["hierarchical"]["f1"] <= 1.0
    data, text = _written(categorize.write(result, tmp_path / "out", "cmd"), "categorize", "cmd")
    assert "| fused (tuned on val) |" in text and "Seen / unseen categories" in text
    assert set(data["results"]) == set(result["results"])
    assert categorize.markdown(data, "cmd") == text  # the JSON (string level keys) renders the same


def test_every_task_is_built_from_the_table_with_its_options() -> None:
    from ctir_es.cli.eval_tasks import TASKS as CHOICES
    from ctir_es.errors import ConfigError
    from ctir_es.evaluation.tasks import TASKS, TaskOptions, make_task

    assert set(CHOICES) == {"retrieval", *TASKS}  # the --task choices and the table never drift
    options = TaskOptions(split=SplitSpec(seed=5), seed=5, text_model="m", label_space="taxonomy", noise=0.2,
                          limit=7, rebuild=True)
    for name in TASKS:
        task = make_task(name, options)
        assert task.name == name
        assert all(callable(getattr(task, m)) for m in ("evaluate", "markdown", "write"))
    assert make_task("audit", options).config == audit.AuditEvalConfig(  # type: ignore[attr-defined]
        noise=0.2, seed=5, text_model="m", rebuild=True)
    built = make_task("categorize", options).config  # type: ignore[attr-defined]
    assert (built.label_space, built.limit, built.split.seed) == ("taxonomy", 7, 5)
    assert make_task("i2t", options).config.directions == ("i2t",)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="supported: categorize, audit, diverse, t2i, i2t"):
        make_task("nope")
