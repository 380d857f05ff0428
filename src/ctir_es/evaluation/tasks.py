"""The evaluation tasks beside the ranking protocol, behind one interface.

Each task (``categorize``, ``audit``, ``diverse``, ``t2i``, ``i2t``) measures something on a
catalogue, renders its report as Markdown and writes the JSON + Markdown pair. ``TASKS`` maps a
task name to a factory that builds the task from the shared ``TaskOptions``; ``ctir-es evaluate
--task NAME`` looks the name up there (no if/elif), and the table's keys are the choices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..config import Settings
from ..encoders.base import ImageEncoder
from ..errors import ConfigError
from ..products import Product
from ..protocol import SplitSpec
from . import audit, categorize, diverse, text_image
from .index import Progress
from .task_input import TaskInput


class Task(Protocol):
    """One evaluation task: ``evaluate`` returns the report (plain JSON-able data), which
    ``markdown`` renders and ``write`` saves (a JSON and a Markdown file; it returns their paths
    under ``json`` and ``markdown``)."""

    @property
    def name(self) -> str:
        """The ``--task`` name."""
        ...

    def evaluate(
        self,
        products: Sequence[Product],
        settings: Settings,
        *,
        dataset_meta: Mapping[str, Any] | None = None,
        progress: Progress = ...,
    ) -> dict[str, Any]: ...

    def markdown(self, report: Mapping[str, Any], command: str = "") -> str: ...

    def write(
        self, report: Mapping[str, Any], out_dir: Path, command: str = ""
    ) -> dict[str, str]: ...


def _quiet(stage: str, done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True)
class TaskOptions:
    """What the command line can set for any task; each task reads the options it uses."""

    split: SplitSpec = field(default_factory=SplitSpec)
    seed: int = 0
    text_model: str | None = None
    label_space: str = "train"
    trained: tuple[Path, ...] = ()
    noise: float = 0.05
    limit: int | None = None
    work_dir: Path | None = None
    rebuild: bool = False
    image_encoder: ImageEncoder | None = None  # t2i / i2t: the CLIP encoder, loaded by the caller


class TaskModule(Protocol):
    """What each task module (``evaluation.audit``, ``.categorize``, ``.diverse``,
    ``.text_image``) provides beside its ``evaluate_*`` function."""

    def markdown(self, report: Mapping[str, Any], command: str = "") -> str: ...

    def write(
        self, report: Mapping[str, Any], out_dir: Path, command: str = ""
    ) -> dict[str, str]: ...


@dataclass(frozen=True)
class ModuleTask:
    """A task implemented by one module: its ``evaluate_*`` function run on a ``TaskInput``
    with ``config`` (and ``extra`` keywords, e.g. the CLIP encoder), its ``markdown`` and
    ``write``."""

    name: str
    module: TaskModule
    run: Callable[..., dict[str, Any]]
    config: Any
    extra: Mapping[str, Any] = field(default_factory=dict)

    def evaluate(
        self,
        products: Sequence[Product],
        settings: Settings,
        *,
        dataset_meta: Mapping[str, Any] | None = None,
        progress: Progress = _quiet,
    ) -> dict[str, Any]:
        task = TaskInput(products, settings, dict(dataset_meta or {}), progress)
        return self.run(task, self.config, **self.extra)

    def markdown(self, report: Mapping[str, Any], command: str = "") -> str:
        return self.module.markdown(report, command)

    def write(self, report: Mapping[str, Any], out_dir: Path, command: str = "") -> dict[str, str]:
        return self.module.write(report, out_dir, command)


def _categorize(o: TaskOptions) -> Task:
    """Infer hidden categories of test products (top-1/top-5 per level, hF, seen/unseen)."""
    config = categorize.CategorizeConfig(
        split=o.split,
        label_space=o.label_space,
        trained=o.trained,
        text_model=o.text_model,
        limit=o.limit,
        work_dir=o.work_dir,
        rebuild=o.rebuild,
    )
    return ModuleTask("categorize", categorize, categorize.evaluate_categorize, config)


def _audit(o: TaskOptions) -> Task:
    """Find products moved to a wrong category by seeded synthetic noise."""
    config = audit.AuditEvalConfig(
        noise=o.noise, seed=o.seed, text_model=o.text_model, work_dir=o.work_dir, rebuild=o.rebuild
    )
    return ModuleTask("audit", audit, audit.evaluate_audit, config)


def _diverse(o: TaskOptions) -> Task:
    """Near-duplicates in the top 10 of category queries with and without MMR."""
    config = diverse.DiverseEvalConfig(
        text_model=o.text_model, work_dir=o.work_dir, rebuild=o.rebuild
    )
    return ModuleTask("diverse", diverse, diverse.evaluate_diverse, config)


def _text_image(direction: str) -> Callable[[TaskOptions], Task]:
    """Text-to-image or image-to-text retrieval between held-out titles and images."""

    def make(o: TaskOptions) -> Task:
        config = text_image.TextImageConfig(
            directions=(direction,), split=o.split, work_dir=o.work_dir, rebuild=o.rebuild
        )
        return ModuleTask(
            direction,
            text_image,
            text_image.evaluate_text_image,
            config,
            {"image_encoder": o.image_encoder},
        )

    return make


TASKS: dict[str, Callable[[TaskOptions], Task]] = {
    "categorize": _categorize,
    "audit": _audit,
    "diverse": _diverse,
    "t2i": _text_image("t2i"),
    "i2t": _text_image("i2t"),
}
"""Task name -> factory; the keys are the ``--task`` choices besides ``retrieval``."""

NEEDS_CLIP: frozenset[str] = frozenset({"t2i", "i2t"})
"""Tasks that need the CLIP image encoder (the command loads it before reading the catalogue)."""


def make_task(name: str, options: TaskOptions = TaskOptions()) -> Task:
    """The task called ``name``, built from ``options``; ``ConfigError`` names the known tasks."""
    try:
        factory = TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; supported: {', '.join(TASKS)}") from None
    return factory(options)
