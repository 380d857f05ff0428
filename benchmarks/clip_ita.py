"""CLIP-ITA on flipkart-1050 against the zero-shot text encoder, on held-out products.

    python benchmarks/clip_ita.py                      # text-only CLIP-ITA (title+attributes), most specific
    python benchmarks/clip_ita.py --seeds 13 1 2       # several splits
    python benchmarks/clip_ita.py --setting general --paper

No CLIP weights exist offline, so the variant trained here is the text-only one (title and
attributes through all-MiniLM-L6-v2, frozen). For each split seed it trains with early
stopping on the validation split and prints, for the test split: P@1, P@10, mAP@10 and
R-precision of CLIP-ITA and of zero-shot MiniLM (category text against title vectors), for
all test categories and for the seen / unseen ones, with both relevance readings, plus the
time spent computing features (cold, then cached) and training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ctir_es.config import Settings
from ctir_es.training.train import PAPER, TrainConfig, train_catalogue

FLIPKART = Path(os.environ.get("CTIR_ES_FLIPKART_DIR", Path(__file__).resolve().parents[2] / "shared/datasets/flipkart-1050"))
SHOWN = (("precision@1", "P@1"), ("precision@10", "P@10"), ("map@10", "mAP@10"), ("r-precision", "R-prec"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13])
    parser.add_argument("--setting", choices=["specific", "general", "random"], default="specific")
    parser.add_argument("--modalities", default="title,attributes")
    parser.add_argument("--query-text", choices=["path", "leaf"], default="path")
    parser.add_argument("--paper", action="store_true", help="the paper's hyper-parameters")
    parser.add_argument("--cache-dir", type=Path, default=None, help="feature cache parent [a fresh temp dir: cold]")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not (FLIPKART / "products.csv").is_file():
        sys.exit(f"flipkart-1050 not found at {FLIPKART}; set CTIR_ES_FLIPKART_DIR")

    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="ctir-clip-ita-"))
    settings = Settings(cache_dir=cache, clip_weights="none")
    overrides: dict[str, Any] = dict(PAPER) if args.paper else {}
    rows = []
    for seed in args.seeds:
        config = TrainConfig(modalities=tuple(args.modalities.split(",")), setting=args.setting,
                             query_text=args.query_text, seed=seed, **overrides)
        start = time.perf_counter()
        result = train_catalogue("flipkart", FLIPKART, settings, config, cache / f"run-{seed}")
        wall = time.perf_counter() - start
        rows.append({"seed": seed, "seconds": {**result.seconds, "wall": round(wall, 1)},
                     "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "data": result.data,
                     "test": result.test})
        print(f"\nseed {seed}: {result.data['split_sizes']} products; {result.data['test_categories']} test "
              f"categories ({result.data['test_categories_unseen']} unseen in training); best epoch "
              f"{result.best_epoch}/{result.epochs_run}; features {result.seconds['features']:.1f} s, "
              f"training {result.seconds['training']:.1f} s, wall {wall:.1f} s")
        for relevance, systems in result.test.items():
            print(f"  {relevance} relevance:")
            for name, res in systems.items():
                for group in ("all", "seen", "unseen"):
                    n = res["queries"] if group == "all" else res[f"{group}_queries"]
                    cells = "  ".join(f"{label} {100 * res[group][key]:6.2f}" for key, label in SHOWN)
                    print(f"    {name:10s} {group:6s} ({n:3d} q)  {cells}")
    if len(rows) > 1:
        print("\nmean over seeds (all test categories):")
        for relevance in rows[0]["test"]:
            for name in rows[0]["test"][relevance]:
                cells = "  ".join(
                    f"{label} {100 * sum(r['test'][relevance][name]['all'][key] for r in rows) / len(rows):6.2f}"
                    for key, label in SHOWN)
                print(f"  {relevance:8s} {name:10s} {cells}")
    if args.json:
        args.json.write_text(json.dumps({"setting": args.setting, "paper": args.paper, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
