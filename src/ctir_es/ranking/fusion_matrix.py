"""Fusion of fixed runs under many weight vectors at once: the calibration's grid search.

``ranking.fusion`` fuses one query's lists for one set of weights; a calibration fuses the
same lists of hundreds of queries under hundreds of weight vectors. Both fusions are a
weighted sum of per-source terms (RRF: ``w / (k + rank)``; linear: the min-max normalised
score), so the terms are laid out once as a (queries, candidates, sources) array and each
weight vector costs a few array operations and one sort. The order is ``fuse``'s own: fused
score descending, then the best single-source rank, then the id, with the terms summed in the
same order (``tests/test_fusion_matrix.py`` checks the two agree).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..schema import Hit
from ..vocabulary import RRF_K
from .fusion import minmax

QueryRuns = Mapping[str, Sequence[Hit]]  # one query: source -> ranked hits


class RunMatrix:
    """The runs of a set of queries laid out for fast fusion, with their binary relevance."""

    def __init__(self, runs: Mapping[str, QueryRuns], qrels: Mapping[str, Mapping[str, int]],
                 sources: Sequence[str], k: int = RRF_K) -> None:
        self.sources = list(sources)
        qids = [q for q in runs if qrels.get(q)]
        width = max((len({h.id for s in self.sources for h in runs[q].get(s, [])}) for q in qids), default=0)
        shape = (len(qids), max(width, 1), len(self.sources))
        self.rrf = np.full(shape, np.inf)  # k + rank (inf where the source missed): w / it is RRF's term
        self.linear = np.zeros(shape)
        self.present = np.zeros(shape[:2], dtype=bool)
        self.best = np.full(shape[:2], np.iinfo(np.int32).max, dtype=np.int64)
        self.id_order = np.zeros(shape[:2], dtype=np.int64)
        self.relevant = np.zeros(shape[:2], dtype=bool)
        self.total_relevant = np.zeros(len(qids))
        for qi, qid in enumerate(qids):
            query = runs[qid]
            ids = sorted({h.id for s in self.sources for h in query.get(s, [])})
            pos = {pid: j for j, pid in enumerate(ids)}
            self.present[qi, : len(ids)] = True
            self.id_order[qi, : len(ids)] = np.arange(len(ids))
            rel = qrels[qid]
            self.relevant[qi, : len(ids)] = [rel.get(pid, 0) > 0 for pid in ids]
            self.total_relevant[qi] = sum(1 for v in rel.values() if v > 0)
            for si, source in enumerate(self.sources):
                hits = query.get(source, [])
                norms = minmax(hits)
                seen: set[str] = set()
                for rank, hit in enumerate(hits, start=1):
                    if hit.id in seen:  # a source listing an id twice keeps its best rank
                        continue
                    seen.add(hit.id)
                    j = pos[hit.id]
                    self.rrf[qi, j, si] = float(k + rank)
                    self.linear[qi, j, si] = norms[hit.id]
                    self.best[qi, j] = min(self.best[qi, j], rank)
        self.queries = len(qids)

    def scores(self, method: str, weights: Sequence[float], cutoff: int = 10) -> tuple[float, float]:
        """Mean ``precision@cutoff`` and ``map_min@cutoff`` (AP / min(cutoff, R)) of the fused
        lists under ``weights`` (in ``sources`` order)."""
        if not self.queries:
            return 0.0, 0.0
        # summed term by term in source-name order, as ``fuse`` does: the same float rounding, so
        # exact ties (frequent with min-max scores) break the same way
        fused = np.zeros(self.present.shape)
        for si in sorted(range(len(self.sources)), key=lambda i: self.sources[i]):
            w = float(weights[si])
            term = w / self.rrf[:, :, si] if method == "rrf" else w * self.linear[:, :, si]
            fused = fused + term
        fused = np.where(self.present, fused, -np.inf)
        order = np.lexsort((self.id_order, self.best, -fused), axis=-1)[:, :cutoff]
        hits = np.take_along_axis(self.relevant & self.present, order, axis=1).astype(np.float64)
        precision = hits.sum(axis=1) / cutoff
        at = np.arange(1, hits.shape[1] + 1)
        ap = (np.cumsum(hits, axis=1) / at * hits).sum(axis=1) / np.minimum(cutoff, self.total_relevant)
        return float(precision.mean()), float(ap.mean())
