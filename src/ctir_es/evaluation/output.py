"""What every evaluation report writes the same way: Markdown tables, the title with the
command that made it, and the JSON + Markdown pair of a task (``--task audit`` ...)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def md_table(head: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int = 1) -> list[str]:
    """A Markdown table; the columns from ``align_right_from`` on are right-aligned (numbers)."""
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < align_right_from else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def md_title(title: str, command: str = "", fence: str = "") -> list[str]:
    """``# title``, then the command in a code block (``fence``: its language) when there is one."""
    lines = [f"# {title}", ""]
    if command:
        lines += [f"```{fence}", command, "```", ""]
    return lines


def write_task(report: Mapping[str, Any], out_dir: Path, task: str,
               markdown: Callable[[Mapping[str, Any], str], str], command: str = "") -> dict[str, str]:
    """``<task>.json`` (the report and the command) and ``<task>.md`` under ``out_dir``; returns
    ``{"json": path, "markdown": path}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"{task}.json"
    js.write_text(json.dumps({**report, "command": command}, indent=1, default=str), encoding="utf-8")
    md = out_dir / f"{task}.md"
    md.write_text(markdown(report, command), encoding="utf-8")
    return {"json": str(js), "markdown": str(md)}
