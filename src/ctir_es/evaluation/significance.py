"""Paired significance tests between systems over the same queries, with ranx.

``ranx.compare`` runs the test for every pair of systems and every metric. The default is the
paired Student's t-test: deterministic, and for IR metrics it agrees closely with the
randomisation test (Smucker et al., CIKM 2007). ``fisher`` (paired randomisation, 1,000
permutations) is available, but ranx runs its permutations in parallel numba threads that the
seed does not reach, so its p-values change in the second decimal from run to run. p-values
are not corrected for multiple comparisons: with many systems, read them with that in mind
(Bonferroni: divide ``max_p`` by the number of pairs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics import Qrels, Run

STAT_TESTS = ("student", "fisher", "tukey")


def compare(
    qrels: Qrels,
    runs: Mapping[str, Run],
    metrics: Sequence[str],
    *,
    stat_test: str = "student",
    max_p: float = 0.05,
    seed: int = 13,
    permutations: int = 1000,
) -> dict[str, Any]:
    """``{"p_values": {a: {b: {metric: p}}}, "scores": {a: {metric: mean}}, ...}`` or
    ``{"skipped": reason}`` when it cannot run (ranx missing, fewer than 2 systems or queries)."""
    queries = [q for q, judged in qrels.items() if any(r > 0 for r in judged.values())]
    if len(runs) < 2:
        return {"skipped": "fewer than two systems"}
    if len(queries) < 2:
        return {"skipped": f"{len(queries)} query: too few for a paired test"}
    try:
        import ranx
    except ImportError:
        return {"skipped": "ranx is not installed: pip install 'ctir-es[eval]'"}

    r_qrels = ranx.Qrels.from_dict({q: dict(qrels[q]) for q in queries})
    r_runs = []
    for name, run in runs.items():
        # ranx wants at least one result per query; a sentinel doc that is never relevant
        # scores exactly like an empty list for every metric used here.
        data = {q: (dict(run.get(q, {})) or {"__no_result__": 0.0}) for q in queries}
        r_runs.append(ranx.Run.from_dict(data, name=name))
    report = ranx.compare(
        r_qrels, r_runs, list(metrics), stat_test=stat_test, n_permutations=permutations,
        max_p=max_p, random_seed=seed, rounding_digits=6, make_comparable=True,
    )
    raw = report.to_dict()
    names = list(runs)
    return {
        "stat_test": stat_test,
        "max_p": max_p,
        "permutations": permutations if stat_test == "fisher" else None,
        "seed": seed,
        "queries": len(queries),
        "metrics": list(metrics),
        "scores": {n: raw[n]["scores"] for n in names},
        # identical per-query scores give no test statistic (NaN): reported as None
        "p_values": {a: {b: {m: (None if math.isnan(p) else p) for m, p in raw[a]["comparisons"][b].items()}
                         for b in names if b != a} for a in names},
        "win_tie_loss": {a: raw[a].get("win_tie_loss", {}) for a in names},
    }


def significant_pairs(result: Mapping[str, Any], metric: str) -> list[tuple[str, str, float]]:
    """``(better, worse, p)`` for each pair that differs at ``max_p`` on ``metric``."""
    if "p_values" not in result:
        return []
    out = []
    scores, p_values, max_p = result["scores"], result["p_values"], result["max_p"]
    names = list(p_values)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p = p_values[a][b][metric]
            if p is not None and p < max_p and scores[a][metric] != scores[b][metric]:
                better, worse = (a, b) if scores[a][metric] > scores[b][metric] else (b, a)
                out.append((better, worse, p))
    return out
