"""A PNG of P@k (k = 1..10) and mAP@10 (both conventions) by system, one column per setting.

matplotlib is optional (the ``eval`` extra); without it ``plot`` returns a reason instead of
a file, and the report says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..protocol import SETTINGS

if TYPE_CHECKING:
    from .runner import EvalResult


def plot(result: EvalResult, path: Path) -> Path | str:
    """Write the figure; returns its path, or why it could not be drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: pip install 'ctir-es[eval]'"
    settings = list(result.settings)
    systems = [s.name for s in result.systems]
    labels = {s.name: s.label for s in result.systems}
    cmap = plt.get_cmap("tab20")
    colours = {name: cmap(i % 20) for i, name in enumerate(systems)}
    fig, axes = plt.subplots(2, len(settings), figsize=(5.2 * len(settings), 8.5), squeeze=False)
    ks = list(range(1, 11))
    for col, setting in enumerate(settings):
        res = result.settings[setting]
        top, bottom = axes[0][col], axes[1][col]
        for name in systems:
            means = res.means.get(name)
            if not means:
                continue
            style = "--" if ":" in name else "-"
            top.plot(ks, [100 * means.get(f"precision@{k}", 0.0) for k in ks], style, marker="o", markersize=3,
                     color=colours[name], label=labels[name])
        top.set_title(f"{SETTINGS[setting]} ({len(res.test.queries)} queries)")
        top.set_xlabel("k")
        top.set_ylabel("P@k (%)")
        top.set_xticks(ks)
        top.grid(alpha=0.3)
        width = 0.4
        xs = range(len(systems))
        paper = [100 * res.means.get(n, {}).get("map_min@10", 0.0) for n in systems]
        trec = [100 * res.means.get(n, {}).get("map@10", 0.0) for n in systems]
        bottom.bar([x - width / 2 for x in xs], paper, width, color=[colours[n] for n in systems],
                   label="mAP@10 ÷ min(k,R) (paper)")
        bottom.bar([x + width / 2 for x in xs], trec, width, color=[colours[n] for n in systems], alpha=0.45,
                   hatch="//", label="mAP@10 ÷ R (trec_eval)")
        bottom.set_xticks(list(xs))
        bottom.set_xticklabels(systems, rotation=60, ha="right", fontsize=7)
        bottom.set_ylabel("mAP@10 (%)")
        bottom.grid(axis="y", alpha=0.3)
        if col == 0:
            bottom.legend(fontsize=7, loc="upper left")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, max(1, len(names))), fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(f"Category-to-image retrieval, test split ({result.dataset.get('source', '')})", fontsize=11)
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
