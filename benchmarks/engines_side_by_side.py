#!/usr/bin/env python
"""Two `ctir-es evaluate` reports side by side, per query: the embedded store's lexical engines.

    CTIR_ES_LEXICAL_ENGINE=fts5 ctir-es evaluate flipkart DIR --systems 'bm25-*,*:bm25-text+minilm' \\
        --text-model all-MiniLM-L6-v2 --out A --work-dir A-work
    CTIR_ES_LEXICAL_ENGINE=tantivy ctir-es evaluate flipkart DIR ... --out B --work-dir B-work
    python benchmarks/engines_side_by_side.py A B [--names fts5,tantivy]

For every setting and every system present in both (the TREC runs under ``runs/``, the qrels
under ``qrels/``), each metric's mean in A and B, B - A in points, and the paired t-test's p
over the setting's queries: ranx's (the evaluation's ``significance.compare``) for the metrics
it knows, scipy's ``ttest_rel`` (the same test) for the paper's mAP@10 (AP@10 / min(10, R)).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from scipy.stats import ttest_rel

from ctir_es.evaluation.significance import compare
from ctir_es.evaluation.trec import read_qrels, read_run
from ctir_es.metrics import per_query

# (our metric, ranx's name or None, column label)
METRICS = [("precision@1", "precision@1", "P@1"), ("precision@10", "precision@10", "P@10"),
           ("map_min@10", None, "mAP@10"), ("map@10", "map@10", "mAP@10÷R"), ("ndcg@10", "ndcg@10", "nDCG@10")]


def p_text(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "="  # identical per query
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--names", default="fts5,tantivy", help="labels of A and B")
    args = ap.parse_args()
    name_a, name_b = args.names.split(",")
    print(f"| setting | system | {' | '.join(f'{label}: {name_a} / {name_b} (diff, p)' for _, _, label in METRICS)} |")
    print("|---|---|" + "---|" * len(METRICS))
    for setting_dir in sorted((args.a / "runs").iterdir()):
        setting = setting_dir.name
        qrels = read_qrels(args.a / "qrels" / f"{setting}.qrels")
        if read_qrels(args.b / "qrels" / f"{setting}.qrels") != qrels:
            print(f"error: the qrels of {setting} differ between the reports (another split?)", file=sys.stderr)
            return 1
        for run_file in sorted(setting_dir.glob("*.trec")):
            other = args.b / "runs" / setting / run_file.name
            if not other.exists():
                continue
            run_a, run_b = read_run(run_file), read_run(other)
            scores = [per_query(qrels, run, [m for m, _, _ in METRICS]) for run in (run_a, run_b)]
            ranx_metrics = [r for _, r, _ in METRICS if r]
            tested = compare(qrels, {name_a: run_a, name_b: run_b}, ranx_metrics)
            cells = []
            for metric, ranx_name, _ in METRICS:
                qids = sorted(scores[0][metric])
                xa = [scores[0][metric][q] for q in qids]
                xb = [scores[1][metric][q] for q in qids]
                mean_a, mean_b = 100 * sum(xa) / len(xa), 100 * sum(xb) / len(xb)
                if ranx_name and "p_values" in tested:
                    p = tested["p_values"][name_a][name_b][ranx_name]
                else:
                    p = None if xa == xb else float(ttest_rel(xb, xa).pvalue)
                cells.append(f"{mean_a:.2f} / {mean_b:.2f} ({mean_b - mean_a:+.2f}, {p_text(p)})")
            print(f"| {setting} | {run_file.stem} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
