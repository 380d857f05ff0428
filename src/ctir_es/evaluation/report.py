"""Write an evaluation out: a Markdown report in the paper's layout, the JSON behind it, TREC run
and qrels files, the topics, and a PNG plot. ``write_report`` returns what it wrote."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..metrics import parse_metric
from ..protocol import QUERY_TEXTS, RELEVANCE, SETTINGS
from .output import md_table, md_title
from .plot import plot
from .runner import EvalResult, SettingResult
from .significance import significant_pairs
from .systems import HybridSystem, System
from .trec import safe_name, write_qrels, write_queries, write_run

# The paper's table columns, in its order, then the extra ones.
TABLE_METRICS: tuple[str, ...] = (
    "precision@1", "precision@5", "precision@10", "map_min@5", "map_min@10", "r-precision",
    "map@5", "map@10", "ndcg@10", "recall@100",
)
HEADERS: dict[str, str] = {
    "precision@1": "P@1", "precision@5": "P@5", "precision@10": "P@10",
    "map_min@5": "mAP@5", "map_min@10": "mAP@10", "r-precision": "R-prec",
    "map@5": "mAP@5÷R", "map@10": "mAP@10÷R", "ndcg@10": "nDCG@10", "recall@100": "R@100",
}
COMPARE_METRICS: tuple[str, ...] = ("precision@10", "map_min@10", "map@10", "ndcg@10")

T = TypeVar("T")


def header(metric: str) -> str:
    return HEADERS.get(metric) or parse_metric(metric).label


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def table_metrics(result: EvalResult) -> list[str]:
    return [m for m in TABLE_METRICS if m in result.config.metrics] + [
        m for m in result.config.metrics if m not in TABLE_METRICS
    ]


def measured(result: EvalResult, table: Callable[[SettingResult], Mapping[str, T]]) -> Iterator[tuple[str, System, T]]:
    """``(setting, system, entry)`` for every system with an entry in ``table(setting result)``,
    settings and systems in report order."""
    for setting, res in result.settings.items():
        for system in result.systems:
            entry = table(res).get(system.name)
            if entry is not None:
                yield setting, system, entry


def results_rows(result: EvalResult, short: bool = False) -> list[list[str]]:
    """``[setting, system, queries, metric...]`` rows of the main table (percent); ``short``
    uses setting keys and system names instead of labels (narrow terminals)."""
    cols = table_metrics(result)
    rows = []
    for setting, system, means in measured(result, lambda r: r.means):
        queries = result.settings[setting].test.queries
        rows.append([setting if short else SETTINGS[setting], system.name if short else system.label,
                     str(len(queries)), *(pct(means.get(m) if queries else None) for m in cols)])
    return rows


def hybrid_findings(result: EvalResult) -> list[dict[str, Any]]:
    """For each setting and hybrid: each compared metric against its best single component."""
    out = []
    for setting, res in result.settings.items():
        for system in result.systems:
            if not isinstance(system, HybridSystem) or system.name not in res.means:
                continue
            for metric in COMPARE_METRICS:
                measured = {c: res.means.get(c, {}).get(metric) for c in (system.lexical, system.dense)}
                comps = {c: v for c, v in measured.items() if v is not None}
                if not comps:
                    continue
                best = max(comps, key=lambda c: comps[c])
                value = res.means[system.name][metric]
                p = None
                pv = res.significance.get("p_values", {})
                tested = metric in res.significance.get("metrics", []) and best in pv.get(system.name, {})
                if tested:
                    p = pv[system.name][best].get(metric)
                out.append({"setting": setting, "hybrid": system.name, "metric": metric, "value": value,
                            "best_component": best, "component_value": comps[best],
                            "delta": value - comps[best], "p": p, "tested": tested})
    return out


def markdown(result: EvalResult, command: str = "") -> str:
    """The report in the paper's layout: one section after the other."""
    lines = _header_md(result, command)
    for section in (_query_sets_md, _results_md, _hybrid_md, _tuning_md, _by_level_md, _seen_md, _errors_md,
                    _significance_md, _reproducibility_md):
        lines += section(result)
    lines.append("")
    return "\n".join(lines)


def _header_md(result: EvalResult, command: str) -> list[str]:
    """Title, command, and what was measured how: dataset, split, queries, systems, time."""
    cfg = result.config
    ds = result.dataset
    lines = md_title(f"Category-to-image evaluation: {ds.get('kind', '')} {ds.get('source', '')}", command, "bash")
    splits = ds.get("splits", {})
    return lines + [
        f"- **Dataset:** {ds.get('products')} products ({ds.get('with_category')} with a category, "
        f"{ds.get('category_nodes')} category nodes), `{ds.get('hash')}`"
        + (f", first {cfg.limit} records (`--limit`)" if cfg.limit else ""),
        (f"- **Split** (seed {cfg.split.seed}): train {splits.get('train')}, val {splits.get('val')}, "
        f"test {splits.get('test')}; every system ranks the test products only."),
        (f"- **Queries:** category nodes by full path; query text = {QUERY_TEXTS[cfg.query_text]}; "
        f"relevance = {cfg.relevance} ({RELEVANCE[cfg.relevance]})."),
        (f"- **Systems** run through the Store API ({_backend(result)}), {cfg.depth} results each; no system "
        "sees a test product's categories (BM25 never searches the category field; vectors come from "
        "titles or images)."),
        f"- **Wall time:** {result.wall_seconds:.0f} s.",
        "",
    ]


def _query_sets_md(result: EvalResult) -> list[str]:
    """Per setting: test queries, seen / unseen, levels, relevant products, the P@10 ceiling."""
    rows = []
    for name, res in result.settings.items():
        t, v = res.test.summary(), res.val.summary()
        rows.append([SETTINGS[name], str(t["queries"]), f"{t['seen']} / {t['unseen']}",
                     ", ".join(f"{lv}: {n}" for lv, n in t["levels"].items()),
                     f"{t['relevant_mean']:.1f}, {t['relevant_max']}", pct(t["p10_ceiling"]), str(v["queries"])])
    head = ["setting", "test queries", "seen / unseen", "levels", "relevant per query (mean, max)",
            "P@10 ceiling", "val queries"]
    return ["## Query sets", "", *md_table(head, rows, 1), "",
            ("P@10 ceiling: the best P@10 any ranking can reach, mean of min(R, 10) / 10 (a leaf with one "
             "relevant product caps P@10 at 10%)."), ""]


def _results_md(result: EvalResult) -> list[str]:
    """The main table (percent), then the systems that were not measured and why."""
    lines = ["## Results on the test split (percent)", "",
             ("mAP@k follows the paper: AP@k divided by min(k, R). mAP@k÷R is the trec_eval / ranx convention "
              "(divided by all R relevant products). R-prec is precision at R."), ""]
    head = ["setting", "system", "queries", *(header(m) for m in table_metrics(result))]
    lines += [*md_table(head, results_rows(result), 2), ""]
    if result.skipped:
        lines += ["Not measured:", ""]
        lines += [f"- {s.label} (`{s.name}`): {s.reason}" for s in result.skipped]
        lines.append("")
    return lines


def _hybrid_md(result: EvalResult) -> list[str]:
    """Each hybrid against the better of its two components, per compared metric."""
    findings = hybrid_findings(result)
    if not findings:
        return []
    lines = ["## Hybrid fusion against its best single component", "",
             ("Each cell: the hybrid's score, then Δ = hybrid minus the better of its two components on "
              "that metric (in points), which component that is, and the p-value of the paired test "
              "where that metric was tested."), ""]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for f in findings:
        p = "" if not f["tested"] else (", identical per query" if f["p"] is None else f", p={f['p']:.3f}")
        cells.setdefault((f["setting"], f["hybrid"]), {})[f["metric"]] = (
            f"{pct(f['value'])} ({100 * f['delta']:+.2f} vs {f['best_component']}{p})")
    rows = [[SETTINGS[setting], hybrid, *(by.get(m, "-") for m in COMPARE_METRICS)]
            for (setting, hybrid), by in cells.items()]
    lines += md_table(["setting", "hybrid", *(header(m) for m in COMPARE_METRICS)], rows, 2)
    lines.append("")
    return lines


def _tuning_md(result: EvalResult) -> list[str]:
    """The linear fusion weight chosen on the validation split, per setting and hybrid."""
    cfg = result.config
    rows: list[list[str]] = []
    for setting, res in result.settings.items():
        for name, t in res.tuning.items():
            grid = t.get("grid", {})
            chosen = t["chosen"]
            rows.append([SETTINGS[setting], name, str(t.get("val_queries", 0)), f"{chosen:g}",
                         pct(grid.get(f"{chosen:g}")), t.get("note", "")])
    if not rows:
        return []
    lines = ["## Linear fusion weights (tuned on the validation split)", "",
             (f"BM25 weight w (the dense system gets 1 - w) over the grid "
              f"{', '.join(f'{w:g}' for w in cfg.linear_grid)}, maximising {header(cfg.tune_metric)} on the "
              "validation queries; scores are min-max normalised per list."), ""]
    lines += md_table(["setting", "hybrid", "val queries", "w", f"val {header(cfg.tune_metric)}", "note"],
                       rows, 2)
    lines.append("")
    return lines


def _by_level_md(result: EvalResult) -> list[str]:
    """P@10 / mAP@10 per query level, one table per setting."""
    lines = ["## By query level (test split)", "",
             "P@10 / mAP@10 (paper convention), with the number of queries per level.", ""]
    for setting, res in result.settings.items():
        levels = sorted({lv for per in res.by_level.values() for lv in per})
        if not levels:
            continue
        counts = next(iter(res.by_level.values()))
        head = ["system", *(f"level {lv} (n={int(counts[lv]['queries'])})" for lv in levels)]
        rows: list[list[str]] = []
        for system in result.systems:
            per = res.by_level.get(system.name)
            if per is None:
                continue
            rows.append([system.label, *(f"{pct(per[lv].get('precision@10'))} / {pct(per[lv].get('map_min@10'))}"
                                         for lv in levels)])
        lines += [f"**{SETTINGS[setting]}**", ""]
        lines += md_table(head, rows, 1)
        lines.append("")
    return lines


def _seen_md(result: EvalResult) -> list[str]:
    """P@10 / mAP@10 of query categories seen in training and of unseen ones."""
    lines = ["## Seen and unseen categories (test split)", "",
             "A query category is seen when some training product is filed under it. P@10 / mAP@10.", ""]
    rows = [[SETTINGS[setting], system.label, *(_seen_cell(per.get(part, {})) for part in ("seen", "unseen"))]
            for setting, system, per in measured(result, lambda r: r.by_seen)]
    lines += md_table(["setting", "system", "seen (n: P@10 / mAP@10)", "unseen (n: P@10 / mAP@10)"], rows, 2)
    lines.append("")
    return lines


def _seen_cell(group: Mapping[str, float]) -> str:
    n = int(group.get("queries", 0))
    return f"{n}: {pct(group.get('precision@10'))} / {pct(group.get('map_min@10'))}" if n else "0: -"


def _errors_md(result: EvalResult) -> list[str]:
    """Where the wrong results of each system's top 10 sit relative to the query category."""
    lines = ["## Error analysis: wrong results in the top 10", "",
             ("Where the non-relevant products in each system's top 10 sit relative to the query category: "
              "in another top-level tree, or in the same tree and how many levels above the query they "
              "meet (1 = a sibling category)."), ""]
    rows = [[SETTINGS[setting], system.label, *_error_cells(e)]
            for setting, system, e in measured(result, lambda r: r.errors)]
    lines += md_table(["setting", "system", "wrong / shown", "other tree", "same tree", "1 up", "2 up",
                        "3+ up", "mean up", "other"], rows, 2)
    lines.append("")
    return lines


def _error_cells(e: Mapping[str, Any]) -> list[str]:
    """One system's error analysis as table cells (counts, and shares of the wrong results)."""
    wrong = e["wrong"]
    by_kind = e["by_kind"]
    ups = e["levels_up"]

    def share(n: int) -> str:
        return f"{n} ({100 * n / wrong:.0f}%)" if wrong else "0"

    deep = sum(n for lv, n in ups.items() if int(lv) >= 3)
    return [f"{wrong}/{e['retrieved']}", share(by_kind["different tree"]), share(by_kind["same tree"]),
            str(ups.get("1", 0)), str(ups.get("2", 0)), str(deep),
            "-" if e["mean_levels_up"] is None else f"{e['mean_levels_up']:.2f}",
            str(by_kind["inside node"] + by_kind["no category"])]


def _reproducibility_md(result: EvalResult) -> list[str]:
    """Seeds, split, dataset hash, versions, encoders, indexes and notes."""
    cfg = result.config
    ds = result.dataset
    env = result.environment
    lines = ["## Reproducibility", ""]
    lines += [
        f"- seeds: split {cfg.split.seed}, random level {cfg.split.seed}, significance {cfg.split.seed}",
        (f"- split fractions: train {cfg.split.train}, val {cfg.split.val}, test {cfg.split.test} "
         "(sha256 of seed:id, so a product's split never depends on catalogue order)"),
        f"- dataset: `{ds.get('hash')}` (products as canonical JSON, images by file name)",
        f"- ctir-es {env.get('ctir_es')}, git {env.get('git_commit', '?')[:12]}"
        + (" (uncommitted changes)" if env.get("git_dirty") else "")
        + f", Python {env.get('python')}, numpy {env.get('numpy')}"
        + (f", torch {env['torch']}" if "torch" in env else "")
        + (f", ranx {env['ranx']}" if "ranx" in env else ""),
    ]
    for system in result.systems:
        manifest = getattr(system, "manifest", None)
        if manifest:
            lines.append(f"- `{system.name}` encoder: `{manifest.get('id')}`"
                         + (f" (sha256 {str(manifest.get('weights_sha256'))[:16]}…)" if manifest.get("weights_sha256") else ""))
    for index in result.indexes:
        lines.append(f"- index `{index['key']}`: {index['indexed']} products, "
                     + ("reused from cache" if index["cached"] else f"built in {index['build_seconds']:.0f} s"))
    for note in result.notes:
        lines.append(f"- {note}")
    return lines


def _backend(result: EvalResult) -> str:
    locs = [i["location"] for i in result.indexes]
    for prefix, name in (("elasticsearch", "Elasticsearch"), ("opensearch", "OpenSearch")):
        if any(loc.startswith(prefix) for loc in locs):
            return name
    return "embedded store"


def _significance_md(result: EvalResult) -> list[str]:
    lines: list[str] = []
    for setting, res in result.settings.items():
        sig = res.significance
        if not sig:
            continue
        if "skipped" in sig:
            lines += [f"**{SETTINGS[setting]}**: not tested ({sig['skipped']})", ""]
            continue
        lines += [f"**{SETTINGS[setting]}** ({sig['queries']} queries):", ""]
        for metric in sig["metrics"]:
            pairs = significant_pairs(sig, metric)
            if not pairs:
                lines.append(f"- {header(metric)}: no pair differs at p < {sig['max_p']}")
                continue
            shown = ", ".join(f"{a} > {b} (p={p:.3f})" for a, b, p in sorted(pairs, key=lambda x: x[2]))
            lines.append(f"- {header(metric)}: {shown}")
        lines.append("")
    if lines:
        first = next(r.significance for r in result.settings.values() if r.significance)
        test = first.get("stat_test", result.config.stat_test)
        desc = {"fisher": "paired Fisher randomisation test", "student": "paired Student's t-test",
                "tukey": "Tukey's HSD"}.get(test, test)
        lines = ["## Significance", "",
                 (f"{desc} (ranx.compare, seed {result.config.split.seed}), pairs that differ at "
                 f"p < {result.config.max_p}; not corrected for multiple comparisons."), "", *lines]
    return lines


def write_report(result: EvalResult, out_dir: Path, command: str = "") -> dict[str, Any]:
    """Write every output under ``out_dir``; returns ``{kind: path or [paths]}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {"runs": [], "qrels": [], "queries": []}
    for setting, res in result.settings.items():
        files["qrels"].append(str(write_qrels(out_dir / "qrels" / f"{setting}.qrels", res.test.qrels)))
        files["queries"].append(str(write_queries(out_dir / "queries" / f"{setting}.tsv",
                                                  {q.qid: q.text for q in res.test.queries})))
        for name, run in res.runs.items():
            path = out_dir / "runs" / setting / f"{safe_name(name)}.trec"
            files["runs"].append(str(write_run(path, run, name)))
    png = plot(result, out_dir / "plot.png")
    files["plot"] = str(png) if isinstance(png, Path) else None
    if not isinstance(png, Path):
        result.notes.append(f"no plot: {png}")
    md_path = out_dir / "report.md"
    json_path = out_dir / "report.json"
    files["markdown"] = str(md_path)
    files["json"] = str(json_path)
    data = result.to_json()
    data["command"] = command
    data["files"] = {k: v for k, v in files.items()}
    data["queries"] = {
        setting: [q.to_json() | {"relevant": len(res.test.qrels[q.qid])} for q in res.test.queries]
        for setting, res in result.settings.items()
    }
    data["hybrid_findings"] = hybrid_findings(result)
    json_path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=False), encoding="utf-8")
    md_path.write_text(markdown(result, command), encoding="utf-8")
    return files
