"""CLIP-ITA generalisation on flipkart-1050 (issue 16): seeds, seen/unseen, learning curve, hybrids.

    python benchmarks/generalise.py                                   # MiniLM, specific + random, seeds 13 1 2
    python benchmarks/generalise.py --fractions 0.1 0.25 0.5 1.0      # + the learning curve
    python benchmarks/generalise.py --text-model all-mpnet-base-v2    # the paper's text tower
    python benchmarks/generalise.py --paper --text-model all-mpnet-base-v2 --pairs label

For each setting, split seed, share of the training products and pair mode it trains the
text-only CLIP-ITA (title + attributes, frozen encoder, cached features) with the library's
``train`` and measures on the test split, all / seen / unseen categories, exact relevance:

- ``zero-shot``: the category text against title vectors, same frozen encoder;
- ``trained``: the trained heads; ``trained+backoff``: mixed with zero-shot by distance to
  the seen categories (``ctir_es.training.backoff``, tuned on validation);
- ``bm25``: BM25 over title + attributes + description through the embedded store (the
  evaluation's ``bm25-text``; categories are never searched);
- ``linear:bm25+X``: min-max linear fusion of BM25 and X, the BM25 weight tuned on validation
  (``ctir-es evaluate``'s hybrid, ties to the even mix); ``guarded:bm25+X``: the same fusion with
  one weight per group (seen / unseen categories, which a trained model knows at query time),
  each tuned on that group's validation queries, and ties going to BM25 alone. Serving does the
  same since issue 22 (``ctir_es.calibrate.choose``: the index's fusion per group, unseen ties to
  the larger BM25 share, stored with the calibration and picked per query by ``Search``); this
  benchmark keeps its two-source grid over the training protocol's query sets, which serving's
  calibration slices are not.

It prints mean ± sample standard deviation over the seeds, and the ceiling of P@10 (the
share of the 10 slots that relevant test products can fill). ``--json`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ctir_es import metrics
from ctir_es.config import Settings
from ctir_es.encoders.registry import EncoderConfig, load_text_encoder
from ctir_es.evaluation.index import IndexBuilder
from ctir_es.evaluation.runner import SystemRunner, load_products
from ctir_es.evaluation.systems import LEXICAL_SYSTEMS
from ctir_es.protocol import QuerySet, dataset_hash
from ctir_es.ranking.fusion import fuse
from ctir_es.schema import Hit
from ctir_es.training.data import TrainingData
from ctir_es.training.evaluate import evaluate_run, query_set
from ctir_es.training.features import FeatureCache
from ctir_es.training.train import PAPER, TrainConfig, by_rank, train

FLIPKART = Path(os.environ.get("CTIR_ES_FLIPKART_DIR", Path(__file__).resolve().parents[2] / "shared/datasets/flipkart-1050"))
SHOWN = (("precision@10", "P@10"), ("precision@1", "P@1"), ("map@10", "mAP@10"))
GRID = tuple(round(0.1 * i, 1) for i in range(11))
TUNE_METRIC = "map@10"
Run = dict[str, dict[str, float]]


def hits(run: Mapping[str, float]) -> list[Hit]:
    return [Hit(d, float(s)) for d, s in run.items()]


def fuse_run(bm25: Mapping[str, list[Hit]], dense: Mapping[str, Mapping[str, float]], weight_of: Any,
             queries: Sequence[Any]) -> Run:
    out: Run = {}
    for q in queries:
        w = weight_of(q)
        fused = fuse("linear", {"bm25": bm25.get(q.qid, []), "dense": hits(dense.get(q.qid, {}))},
                     {"bm25": w, "dense": 1.0 - w})
        out[q.qid] = {h.id: float(len(fused) - r) for r, h in enumerate(fused[:100])}
    return out


def score(qs: QuerySet, run: Run, qids: Sequence[str]) -> float:
    per = metrics.per_query(qs.qrels, run, [TUNE_METRIC])[TUNE_METRIC]
    return metrics.mean(per, list(qids))


def tune_weight(qs: QuerySet, bm25: Mapping[str, list[Hit]], dense: Mapping[str, Mapping[str, float]],
                queries: Sequence[Any], prefer_bm25: bool) -> float:
    """The BM25 weight maximising validation mAP@10 over ``queries``; ties go to the even mix
    (``ctir-es evaluate``) or, with ``prefer_bm25``, to the largest BM25 weight."""
    if not queries:
        return 1.0 if prefer_bm25 else 0.5
    qids = [q.qid for q in queries]
    scores = {w: score(qs, fuse_run(bm25, dense, lambda _q, w=w: w, queries), qids) for w in GRID}
    best = max(scores.values())
    ties = [w for w, s in scores.items() if s >= best - 1e-12]
    return max(ties) if prefer_bm25 else min(ties, key=lambda w: (abs(w - 0.5), w))


def lexical_runs(runner: SystemRunner, qs: QuerySet) -> dict[str, list[Hit]]:
    return runner.run(qs)["bm25-text"]


def measure(qs: QuerySet, run: Run) -> dict[str, Any]:
    return evaluate_run(qs, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 1, 2])
    parser.add_argument("--settings", nargs="+", default=["specific", "random"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0])
    parser.add_argument("--pairs", nargs="+", default=["label", "ancestors"], choices=["label", "ancestors"])
    parser.add_argument("--text-model", default="all-MiniLM-L6-v2")
    parser.add_argument("--paper", action="store_true", help="the paper's hyper-parameters")
    parser.add_argument("--relevance", choices=["exact", "subtree"], default="exact")
    parser.add_argument("--cache-dir", type=Path, default=None, help="[the default cache dir: features are reused]")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--from-json", type=Path, default=None, help="only print the summary tables of a saved run")
    args = parser.parse_args()
    if args.from_json:
        summary(json.loads(args.from_json.read_text())["runs"])
        return
    if not (FLIPKART / "products.csv").is_file():
        sys.exit(f"flipkart-1050 not found at {FLIPKART}; set CTIR_ES_FLIPKART_DIR")

    settings = Settings(clip_weights="none", text_model=args.text_model,
                        **({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    products, _ = load_products("flipkart", FLIPKART, settings)
    encoder = load_text_encoder(EncoderConfig.from_settings(settings))
    cache = FeatureCache(Path(settings.cache_dir) / "features")
    work = Path(tempfile.mkdtemp(prefix="ctir-generalise-"))
    builder = IndexBuilder(products, dataset_hash(products, "flipkart"), settings, Path(settings.cache_dir) / "eval")
    bm25_index = builder.with_encoders("bm25")
    runner = SystemRunner([LEXICAL_SYSTEMS["bm25-text"]], [], {"bm25": bm25_index}, "bm25", 100)
    overrides: dict[str, Any] = dict(PAPER) if args.paper else {}
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for setting in args.settings:
        for seed in args.seeds:
            bm25_cache: dict[str, dict[str, list[Hit]]] = {}
            for fraction in args.fractions:
                for pairs in args.pairs:
                    config = TrainConfig(modalities=("title", "attributes"), setting=setting, seed=seed,
                                         pairs=pairs, train_fraction=fraction, relevance=args.relevance, **overrides)
                    t0 = time.perf_counter()
                    result = train(products, config, work / f"{setting}-{seed}-{fraction}-{pairs}",
                                   text_encoder=encoder, cache=cache)
                    data = TrainingData.build(products, setting, config.split_spec, pairs=pairs, train_fraction=fraction)
                    sets = {split: query_set(data, split, args.relevance) for split in ("val", "test")}
                    for split, qs in sets.items():
                        if split not in bm25_cache:
                            bm25_cache[split] = lexical_runs(runner, qs)
                    variant = config.variant
                    dense = {"zero-shot": "zero-shot", "trained": variant, "trained+backoff": f"{variant}+backoff"}
                    systems: dict[str, Any] = {
                        name: measure(sets["test"], by_rank(result.runs["test"][key])) for name, key in dense.items()}
                    systems["bm25"] = measure(sets["test"], {q: {h.id: float(len(hs) - r) for r, h in enumerate(hs)}
                                                             for q, hs in bm25_cache["test"].items()})
                    weights: dict[str, Any] = {}
                    for name, key in dense.items():
                        val_q, test_q = sets["val"].queries, sets["test"].queries
                        w = tune_weight(sets["val"], bm25_cache["val"], result.runs["val"][key], val_q, False)
                        systems[f"linear:bm25+{name}"] = measure(
                            sets["test"], fuse_run(bm25_cache["test"], result.runs["test"][key], lambda _q, w=w: w, test_q))
                        by_group = {seen: tune_weight(sets["val"], bm25_cache["val"], result.runs["val"][key],
                                                      [q for q in val_q if q.seen == seen], True) for seen in (True, False)}
                        systems[f"guarded:bm25+{name}"] = measure(
                            sets["test"], fuse_run(bm25_cache["test"], result.runs["test"][key],
                                                   lambda q, g=by_group: g[q.seen], test_q))
                        weights[name] = {"linear": w, "guarded_seen": by_group[True], "guarded_unseen": by_group[False]}
                    test_summary = sets["test"].summary()
                    qs = sets["test"]
                    ceiling = {g: metrics.mean({q.qid: min(len(qs.qrels[q.qid]), 10) / 10 for q in qs.queries},
                                               [q.qid for q in qs.queries if g == "all" or q.seen == (g == "seen")])
                               for g in ("all", "seen", "unseen")}
                    rows.append({"setting": setting, "seed": seed, "fraction": fraction, "pairs": pairs,
                                 "text_model": args.text_model, "paper": args.paper, "data": result.data,
                                 "best_epoch": result.best_epoch, "backoff": {k: v for k, v in result.backoff.items()
                                                                              if k != "grid"},
                                 "fusion_weights": weights, "p10_ceiling": ceiling, "queries": test_summary,
                                 "seconds": round(time.perf_counter() - t0, 1), "systems": systems})
                    s = systems
                    print(f"{setting:8s} seed {seed:2d} frac {fraction:4.2f} {pairs:9s} unseen P@10: zero-shot "
                          f"{100 * s['zero-shot']['unseen']['precision@10']:.2f} trained "
                          f"{100 * s['trained']['unseen']['precision@10']:.2f} +backoff "
                          f"{100 * s['trained+backoff']['unseen']['precision@10']:.2f} bm25 "
                          f"{100 * s['bm25']['unseen']['precision@10']:.2f} (ceiling {100 * ceiling['unseen']:.2f}); "
                          f"backoff {result.backoff.get('weight_seen')},{result.backoff.get('decay')}; "
                          f"{rows[-1]['seconds']} s", flush=True)
    builder.close()
    print(f"\n{len(rows)} runs in {time.perf_counter() - started:.0f} s; mean ± sd over seeds {args.seeds}, "
          f"{args.relevance} relevance, percent\n")
    print_tables(rows)
    summary(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows}, indent=1))


def mean_sd(values: Sequence[float]) -> str:
    m = 100 * statistics.fmean(values)
    sd = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.2f} ± {sd:.2f}"


def print_tables(rows: list[dict[str, Any]]) -> None:
    keys = sorted({(r["setting"], r["fraction"], r["pairs"]) for r in rows},
                  key=lambda k: (k[0], -k[1], k[2]))
    for setting, fraction, pairs in keys:
        group = [r for r in rows if (r["setting"], r["fraction"], r["pairs"]) == (setting, fraction, pairs)]
        print(f"### {setting}, {round(100 * fraction)}% of training products, pairs={pairs} "
              f"({len(group)} seeds)\n")
        header = "| system | " + " | ".join(f"{label} {g}" for _, label in SHOWN[:1] for g in ("all", "seen", "unseen"))
        header += " | P@1 unseen | mAP@10 unseen |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        ceiling = " | ".join(mean_sd([r["p10_ceiling"][g] for r in group]) for g in ("all", "seen", "unseen"))
        print(f"| (P@10 ceiling) | {ceiling} | | |")
        for name in group[0]["systems"]:
            cells = [mean_sd([r["systems"][name][g]["precision@10"] for r in group]) for g in ("all", "seen", "unseen")]
            cells += [mean_sd([r["systems"][name]["unseen"][m] for r in group]) for m in ("precision@1", "map@10")]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()


def summary(rows: list[dict[str, Any]]) -> None:
    """The tables docs/models.md shows: defaults at 100%, pair modes, the learning curve."""
    def cell(group: list[dict[str, Any]], system: str, g: str, metric: str = "precision@10") -> str:
        return mean_sd([r["systems"][system][g][metric] for r in group])

    def pick(setting: str, fraction: float, pairs: str) -> list[dict[str, Any]]:
        return [r for r in rows if (r["setting"], r["fraction"], r["pairs"]) == (setting, fraction, pairs)]

    settings = sorted({r["setting"] for r in rows}, reverse=True)
    pair_modes = sorted({r["pairs"] for r in rows}, reverse=True)
    fractions = sorted({r["fraction"] for r in rows})
    shown = ("zero-shot", "trained", "trained+backoff", "bm25", "linear:bm25+trained+backoff",
             "guarded:bm25+trained+backoff")
    for pairs in pair_modes:
        print(f"\n#### 100% of the training products, pairs={pairs}: P@10 all / seen / unseen, P@1 and mAP@10 unseen\n")
        print("| setting | system | P@10 all | P@10 seen | P@10 unseen | P@1 unseen | mAP@10 unseen |\n|---|---|---|---|---|---|---|")
        for setting in settings:
            group = pick(setting, 1.0, pairs)
            if not group:
                continue
            ceil = " | ".join(mean_sd([r["p10_ceiling"][g] for r in group]) for g in ("all", "seen", "unseen"))
            print(f"| {setting} | *P@10 ceiling* | {ceil} | | |")
            for name in shown:
                print(f"| {setting} | {name} | " + " | ".join(
                    [cell(group, name, g) for g in ("all", "seen", "unseen")]
                    + [cell(group, name, "unseen", m) for m in ("precision@1", "map@10")]) + " |")
    if len(fractions) > 1:
        for pairs in pair_modes:
            print(f"\n#### learning curve, pairs={pairs}: P@10 all | unseen\n")
            print("| setting | share of training products | zero-shot | trained | trained+backoff | bm25 | "
                  "best hybrid (guarded:bm25+trained+backoff) |\n|---|---|---|---|---|---|---|")
            for setting in settings:
                for fraction in fractions:
                    group = pick(setting, fraction, pairs)
                    if group:
                        print(f"| {setting} | {round(100 * fraction)}% | " + " | ".join(
                            f"{cell(group, n, 'all')} \\| {cell(group, n, 'unseen')}"
                            for n in ("zero-shot", "trained", "trained+backoff", "bm25",
                                      "guarded:bm25+trained+backoff")) + " |")


if __name__ == "__main__":
    main()
