"""``ctir-es learn``: the catalogue teaches the index (CLIP-ITA trained on the stored products,
kept only if it wins, then served by every search, categorize, audit and ingest).

    from ctir_es.search import Search
    from ctir_es.learn import learn
    with Search.open(settings) as s:
        report = learn(s, settings)
        print(report.kept, report.reason)
"""

from .run import LEARNED_KEY, LearnConfig, LearnReport, learn

__all__ = ["LEARNED_KEY", "LearnConfig", "LearnReport", "learn"]
