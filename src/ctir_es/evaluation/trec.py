"""TREC run and qrels files (the formats trec_eval, ranx and pytrec_eval read).

- run: ``qid Q0 docid rank score tag`` - one line per retrieved product, best first;
- qrels: ``qid 0 docid relevance``.

Scores in evaluation runs are rank-derived (n, n-1, ..., 1), so any tool that sorts by score
sees the order the system served (fused scores can tie; raw BM25 and cosine scores are not
comparable across systems anyway).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ..metrics import Qrels, Run, ranking


def safe_name(name: str) -> str:
    """A system name as a file name / TREC tag: ``rrf:bm25-text+minilm`` -> ``rrf_bm25-text+minilm``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name)


def doc_token(doc: str) -> str:
    """A product id as one TREC token: whitespace percent-encoded (ids rarely hold any)."""
    return re.sub(r"[\s%]", lambda m: f"%{ord(m.group()):02X}", doc) if re.search(r"[\s%]", doc) else doc


def write_run(path: Path, run: Run, tag: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for qid in sorted(run):
            scores = run[qid]
            for rank, doc in enumerate(ranking(scores), start=1):
                fh.write(f"{qid} Q0 {doc_token(doc)} {rank} {scores[doc]:.6f} {safe_name(tag)}\n")
    return path


def write_qrels(path: Path, qrels: Qrels) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for qid in sorted(qrels):
            for doc in sorted(qrels[qid]):
                fh.write(f"{qid} 0 {doc_token(doc)} {qrels[qid][doc]}\n")
    return path


def read_run(path: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, doc, _rank, score, *_ = line.split()
            out.setdefault(qid, {})[doc] = float(score)
    return out


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, doc, rel = line.split()
            out.setdefault(qid, {})[doc] = int(rel)
    return out


def write_queries(path: Path, queries: Mapping[str, str]) -> Path:
    """``qid<TAB>text`` (the topics file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for qid in sorted(queries):
            fh.write(f"{qid}\t{' '.join(queries[qid].split())}\n")
    return path
