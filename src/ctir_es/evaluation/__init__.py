"""Evaluation: the paper's category-to-image protocol, every baseline, hybrid fusion, reports.

The protocol (splits, settings, query sets, qrels) and the metrics live beside this package, in
``ctir_es.protocol`` and ``ctir_es.metrics``: training, calibration and ``learn`` use them too,
and evaluation imports training (trained systems), never the reverse. One concept per module:

- ``systems``         BM25 / dense / hybrid systems, their names, the ``--systems`` selection
- ``providers``       where dense systems come from (text, CLIP, trained; pluggable)
- ``trained``         exported CLIP-ITA models (and their variants) as dense systems
- ``index``           evaluation indexes built through the ingest Pipeline, cached by dataset hash
- ``runner``          runs every system through the Store API, tunes linear fusion on validation
- ``error_analysis``  wrong results in the same tree or another, and how many levels away
- ``significance``    paired tests between systems (ranx)
- ``trec`` / ``plot`` / ``report``  run and qrels files, the PNG, Markdown and JSON

    from ctir_es.evaluation import EvalConfig, evaluate_catalogue, write_report
    result = evaluate_catalogue("flipkart", "path/to/flipkart-1050", settings, EvalConfig())
    write_report(result, Path("eval-out"))
"""

from __future__ import annotations

from ..protocol import SETTINGS, SplitSpec, split_of
from .runner import EvalConfig, EvalResult, evaluate_catalogue, evaluate_products


def write_report(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See ``report.write_report`` (imported lazily: it pulls in the plotting code)."""
    from .report import write_report as _write

    return _write(*args, **kwargs)


__all__ = ["SETTINGS", "EvalConfig", "EvalResult", "SplitSpec", "evaluate_catalogue", "evaluate_products",
           "split_of", "write_report"]
